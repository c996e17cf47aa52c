"""Training configuration: defaults, YAML loading, `key=value` overrides, validation.

A config is a nested dict. Every key must exist in `DEFAULT_CONFIG` (except
inside `loss.params`, which goes to the loss constructor, and `expansion`,
which may be null); values must have the default's type (ints are accepted for
floats, null for keys whose default is null). Errors name the full dotted key.
Setting `loss.name` to another loss without `loss.params` starts from that
loss's own defaults (the previous loss's parameters would not fit it).

Config files and `--set` values are read by `load_yaml` / `parse_override`:
YAML with YAML 1.2 numbers (`1e-4`, `5E-4`, `.5`, `1_000` are numbers; YAML 1.1
would read `1e-4` as a string). `--config` takes a path or the name of a config
shipped with tfdml (`ee_cub200`; see `find_config`).

`training.deterministic` (default false): when true, `run` calls
`tf.config.experimental.enable_op_determinism()` and seeds every random source
from `seed`, so two runs of one config give identical `log.csv` losses (slower;
some GPU ops have no deterministic kernel and raise).
"""
import copy
import difflib
import math
import os
import re

import yaml

from tfdml.data.augmentation import AUGMENTATIONS
from tfdml.data.embedded_samplers import DDM_COSTS
from tfdml.data.samplers import EMBEDDED_SAMPLERS, SAMPLER_NAMES, check_classes_per_batch, check_sampler_arguments
from tfdml.metrics.evaluate import METRIC_NAMES
from tfdml.models.embedding_model import DEFAULT_TAP, POOLINGS
from tfdml.training.optimizers import OPTIMIZERS, WEIGHT_DECAY_MODES
from tfdml.training.paper import validate_paper
from tfdml.training.strategy import STRATEGIES

DEFAULT_CONFIG = {
    "seed": 0,
    "output_dir": "runs/default",
    "dataset": {"name": "digits", "data_dir": None, "image_size": 32, "strict": False, "channels": 3,
                "skip_corrupt": False, "validation_classes": 0.2},
    "model": {
        "backbone": "small_cnn",
        "embedding_dim": 64,
        "pooling": "avg",
        "extra_fc": 0,
        "normalize": True,
        "freeze_batchnorm": True,
        "weights": None,
        "heads": None,
        "fc_names": None,
        "reinitialize": [],
        "gray_to_rgb": None,
        "feature_dropout": 0.0,
        "feature_noise": 0.0,
        "embedding_noise": 0.0,
    },
    "loss": {"name": "triplet", "params": {"mining": "easy_positive_semihard", "form": "nca", "temperature": 0.1}},
    "expansion": {"n_points": 2, "normalize": True, "pairs": "consecutive", "pooling": None},
    "sampler": {"name": "m_per_class", "batch_size": 24, "samples_per_class": 8, "pool_size": 1024, "candidates": 10,
                "ddm_cost": "paper"},
    "augmentation": {"train": "ee", "test": "test"},
    "self_supervised": {"enabled": False, "views": 2},
    "optimizer": {"name": "adam", "learning_rate": 0.001, "weight_decay": 0.0, "weight_decay_mode": "decoupled",
                  "momentum": 0.9},
    "schedule": {"decay_epochs": [], "factor": 0.5},
    "training": {
        "epochs": 16,
        "steps_per_epoch": 30,
        "eval_every": 4,
        "eval_batch_size": 256,
        "ks": [1, 2, 4, 8],
        "taps": ["pool", DEFAULT_TAP],
        "export_tap": DEFAULT_TAP,
        "mixed_precision": False,
        "jit_compile": "auto",
        "strategy": "auto",
        "cluster_timeout": 300.0,
        "checkpoint_every": 100,
        "evaluate_untrained": True,
        "tensorboard": True,
        "deterministic": False,
    },
    "analysis": {
        "tap_metrics": [],
        "taps": None,
        "every": 1,
        "expansion_recall": False,
        "expansion_batches": 4,
        "projector_every": 0,
        "projector_points": 1000,
    },
    "sharing": None,
    "paper": {"results": [], "differences": [], "note": ""},
}
"""The embedded default run's configuration (`configs/default.yaml`); every config is merged onto it, and its keys are the only ones a config may use."""

