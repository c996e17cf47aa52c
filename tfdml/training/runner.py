"""`run(config)`: the whole training job behind `train.py`.

The run directory (`output_dir`) receives: `config.yaml` (resolved config),
`log.csv` (per-epoch losses and validation metrics), `tensorboard/` (when the
optional tensorboard package is installed),
`backup/` (`keras.callbacks.BackupAndRestore`: a killed run resumes at the epoch
where it stopped), `best.keras` (best validation Recall@1 of the first tap),
`final.keras`, `metrics.json` (final test metrics per tap) and `saved_model/`
(serving export of `training.export_tap`).
"""
import importlib.util
import json
import os
import warnings

import keras
import tensorflow as tf

import tfdml
from tfdml.metrics import RetrievalEvaluation, embed, evaluate_embeddings
from tfdml.training.config import save_config, validate
from tfdml.training.optimizers import make_optimizer
from tfdml.training.strategy import make_strategy


def build_loss(config, num_classes=None):
    """The configured loss, with Embedding Expansion when `expansion` is set.

    Args:
        config: validated config.
        num_classes: number of training classes; passed as `num_classes` to
            losses that take it (proxy losses, per-class margin β) unless
            `loss.params` sets it.
    """
    params = dict(config["loss"]["params"])
    cls = tfdml.losses.get_class(config["loss"]["name"])
    if config["expansion"] is not None and config["expansion"]["n_points"] > 0:
        if not cls.supports_expansion:
            raise ValueError(f"Config key 'expansion' is set, but loss {config['loss']['name']!r} does not support "
                             "Embedding Expansion; set 'expansion: null' (--set expansion=null).")
        params["expansion"] = tfdml.EmbeddingExpansion(**config["expansion"])
    if num_classes is not None and "num_classes" in cls.config_args:
        params.setdefault("num_classes", int(num_classes))
    return tfdml.losses.get(config["loss"]["name"], **params)


def fit_model(model, strategy, data, **kwargs):
    """`model.fit(data, **kwargs)`, with a clear error for an upstream limitation: Keras 3's
    `fit` fails under `MultiWorkerMirroredStrategy` (keras-team/keras#20585)."""
    try:
        return model.fit(data, **kwargs)
    except ValueError as error:
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            raise RuntimeError(
                "model.fit failed under MultiWorkerMirroredStrategy (training.strategy / TF_CONFIG): Keras 3's "
                "fit does not support it yet (keras-team/keras#20585). Train on one machine with "
                "training.strategy=mirrored over its GPUs.") from error
        raise


def apply_sharing(config, loss, train_split, train_data):
    """Sharing Matters hook (config section `sharing`; a no-op when it is null).

    Returns `(loss, train_data, callbacks, updates_per_step)`: unchanged with
    `[]` and 1 without `sharing`; otherwise the `tfdml.sharing.SharingObjective`
    wrapping `loss` (compile the two-head model with it), the dataset of
    (B, B*) batch pairs, the re-grouping callback of the grouping variant and 2
    (Algorithm 1 makes two optimizer updates per step). Call under the
    strategy scope.
    """
    if config["sharing"] is None:
        return loss, train_data, [], 1
    from tfdml.sharing.training import sharing_training

    return tuple(sharing_training(config, loss, train_split))


def build_model(config):
    size = config["dataset"]["image_size"]
    return tfdml.models.EmbeddingModel(input_shape=(size, size, 3), **config["model"])


def load_data(config):
    """(train split, test split, train dataset, test dataset)."""
    data = config["dataset"]
    splits = [tfdml.data.load_split(data["name"], split, data["data_dir"], strict=data["strict_counts"],
                                    image_size=data["image_size"]) for split in ("train", "test")]
    sampler = config["sampler"]
    train = tfdml.data.train_pipeline(
        splits[0], batch_size=sampler["batch_size"], sampler=sampler["name"],
        samples_per_class=sampler["samples_per_class"], augmentation=config["augmentation"]["train"],
        image_size=data["image_size"], seed=config["seed"])
    test = tfdml.data.eval_pipeline(splits[1], config["training"]["eval_batch_size"], data["image_size"],
                                    config["augmentation"]["test"])
    return splits[0], splits[1], train, test


def make_callbacks(config, run_dir, test_data, extra=()):
    training = config["training"]
    taps = training["taps"]
    evaluation = RetrievalEvaluation(test_data, every=training["eval_every"], ks=training["ks"],
                                     metrics=("recall", "nmi"), taps=taps)
    monitor = f"val_{taps[0]}_recall@1" if taps else "val_recall@1"
    callbacks = [
        evaluation,
        keras.callbacks.ModelCheckpoint(os.path.join(run_dir, "best.keras"), monitor=monitor, mode="max",
                                        save_best_only=True),
        keras.callbacks.BackupAndRestore(os.path.join(run_dir, "backup")),
        keras.callbacks.CSVLogger(os.path.join(run_dir, "log.csv"), append=True),
        *extra,
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
        embeddings, labels = embed(model.embedder(tap), test_data)
        results[tap] = evaluate_embeddings(embeddings, labels, ks=ks, metrics=("recall", "nmi"))
    return results


def format_table(results, ks):
    header = ["tap"] + [f"R@{k}" for k in ks] + ["NMI"]
    rows = [header] + [[tap] + [f"{100 * m[f'recall@{k}']:.2f}" for k in ks] + [f"{100 * m['nmi']:.2f}"]
                       for tap, m in results.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(" | ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)


def run(config, callbacks=(), verbose=2):
    """Trains and evaluates as configured; returns the final metrics per tap.

    Args:
        config: a config dict (validated here).
        callbacks: extra Keras callbacks.
        verbose: `model.fit` verbosity.

    Returns:
        dict {tap: {"recall@K": ..., "nmi": ...}}.
    """
    config = validate(config)
    run_dir = config["output_dir"]
    os.makedirs(run_dir, exist_ok=True)
    save_config(config, os.path.join(run_dir, "config.yaml"))
    keras.utils.set_random_seed(config["seed"])
    training = config["training"]
    if training["mixed_precision"]:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        strategy = make_strategy(training["strategy"])
        train_split, test_split, train_data, test_data = load_data(config)
        print(f"train: {train_split}  test: {test_split}")
        with strategy.scope():
            model = build_model(config)
            loss = build_loss(config, train_split.num_classes)
            loss, train_data, extra, updates = apply_sharing(config, loss, train_split, train_data)
            model.compile(optimizer=make_optimizer(config, training["steps_per_epoch"] * updates), loss=loss,
                          jit_compile=training["jit_compile"])
        fit_model(model, strategy, train_data, epochs=training["epochs"],
                  steps_per_epoch=training["steps_per_epoch"],
                  callbacks=make_callbacks(config, run_dir, test_data, [*callbacks, *extra]), verbose=verbose)
        model.save(os.path.join(run_dir, "final.keras"))
        taps = training["taps"] or [model.taps[-1]]
        results = evaluate_taps(model, test_data, taps, training["ks"])
        print(format_table(results, training["ks"]))
        with open(os.path.join(run_dir, "metrics.json"), "w") as handle:
            json.dump(results, handle, indent=2)
        tfdml.export(model, os.path.join(run_dir, "saved_model"), tap=training["export_tap"])
        print(f"run directory: {run_dir}")
        return results
    finally:
        if training["mixed_precision"]:
            keras.mixed_precision.set_global_policy("float32")
