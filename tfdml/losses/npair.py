"""Multi-class N-pair loss (Sohn 2016) in the form of EE eqs. 3 and 13."""
import tensorflow as tf

from tfdml.checks import check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_logsumexp, masked_mean, normalize_if, squared_norm_penalty
from tfdml.losses.registry import register


@register("npair")
class NPairLoss(MetricLoss):
    """N-pair loss (Sohn, NeurIPS 2016; Ko & Gu, CVPR 2020 eq. 3).

    On dot-product similarities s of (by default unnormalised) embeddings, for
    every ordered positive pair (i, j), i ≠ j:

        ℓ_ij = log(1 + Σ_{k: y_k ≠ y_i} exp((s_ik − s_ij) / T))

    loss = mean over ordered positive pairs of ℓ_ij + embedding_reg · mean_i ‖x_i‖².
    T = `temperature` is 1 in Sohn's loss; with `normalize=True` and T = 0.1 it
    is the NCA form with all negatives of one anchor–positive pair, the
    "N-pair" selection of Xuan et al. ("Improved embeddings with easy positive
    triplet mining", WACV 2020, eq. 2 with every negative in the denominator).

    With Embedding Expansion (EE eq. 13) every negative similarity s_ik is the
    pooled one (maximum over the pools; default pooling "class"). The EE paper
    uses *unnormalised* synthetic points for N-pair (§3, §4.1): on unnormalised
    embeddings (the default) an expansion must say `normalize=False`
    (`EmbeddingExpansion(n, normalize=False)`; config `expansion.normalize:
    false`), anything else is refused with a `ValueError`. Then a synthetic
    point x̄ = w x_i + (1 − w) x_j never beats both of its end points: the dot
    product is bilinear, so ⟨x̄, z⟩ = w⟨x_i, z⟩ + (1 − w)⟨x_j, z⟩ ≤
    max(⟨x_i, z⟩, ⟨x_j, z⟩), and likewise between two synthetic points. EE +
    N-pair therefore equals class-level hardest-pair pooling over the original
    points under the default "class" pooling: ŝ_ik = max of ⟨x_a, x_b⟩ over
    originals a of class y_i and b of class y_k (both end points of every
    segment are in the class pools). That maximum generically exceeds s_ij, so
    shrinking all embeddings towards 0 lowers this loss: on tfdml's zero-shot
    benchmark (README) it collapses the embeddings, while
    `EmbeddingExpansion(n, normalize=False, pooling="anchor")` does not.

    Args:
        embedding_reg: weight of the squared-norm regulariser.
        normalize: L2-normalise embeddings first (default False, as in Sohn).
        temperature: T > 0, divisor of the similarities (default 1).
        expansion: `tfdml.EmbeddingExpansion` or None.

    Example (both ordered positive pairs have s_ij = 1 and one negative with
    s_ik = 0):

    >>> loss = tfdml.losses.NPairLoss(embedding_reg=0.0)
    >>> value = loss([0, 0, 1], [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> round(float(value), 4)  # log(1 + e^{−1})
    0.3133
    """

    config_args = ("embedding_reg", "normalize", "expansion", "temperature")
    supports_expansion = True
    default_pooling = "class"

    def __init__(self, embedding_reg=0.005, normalize=False, expansion=None, temperature=1.0, name="npair_loss",
                 **kwargs):
        super().__init__(name=name, expansion=expansion, **kwargs)
        self.temperature = check_number(temperature, "temperature", greater_than=0.0)
        self.embedding_reg = check_number(embedding_reg, "embedding_reg", 0.0)
        self.normalize = bool(normalize)
        if self.expanding and self.expansion.normalize and not self.normalize:
            raise ValueError(
                "NPairLoss(normalize=False) works on unnormalised embeddings, and EE + N-pair uses unnormalised "
                "synthetic points (Ko & Gu 2020, §3 and §4.1): pass expansion=tfdml.EmbeddingExpansion(n_points, "
                "normalize=False) (config: expansion.normalize: false), or NPairLoss(normalize=True).")

    def compute(self, labels, embeddings):
        """The loss of the batch: softplus of each positive pair's log-sum-exp margin over the anchor's
        negatives, averaged over positive pairs, plus the embedding-norm penalty when `embedding_reg` > 0."""
        embeddings = normalize_if(embeddings, self.normalize)
        m = self.pair_matrices(embeddings, labels, "dot", self.normalize)
        positive, negative = m.positive, m.negative
        if self.temperature != 1.0:
            positive, negative = positive / self.temperature, negative / self.temperature
        neg_lse = masked_logsumexp(negative, m.negative_mask, axis=1)  # (B,)
        per_pair = tf.nn.softplus(neg_lse[:, None] - positive)
        loss = masked_mean(per_pair, m.positive_mask)
        if self.embedding_reg > 0:
            loss += squared_norm_penalty(embeddings, self.embedding_reg)
        return loss
