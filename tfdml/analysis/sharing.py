"""The evidence of "Sharing Matters" (Milbich et al.) for a two-head model.

- `head_recalls`: Recall@K of φ ("class"), φ* ("shared") and [φ; φ*]
  ("concat") side by side (Tables 4 / 9).
- `generalization_gap`: Recall@1 on the training vs the test classes per head
  (Table 5); `reinitialized_head` gives Table 5's φ(𝒩), a head re-initialised
  after training, as a further "head".
- `plot_head_curves`: per-head loss and Recall@1 over training (Fig. 6), from
  the `model.fit` history / `log.csv` (`SharingObjective` logs "class_loss"
  and "shared_loss"; `RetrievalEvaluation(taps=[...])` and
  `TapRecallHistory` log Recall@1 per head).
- `cross_class_neighbors` / `plot_cross_class_neighbors`: nearest neighbours
  with the query's own class excluded (Fig. 3: does φ* retrieve images that
  share characteristics across classes?).
- `write_sharing_report`: all of the above into a directory.

Every function takes embeddings (dicts {head: (N, D) array}); `head_embeddings`
computes them from a model in one pass.
"""
import csv
import json
import os

import keras
import numpy as np
import tensorflow as tf

from tfdml.analysis.plotting import figure, save
from tfdml.metrics import embed, nearest_neighbors, recall_at_k

HEADS = ("class", "shared", "concat")


def _normalize(x):
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def with_concat(embeddings):
    """`embeddings` plus "concat" = [φ̂; φ̂*] (each L2-normalised) when "class" and "shared" are given."""
    embeddings = dict(embeddings)
    if "concat" not in embeddings and {"class", "shared"} <= set(embeddings):
        embeddings["concat"] = np.concatenate([_normalize(embeddings["class"]), _normalize(embeddings["shared"])],
                                              axis=1)
    return embeddings


def head_embeddings(model, dataset, taps=HEADS):
    """Embeddings of every tap in `taps` (L2-normalised, as `model.embedder(tap)`) in one pass.

    Returns:
        ({tap: float32 (N, D_tap)}, int64 labels (N,)).
    """
    taps = list(taps)
    outputs = [model.embedder(tap).outputs[0] for tap in taps]
    joint = keras.Model(model.inputs[0], outputs)
    widths = np.cumsum([int(o.shape[-1]) for o in outputs])[:-1]
    embeddings, labels = embed(lambda images, training=False: tf.concat(joint(images, training=training), axis=1),
                               dataset)
    return dict(zip(taps, np.split(embeddings, widths, axis=1))), labels


def head_recalls(embeddings, labels, ks=(1, 2, 4, 8), chunk_size=1024):
    """Recall@K per head (Milbich et al. Tables 4 / 9); adds "concat" (see `with_concat`).

    Args:
        embeddings: {head: (N, D) array}, e.g. {"class": φ, "shared": φ*}.
        labels: (N,) class labels.

    Returns:
        {head: {"recall@K": value}}.
    """
    return {head: recall_at_k(_normalize(x), labels, ks, chunk_size=chunk_size)
            for head, x in with_concat(embeddings).items()}


def generalization_gap(train_embeddings, train_labels, test_embeddings, test_labels, chunk_size=1024):
    """Recall@1 on the training and on the test classes per head (Table 5).

    Each split is evaluated within itself (leave-one-out retrieval).

    Returns:
        {head: {"train_recall@1", "test_recall@1", "gap" (train − test)}}.
    """
    train = head_recalls(train_embeddings, train_labels, (1,), chunk_size)
    test = head_recalls(test_embeddings, test_labels, (1,), chunk_size)
    return {head: {"train_recall@1": train[head]["recall@1"], "test_recall@1": test[head]["recall@1"],
                   "gap": train[head]["recall@1"] - test[head]["recall@1"]} for head in test if head in train}


