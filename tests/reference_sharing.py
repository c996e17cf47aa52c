"""Explicit-loop float64 numpy references for Sharing Matters (Milbich et al.), written from the paper's
formulas (and Wu et al.'s distance weighting), independent of tfdml."""
import math

import numpy as np

FLOOR, CUTOFF = 0.5, 1.4  # Wu et al.'s distance clamp and non-zero-loss cut-off


def normalize(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def distance_matrix(x):
    n = len(x)
    return np.array([[math.sqrt(max(((x[i] - x[j]) ** 2).sum(), 0.0)) for j in range(n)] for i in range(n)])


def inverse_q(d, dim):
    """q(d)⁻¹ with q(d) = d^{D−2} (1 − d²/4)^{(D−3)/2}, d clamped at >= 0.5."""
    d = max(d, FLOOR)
    return 1.0 / (d ** (dim - 2) * max(1.0 - d * d / 4.0, 1e-8) ** ((dim - 3) / 2.0))


def weighted_choice_probabilities(d_row, candidates, dim):
    """P(c) ∝ q(d_c)⁻¹ over `candidates` within the cut-off (all candidates if none is)."""
    close = [c for c in candidates if d_row[c] <= CUTOFF] or list(candidates)
    weights = {c: inverse_q(d_row[c], dim) for c in close}
    total = sum(weights.values())
    return {c: w / total for c, w in weights.items()}


def shared_triplet_probabilities(x, labels, dim):
    """P[i, k, j]: probability that anchor i draws negative k (y_k ≠ y_i, ∝ q⁻¹) and then positive j
    (y_j ∉ {y_i, y_k}, ∝ q⁻¹) — the paper's T* sampling (§3.2)."""
    d = distance_matrix(normalize(x))
    n = len(labels)
    p = np.zeros((n, n, n))
    for i in range(n):
        negatives = [k for k in range(n) if labels[k] != labels[i]]
        if not negatives:
            continue
        for k, p_k in weighted_choice_probabilities(d[i], negatives, dim).items():
            positives = [j for j in range(n) if labels[j] not in (labels[i], labels[k])]
            if not positives:
                continue
            for j, p_j in weighted_choice_probabilities(d[i], positives, dim).items():
                p[i, k, j] = p_k * p_j
    return p


def margin_loss_on_triplets(x, triplets, valid, margin, beta, normalized=True):
    """Wu et al.'s margin loss Σ([d_ij − β + α]_+ + [β − d_ik + α]_+) / #non-zero terms over valid triplets."""
    x = normalize(x) if normalized else x
    total, active = 0.0, 0
    for (i, j, k), ok in zip(triplets, valid):
        if not ok:
            continue
        for term in (np.linalg.norm(x[i] - x[j]) - beta + margin, beta - np.linalg.norm(x[i] - x[k]) + margin):
            if term > 0:
                total += term
                active += 1
    return total / active if active else total


def triplet_loss_on_triplets(x, triplets, valid, margin):
    x = normalize(x)
    values = [max(np.linalg.norm(x[i] - x[j]) - np.linalg.norm(x[i] - x[k]) + margin, 0.0)
              for (i, j, k), ok in zip(triplets, valid) if ok]
    return sum(values) / len(values) if values else 0.0


def npair_loss_on_triplets(x, anchors, positives, negatives, valid):
    """mean_i log(1 + Σ_t exp(s_{i k_t} − s_ij)), s = cosine similarity."""
    x = normalize(x)
    values = []
    for i, j, ks, ok in zip(anchors, positives, negatives, valid):
        if ok:
            values.append(math.log(1.0 + sum(math.exp(x[i] @ x[k] - x[i] @ x[j]) for k in ks)))
    return sum(values) / len(values) if values else 0.0


def batch_hard_margin_loss(x, labels, margin, beta):
    """Margin loss with batch-hard mining: farthest positive, nearest negative per anchor."""
    xn = normalize(x)
    triplets, valid = [], []
    for i in range(len(labels)):
        pos = [j for j in range(len(labels)) if j != i and labels[j] == labels[i]]
        neg = [k for k in range(len(labels)) if labels[k] != labels[i]]
        if pos and neg:
            j = max(pos, key=lambda j: np.linalg.norm(xn[i] - xn[j]))
            k = min(neg, key=lambda k: np.linalg.norm(xn[i] - xn[k]))
            triplets.append((i, j, k))
            valid.append(True)
    return margin_loss_on_triplets(x, triplets, valid, margin, beta)


def regressor(phi_star, w1, b1, w2, b2, normalize=True):
    """p(φ*) = ℓ2(W2 ReLU(W1 φ* + b1) + b2) (without ℓ2 when `normalize` is False), row by row."""
    out = []
    for v in phi_star:
        hidden = np.maximum(v @ w1 + b1, 0.0)
        y = hidden @ w2 + b2
        out.append(y / math.sqrt((y ** 2).sum()) if normalize else y)
    return np.array(out)


def decorrelation(phi, prediction):
    """r = 1/B Σ_i 1/D Σ_s (φ_{i,s} p_{i,s})² (eq. 2)."""
    b, d = phi.shape
    return sum((phi[i, s] * prediction[i, s]) ** 2 for i in range(b) for s in range(d)) / (b * d)


def numerical_gradient(f, x, eps=1e-6):
    """Central finite differences of the scalar f at the array x."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        grad[index] = (f(x + step) - f(x - step)) / (2 * eps)
    return grad
