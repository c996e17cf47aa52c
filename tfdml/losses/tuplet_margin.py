"""Tuplet margin loss (Yu & Tao, ICCV 2019)."""
import math

import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_logsumexp, masked_mean
from tfdml.losses.registry import register


@register("tuplet_margin")
class TupletMarginLoss(MetricLoss):
    """Tuplet margin loss (Yu & Tao, "Deep Metric Learning with Tuplet Margin
    Loss", ICCV 2019, eq. 4 with the slack margin of eq. 5).

    With θ the angle between L2-normalised embeddings (cos θ their cosine
    similarity), for every ordered positive pair (a, p), a ≠ p, and the
    negatives n of a:

        ℓ_ap = log(1 + Σ_n e^{s (cos θ_an − cos(θ_ap − β))})

    loss = mean of ℓ_ap over the ordered positive pairs (0 if none; a pair
    whose anchor has no negative adds log 1 = 0), as in pytorch-metric-learning's
    `TupletMarginLoss`. cos(θ_ap − β) = cos θ_ap cos β + sin θ_ap sin β with
    sin θ_ap = √(1 − cos²θ_ap) (zero gradient where 1 − cos²θ_ap < 1e-12, so
    coinciding positives keep a finite gradient). Defaults s = 64 and the slack
    margin β = 0.1 rad (5.73°, pytorch-metric-learning's `margin` in degrees) are
    the paper's.

    Embedding Expansion: every negative cosine cos θ_an is the EE-pooled one
    (maximum over the pools; default pooling "class").

    Args:
        margin: β, radians.
        scale: s.
        expansion: `tfdml.EmbeddingExpansion` or None.

    Example (β = 0, s = 1: the positive pair has cosine 1, the negative 0):

    >>> loss = tfdml.losses.TupletMarginLoss(margin=0.0, scale=1.0)
    >>> value = loss([0, 0, 1], [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> round(float(value), 4)  # log(1 + e^{0 − 1})
    0.3133
    """

    config_args = ("margin", "scale", "expansion")
    supports_expansion = True
    default_pooling = "class"

    def __init__(self, margin=0.1, scale=64.0, expansion=None, name="tuplet_margin_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, **kwargs)
        self.margin = check_number(margin, "margin")
        self.scale = check_number(scale, "scale", greater_than=0.0)

    def compute(self, labels, embeddings):
        """The loss of the batch: softplus of the scaled negatives' log-sum-exp against each positive pair's
        slack-margin cosine, averaged over positive pairs."""
        m = self.pair_matrices(distances.l2_normalize(embeddings), labels, "cosine")
        cos_ap = tf.clip_by_value(m.positive, -1.0, 1.0)
        sin_ap = distances.safe_sqrt(1.0 - tf.square(cos_ap))
        shifted = cos_ap * math.cos(self.margin) + sin_ap * math.sin(self.margin)  # cos(θ_ap − β)
        neg_lse = masked_logsumexp(self.scale * m.negative, m.negative_mask, axis=1)  # (B,)
        per_pair = tf.nn.softplus(neg_lse[:, None] - self.scale * shifted)
        return masked_mean(per_pair, m.positive_mask)
