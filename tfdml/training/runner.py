"""`run(config)`: the whole training job behind `train.py`.

Training goes through `tfdml.training.TrainingLoop` for every strategy (one
device, `MirroredStrategy`, `MultiWorkerMirroredStrategy`). The run directory
(`output_dir`) receives, from the chief worker only: `config.yaml` (resolved
config), `log.csv` (per-epoch losses and validation metrics), `tensorboard/`
(when the optional tensorboard package is installed), `checkpoints/`
(`tf.train` checkpoints every `training.checkpoint_every` steps and at each
epoch end: a killed run, restarted with the same command, resumes from the
latest one with the same batches; `best.json` there records the best score),
`best.keras` (best Recall@1 of the first tap on the validation split — the
training classes held out by `dataset.validation_classes` — or, without one, on
the test split; never replaced by a worse epoch, also across resumes),
`final.keras`, `metrics.json` (test metrics of the final weights per tap, with
"weights", "split" and "best.keras" saying what they are, and under
"best_epoch" the metrics of the epoch best.keras was selected at, read from
log.csv, with the split they were measured on — the test split for the paper
configs, whose papers report that epoch; see `best_epoch_metrics`),
`skipped_files.txt` (files the dataset loader left out, when any),
`saved_model/` (serving export of `training.export_tap`)
and, while the run lives, `.lock` (see `tfdml.training.run_directory`). A
`backup/` directory left by an interrupted run of an older tfdml
(`keras.callbacks.BackupAndRestore`) is migrated into `checkpoints/`.
"""
import importlib.util
import json
import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from tfdml import losses
from tfdml.analysis import ExpansionMonitor, TapRecallHistory
from tfdml.analysis.projector import EmbeddingProjector
from tfdml.analysis.retrieval_examples import RetrievalExamples
from tfdml.data import EMBEDDED_SAMPLERS, EmbeddedSampler, MemoryBank, ViewsSampler, eval_pipeline, load_split, \
    train_pipeline, unlabeled_folder
from tfdml.data.datasets import check_files
from tfdml.data.self_supervised import is_unlabeled_folder
from tfdml.expansion import EmbeddingExpansion
from tfdml.metrics import RetrievalEvaluation, embed, evaluate_embeddings, format_table
from tfdml.metrics.evaluate import tap_embedder
from tfdml.models.export import export
from tfdml.models import EmbeddingModel
from tfdml.training.backup import migrate_backup
from tfdml.training.callbacks import BestModelCheckpoint, ResumableCSVLogger
from tfdml.training.config import DEFAULT_CONFIG, save_config, validate
from tfdml.training.sharing import SharingTrainingLoop, sharing_training
from tfdml.training.hooks import MemoryBankHook
from tfdml.training.inputs import train_input
from tfdml.training.loop import TrainingLoop
from tfdml.weights.sources import imagenet_source
from tfdml.training.optimizers import exclude_loss_state_from_decay, make_optimizer
from tfdml.training.paper import PAPER_KEY, comparison_record
from tfdml.training.run_directory import RunDirectory, RunDirectoryError
from tfdml.training.strategy import describe, gather_over_replicas, is_chief, make_strategy


def build_loss(config, num_classes=None):
    """The configured loss, with Embedding Expansion when `expansion` is set.

    Args:
        config: validated config.
        num_classes: number of training classes; passed as `num_classes` to
            losses that take it (proxy losses, per-class margin β) unless
            `loss.params` sets it.
    """
    params = dict(config["loss"]["params"])
    cls = losses.get_class(config["loss"]["name"])
    if config["expansion"] is not None:
        try:  # built even for n_points <= 0, so that invalid values are rejected, not silently ignored
            expansion = EmbeddingExpansion(**config["expansion"])
        except ValueError as error:
            raise ValueError(f"Config section 'expansion': {error}") from None
        if expansion.n_points > 0:
            if not cls.supports_expansion:
                raise ValueError(f"Config key 'expansion' is set, but loss {config['loss']['name']!r} does not "
                                 "support Embedding Expansion; set 'expansion: null' (--set expansion=null).")
            params["expansion"] = expansion
    if num_classes is not None and "num_classes" in cls.config_args:
        params.setdefault("num_classes", int(num_classes))
    return losses.get(config["loss"]["name"], **params)


