"""Generalized lifted structure loss (Hermans et al. 2017; Roth et al. 2020 eq. 3)."""
import tensorflow as tf

from tfdml.checks import check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_logsumexp, masked_mean, normalize_if, squared_norm_penalty
from tfdml.losses.registry import register


@register("generalized_lifted")
class GeneralizedLiftedStructureLoss(MetricLoss):
    """Generalized lifted structure loss (Hermans, Beyer & Leibe, "In defense of
    the triplet loss", 2017, eq. 3; Roth et al., ICML 2020, eq. 3).

    On Euclidean distances d of the embeddings (*unnormalised* by default, as in
    Roth et al.), for every anchor i that has at least one positive (same class,
    j ≠ i):

        ℓ_i = [ log Σ_{p: y_p = y_i, p ≠ i} exp(d_ip)
              + log Σ_{n: y_n ≠ y_i} exp(m − d_in) ]_+

    (ℓ_i = 0 when i has no negative: the empty sum's log is −∞).

    loss = mean over anchors with a positive of ℓ_i
           + embedding_reg · mean_i ‖x_i‖².

    Roth et al.'s code uses mean_i ‖x_i‖ (not squared) for the regulariser; this
    follows the squared form of the paper's weight-decay-like term. A batch
    without any positive pair gives just the regulariser (zero gradient from the
    structure term).

    Embedding Expansion: every anchor–negative distance d_in is the EE-pooled
    one (minimum over the pools; default pooling "class", the paper's
    equations). Positives are original points. As the embeddings are not
    normalised, use `EmbeddingExpansion(normalize=False)` for synthetic points
    on the segments themselves.

    Args:
        margin: m.
        embedding_reg: weight of the squared-norm regulariser.
        normalize: L2-normalise embeddings first (default False).
        expansion: `tfdml.EmbeddingExpansion` or None.

    Example (anchor 0: log e¹ + log e^{1−0.5} = 1.5; anchor 1:
    1 + 1 − √1.25):

    >>> loss = tfdml.losses.GeneralizedLiftedStructureLoss(margin=1.0, embedding_reg=0.0)
    >>> value = loss([0, 0, 1], [[0.0, 0.0], [1.0, 0.0], [0.0, 0.5]])
    >>> round(float(value), 4)  # (1.5 + 2 − √1.25) / 2
    1.191
    """

    config_args = ("margin", "embedding_reg", "normalize", "expansion")
    supports_expansion = True
    default_pooling = "class"

    def __init__(self, margin=1.0, embedding_reg=0.005, normalize=False, expansion=None,
                 name="generalized_lifted_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, **kwargs)
        self.margin = check_number(margin, "margin")
        self.embedding_reg = check_number(embedding_reg, "embedding_reg", 0.0)
        self.normalize = bool(normalize)

    def compute(self, labels, embeddings):
        """The loss of the batch: the hinge of each anchor's positive and negative log-sum-exps, averaged
        over anchors with a positive, plus the embedding-norm penalty when `embedding_reg` > 0."""
        embeddings = normalize_if(embeddings, self.normalize)
        m = self.pair_matrices(embeddings, labels, "euclidean", self.normalize)
        has_pos = tf.reduce_any(m.positive_mask, axis=1)
        has_neg = tf.reduce_any(m.negative_mask, axis=1)
        pos_term = masked_logsumexp(m.positive, m.positive_mask, axis=1)
        neg_term = masked_logsumexp(self.margin - m.negative, m.negative_mask, axis=1)
        both = tf.logical_and(has_pos, has_neg)
        per_anchor = tf.where(both, tf.nn.relu(pos_term + neg_term), tf.zeros_like(pos_term))
        loss = masked_mean(per_anchor, has_pos)
        if self.embedding_reg > 0:
            loss += squared_norm_penalty(embeddings, self.embedding_reg)
        return loss
