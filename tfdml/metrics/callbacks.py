"""Keras callback: retrieval evaluation during `model.fit`."""
import contextlib
import warnings

import keras
import numpy as np

from tfdml.metrics.evaluate import _check_metric_names, embed, evaluate_embeddings, tap_embedder
from tfdml.metrics.progress import silenced


class RetrievalEvaluation(keras.callbacks.Callback):
    """Evaluates retrieval metrics on a held-out dataset every `every` epochs.

    Metrics are written into the epoch `logs` (so they appear in
    `history.history`, `CSVLogger` and `TensorBoard`) as `{prefix}{name}`, e.g.
    `val_recall@1`, or `{prefix}{tap}_{name}` for each tap when `taps` is given.
    Evaluation happens after the first epoch, every `every` epochs (1-based) and
    after the last epoch. On the other epochs the keys are present with the
    value NaN (not measured): History keeps one entry per epoch, `CSVLogger`
    writes `nan`, and `ModelCheckpoint(monitor=..., mode="max")` never treats an
    unmeasured epoch as an improvement. Embeddings with NaN or infinite values
    (a diverged model) give NaN metrics and a warning.

    Args:
        dataset: finite dataset of `(images, labels)` batches.
        every: evaluate every this many epochs.
        ks: K values of Recall@K.
        metrics: metric names (see `tfdml.metrics.METRIC_NAMES`).
        embedder: model used to embed (default: the trained model).
        taps: tap names of a `tfdml.models.EmbeddingModel` to evaluate
            separately via `model.embedder(tap)`.
        prefix: key prefix.
        verbose: progress lines while evaluating (None: only on a terminal).
        examples: optional `tfdml.analysis.retrieval_examples.RetrievalExamples` of the
            dataset's split: each evaluation logs its query/top-k grid per tap to TensorBoard
            (step: the epoch, 1-based).
    """

    def __init__(self, dataset, every=1, ks=(1, 2, 4, 8), metrics=("recall", "nmi"), embedder=None,
                 taps=None, prefix="val_", verbose=False, examples=None):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}.")
        self.dataset = dataset
        self.every = int(every)
        self.ks = tuple(ks)
        self.metrics = _check_metric_names(metrics)
        self.embedder = embedder
        self.taps = tuple(taps) if taps else None
        self.prefix = prefix
        self.verbose = verbose
        self.examples = examples
        self.last = {}
        self._step = 0

    def _embedders(self):
        if self.taps:  # one embedder per tap, compiled once (shared with other evaluations of the model)
            return {f"{tap}_": tap_embedder(self.model, tap) for tap in self.taps}
        return {"": self.embedder or self.model}

    def evaluate(self):
        """Computes the metrics now; returns the dict of prefixed values."""
        values = {}
        for name, embedder in self._embedders().items():
            with silenced() if self.verbose is False else contextlib.nullcontext():
                embeddings, labels = embed(embedder, self.dataset, verbose=self.verbose)
                finite = np.isfinite(embeddings).all()
                measured = evaluate_embeddings(embeddings, labels, self.ks, self.metrics) if finite else None
                if finite and self.examples is not None:
                    self.examples.log(name[:-1] or "embedding", embeddings, labels, self._step)
            if measured is None:
                warnings.warn(f"RetrievalEvaluation: embeddings{' of tap ' + name[:-1] if name else ''} contain "
                              "NaN or infinite values (the model diverged); metrics are NaN.")
                measured = {key: float("nan") for key in self._metric_keys()}
            for key, value in measured.items():
                values[f"{self.prefix}{name}{key}"] = value
        return values

    def _metric_keys(self):
        keys = []
        for metric in self.metrics:
            if metric == "recall":
                keys += [f"recall@{k}" for k in self.ks]
            elif metric == "pi":
                keys += ["pi_intra", "pi_inter", "pi_ratio"]
            else:
                keys.append(metric)
        return keys

    def on_epoch_end(self, epoch, logs=None):
        """Evaluates after the first epoch, every `every` epochs and after the last, and adds the
        metrics to `logs`; other epochs log them as NaN (Keras callback)."""
        logs = logs if logs is not None else {}
        last_epoch = self.params.get("epochs") if self.params else None
        if (epoch + 1) % self.every == 0 or (last_epoch is not None and epoch + 1 == last_epoch) or not self.last:
            self._step = epoch + 1
            self.last = self.evaluate()
            logs.update(self.last)
        else:
            logs.update({key: float("nan") for key in self.last})


class MeasuredCSVLogger(keras.callbacks.CSVLogger):
    """`keras.callbacks.CSVLogger` that leaves NaN values blank.

    With `RetrievalEvaluation(every=k)` the validation metrics of the epochs
    without evaluation are NaN; this logger writes them as empty cells, so the
    CSV shows only measured values. Same arguments as `keras.callbacks.CSVLogger`.
    """

    def on_epoch_end(self, epoch, logs=None):
        """Writes the epoch's row with NaN values as empty cells (Keras callback)."""
        logs = {key: "" if isinstance(value, float) and np.isnan(value) else value
                for key, value in (logs or {}).items()}
        super().on_epoch_end(epoch, logs)


class MeasuredProgbarLogger(keras.callbacks.ProgbarLogger):
    """`keras.callbacks.ProgbarLogger` that prints only measured values.

    With `RetrievalEvaluation(every=k)` the validation metrics of the epochs
    without evaluation are NaN; this progress bar leaves them out of the line
    instead of printing `nan` for each. A NaN *loss* is still printed (a
    diverged run must show). Pass it in `callbacks` of `model.fit` (it replaces
    Keras' own progress bar); `tfdml.training.TrainingLoop` uses it.
    """

    def on_epoch_end(self, epoch, logs=None):
        """Prints the epoch's logs without NaN metrics; a NaN loss is kept (Keras callback)."""
        super().on_epoch_end(epoch, _measured(logs))

    def on_train_batch_end(self, batch, logs=None):
        """Updates the progress bar without NaN metrics; a NaN loss is kept (Keras callback)."""
        super().on_train_batch_end(batch, _measured(logs))


def _measured(logs):
    """`logs` without NaN metric values (the loss is kept)."""
    return {key: value for key, value in (logs or {}).items()
            if key == "loss" or not (isinstance(value, float) and np.isnan(value))}