def reinitialized_head(pooled, width, seed=0):
    """φ(𝒩) of Milbich et al. Table 5: a head re-initialised after training — a fresh Dense(`width`)
    (Glorot-uniform kernel, zero bias, the heads' initialisation) on the trained backbone's pooled
    features, L2-normalised. Its Recall@K (`head_recalls`, `generalization_gap`) is the baseline a
    trained head is compared with.

    Args:
        pooled: (N, F) pooled features ("pool" tap, e.g. from `head_embeddings(model, data, ["pool"])`).
        width: the head's width D.
        seed: seed of the initialisation.

    Returns:
        (float32 (N, D) embeddings, float32 (F, D) kernel).
    """
    pooled = np.asarray(pooled, np.float32)
    if pooled.ndim != 2:
        raise ValueError(f"pooled must be a (N, F) array, got shape {pooled.shape}.")
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be a positive int, got {width!r}.")
    kernel = np.asarray(keras.initializers.GlorotUniform(seed=seed)((pooled.shape[1], int(width))), np.float32)
    return _normalize(pooled @ kernel), kernel


def cross_class_neighbors(embeddings, labels, k=5, queries=None, chunk_size=1024):
    """The k nearest neighbours of each query among samples of *other* classes (Fig. 3).

    Exact: fetches the k + (size of the largest query class) nearest samples
    (chunked, `tfdml.metrics.nearest_neighbors`, no N×N matrix) and keeps the
    first k of another class. Euclidean distances on L2-normalised embeddings.

    Args:
        embeddings: (N, D) array.
        labels: (N,) class labels.
        k: neighbours per query.
        queries: indices of the query samples (default: all).

    Returns:
        (indices int64 (Q, k), distances float32 (Q, k)), nearest first; −1 /
        inf where fewer than k samples of other classes exist.
    """
    x = _normalize(embeddings)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(x):
        raise ValueError(f"labels has {len(labels)} entries for {len(x)} embeddings.")
    queries = np.arange(len(x)) if queries is None else np.asarray(queries, np.int64).reshape(-1)
    classes, counts = np.unique(labels, return_counts=True)
    largest = counts[np.isin(classes, labels[queries])].max(initial=0)
    fetch = int(min(len(x), k + largest))
    index, distance = nearest_neighbors(x[queries], x, fetch, chunk_size, exclude_self=False)
    other = labels[index] != labels[queries][:, None]
    first = np.argsort(~other, axis=1, kind="stable")[:, :k]  # the first k other-class columns, in order
    found = np.take_along_axis(other, first, axis=1)
    out_index = np.full((len(queries), k), -1, np.int64)
    out_distance = np.full((len(queries), k), np.inf, np.float32)
    out_index[:, :first.shape[1]] = np.where(found, np.take_along_axis(index, first, axis=1), -1)
    out_distance[:, :first.shape[1]] = np.where(found, np.take_along_axis(distance, first, axis=1), np.inf)
    return out_index, out_distance


def cross_class_label_agreement(neighbor_indices, attributes):
    """Fraction of cross-class neighbours sharing the query's value of a known attribute (e.g. a
    viewpoint or colour annotation): a number for Fig. 3's question when such annotations exist.

    Args:
        neighbor_indices: (Q, k) from `cross_class_neighbors` with `queries` = the rows' samples, in
            order (all samples when `queries` was None).
        attributes: (N,) attribute value per sample.

    Returns:
        float in [0, 1] over all valid (≠ −1) neighbours.
    """
    attributes = np.asarray(attributes).reshape(-1)
    if neighbor_indices.shape[0] != len(attributes):
        raise ValueError("neighbor_indices must have one row per sample (queries=None).")
    valid = neighbor_indices >= 0
    same = attributes[np.where(valid, neighbor_indices, 0)] == attributes[:, None]
    return float(same[valid].mean()) if valid.any() else float("nan")


def read_history(path):
    """A Keras `log.csv` (CSVLogger) as {key: [float per epoch]}."""
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    return {key: [float(row[key]) if row[key] not in ("", None) else np.nan for row in rows]
            for key in (rows[0] if rows else {})}


