"""Retrieval metrics from exact rank statistics (never an N×N matrix, never a top-1000 selection).

Definitions (query q, ranked references r_1, r_2, … nearest first by exact
Euclidean distance, q itself excluded when queries = references; rel_i = 1 if
r_i has q's label; R_q = number of references with q's label):

- Recall@K (EE paper; Roth et al. A.3 eq. 26): 1 if any of r_1..r_K is relevant,
  averaged over queries — i.e. 1 if the nearest relevant reference has rank < K.
- R-Precision (Musgrave et al. 2020): (1/R_q) Σ_{i ≤ R_q} rel_i.
- MAP@R (Musgrave et al. 2020): (1/R_q) Σ_{i ≤ R_q} P(i) · rel_i, P(i) the
  precision of the first i results.
- mAP@1000: Σ_{i ≤ K} P(i) · rel_i / min(R_q, K) with K = min(1000, #references).
- mAP_c (Roth et al. A.3 eq. 29): MAP@R averaged over the queries of each class,
  then over classes (every class weighs the same).

Exactness: the ranking is that of an exact float64 brute force on the given
float32 embeddings (`tfdml.retrieval.ranking`), also when the embeddings are
squeezed together. Ties in distance are broken by the lower reference index.

Degenerate cases: a query whose class has no other reference (R_q = 0) cannot be
scored and is excluded from every average (if no query can be scored, metrics
are NaN). K larger than the number of references is clipped to it.
"""
import numpy as np

from tfdml.metrics.validation import check_embeddings_and_labels
from tfdml.retrieval.ranking import rank_relevance

RETRIEVAL_METRICS = ("recall", "map@r", "r_precision", "map@1000", "map_c")
_RANKED = ("map@r", "r_precision", "map_c", "map@1000")


def _list_lengths(positives, available, metrics):
    lengths = np.zeros_like(positives)
    if {"map@r", "r_precision", "map_c"} & set(metrics):
        lengths = np.maximum(lengths, positives)
    if "map@1000" in metrics:
        lengths = np.maximum(lengths, np.where(positives > 0, min(1000, available), 0))
    return lengths


def _precision_sums(relevance, depth, chunk=4096):
    """(Σ_{i ≤ depth_q} P(i)·rel_i, Σ_{i ≤ depth_q} rel_i) per query, rows processed in chunks."""
    weighted, hits = np.zeros(len(depth)), np.zeros(len(depth))
    for start in range(0, len(depth), chunk):
        rel = relevance[start:start + chunk]
        ranks = np.arange(1, rel.shape[1] + 1)
        rel = rel & (ranks[None, :] <= depth[start:start + chunk, None])
        precision = np.cumsum(rel, axis=1) / ranks
        weighted[start:start + chunk] = np.sum(precision * rel, axis=1)
        hits[start:start + chunk] = np.sum(rel, axis=1)
    return weighted, hits


def retrieval_metrics(embeddings, labels, ks=(1, 2, 4, 8), metrics=RETRIEVAL_METRICS,
                      reference_embeddings=None, reference_labels=None, chunk_size=1024, block_size=8192,
                      progress=None):
    """Computes the requested retrieval metrics exactly in one sweep.

    Args:
        embeddings: the queries (N, D).
        labels: their integer labels (N,).
        ks: K values of Recall@K.
        metrics: subset of `RETRIEVAL_METRICS`.
        reference_embeddings: a separate reference set (default: the
            queries, each query excluded from its own results).
        reference_labels: labels of `reference_embeddings`.
        chunk_size: queries per block.
        block_size: references per block (memory O(chunk_size × block_size)
            besides the candidates).
        progress: optional callable `progress(done, total)`.

    Returns:
        dict with `recall@K` for every K (if "recall" requested) and the other
        requested metric names, as Python floats.
    """
    embeddings, labels = check_embeddings_and_labels(embeddings, labels)
    same = reference_embeddings is None
    if not same:
        reference_embeddings, reference_labels = check_embeddings_and_labels(
            reference_embeddings, reference_labels, "reference_embeddings", "reference_labels")
        if reference_embeddings.shape[1] != embeddings.shape[1]:
            raise ValueError(f"reference_embeddings have dimension {reference_embeddings.shape[1]} but "
                             f"embeddings have {embeddings.shape[1]}.")
    ks = sorted({int(k) for k in ks})
    if any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks}.")
    unknown = [m for m in metrics if m not in RETRIEVAL_METRICS]
    if unknown:
        raise ValueError(f"Unknown retrieval metrics {unknown}; valid names: {', '.join(RETRIEVAL_METRICS)}.")
    ref_labels = labels if same else reference_labels
    classes, counts = np.unique(ref_labels, return_counts=True)
    lookup = dict(zip(classes.tolist(), counts.tolist()))
    positives = np.array([lookup.get(int(label), 0) for label in labels], np.int64) - int(same)
    available = len(ref_labels) - int(same)
    ranked = rank_relevance(embeddings, labels, reference_embeddings, reference_labels,
                            list_lengths=_list_lengths(positives, available, metrics),
                            max_rank=max(ks) if "recall" in metrics else 0, chunk_size=chunk_size,
                            block_size=block_size, progress=progress)
    scored = positives > 0
    n_scored = int(scored.sum())
    result = {}
    if "recall" in metrics:
        rank = ranked.first_positive_rank
        for k in ks:
            result[f"recall@{k}"] = float(np.mean((rank[scored] >= 0) & (rank[scored] < k))) if n_scored \
                else float("nan")
    if set(_RANKED) & set(metrics):
        safe = np.maximum(positives, 1)
        weighted, hits = _precision_sums(ranked.relevance, positives)
        values = {"map@r": weighted / safe, "r_precision": hits / safe}
        if "map@1000" in metrics:
            top = min(1000, available)
            weighted, _ = _precision_sums(ranked.relevance, np.full_like(positives, top))
            values["map@1000"] = weighted / np.maximum(np.minimum(positives, top), 1)
        for name in ("map@r", "r_precision", "map@1000"):
            if name in metrics:
                result[name] = float(np.mean(values[name][scored])) if n_scored else float("nan")
        if "map_c" in metrics:
            _, cls = np.unique(labels[scored], return_inverse=True)
            sums = np.bincount(cls, weights=values["map@r"][scored])
            result["map_c"] = float(np.mean(sums / np.bincount(cls))) if n_scored else float("nan")
    return result


def recall_at_k(embeddings, labels, ks=(1, 2, 4, 8), reference_embeddings=None, reference_labels=None,
                chunk_size=1024):
    """Recall@K for every K in `ks` as a dict `{"recall@K": value}`."""
    return retrieval_metrics(embeddings, labels, ks, ("recall",), reference_embeddings, reference_labels,
                             chunk_size)
