"""Embedding Expansion analyses (Ko & Gu, CVPR 2020, Figs. 3, 6, 7, 8 and 9)."""
import keras
import numpy as np
import tensorflow as tf

from tfdml import distances
from tfdml.analysis.plotting import figure, line_plot, plot_epochs, save
from tfdml.checks import check_choice
from tfdml.expansion import POOLING_MODES, EmbeddingExpansion, class_representatives, metric_from_gram
from tfdml.metrics import embed, recall_at_k


def synthetic_query_recall(embeddings, labels, n_points=2, normalize=True, pairs="consecutive", k=1):
    """Recall@k of EE's synthetic points used as queries against the original points (Fig. 3).

    High values mean synthetic points carry their class's information.
    """
    ee = EmbeddingExpansion(n_points, normalize, pairs)
    points, point_labels, synthetic = (np.asarray(v) for v in ee.expand(embeddings, np.asarray(labels)))
    if not synthetic.any():
        return float("nan")
    result = recall_at_k(points[synthetic], point_labels[synthetic], ks=(k,),
                         reference_embeddings=points[~synthetic], reference_labels=point_labels[~synthetic])
    return result[f"recall@{k}"]


def hard_negative_sources(expansion, embeddings, labels, distance="euclidean", pooling="anchor"):
    """How often the hardest negative of an anchor involves a synthetic point.

    For every anchor i with a negative, the batch-hard negative pair is the
    closest pair between i's pool (G(i) for `pooling="anchor"`, all points of
    i's class for "class") and the points of other classes. It counts as
    "synthetic" when either point of that pair is synthetic (EE paper Fig. 6).

    Args:
        expansion: the `EmbeddingExpansion` (its synthetic points and
            `normalize`).
        embeddings: (B, D) embeddings (L2-normalised here if
            `expansion.normalize`).
        labels: (B,) integer labels.
        distance: "euclidean", "squared_euclidean" or "cosine_distance".
        pooling: "anchor" or "class".

    Returns:
        dict with int32 scalars `synthetic` and `original`.
    """
    distances.check_metric(distance, "distance", distances.DISTANCES)
    check_choice(pooling, "pooling", POOLING_MODES)
    embeddings = tf.convert_to_tensor(embeddings)
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    if expansion.normalize:
        embeddings = distances.l2_normalize(embeddings)
    batch = tf.shape(labels)[0]
    gram = tf.matmul(embeddings, embeddings, transpose_b=True)
    gram_all, structure = expansion.expanded_gram(gram, labels)
    full = metric_from_gram(gram_all, distance)
    valid = structure["valid"]
    point_labels = tf.concat([labels, structure["labels"]], axis=0)
    point_valid = tf.concat([tf.ones_like(labels, dtype=tf.bool), valid], axis=0)
    is_syn = tf.concat([tf.zeros_like(labels, dtype=tf.bool), tf.ones_like(valid)], axis=0)
    big = tf.constant(full.dtype.max, full.dtype)
    negative_col = tf.logical_and(
        tf.not_equal(labels[:, None], point_labels[None, :]), point_valid[None, :]
    )  # (B, P)
    syn_rows = full[batch:]  # (S, P)
    dummy = batch
    if pooling == "anchor":
        by_first = tf.math.unsorted_segment_min(syn_rows, tf.where(valid, structure["first"], dummy), batch + 1)
        by_second = tf.math.unsorted_segment_min(syn_rows, tf.where(valid, structure["second"], dummy), batch + 1)
        syn_pool = tf.minimum(by_first, by_second)[:batch]
    else:
        representative = class_representatives(labels)
        syn_group = tf.where(valid, tf.gather(representative, structure["first"]), dummy)
        by_class = tf.math.unsorted_segment_min(syn_rows, syn_group, batch + 1)
        syn_pool = tf.gather(by_class, representative)
        # The class pool also holds the other original samples of the class.
        orig_class = tf.math.unsorted_segment_min(full[:batch], representative, batch + 1)
        syn_pool = tf.minimum(syn_pool, tf.gather(orig_class, representative))
    from_original = tf.where(negative_col, full[:batch], big)
    from_pool = tf.where(negative_col, syn_pool, big)
    best_orig_row = tf.reduce_min(from_original, axis=1)
    best_pool_row = tf.reduce_min(from_pool, axis=1)
    best_col = tf.argmin(tf.minimum(from_original, from_pool), axis=1, output_type=tf.int32)
    has_negative = tf.reduce_any(negative_col, axis=1)
    # Synthetic if the winning column is synthetic or only a pool row reaches the minimum
    # (for "class" pooling pool rows include originals; count those as synthetic only
    # when the winning row is synthetic, i.e. the synthetic rows alone reach it).
    if pooling == "class":
        syn_only = tf.gather(by_class, representative)
        best_syn_row = tf.reduce_min(tf.where(negative_col, syn_only, big), axis=1)
        best_orig_rows = tf.reduce_min(
            tf.where(negative_col, tf.gather(orig_class, representative), big), axis=1
        )
        row_is_syn = best_syn_row < tf.minimum(best_orig_rows, best_orig_row)
    else:
        row_is_syn = best_pool_row < best_orig_row
    synthetic_wins = tf.logical_or(row_is_syn, tf.gather(is_syn, best_col))
    synthetic_wins = tf.logical_and(synthetic_wins, has_negative)
    n_syn = tf.reduce_sum(tf.cast(synthetic_wins, tf.int32))
    n_all = tf.reduce_sum(tf.cast(has_negative, tf.int32))
    return {"synthetic": n_syn, "original": n_all - n_syn}