def apply_sharing(config, loss, train_split):
    """Sharing Matters set-up (config section `sharing`; a no-op when it is null).

    Returns `(loss, train_data, callbacks, updates_per_step)`: `(loss, None, [], 1)`
    without `sharing`; otherwise the `tfdml.sharing.SharingObjective` wrapping
    `loss` (compile the two-head model with it), the `TrainingLoop` input of
    (B, B*) batch pairs, the re-grouping callback of the grouping variant and 2
    (Algorithm 1 makes two optimizer updates per step). Call under the
    strategy scope.
    """
    if config["sharing"] is None:
        return loss, None, [], 1
    return tuple(sharing_training(config, loss, train_split))


def build_model(config):
    """The configured `EmbeddingModel` (`model` section; input `dataset.image_size` × `dataset.channels`).

    Raises:
        ValueError: naming the config key — a `model` argument the model refuses
            (e.g. an unknown layer in `model.reinitialize`), or a tap of
            `training.taps`, `training.export_tap` or `analysis.taps` the model
            does not have (e.g. "fc" with `model.embedding_dim: null`).
    """
    size, channels = config["dataset"]["image_size"], config["dataset"]["channels"]
    warn_random_backbone(config["model"])
    try:
        model = EmbeddingModel(input_shape=(size, size, channels), **config["model"])
    except ValueError as error:
        raise ValueError(f"Config section 'model' (EmbeddingModel arguments; input {size}x{size}x{channels} from "
                         f"dataset.image_size / dataset.channels): {error}") from None
    check_taps(config, model)
    return model


def warn_random_backbone(model_config):
    """Warns (one line) when a backbone that has a published ImageNet checkpoint starts from random weights."""
    backbone = model_config.get("backbone")
    if model_config.get("weights") is None and imagenet_source(backbone) is not None:
        warnings.warn(f"backbone {backbone} starts from random weights (model.weights: null); the papers start "
                      f"from ImageNet: model.weights: imagenet loads {imagenet_source(backbone).name}.",
                      stacklevel=2)


def check_taps(config, model):
    """Raises a ValueError naming the config key if a configured tap is not one of `model`'s taps."""
    heads, available = list(model.taps), list(model.taps) + list(model.block_taps)
    wanted = [("training.taps", config["training"]["taps"], heads),
              ("training.export_tap", [config["training"]["export_tap"]], available),
              ("analysis.taps", config["analysis"]["taps"] or [], available)]
    for key, taps, allowed in wanted:
        unknown = [tap for tap in taps if tap not in allowed]
        if unknown:
            raise ValueError(f"Config key {key!r}: the model has no tap {unknown}; its taps are {allowed} "
                             f"(head taps {heads}).")


def load_splits(config):
    """(train split, test split) of the configured dataset (`dataset.channels`: 3 RGB, 1 gray).

    Self-supervised runs (`self_supervised.enabled`) on `dataset.name: folder` with an unlabeled folder (see
    `tfdml.data.self_supervised.is_unlabeled_folder`): (all its images, None) — no test split.
    """
    data = config["dataset"]
    if (config["self_supervised"]["enabled"] and data["name"] == "folder" and data["data_dir"] is not None
            and os.path.isdir(data["data_dir"]) and is_unlabeled_folder(data["data_dir"])):
        return check_files(unlabeled_folder(data["data_dir"], data["channels"]), "train", data["skip_corrupt"]), None
    return [load_split(data["name"], split, data["data_dir"], strict=data["strict"], image_size=data["image_size"],
                       channels=data["channels"], skip_corrupt=data["skip_corrupt"])
            for split in ("train", "test")]


