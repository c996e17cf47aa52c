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
"""Names of the distance metrics (smaller is closer): Euclidean, squared Euclidean and cosine distance $1 - \\cos$."""
SIMILARITIES = ("cosine", "dot")
"""Names of the similarity metrics (larger is closer): cosine similarity and the dot product."""
METRICS = DISTANCES + SIMILARITIES
"""Every metric name accepted by `metric=` arguments: `DISTANCES + SIMILARITIES`."""

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
    """1/‖x‖ from squared norms ‖x‖²; 0 for vectors with ‖x‖² ≤ 1e-12.

    Every L2 normalisation in tfdml (embeddings, EE's synthetic points, cosine
    similarities) multiplies by this, so they all treat tiny vectors alike: a
    vector shorter than 1e-6 counts as a zero vector — it normalises to zero
    with a zero gradient (not to a unit vector with a 1e6-times amplified one).
    """
    nonzero = squared_norms > _NORM_FLOOR
    safe = tf.where(nonzero, squared_norms, tf.ones_like(squared_norms))
    return tf.where(nonzero, tf.math.rsqrt(safe), tf.zeros_like(squared_norms))


def l2_normalize(x, axis=-1):
    """x / ‖x‖ along `axis` (`inverse_norm`): vectors with ‖x‖ ≤ 1e-6 count as
    zero vectors and stay zero with a zero gradient. Where ‖x‖² overflows
    (‖x‖ ≳ 1.8e19 in float32) the vector saturates to zero as well (zero
    gradient, never NaN)."""
    return x * inverse_norm(tf.reduce_sum(tf.square(x), axis=axis, keepdims=True))


def batch_scale(x):
    """max |x| over a batch as a stop-gradient scalar (1 for an all-zero batch).

    Metrics of raw (unnormalised) embeddings are computed on `x / batch_scale(x)`,
    whose Gram matrix cannot overflow, and brought back by `rescale`.
    """
    peak = tf.stop_gradient(tf.reduce_max(tf.abs(x)))
    return tf.where(peak > 0, peak, tf.ones_like(peak))


def rescale(matrix, scale, metric):
    """The `metric` matrix of points x from that of the points x / `scale`.

    Distances scale by `scale`, squared distances and dot products by
    `scale`² (computed as scale·(scale·m), +inf where the true value exceeds
    the float range), cosine similarities and distances are unchanged.
    """
    if metric == "euclidean":
        return scale * matrix
    if metric in ("squared_euclidean", "dot"):
        return scale * (scale * matrix)
    return matrix


def saturating_gram(x):
    """The Gram matrix x xᵀ of raw embeddings, saturated at ±(dtype max / 4).

    Computed from x / `batch_scale(x)`, so no entry is NaN for any finite x:
    entries within ±max/4 are exact, larger ones are clipped (with zero
    gradient), which keeps sums and differences of a few of them finite (the
    log-sum-exp of N-pair losses). The gradient is the exact (G + Gᵀ) x on
    unclipped entries, never formed through the scale, so it stays finite
    for embeddings of any finite magnitude.

    Args:
        x: (N, D) float embeddings.

    Returns:
        (N, N) Gram matrix.
    """
    limit = x.dtype.max / 4.0

    @tf.custom_gradient
    def gram(points):
        scale = batch_scale(points)
        scaled = points / scale
        exact = scale * (scale * tf.matmul(scaled, scaled, transpose_b=True))  # ±inf beyond the range, never NaN
        inside = tf.abs(exact) < limit

        def grad(upstream):
            masked = tf.where(inside, upstream, tf.zeros_like(upstream))
            return tf.matmul(masked + tf.transpose(masked), points)

        return tf.clip_by_value(exact, -limit, limit), grad

    # The identity keeps the custom gradient valid when x is also used elsewhere inside a tf.cond branch
    # (TF 2.21 otherwise fails with "You must feed a value for placeholder" in the gradient).
    return gram(tf.identity(x))


def zero_diagonal(matrix):
    """The square `matrix` with an exactly zero diagonal (zero gradient there).

    With a dynamic size this is a select on an index mask: the gradient of
    `tf.linalg.set_diag` (used for static sizes, where it is cheaper) fails to
    compile under XLA when the batch size is only known at run time.
    """
    if matrix.shape[0] is not None:
        return tf.linalg.set_diag(matrix, tf.zeros_like(tf.linalg.diag_part(matrix)))
    index = tf.range(tf.shape(matrix)[0])
    return tf.where(tf.equal(index[:, None], index[None, :]), tf.zeros_like(matrix), matrix)


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
        result = zero_diagonal(result)
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
