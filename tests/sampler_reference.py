"""Explicit-loop numpy references for Roth et al.'s embedded samplers (ICML 2020, §3.2),
written from the formulas in issue 12 / the paper (no tfdml code is used here).
float64 throughout; slow but obvious."""
import math

import numpy as np
import scipy.linalg
import scipy.stats


def squared_distance(a, b):
    return sum((float(a[d]) - float(b[d])) ** 2 for d in range(len(a)))


def distance(a, b):
    return math.sqrt(squared_distance(a, b))


def greedy_coreset(points, num_centres, first):
    """C = {first}; repeatedly add argmax_x min_{c ∈ C} ‖x − c‖² (first on ties, never twice)."""
    centres = [first]
    while len(centres) < num_centres:
        best, best_value = None, -1.0
        for x in range(len(points)):
            if x in centres:
                continue
            value = min(squared_distance(points[x], points[c]) for c in centres)
            if value > best_value:
                best, best_value = x, value
        centres.append(best)
    return centres


def _pair_distances(points, positions):
    return [distance(points[positions[i]], points[positions[j]])
            for i in range(len(positions)) for j in range(i + 1, len(positions))]


def _histogram(values, low, high, bins):
    edges = np.linspace(low, high, bins + 1)
    counts = [0] * bins
    for v in values:
        for r in range(bins):
            if edges[r] <= v < edges[r + 1] or (r == bins - 1 and v == high):
                counts[r] += 1
                break
    return [c / len(values) for c in counts]


def _mean(points, positions, d):
    return sum(points[p][d] for p in positions) / len(positions)


def _std(points, positions, d):
    mean = _mean(points, positions, d)
    return math.sqrt(sum((points[p][d] - mean) ** 2 for p in positions) / len(positions))


def ddm_cost(points, candidate, cost="paper", bins=50):
    """Paper: W₁ = Δ·Σ_r |CDF_B(r) − CDF*(r)| of the distance histograms over [min, max] of B*.
    Reference: ‖μ_B − μ*‖ + ‖σ_B − σ*‖ + 75·(W(h_B, h*) + W(h*, h_B)), W between the
    histograms as distributions over the bin centres (scipy)."""
    everything = list(range(len(points)))
    pool_values = _pair_distances(points, everything)
    low, high = min(pool_values), max(pool_values)
    h_pool = _histogram(pool_values, low, high, bins)
    h_batch = _histogram(_pair_distances(points, list(candidate)), low, high, bins)
    width = (high - low) / bins
    cdf_pool = cdf_batch = 0.0
    w1 = 0.0
    for r in range(bins):
        cdf_pool += h_pool[r]
        cdf_batch += h_batch[r]
        w1 += width * abs(cdf_batch - cdf_pool)
    if cost == "paper":
        return w1
    centres = [low + (r + 0.5) * width for r in range(bins)]
    w = (scipy.stats.wasserstein_distance(centres, centres, h_batch, h_pool)
         + scipy.stats.wasserstein_distance(centres, centres, h_pool, h_batch))
    dims = range(len(points[0]))
    mean_term = math.sqrt(sum((_mean(points, candidate, d) - _mean(points, everything, d)) ** 2 for d in dims))
    std_term = math.sqrt(sum((_std(points, candidate, d) - _std(points, everything, d)) ** 2 for d in dims))
    return mean_term + std_term + 75.0 * w


def covariance(points, positions, epsilon=1e-8):
    dims = len(points[0])
    means = [_mean(points, positions, d) for d in range(dims)]
    cov = np.zeros((dims, dims))
    for a in range(dims):
        for b in range(dims):
            cov[a, b] = sum((points[p][a] - means[a]) * (points[p][b] - means[b]) for p in positions)
            cov[a, b] /= len(positions) - 1
        cov[a, a] += epsilon
    return cov


def frd_cost(points, candidate):
    """‖μ_B − μ*‖² + Tr(Σ_B + Σ* − 2 (Σ_B Σ*)^{1/2}), Σ + 1e-8·I, sqrtm by scipy."""
    everything = list(range(len(points)))
    dims = len(points[0])
    mean_term = sum((_mean(points, candidate, d) - _mean(points, everything, d)) ** 2 for d in range(dims))
    cov_b, cov_pool = covariance(points, list(candidate)), covariance(points, everything)
    root = scipy.linalg.sqrtm(cov_b @ cov_pool)
    return mean_term + np.trace(cov_b) + np.trace(cov_pool) - 2.0 * np.trace(root).real
