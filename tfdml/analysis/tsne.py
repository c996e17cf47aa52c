"""t-SNE views of embeddings (Xuan et al.): joint train/test maps and yoked t-SNE.

Both are bounded in size: above `max_points` (joint t-SNE, scikit-learn's
Barnes-Hut `TSNE`: time grows as N log N, ≈ 700 s for 40,000 points) or above
`memory_budget_mb` (yoked t-SNE, exact O(N²) numpy) a random sample is mapped
and a console line says so; points left out get NaN coordinates. (openTSNE,
FFT-accelerated with bounded memory, would lift the bound; it is not a
dependency, so sampling it is.)
"""
import argparse
import colorsys
import os
import sys

import numpy as np
from sklearn.manifold import TSNE

from tfdml.analysis.plotting import figure, plt, save


#: Colours of the "train" and "test" points in joint t-SNE's third panel (class palettes avoid their hues).
TRAIN_COLOR, TEST_COLOR = "red", "blue"
# Bytes per point² of yoked t-SNE: about a dozen N×N float64 arrays (affinities, distances, gradient terms).
_YOKED_BYTES_PER_PAIR = 12 * 8


def sample_indices(count, limit, seed, what):
    """All indices, or `limit` random ones (sorted) with a console line saying so.

    Args:
        count: number of points; limit: largest number kept; seed: int seed;
        what: text naming the computation, for the console line (None: no line).

    Returns:
        int array of the kept indices.
    """
    if count <= limit:
        return np.arange(count)
    if what:
        print(f"{what}: {count:,} points exceed the bound; mapping a random sample of {limit:,} "
              f"(left-out points get NaN coordinates).", flush=True)
    return np.sort(np.random.default_rng(seed).choice(count, limit, replace=False))


def _scatter_back(coords, kept, count):
    full = np.full((count, 2), np.nan)
    full[kept] = coords
    return full


