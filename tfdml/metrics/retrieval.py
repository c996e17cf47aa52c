"""Retrieval metrics from chunked nearest neighbours (never an N×N matrix).

Definitions (query q, ranked references r_1, r_2, … nearest first, q itself
excluded when queries = references; rel_i = 1 if r_i has q's label; R_q = number
of references with q's label):
- Recall@K (EE paper; Roth et al. A.3 eq. 26): 1 if any of r_1..r_K is relevant,
  averaged over queries.
- R-Precision (Musgrave et al. 2020): (1/R_q) Σ_{i ≤ R_q} rel_i.
- MAP@R (Musgrave et al. 2020): (1/R_q) Σ_{i ≤ R_q} P(i) · rel_i, P(i) the
  precision of the first i results.
- mAP@1000: Σ_{i ≤ K} P(i) · rel_i / min(R_q, K) with K = min(1000, #references).
- mAP_c (Roth et al. A.3 eq. 29): MAP@R averaged over the queries of each class,
  then over classes (every class weighs the same).

Degenerate cases: a query whose class has no other reference (R_q = 0) cannot be
scored and is excluded from every average (if no query can be scored, metrics
are NaN). K larger than the number of references is clipped to it. Ties in
distance are broken by the lower reference index (see `neighbors`).
"""
import numpy as np

from tfdml.metrics.neighbors import iter_nearest_neighbors
from tfdml.metrics.validation import check_embeddings_and_labels

RETRIEVAL_METRICS = ("recall", "map@r", "r_precision", "map@1000", "map_c")


def _relevant_counts(query_labels, reference_labels, same_set):
    classes, counts = np.unique(reference_labels, return_counts=True)
    lookup = dict(zip(classes.tolist(), counts.tolist()))
    r = np.array([lookup.get(int(l), 0) for l in query_labels], dtype=np.int64)
    return r - 1 if same_set else r


def retrieval_metrics(embeddings, labels, ks=(1, 2, 4, 8), metrics=RETRIEVAL_METRICS,
                      reference_embeddings=None, reference_labels=None, chunk_size=1024):
    """Computes the requested retrieval metrics in one chunked pass.

    Args:
        embeddings, labels: the queries (N, D) and their integer labels (N,).
        ks: K values of Recall@K.
        metrics: subset of `RETRIEVAL_METRICS`.
        reference_embeddings, reference_labels: a separate reference set
            (default: the queries, each query excluded from its own results).
        chunk_size: queries per matmul (memory O(chunk_size × N)).

    Returns:
        dict with `recall@K` for every K (if "recall" requested) and the other
        requested metric names, as Python floats.
    """
    embeddings, labels = check_embeddings_and_labels(embeddings, labels)
    same_set = reference_embeddings is None
    if same_set:
        ref_embeddings, ref_labels = embeddings, labels
    else:
        ref_embeddings, ref_labels = check_embeddings_and_labels(
            reference_embeddings, reference_labels, "reference_embeddings", "reference_labels")
    ks = sorted({int(k) for k in ks})
    if any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks}.")
    r_all = _relevant_counts(labels, ref_labels, same_set)
    need = [max(ks)] if "recall" in metrics else []
    if {"map@r", "r_precision", "map_c"} & set(metrics):
        need.append(int(r_all.max(initial=0)))
    if "map@1000" in metrics:
        need.append(1000)
    k_fetch = max(need, default=1)
    sums = {f"recall@{k}": 0.0 for k in ks} if "recall" in metrics else {}
    per_query_map_r = np.zeros(len(labels))
    sums.update({"map@r": 0.0, "r_precision": 0.0, "map@1000": 0.0})
    scored = r_all > 0
    exclude = True if same_set else False
    for start, idx, _ in iter_nearest_neighbors(embeddings, None if same_set else ref_embeddings,
                                                k_fetch, chunk_size, exclude):
        rows = slice(start, start + idx.shape[0])
        rel = ref_labels[idx] == labels[rows][:, None]
        r = r_all[rows]
        ok = scored[rows]
        ranks = np.arange(1, idx.shape[1] + 1)
        precision = np.cumsum(rel, axis=1) / ranks
        if "recall" in metrics:
            for k in ks:
                sums[f"recall@{k}"] += float(np.sum(rel[ok, :k].any(axis=1)))
        within_r = ranks[None, :] <= r[:, None]
        safe_r = np.maximum(r, 1)
        map_r = np.sum(precision * rel * within_r, axis=1) / safe_r
        per_query_map_r[rows] = map_r
        sums["map@r"] += float(np.sum(map_r[ok]))
        sums["r_precision"] += float(np.sum((np.sum(rel * within_r, axis=1) / safe_r)[ok]))
        top = min(1000, idx.shape[1])
        denom = np.maximum(np.minimum(r, top), 1)
        sums["map@1000"] += float(np.sum((np.sum(precision[:, :top] * rel[:, :top], axis=1) / denom)[ok]))
    n_scored = int(np.sum(scored))
    result = {}
    for key, total in sums.items():
        name = "recall" if key.startswith("recall@") else key
        if name in metrics:
            result[key] = total / n_scored if n_scored else float("nan")
    if "map_c" in metrics:
        class_means = [per_query_map_r[scored & (labels == c)].mean()
                       for c in np.unique(labels[scored])]
        result["map_c"] = float(np.mean(class_means)) if class_means else float("nan")
    return result


def recall_at_k(embeddings, labels, ks=(1, 2, 4, 8), reference_embeddings=None, reference_labels=None,
                chunk_size=1024):
    """Recall@K for every K in `ks` as a dict `{"recall@K": value}`."""
    return retrieval_metrics(embeddings, labels, ks, ("recall",), reference_embeddings, reference_labels,
                             chunk_size)