def hard_negative_ratio(embeddings_batches, expansion, distance="euclidean", pooling="anchor"):
    """Fraction of batch-hard negatives that involve a synthetic point (Fig. 6).

    Args:
        embeddings_batches: iterable of `(embeddings, labels)` training batches.
        expansion: the `EmbeddingExpansion` used in training.

    Returns:
        dict with `synthetic`, `original` counts and `ratio` = synthetic / total.
    """
    synthetic = original = 0
    for embeddings, labels in embeddings_batches:
        counts = hard_negative_sources(expansion, embeddings, labels, distance, pooling)
        synthetic += int(counts["synthetic"])
        original += int(counts["original"])
    total = synthetic + original
    return {"synthetic": synthetic, "original": original, "ratio": synthetic / total if total else float("nan")}


class ExpansionMonitor(keras.callbacks.Callback):
    """Logs EE statistics during training on a few fixed training batches (Figs. 3 and 6).

    The batches are embedded by the model in inference mode and pooled; EE's
    synthetic points (`expansion.n_points`, `normalize`, `pairs`) are generated
    from the same-class pairs of the pooled set. Logged keys:

    - `ee_synthetic_recall@1`: Recall@1 of the synthetic points as queries against
      the original points (Fig. 3, "synthetic");
    - `ee_original_recall@1`: Recall@1 of the original points, each against the
      other original points (Fig. 3, "original");
    - `ee_synthetic_negative_ratio`: share of batch-hard negatives that involve a
      synthetic point, per batch (Fig. 6).

    They are measured after the first epoch, every `every` epochs and after the
    last; other epochs log NaN (every log row has the same keys).

    Args:
        batches: a few `(images, labels)` training batches (a finite iterable).
        expansion: the `EmbeddingExpansion` used by the loss.
        every: measure every this many epochs.
    """

    KEYS = ("ee_synthetic_recall@1", "ee_original_recall@1", "ee_synthetic_negative_ratio")
    """The log keys this callback writes every epoch (NaN when not measured)."""

    def __init__(self, batches, expansion, every=1):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}.")
        self.batches = list(batches)
        if not self.batches:
            raise ValueError("ExpansionMonitor needs at least one batch.")
        self.expansion = expansion
        self.every = every

    def measure(self):
        """The statistics now, as a dict of the `KEYS`."""
        embedded = [(np.asarray(self.model(x, training=False)), np.asarray(y).reshape(-1)) for x, y in self.batches]
        x = np.concatenate([e for e, _ in embedded])
        y = np.concatenate([l for _, l in embedded])
        return {
            "ee_synthetic_recall@1": synthetic_query_recall(x, y, self.expansion.n_points, self.expansion.normalize,
                                                            self.expansion.pairs),
            "ee_original_recall@1": recall_at_k(x, y, ks=(1,))["recall@1"],
            "ee_synthetic_negative_ratio": hard_negative_ratio(embedded, self.expansion)["ratio"],
        }

    def on_epoch_end(self, epoch, logs=None):
        """Logs the `KEYS` measured now on epochs that are due, NaN on the others (Keras callback)."""
        logs = logs if logs is not None else {}
        last = (self.params or {}).get("epochs")
        due = epoch == 0 or (epoch + 1) % self.every == 0 or (last is not None and epoch + 1 == last)
        logs.update(self.measure() if due else dict.fromkeys(self.KEYS, float("nan")))


