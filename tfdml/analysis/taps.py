"""Per-tap metrics on train and test during training (Vo & Hays Figs. 2–7, Xuan et al. Tables 1–2, Roth et al.)."""
import re

import keras
import numpy as np

from tfdml.analysis.plotting import figure, plot_epochs, save
from tfdml.metrics import evaluate_embeddings


def tap_embedder(model, taps):
    """One `keras.Model` from raw images to {tap: L2-normalised tap output} (one forward pass for all taps).

    Args:
        model: a `tfdml.models.EmbeddingModel`.
        taps: head taps (`model.taps`) and/or block taps (`model.block_taps`).
    """
    outputs = {tap: model.embedder(tap).outputs[0] for tap in taps}
    return keras.Model(model.inputs[0], outputs, name=f"{model.name}_taps")


def embed_taps(embedder, dataset):
    """Runs a `tap_embedder` over `(images, labels)` batches; returns ({tap: (N, D) float32}, (N,) int64 labels)."""
    outputs, targets = {}, []
    for images, labels in dataset:
        for tap, values in embedder(images, training=False).items():
            outputs.setdefault(tap, []).append(np.asarray(values))
        targets.append(np.asarray(labels).reshape(-1))
    if not targets:
        raise ValueError("dataset yielded no batches.")
    return ({tap: np.concatenate(values).astype(np.float32) for tap, values in outputs.items()},
            np.concatenate(targets).astype(np.int64))


class TapRecallHistory(keras.callbacks.Callback):
    """Records metrics of every tap of an `EmbeddingModel` on train and test data during training.

    Every `every` epochs, after the first and after the last epoch, each split is
    embedded once (all taps in one forward pass) and, per tap, the `metrics` of
    `tfdml.metrics.evaluate_embeddings` are computed (each query against the rest of
    its own split, as the papers do). Values are written to the epoch logs as
    `tap_{tap}_{split}_{metric}` — e.g. `tap_pool_train_recall@1`, `tap_fc_train_rho`
    — so they reach `History`, `log.csv` and TensorBoard; on epochs without a
    measurement the keys hold NaN (every row has the same columns).
    `self.history` keeps Recall@1 as {(tap, split): [value per epoch]}, `self.values`
    every metric as {(tap, split, metric): [value per epoch]}.

    Args:
        datasets: dict {split name: finite dataset of (images, labels)}.
        taps: tap names (default: every head tap and block tap of the model).
        metrics: names from `tfdml.metrics.METRIC_NAMES` ("recall" gives
            Recall@K for `ks`; "rho" spectral decay; "pi" π_intra/π_inter/π_ratio).
        ks: K values of Recall@K.
        every: measure every this many epochs (plus the first and the last).
    """

    def __init__(self, datasets, taps=None, metrics=("recall",), ks=(1,), every=1):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}.")
        self.datasets = datasets
        self.taps = list(taps) if taps else None
        self.metrics = tuple(metrics)
        self.ks = tuple(ks)
        self.every = every
        self.history = {}
        self.values = {}
        self._embedder = None
        self._keys = None

    def _due(self, epoch):
        last = (self.params or {}).get("epochs")
        return epoch == 0 or (epoch + 1) % self.every == 0 or (last is not None and epoch + 1 == last)

    def _measure(self):
        if self._embedder is None:
            self._embedder = tap_embedder(self.model, self.taps or self.model.taps + self.model.block_taps)
        results = {}
        for split, data in self.datasets.items():
            embeddings, labels = embed_taps(self._embedder, data)
            for tap, values in embeddings.items():
                for key, value in evaluate_embeddings(values, labels, self.ks, self.metrics).items():
                    results[(tap, split, key)] = float(value)
        return results

    def on_epoch_end(self, epoch, logs=None):
        """Logs `tap_{tap}_{split}_{metric}` for each tap and split: measured on due epochs, NaN on
        the others; keeps them in `values` and Recall@1 in `history` (Keras callback)."""
        logs = logs if logs is not None else {}
        results = self._measure() if self._due(epoch) or self._keys is None else None
        if results is not None:
            self._keys = list(results)
        for tap, split, key in self._keys:
            value = results[(tap, split, key)] if results is not None else float("nan")
            self.values.setdefault((tap, split, key), []).append(value)
            if key == "recall@1":
                self.history.setdefault((tap, split), []).append(value)
            logs[f"tap_{tap}_{split}_{key}"] = value


#: A `TapRecallHistory` log key: tap_{tap}_{split}_{metric}.
TAP_KEY = re.compile(r"^tap_(.+)_(train|test)_(.+)$")


def plot_tap_recalls(history, path=None, metric="recall@1"):
    """Lines of a metric per epoch for every (tap, split); one panel per split (NaN epochs skipped).

    Args:
        history: {(tap, split): [value per epoch]} (`TapRecallHistory.history`).
        path: PNG path or None.
        metric: the metric's name (titles; Recall values get a [0, 1] axis).
    """
    splits = sorted({split for _, split in history})
    fig, axes = figure(ncols=len(splits))
    for ax, split in zip(axes, splits):
        for (tap, s), values in history.items():
            if s == split:
                plot_epochs(ax, values, tap)
        ax.set_title(f"{metric} per tap ({split})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        if metric.startswith("recall"):
            ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(title="tap")
    return save(fig, path)


def tap_metric_names(history):
    """The metrics (e.g. "recall@1", "rho") of the `tap_…` keys of a log history, in first-seen order."""
    names = []
    for key in history:
        match = TAP_KEY.match(key)
        if match and match.group(3) not in names:
            names.append(match.group(3))
    return names


def plot_tap_metrics(history, metric="recall@1", path=None):
    """`plot_tap_recalls` of one metric from a log history ({key: [value per epoch]}: `History.history`
    or `tfdml.analysis.read_history` of a run's log.csv with `TapRecallHistory` columns)."""
    series = {}
    for key, values in history.items():
        match = TAP_KEY.match(key)
        if match and match.group(3) == metric:
            series[(match.group(1), match.group(2))] = values
    if not series:
        raise ValueError(f"No tap_<tap>_<split>_{metric} keys in the history; found {sorted(history)}.")
    return plot_tap_recalls(series, path, metric)
