"""Exact k-nearest-neighbour search in TensorFlow: float32 candidates, exact re-ranking, a certificate.

`top_k` is pure TF (graph- and GPU-ready; the exported `retrieve` signature runs
it), for a batch of queries against a fixed `References` set:

1. candidates: the k + margin smallest float32 estimates (`tfdml.retrieval.exact`),
   one (queries × block_size) matmul + `tf.math.top_k` per reference block,
   merged block by block (memory O(queries × block_size));
2. exact squared distances of the candidates (float64 differences), sorted by
   (distance, reference index);
3. certificate: every non-candidate has estimate ≥ e_last (the largest candidate
   estimate), hence true distance ≥ e_last − δ_q. If that exceeds the k-th exact
   distance, the k results are the exact k nearest. Queries without the
   certificate (embeddings squeezed together far from the reference mean) are
   recomputed exactly against every reference (float64, block by block).

The result equals an exact float64 brute force, ties broken by the lower index.
"""
import functools
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfdml.retrieval import exact


class References(NamedTuple):
    """Reference embeddings prepared for `top_k` (build with `prepare_references`).

    Attributes:
        raw: (N, D) float32, the embeddings as given.
        centred: (N_padded, D) float32, fl(x − μ), with zero rows as padding.
        sq_norms: (N_padded,) float32, ‖ĉ‖² of the centred rows, +inf on padding.
        mean: (D,) float32, the centring vector μ (the embeddings' mean unless given).
        max_sq_norm: () float32, the largest of `sq_norms` over the real rows.
    """

    raw: tf.Tensor           # (N, D) float32, as given
    centred: tf.Tensor       # (N_padded, D) float32, fl(x − μ), zero rows as padding
    sq_norms: tf.Tensor      # (N_padded,) float32, ‖ĉ‖², +inf on padding
    mean: tf.Tensor          # (D,) float32
    max_sq_norm: tf.Tensor   # () float32


