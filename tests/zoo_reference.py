"""Explicit-loop numpy references for the Roth et al. loss zoo, written from the papers'
formulas (float64, loops over samples; no tfdml code). EE-pooled negative values come
from `numpy_reference.negative_matrix`, itself a loop over the synthetic points."""
import math

import numpy as np

import numpy_reference as ref


def _log_sum_exp(values):
    values = list(values)
    if not values:
        return -np.inf
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def generalized_lifted(x, labels, margin=1.0, embedding_l2=0.005, n=0, pairs="consecutive", pooling="class"):
    """Hermans et al. eq. 3 on raw embeddings: mean over anchors with a positive of
    [log Σ_p exp(d_ap) + log Σ_n exp(m − d_an)]_+, plus embedding_l2 · mean ‖x‖²."""
    b = len(labels)
    d = ref.positive_matrix(x, "euclidean")
    dn = ref.negative_matrix(x, labels, "euclidean", n, False, pairs, pooling)
    terms = []
    for a in range(b):
        pos = [d[a, p] for p in range(b) if p != a and labels[p] == labels[a]]
        if not pos:
            continue
        neg = [margin - dn[a, k] for k in range(b) if labels[k] != labels[a]]
        terms.append(max(_log_sum_exp(pos) + _log_sum_exp(neg), 0.0) if neg else 0.0)
    reg = embedding_l2 * np.mean([np.sum(v ** 2) for v in x])
    return (float(np.mean(terms)) if terms else 0.0) + reg


def angular(x, labels, alpha_degrees=45.0, angular_weight=2.0, l2_reg=0.005, n=0, pairs="consecutive",
            pooling="class"):
    """Roth eq. 5: N-pair on raw x plus λ · angular (Wang et al. eq. 8) on x̂, per ordered
    positive pair, mean over those pairs; + l2_reg · mean ‖x‖²."""
    b = len(labels)
    t2 = math.tan(math.radians(alpha_degrees)) ** 2
    xh = ref.normalize(x)
    s = ref.positive_matrix(x, "dot")
    sn = ref.negative_matrix(x, labels, "dot", n, False, pairs, pooling)
    c = ref.positive_matrix(xh, "cosine")
    cn = ref.negative_matrix(xh, labels, "cosine", n, False, pairs, pooling)
    terms = []
    for a in range(b):
        for p in range(b):
            if p == a or labels[p] != labels[a]:
                continue
            negs = [k for k in range(b) if labels[k] != labels[a]]
            npair_term = math.log(1 + sum(math.exp(sn[a, k] - s[a, p]) for k in negs))
            f = [4 * t2 * (cn[a, k] + cn[p, k]) - 2 * (1 + t2) * c[a, p] for k in negs]
            angular_term = math.log(1 + sum(math.exp(v) for v in f))
            terms.append(npair_term + angular_weight * angular_term)
    reg = l2_reg * np.mean([np.sum(v ** 2) for v in x])
    return (float(np.mean(terms)) if terms else 0.0) + reg


def histogram(x, labels, bins=65, n=0, pairs="consecutive", pooling="class"):
    """Ustinova & Lempitsky: Σ_r h⁻_r Σ_{q≤r} h⁺_q with linear soft assignment to
    nodes t_r = −1 + rΔ, Δ = 2/(R−1), over unordered pairs i < j."""
    xh = ref.normalize(x)
    c = ref.positive_matrix(xh, "cosine")
    cn = ref.negative_matrix(xh, labels, "cosine", n, True, pairs, pooling)
    delta = 2.0 / (bins - 1)
    nodes = [-1.0 + r * delta for r in range(bins)]
    h_pos, h_neg = np.zeros(bins), np.zeros(bins)
    n_pos = n_neg = 0
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            same = labels[i] == labels[j]
            value = min(max(c[i, j] if same else cn[i, j], -1.0), 1.0)
            for r, t in enumerate(nodes):
                weight = max(0.0, 1.0 - abs(value - t) / delta)
                if same:
                    h_pos[r] += weight
                else:
                    h_neg[r] += weight
            n_pos += same
            n_neg += not same
    if n_pos == 0 or n_neg == 0:
        return 0.0
    h_pos, h_neg = h_pos / n_pos, h_neg / n_neg
    return float(sum(h_neg[r] * sum(h_pos[q] for q in range(r + 1)) for r in range(bins)))


