"""Multi-class N-pair loss (Sohn 2016) in the form of EE eqs. 3 and 13."""
import tensorflow as tf

from tfdml.losses.base import (
    MetricLoss,
    check_number,
    deserialize_expansion,
    masked_logsumexp,
    masked_mean,
    normalize_if,
    pair_matrices,
    serialize_expansion,
)
from tfdml.losses.registry import register


@register("npair")
class NPairLoss(MetricLoss):
    """N-pair loss (Sohn, NeurIPS 2016; Ko & Gu, CVPR 2020 eq. 3).

    On dot-product similarities s of (by default unnormalised) embeddings, for
    every ordered positive pair (i, j), i ≠ j:

        ℓ_ij = log(1 + Σ_{k: y_k ≠ y_i} exp(s_ik − s_ij))

    loss = mean over ordered positive pairs of ℓ_ij + l2_reg · mean_i ‖x_i‖².

    With Embedding Expansion (EE eq. 13) every negative similarity s_ik is the
    pooled one (maximum over the pool; default pooling "class"). Use
    `EmbeddingExpansion(normalize=False)` on unnormalised embeddings.

    Args:
        l2_reg: weight of the embedding-norm regulariser.
        normalize: L2-normalise embeddings first (default False, as in Sohn).
        expansion: `tfdml.EmbeddingExpansion` or None.
    """

    def __init__(self, l2_reg=0.005, normalize=False, expansion=None, name="npair_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.l2_reg = check_number(l2_reg, "l2_reg", 0.0)
        self.normalize = bool(normalize)
        self.expansion = deserialize_expansion(expansion)

    def compute(self, labels, embeddings):
        embeddings = normalize_if(embeddings, self.normalize)
        m = pair_matrices(embeddings, labels, "dot", self.expansion, "class")
        neg_lse = masked_logsumexp(m.negative, m.negative_mask, axis=1)  # (B,)
        per_pair = tf.nn.softplus(neg_lse[:, None] - m.positive)
        loss = masked_mean(per_pair, m.positive_mask)
        if self.l2_reg > 0:
            loss += self.l2_reg * tf.reduce_mean(tf.reduce_sum(tf.square(embeddings), axis=1))
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(l2_reg=self.l2_reg, normalize=self.normalize, expansion=serialize_expansion(self.expansion))
        return config
