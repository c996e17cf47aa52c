"""Exact nearest neighbours of embeddings (chunked; memory O(chunk × block), never N×N).

Distances are Euclidean on the given embeddings (nothing is normalised here) and
equal an exact float64 brute force on them, ties broken by the lower reference
index: candidates come from float32 matmuls and are re-ranked exactly (see
`tfdml.retrieval.search`).
"""
import numpy as np

from tfdml.retrieval.search import Searcher


def _check(queries, references, exclude_self, chunk_size):
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
    for name, array in (("queries", queries), ("references", references)):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} contain NaN or infinite values.")
    return queries, references, bool(exclude_self)


def iter_nearest_neighbors(queries, references=None, k=1, chunk_size=1024, exclude_self=None):
    """Yields `(start, indices, distances)` for consecutive chunks of queries.

    Same arguments as `nearest_neighbors`; `indices`/`distances` are the rows
    `start:start + len(indices)` of its result. Use this to consume neighbours
    without holding all of them (Q × k) in memory.
    """
    queries, references, exclude_self = _check(queries, references, exclude_self, chunk_size)
    exclude = np.arange(len(queries), dtype=np.int64) if exclude_self else None
    searcher = Searcher(references)
    for start, distances, idx in searcher.chunks(queries, k, exclude, chunk_size):
        yield start, idx, np.sqrt(distances).astype(np.float32)


def nearest_neighbors(queries, references=None, k=1, chunk_size=1024, exclude_self=None):
    """Indices and distances of the k nearest references of every query.

    Args:
        queries: (Q, D) array.
        references: (N, D) array; default: the queries themselves.
        k: number of neighbours (clipped to the number of available references).
        chunk_size: queries per search call.
        exclude_self: drop each query from its own result (default: True when
            `references` is None). Requires Q == N and row i = reference i.

    Returns:
        (indices int64 (Q, k'), distances float32 (Q, k')), nearest first,
        k' = min(k, N − exclude_self).
    """
    chunks = list(iter_nearest_neighbors(queries, references, k, chunk_size, exclude_self))
    return np.concatenate([c[1] for c in chunks]), np.concatenate([c[2] for c in chunks])
