"""Masked tensor operations shared by the losses and miners.

Everything here is fixed-shape (XLA-compatible) and keeps gradients finite where
a mask is empty: a loss over "the valid tuples" is a dense computation over all
candidate tuples followed by one of these masked reductions.
"""
import keras
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_seed


def pair_masks(labels):
    """Boolean (B, B) masks: positive pairs (same class, i ≠ j), negative pairs."""
    same = tf.equal(labels[:, None], labels[None, :])
    not_self = tf.logical_not(tf.eye(tf.shape(labels)[0], dtype=tf.bool))
    return tf.logical_and(same, not_self), tf.logical_not(same)


def masked_mean(values, mask):
    """Mean of `values` where `mask` (same shape); 0 with a zero gradient when the
    mask is empty.

    Each value is divided by the count before summing, so the mean of finite
    values below half the dtype's maximum is finite (a plain sum of many huge
    values would overflow to inf).
    """
    mask = tf.cast(mask, values.dtype)
    count = tf.reduce_sum(mask)
    return tf.reduce_sum(tf.where(mask > 0, tf.math.divide_no_nan(values, count), tf.zeros_like(values)))


def masked_logsumexp(values, mask, axis=-1):
    """log Σ_{mask} exp(values) along `axis`; −1e4 (a large negative number) if empty.

    Exact for values of any finite magnitude (the shift is the largest masked
    value); gradients are finite everywhere (masked entries get zero gradient).
    """
    has_any = tf.reduce_any(mask, axis=axis)
    peak = tf.stop_gradient(tf.reduce_max(tf.where(mask, values, values.dtype.min), axis=axis, keepdims=True))
    shifted = tf.where(mask, values - peak, tf.constant(-float("inf"), values.dtype))  # exp: 0 off the mask
    summed = tf.reduce_sum(tf.exp(shifted), axis=axis)
    log_sum = tf.math.log(tf.where(has_any, summed, tf.ones_like(summed)))
    return tf.where(has_any, log_sum + tf.squeeze(peak, axis), tf.constant(-1e4, values.dtype) + tf.zeros_like(summed))


def normalize_if(embeddings, normalize):
    """L2-normalises `embeddings` (`tfdml.distances.l2_normalize`) when `normalize` is true."""
    return distances.l2_normalize(embeddings) if normalize else embeddings


def squared_norm_penalty(embeddings, weight):
    """weight · mean_i ‖x_i‖², the squared-norm embedding regulariser (Sohn 2016).

    Exact where it is below a quarter of the dtype's maximum, saturated there
    above (‖x‖² of finite embeddings overflows from ‖x‖ ≈ 1.8e19 in float32),
    so the loss stays finite at any magnitude; the gradient is always the exact
    2·weight·x / B (finite for every finite x).

    Args:
        embeddings: (B, D) float embeddings.
        weight: non-negative Python float.

    Returns:
        Scalar penalty.
    """
    limit = embeddings.dtype.max / 4.0

    @tf.custom_gradient
    def penalty(x):
        scale = distances.batch_scale(x)
        mean_scaled = tf.reduce_mean(tf.reduce_sum(tf.square(x / scale), axis=1))
        value = tf.minimum(scale * (scale * (weight * mean_scaled)), limit)  # +inf beyond the range → limit

        def grad(upstream):
            rows = tf.cast(tf.shape(x)[0], x.dtype)
            return (upstream * (2.0 * weight) / rows) * x

        return value, grad

    return penalty(tf.identity(embeddings))


def pair_values(matrix, rows, cols):
    """`matrix[rows[t], cols[t]]` for every t."""
    return tf.gather_nd(matrix, tf.stack([rows, cols], axis=1))


def row_searchsorted(sorted_rows, values, side="left"):
    """`tf.searchsorted` as a fixed-depth binary search made of gathers:
    O(B·T·log N) work with only gathers and selects, so it compiles to the same
    cost under XLA on every device.

    Args:
        sorted_rows: (B, N) rows sorted in non-decreasing order.
        values: (B, T) values to place in their row.
        side: "left" (count of entries < value) or "right" (entries <= value).

    Returns:
        (B, T) int32 insertion indices in [0, N].
    """
    length = sorted_rows.shape[1]
    depth = int(length).bit_length() if length is not None else 31
    size = tf.shape(sorted_rows)[1]
    below = tf.less if side == "left" else tf.less_equal
    position = tf.zeros(tf.shape(values), tf.int32)  # entries known to lie before the value
    for bit in reversed(range(depth)):
        candidate = position + (1 << bit)
        inside = candidate <= size
        entry = tf.gather(sorted_rows, tf.minimum(candidate, size) - 1, batch_dims=1)
        position = tf.where(tf.logical_and(inside, below(entry, values)), candidate, position)
    return position


def make_seed_generator(seed):
    """A `keras.random.SeedGenerator` from an int, None or an existing generator."""
    if isinstance(seed, keras.random.SeedGenerator):
        return seed
    return keras.random.SeedGenerator(check_seed(seed))
