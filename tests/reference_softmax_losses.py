"""Explicit-loop numpy references for the margin-softmax losses L-Softmax, SphereFace and P2SGrad,
written from the papers' equations (float64, plain Python loops over samples and classes; no tfdml
code). ψ uses arccos and cos(mθ) directly, not the multiple-angle polynomial of the implementation."""
import math


def _dot(u, v):
    return sum(float(a) * float(b) for a, b in zip(u, v))


def _norm(u):
    return math.sqrt(_dot(u, u))


def _log_sum_exp(values):
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def psi(theta, margin):
    """(−1)^k cos(mθ) − 2k for θ ∈ [kπ/m, (k+1)π/m], k ∈ {0, …, m−1} (L-Softmax eq. 6)."""
    k = min(int(math.floor(theta * margin / math.pi)), margin - 1)
    return (-1) ** k * math.cos(margin * theta) - 2 * k


def _multiplicative_margin(x, labels, weights, margin, scale, softening, normalize_weights):
    total = 0.0
    for row, y in zip(x, labels):
        x_norm = _norm(row)
        logits = []
        for c, w in enumerate(weights):
            w_norm = _norm(w)
            cosine = _dot(row, w) / (x_norm * w_norm)
            if c == y:
                theta = math.acos(min(max(cosine, -1.0), 1.0))
                angular = (softening * cosine + psi(theta, margin)) / (1.0 + softening)
            else:
                angular = cosine
            magnitude = x_norm if normalize_weights else x_norm * w_norm
            logits.append(scale * magnitude * angular)
        total += _log_sum_exp(logits) - logits[int(y)]
    return total / len(x)


def large_margin_softmax(x, labels, weights, margin=4, scale=1.0, softening=0.0):
    """Liu et al. 2016, eqs. 5–6: logits ‖W_c‖‖x‖cos θ_c, target ‖W_y‖‖x‖ψ(θ_y) (λ-blended with
    cos θ_y when softening), cross-entropy averaged over the batch."""
    return _multiplicative_margin(x, labels, weights, margin, scale, softening, False)


def sphereface(x, labels, weights, margin=4, scale=1.0, softening=0.0):
    """Liu et al. 2017, A-Softmax: as L-Softmax with ‖W_c‖ = 1."""
    return _multiplicative_margin(x, labels, weights, margin, scale, softening, True)


def _cosines(row, weights):
    x_norm = _norm(row)
    return [_dot(row, w) / (x_norm * _norm(w)) for w in weights]


def p2sgrad(x, labels, weights, form="paper"):
    """½ Σ_c (cos θ_c − [c = y])² averaged over the batch ("paper"), or the mean of
    (cos θ_c − [c = y])² over all B·C entries ("mse", pytorch-metric-learning)."""
    total = 0.0
    for row, y in zip(x, labels):
        for c, cosine in enumerate(_cosines(row, weights)):
            total += (cosine - (1.0 if c == y else 0.0)) ** 2
    if form == "mse":
        return total / (len(x) * len(weights))
    return 0.5 * total / len(x)


def p2sgrad_gradients(x, labels, weights):
    """P2SGrad, Zhang et al. 2019 eq. 11, averaged over the batch: with x̂, ŵ the unit vectors,
    ∂/∂x_i = 1/B Σ_c (cos θ_ic − [c = y_i]) (ŵ_c − cos θ_ic x̂_i)/‖x_i‖ and
    ∂/∂w_c = 1/B Σ_i (cos θ_ic − [c = y_i]) (x̂_i − cos θ_ic ŵ_c)/‖w_c‖."""
    batch, dim = len(x), len(x[0])
    grad_x = [[0.0] * dim for _ in x]
    grad_w = [[0.0] * dim for _ in weights]
    for i, (row, y) in enumerate(zip(x, labels)):
        x_norm = _norm(row)
        for c, w in enumerate(weights):
            w_norm = _norm(w)
            cosine = _dot(row, w) / (x_norm * w_norm)
            error = (cosine - (1.0 if c == y else 0.0)) / batch
            for d in range(dim):
                x_hat, w_hat = row[d] / x_norm, w[d] / w_norm
                grad_x[i][d] += error * (w_hat - cosine * x_hat) / x_norm
                grad_w[c][d] += error * (x_hat - cosine * w_hat) / w_norm
    return grad_x, grad_w
