"""Lifted structure loss (Oh Song et al. 2016) in the form of EE eqs. 2 and 12."""
import tensorflow as tf

from tfdml.checks import check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_logsumexp, masked_mean, normalize_if
from tfdml.losses.registry import register


@register("lifted")
class LiftedStructureLoss(MetricLoss):
    """Lifted structure loss (Oh Song et al., CVPR 2016; Ko & Gu, CVPR 2020 eq. 2).

    For every ordered positive pair (i, j), i ≠ j, with Euclidean distances d:

        J_ij = log( Σ_{k: y_k ≠ y_i} exp(m − d_ik) + Σ_{k: y_k ≠ y_j} exp(m − d_jk) ) + d_ij

    loss = mean over ordered positive pairs of ½ [J_ij]_+²
         (= 1/(2|P|) Σ_{(i,j)∈P} [J_ij]_+²).

    With Embedding Expansion (EE eq. 12) every negative distance d_ik is the
    pooled one (minimum over the pool; default pooling "class"). Pairs whose
    anchors have no negative in the batch contribute [−∞]_+ = 0. No positive pair
    → loss 0.

    Args:
        margin: m.
        normalize: L2-normalise embeddings first (default True).
        expansion: `tfdml.EmbeddingExpansion` or None.

    Example (three orthonormal points, every distance √2: for both ordered
    positive pairs J = log(2·e^{1−√2}) + √2 = 1 + log 2):

    >>> loss = tfdml.losses.LiftedStructureLoss(margin=1.0)
    >>> value = loss([0, 0, 1], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    >>> round(float(value), 4)  # ½ (1 + log 2)²
    1.4334
    """

    config_args = ("margin", "normalize", "expansion")
    supports_expansion = True
    default_pooling = "class"

    def __init__(self, margin=1.0, normalize=True, expansion=None, name="lifted_structure_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, **kwargs)
        self.margin = check_number(margin, "margin")
        self.normalize = bool(normalize)

    def compute(self, labels, embeddings):
        m = self.pair_matrices(normalize_if(embeddings, self.normalize), labels, "euclidean")
        neg_lse = masked_logsumexp(self.margin - m.negative, m.negative_mask, axis=1)  # (B,)
        j = tf.experimental.numpy.logaddexp(neg_lse[:, None], neg_lse[None, :]) + m.positive
        return masked_mean(0.5 * tf.square(tf.nn.relu(j)), m.positive_mask)
