"""Explicit-loop numpy references for Embedding Expansion (Ko & Gu, CVPR 2020) and the
pairwise metrics every loss reference builds on, written from the papers' formulas (no
tfdml code is used here). float64 throughout; slow but obvious."""
import math

import numpy as np


def normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def dist(a, b, metric):
    if metric == "euclidean":
        return float(np.sqrt(np.sum((a - b) ** 2)))
    if metric == "squared_euclidean":
        return float(np.sum((a - b) ** 2))
    if metric == "cosine_distance":
        return float(1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    if metric == "cosine":
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    if metric == "dot":
        return float(a @ b)
    raise ValueError(metric)


def is_similarity(metric):
    return metric in ("cosine", "dot")


# ----------------------------------------------------------------- expansion
def consecutive_pairs(labels):
    """Within each class in batch order: (1st, 2nd), (3rd, 4th), ..."""
    pairs = []
    for c in dict.fromkeys(labels.tolist()):  # classes in order of first appearance
        members = [i for i, l in enumerate(labels) if l == c]
        pairs += list(zip(members[0::2], members[1::2]))
    return pairs


def all_pairs(labels):
    return [(i, j) for i in range(len(labels)) for j in range(i + 1, len(labels)) if labels[i] == labels[j]]


def synthetic_points(x, labels, n, normalized, pairs="consecutive"):
    """List of (point, label, {endpoint i, endpoint j}) by the EE formula."""
    out = []
    for i, j in (consecutive_pairs(labels) if pairs == "consecutive" else all_pairs(labels)):
        for k in range(1, n + 1):
            p = (k * x[i] + (n + 1 - k) * x[j]) / (n + 1)
            if normalized:
                p = p / np.linalg.norm(p)
            out.append((p, labels[i], {i, j}))
    return out


def pool_points(pts, labels, i, pooling):
    """Points standing in for original i: all points of its class ("class") or G(i) —
    i and the synthetic points on its segments ("anchor"). `pts`: (point, label, owners)."""
    if pooling == "class":
        return [p for p, l, _ in pts if l == labels[i]]
    return [p for p, _, owners in pts if i in owners]


def negative_matrix(x, labels, metric, n=0, normalized=True, pairs="consecutive", pooling="class"):
    """B×B matrix whose negative entries are EE-pooled (min distance / max similarity)."""
    b = len(labels)
    pts = [(x[i], labels[i], {i}) for i in range(b)]
    if n > 0:
        pts += synthetic_points(x, labels, n, normalized, pairs)
    better = max if is_similarity(metric) else min
    out = np.zeros((b, b))
    for i in range(b):
        for k in range(b):
            if n == 0 or labels[i] == labels[k]:
                out[i, k] = dist(x[i], x[k], metric)
                continue
            out[i, k] = better(dist(p, q, metric) for p in pool_points(pts, labels, i, pooling)
                               for q in pool_points(pts, labels, k, pooling))
    return out


def positive_matrix(x, metric):
    b = len(x)
    return np.array([[dist(x[i], x[j], metric) for j in range(b)] for i in range(b)])


def log_sum_exp(values):
    values = list(values)
    if not values:
        return -np.inf
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))
