"""FastAP (Cakir et al., CVPR 2019): average precision from distance histograms."""
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_int
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_mean
from tfdml.losses.registry import register

#: Squared Euclidean distances of unit vectors lie in [0, 4].
_DISTANCE_RANGE = 4.0


def per_anchor_histograms(values, mask, bins):
    """Soft histograms of `values` in [0, 4], one per row.

    Nodes z_l = l·Δ, l = 0..bins, Δ = 4/bins; a value d adds
    δ(d, z_l) = max(0, 1 − |d − z_l|/Δ) to node l (the two nodes around d share
    it linearly, so each counted value adds 1 in total).

    Args:
        values: (B, B) distances.
        mask: (B, B) bool, the entries to count.
        bins: number of intervals L (bins + 1 nodes).

    Returns:
        (B, bins + 1) histograms. Memory O(B²·(bins + 1)).
    """
    delta = _DISTANCE_RANGE / bins
    nodes = tf.cast(tf.range(bins + 1), values.dtype) * delta
    clipped = tf.clip_by_value(values, 0.0, _DISTANCE_RANGE)
    pulse = tf.nn.relu(1.0 - tf.abs(clipped[:, :, None] - nodes) / delta)  # (B, B, bins + 1)
    return tf.reduce_sum(pulse * tf.cast(mask, values.dtype)[:, :, None], axis=1)


@register("fastap")
class FastAPLoss(MetricLoss):
    """FastAP (Cakir et al., "Deep Metric Learning to Rank", CVPR 2019): one
    minus the mean, over the batch's queries, of the histogram approximation
    of average precision.

    Each sample i of the batch is a query; the rest of the batch is its
    retrieval set. On squared Euclidean distances d_ij = ‖x̂_i − x̂_j‖² ∈ [0, 4]
    of L2-normalised embeddings, with L intervals, the L + 1 nodes
    z_l = l·Δ (Δ = 4/L, l = 0..L) and the triangular soft binning
    δ(d, z_l) = max(0, 1 − |d − z_l|/Δ):

        h⁺_il = Σ_{j ∈ P_i} δ(d_ij, z_l),   h⁻_il = Σ_{k ∈ N_i} δ(d_ik, z_l)
        H⁺_il = Σ_{l' ≤ l} h⁺_il',          H_il = Σ_{l' ≤ l} (h⁺_il' + h⁻_il')
        FastAP_i = (1/|P_i|) Σ_l h⁺_il H⁺_il / H_il      (terms with H_il = 0 are 0)

    (P_i: the positives j ≠ i of the same class, N_i: the other classes.)

    loss = 1 − mean of FastAP_i over the queries with a positive (0 if none).

    FastAP_i is the paper's approximation of AP by the distance histograms
    (precision H⁺/H and recall increment h⁺/|P_i| at each bin, summed over
    the bins). The binning — L + 1 nodes from 0 to 4, L = 10 — follows the
    authors' released code and pytorch-metric-learning's `FastAPLoss`
    (`num_bins` = L), which computes exactly this loss; the paper's equation
    numbers could not be checked offline.

    Embedding Expansion: every negative distance d_ik (in h⁻) is the EE-pooled
    one (the minimum over the pools; default pooling "class"). The histogram
    of a query's negatives then counts each negative at its hardest synthetic
    distance — a meaningful (harder) ranking; positives stay original points.

    Memory: O(B²·(L + 1)) (one pulse tensor per histogram).

    Args:
        bins: L, the number of histogram intervals on [0, 4] (L + 1 nodes).
        expansion: `tfdml.EmbeddingExpansion` or None.

    Example (L = 2: nodes 0, 2, 4. Query 0 has its positive at d = 2 and its
    negative at d = 4: FastAP = 1·1/1 = 1; query 1 has both at d = 2:
    FastAP = 1·1/2; query 2 has no positive):

    >>> loss = tfdml.losses.FastAPLoss(bins=2)
    >>> value = loss([0, 0, 1], [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> round(float(value), 4)  # 1 − (1 + ½)/2
    0.25
    """

    config_args = ("bins", "expansion")
    supports_expansion = True
    default_pooling = "class"

    def __init__(self, bins=10, expansion=None, name="fastap_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, **kwargs)
        self.bins = check_int(bins, "bins", minimum=1)

    def compute(self, labels, embeddings):
        """The loss of the batch: one minus the histogram-approximated AP, averaged over queries with a positive."""
        m = self.pair_matrices(distances.l2_normalize(embeddings), labels, "squared_euclidean")
        h_pos = per_anchor_histograms(m.positive, m.positive_mask, self.bins)
        h_neg = per_anchor_histograms(m.negative, m.negative_mask, self.bins)
        cumulative_pos = tf.cumsum(h_pos, axis=1)
        cumulative_all = tf.cumsum(h_pos + h_neg, axis=1)
        count = tf.reduce_sum(tf.cast(m.positive_mask, embeddings.dtype), axis=1)
        precision_terms = tf.math.divide_no_nan(h_pos * cumulative_pos, cumulative_all)
        average_precision = tf.math.divide_no_nan(tf.reduce_sum(precision_terms, axis=1), count)
        return masked_mean(1.0 - average_precision, count > 0)
