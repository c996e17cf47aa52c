"""Explicit-loop reference of the manifold loss (Aziere & Todorovic, CVPR 2019), written from its
equations as pytorch-metric-learning documents them (the paper could not be read offline): float64,
plain Python loops over nodes, embeddings and proxies; the manifold similarities come from iterating
the random walk F ← αS̄F + (1 − α)I to its fixed point (no matrix inverse). No tfdml code."""
import math

import numpy as np


def _unit(v):
    norm = math.sqrt(sum(float(a) * float(a) for a in v))
    return [0.0] * len(v) if norm <= 1e-6 else [float(a) / norm for a in v]


def _dot(u, v):
    return sum(a * b for a, b in zip(u, v))


def random_walk(nodes, alpha, temperature, tolerance=1e-15, max_steps=100000):
    """F, the fixed point of F ← α S̄ F + (1 − α) I on the Gaussian-kernel graph of `nodes` (rows)."""
    n = len(nodes)
    units = [_unit(v) for v in nodes]
    s = [[0.0 if a == b else math.exp(max(_dot(units[a], units[b]), 0.0) / temperature) for b in range(n)]
         for a in range(n)]
    degree = [sum(row) for row in s]
    walk = [[s[a][b] / math.sqrt(degree[a] * degree[b]) for b in range(n)] for a in range(n)]
    f = [[(1.0 - alpha) if a == b else 0.0 for b in range(n)] for a in range(n)]
    for _ in range(max_steps):
        new = [[alpha * sum(walk[a][c] * f[c][b] for c in range(n)) + ((1.0 - alpha) if a == b else 0.0)
                for b in range(n)] for a in range(n)]
        change = max(abs(new[a][b] - f[a][b]) for a in range(n) for b in range(n))
        f = new
        if change <= tolerance:
            break
    return f


def _violation_term(values, own, margin):
    """log(1 + Σ_{k ≠ own, v_k − v_own + m ≥ 0} e^{v_k − v_own + m})."""
    total = 0.0
    for k, value in enumerate(values):
        if k != own:
            v = value - values[own] + margin
            if v >= 0.0:
                total += math.exp(v)
    return math.log1p(total)


def manifold(x, labels, proxies, alpha=0.8, margin=5e-4, lambda_c=1.0, temperature=0.5):
    """L_int + λ_C·L_ctx (λ_C = inf: L_ctx alone)."""
    b, c = len(x), len(proxies)
    f = random_walk([list(v) for v in x] + [list(p) for p in proxies], alpha, temperature)
    intrinsic = context = 0.0
    for i in range(b):
        y = int(labels[i])
        intrinsic += _violation_term([f[i][b + k] for k in range(c)], y, margin)
        row = _unit(f[i])
        context += _violation_term([_dot(row, _unit(f[b + k])) for k in range(c)], y, margin)
    intrinsic, context = intrinsic / b, context / b
    if lambda_c == math.inf:
        return context
    return intrinsic + lambda_c * context


def manifold_matrix(x, proxies, alpha=0.8, temperature=0.5):
    """F as a numpy array (embeddings first, then proxies)."""
    return np.array(random_walk([list(v) for v in x] + [list(p) for p in proxies], alpha, temperature))
