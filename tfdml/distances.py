"""Pairwise distances and similarities between embeddings.

Every function takes `x` of shape (N, D) and optional `y` of shape (M, D) (default
`y = x`) and returns an (N, M) matrix. Distances are computed from the Gram matrix
(`x @ y.T`) and the squared norms, which is what lets Embedding Expansion reuse them
for synthetic points without touching the embedding dimension again
(`from_gram`).

Metrics:
- `euclidean`: ‖x − y‖ with a numerically safe square root (zero distance has a
  zero, finite gradient).
- `squared_euclidean`: ‖x − y‖².
- `cosine`: cosine *similarity* ⟨x, y⟩ / (‖x‖‖y‖) (zero vectors give 0).
- `dot`: dot-product *similarity* ⟨x, y⟩.
- `cosine_distance`: 1 − cosine similarity.
"""
import tensorflow as tf

from tfdml.checks import check_choice

DISTANCES = ("euclidean", "squared_euclidean", "cosine_distance")
SIMILARITIES = ("cosine", "dot")
METRICS = DISTANCES + SIMILARITIES

# Squared distances below this are treated as exactly zero by `safe_sqrt`.
_SQRT_FLOOR = 1e-12
# Squared norms below this count as zero vectors for cosine / L2 normalisation.
_NORM_FLOOR = 1e-12


def check_metric(metric, argument="distance", allowed=METRICS):
    """Raises a `ValueError` naming `argument` if `metric` is not in `allowed`."""
    return check_choice(metric, argument, allowed)


def is_similarity(metric):
    """True for metrics where larger means closer (`cosine`, `dot`)."""
    return check_metric(metric, "metric") in SIMILARITIES


def safe_sqrt(squared):
    """Square root with a finite (zero) gradient at and near zero.

    Args:
        squared: tensor of non-negative values (small negative rounding errors are
            clipped to zero).

    Returns:
        `sqrt(squared)` where `squared > 1e-12`, else 0; the gradient is 0 there.
    """
    positive = squared > _SQRT_FLOOR
    safe = tf.where(positive, squared, tf.ones_like(squared))
    return tf.where(positive, tf.sqrt(safe), tf.zeros_like(squared))


def inverse_norm(squared_norms):
    """1/‖x‖ from squared norms ‖x‖², floored so zero vectors give a finite value.

    Every L2 normalisation in tfdml (embeddings, EE's synthetic points, cosine
    similarities) multiplies by this, so they all treat tiny vectors alike.
    """
    return tf.math.rsqrt(tf.maximum(squared_norms, _NORM_FLOOR))


def l2_normalize(x, axis=-1):
    """L2-normalises `x` along `axis`; zero vectors stay zero with finite gradients."""
    return x * inverse_norm(tf.reduce_sum(tf.square(x), axis=axis, keepdims=True))


def from_gram(gram, row_sq_norms, col_sq_norms, metric):
    """Turns a Gram matrix into the requested pairwise metric.

    Args:
        gram: (N, M) inner products ⟨x_i, y_j⟩.
        row_sq_norms: (N,) squared norms ‖x_i‖².
        col_sq_norms: (M,) squared norms ‖y_j‖².
        metric: one of `METRICS`.

    Returns:
        (N, M) matrix of distances or similarities.
    """
    check_metric(metric, "metric")
    if metric == "dot":
        return gram
    if metric in ("cosine", "cosine_distance"):
        cosine = gram * inverse_norm(row_sq_norms)[:, None] * inverse_norm(col_sq_norms)[None, :]
        return cosine if metric == "cosine" else 1.0 - cosine
    squared = tf.maximum(row_sq_norms[:, None] + col_sq_norms[None, :] - 2.0 * gram, 0.0)
    if metric == "squared_euclidean":
        return squared
    return safe_sqrt(squared)


def pairwise(x, y=None, metric="euclidean"):
    """Pairwise `metric` between the rows of `x` and `y` (default `y = x`)."""
    x = tf.convert_to_tensor(x)
    y = x if y is None else tf.convert_to_tensor(y, dtype=x.dtype)
    gram = tf.matmul(x, y, transpose_b=True)
    x_sq = tf.reduce_sum(tf.square(x), axis=-1)
    y_sq = x_sq if y is x else tf.reduce_sum(tf.square(y), axis=-1)
    result = from_gram(gram, x_sq, y_sq, metric)
    if y is x and metric in ("euclidean", "squared_euclidean", "cosine_distance"):
        # The diagonal is exactly zero (not a rounding residue of the Gram formula).
        result = tf.linalg.set_diag(result, tf.zeros_like(x_sq))
    return result


def euclidean(x, y=None):
    """Pairwise Euclidean distance ‖x_i − y_j‖ (safe square root)."""
    return pairwise(x, y, "euclidean")


def squared_euclidean(x, y=None):
    """Pairwise squared Euclidean distance ‖x_i − y_j‖²."""
    return pairwise(x, y, "squared_euclidean")


def cosine(x, y=None):
    """Pairwise cosine similarity ⟨x_i, y_j⟩ / (‖x_i‖‖y_j‖)."""
    return pairwise(x, y, "cosine")


def dot(x, y=None):
    """Pairwise dot-product similarity ⟨x_i, y_j⟩."""
    return pairwise(x, y, "dot")