# The `analysis` section (tfdml.training.runner.analysis_callbacks), all off by default; values go to log.csv:
# - tap_metrics: metric names (`tfdml.metrics.METRIC_NAMES`; "recall" gives Recall@1) computed for each of
#   `taps` (null: every head tap and block tap) on the whole training split and the test split every `every`
#   epochs and after the last (Vo & Hays Figs. 2-7, Xuan et al. Tables 1-2: [recall]; Roth et al.: [rho, pi]
#   on training embeddings). Columns "tap_{tap}_{train|test}_{metric}"; NaN on epochs not measured.
# - expansion_recall: EE Fig. 3, Recall@1 of EE's synthetic points (queries against the original points) and
#   of the original points (leave-one-out), on `expansion_batches` fixed training batches (test-time
#   preprocessing) every `every` epochs: columns "ee_synthetic_recall@1", "ee_original_recall@1",
#   "ee_synthetic_negative_ratio". Uses the `expansion` section (its defaults when it is null).
# - projector_every: k > 0 writes TensorBoard Embedding Projector files of `projector_points` sampled test images
#   (every `training.taps`) every k epochs and after the last, into tensorboard/projector/epoch_NNNN; 0: off.

# `paper` (tfdml.training.paper): the numbers the paper reports for a paper config (results: {table, dataset,
# metric, value, std, tap} in percent), the protocol differences that apply, and a note; train.py, evaluate.py
# and sweep.py print and write a "paper vs this run" table from it.

# Sharing Matters (tfdml.sharing): the `sharing` section, null (off) by default. `groups` 0 trains φ* on shared
# triplets T*; L > 0 on k-means group ids (grouping variant T^G), re-clustered every `regroup_every` epochs, of
# per-class standardised features (`standardize_groups` false: Table 8's "T^G − std"). `mode`: "sharing" (eq. 3),
# Table 7's "shared_only" (φ* on T* alone) or "both" (one embedding, φ, trained on both tasks alternately).
# `regressor_units` (512) and `regressor_normalize` (L2 on p(φ*)) are tfdml's choices, not the paper's.
SHARING_DEFAULTS = {
    "gamma": 500.0,
    "regressor_units": 512,
    "regressor_normalize": True,
    "shared_loss": {"name": "shared_triplet", "params": {}},
    "groups": 0,
    "regroup_every": 4,
    "standardize_groups": True,
    "mode": "sharing",
}

#: The line that marks a config generated from a paper (`tools/paper_configs.py`): such a config keeps the
#: paper's protocol — no validation split (`dataset.validation_classes: 0`) unless it sets one.
PAPER_CONFIG_MARKER = "# Generated by tools/paper_configs.py"

# `self_supervised` (tfdml.data.self_supervised_pipeline), off by default: with `enabled: true` training ignores the
# class labels; every batch holds sampler.batch_size / `views` distinct training images, each `views` times with
# independent `augmentation.train` draws, labelled by instance (the image's index), so a pair-based loss (ntxent,
# supcon, vicreg, ...) treats the views of one image as its positives. `sampler.name` / `samples_per_class` are not
# used. `dataset.name: folder` also loads an unlabeled folder (images directly in `data_dir`, or fewer than two
# class sub-folders): all its images train and there is no evaluation; a `<class>/<image>` folder keeps its class
# split (the test classes evaluate, the training classes' labels are ignored). Evaluation (val_* columns,
# best.keras, metrics.json) uses the labelled test (or validation) split as in supervised runs.

# `dataset.validation_classes`: classes of the training split held out as a class-disjoint validation split (a
# fraction of the training classes, at least 2, or a count; 0: none). With one, log.csv's "val_*" columns and
# best.keras (best epoch) use it; without one they use the test split (the papers' protocol).