def class_colors(count, offset=0):
    """`count` distinct RGB colours for classes, neighbours far apart in hue.

    Hues advance by the golden ratio (consecutive classes differ by ≈ 138°),
    lightness alternates over three levels, and hues within 20° of the red
    and blue of joint t-SNE's train/test panel are skipped, so no class takes
    those colours. `offset` skips the first colours (a second split's classes
    continue after the first's instead of reusing them).

    Returns:
        list of `count` (r, g, b) tuples in [0, 1].
    """
    colors, index = [], 0
    avoid = [colorsys.rgb_to_hsv(*_rgb(c))[0] for c in (TRAIN_COLOR, TEST_COLOR)]
    while len(colors) < offset + count:
        hue = (index * 0.6180339887) % 1.0
        value = (0.95, 0.7, 0.5)[(index // 3) % 3]
        index += 1
        if any(min(abs(hue - h), 1.0 - abs(hue - h)) < 20.0 / 360.0 for h in avoid):
            continue
        colors.append(colorsys.hsv_to_rgb(hue, 0.85, value))
    return colors[offset:]


def _rgb(name):
    from matplotlib.colors import to_rgb

    return to_rgb(name)


def joint_tsne(train_embeddings, train_labels, test_embeddings, test_labels, path=None, perplexity=30.0,
               seed=0, train_class_names=None, test_class_names=None, max_points=10000):
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
        max_points: largest number of points (both splits together) mapped;
            above it a random sample of each split, in proportion, is mapped
            (a console line says so).

    Returns:
        (train_2d (N, 2), test_2d (M, 2)); NaN rows for points left out.
    """
    train_embeddings, test_embeddings = np.asarray(train_embeddings), np.asarray(test_embeddings)
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    n_train, n_test = len(train_embeddings), len(test_embeddings)
    total = n_train + n_test
    keep_train = keep_test = None
    if total > max_points:
        print(f"joint t-SNE: {total:,} points exceed max_points={max_points:,}; mapping a random sample of "
              f"{max_points:,} (left-out points get NaN coordinates).", flush=True)
        share = max(1, round(max_points * n_train / total))
        keep_train = sample_indices(n_train, share, seed, None)
        keep_test = sample_indices(n_test, max(1, max_points - share), seed + 1, None)
        train_embeddings, train_labels = train_embeddings[keep_train], train_labels[keep_train]
        test_embeddings, test_labels = test_embeddings[keep_test], test_labels[keep_test]
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
    axes[2].scatter(train_2d[:, 0], train_2d[:, 1], color=TRAIN_COLOR, s=6, label="train")
    axes[2].scatter(test_2d[:, 0], test_2d[:, 1], color=TEST_COLOR, s=6, label="test")
    axes[2].set_title("train (red) and test (blue)")
    axes[2].legend()
    for ax in axes:
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
    save(fig, path)
    if keep_train is not None:
        train_2d, test_2d = _scatter_back(train_2d, keep_train, n_train), _scatter_back(test_2d, keep_test, n_test)
    return train_2d, test_2d


def class_label(label, names=None):
    """Legend text of a label id: its name from `names` (indexed by id) when given, else "class <id>"."""
    if names is not None and 0 <= int(label) < len(names):
        return f"class {names[int(label)]}"
    return f"class {label}"


def scatter_by_class(ax, points, labels, max_legend=12, names=None, color_offset=0):
    """Scatter coloured by class (`class_colors`); a legend for few classes.

    Args:
        names: optional class names indexed by label id, shown in the legend.
        color_offset: index of the first colour of `class_colors` (so a second
            split's classes do not reuse the first split's colours).
    """
    classes = np.unique(labels)
    colors = class_colors(len(classes), color_offset)
    for position, c in enumerate(classes):
        ax.scatter(points[labels == c, 0], points[labels == c, 1], s=8, label=class_label(c, names),
                   color=colors[position])
    if len(classes) <= max_legend:
        ax.legend(fontsize=7, markerscale=1.5)
    else:
        ax.text(0.01, 0.99, f"{len(classes)} classes", transform=ax.transAxes, va="top", fontsize=7)


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
               seed=0, labels=None, path=None, titles=("embedding A", "embedding B"), memory_budget_mb=1024):
    """Two t-SNE maps of the same points optimised jointly, yoked together.

    Minimises KL(P_a ‖ Q_a) + KL(P_b ‖ Q_b) + yoke · (1/N) Σ_i ‖y_a,i − y_b,i‖², so the
    two maps are aligned (same rotation / placement) while each still reflects
    its own embedding; `yoke = 0` gives two independent maps (different random
    starts), a large `yoke` makes them nearly identical. Exact O(N²) t-SNE in
    numpy (scikit-learn has no yoking) — meant for up to a few thousand points.
    Each iteration takes a momentum gradient step on the two KL terms, then the
    exact proximal step of the yoke term (stable for any `yoke`). Any number of
    maps: `yoked_tsne_maps`.

    Args:
        memory_budget_mb: largest estimated memory, in MiB, of the N×N arrays
            (about 96 bytes per pair); above it the same random sample of both
            embeddings is mapped (a console line says so). Default 1024
            (≈ 3,300 points).

    Returns:
        (map_a (N, 2), map_b (N, 2)); NaN rows for points left out.
    """
    a, b = np.asarray(embeddings_a), np.asarray(embeddings_b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"embeddings_a and embeddings_b must have the same number of points, got "
                         f"{a.shape[0]} and {b.shape[0]}.")
    maps = yoked_tsne_maps([a, b], yoke, perplexity, iterations, learning_rate, seed, memory_budget_mb)
    if path is not None:
        _plot_maps(maps, titles, yoke, path, labels)
    return maps[0], maps[1]


def yoked_tsne_maps(embeddings, yoke=0.1, perplexity=30.0, iterations=500, learning_rate=100.0, seed=0,
                    memory_budget_mb=1024):
    """K ≥ 2 t-SNE maps of the same N points (one per embedding), optimised jointly and yoked.

    Minimises Σ_k KL(P_k ‖ Q_k) + yoke · (1/N) Σ_{k<l} Σ_i ‖y_k,i − y_l,i‖² (for K = 2 the
    objective of `yoked_tsne`), with the exact proximal step of the yoke term: each map's
    deviation from the mean map shrinks by 1/(1 + 2·lr·yoke·K/N).

    Args:
        embeddings: list of K arrays (N, D_k) (dimensions may differ).
        memory_budget_mb: the exact O(N²) affinities of the K maps must fit this
            budget; above it a random sample of the points is mapped (a console
            line says so).

    Returns:
        list of K maps (N, 2); NaN rows for points left out.
    """
    arrays = [np.asarray(e, np.float64) for e in embeddings]
    if len(arrays) < 2:
        raise ValueError(f"embeddings must hold at least 2 arrays, got {len(arrays)}.")
    if len({len(a) for a in arrays}) != 1:
        raise ValueError(f"embeddings must have the same number of points, got {[len(a) for a in arrays]}.")
    total, count = len(arrays[0]), len(arrays)
    limit = max(2, int((memory_budget_mb * 2 ** 20 / (_YOKED_BYTES_PER_PAIR * count / 2)) ** 0.5))
    kept = sample_indices(total, limit, seed, f"yoked t-SNE (memory_budget_mb={memory_budget_mb:g})")
    arrays = [a[kept] for a in arrays]
    n = len(kept)
    perplexity = min(perplexity, (n - 1) / 3.0)
    affinities = [_affinities(a, perplexity) for a in arrays]
    rng = np.random.default_rng(seed)
    maps = [rng.normal(scale=1e-2, size=(n, 2)) for _ in arrays]
    velocities = [np.zeros_like(m) for m in maps]
    shrink = 1.0 / (1.0 + 2.0 * learning_rate * yoke * count / n)
    for it in range(iterations):
        exaggeration, momentum = (12.0, 0.5) if it < 100 else (1.0, 0.8)
        for k, p in enumerate(affinities):
            velocities[k] = momentum * velocities[k] - learning_rate * _tsne_gradient(p * exaggeration, maps[k])
            maps[k] = maps[k] + velocities[k]
        mean = sum(maps) / count
        maps = [mean + shrink * (m - mean) for m in maps]
    if n < total:
        maps = [_scatter_back(m, kept, total) for m in maps]
    return maps


def _plot_maps(maps, titles, yoke, path, labels=None, markers=None):
    fig, axes = figure(ncols=len(maps))
    for ax, points, title in zip(np.atleast_1d(axes), maps, titles):
        if labels is not None and markers is not None:  # train (circles) and test (crosses) in one map
            labels = np.asarray(labels)
            for marker, mask in markers:
                ax.scatter(points[mask, 0], points[mask, 1], c=labels[mask], cmap="tab20", s=8, marker=marker)
        elif labels is not None:
            scatter_by_class(ax, points, np.asarray(labels))
        else:
            ax.scatter(points[:, 0], points[:, 1], s=8)
        ax.set_title(f"{title} (yoked t-SNE, yoke={yoke})")
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
    save(fig, path)


def yoked_runs_tsne(run_dirs, path, points=500, yoke=1.0, tap=None, data_dir=None, seed=0, iterations=500,
                    perplexity=30.0):
    """The yoked joint train + test t-SNE of several trained runs (Xuan et al., Fig. 4 style).

    Embeds the same `points` training and `points` test images (drawn with `seed`, the
    test-time preprocessing of each run's config) with each run's model (`best.keras`,
    else `final.keras`), maps all of them jointly with one t-SNE per run, yoked
    together (`yoked_tsne_maps`), and draws one panel per run: training images as
    circles, test images as crosses, coloured by class.

    Args:
        run_dirs: run directories (each with config.yaml) on the same dataset.
        path: output image file.
        points: images drawn from each split.
        yoke: yoke weight.
        tap: embedding tap (None: each run's `training.export_tap`).
        data_dir: dataset folder overriding the runs' `dataset.data_dir`.

    Returns:
        list of maps (2·points, 2), train points first.
    """
    import yaml

    from tfdml.data.pipelines import eval_pipeline
    from tfdml.data.split import Split
    from tfdml.metrics.evaluate import embed, tap_embedder
    from tfdml.models.export import load_keras_model
    from tfdml.data.datasets import load_split

    run_dirs = list(run_dirs)
    configs = []
    for run_dir in run_dirs:
        with open(os.path.join(run_dir, "config.yaml")) as handle:
            configs.append(yaml.safe_load(handle))
    datasets = {c["dataset"]["name"] for c in configs}
    if len(datasets) != 1:
        raise ValueError(f"run_dirs must be runs on one dataset, got {sorted(datasets)}.")
    rng = np.random.default_rng(seed)
    chosen, embeddings = None, []
    for run_dir, config in zip(run_dirs, configs):
        if data_dir is not None:
            config["dataset"]["data_dir"] = data_dir
        data = config["dataset"]  # the run's own dataset section (older runs lack the newer keys)
        splits = [load_split(data["name"], name, data.get("data_dir"), strict=data.get("strict", True),
                             image_size=data["image_size"], channels=data.get("channels", 3),
                             skip_corrupt=data.get("skip_corrupt", False)) for name in ("train", "test")]
        if chosen is None:
            chosen = [np.sort(rng.choice(s.num_images, min(points, s.num_images), replace=False)) for s in splits]
        parts, labels = [], []
        for split, index in zip(splits, chosen):
            subset = Split(split.name, split.labels[index], channels=split.channels,
                           images=(split._images[index] if isinstance(split._images, np.ndarray) else
                                   [split._images[i] for i in index]) if split._images is not None else None,
                           paths=[split._paths[i] for i in index] if split._paths is not None else None)
            data = eval_pipeline(subset, config["training"]["eval_batch_size"], config["dataset"]["image_size"],
                                 config["augmentation"]["test"])
            best, final = os.path.join(run_dir, "best.keras"), os.path.join(run_dir, "final.keras")
            model = load_keras_model(best if os.path.exists(best) else final)
            values, split_labels = embed(tap_embedder(model, tap or config["training"]["export_tap"]), data)
            parts.append(values)
            labels.append(split_labels)
        embeddings.append(np.concatenate(parts))
    train_count = len(chosen[0])
    all_labels = np.concatenate([labels[0], labels[1] + labels[0].max() + 1])  # test classes get other colours
    maps = yoked_tsne_maps(embeddings, yoke, perplexity, iterations, seed=seed)
    is_train = np.arange(len(all_labels)) < train_count
    _plot_maps(maps, [os.path.basename(os.path.normpath(r)) for r in run_dirs], yoke, path, all_labels,
               markers=[("o", is_train), ("x", ~is_train)])
    return maps


def main(argv=None):
    """`python -m tfdml.analysis.tsne RUN_DIR RUN_DIR ... --output FIGURE.png`: `yoked_runs_tsne`."""
    parser = argparse.ArgumentParser(description="Yoked joint train+test t-SNE of several run directories "
                                                 "(Xuan et al. Fig. 4 style).")
    parser.add_argument("run_dirs", nargs="+", help="run directories (two or more, one dataset)")
    parser.add_argument("--output", required=True, help="figure file (.png)")
    parser.add_argument("--points", type=int, default=500, help="images drawn from each split (default 500)")
    parser.add_argument("--yoke", type=float, default=1.0, help="yoke weight (default 1)")
    parser.add_argument("--tap", default=None, help="embedding tap (default: each run's export tap)")
    parser.add_argument("--data-dir", default=None, help="dataset folder overriding the runs' configs")
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if len(args.run_dirs) < 2:
        parser.error("give at least two run directories")
    yoked_runs_tsne(args.run_dirs, args.output, args.points, args.yoke, args.tap, args.data_dir, args.seed,
                    args.iterations)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
