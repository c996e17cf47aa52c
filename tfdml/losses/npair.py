"""Multi-class N-pair loss (Sohn 2016) in the form of EE eqs. 3 and 13."""
import tensorflow as tf

from tfdml.checks import check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_logsumexp, masked_mean, mean_squared_norm, normalize_if
from tfdml.losses.registry import register


@register("npair")
class NPairLoss(MetricLoss):
    """N-pair loss (Sohn, NeurIPS 2016; Ko & Gu, CVPR 2020 eq. 3).

    On dot-product similarities s of (by default unnormalised) embeddings, for
    every ordered positive pair (i, j), i ≠ j:

        ℓ_ij = log(1 + Σ_{k: y_k ≠ y_i} exp(s_ik − s_ij))

    loss = mean over ordered positive pairs of ℓ_ij + embedding_reg · mean_i ‖x_i‖².

    With Embedding Expansion (EE eq. 13) every negative similarity s_ik is the
    pooled one (maximum over the pool; default pooling "class"). Use
    `EmbeddingExpansion(normalize=False)` on unnormalised embeddings.

    Args:
        embedding_reg: weight of the squared-norm regulariser.
        normalize: L2-normalise embeddings first (default False, as in Sohn).
        expansion: `tfdml.EmbeddingExpansion` or None.

    Example (both ordered positive pairs have s_ij = 1 and one negative with
    s_ik = 0):

    >>> loss = tfdml.losses.NPairLoss(embedding_reg=0.0)
    >>> value = loss([0, 0, 1], [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> round(float(value), 4)  # log(1 + e^{−1})
    0.3133
    """

    config_args = ("embedding_reg", "normalize", "expansion")
    supports_expansion = True
    default_pooling = "class"

    def __init__(self, embedding_reg=0.005, normalize=False, expansion=None, name="npair_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, **kwargs)
        self.embedding_reg = check_number(embedding_reg, "embedding_reg", 0.0)
        self.normalize = bool(normalize)

    def compute(self, labels, embeddings):
        embeddings = normalize_if(embeddings, self.normalize)
        m = self.pair_matrices(embeddings, labels, "dot")
        neg_lse = masked_logsumexp(m.negative, m.negative_mask, axis=1)  # (B,)
        per_pair = tf.nn.softplus(neg_lse[:, None] - m.positive)
        loss = masked_mean(per_pair, m.positive_mask)
        if self.embedding_reg > 0:
            loss += self.embedding_reg * mean_squared_norm(embeddings)
        return loss