def plot_expansion_recall(history, path=None):
    """EE Fig. 3: Recall@1 of synthetic and of original training points over training.

    Args:
        history: {key: [value per epoch]} with `ee_synthetic_recall@1` and
            `ee_original_recall@1` (`History.history`, or
            `tfdml.analysis.read_history` of a run's log.csv); NaN epochs skipped.
        path: PNG path or None.

    Returns:
        `path`.
    """
    fig, (ax,) = figure()
    for key, label in (("ee_original_recall@1", "original points"), ("ee_synthetic_recall@1", "synthetic points")):
        plot_epochs(ax, history[key], label)
    ax.set_title("Recall@1 of training points (EE Fig. 3)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("Recall@1")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, path)


def distance_heatmap(embeddings, labels, path=None, max_classes=30, split="test", class_names=None):
    """Euclidean distances between the first and second sample of each class (Fig. 7).

    Rows: first sample of each class; columns: second sample; normalised to
    [0, 1] by the largest distance. A dark diagonal means same-class pairs are
    closer than different-class pairs.

    Args:
        split: name of the split the embeddings come from, in the title.
        class_names: optional names per label id for the axis ticks.

    Returns:
        (C, C) matrix in [0, 1] for the first `max_classes` classes having ≥ 2 samples.
    """
    embeddings, labels = np.asarray(embeddings, np.float64), np.asarray(labels)
    firsts, seconds, shown = [], [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) >= 2:
            firsts.append(embeddings[idx[0]])
            seconds.append(embeddings[idx[1]])
            shown.append(c)
        if len(firsts) == max_classes:
            break
    a, b = np.array(firsts), np.array(seconds)
    d = np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0))
    d = d / d.max() if d.max() > 0 else d
    fig, (ax,) = figure(width=5.5)
    im = ax.imshow(d, cmap="viridis", vmin=0, vmax=1)
    ax.set_title(f"{split} split: distances, 1st vs 2nd sample per class")
    ax.set_xlabel("class (second sample)")
    ax.set_ylabel("class (first sample)")
    if len(shown) <= 30:
        ticks = [str(class_names[int(c)]) if class_names is not None and int(c) < len(class_names) else str(c)
                 for c in shown]
        ax.set_xticks(range(len(shown)), ticks, fontsize=6, rotation=90)
        ax.set_yticks(range(len(shown)), ticks, fontsize=6)
    fig.colorbar(im, ax=ax, label="normalised Euclidean distance")
    save(fig, path)
    return d


