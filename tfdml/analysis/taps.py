"""Per-tap Recall@1 on train and test during training (Vo & Hays, Figs. 2–3)."""
import keras

from tfdml.analysis.plotting import figure, save
from tfdml.metrics import embed, recall_at_k


class TapRecallHistory(keras.callbacks.Callback):
    """Records Recall@1 of every tap of an `EmbeddingModel` on train and test data each epoch.

    Values are written to the logs as `tap_{tap}_{split}_recall@1` and kept in
    `self.history` ({(tap, split): [values per epoch]}).

    Args:
        datasets: dict {split name: finite dataset of (images, labels)}.
        taps: tap names (default: all of `model.taps`).
    """

    def __init__(self, datasets, taps=None):
        super().__init__()
        self.datasets = datasets
        self.taps = taps
        self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        for tap in self.taps or self.model.taps:
            embedder = self.model.embedder(tap)
            for split, data in self.datasets.items():
                embeddings, labels = embed(embedder, data)
                value = recall_at_k(embeddings, labels, ks=(1,))["recall@1"]
                self.history.setdefault((tap, split), []).append(value)
                logs[f"tap_{tap}_{split}_recall@1"] = value


def plot_tap_recalls(history, path=None):
    """Lines of Recall@1 per epoch for every (tap, split); one panel per split."""
    splits = sorted({split for _, split in history})
    fig, axes = figure(ncols=len(splits))
    for ax, split in zip(axes, splits):
        for (tap, s), values in history.items():
            if s == split:
                ax.plot(range(1, len(values) + 1), values, marker="o", label=tap)
        ax.set_title(f"Recall@1 per tap ({split})")
        ax.set_xlabel("epoch")
        ax.set_ylabel("Recall@1")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(title="tap")
    return save(fig, path)