# Keys that take true, false or "auto".
# Keys that take true, false or one named string.
_BOOL_OR_NAME = {"training.jit_compile": "auto", "model.freeze_batchnorm": "statistics"}
# Keys whose value may be any mapping / null.
_FREE_FORM = {"loss.params", "sharing.shared_loss.params"}
_NULLABLE_SECTIONS = {"expansion", "sharing"}
_SECTION_TEMPLATES = {"sharing": SHARING_DEFAULTS}
# Keys that may be null although their default is not.
_NULLABLE_VALUES = {"model.embedding_dim"}
_CHOICES = {
    "optimizer.name": OPTIMIZERS,
    "optimizer.weight_decay_mode": WEIGHT_DECAY_MODES,
    "dataset.channels": (1, 3),
    "training.strategy": STRATEGIES,
    "sampler.name": SAMPLER_NAMES,
    "sampler.ddm_cost": DDM_COSTS,
    "augmentation.train": AUGMENTATIONS,
    "augmentation.test": AUGMENTATIONS,
    "model.pooling": POOLINGS,
}


class _Loader(yaml.SafeLoader):
    """PyYAML's SafeLoader reading numbers as YAML 1.2 does (`1e-4`, `5E-4`, `1.0e4` are floats)."""


# YAML 1.1's float pattern needs a dot and a signed exponent; this adds YAML 1.2's forms (exponent without a dot or
# without a sign). Tried after the int and 1.1 float patterns, so ints stay ints.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)$"),
    list("-+0123456789."))


def load_yaml(stream, source=None):
    """Parses YAML text or a file object with YAML 1.2 numbers (`1e-4` is a float, not a string).

    Args:
        stream: YAML text or a file object.
        source: what the text is, for errors (default: the file's name, or "YAML text").

    Raises:
        ValueError: one line naming `source`, the line and column, and the problem.
    """
    try:
        return yaml.load(stream, Loader=_Loader)
    except yaml.YAMLError as error:
        source = source or getattr(stream, "name", None) or "YAML text"
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        context = getattr(error, "context", None)
        detail = f"{context}: {problem}" if context else problem
        raise ValueError(f"{source!s} is not valid YAML ({detail} at{where}).".replace("at).", ").")) from None


def _configs_directories():
    """Directories holding tfdml's configs: installed package data, else the source checkout's `configs/`."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [d for d in (os.path.join(package, "configs"), os.path.join(os.path.dirname(package), "configs"))
            if os.path.isdir(d)]


def packaged_configs():
    """{name: path} of the configs shipped with tfdml (`configs/*.yaml` in the repository)."""
    found = {}
    for directory in reversed(_configs_directories()):
        for file_name in os.listdir(directory):
            if file_name.endswith(".yaml"):
                found[file_name[:-len(".yaml")]] = os.path.join(directory, file_name)
    return dict(sorted(found.items()))


def find_config(name):
    """The YAML file of `--config name`: an existing path, else a config shipped with tfdml.

    Args:
        name: a file path, or the name of a shipped config (`"ee_cub200"`,
            `"ee_cub200.yaml"`, `"configs/ee_cub200.yaml"` all work from any directory).

    Returns:
        The path of the file.

    Raises:
        FileNotFoundError: neither a file nor a shipped config; names the closest shipped configs.
    """
    if os.path.isfile(name):
        return name
    stem = os.path.basename(name)
    stem = stem[:-len(".yaml")] if stem.endswith(".yaml") else stem
    shipped = packaged_configs()
    if stem in shipped and os.path.dirname(name) in ("", "configs"):
        return shipped[stem]
    close = difflib.get_close_matches(stem, list(shipped), n=5, cutoff=0.5)
    hint = f" Close shipped configs: {', '.join(close)}." if close else ""
    raise FileNotFoundError(f"Config {name!r} is neither a file nor a config shipped with tfdml.{hint} "
                            f"All {len(shipped)} shipped configs: `python -m tfdml train --list-configs`.")


def _type_ok(value, default):
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, type(default))


def _merge(base, update, prefix=""):
    if (prefix in ("loss.", "sharing.shared_loss.") and "params" not in update
            and update.get("name", base["name"]) != base["name"]):
        base["params"] = {}
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            valid = ", ".join(sorted(base))
            raise ValueError(f"Unknown config key {dotted!r}; valid keys here: {valid}.")
        if dotted in _FREE_FORM:
            if not isinstance(value, dict):
                raise ValueError(f"Config key {dotted!r} must be a mapping, got {value!r}.")
            base[key] = dict(value)
        elif dotted in _NULLABLE_SECTIONS and value is None:
            base[key] = None
        elif isinstance(base[key], dict) or (dotted in _NULLABLE_SECTIONS and base[key] is None):
            if not isinstance(value, dict):
                raise ValueError(f"Config key {dotted!r} must be a mapping, got {value!r}.")
            if base[key] is None:
                base[key] = copy.deepcopy(_SECTION_TEMPLATES.get(key, DEFAULT_CONFIG[key]))
            _merge(base[key], value, dotted + ".")
        elif dotted in _BOOL_OR_NAME:
            if not (isinstance(value, bool) or value == _BOOL_OR_NAME[dotted]):
                raise ValueError(f"Config key {dotted!r} must be true, false or {_BOOL_OR_NAME[dotted]!r}, "
                                 f"got {value!r}.")
            base[key] = value
        else:
            if value is not None and not _type_ok(value, base[key]):
                raise ValueError(
                    f"Config key {dotted!r} must be of type {type(base[key]).__name__}, got {value!r}.")
            if value is None and base[key] is not None and not isinstance(base[key], list) \
                    and dotted not in _NULLABLE_VALUES and not _default_is_null(dotted):
                raise ValueError(f"Config key {dotted!r} cannot be null.")
            if dotted in _CHOICES and value not in _CHOICES[dotted]:
                raise ValueError(f"Config key {dotted!r} must be one of {_CHOICES[dotted]}, got {value!r}.")
            if isinstance(base[key], float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)  # stays a float key for later overrides (1 → 1.0)
            base[key] = value
    return base


def _default_is_null(dotted):
    """Whether the key's default is null (so null stays allowed after a config file set a value)."""
    node = {**DEFAULT_CONFIG, "sharing": SHARING_DEFAULTS}
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return node is None


