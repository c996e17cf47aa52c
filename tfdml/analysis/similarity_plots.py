"""Same-vs-different similarity scatter (Xuan et al.)."""
import numpy as np

from tfdml.analysis.plotting import figure, save


def nearest_same_and_different(embeddings, labels, chunk_size=1024):
    """Cosine similarity of every point to its nearest same-class and different-class point.

    Computed in chunks of rows (memory O(chunk × N)). Points without another
    same-class point (or without any other class) get NaN.

    Returns:
        (same (N,), different (N,)).
    """
    x = np.asarray(embeddings, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    labels = np.asarray(labels)
    same_best = np.full(len(x), np.nan)
    diff_best = np.full(len(x), np.nan)
    for start in range(0, len(x), chunk_size):
        sims = x[start:start + chunk_size] @ x.T
        rows = np.arange(sims.shape[0])
        sims[rows, rows + start] = -np.inf  # exclude self
        same = labels[start:start + chunk_size, None] == labels[None, :]
        s = np.where(same, sims, -np.inf).max(axis=1)
        d = np.where(~same, sims, -np.inf).max(axis=1)
        same_best[start:start + chunk_size] = np.where(np.isfinite(s), s, np.nan)
        diff_best[start:start + chunk_size] = np.where(np.isfinite(d), d, np.nan)
    return same_best, diff_best


def same_vs_different(splits, path=None):
    """Scatter of nearest same-class (x) vs nearest different-class (y) similarity.

    Cyan points (below the diagonal) are retrieved correctly at rank 1 in the
    sense that their nearest same-class point is more similar than any other
    class's; orange points are not.

    Args:
        splits: dict {panel title: (embeddings, labels)}, e.g. {"train": ..., "test": ...}.

    Returns:
        dict {title: {"same": (N,), "different": (N,), "correct_fraction": float}}.
    """
    result = {}
    fig, axes = figure(ncols=len(splits))
    computed = {title: nearest_same_and_different(*data) for title, data in splits.items()}
    finite = np.concatenate([np.concatenate(v) for v in computed.values()])
    finite = finite[np.isfinite(finite)]
    low = float(finite.min()) if finite.size else -1.0
    pad = max(0.02 * (1.0 - low), 1e-3)  # zoom on the occupied range (embeddings often sit in a cone)
    for ax, (title, (same, different)) in zip(axes, computed.items()):
        ok = np.isfinite(same) & np.isfinite(different)
        correct = same > different
        ax.scatter(same[ok & correct], different[ok & correct], s=6, c="c", label="correct (same > different)")
        ax.scatter(same[ok & ~correct], different[ok & ~correct], s=6, c="orange", label="wrong")
        ax.plot([low - pad, 1 + pad], [low - pad, 1 + pad], "k--", linewidth=1, label="same = different")
        ax.set_xlim(low - pad, 1 + pad)
        ax.set_ylim(low - pad, 1 + pad)
        ax.set_xlabel("similarity to nearest same-class point")
        ax.set_ylabel("similarity to nearest different-class point")
        fraction = float(correct[ok].mean()) if ok.any() else float("nan")
        ax.set_title(f"{title}: {100 * fraction:.1f}% correct")
        ax.legend(loc="lower right", fontsize=8)
        result[title] = {"same": same, "different": different, "correct_fraction": fraction}
    save(fig, path)
    return result
