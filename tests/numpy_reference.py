"""Explicit-loop numpy references for the foundation losses, written from the papers'
formulas (no tfdml code is used here). float64 throughout; slow but obvious."""
import itertools

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


# ------------------------------------------------------------------- losses
def triplet(x, labels, margin=0.2, mining="hard", form="hinge", metric="euclidean", normalized=True,
            temperature=0.1, scale=1.0, n=0, pairs="consecutive", pooling="anchor"):
    x = normalize(x) if normalized else x
    x = x * scale
    dp = positive_matrix(x, metric)
    dn = negative_matrix(x, labels, metric, n, normalized, pairs, pooling)
    sp = positive_matrix(x, "cosine")
    sn = negative_matrix(x, labels, "cosine", n, normalized, pairs, pooling)
    b = len(labels)

    def value(a, p, q):
        if form == "hinge":
            return max(dp[a, p] - dn[a, q] + margin, 0.0)
        if form == "softplus":
            return float(np.log1p(np.exp(dp[a, p] - dn[a, q])))
        logits = np.array([sp[a, p], sn[a, q]]) / temperature
        return float(-(logits[0] - np.log(np.sum(np.exp(logits)))))

    terms = []
    for a in range(b):
        pos = [j for j in range(b) if j != a and labels[j] == labels[a]]
        neg = [k for k in range(b) if labels[k] != labels[a]]
        if not pos or not neg:
            continue
        if mining == "all":
            for p, q in itertools.product(pos, neg):
                v = value(a, p, q)
                if form != "hinge" or v > 0:
                    terms.append(v)
            continue
        if mining == "hard":
            p = max(pos, key=lambda j: dp[a, j])
            q = min(neg, key=lambda k: dn[a, k])
        elif mining == "easy_positive_hard":
            p = min(pos, key=lambda j: dp[a, j])
            q = min(neg, key=lambda k: dn[a, k])
        elif mining == "easy_positive_semihard":
            p = min(pos, key=lambda j: dp[a, j])
            farther = [k for k in neg if dn[a, k] > dp[a, p]]
            if not farther:
                continue
            q = min(farther, key=lambda k: dn[a, k])
        else:
            raise ValueError(mining)
        terms.append(value(a, p, q))
    return float(np.mean(terms)) if terms else 0.0


def official_hphn_ee(x, labels, margin, n):
    """Official EE code semantics (MXNet HPHN triplet + EE, consecutive pairs)."""
    x = normalize(x)
    pts = [(x[i], labels[i], {i}) for i in range(len(labels))] + synthetic_points(x, labels, n, True)
    terms = []
    for a in range(len(labels)):
        pos = [np.linalg.norm(x[a] - x[j]) for j in range(len(labels)) if j != a and labels[j] == labels[a]]
        own = [p for p, _, owners in pts if a in owners]
        others = [p for p, l, _ in pts if l != labels[a]]
        if not pos or not others:
            continue
        d_an = min(np.linalg.norm(p - q) for p in own for q in others)
        terms.append(max(max(pos) - d_an + margin, 0.0))
    return float(np.mean(terms)) if terms else 0.0


def lifted(x, labels, margin=1.0, n=0, pairs="consecutive", pooling="class"):
    x = normalize(x)
    d = positive_matrix(x, "euclidean")
    dn = negative_matrix(x, labels, "euclidean", n, True, pairs, pooling)
    b, terms = len(labels), []
    for i in range(b):
        for j in range(b):
            if i == j or labels[i] != labels[j]:
                continue
            s = sum(np.exp(margin - dn[i, k]) for k in range(b) if labels[k] != labels[i])
            s += sum(np.exp(margin - dn[j, k]) for k in range(b) if labels[k] != labels[j])
            big_j = np.log(s) + d[i, j] if s > 0 else -np.inf
            terms.append(0.5 * max(big_j, 0.0) ** 2)
    return float(np.mean(terms)) if terms else 0.0


def npair(x, labels, l2_reg=0.005, n=0, pairs="consecutive", pooling="class"):
    s = positive_matrix(x, "dot")
    sn = negative_matrix(x, labels, "dot", n, False, pairs, pooling)
    b, terms = len(labels), []
    for i in range(b):
        for j in range(b):
            if i == j or labels[i] != labels[j]:
                continue
            terms.append(np.log(1 + sum(np.exp(sn[i, k] - s[i, j]) for k in range(b) if labels[k] != labels[i])))
    reg = l2_reg * np.mean([np.sum(v ** 2) for v in x])
    return (float(np.mean(terms)) if terms else 0.0) + reg


def multi_similarity(x, labels, alpha=2.0, beta=50.0, base=0.5, epsilon=0.1, n=0, pairs="consecutive",
                     pooling="class"):
    x = normalize(x)
    s = positive_matrix(x, "cosine")
    sn = negative_matrix(x, labels, "cosine", n, True, pairs, pooling)
    b, total = len(labels), 0.0
    for i in range(b):
        pos = [j for j in range(b) if j != i and labels[j] == labels[i]]
        neg = [k for k in range(b) if labels[k] != labels[i]]
        min_pos = min((s[i, j] for j in pos), default=np.inf)
        max_neg = max((sn[i, k] for k in neg), default=-np.inf)
        kept_neg = [k for k in neg if sn[i, k] + epsilon > min_pos]
        kept_pos = [j for j in pos if s[i, j] - epsilon < max_neg]
        total += np.log(1 + sum(np.exp(-alpha * (s[i, j] - base)) for j in kept_pos)) / alpha
        total += np.log(1 + sum(np.exp(beta * (sn[i, k] - base)) for k in kept_neg)) / beta
    return total / b


def contrastive(x, labels, pos_margin=0.0, neg_margin=1.0, squared=False, n=0, pairs="consecutive",
                pooling="class"):
    x = normalize(x)
    d = positive_matrix(x, "euclidean")
    dn = negative_matrix(x, labels, "euclidean", n, True, pairs, pooling)
    b = len(labels)
    power = 2 if squared else 1
    pos = [max(d[i, j] - pos_margin, 0) ** power for i in range(b) for j in range(b)
           if i != j and labels[i] == labels[j]]
    neg = [max(neg_margin - dn[i, k], 0) ** power for i in range(b) for k in range(b) if labels[i] != labels[k]]
    neg = [v for v in neg if v > 0]
    return (float(np.mean(pos)) if pos else 0.0) + (float(np.mean(neg)) if neg else 0.0)
