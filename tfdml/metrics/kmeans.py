"""Lloyd's k-means in TensorFlow for clustering metrics (chunked; GPU-ready; memory O(chunk × k)).

The algorithm (what `clustering_metrics` uses for NMI and F1):

- initialisation, when N·k ≤ `KMEANS_PP_LIMIT`: greedy k-means++ (Arthur &
  Vassilvitskii 2007 with 2 + ⌊ln k⌋ D²-sampled candidates per step, keeping the
  one that lowers the total squared distance most — scikit-learn's default);
  above the limit (SOP: 60,502 points, 11,316 clusters) k distinct points drawn
  uniformly, the default of faiss' k-means that Roth et al. use for NMI
  (k-means++ is k sequential passes over the data, too slow there);
- Lloyd iterations (assign each point to the nearest centre by a float32
  matmul, move each centre to the mean of its points) until no assignment
  changes, at most 100 iterations after k-means++ and 20 (faiss' and Roth et
  al.'s setting) after the random initialisation;
- an empty cluster gets the point farthest from its centre (as scikit-learn);
- one run (no `n_init` restarts), seeded.

Compared with `sklearn.cluster.KMeans(n_init=1)`: the same initialisation rule,
objective and update, stopping at a fixed point instead of a 1e-4 tolerance
(≤ 300 iterations); NMI differs only by k-means' run-to-run variation. The
random initialisation at SOP scale usually ends in a worse local optimum than
k-means++ (lower NMI); that is the number faiss-based evaluations report.
"""
import numpy as np
import tensorflow as tf

KMEANS_PP_LIMIT = 5e7


@tf.function(reduce_retracing=True)
def _assign(points, centres):
    """(nearest centre int64, squared distance float32) of each point (float32 estimate, clipped at 0)."""
    sq = tf.reduce_sum(tf.square(centres), axis=1)
    est = sq[None, :] - 2.0 * tf.matmul(points, centres, transpose_b=True)
    nearest = tf.argmin(est, axis=1)
    best = tf.reduce_min(est, axis=1) + tf.reduce_sum(tf.square(points), axis=1)
    return nearest, tf.maximum(best, 0.0)


@tf.function(reduce_retracing=True)
def _kmeans_pp(points, k, trials, seed):
    """Greedy k-means++ centres: per step `trials` candidates drawn ∝ squared distance to the nearest
    chosen centre; the candidate that lowers the total squared distance most is kept."""
    n = tf.shape(points)[0]
    sq = tf.reduce_sum(tf.square(points), axis=1)

    def distances(idx):  # (n, len(idx)) squared distances to points[idx] (float32 estimate, ≥ 0)
        centres = tf.gather(points, idx)
        est = sq[:, None] + tf.gather(sq, idx)[None, :] - 2.0 * tf.matmul(points, centres, transpose_b=True)
        return tf.maximum(est, 0.0)

    first = tf.random.stateless_uniform([1], seed, 0, n, dtype=tf.int32)
    d2 = distances(first)[:, 0]
    chosen = tf.TensorArray(tf.int32, size=k).write(0, first[0])

    def body(i, d2, chosen):
        total = tf.reduce_sum(d2)
        logits = tf.where(d2 > 0, tf.math.log(d2 / tf.maximum(total, 1e-30)), -np.inf)[None, :]
        candidates = tf.cond(
            total > 0,
            lambda: tf.cast(tf.random.stateless_categorical(logits, trials, seed + i)[0], tf.int32),
            lambda: tf.random.stateless_uniform([trials], seed + i, 0, n, dtype=tf.int32))
        trial = tf.minimum(d2[:, None], distances(candidates))
        best = tf.argmin(tf.reduce_sum(trial, axis=0))
        return i + 1, trial[:, best], chosen.write(i, candidates[best])

    _, _, chosen = tf.while_loop(lambda i, *_: i < k, body, (tf.constant(1), d2, chosen))
    return tf.gather(points, chosen.stack())


def kmeans(points, k, seed=0, max_iter=None, chunk_size=4096, progress=None):
    """Clusters `points` into `k` clusters (see the module docstring for the exact algorithm).

    Args:
        points: (N, D) float array.
        k: number of clusters (1 ≤ k ≤ N).
        seed: random seed of the initialisation.
        max_iter: maximum number of Lloyd iterations (default: 100 with the
            k-means++ initialisation, 20 with the random one).
        chunk_size: points per assignment matmul (memory O(chunk_size × k)).
        progress: optional callable `progress(iteration, max_iter)`.

    Returns:
        (assignments int64 (N,), centres float32 (k, D), inertia float).
    """
    points = np.asarray(points, np.float32)
    n = points.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}.")
    data = tf.constant(points)
    seed_pair = tf.constant([seed, 7919], tf.int32)
    plus_plus = n * k <= KMEANS_PP_LIMIT
    if max_iter is None:
        max_iter = 100 if plus_plus else 20
    if plus_plus:
        trials = tf.constant(2 + int(np.log(k)))
        centres = _kmeans_pp(data, tf.constant(k), trials, seed_pair).numpy()
    else:
        centres = points[np.random.default_rng(seed).choice(n, size=k, replace=False)]
    assignments = None
    for iteration in range(max_iter + 1):
        parts = [_assign(data[s:s + chunk_size], tf.constant(centres)) for s in range(0, n, chunk_size)]
        new = np.concatenate([p[0].numpy() for p in parts])
        distances = np.concatenate([p[1].numpy() for p in parts])
        if progress is not None:
            progress(iteration, max_iter)
        if assignments is not None and np.array_equal(new, assignments) or iteration == max_iter:
            assignments = new
            break
        assignments = new
        counts = np.bincount(assignments, minlength=k)
        sums = tf.math.unsorted_segment_sum(data, tf.constant(assignments), k).numpy()
        empty = np.flatnonzero(counts == 0)
        centres = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres).astype(np.float32)
        if len(empty):  # re-seed empty clusters with the points farthest from their centres
            far = np.argsort(-distances, kind="stable")[:len(empty)]
            centres[empty] = points[far]
    return assignments.astype(np.int64), centres, float(distances.astype(np.float64).sum())