def _set_dotted(update, dotted, value):
    parts = dotted.split(".")
    node = update
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"Override {dotted!r} goes through a non-mapping key.")
    node[parts[-1]] = value


def parse_override(text):
    """'a.b=value' → ('a.b', YAML-parsed value)."""
    if "=" not in text:
        raise ValueError(f"Override {text!r} must look like key.path=value.")
    key, raw = text.split("=", 1)
    return key.strip(), load_yaml(raw, source=f"--set {text!r}")


def validate(config):
    """Validates a complete config dict and returns a resolved deep copy."""
    resolved = _merge(copy.deepcopy(DEFAULT_CONFIG), copy.deepcopy(config))
    training = resolved["training"]
    for key in ("epochs", "steps_per_epoch", "eval_every", "eval_batch_size"):
        if training[key] < 1:
            raise ValueError(f"Config key 'training.{key}' must be >= 1, got {training[key]}.")
    if training["checkpoint_every"] < 0:
        raise ValueError(f"Config key 'training.checkpoint_every' must be >= 0 (0: at epoch ends only), "
                         f"got {training['checkpoint_every']}.")
    validation = resolved["dataset"]["validation_classes"]
    if validation < 0 or (validation >= 1 and validation != int(validation)):
        raise ValueError(f"Config key 'dataset.validation_classes' must be 0 (no validation split), a fraction in "
                         f"(0, 1) or a whole number of training classes, got {validation}.")
    if training["cluster_timeout"] <= 0:
        raise ValueError(f"Config key 'training.cluster_timeout' must be > 0 (seconds a multi-worker start waits for "
                         f"the other workers), got {training['cluster_timeout']}.")
    if resolved["optimizer"]["learning_rate"] <= 0:
        raise ValueError("Config key 'optimizer.learning_rate' must be > 0.")
    if resolved["optimizer"]["weight_decay"] < 0:
        raise ValueError("Config key 'optimizer.weight_decay' must be >= 0.")
    _validate_model(resolved["model"])
    _validate_analysis(resolved["analysis"])
    validate_paper(resolved["paper"])
    sampler = resolved["sampler"]
    if sampler["name"] in EMBEDDED_SAMPLERS:  # tfdml.data.EmbeddedSampler
        try:
            check_classes_per_batch(sampler["batch_size"], sampler["samples_per_class"], math.inf)
        except ValueError as error:
            raise ValueError(f"Config keys 'sampler.batch_size' / 'sampler.samples_per_class': {error}") from None
        if sampler["candidates"] < 1:
            raise ValueError(f"Config key 'sampler.candidates' must be >= 1, got {sampler['candidates']}.")
        if sampler["pool_size"] < sampler["batch_size"]:
            raise ValueError(f"Config key 'sampler.pool_size' ({sampler['pool_size']}) must be >= "
                             f"'sampler.batch_size' ({sampler['batch_size']}).")
        if sampler["name"] != "gc" and sampler["pool_size"] % sampler["samples_per_class"]:
            raise ValueError(f"Config key 'sampler.pool_size' ({sampler['pool_size']}) must be divisible by "
                             f"'sampler.samples_per_class' ({sampler['samples_per_class']}).")
    else:
        try:  # the number of classes is checked against the data when it is loaded
            check_sampler_arguments(sampler["name"], sampler["batch_size"], sampler["samples_per_class"], math.inf)
        except ValueError as error:
            raise ValueError(f"Config keys 'sampler.batch_size' / 'sampler.samples_per_class': {error}") from None
    _validate_sharing(resolved)
    _validate_self_supervised(resolved)
    return resolved


