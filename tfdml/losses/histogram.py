"""Histogram loss (Ustinova & Lempitsky, NeurIPS 2016)."""
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_int
from tfdml.losses.base import MetricLoss
from tfdml.losses.registry import register


def soft_histogram(values, mask, bins):
    """Normalised soft (linear-interpolation) histogram of `values` in [−1, 1].

    Nodes t_r = −1 + r·Δ, r = 0..bins−1, Δ = 2/(bins − 1). A value s adds
    max(0, 1 − |s − t_r|/Δ) to node r, i.e. it is split linearly between the two
    nodes around it. Values are clipped to [−1, 1]. Memory is O(#values): two
    segment sums, no values × bins tensor.

    Args:
        values: float tensor of similarities.
        mask: bool tensor of the same shape; entries to count.
        bins: number of nodes R ≥ 2.

    Returns:
        (bins,) histogram summing to 1 (all zeros when `mask` is empty).
    """
    values = tf.reshape(values, [-1])
    weights = tf.cast(tf.reshape(mask, [-1]), values.dtype)
    delta = 2.0 / (bins - 1)
    position = (tf.clip_by_value(values, -1.0, 1.0) + 1.0) / delta  # in [0, bins − 1]
    lower = tf.clip_by_value(tf.stop_gradient(tf.floor(position)), 0.0, float(bins - 2))
    fraction = position - lower
    lower_index = tf.cast(lower, tf.int32)
    histogram = (tf.math.unsorted_segment_sum((1.0 - fraction) * weights, lower_index, bins)
                 + tf.math.unsorted_segment_sum(fraction * weights, lower_index + 1, bins))
    return tf.math.divide_no_nan(histogram, tf.reduce_sum(weights))


@register("histogram")
class HistogramLoss(MetricLoss):
    """Histogram loss (Ustinova & Lempitsky, "Learning deep embeddings with
    histogram loss", NeurIPS 2016).

    On cosine similarities s_ij of L2-normalised embeddings over the unordered
    pairs i < j, with nodes t_r = −1 + (r − 1)Δ, r = 1..R, Δ = 2/(R − 1) and the
    linear soft assignment δ_ij,r = max(0, 1 − |s_ij − t_r|/Δ):

        h⁺_r = (1/|S⁺|) Σ_{(i,j)∈S⁺} δ_ij,r     (positive pairs, same class)
        h⁻_r = (1/|S⁻|) Σ_{(i,j)∈S⁻} δ_ij,r     (negative pairs)
        loss = Σ_r h⁻_r · Σ_{q≤r} h⁺_q

    (each histogram sums to 1). The loss estimates the probability that a
    negative pair is more similar than a positive one. A batch without positive
    or without negative pairs gives 0 with a zero gradient.

    Embedding Expansion: every negative similarity s_ij is the EE-pooled one
    (maximum over the pools; default pooling "class"); positive pairs use
    original points only.

    Args:
        bins: number of histogram nodes R ≥ 2 (Roth et al.: 65, i.e. Δ = 1/32).
        expansion: `tfdml.EmbeddingExpansion` or None.

    Example (nodes −1, 0, 1; the positive pair has s = 0, so h⁺ = (0, 1, 0); the
    negative pairs have s = −1 and 0, so h⁻ = (½, ½, 0)):

    >>> loss = tfdml.losses.HistogramLoss(bins=3)
    >>> value = loss([0, 0, 1], [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> round(float(value), 4)  # ½ · 0 + ½ · 1
    0.5
    """

    config_args = ("bins", "expansion")
    supports_expansion = True
    default_pooling = "class"

    def __init__(self, bins=65, expansion=None, name="histogram_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, **kwargs)
        self.bins = check_int(bins, "bins", minimum=2)

    def compute(self, labels, embeddings):
        """The loss of the batch: the probability that a negative pair is more similar than a positive one,
        from soft histograms of the cosine similarities."""
        unit = distances.l2_normalize(embeddings)
        m = self.pair_matrices(unit, labels, "cosine")
        batch = tf.shape(labels)[0]
        index = tf.range(batch)
        upper = index[:, None] < index[None, :]
        pos_mask = tf.logical_and(m.positive_mask, upper)
        neg_mask = tf.logical_and(m.negative_mask, upper)
        h_pos = soft_histogram(m.positive, pos_mask, self.bins)
        h_neg = soft_histogram(m.negative, neg_mask, self.bins)
        loss = tf.reduce_sum(h_neg * tf.cumsum(h_pos))
        valid = tf.logical_and(tf.reduce_any(pos_mask), tf.reduce_any(neg_mask))
        return tf.where(valid, loss, tf.zeros_like(loss))