def validation_split(config, train_split):
    """(training split, validation split or None): the last classes of the training split held out.

    `dataset.validation_classes`: 0 — no validation split; a fraction in (0, 1)
    of the training classes (rounded, at least 2); or a count. The held-out
    classes are the last ones of the training split (by class id), so the
    validation split is class-disjoint from the training and the test classes.

    Raises:
        ValueError: naming the key, when fewer than 2 training classes would remain.
    """
    amount = config["dataset"]["validation_classes"]
    if not amount:
        return train_split, None
    classes = train_split.num_classes
    count = max(2, int(round(amount * classes))) if amount < 1 else int(amount)
    if classes - count < 2:
        raise ValueError(f"Config key 'dataset.validation_classes' ({amount}) holds out {count} of the "
                         f"{classes} training classes, leaving fewer than 2 to train on; lower it (0: no "
                         "validation split).")
    held_out = train_split.labels >= classes - count
    return train_split.subset(~held_out), train_split.subset(held_out, name=f"{train_split.name} validation")


def model_selection(validation):
    """What best.keras (the best epoch) is selected on: "best-by-validation" or "best-on-test"."""
    return "best-by-validation" if validation is not None else "best-on-test"


def write_skipped(run_dir, splits):
    """Writes `skipped_files.txt` (tab-separated split, path, reason) when the loader left files out."""
    rows = [(name, path, reason) for name, split in splits.items() if split is not None
            for path, reason in split.skipped]
    if not rows:
        return None
    path = os.path.join(run_dir, "skipped_files.txt")
    with open(path, "w") as handle:
        handle.writelines(f"{name}\t{file}\t{reason}\n" for name, file, reason in rows)
    print(f"skipped {len(rows)} files or folders of the dataset (listed in {path}).")
    return path


def analysis_callbacks(config, train_split, test_data, test_split=None, run_dir=None):
    """The chief's callbacks of the `analysis` section (see `tfdml.training.config`); [] when it is off.

    - `analysis.tap_metrics`: a `tfdml.analysis.TapRecallHistory` over the whole
      training split (test-time preprocessing) and `test_data`.
    - `analysis.expansion_recall`: a `tfdml.analysis.ExpansionMonitor` (EE Fig. 3)
      on `analysis.expansion_batches` fixed batches of the training split drawn
      by the "m_per_class" sampler (`sampler.batch_size`, `sampler.samples_per_class`)
      with test-time preprocessing.
    - `analysis.projector_every`: a `tfdml.analysis.projector.EmbeddingProjector` on
      `test_split` writing into `<run_dir>/tensorboard/projector`.
    """
    analysis, data = config["analysis"], config["dataset"]
    callbacks = []
    if analysis["projector_every"]:
        if test_split is None or run_dir is None:
            raise ValueError("Config key 'analysis.projector_every' needs the test split and the run directory.")
        callbacks.append(EmbeddingProjector(test_split, os.path.join(run_dir, "tensorboard", "projector"),
                                           data["image_size"], every=analysis["projector_every"],
                                           taps=config["training"]["taps"], max_points=analysis["projector_points"],
                                           seed=config["seed"], augmentation=config["augmentation"]["test"],
                                           batch_size=config["training"]["eval_batch_size"]))
    if analysis["tap_metrics"]:
        train_data = eval_pipeline(train_split, config["training"]["eval_batch_size"], data["image_size"],
                                   config["augmentation"]["test"])
        callbacks.append(TapRecallHistory({"train": train_data, "test": test_data}, taps=analysis["taps"],
                                          metrics=analysis["tap_metrics"], every=analysis["every"]))
    if analysis["expansion_recall"]:
        expansion = EmbeddingExpansion(**(config["expansion"] or DEFAULT_CONFIG["expansion"]))
        sampler = config["sampler"]
        try:
            batches = train_pipeline(train_split, sampler["batch_size"], "m_per_class", sampler["samples_per_class"],
                                     config["augmentation"]["test"], data["image_size"], seed=config["seed"])
        except ValueError as error:
            raise ValueError(f"Config key 'analysis.expansion_recall' draws its batches with sampler.batch_size / "
                             f"sampler.samples_per_class: {error}") from None
        callbacks.append(ExpansionMonitor(batches.take(analysis["expansion_batches"]), expansion,
                                          every=analysis["every"]))
    return callbacks


