"""Chunked exact nearest neighbours with TensorFlow (memory O(chunk × N)).

Distances are Euclidean on the given embeddings (nothing is normalised here):
for a query q the ranking key of a reference r is ‖r‖² − 2⟨q, r⟩, which orders
references exactly like ‖q − r‖. Queries are processed `chunk_size` at a time
with one matmul and `tf.math.top_k`, so no N×N matrix is ever built.

Ties: `tf.math.top_k` returns equal values in increasing index order, so ties are
broken deterministically by the lower reference index.
"""
import numpy as np
import tensorflow as tf


def iter_nearest_neighbors(queries, references=None, k=1, chunk_size=1024, exclude_self=None):
    """Yields `(start, indices, distances)` for consecutive chunks of queries.

    Same arguments as `nearest_neighbors`; `indices`/`distances` are the rows
    `start:start + len(indices)` of its result. Use this to consume neighbours
    without holding all of them (Q × k) in memory.
    """
    queries = np.asarray(queries, dtype=np.float32)
    same_set = references is None
    references = queries if same_set else np.asarray(references, dtype=np.float32)
    if exclude_self is None:
        exclude_self = same_set
    if queries.ndim != 2 or references.ndim != 2 or queries.shape[1] != references.shape[1]:
        raise ValueError(
            f"queries and references must be (n, d) arrays with the same d; got {queries.shape} "
            f"and {references.shape}."
        )
    if exclude_self and queries.shape[0] != references.shape[0]:
        raise ValueError("exclude_self needs the query set to be the reference set.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    k = max(0, int(min(k, references.shape[0] - int(exclude_self))))
    ref = tf.constant(references)
    ref_sq = tf.reduce_sum(tf.square(ref), axis=1)
    fetch = k + int(exclude_self)
    for start in range(0, queries.shape[0], chunk_size):
        q = tf.constant(queries[start:start + chunk_size])
        rows = q.shape[0]
        if k == 0:
            yield start, np.zeros((rows, 0), np.int64), np.zeros((rows, 0), np.float32)
            continue
        key = ref_sq[None, :] - 2.0 * tf.matmul(q, ref, transpose_b=True)  # (chunk, N)
        if exclude_self:
            own = tf.stack([tf.range(rows), tf.range(rows) + start], axis=1)
            key = tf.tensor_scatter_nd_update(key, own, tf.fill([rows], np.float32(np.inf)))
        values, idx = tf.math.top_k(-key, k=fetch, sorted=True)
        idx, values = idx[:, :k], values[:, :k]
        sq = tf.maximum(-values + tf.reduce_sum(tf.square(q), axis=1, keepdims=True), 0.0)
        yield start, idx.numpy().astype(np.int64), np.sqrt(sq.numpy())


def nearest_neighbors(queries, references=None, k=1, chunk_size=1024, exclude_self=None):
    """Indices and distances of the k nearest references of every query.

    Args:
        queries: (Q, D) array.
        references: (N, D) array; default: the queries themselves.
        k: number of neighbours (clipped to the number of available references).
        chunk_size: queries per matmul.
        exclude_self: drop each query from its own result (default: True when
            `references` is None). Requires Q == N and row i = reference i.

    Returns:
        (indices int64 (Q, k'), distances float32 (Q, k')), nearest first,
        k' = min(k, N − exclude_self).
    """
    chunks = list(iter_nearest_neighbors(queries, references, k, chunk_size, exclude_self))
    return np.concatenate([c[1] for c in chunks]), np.concatenate([c[2] for c in chunks])