def _occlude(images, size, kind):
    images = np.array(images, dtype=np.float32, copy=True)
    h, w = images.shape[1:3]
    s = int(size)
    if s <= 0:
        return images
    if kind == "center":
        top, left = (h - s) // 2, (w - s) // 2
        images[:, max(top, 0):max(top, 0) + s, max(left, 0):max(left, 0) + s] = 0.0
    else:
        frame = min(s // 2, h // 2)
        mask = np.ones((h, w), bool)
        mask[frame:h - frame, frame:w - frame] = False
        images[:, mask] = 0.0
    return images


def occlusion_robustness(embedder, images, labels, kind="center", steps=6, path=None, batch_size=256):
    """Recall@1 as a centre hole or boundary frame grows from 0 to the image size (Fig. 8).

    Args:
        embedder: model from raw images to embeddings.
        images: (N, H, W, 3) raw images; labels: (N,).
        kind: "center" (a black square of side s in the middle) or "boundary"
            (a black frame leaving the (H − s) × (W − s) centre visible).
        steps: number of sizes from 0 to H.

    Returns:
        (sizes, recalls) arrays.
    """
    if kind not in ("center", "boundary"):
        raise ValueError(f"kind must be 'center' or 'boundary', got {kind!r}.")
    images, labels = np.asarray(images), np.asarray(labels)
    sizes = np.linspace(0, images.shape[1], steps).round().astype(int)
    recalls = []
    for size in sizes:
        occluded = _occlude(images, size, kind)
        data = [(occluded[i:i + batch_size], labels[i:i + batch_size]) for i in range(0, len(labels), batch_size)]
        embeddings, y = embed(embedder, data)
        recalls.append(recall_at_k(embeddings, y, ks=(1,))["recall@1"])
    recalls = np.array(recalls)
    line_plot(sizes, {f"{kind} occlusion": recalls}, path, f"Robustness to {kind} occlusion",
              "occlusion size (pixels)", "Recall@1", (0, 1.05))
    return sizes, recalls


def synthetic_test_queries(embeddings, labels, n_points=2, normalize=True, pairs_per_class=None, seed=0, path=None,
                           max_classes=200, max_queries=2000, chunk_size=256):
    """Recall@1 of synthetic queries made from random same-class test pairs (EE Fig. 9).

    For each class (at most `max_classes` random classes), `pairs_per_class`
    random pairs (i, j) of its test points are combined by EE into n points
    x̄_k = (k·x_i + (n+1−k)·x_j)/(n+1) (L2-normalised when `normalize`); each
    synthetic point queries the original test set *without its own end points*
    i and j — otherwise the nearest neighbour of a point on a short segment is
    almost always one of its ends, and Recall@1 is 1.0 whatever the embedding.

    Args:
        pairs_per_class: pairs per class; None: `max_queries` // classes (at
            least 5), so few-class test sets still get enough queries to
            resolve Recall@1 (an embedding whose classes are well separated does
            give 1.0).
        max_queries: query budget per position when `pairs_per_class` is None.
        chunk_size: queries per distance block (memory O(chunk_size · N)).

    Returns:
        (positions k = 1..n, Recall@1 per position).
    """
    rng = np.random.default_rng(seed)
    embeddings, labels = np.asarray(embeddings, np.float64), np.asarray(labels)
    classes = [c for c in np.unique(labels) if np.sum(labels == c) >= 2]
    if len(classes) > max_classes:
        classes = rng.choice(classes, size=max_classes, replace=False)
    if pairs_per_class is None:
        pairs_per_class = max(5, max_queries // max(len(classes), 1))
    ends, query_labels = [], []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        for _ in range(pairs_per_class):
            ends.append(rng.choice(idx, size=2, replace=False))
            query_labels.append(c)
    ends, query_labels = np.array(ends, dtype=np.int64).reshape(-1, 2), np.array(query_labels)
    sq = np.sum(embeddings ** 2, axis=1)
    positions = np.arange(1, n_points + 1)
    recalls = []
    for k in positions:
        correct = 0
        for start in range(0, len(ends), chunk_size):
            pair = ends[start:start + chunk_size]
            queries = (k * embeddings[pair[:, 0]] + (n_points + 1 - k) * embeddings[pair[:, 1]]) / (n_points + 1)
            if normalize:
                queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
            # exact float64 squared distances; the query's own end points are excluded
            d = np.sum(queries ** 2, axis=1)[:, None] + sq[None, :] - 2.0 * queries @ embeddings.T
            rows = np.arange(len(pair))
            d[rows, pair[:, 0]] = np.inf
            d[rows, pair[:, 1]] = np.inf
            correct += int(np.sum(labels[np.argmin(d, axis=1)] == query_labels[start:start + chunk_size]))
        recalls.append(correct / len(ends) if len(ends) else 0.0)
    recalls = np.array(recalls)
    line_plot(positions, {f"synthetic queries ({len(ends)} per position)": recalls}, path,
              "Synthetic test queries (EE), own end points excluded", "interpolation position k", "Recall@1",
              (0, 1.05))
    return positions, recalls