def make_train_input(config, train_split, bank=None):
    """The `TrainingLoop.fit` input: the configured sampler's global batches, split over replicas.

    With a memory bank (embedded samplers) batches are `(images, labels, indices)`
    and drawn by an `EmbeddedSampler` reading the bank. Self-supervised runs
    (`self_supervised.enabled`): the batches of `tfdml.data.self_supervised_pipeline`
    (`views` augmented views of each image, labelled by instance).
    """
    sampler = config["sampler"]
    if config["self_supervised"]["enabled"]:
        views = config["self_supervised"]["views"]
        ids = np.arange(train_split.num_images, dtype=np.int32)
        return train_input(train_split, sampler["batch_size"], sampler=ViewsSampler(views), samples_per_class=views,
                           augmentation=config["augmentation"]["train"], image_size=config["dataset"]["image_size"],
                           seed=config["seed"], relabel=lambda: ids)
    return train_input(train_split, sampler["batch_size"], sampler=make_sampler(config, bank),
                       samples_per_class=sampler["samples_per_class"], augmentation=config["augmentation"]["train"],
                       image_size=config["dataset"]["image_size"], seed=config["seed"], with_indices=bank is not None)


def make_memory_bank(config, train_split, strategy=None, embedding_dim=None):
    """A `MemoryBank` (N_train × the model's embedding width) for an embedded sampler, else None.

    `embedding_dim`: the model's width (default `model.embedding_dim`; needed when that is null).
    """
    if config["sampler"]["name"] not in EMBEDDED_SAMPLERS:
        return None
    return MemoryBank(train_split.num_images, embedding_dim or config["model"]["embedding_dim"], strategy)


def make_sampler(config, bank):
    """`train_pipeline`'s sampler: the configured name, or an `EmbeddedSampler` reading `bank`."""
    sampler = config["sampler"]
    if bank is None:
        return sampler["name"]
    return EmbeddedSampler(sampler["name"], bank, pool_size=sampler["pool_size"], candidates=sampler["candidates"],
                           cost=sampler["ddm_cost"])


def memory_bank_hooks(config, bank, train_split):
    """`TrainingLoop` hooks that fill `bank` when training starts (after any resume) and update it every
    step (`[]` without a bank)."""
    if bank is None:
        return []
    fill_data = eval_pipeline(train_split, config["training"]["eval_batch_size"], config["dataset"]["image_size"],
                              config["augmentation"]["test"])
    return [MemoryBankHook(bank, fill_data)]


def monitored_metric(config):
    """The epoch-log key that selects the best model: `val_<first tap>_recall@1`, or `val_recall@1`
    for a config without taps."""
    taps = config["training"]["taps"]
    return f"val_{taps[0]}_recall@1" if taps else "val_recall@1"


def make_callbacks(config, run_dir, eval_data, analysis=(), eval_split=None):
    """The chief's callbacks: evaluation on `eval_data` (the validation split, or the test split without one:
    log.csv's "val_*" columns), best model, `analysis` (their values reach log.csv), log.csv, TensorBoard (with
    `eval_split`, the split `eval_data` embeds in order, each evaluation also logs retrieval examples of that
    split to tensorboard/retrieval)."""
    training = config["training"]
    examples = None
    if training["tensorboard"] and eval_split is not None and importlib.util.find_spec("tensorboard") is not None:
        examples = RetrievalExamples(eval_split, os.path.join(run_dir, "tensorboard", "retrieval"))
    callbacks = [] if eval_data is None else [  # None: no labelled split to evaluate on (unlabeled folder)
        RetrievalEvaluation(eval_data, every=training["eval_every"], ks=training["ks"], metrics=("recall", "nmi"),
                            taps=training["taps"], examples=examples),
        BestModelCheckpoint(os.path.join(run_dir, "best.keras"), monitored_metric(config), mode="max",
                            record=os.path.join(run_dir, "checkpoints", "best.json")),
    ]
    callbacks += [
        *analysis,
        ResumableCSVLogger(os.path.join(run_dir, "log.csv")),
    ]
    if training["tensorboard"]:
        if importlib.util.find_spec("tensorboard") is None:
            warnings.warn("training.tensorboard is on but the tensorboard package is not installed "
                          "(`pip install tensorboard`); TensorBoard logging is skipped.")
        else:
            callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard")))
    return callbacks


