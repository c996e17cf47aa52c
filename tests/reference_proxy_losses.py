"""Explicit-loop numpy references for the proxy losses (ProxyNCA, normalised softmax,
ArcFace, SoftTriple), written from the papers' formulas for given proxies (float64,
loops over samples; no tfdml code)."""
import math

import numpy as np

import reference_expansion as ref


def _cross_entropy(logits, target):
    top = max(logits)
    return top + math.log(sum(math.exp(v - top) for v in logits)) - logits[target]


def proxy_nca(x, labels, proxies, embedding_scale=3.0):
    """Movshovitz-Attias et al.: −log(exp(−d_y) / Σ_{c≠y} exp(−d_c)), d on s·x̂, s·p̂."""
    xs, ps = embedding_scale * ref.normalize(x), embedding_scale * ref.normalize(proxies)
    terms = []
    for v, y in zip(xs, labels):
        d = [float(np.sum((v - p) ** 2)) for p in ps]
        others = [-d[c] for c in range(len(ps)) if c != y]
        terms.append(d[y] + (ref.log_sum_exp(others) if others else 0.0))
    return float(np.mean(terms))


def normalized_softmax(x, labels, weights, temperature=0.05):
    xs, ws = ref.normalize(x), ref.normalize(weights)
    return float(np.mean([_cross_entropy([float(v @ w) / temperature for w in ws], y) for v, y in zip(xs, labels)]))


def softmax(x, labels, classifier):
    """Cross-entropy of the logits xᵀw_c + b_c (classifier rows: w_c, then b_c)."""
    terms = []
    for v, y in zip(x, labels):
        logits = [float(sum(v[d] * row[d] for d in range(len(v)))) + row[-1] for row in classifier]
        terms.append(_cross_entropy(logits, y))
    return float(np.mean(terms))


def arcface(x, labels, weights, margin=0.5, scale=16.0):
    """Deng et al.: target logit s·cos(θ_y + m) with θ_y = arccos(x̂ᵀŵ_y)."""
    xs, ws = ref.normalize(x), ref.normalize(weights)
    terms = []
    for v, y in zip(xs, labels):
        logits = [scale * float(v @ w) for w in ws]
        logits[y] = scale * math.cos(math.acos(min(max(float(v @ ws[y]), -1.0), 1.0)) + margin)
        terms.append(_cross_entropy(logits, y))
    return float(np.mean(terms))


def soft_triple(x, labels, centres, num_classes, k, scale=8.0, gamma=0.1, margin=0.01, tau=0.2):
    """Qian et al. eqs. 8–12 with the centre regulariser (official code's ε = 1e-5);
    centre rows are grouped by class: row c·K + j is centre j of class c."""
    xs, ws = ref.normalize(x), ref.normalize(centres)
    terms = []
    for v, y in zip(xs, labels):
        relaxed = []
        for c in range(num_classes):
            s = [float(v @ ws[c * k + j]) for j in range(k)]
            e = [math.exp(value / gamma) for value in s]
            relaxed.append(sum(ej / sum(e) * sj for ej, sj in zip(e, s)))
        logits = [scale * (relaxed[c] - (margin if c == y else 0.0)) for c in range(num_classes)]
        terms.append(_cross_entropy(logits, y))
    reg = 0.0
    if k > 1:
        for c in range(num_classes):
            for a in range(k):
                for b in range(a + 1, k):
                    reg += math.sqrt(2 + 1e-5 - 2 * float(ws[c * k + a] @ ws[c * k + b]))
        reg /= num_classes * k * (k - 1)
    return float(np.mean(terms)) + tau * reg
