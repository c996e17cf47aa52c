"""Threshold-consistent margin (TCM) regulariser (Zhang et al., ICLR 2024)."""
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_mean
from tfdml.losses.registry import register


@register("threshold_consistent_margin")
class ThresholdConsistentMarginLoss(MetricLoss):
    """Threshold-consistent margin loss, TCM (Zhang et al., "Threshold-Consistent
    Margin Loss for Open-World Deep Metric Learning", arXiv:2307.04047, ICLR
    2024): a regulariser, added to a base loss, that only acts on hard pairs —
    positives less similar than m⁺ and negatives more similar than m⁻.

    On cosine similarities s of L2-normalised embeddings, with P the ordered
    positive pairs (i ≠ j, same class) and N the negative pairs:

        P⁺ = {(i, j) ∈ P : s_ij ≤ m⁺},  N⁻ = {(i, k) ∈ N : s_ik ≥ m⁻}
        loss = λ⁺ · 1/|P⁺| Σ_{P⁺} (m⁺ − s_ij) + λ⁻ · 1/|N⁻| Σ_{N⁻} (s_ik − m⁻)

    Each term is 0 when its set is empty (so 0 with a zero gradient for a batch
    of easy pairs). Defaults λ⁺ = λ⁻ = 1, m⁺ = 0.9, m⁻ = 0.5 are
    pytorch-metric-learning's `ThresholdConsistentMarginLoss` defaults; the
    paper's text (equation number, per-dataset margins) could not be checked
    offline, so form and defaults follow pytorch-metric-learning (which
    computes the same equation).

    Embedding Expansion: every negative similarity s_ik is the EE-pooled one
    (maximum over the pools; default pooling "class"), in the set N⁻ and the
    hinge alike.

    Args:
        pos_margin: m⁺, the positive cosine margin.
        neg_margin: m⁻, the negative cosine margin.
        pos_weight: λ⁺, weight of the positive term.
        neg_weight: λ⁻, weight of the negative term.
        expansion: `tfdml.EmbeddingExpansion` or None.

    Returns:
        The scalar loss when called as `loss(labels, embeddings)`.

    Example (the two points of class 0 have cosine 0.6; the point of class 1
    has cosines 0.8 and 0.96 with them; m⁺ = 0.9: both ordered positive pairs
    add 0.3; m⁻ = 0.5: the four ordered negative pairs add 0.3, 0.3, 0.46,
    0.46):

    >>> loss = tfdml.losses.ThresholdConsistentMarginLoss()
    >>> value = loss([0, 0, 1], [[1.0, 0.0], [0.6, 0.8], [0.8, 0.6]])
    >>> round(float(value), 4)  # 0.3 + (0.3 + 0.3 + 0.46 + 0.46) / 4
    0.68
    """

    config_args = ("pos_margin", "neg_margin", "pos_weight", "neg_weight", "expansion")
    supports_expansion = True
    default_pooling = "class"

    def __init__(self, pos_margin=0.9, neg_margin=0.5, pos_weight=1.0, neg_weight=1.0, expansion=None,
                 name="threshold_consistent_margin_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, **kwargs)
        self.pos_margin = check_number(pos_margin, "pos_margin")
        self.neg_margin = check_number(neg_margin, "neg_margin")
        self.pos_weight = check_number(pos_weight, "pos_weight", minimum=0.0)
        self.neg_weight = check_number(neg_weight, "neg_weight", minimum=0.0)

    def compute(self, labels, embeddings):
        """The regulariser of the batch: the weighted mean violations of the hard positive pairs (below
        `pos_margin`) and the hard negative pairs (above `neg_margin`)."""
        m = self.pair_matrices(distances.l2_normalize(embeddings), labels, "cosine")
        hard_positive = tf.logical_and(m.positive_mask, m.positive <= self.pos_margin)
        hard_negative = tf.logical_and(m.negative_mask, m.negative >= self.neg_margin)
        positive = masked_mean(self.pos_margin - m.positive, hard_positive)
        negative = masked_mean(m.negative - self.neg_margin, hard_negative)
        return self.pos_weight * positive + self.neg_weight * negative
