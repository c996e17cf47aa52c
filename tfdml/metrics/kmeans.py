"""Lloyd's k-means in TensorFlow for clustering metrics (chunked; GPU-ready; memory O(chunk × k)).

The algorithm (what `clustering_metrics` uses for NMI and F1):

- initialisation: k-means++ (Arthur & Vassilvitskii 2007; one D²-sampled
  centre per step) when N·k ≤ `KMEANS_PP_LIMIT`; above it (SOP: 60,502 points,
  11,316 clusters) k distinct points drawn uniformly, the default of faiss'
  k-means that Roth et al. use for NMI (k-means++ is k sequential passes over
  the data, too slow there);
- Lloyd iterations (assign each point to the nearest centre by a float32
  matmul, move each centre to the mean of its points) until no assignment
  changes or `max_iter` (20, faiss' and Roth et al.'s setting) iterations;
- an empty cluster gets the point farthest from its centre (as scikit-learn);
- one run (no `n_init` restarts), seeded.

Compared with `sklearn.cluster.KMeans` (greedy k-means++ with 2 + log k
trials per step, up to 300 iterations, tolerance 1e-4): the same objective and
update rule, fewer iterations, plain k-means++ or random initialisation — NMI
differs by the usual k-means run-to-run variation, not systematically.
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
def _kmeans_pp(points, k, seed):
    """k-means++ centres: each next centre drawn with probability ∝ squared distance to the nearest one."""
    n = tf.shape(points)[0]
    first = tf.random.stateless_uniform([], seed, 0, n, dtype=tf.int32)
    d2 = tf.reduce_sum(tf.square(points - points[first]), axis=1)
    chosen = tf.TensorArray(tf.int32, size=k).write(0, first)

    def body(i, d2, chosen):
        total = tf.reduce_sum(d2)
        logits = tf.where(d2 > 0, tf.math.log(d2 / tf.maximum(total, 1e-30)), -np.inf)
        fallback = tf.random.stateless_uniform([], seed + i, 0, n, dtype=tf.int32)
        pick = tf.cond(total > 0,
                       lambda: tf.cast(tf.random.stateless_categorical(logits[None, :], 1, seed + i)[0, 0],
                                       tf.int32),
                       lambda: fallback)
        d2 = tf.minimum(d2, tf.reduce_sum(tf.square(points - points[pick]), axis=1))
        return i + 1, d2, chosen.write(i, pick)

    _, _, chosen = tf.while_loop(lambda i, *_: i < k, body, (tf.constant(1), d2, chosen))
    return tf.gather(points, chosen.stack())


def kmeans(points, k, seed=0, max_iter=20, chunk_size=4096, progress=None):
    """Clusters `points` into `k` clusters (see the module docstring for the exact algorithm).

    Args:
        points: (N, D) float array.
        k: number of clusters (1 ≤ k ≤ N).
        seed: random seed of the initialisation.
        max_iter: maximum number of Lloyd iterations.
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
    if n * k <= KMEANS_PP_LIMIT:
        centres = _kmeans_pp(data, tf.constant(k), seed_pair).numpy()
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
