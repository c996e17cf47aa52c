"""Explicit-loop numpy references for the losses of issue 25, written from the papers' equations
(float64, loops over samples; no tfdml code). The pair-based ones take EE arguments: negative
cosines come from `reference_expansion.negative_matrix` (a loop over the synthetic points)."""
import math

import numpy as np

import reference_expansion as ref

lse = ref.log_sum_exp


def _cosines(x, labels, n, pairs, pooling):
    xn = ref.normalize(x)
    return ref.positive_matrix(xn, "cosine"), ref.negative_matrix(xn, labels, "cosine", n, True, pairs, pooling)


def _cross_entropy(logits, target):
    return lse(logits) - logits[target]


# ---------------------------------------------------------------------- proxy
def proxy_anchor(x, labels, proxies, alpha=32.0, delta=0.1):
    """Kim et al. 2020 eq. 4."""
    xs, ps = ref.normalize(x), ref.normalize(proxies)
    present = sorted(set(labels.tolist()))
    pos = neg = 0.0
    for c, p in enumerate(ps):
        if c in present:
            pos += math.log1p(sum(math.exp(-alpha * (float(v @ p) - delta)) for v, y in zip(xs, labels) if y == c))
        neg += math.log1p(sum(math.exp(alpha * (float(v @ p) + delta)) for v, y in zip(xs, labels) if y != c))
    return pos / len(present) + neg / len(ps)


def cosface(x, labels, weights, margin=0.35, scale=64.0):
    """Wang et al. 2018 eq. 4."""
    xs, ws = ref.normalize(x), ref.normalize(weights)
    terms = []
    for v, y in zip(xs, labels):
        logits = [scale * (float(v @ w) - (margin if c == y else 0.0)) for c, w in enumerate(ws)]
        terms.append(_cross_entropy(logits, y))
    return float(np.mean(terms))


def sub_center_arcface(x, labels, centres, k, margin=0.5, scale=64.0, monotonic=False):
    """Deng et al. 2020: class cosine = max over the class's K sub-centres, then ArcFace's target
    logit s·cos(θ_y + m) (with `monotonic`, cos θ_y − m sin m beyond θ_y = π − m)."""
    xs, ws = ref.normalize(x), ref.normalize(centres)
    terms = []
    for v, y in zip(xs, labels):
        cos = [max(float(v @ ws[c * k + j]) for j in range(k)) for c in range(len(ws) // k)]
        theta = math.acos(min(max(cos[y], -1.0), 1.0))
        target = math.cos(theta + margin)
        if monotonic and theta > math.pi - margin:
            target = cos[y] - margin * math.sin(margin)
        logits = [scale * c for c in cos]
        logits[y] = scale * target
        terms.append(_cross_entropy(logits, y))
    return float(np.mean(terms))


# ----------------------------------------------------------------- pair-based
def circle(x, labels, m=0.25, gamma=256.0, n=0, pairs="consecutive", pooling="class"):
    """Sun et al. 2020 eq. 6 per anchor, averaged over anchors with a positive and a negative."""
    s, sn = _cosines(x, labels, n, pairs, pooling)
    terms = []
    for i in range(len(labels)):
        pos = [-gamma * max(1 + m - s[i, j], 0.0) * (s[i, j] - (1 - m))
               for j in range(len(labels)) if j != i and labels[j] == labels[i]]
        neg = [gamma * max(sn[i, k] + m, 0.0) * (sn[i, k] - m) for k in range(len(labels)) if labels[k] != labels[i]]
        if pos and neg:
            z = lse(pos) + lse(neg)
            terms.append(max(z, 0.0) + math.log1p(math.exp(-abs(z))))
    return float(np.mean(terms)) if terms else 0.0


def supcon(x, labels, tau=0.1, n=0, pairs="consecutive", pooling="class"):
    """Khosla et al. 2020 eq. 2 (L^sup_out) per anchor, averaged over anchors with a positive."""
    s, sn = _cosines(x, labels, n, pairs, pooling)
    terms = []
    for i in range(len(labels)):
        positives = [j for j in range(len(labels)) if j != i and labels[j] == labels[i]]
        if not positives:
            continue
        denominator = lse([(s[i, a] if labels[a] == labels[i] else sn[i, a]) / tau
                           for a in range(len(labels)) if a != i])
        terms.append(-sum(s[i, p] / tau - denominator for p in positives) / len(positives))
    return float(np.mean(terms)) if terms else 0.0


def ntxent(x, labels, tau=0.1, n=0, pairs="consecutive", pooling="class"):
    """Chen et al. 2020 eq. 1 (denominator over every k ≠ i), averaged over ordered positive pairs."""
    s, sn = _cosines(x, labels, n, pairs, pooling)
    terms = []
    for i in range(len(labels)):
        denominator = lse([(s[i, k] if labels[k] == labels[i] else sn[i, k]) / tau
                           for k in range(len(labels)) if k != i])
        terms += [denominator - s[i, j] / tau for j in range(len(labels)) if j != i and labels[j] == labels[i]]
    return float(np.mean(terms)) if terms else 0.0


def tuplet_margin(x, labels, beta=0.1, scale=64.0, n=0, pairs="consecutive", pooling="class"):
    """Yu & Tao 2019: log(1 + Σ_n e^{s(cos θ_an − cos(θ_ap − β))}) per ordered positive pair."""
    s, sn = _cosines(x, labels, n, pairs, pooling)
    terms = []
    for a in range(len(labels)):
        for p in range(len(labels)):
            if p == a or labels[p] != labels[a]:
                continue
            shifted = math.cos(math.acos(min(max(s[a, p], -1.0), 1.0)) - beta)
            terms.append(math.log1p(sum(math.exp(scale * (sn[a, k] - shifted))
                                        for k in range(len(labels)) if labels[k] != labels[a])))
    return float(np.mean(terms)) if terms else 0.0


def intra_pair_variance(x, labels, eps_pos=0.01, eps_neg=0.01, n=0, pairs="consecutive", pooling="class"):
    """Yu & Tao 2019 eq. 6 with per-pair means (the PML reduction)."""
    s, sn = _cosines(x, labels, n, pairs, pooling)
    b = len(labels)
    pos = [s[i, j] for i in range(b) for j in range(b) if i != j and labels[i] == labels[j]]
    neg = [sn[i, k] for i in range(b) for k in range(b) if labels[i] != labels[k]]
    total = 0.0
    if pos:
        total += float(np.mean([max((1 - eps_pos) * np.mean(pos) - v, 0.0) ** 2 for v in pos]))
    if neg:
        total += float(np.mean([max(v - (1 + eps_neg) * np.mean(neg), 0.0) ** 2 for v in neg]))
    return total


def nca(x, labels, scale=1.0):
    """Goldberger et al.: −log Σ_{j: y_j = y_i} p_ij, p_ij ∝ e^{−s‖x̂_i − x̂_j‖²}, mean over samples with a positive."""
    xs = ref.normalize(x)
    terms = []
    for i in range(len(labels)):
        weights = {j: math.exp(-scale * float(np.sum((xs[i] - xs[j]) ** 2))) for j in range(len(labels)) if j != i}
        same = sum(w for j, w in weights.items() if labels[j] == labels[i])
        if any(labels[j] == labels[i] for j in weights):
            terms.append(-math.log(same / sum(weights.values())))
    return float(np.mean(terms)) if terms else 0.0
