"""Angular loss combined with N-pair (Wang et al. 2017; Roth et al. 2020 eq. 5)."""
import math

import numpy as np
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_logsumexp, masked_mean, squared_norm_penalty
from tfdml.losses.registry import register


@register("angular")
class AngularLoss(MetricLoss):
    """N-pair + angular loss (Wang et al., "Deep metric learning with angular
    loss", ICCV 2017, eq. 8 and the N-pair combination of §4.3; Roth et al.,
    ICML 2020, eq. 5).

    For every ordered positive pair (a, p), a ≠ p, y_a = y_p, with negatives
    N(a) = {n: y_n ≠ y_a}:

        npair_ap   = log(1 + Σ_{n∈N(a)} exp(x_aᵀx_n − x_aᵀx_p))      (raw x)
        f_apn      = 4 tan²α (x̂_a + x̂_p)ᵀ x̂_n − 2 (1 + tan²α) x̂_aᵀ x̂_p
        angular_ap = log(1 + Σ_{n∈N(a)} exp(f_apn))                  (x̂ = x/‖x‖)

    loss = mean over ordered positive pairs of (npair_ap + angular_weight ·
    angular_ap) + embedding_reg · mean_i ‖x_i‖².

    As in Roth et al.'s code, the angular term uses L2-normalised embeddings and
    the N-pair term the raw ones. Every ordered positive pair is an (a, p) pair
    (the deterministic expectation of Roth's N-pair miner, which draws one
    random positive per anchor). The regulariser is the squared norm of Sohn's
    N-pair loss (Roth's code uses mean ‖x‖). Empty sums give 0 (log 1).

    Computation: Σ_n exp(4t²(ĉ_an + ĉ_pn)) = Σ_n E_an E_pn = (E Eᵀ)_ap with
    E_an = exp(4t² ĉ_an) on negative pairs (0 elsewhere; y_p = y_a makes the
    masks of (a, n) and (p, n) equal), so memory stays O(B²) — no B×B×B
    tensor. Rows of E are scaled by their maximum for stability; sums that
    underflow (only for α close to 90°) are floored at the dtype's smallest
    normal number.

    Embedding Expansion: each negative pair keeps its place and gets its pooled
    value (the foundation's rule; default pooling "class"): x_aᵀx_n in the
    N-pair term is the pooled dot similarity, and in f_apn both ĉ_an and ĉ_pn
    are pooled cosine similarities (maximum over the pools). Pooling (a, n) and
    (p, n) separately upper-bounds the angular term of the single hardest pool
    point max_z (x̂_a + x̂_p)ᵀ ẑ and keeps memory O(B²) instead of O(B²·P).
    Synthetic points of each term are built from the embeddings that term uses
    (raw for N-pair, normalised for angular; cosine pooling does not depend on
    `normalize`), so `EmbeddingExpansion(normalize=False)` is the consistent
    choice for the N-pair term.

    Args:
        alpha_degrees: angle α in degrees, 0 < α < 90.
        angular_weight: λ, weight of the angular term.
        embedding_reg: weight of the squared-norm regulariser.
        expansion: `tfdml.EmbeddingExpansion` or None.

    Example (a = p = (1, 0), n = (0, 1), α = 45°: N-pair log(1 + e^{0−1}),
    f = 4·0 − 2·2·1 = −4):

    >>> loss = tfdml.losses.AngularLoss(alpha_degrees=45.0, angular_weight=2.0, embedding_reg=0.0)
    >>> value = loss([0, 0, 1], [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> round(float(value), 4)  # log(1 + e^{−1}) + 2 log(1 + e^{−4})
    0.3496
    """

    config_args = ("alpha_degrees", "angular_weight", "embedding_reg", "expansion")
    supports_expansion = True
    default_pooling = "class"

    def __init__(self, alpha_degrees=45.0, angular_weight=2.0, embedding_reg=0.005, expansion=None,
                 name="angular_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, **kwargs)
        self.alpha_degrees = check_number(alpha_degrees, "alpha_degrees", greater_than=0.0, less_than=90.0)
        self.angular_weight = check_number(angular_weight, "angular_weight", 0.0)
        self.embedding_reg = check_number(embedding_reg, "embedding_reg", 0.0)

    @property
    def tan_squared(self):
        """tan²(α), α = `alpha_degrees` in radians: the factor of the angular term."""
        return math.tan(math.radians(self.alpha_degrees)) ** 2

    def _npair_terms(self, labels, embeddings):
        m = self.pair_matrices(embeddings, labels, "dot", normalized=False)
        neg_lse = masked_logsumexp(m.negative, m.negative_mask, axis=1)  # (B,)
        has_neg = tf.reduce_any(m.negative_mask, axis=1)
        per_pair = tf.nn.softplus(neg_lse[:, None] - m.positive)
        return tf.where(has_neg[:, None], per_pair, tf.zeros_like(per_pair)), m.positive_mask

    def _angular_terms(self, labels, embeddings):
        t2 = self.tan_squared
        unit = distances.l2_normalize(embeddings)
        m = self.pair_matrices(unit, labels, "cosine")
        logits = (4.0 * t2) * m.negative  # (a, n)
        neg_mask = m.negative_mask
        has_neg = tf.reduce_any(neg_mask, axis=1)
        lowest = tf.constant(-1e4, logits.dtype)
        row_max = tf.stop_gradient(tf.reduce_max(tf.where(neg_mask, logits, lowest), axis=1))
        row_max = tf.where(has_neg, row_max, tf.zeros_like(row_max))
        scaled = tf.where(neg_mask, tf.exp(tf.where(neg_mask, logits, lowest) - row_max[:, None]),
                          tf.zeros_like(logits))
        pair_sums = tf.matmul(scaled, scaled, transpose_b=True)  # (a, p): Σ_n E_an E_pn
        tiny = tf.constant(np.finfo(logits.dtype.as_numpy_dtype).tiny, logits.dtype)
        log_sums = tf.math.log(tf.maximum(pair_sums, tiny)) + row_max[:, None] + row_max[None, :]
        inner = log_sums - (2.0 * (1.0 + t2)) * m.positive
        per_pair = tf.nn.softplus(inner)
        return tf.where(has_neg[:, None], per_pair, tf.zeros_like(per_pair))

    def compute(self, labels, embeddings):
        """The loss of the batch: the N-pair term plus `angular_weight` times the angular term, averaged
        over positive pairs, plus the embedding-norm penalty when `embedding_reg` > 0."""
        npair, positive_mask = self._npair_terms(labels, embeddings)
        per_pair = npair
        if self.angular_weight > 0:
            per_pair = per_pair + self.angular_weight * self._angular_terms(labels, embeddings)
        loss = masked_mean(per_pair, positive_mask)
        if self.embedding_reg > 0:
            loss += squared_norm_penalty(embeddings, self.embedding_reg)
        return loss