def evaluate_taps(model, test_data, taps, ks):
    """{tap: metrics dict} on the test data (Recall@K and NMI)."""
    results = {}
    for tap in taps:
        embeddings, labels = embed(tap_embedder(model, tap), test_data)
        results[tap] = evaluate_embeddings(embeddings, labels, ks=ks, metrics=("recall", "nmi"))
    return results


def report_taps(model, config):
    """The taps evaluated at the end of a run: `training.taps`, or the model's last head tap."""
    return config["training"]["taps"] or [model.taps[-1]]


def evaluate_untrained(config, model, test_data):
    """Test metrics of the freshly initialised model (`untrained_metrics.json`), the baseline the final
    table prints beside the trained model; None when `training.evaluate_untrained` is off.

    Call before training starts: the model is built from `seed`, so after a resume the same initial
    weights are rebuilt — the file is reused when it exists.
    """
    if not config["training"]["evaluate_untrained"] or test_data is None:
        return None
    path = os.path.join(config["output_dir"], "untrained_metrics.json")
    if os.path.exists(path):
        with open(path) as handle:
            return json.load(handle)
    results = evaluate_taps(model, test_data, report_taps(model, config), config["training"]["ks"])
    with open(path, "w") as handle:
        json.dump(results, handle, indent=2)
    return results


def results_table(results, ks, untrained=None):
    """`format_table` of the final metrics; with `untrained`, rows "untrained <tap>" and "trained <tap>"."""
    if untrained is None:
        return format_table(results, ks)
    rows = {}
    for tap in results:
        if tap in untrained:
            rows[f"untrained {tap}"] = untrained[tap]
        rows[f"trained {tap}"] = results[tap]
    return format_table(rows, ks)


#: Key of `metrics.json` holding the best epoch's metrics beside the final ones (one entry per tap).
BEST_EPOCH = "best_epoch"


