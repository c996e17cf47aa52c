"""Intra-pair variance loss (Yu & Tao, ICCV 2019)."""
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_mean
from tfdml.losses.registry import register


@register("intra_pair_variance")
class IntraPairVarianceLoss(MetricLoss):
    """Intra-pair variance loss (Yu & Tao, "Deep Metric Learning with Tuplet
    Margin Loss", ICCV 2019, eq. 6).

    On cosine similarities of L2-normalised embeddings, with E_p and E_n the
    means of the cosines over all ordered positive / negative pairs of the batch
    (part of the computation: gradients flow through them):

        ℓ⁺_ap = [(1 − ε⁺) E_p − cos θ_ap]_+²      ℓ⁻_an = [cos θ_an − (1 + ε⁻) E_n]_+²

    loss = mean of ℓ⁺ over the positive pairs + mean of ℓ⁻ over the negative
    pairs (each 0 without a pair), pytorch-metric-learning's
    `IntraPairVarianceLoss` reduction. Defaults
    ε⁺ = ε⁻ = 0.01 are pytorch-metric-learning's. The paper adds it to the
    tuplet margin loss (`tfdml.losses.TupletMarginLoss`) with a weight.

    Embedding Expansion: every negative cosine (and so E_n) is the EE-pooled one
    (maximum over the pools; default pooling "class").

    Args:
        pos_margin: ε⁺.
        neg_margin: ε⁻.
        expansion: `tfdml.EmbeddingExpansion` or None.

    Example (positive cosines 1, 1, 0, 0 — two pairs, both orders — so E_p = ½
    and the pairs at 0 add (0.99 · ½)²; negative cosines all 0, so ℓ⁻ = 0):

    >>> loss = tfdml.losses.IntraPairVarianceLoss()
    >>> embeddings = [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> round(float(loss([0, 0, 1, 1], embeddings)), 7)  # (0 + 0 + 0.495² + 0.495²) / 4
    0.1225125
    """

    config_args = ("pos_margin", "neg_margin", "expansion")
    supports_expansion = True
    default_pooling = "class"

    def __init__(self, pos_margin=0.01, neg_margin=0.01, expansion=None, name="intra_pair_variance_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, **kwargs)
        self.pos_margin = check_number(pos_margin, "pos_margin")
        self.neg_margin = check_number(neg_margin, "neg_margin")

    def compute(self, labels, embeddings):
        """The loss of the batch: squared hinges of positive and negative similarities around their means."""
        m = self.pair_matrices(distances.l2_normalize(embeddings), labels, "cosine")
        mean_pos = masked_mean(m.positive, m.positive_mask)
        mean_neg = masked_mean(m.negative, m.negative_mask)
        pos_term = tf.square(tf.nn.relu((1.0 - self.pos_margin) * mean_pos - m.positive))
        neg_term = tf.square(tf.nn.relu(m.negative - (1.0 + self.neg_margin) * mean_neg))
        return masked_mean(pos_term, m.positive_mask) + masked_mean(neg_term, m.negative_mask)
