"""Explicit-loop numpy references for the ranking losses (FastAP, Smooth-AP, ranked list), written
from the papers' equations (float64, plain loops over queries and items; no tfdml code). Each takes
EE arguments (n, pairs, pooling): negative values come from `reference_expansion.negative_matrix`
(a loop over the synthetic points)."""
import math

import reference_expansion as ref


def _matrices(x, labels, metric, n, pairs, pooling):
    xn = ref.normalize(x)
    return ref.positive_matrix(xn, metric), ref.negative_matrix(xn, labels, metric, n, True, pairs, pooling)


def fastap(x, labels, bins=10, n=0, pairs="consecutive", pooling="class"):
    """Cakir et al. 2019: 1 − mean over queries with a positive of
    (1/|P|) Σ_l h⁺_l H⁺_l / H_l, triangular soft binning of squared distances on nodes l·4/L, l = 0..L."""
    d, dn = _matrices(x, labels, "squared_euclidean", n, pairs, pooling)
    b, delta = len(labels), 4.0 / bins
    nodes = [l * delta for l in range(bins + 1)]

    def pulse(value, node):
        return max(0.0, 1.0 - abs(min(max(value, 0.0), 4.0) - node) / delta)

    terms = []
    for i in range(b):
        positives = [j for j in range(b) if j != i and labels[j] == labels[i]]
        negatives = [k for k in range(b) if labels[k] != labels[i]]
        if not positives:
            continue
        h_pos = [sum(pulse(d[i, j], z) for j in positives) for z in nodes]
        h_neg = [sum(pulse(dn[i, k], z) for k in negatives) for z in nodes]
        ap = 0.0
        for l in range(len(nodes)):
            cumulative_pos = sum(h_pos[: l + 1])
            cumulative_all = cumulative_pos + sum(h_neg[: l + 1])
            if cumulative_all > 0:
                ap += h_pos[l] * cumulative_pos / cumulative_all
        terms.append(1.0 - ap / len(positives))
    return sum(terms) / len(terms) if terms else 0.0


def _sigmoid(value, tau):
    return 1.0 / (1.0 + math.exp(-value / tau))


def smooth_ap(x, labels, tau=0.01, include_query=False, n=0, pairs="consecutive", pooling="class"):
    """Brown et al. 2020: AP_q = 1/|P| Σ_{i∈P} (1 + Σ_{j∈P,j≠i} G(s_qj − s_qi)) /
    (1 + Σ_{j∈Ω,j≠i} G(s_qj − s_qi)), Ω = P ∪ N the retrieval set; loss = mean over queries of 1 − AP_q.
    include_query: q belongs to its own P and Ω (the authors' code)."""
    s, sn = _matrices(x, labels, "cosine", n, pairs, pooling)
    b = len(labels)
    terms = []
    for q in range(b):
        retrieval = [j for j in range(b) if include_query or j != q]
        positives = [j for j in retrieval if labels[j] == labels[q]]
        if not positives:
            continue

        def score(j):
            return s[q, j] if labels[j] == labels[q] else sn[q, j]

        ap = 0.0
        for i in positives:
            rank_pos = 1.0 + sum(_sigmoid(score(j) - score(i), tau) for j in positives if j != i)
            rank_all = 1.0 + sum(_sigmoid(score(j) - score(i), tau) for j in retrieval if j != i)
            ap += rank_pos / rank_all
        terms.append(1.0 - ap / len(positives))
    return sum(terms) / len(terms) if terms else 0.0


def ranked_list(x, labels, margin=0.4, alpha=1.2, t_n=10.0, t_p=0.0, lam=1.0, n=0, pairs="consecutive",
                pooling="class", weights_from=None):
    """Wang et al. 2019: (1/B) Σ_i L_P(i) + λ L_N(i), L_P the w⁺-weighted mean of d − (α − m) over the
    positives with d > α − m, L_N the w⁻-weighted mean of α − d over the negatives with d < α,
    w⁺ = e^{T_p (d − (α − m))}, w⁻ = e^{T_n (α − d)}; Euclidean distances of unit vectors.
    weights_from: embeddings whose distances give the weights (held fixed, as constants in a gradient)."""
    d, dn = _matrices(x, labels, "euclidean", n, pairs, pooling)
    wd, wdn = (d, dn) if weights_from is None else _matrices(weights_from, labels, "euclidean", n, pairs, pooling)
    b = len(labels)
    total = 0.0
    for i in range(b):
        pos = [j for j in range(b) if j != i and labels[j] == labels[i] and d[i, j] > alpha - margin]
        neg = [k for k in range(b) if labels[k] != labels[i] and dn[i, k] < alpha]
        if pos:
            weights = [math.exp(t_p * (wd[i, j] - (alpha - margin))) for j in pos]
            total += sum(w * (d[i, j] - (alpha - margin)) for w, j in zip(weights, pos)) / sum(weights)
        if neg:
            weights = [math.exp(t_n * (alpha - wdn[i, k])) for k in neg]
            total += lam * sum(w * (alpha - dn[i, k]) for w, k in zip(weights, neg)) / sum(weights)
    return total / b
