"""Embedding-space structure (Roth et al. 2020 §5).

- Spectral decay ρ(Φ) = KL(U_D ‖ S̄): S̄ are the singular values of the embedding
  matrix Φ (N × D), sorted descending, optionally without the largest one (Roth's
  default), normalised to sum 1; U_D the uniform distribution over them.
  KL(U ‖ S̄) = Σ_i u_i log(u_i / s̄_i). Lower = flatter spectrum = more directions
  used.
- π_intra: mean over classes of the mean Euclidean distance between distinct
  samples of the class (classes with one sample are skipped).
- π_inter: mean Euclidean distance between distinct class means.
- π_ratio = π_intra / π_inter.
"""
import numpy as np

from tfdml.metrics.validation import check_embeddings_and_labels


def singular_values(embeddings):
    """Singular values of the embedding matrix, descending."""
    return np.linalg.svd(np.asarray(embeddings, dtype=np.float64), compute_uv=False)


def spectral_decay(embeddings, drop_largest=True):
    """ρ(Φ) = KL(uniform ‖ normalised singular values) (see module docstring)."""
    values = singular_values(embeddings)
    if drop_largest:
        values = values[1:]
    if values.size == 0:
        return float("nan")
    values = np.maximum(values / values.sum(), 1e-12)
    uniform = 1.0 / values.size
    return float(np.sum(uniform * np.log(uniform / values)))


def _mean_pairwise_distance(points, chunk_size=1024):
    """Mean Euclidean distance over ordered pairs i ≠ j, in row chunks (no n×n matrix)."""
    n = points.shape[0]
    sq = np.sum(points ** 2, axis=1)
    total = 0.0
    for start in range(0, n, chunk_size):
        block = points[start:start + chunk_size]
        d2 = np.maximum(sq[start:start + chunk_size, None] + sq[None, :] - 2.0 * block @ points.T, 0.0)
        d2[np.arange(block.shape[0]), np.arange(start, start + block.shape[0])] = 0.0
        total += float(np.sqrt(d2).sum())
    return total / (n * (n - 1))


def class_separation(embeddings, labels):
    """π_intra, π_inter and π_ratio (see module docstring) as a dict."""
    embeddings, labels = check_embeddings_and_labels(embeddings, labels)
    x = embeddings.astype(np.float64)
    classes = np.unique(labels)
    intra = [_mean_pairwise_distance(x[labels == c]) for c in classes if np.sum(labels == c) > 1]
    centres = np.stack([x[labels == c].mean(axis=0) for c in classes])
    pi_intra = float(np.mean(intra)) if intra else float("nan")
    pi_inter = _mean_pairwise_distance(centres) if len(classes) > 1 else float("nan")
    ratio = pi_intra / pi_inter if pi_inter and np.isfinite(pi_inter) else float("nan")
    return {"pi_intra": pi_intra, "pi_inter": pi_inter, "pi_ratio": float(ratio)}
