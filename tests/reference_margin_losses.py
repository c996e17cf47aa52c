"""Explicit-loop numpy references for PNP (Li et al. 2022), threshold-consistent margin (Zhang et al. 2024) and
dynamic soft margin (Zhang & Rusinkiewicz 2019), written from the papers' formulas (float64, loops over samples;
no tfdml code). The pair-based metrics and Embedding Expansion's pooled negatives come from
`reference_expansion` (a loop over the synthetic points)."""
import math

import numpy as np

import reference_expansion as ref


def _matrices(x, labels, metric, n, pairs, pooling):
    xn = ref.normalize(x)
    return ref.positive_matrix(xn, metric), ref.negative_matrix(xn, labels, metric, n, True, pairs, pooling)


def _sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def pnp(x, labels, variant="Dq", tau=0.01, alpha=4.0, b=2.0, query_as_positive=True, n=0, pairs="consecutive",
        pooling="class"):
    """PNP: per query q, f(R_qi) averaged over its positives i (q itself included with `query_as_positive`,
    for queries with another sample of their class), R_qi = Σ_{k negative} σ((s_qk − s_qi)/τ); mean over queries."""
    s, sn = _matrices(x, labels, "cosine", n, pairs, pooling)
    size = len(labels)
    terms = []
    for q in range(size):
        positives = [i for i in range(size) if i != q and labels[i] == labels[q]]
        if not positives:
            continue
        if query_as_positive:
            positives.append(q)
        values = []
        for i in positives:
            rank = sum(_sigmoid((sn[q, k] - s[q, i]) / tau) for k in range(size) if labels[k] != labels[q])
            if variant == "O":
                values.append(rank)
            elif variant == "Iu":
                values.append((1 + rank) * math.log(1 + rank))
            elif variant == "Ib":
                values.append((b * rank - math.log(1 + b * rank)) / b ** 2)
            elif variant == "Ds":
                values.append(math.log(1 + rank))
            else:
                values.append(1 - (1 + rank) ** -alpha)
        terms.append(sum(values) / len(values))
    return sum(terms) / len(terms) if terms else 0.0


def threshold_consistent_margin(x, labels, m_pos=0.9, m_neg=0.5, w_pos=1.0, w_neg=1.0, n=0, pairs="consecutive",
                                pooling="class"):
    """TCM: λ⁺ · mean of (m⁺ − s) over positive pairs with s ≤ m⁺ + λ⁻ · mean of (s − m⁻) over negative pairs
    with s ≥ m⁻ (each mean 0 over an empty set)."""
    s, sn = _matrices(x, labels, "cosine", n, pairs, pooling)
    size = len(labels)
    pos = [m_pos - s[i, j] for i in range(size) for j in range(size)
           if i != j and labels[i] == labels[j] and s[i, j] <= m_pos]
    neg = [sn[i, k] - m_neg for i in range(size) for k in range(size) if labels[i] != labels[k] and sn[i, k] >= m_neg]
    return w_pos * (sum(pos) / len(pos) if pos else 0.0) + w_neg * (sum(neg) / len(neg) if neg else 0.0)


def dsm_relative_distances(x, labels, triplets="hardest", n=0, pairs="consecutive", pooling="class"):
    """The x = d_ap − d_an of the dynamic soft margin's triplets (Euclidean distances of unit vectors)."""
    d, dn = _matrices(x, labels, "euclidean", n, pairs, pooling)
    size = len(labels)
    values = []
    for a in range(size):
        for p in range(size):
            if p == a or labels[p] != labels[a]:
                continue
            negatives = [k for k in range(size) if labels[k] != labels[a]]
            if not negatives:
                continue
            if triplets == "hardest":
                hardest = min(min(dn[a, k] for k in negatives), min(dn[p, k] for k in negatives))
                values.append(d[a, p] - hardest)
            else:
                values.extend(d[a, p] - dn[a, k] for k in negatives)
    return values


def dsm_histogram(values, bins=512, low=-2.0, high=2.0, previous=None, momentum=0.01):
    """The running histogram after one batch: linear votes into bins at low + k·(high − low)/(bins − 1), the
    normalised batch histogram mixed into the normalised previous one with `momentum` (1 for the first batch)."""
    width = (high - low) / (bins - 1)
    votes = [0.0] * bins
    for v in values:
        t = (min(max(v, low), high) - low) / width
        lo = min(int(math.floor(t)), bins - 1)
        share = t - math.floor(t)
        votes[lo] += 1 - share
        votes[min(lo + 1, bins - 1)] += share
    total = sum(votes)
    votes = [v / total for v in votes]
    if previous is None or sum(previous) == 0:
        mixed = votes
    else:
        mixed = [(1 - momentum) * h + momentum * v for h, v in zip(previous, votes)]
    total = sum(mixed)
    return [h / total for h in mixed]


def dsm_weights(values, histogram, low=-2.0, high=2.0):
    """Φ(x) for each x: the CDF of the histogram up to x's lower bin."""
    width = (high - low) / (len(histogram) - 1)
    weights = []
    for v in values:
        lo = min(int(math.floor((min(max(v, low), high) - low) / width)), len(histogram) - 1)
        weights.append(sum(histogram[: lo + 1]))
    return weights


def dynamic_soft_margin(x, labels, bins=512, triplets="hardest", previous=None, momentum=0.01, n=0,
                        pairs="consecutive", pooling="class"):
    """(loss, histogram): mean over the triplets of Φ(x)·x, Φ from the histogram updated with this batch."""
    values = dsm_relative_distances(x, labels, triplets, n, pairs, pooling)
    if not values:
        return 0.0, previous
    histogram = dsm_histogram(values, bins, previous=previous, momentum=momentum)
    weights = dsm_weights(values, histogram)
    return float(np.mean([w * v for w, v in zip(weights, values)])), histogram