def plot_head_curves(history, path=None, heads=HEADS):
    """Per-head loss and Recall@1 over training (Fig. 6).

    Args:
        history: {key: [value per epoch]} (`History.history`, or `read_history`
            of a run's log.csv). Losses: "{head}_loss" and "val_{head}_loss";
            Recall@1: every key "…{head}…recall@1" (e.g. "val_class_recall@1",
            "tap_shared_train_recall@1").
        path: PNG path or None.

    Returns:
        `path`.
    """
    fig, (loss_ax, recall_ax) = figure(ncols=2)
    for key, values in sorted(history.items()):
        epochs = np.arange(1, len(values) + 1)
        if any(key in (f"{head}_loss", f"val_{head}_loss") for head in heads):
            loss_ax.plot(epochs, values, marker="o", label=key)
        elif key.endswith("recall@1") and any(f"{head}_" in key for head in heads):
            recall_ax.plot(epochs, values, marker="o", label=key)
    for ax, title, ylabel in ((loss_ax, "loss per head", "loss"), (recall_ax, "Recall@1 per head", "Recall@1")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    return save(fig, path)


def plot_cross_class_neighbors(images, labels, queries, neighbor_indices, path=None, title=None):
    """Image grid: each row a query and its cross-class neighbours (Fig. 3).

    Args:
        images: (N, H, W[, C]) images in [0, 255].
        labels: (N,) class labels (shown above each image).
        queries: (Q,) query indices.
        neighbor_indices: (Q, k) from `cross_class_neighbors`.
    """
    images = np.asarray(images)
    labels = np.asarray(labels).reshape(-1)
    queries = np.asarray(queries).reshape(-1)
    rows, cols = len(queries), neighbor_indices.shape[1] + 1
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.7 * rows), squeeze=False)
    for r, query in enumerate(queries):
        for c, index in enumerate([query, *neighbor_indices[r]]):
            ax = axes[r][c]
            ax.axis("off")
            if index < 0:
                continue
            image = images[index].astype(np.float32) / 255.0
            ax.imshow(np.clip(image.squeeze(), 0, 1), cmap="gray" if image.squeeze().ndim == 2 else None)
            ax.set_title(("query " if c == 0 else "") + f"class {labels[index]}", fontsize=7)
    if title:
        fig.suptitle(title)
    return save(fig, path)


def recall_table(results):
    """Markdown table of `head_recalls` results (heads as rows)."""
    keys = list(next(iter(results.values())))
    lines = ["| head | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {head} | " + " | ".join(f"{100 * values[key]:.2f}" for key in keys) + " |"
              for head, values in results.items()]
    return "\n".join(lines)


def write_sharing_report(report_dir, embeddings, labels, train_embeddings=None, train_labels=None, history=None,
                         images=None, ks=(1, 2, 4, 8), queries=8, neighbors=5, seed=0):
    """Writes sharing.json, the plots and sharing.md for a two-head model into `report_dir`.

    Args:
        embeddings: test embeddings {head: (N, D)}.
        labels: test labels.
        train_embeddings: optional training embeddings (adds the
            generalisation gap).
        train_labels: labels of `train_embeddings`.
        history: optional {key: values} or a log.csv path (adds the curves).
        images: optional test images (N, H, W[, C]) (adds the cross-class
            neighbour grid of φ* and φ for `queries` random queries).

    Returns:
        dict with "recall" and, when computed, "generalization_gap".
    """
    os.makedirs(report_dir, exist_ok=True)
    results = {"recall": head_recalls(embeddings, labels, ks)}
    lines = ["# Sharing Matters analysis", "", "## Recall@K per head (Tables 4/9)", "", recall_table(results["recall"])]
    if train_embeddings is not None:
        results["generalization_gap"] = generalization_gap(train_embeddings, train_labels, embeddings, labels)
        lines += ["", "## Train vs test Recall@1 (Table 5)", "", recall_table(results["generalization_gap"])]
    if history is not None:
        history = read_history(history) if isinstance(history, str) else history
        plot_head_curves(history, os.path.join(report_dir, "head_curves.png"))
        lines += ["", "## Loss and Recall@1 per head over training (Fig. 6)", "", "![curves](head_curves.png)"]
    if images is not None:
        chosen = np.random.default_rng(seed).choice(len(labels), size=min(queries, len(labels)), replace=False)
        for head in ("shared", "class"):
            if head in embeddings:
                index, _ = cross_class_neighbors(embeddings[head], labels, neighbors, chosen)
                name = f"cross_class_{head}.png"
                plot_cross_class_neighbors(images, labels, chosen, index, os.path.join(report_dir, name),
                                           title=f"nearest other-class neighbours, {head} head")
                lines += ["", f"## Cross-class neighbours, {head} head (Fig. 3)", "", f"![{head}]({name})"]
    with open(os.path.join(report_dir, "sharing.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    with open(os.path.join(report_dir, "sharing.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return results