def _validate_self_supervised(config):
    """`self_supervised.views` ≥ 2; when enabled: a batch of ≥ 2 whole images, a loss without class-indexed
    state, no Sharing Matters and no embedded (memory-bank) sampler."""
    section = config["self_supervised"]
    if section["views"] < 2:
        raise ValueError(f"Config key 'self_supervised.views' must be >= 2, got {section['views']}.")
    if not section["enabled"]:
        return
    batch_size, views = config["sampler"]["batch_size"], section["views"]
    if batch_size % views or batch_size // views < 2:
        raise ValueError(f"Config key 'sampler.batch_size' ({batch_size}) must be a multiple of "
                         f"'self_supervised.views' ({views}) holding at least two images.")
    from tfdml.losses.registry import get_class

    if "num_classes" in get_class(config["loss"]["name"]).config_args:
        raise ValueError(f"Config key 'self_supervised.enabled': loss {config['loss']['name']!r} learns class "
                         "proxies / weights, which instance labels do not fit; use a pair-based loss (ntxent, "
                         "supcon, vicreg, ...).")
    if config["sharing"] is not None:
        raise ValueError("Config keys 'self_supervised.enabled' and 'sharing' exclude each other.")
    if config["sampler"]["name"] in EMBEDDED_SAMPLERS:
        raise ValueError(f"Config key 'self_supervised.enabled': the embedded sampler "
                         f"{config['sampler']['name']!r} samples by class; self-supervised batches are drawn by "
                         "tfdml.data.ViewsSampler (set sampler.name to m_per_class, which is then not used).")


def _names_list(value, key, allow_null):
    """Raises unless `value` is a list of strings (or null when `allow_null`)."""
    if value is None and allow_null:
        return
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        expected = "a list of names" + (" or null" if allow_null else "")
        raise ValueError(f"Config key {key!r} must be {expected}, got {value!r}.")


def _validate_model(model):
    """Types of the `model` keys whose default is null or a list (the model checks the rest when built)."""
    _names_list(model["fc_names"], "model.fc_names", allow_null=True)
    if model["fc_names"] is not None and model["embedding_dim"] is None:
        raise ValueError("Config key 'model.fc_names' names fc layers, but 'model.embedding_dim' is null (no fc "
                         "layer, Vo & Hays NetD): set model.embedding_dim or model.fc_names=null.")
    _names_list(model["reinitialize"], "model.reinitialize", allow_null=False)
    if model["gray_to_rgb"] not in (None, True, False):
        raise ValueError(f"Config key 'model.gray_to_rgb' must be null (auto), true or false, "
                         f"got {model['gray_to_rgb']!r}.")


def _validate_analysis(analysis):
    _names_list(analysis["tap_metrics"], "analysis.tap_metrics", allow_null=False)
    unknown = [name for name in analysis["tap_metrics"] if name not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"Config key 'analysis.tap_metrics' has unknown metrics {unknown}; valid: {METRIC_NAMES}.")
    _names_list(analysis["taps"], "analysis.taps", allow_null=True)
    for key in ("every", "expansion_batches", "projector_points"):
        if analysis[key] < 1:
            raise ValueError(f"Config key 'analysis.{key}' must be >= 1, got {analysis[key]}.")
    if isinstance(analysis["projector_every"], bool) or not isinstance(analysis["projector_every"], int) \
            or analysis["projector_every"] < 0:
        raise ValueError("Config key 'analysis.projector_every' must be an integer >= 0 (0: off), got "
                         f"{analysis['projector_every']!r}.")