def best_epoch_metrics(log_path, monitor, taps):
    """The evaluated metrics of the epoch of log.csv with the highest `monitor` (the first such epoch).

    Args:
        log_path: the run's log.csv.
        monitor: the column selecting the epoch, e.g. "val_fc_recall@1" (`monitored_metric`).
        taps: the taps whose "val_{tap}_{metric}" columns are returned.

    Returns:
        {"epoch": log.csv's (0-based) epoch, "monitor": monitor, "metrics": {tap: {metric: value}}}, or None
        when no epoch has a `monitor` value (no evaluation happened).
    """
    import csv
    import math

    if not os.path.exists(log_path):
        return None
    with open(log_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    best, best_value = None, -math.inf
    for row in rows:
        text = row.get(monitor)
        value = float(text) if text not in (None, "") else math.nan
        if not math.isnan(value) and value > best_value:
            best, best_value = row, value
    if best is None:
        return None
    per_tap = monitor != "val_recall@1"  # "val_{tap}_{metric}" columns; else one tap, "val_{metric}"
    metrics = {}
    for tap in taps:
        prefix = f"val_{tap}_" if per_tap else "val_"
        metrics[tap] = {key[len(prefix):]: float(value) for key, value in best.items()
                        if key.startswith(prefix) and value not in (None, "")
                        and (per_tap or "_" not in key[len(prefix):])}
    return {"epoch": int(best["epoch"]), "monitor": monitor, "metrics": metrics}


def describe_weights(config, selection):
    """{"weights", "split", "best.keras"}: what the final table and `metrics.json` report."""
    if selection == "best-by-validation":
        best = (f"best-by-validation: the epoch with the best validation {monitored_metric(config)[4:]} "
                f"(dataset.validation_classes: {config['dataset']['validation_classes']})")
    else:
        best = (f"best-on-test: the epoch with the best test {monitored_metric(config)[4:]} (no validation split; "
                "the papers' protocol, optimistic for unseen classes)")
    return {"weights": "final (last epoch)", "split": "test", "best.keras": best}


def finish(config, model, test_data, untrained=None, selection="best-on-test"):
    """The chief's last steps: `final.keras`, test metrics of the final weights (printed beside the `untrained`
    baseline when given, and written to `metrics.json` with what they are, see `describe_weights`, and the
    best epoch's, `best_epoch_metrics`), the "paper vs this run" table of a config with a `paper` section
    (printed, in `metrics.json` under `paper_vs_run` and in `paper_vs_run.md`; `tfdml.training.paper`),
    SavedModel. Returns the metrics per tap."""
    run_dir, training = config["output_dir"], config["training"]
    model.save(os.path.join(run_dir, "final.keras"))
    if test_data is None:  # a self-supervised run on an unlabeled folder: nothing to evaluate on
        print("No labelled test split (unlabeled folder): the final weights are not evaluated.")
        with open(os.path.join(run_dir, "metrics.json"), "w") as handle:
            json.dump({"weights": "final (last epoch)", "split": None, "best.keras": None,
                       "note": "self-supervised run on an unlabeled folder: no labelled test split"}, handle, indent=2)
        export(model, os.path.join(run_dir, "saved_model"), tap=training["export_tap"])
        print(f"run directory: {run_dir}")
        return {}
    results = evaluate_taps(model, test_data, report_taps(model, config), training["ks"])
    about = describe_weights(config, selection)
    print(f"Test split, final weights (last epoch); best.keras is {about['best.keras']}.")
    print(results_table(results, training["ks"], untrained))
    best = best_epoch_metrics(os.path.join(run_dir, "log.csv"), monitored_metric(config), list(results))
    if best is not None:
        best["split"] = "validation" if selection == "best-by-validation" else "test"
    written = {**results, BEST_EPOCH: best}
    comparison = comparison_record(config, results)
    if comparison is not None:  # a paper config: its reported numbers beside this run's
        print(comparison["text"])
        written[PAPER_KEY] = comparison
        with open(os.path.join(run_dir, f"{PAPER_KEY}.md"), "w") as handle:
            handle.write(comparison["text"] + "\n")
    with open(os.path.join(run_dir, "metrics.json"), "w") as handle:
        json.dump({**about, **written}, handle, indent=2)
    export(model, os.path.join(run_dir, "saved_model"), tap=training["export_tap"])
    print(f"run directory: {run_dir}")
    return results


def run(config, callbacks=(), verbose=2, overwrite=False, allow_config_change=False):
    """Trains and evaluates as configured; returns the final metrics per tap.

    Under `MultiWorkerMirroredStrategy` every worker runs this with the same
    config; the chief writes the run directory and returns the metrics, the
    other workers return None. The chief holds the run directory
    (`tfdml.training.RunDirectory`): one run at a time, a finished run is not
    trained again unless `overwrite`, a killed one resumes, and a directory
    created by a start that fails before training is removed again.

    Args:
        config: a config dict (validated here).
        callbacks: extra Keras callbacks (run on every worker).
        verbose: progress verbosity (0, 1, 2), printed by the chief.
        overwrite: delete a finished run in `output_dir` and train again.
        allow_config_change: resume a killed run although `config` differs
            from its `config.yaml` (recorded in the run directory; see
            `tfdml.training.RunDirectory`).

    Returns:
        dict {tap: {"recall@K": ..., "nmi": ...}} (None on non-chief workers).

    Raises:
        RunDirectoryError: `output_dir` is in use by another run, holds a
            finished run and `overwrite` is False, or holds a killed run of
            another config and `allow_config_change` is False.
    """
    config = validate(config)
    run_dir = config["output_dir"]
    training = config["training"]
    determinism = enable_determinism() if training["deterministic"] else None
    keras.utils.set_random_seed(config["seed"])
    if training["mixed_precision"]:
        keras.mixed_precision.set_global_policy("mixed_float16")
    directory, failed = None, True
    try:
        strategy = make_strategy(training["strategy"], cluster_timeout=training["cluster_timeout"])
        chief = is_chief(strategy)
        directory = (take_run_directory(strategy, run_dir, overwrite, config, allow_config_change) if chief
                     else take_run_directory(strategy))
        if chief:
            save_config(config, os.path.join(run_dir, "config.yaml"))
        train_split, test_split = load_splits(config)
        if chief:
            write_skipped(run_dir, {"train": train_split, "test": test_split})
        if test_split is None:  # a self-supervised run on an unlabeled folder: no evaluation
            validation, test_data = None, None
            if any(config["analysis"][key] for key in ("tap_metrics", "expansion_recall", "projector_every")):
                raise ValueError("The 'analysis' section needs labelled data, but dataset.data_dir is an unlabeled "
                                 "folder (self-supervised run): switch the analysis off.")
        else:
            train_split, validation = validation_split(config, train_split)
            test_data = eval_pipeline(test_split, training["eval_batch_size"], config["dataset"]["image_size"],
                                      config["augmentation"]["test"])
        selection_data = test_data if validation is None else eval_pipeline(
            validation, training["eval_batch_size"], config["dataset"]["image_size"], config["augmentation"]["test"])
        if chief and verbose:
            held_out = f"validation: {validation}  " if validation is not None else ""
            print(f"train: {train_split}  {held_out}test: {test_split}  strategy: {describe(strategy)}")
            if test_split is None:
                print("no labelled test split (unlabeled folder, self-supervised): no evaluation and no best.keras")
            else:
                print(f"val_* metrics and best.keras: {'validation' if validation is not None else 'test'} split "
                      f"({model_selection(validation)})")
            if config["self_supervised"]["enabled"]:
                views = config["self_supervised"]["views"]
                print(f"self-supervised: {config['sampler']['batch_size'] // views} images per batch, {views} "
                      f"augmented views each ({config['augmentation']['train']}), labelled by instance")
        with strategy.scope():
            model = build_model(config)
            loss = build_loss(config, train_split.num_classes)
            loss, train_data, extra, updates = apply_sharing(config, loss, train_split)
            optimizer = make_optimizer(config, training["steps_per_epoch"] * updates)
            model.compile(optimizer=optimizer, loss=loss, jit_compile=training["jit_compile"])
            exclude_loss_state_from_decay(optimizer, model)
        untrained = evaluate_untrained(config, model, test_data) if chief else None
        bank = make_memory_bank(config, train_split, strategy, model.embedding_dim)
        loop_class = TrainingLoop if config["sharing"] is None else SharingTrainingLoop
        loop = loop_class(model, strategy=strategy, hooks=memory_bank_hooks(config, bank, train_split))
        migrate_backup(run_dir, loop, training["steps_per_epoch"], monitored_metric(config))
        loop.fit(train_data if config["sharing"] is not None else make_train_input(config, train_split, bank),
                 epochs=training["epochs"], steps_per_epoch=training["steps_per_epoch"],
                 callbacks=(make_callbacks(config, run_dir, selection_data,
                                           analysis_callbacks(config, train_split, test_data, test_split, run_dir),
                                           test_split if validation is None else validation)
                            if chief else []) + list(callbacks) + extra,
                 verbose=verbose, checkpoint_dir=os.path.join(run_dir, "checkpoints"),
                 checkpoint_every=training["checkpoint_every"])
        results = finish(config, model, test_data, untrained, model_selection(validation)) if chief else None
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            gather_over_replicas(strategy, 0)  # the workers exit together, after the chief's files are written
        failed = False
        return results
    finally:
        if directory is not None:
            directory.release(failed=failed)
        if training["mixed_precision"]:
            keras.mixed_precision.set_global_policy("float32")
        if determinism is not None:
            determinism()


def take_run_directory(strategy, run_dir=None, overwrite=False, config=None, allow_config_change=False):
    """The chief's `RunDirectory` hold on `run_dir` (None on other workers).

    Call on every worker (the chief with `run_dir`): under
    `MultiWorkerMirroredStrategy` all workers learn whether the chief got the
    directory and all raise if it did not.
    """
    directory, error = None, None
    if run_dir is not None:
        try:
            directory = RunDirectory(run_dir, overwrite, config, allow_config_change).acquire()
        except RunDirectoryError as caught:
            error = caught
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        if gather_over_replicas(strategy, int(error is not None)).any() and error is None:
            if directory is not None:
                directory.release()
            raise RunDirectoryError("The chief worker could not take the run directory (see its log).")
    if error is not None:
        raise error
    return directory


def enable_determinism():
    """Turns TensorFlow's op determinism on (`training.deterministic`); returns a function undoing it."""
    from tensorflow.python.framework import config as framework_config  # no public getter / disable in TF 2.16+

    if framework_config.is_op_determinism_enabled():
        return lambda: None
    tf.config.experimental.enable_op_determinism()
    return framework_config.disable_op_determinism