def prepare_references(embeddings, block_size=8192, mean=None):
    """`References` from an (N, D) float32 array, padded to a multiple of `block_size` rows."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    n = embeddings.shape[0]
    mean = exact.centre(embeddings) if mean is None else np.asarray(mean, np.float32)
    centred, sq = (t.numpy() for t in exact.centred(embeddings, mean))
    padded = -(-max(n, 1) // block_size) * block_size if n > block_size else n
    centred = np.concatenate([centred, np.zeros((padded - n, centred.shape[1]), np.float32)])
    sq = np.concatenate([sq, np.full(padded - n, np.inf, np.float32)])
    return References(tf.constant(embeddings), tf.constant(centred), tf.constant(sq), tf.constant(mean),
                      tf.constant(np.max(sq[:n], initial=0.0), tf.float32))


def matmul_rounding(queries):
    """Extra error scale when the device's matmul rounds float32 inputs (TensorFloat-32 on GPUs).

    Measured at run time: a 16 × 16 matmul of (1 + 2⁻²⁰)·I, whose input depends
    on the queries (×0) so that it is not constant-folded at export, returns
    exactly 1 + 2⁻²⁰ only without input rounding. An exported graph thus keeps
    its bound on whatever device serves it.
    """
    bias = 0.0 * tf.reduce_sum(queries[:1, :1])
    probe = tf.matmul(tf.fill([16, 16], 1.0 + 2.0 ** -20) + bias, tf.eye(16))[0, 0]
    extra = exact.error_scale(0, tf32=True) - exact.error_scale(0, tf32=False)
    return tf.where(tf.equal(probe, 1.0 + 2.0 ** -20), 0.0, extra)


def query_bounds(queries, references):
    """(centred queries, their ‖ĉ‖², per-query error bound δ float64) for `references`."""
    centred, sq = exact.centred(queries, references.mean)
    dim = int(references.raw.shape[1])
    scale = exact.error_scale(dim, tf32=False) + matmul_rounding(queries)
    return centred, sq, tf.cast(exact.error_bound(sq, references.max_sq_norm, scale), tf.float64)


def _candidates(centred, sq, references, count, block_size, exclude):
    """(estimates (Q, count) ascending, indices (Q, count) int64) of the smallest estimates."""
    padded = int(references.centred.shape[0])
    queries = tf.shape(centred)[0]

    def block(start, width):
        est = exact.estimate(centred, sq, references.centred[start:start + width],
                             references.sq_norms[start:start + width])
        columns = tf.cast(start + tf.range(width), tf.int64)
        if exclude is not None:
            est = tf.where(tf.equal(columns[None, :], exclude[:, None]), np.float32(np.inf), est)
        values, idx = tf.math.top_k(-est, k=min(count, width))
        return -values, tf.gather(columns, idx)

    if padded <= block_size:
        return block(0, padded)

    def body(start, values, idx):
        new_values, new_idx = block(start, block_size)
        values = tf.concat([values, new_values], axis=1)
        idx = tf.concat([idx, new_idx], axis=1)
        best, pick = tf.math.top_k(-values, k=count)
        return start + block_size, -best, tf.gather(idx, pick, batch_dims=1)

    init = (tf.constant(0), tf.fill([queries, count], np.float32(np.inf)),
            tf.fill([queries, count], tf.constant(-1, tf.int64)))
    _, values, idx = tf.while_loop(lambda s, *_: s < padded, body, init)
    return values, idx


def _sort_by_distance_then_index(distances, idx):
    by_index = tf.argsort(idx, axis=1, stable=True)
    distances, idx = tf.gather(distances, by_index, batch_dims=1), tf.gather(idx, by_index, batch_dims=1)
    order = tf.argsort(distances, axis=1, stable=True)
    return tf.gather(distances, order, batch_dims=1), tf.gather(idx, order, batch_dims=1)


def _exact_rows(queries, references, k, block_size, exclude):
    """Exact k nearest of each query against every reference (the fallback; float64, by blocks)."""
    n = int(references.raw.shape[0])

    def one(args):
        query, excluded = args
        parts = tf.TensorArray(tf.float64, size=0, dynamic_size=True, infer_shape=False)

        def body(start, parts):
            block = tf.cast(references.raw[start:start + block_size], tf.float64)
            d = tf.reduce_sum(tf.square(block - tf.cast(query, tf.float64)[None, :]), axis=1)
            return start + block_size, parts.write(start // block_size, d)

        _, parts = tf.while_loop(lambda s, _: s < n, body, (tf.constant(0), parts))
        row = parts.concat()
        row = tf.where(tf.equal(tf.range(n, dtype=tf.int64), excluded), np.float64(np.inf), row)
        values, idx = tf.math.top_k(-row, k=k)
        return -values, tf.cast(idx, tf.int64)

    if exclude is None:
        exclude = tf.fill([tf.shape(queries)[0]], tf.constant(-1, tf.int64))
    signature = (tf.TensorSpec([k], tf.float64), tf.TensorSpec([k], tf.int64))
    return tf.map_fn(one, (queries, exclude), fn_output_signature=signature)


def top_k(queries, references, k, margin=16, block_size=8192, exclude=None):
    """Exact k nearest references of each query (pure TF; use inside a `tf.function`).

    Args:
        queries: (Q, D) float32 tensor.
        references: `References`.
        k: number of neighbours (Python int; clipped to the available references).
        margin: extra float32 candidates re-ranked exactly per query.
        block_size: references per matmul block (must match `prepare_references`).
        exclude: optional (Q,) int64 reference index to leave out per query (-1: none).

    Returns:
        (squared distances float64 (Q, k'), indices int64 (Q, k')), nearest first,
        ties by the lower index.
    """
    queries = tf.convert_to_tensor(queries, tf.float32)
    k, count = candidate_count(references, k, margin, exclude is not None)
    if k == 0:
        rows = tf.shape(queries)[0]
        return tf.zeros([rows, 0], tf.float64), tf.zeros([rows, 0], tf.int64)
    centred, sq, delta = query_bounds(queries, references)
    estimates, idx = _candidates(centred, sq, references, count, block_size, exclude)
    return rerank(queries, references, estimates, idx, k, delta, block_size, exclude)


def candidate_count(references, k, margin, excluding):
    """(k clipped to the available references, number of candidates to re-rank)."""
    available = int(references.raw.shape[0]) - int(excluding)
    k = max(0, min(int(k), available))
    return k, min(k + int(margin), available)


def rerank(queries, references, estimates, idx, k, delta, block_size=8192, exclude=None):
    """Exact top k from candidates: exact distances, order by (distance, index), certificate, fallback.

    Args:
        queries: (Q, D) float32; references: `References`.
        estimates, idx: (Q, C) candidate estimates (ascending, any source whose error is within
            `delta`) and reference indices; every non-candidate must have an estimate ≥ the last.
        k: results per query (≤ C); delta: (Q,) float64 error bounds.

    Returns:
        (squared distances float64 (Q, k), indices int64 (Q, k)).
    """
    rows, count = tf.shape(queries)[0], int(idx.shape[1])
    pair_rows = tf.repeat(tf.range(rows, dtype=tf.int64), count)
    distances = tf.reshape(exact.exact_pair_distances(queries, references.raw, pair_rows, tf.reshape(idx, [-1])),
                           [rows, count])
    distances, idx = _sort_by_distance_then_index(distances, idx)
    distances, idx = distances[:, :k], idx[:, :k]
    if count == int(references.raw.shape[0]) - (exclude is not None):  # every reference was re-ranked
        return distances, idx
    certified = tf.cast(estimates[:, -1], tf.float64) - delta > distances[:, -1]
    redo = tf.where(~certified)[:, 0]
    redo_exclude = None if exclude is None else tf.gather(exclude, redo)
    fixed_d, fixed_i = _exact_rows(tf.gather(queries, redo), references, k, block_size, redo_exclude)
    distances = tf.tensor_scatter_nd_update(distances, redo[:, None], fixed_d)
    idx = tf.tensor_scatter_nd_update(idx, redo[:, None], fixed_i)
    return distances, idx


@functools.lru_cache(maxsize=32)
def _compiled_search(k, excluding, margin, block_size, shapes):
    """A `tf.function` of `top_k` that takes the references (of these `shapes`) as arguments, so Searchers
    over references of the same shapes (each evaluation of a split) reuse one trace instead of retracing
    a new closure."""
    spec = [tf.TensorSpec([None, shapes[0][1]], tf.float32)] + [tf.TensorSpec(shape, tf.float32) for shape in shapes]
    if excluding:
        spec.append(tf.TensorSpec([None], tf.int64))

    def run(queries, *arguments):
        prepared = References(*arguments[:len(References._fields)])
        exclude = arguments[len(References._fields)] if excluding else None
        return top_k(queries, prepared, k, margin, block_size, exclude)

    return tf.function(run, input_signature=spec)


class Searcher:
    """Compiled exact k-NN search against fixed reference embeddings (numpy in, numpy out).

    Args:
        embeddings: (N, D) reference embeddings.
        block_size: references per matmul block.
        margin: extra candidates re-ranked exactly per query.
    """

    def __init__(self, embeddings, block_size=8192, margin=16):
        self.block_size, self.margin = int(block_size), int(margin)
        self.references = prepare_references(embeddings, self.block_size)
        self.dim = int(self.references.raw.shape[1])

    def _function(self, k, excluding):
        shapes = tuple(tuple(tensor.shape.as_list()) for tensor in self.references)
        compiled = _compiled_search(k, excluding, self.margin, self.block_size, shapes)
        return lambda queries, *exclude: compiled(queries, *self.references, *exclude)

    def chunks(self, queries, k, exclude=None, chunk_size=1024):
        """Yields `(start, squared distances float64, indices int64)` per chunk of queries."""
        queries = np.asarray(queries, np.float32)
        function = self._function(int(k), exclude is not None)
        for start in range(0, len(queries), chunk_size):
            args = [tf.constant(queries[start:start + chunk_size])]
            if exclude is not None:
                args.append(tf.constant(np.asarray(exclude[start:start + chunk_size], np.int64)))
            distances, idx = function(*args)
            yield start, distances.numpy(), idx.numpy()

    def __call__(self, queries, k, exclude=None, chunk_size=1024):
        """(squared distances float64 (Q, k'), indices int64 (Q, k')) for all queries."""
        parts = list(self.chunks(queries, k, exclude, chunk_size))
        if not parts:
            k = max(0, min(int(k), int(self.references.raw.shape[0]) - (exclude is not None)))
            return np.zeros((0, k)), np.zeros((0, k), np.int64)
        return np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])