def _validate_sharing(config):
    """The `sharing` section and `model.heads` agree and hold valid numbers."""
    sharing, heads = config["sharing"], config["model"]["heads"]
    if sharing is None:
        if heads is not None:
            raise ValueError("Config key 'model.heads' is set, but 'sharing' is null: a multi-head model trains with "
                             "Sharing Matters (set a 'sharing' section) — or use model.embedding_dim.")
        return
    if not isinstance(heads, dict) or not {"class", "shared"} <= set(heads):
        raise ValueError(f"Config key 'sharing' needs 'model.heads' with heads 'class' and 'shared' (e.g. "
                         f"{{class: 128, shared: 128}}) and 'model.embedding_dim: null'; got model.heads={heads!r}.")
    if sharing["gamma"] < 0:
        raise ValueError(f"Config key 'sharing.gamma' must be >= 0, got {sharing['gamma']}.")
    for key, minimum in (("regressor_units", 1), ("groups", 0), ("regroup_every", 1)):
        if sharing[key] < minimum:
            raise ValueError(f"Config key 'sharing.{key}' must be >= {minimum}, got {sharing[key]}.")
    if sharing["mode"] not in ("sharing", "shared_only", "both"):
        raise ValueError(f"Config key 'sharing.mode' must be 'sharing', 'shared_only' or 'both', got "
                         f"{sharing['mode']!r}.")
    if sharing["groups"] == 1:
        raise ValueError("Config key 'sharing.groups' must be 0 (shared triplets) or >= 2 (grouping variant).")
    if config["sampler"]["name"] in EMBEDDED_SAMPLERS:
        raise ValueError(f"Config key 'sampler.name' ({config['sampler']['name']!r}) draws from a memory bank, which "
                         "Sharing Matters (section 'sharing') does not use: choose a label sampler.")


def load_config(path=None, overrides=()):
    """Loads a YAML config (or the defaults), applies `key=value` overrides, validates.

    Args:
        path: YAML file or name of a shipped config (see `find_config`), or None
            for `DEFAULT_CONFIG`.
        overrides: iterable of "dotted.key=value" strings (values parsed as YAML 1.2).

    Returns:
        The resolved config dict.
    """
    config = {}
    if path is not None:
        path = find_config(path)
        with open(path) as handle:
            text = handle.read()
        config = load_yaml(text, source=path) or {}
        if not isinstance(config, dict):
            raise ValueError(f"Config file {path!r} must contain a mapping.")
        if PAPER_CONFIG_MARKER in text and isinstance(config.get("dataset"), dict):
            config["dataset"].setdefault("validation_classes", 0.0)  # the papers select on the test split
    config = validate(config)
    update, keys = {}, []
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(update, key, value)
        keys.append(key)
    _keep_free_form_keys(config, update, keys)
    return validate(_merge(config, update)) if update else config


def _keep_free_form_keys(config, update, keys):
    """An override of one key of a free-form mapping (`loss.params.margin=0.1`) changes that key only.

    Free-form mappings are replaced whole by a config file or a mapping-valued
    override (`loss.params={margin: 0.1}`); a dotted override into one merges
    into its current value — unless the same overrides change the loss `name`,
    which starts from the new loss's own defaults.
    """
    for free_form in _FREE_FORM:
        if not any(key.startswith(free_form + ".") for key in keys) or free_form in keys:
            continue
        section_path, leaf = free_form.rsplit(".", 1)
        section, new_section = config, update
        for part in section_path.split("."):
            section = section.get(part) if isinstance(section, dict) else None
            new_section = new_section.get(part, {}) if isinstance(new_section, dict) else {}
        if not isinstance(section, dict) or new_section.get("name", section.get("name")) != section.get("name"):
            continue
        new_section[leaf] = {**section.get(leaf, {}), **new_section[leaf]}


def save_config(config, path):
    """Writes a resolved config as YAML, keys in their order.

    Args:
        config: The config dictionary (as returned by `load_config`).
        path: Path of the YAML file to write.
    """
    with open(path, "w") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
