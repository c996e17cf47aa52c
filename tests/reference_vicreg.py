"""Explicit-loop numpy reference of VICReg (Bardes, Ponce & LeCun, ICLR 2022, eqs. 1–6), float64, plain
Python loops over samples and dimensions; no tfdml code. The two views come from the labels: the first
occurrence of each label is a row of Z, the second its partner in Z'."""
import math


def split_views(x, labels):
    """(Z, Z') as lists of rows: first and second occurrence of each label, in order of first occurrence."""
    labels = [int(v) for v in labels]
    firsts, seconds = [], []
    for i, label in enumerate(labels):
        earlier = [j for j in range(i) if labels[j] == label]
        if not earlier:
            later = [k for k in range(i + 1, len(labels)) if labels[k] == label]
            assert len(later) == 1, "every label must occur exactly twice"
            firsts.append([float(v) for v in x[i]])
            seconds.append([float(v) for v in x[later[0]]])
    return firsts, seconds


def _mean(view, j):
    return sum(row[j] for row in view) / len(view)


def _covariance(view, j, k):
    """C(Z)_jk, eq. 3: 1/(n−1) Σ_i (z_ij − z̄_j)(z_ik − z̄_k)."""
    n = len(view)
    mj, mk = _mean(view, j), _mean(view, k)
    return sum((row[j] - mj) * (row[k] - mk) for row in view) / (n - 1)


def variance_term(view, gamma=1.0, epsilon=1e-4):
    """v(Z), eqs. 1–2: 1/d Σ_j max(0, γ − √(Var(zʲ) + ε)) with the unbiased variance."""
    d = len(view[0])
    total = 0.0
    for j in range(d):
        total += max(0.0, gamma - math.sqrt(_covariance(view, j, j) + epsilon))
    return total / d


def covariance_term(view):
    """c(Z), eq. 4: 1/d Σ_{j≠k} C(Z)_jk²."""
    d = len(view[0])
    total = 0.0
    for j in range(d):
        for k in range(d):
            if j != k:
                total += _covariance(view, j, k) ** 2
    return total / d


def invariance_term(z, z_prime, per_dimension=False):
    """s(Z, Z'), eq. 5: 1/n Σ_i ‖z_i − z'_i‖² (and / d for the mean-squared-error form)."""
    n, d = len(z), len(z[0])
    total = 0.0
    for i in range(n):
        for j in range(d):
            total += (z[i][j] - z_prime[i][j]) ** 2
    return total / n / (d if per_dimension else 1)


def vicreg(x, labels, lam=25.0, mu=25.0, nu=1.0, gamma=1.0, epsilon=1e-4, invariance_mean=False,
           variance_mean=False):
    """ℓ(Z, Z') = λ s(Z, Z') + μ [v(Z) + v(Z')] + ν [c(Z) + c(Z')], eq. 6 (variance_mean: μ/2 instead of μ)."""
    z, z_prime = split_views(x, labels)
    variance = variance_term(z, gamma, epsilon) + variance_term(z_prime, gamma, epsilon)
    if variance_mean:
        variance /= 2.0
    return (lam * invariance_term(z, z_prime, invariance_mean) + mu * variance
            + nu * (covariance_term(z) + covariance_term(z_prime)))