def quadruplet(x, labels, quadruplets, margin_an=1.0, margin_nn=0.5, n=0, pairs="consecutive", pooling="anchor"):
    """Chen et al. / Roth eq. 14 for given quadruplets (i, j, k, l, valid, has_l,
    swapped): mean [d_ij − d_ik + γ1]_+ + mean [d_ij − d_lk + γ2]_+."""
    xh = ref.normalize(x)
    d = ref.positive_matrix(xh, "euclidean")
    dn = ref.negative_matrix(xh, labels, "euclidean", n, True, pairs, pooling)
    first, second = [], []
    for i, j, k, l, valid, has_l, swapped in zip(*quadruplets):
        if not valid:
            continue
        d_ik = d[i, k] if swapped else dn[i, k]
        first.append(max(d[i, j] - d_ik + margin_an, 0.0))
        if has_l:
            second.append(max(d[i, j] - dn[l, k] + margin_nn, 0.0))
    return (float(np.mean(first)) if first else 0.0) + (float(np.mean(second)) if second else 0.0)


def snr_distance(anchor, other):
    """Yuan et al.: Var(other − anchor) / Var(anchor), variances over dimensions."""
    return float(np.var(other - anchor) / np.var(anchor))


def snr(x, labels, triplets=None, margin=0.2, reg=0.005, n=0, pairs="consecutive", pooling="anchor"):
    """SNR triplet hinge on x̂ for the given triplets (a, p, q, valid, swapped), or every
    valid triplet when `triplets` is None; mean over non-zero terms; + reg · mean |Σ_m x̂_im|."""
    xh = ref.normalize(x)
    b = len(labels)
    pts = [(xh[i], labels[i], {i}) for i in range(b)]
    if n > 0:
        pts += ref.synthetic_points(xh, labels, n, True, pairs)

    def pooled(a, q):
        if n == 0:
            return snr_distance(xh[a], xh[q])
        return min(snr_distance(u, v) for u in ref.pool_points(pts, labels, a, pooling)
                   for v in ref.pool_points(pts, labels, q, pooling))

    if triplets is None:
        triplets = [(a, p, q, True, False) for a in range(b) for p in range(b) for q in range(b)
                    if p != a and labels[p] == labels[a] and labels[q] != labels[a]]
        triplets = list(zip(*triplets)) if triplets else [[]] * 5
    terms = []
    for a, p, q, valid, swapped in zip(*triplets):
        if not valid:
            continue
        d_an = snr_distance(xh[a], xh[q]) if swapped else pooled(a, q)
        value = max(snr_distance(xh[a], xh[p]) - d_an + margin, 0.0)
        if value > 0:
            terms.append(value)
    regulariser = reg * np.mean([abs(np.sum(v)) for v in xh])
    return (float(np.mean(terms)) if terms else 0.0) + regulariser


# ------------------------------------------------------------- proxy losses
def _cross_entropy(logits, target):
    top = max(logits)
    return top + math.log(sum(math.exp(v - top) for v in logits)) - logits[target]


def proxy_nca(x, labels, proxies, scale=3.0):
    """Movshovitz-Attias et al.: −log(exp(−d_y) / Σ_{c≠y} exp(−d_c)), d on s·x̂, s·p̂."""
    xs, ps = scale * ref.normalize(x), scale * ref.normalize(proxies)
    terms = []
    for v, y in zip(xs, labels):
        d = [float(np.sum((v - p) ** 2)) for p in ps]
        others = [-d[c] for c in range(len(ps)) if c != y]
        terms.append(d[y] + (_log_sum_exp(others) if others else 0.0))
    return float(np.mean(terms))


def normalized_softmax(x, labels, weights, temperature=0.05):
    xs, ws = ref.normalize(x), ref.normalize(weights)
    return float(np.mean([_cross_entropy([float(v @ w) / temperature for w in ws], y) for v, y in zip(xs, labels)]))


def arcface(x, labels, weights, margin=0.5, scale=16.0):
    """Deng et al.: target logit s·cos(θ_y + m) with θ_y = arccos(x̂ᵀŵ_y)."""
    xs, ws = ref.normalize(x), ref.normalize(weights)
    terms = []
    for v, y in zip(xs, labels):
        logits = [scale * float(v @ w) for w in ws]
        logits[y] = scale * math.cos(math.acos(min(max(float(v @ ws[y]), -1.0), 1.0)) + margin)
        terms.append(_cross_entropy(logits, y))
    return float(np.mean(terms))


def soft_triple(x, labels, centres, num_classes, k, la=8.0, gamma=0.1, margin=0.01, tau=0.2):
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
        logits = [la * (relaxed[c] - (margin if c == y else 0.0)) for c in range(num_classes)]
        terms.append(_cross_entropy(logits, y))
    reg = 0.0
    if k > 1:
        for c in range(num_classes):
            for a in range(k):
                for b in range(a + 1, k):
                    reg += math.sqrt(2 + 1e-5 - 2 * float(ws[c * k + a] @ ws[c * k + b]))
        reg /= num_classes * k * (k - 1)
    return float(np.mean(terms)) + tau * reg
