"""Circle loss (Sun et al., CVPR 2020), pair-wise form."""
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_logsumexp, masked_mean
from tfdml.losses.registry import register


@register("circle")
class CircleLoss(MetricLoss):
    """Circle loss (Sun et al., "Circle Loss: A Unified Perspective of Pair
    Similarity Optimization", CVPR 2020, eq. 6 with eqs. 7–8), in its pair-wise
    form on the batch.

    On cosine similarities of L2-normalised embeddings, for anchor i with
    within-class similarities s_p (positives j ≠ i) and between-class
    similarities s_n (negatives k):

        α_p = [O_p − s_p]_+,  α_n = [s_n − O_n]_+   (O_p = 1 + m, O_n = −m; α
              is a constant in the gradient, as in the paper and its code)
        ℓ_i = log(1 + Σ_k e^{γ α_n (s_n − Δ_n)} · Σ_j e^{−γ α_p (s_p − Δ_p)})
              (Δ_p = 1 − m, Δ_n = m)

    loss = mean of ℓ_i over the anchors with a positive and a negative (0 if
    none). As s ∈ [−1, 1], both exponents are ≥ −γm², so ℓ_i ≥ log(1 + e^{−2γm²})
    > 0 for every such anchor (e^{−32} with the defaults): this is also
    pytorch-metric-learning's `CircleLoss` reduction (mean of the non-zero terms).

    Defaults m = 0.25, γ = 256 are the paper's face-recognition setting (the
    paper uses γ = 128 for person re-identification and m = 0.4, γ = 80 for
    fine-grained retrieval — pytorch-metric-learning's defaults).

    Embedding Expansion: every negative similarity s_n is the EE-pooled one
    (maximum over the pools; default pooling "class"), in α_n and the exponent
    alike.

    Args:
        margin: m, the relaxation factor.
        scale: γ, the scale factor.
        expansion: `tfdml.EmbeddingExpansion` or None.

    Example (orthonormal points: every similarity is 0; m = ½, γ = 1, so
    α_p = 3/2, α_n = ½, and each of the two anchors of class 0 has
    ℓ = log(1 + e^{−1/4} e^{3/4}) = log(1 + e^{1/2})):

    >>> loss = tfdml.losses.CircleLoss(margin=0.5, scale=1.0)
    >>> value = loss([0, 0, 1], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    >>> round(float(value), 4)
    0.9741
    """

    config_args = ("margin", "scale", "expansion")
    supports_expansion = True
    default_pooling = "class"

    def __init__(self, margin=0.25, scale=256.0, expansion=None, name="circle_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, **kwargs)
        self.margin = check_number(margin, "margin")
        self.scale = check_number(scale, "scale", greater_than=0.0)

    def compute(self, labels, embeddings):
        """The loss of the batch: softplus of the weighted positive and negative log-sum-exps of
        cosine similarities per anchor, averaged over anchors with a positive and a negative."""
        m = self.pair_matrices(distances.l2_normalize(embeddings), labels, "cosine")
        margin, scale = self.margin, self.scale
        alpha_p = tf.nn.relu(1.0 + margin - tf.stop_gradient(m.positive))
        alpha_n = tf.nn.relu(tf.stop_gradient(m.negative) + margin)
        pos_lse = masked_logsumexp(-scale * alpha_p * (m.positive - (1.0 - margin)), m.positive_mask, axis=1)
        neg_lse = masked_logsumexp(scale * alpha_n * (m.negative - margin), m.negative_mask, axis=1)
        valid = tf.logical_and(tf.reduce_any(m.positive_mask, axis=1), tf.reduce_any(m.negative_mask, axis=1))
        return masked_mean(tf.nn.softplus(pos_lse + neg_lse), valid)
