"""Keras callback: retrieval evaluation during `model.fit`."""
import keras

from tfdml.metrics.evaluate import _check_metric_names, embed, evaluate_embeddings


class RetrievalEvaluation(keras.callbacks.Callback):
    """Evaluates retrieval metrics on a held-out dataset every `every` epochs.

    Metrics are written into the epoch `logs` (so they appear in
    `history.history`, `CSVLogger` and `TensorBoard`) as `{prefix}{name}`, e.g.
    `val_recall@1`, or `{prefix}{tap}_{name}` for each tap when `taps` is given.
    Evaluation happens after the first epoch, every `every` epochs (1-based) and
    after the last epoch; on the other epochs the last values are repeated so
    every epoch row has the same keys (Keras' History and CSVLogger expect that).

    Args:
        dataset: finite dataset of `(images, labels)` batches.
        every: evaluate every this many epochs.
        ks: K values of Recall@K.
        metrics: metric names (see `tfdml.metrics.METRIC_NAMES`).
        embedder: model used to embed (default: the trained model).
        taps: tap names of a `tfdml.models.EmbeddingModel` to evaluate
            separately via `model.embedder(tap)`.
        prefix: key prefix.
    """

    def __init__(self, dataset, every=1, ks=(1, 2, 4, 8), metrics=("recall", "nmi"), embedder=None,
                 taps=None, prefix="val_"):
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
        self.last = {}

    def _embedders(self):
        if self.taps:
            return {f"{tap}_": self.model.embedder(tap) for tap in self.taps}
        return {"": self.embedder or self.model}

    def evaluate(self):
        """Computes the metrics now; returns the dict of prefixed values."""
        values = {}
        for name, embedder in self._embedders().items():
            embeddings, labels = embed(embedder, self.dataset)
            for key, value in evaluate_embeddings(embeddings, labels, self.ks, self.metrics).items():
                values[f"{self.prefix}{name}{key}"] = value
        return values

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        last_epoch = self.params.get("epochs") if self.params else None
        if (epoch + 1) % self.every == 0 or (last_epoch is not None and epoch + 1 == last_epoch) or not self.last:
            self.last = self.evaluate()
        logs.update(self.last)
