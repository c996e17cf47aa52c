"""t-SNE views of embeddings (Xuan et al.): joint train/test maps and yoked t-SNE."""
import numpy as np
from sklearn.manifold import TSNE

from tfdml.analysis.plotting import figure, plt, save


def joint_tsne(train_embeddings, train_labels, test_embeddings, test_labels, path=None, perplexity=30.0,
               seed=0, train_class_names=None, test_class_names=None):
    """One t-SNE of train and test embeddings together, drawn as three panels.

    Panels: train coloured by class; test coloured by class; both (train red,
    test blue) — shows whether unseen classes land in regions of their own.
    Test classes get colours after the training classes' colours (they are
    other classes even when both splits number their labels from 0).

    Args:
        train_class_names: optional names per training label id
            (e.g. `Split.class_names`); the legends show them instead of the
            label ids.
        test_class_names: the same for the test labels (digits "5".."9"
            for test labels 0..4).

    Returns:
        (train_2d (N, 2), test_2d (M, 2)).
    """
    train_embeddings, test_embeddings = np.asarray(train_embeddings), np.asarray(test_embeddings)
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    both = np.concatenate([train_embeddings, test_embeddings]).astype(np.float64)
    perplexity = min(perplexity, (len(both) - 1) / 3.0)
    coords = TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(both)
    train_2d, test_2d = coords[: len(train_embeddings)], coords[len(train_embeddings):]
    fig, axes = figure(ncols=3)
    scatter_by_class(axes[0], train_2d, train_labels, names=train_class_names)
    scatter_by_class(axes[1], test_2d, test_labels, names=test_class_names,
                     color_offset=len(np.unique(train_labels)))
    axes[0].set_title("train classes")
    axes[1].set_title("test classes (unseen)")
    axes[2].scatter(train_2d[:, 0], train_2d[:, 1], c="red", s=6, label="train")
    axes[2].scatter(test_2d[:, 0], test_2d[:, 1], c="blue", s=6, label="test")
    axes[2].set_title("train (red) and test (blue)")
    axes[2].legend()
    for ax in axes:
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
    save(fig, path)
    return train_2d, test_2d


def class_label(label, names=None):
    """Legend text of a label id: its name from `names` (indexed by id) when given, else "class <id>"."""
    if names is not None and 0 <= int(label) < len(names):
        return f"class {names[int(label)]}"
    return f"class {label}"


def scatter_by_class(ax, points, labels, max_legend=12, names=None, color_offset=0):
    """Scatter coloured by class; a legend for few classes, a colour bar otherwise.

    Args:
        names: optional class names indexed by label id, shown in the legend.
        color_offset: index of the first colour in the colour cycle (so a second
            split's classes do not reuse the first split's colours).
    """
    classes = np.unique(labels)
    if len(classes) <= max_legend:
        cycle = plt.get_cmap("tab20").colors
        for position, c in enumerate(classes):
            ax.scatter(points[labels == c, 0], points[labels == c, 1], s=8, label=class_label(c, names),
                       color=cycle[(color_offset + position) % len(cycle)])
        ax.legend(fontsize=7, markerscale=1.5)
    else:
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab20", s=8)
        ax.figure.colorbar(scatter, ax=ax, label="class id")


def _affinities(x, perplexity, tol=1e-5, max_iter=60):
    """Symmetric t-SNE input affinities P (N, N) with per-point bandwidths matching `perplexity`."""
    sq = np.sum(x ** 2, axis=1)
    d = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
    n = len(x)
    target = np.log(perplexity)
    p = np.zeros((n, n))
    for i in range(n):
        lo, hi, beta = 0.0, np.inf, 1.0
        row = np.delete(d[i], i)
        for _ in range(max_iter):
            w = np.exp(-(row - row.min()) * beta)
            prob = w / w.sum()
            entropy = -np.sum(prob * np.log(np.maximum(prob, 1e-300)))
            if abs(entropy - target) < tol:
                break
            if entropy > target:
                lo, beta = beta, beta * 2 if hi == np.inf else (beta + hi) / 2
            else:
                hi, beta = beta, (beta + lo) / 2
        p[i, np.arange(n) != i] = prob
    p = (p + p.T) / (2 * n)
    return np.maximum(p, 1e-12)


def _tsne_gradient(p, y):
    diff = y[:, None, :] - y[None, :, :]
    num = 1.0 / (1.0 + np.sum(diff ** 2, axis=-1))
    np.fill_diagonal(num, 0.0)
    q = np.maximum(num / num.sum(), 1e-12)
    return 4.0 * np.einsum("ij,ijk->ik", (p - q) * num, diff)


def yoked_tsne(embeddings_a, embeddings_b, yoke=0.1, perplexity=30.0, iterations=500, learning_rate=100.0,
               seed=0, labels=None, path=None, titles=("embedding A", "embedding B")):
    """Two t-SNE maps of the same points optimised jointly, yoked together.

    Minimises KL(P_a ‖ Q_a) + KL(P_b ‖ Q_b) + yoke · (1/N) Σ_i ‖y_a,i − y_b,i‖², so the
    two maps are aligned (same rotation / placement) while each still reflects
    its own embedding; `yoke = 0` gives two independent maps (different random
    starts), a large `yoke` makes them nearly identical. Exact O(N²) t-SNE in
    numpy (scikit-learn has no yoking) — meant for up to a few thousand points.
    Each iteration takes a momentum gradient step on the two KL terms, then the
    exact proximal step of the yoke term (stable for any `yoke`).

    Returns:
        (map_a (N, 2), map_b (N, 2)).
    """
    a, b = np.asarray(embeddings_a, np.float64), np.asarray(embeddings_b, np.float64)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"embeddings_a and embeddings_b must have the same number of points, got "
                         f"{a.shape[0]} and {b.shape[0]}.")
    perplexity = min(perplexity, (len(a) - 1) / 3.0)
    pa, pb = _affinities(a, perplexity), _affinities(b, perplexity)
    rng = np.random.default_rng(seed)
    ya, yb = rng.normal(scale=1e-2, size=(len(a), 2)), rng.normal(scale=1e-2, size=(len(a), 2))
    va, vb = np.zeros_like(ya), np.zeros_like(yb)
    for it in range(iterations):
        exaggeration, momentum = (12.0, 0.5) if it < 100 else (1.0, 0.8)
        va = momentum * va - learning_rate * _tsne_gradient(pa * exaggeration, ya)
        vb = momentum * vb - learning_rate * _tsne_gradient(pb * exaggeration, yb)
        ya, yb = ya + va, yb + vb
        # Proximal step of (yoke/N)·‖ya − yb‖²: shrinks the difference by 1/(1 + 4·lr·yoke/N).
        pull = 0.5 * (1.0 - 1.0 / (1.0 + 4.0 * learning_rate * yoke / len(ya))) * (ya - yb)
        ya, yb = ya - pull, yb + pull
    if path is not None:
        fig, axes = figure(ncols=2)
        for ax, points, title in ((axes[0], ya, titles[0]), (axes[1], yb, titles[1])):
            if labels is not None:
                scatter_by_class(ax, points, np.asarray(labels))
            else:
                ax.scatter(points[:, 0], points[:, 1], s=8)
            ax.set_title(f"{title} (yoked t-SNE, yoke={yoke})")
            ax.set_xlabel("t-SNE 1")
            ax.set_ylabel("t-SNE 2")
        save(fig, path)
    return ya, yb
