"""Multi-similarity loss (Wang et al. 2019) in the form of EE eqs. 4–6 and 14–15."""
import tensorflow as tf

from tfdml.checks import check_choice, check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_logsumexp, normalize_if
from tfdml.losses.pairs import EE_FORMS
from tfdml.losses.registry import register


@register("multi_similarity")
class MultiSimilarityLoss(MetricLoss):
    """Multi-similarity loss (Wang et al., CVPR 2019; Ko & Gu, CVPR 2020 eqs. 4–6, 14–15).

    On cosine similarities s of L2-normalised embeddings, for anchor i with
    positives P_i (same class, ≠ i) and negatives N_i:

    - pair mining (eqs. 4–5): a negative k is kept if s_ik + ε > min_{j∈P_i} s_ij;
      a positive j is kept if s_ij − ε < max_{k∈N_i} s_ik;
    - ℓ_i = 1/α · log(1 + Σ_{kept j} exp(−α (s_ij − λ)))
          + 1/β · log(1 + Σ_{kept k} exp( β (s_ik − λ)))   (Wang et al. eq. 4)

    loss = mean over all B anchors of ℓ_i (an anchor with nothing kept adds 0).

    `plus_one=False` is the form Ko & Gu print in eqs. 6 and 15: no "1 +" inside
    either log, ℓ_i = 1/α · log Σ_{kept j} exp(−α (s_ij − λ)) + 1/β · log Σ_{kept k}
    exp(β (s_ik − λ)); an empty sum adds 0. Its terms can be negative (a kept
    pair far on the right side of λ), and the gradient weights of the pairs sum
    to 1 per anchor instead of staying below 1.

    With Embedding Expansion, ŝ_ik is the EE-pooled similarity of the negative
    pair (i, k) (maximum over the pools; default pooling "class"):

    - `ee_form="paper"` (default; Ko & Gu eqs. 14–15):
      ŝ enters only the negative-selection condition — k is kept if
      ŝ_ik + ε > min_{j∈P_i} s_ij (eq. 14); positive mining is eq. 5 unchanged
      (original s_ik) and ℓ_i uses the original s_ik of the kept negatives
      (eq. 15).
    - `ee_form="pooled"` (the rule of the other pair-based losses): ŝ_ik replaces s_ik in both
      mining conditions and in ℓ_i. Under class pooling ŝ is constant over a
      class pair, so MS's per-pair weighting collapses onto one value per
      class pair.

    Without EE (or with `n_points=0`) both forms are eqs. 4–6.

    Defaults α = 2, β = 40, λ = 0.5, ε = 0.1 are Roth et al.'s (ICML 2020,
    supplementary A.1), like the rest of the loss zoo's; the MS paper reports
    β = 50.

    Args:
        alpha: α, scale of the positive term.
        beta: β, scale of the negative term.
        base: λ, the similarity offset.
        epsilon: ε of the pair mining.
        normalize: L2-normalise embeddings first (default True).
        expansion: `tfdml.EmbeddingExpansion` or None.
        ee_form: "paper" (EE eqs. 14–15) or "pooled".
        plus_one: True (default): "1 +" inside the logs (Wang et al. eq. 4);
            False: the EE paper's printed eqs. 6 and 15 without it.

    Example (orthonormal points: every similarity is 0 and every pair is kept;
    each of the two anchors of class 0 adds ½ log(1 + e) + (1/50) log(1 + e^{−25}),
    the lone negative adds 0):

    >>> loss = tfdml.losses.MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5)
    >>> value = loss([0, 0, 1], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    >>> round(float(value), 4)
    0.4378
    """

    config_args = ("alpha", "beta", "base", "epsilon", "normalize", "expansion", "ee_form", "plus_one")
    supports_expansion = True
    default_pooling = "class"

    def __init__(self, alpha=2.0, beta=40.0, base=0.5, epsilon=0.1, normalize=True, expansion=None, ee_form="paper",
                 plus_one=True, name="multi_similarity_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, **kwargs)
        self.alpha = check_number(alpha, "alpha", greater_than=0.0)
        self.beta = check_number(beta, "beta", greater_than=0.0)
        self.base = check_number(base, "base")
        self.epsilon = check_number(epsilon, "epsilon", 0.0)
        self.normalize = bool(normalize)
        self.ee_form = check_choice(ee_form, "ee_form", EE_FORMS)
        if not isinstance(plus_one, bool):
            raise ValueError(f"plus_one must be True or False, got {plus_one!r}.")
        self.plus_one = plus_one

    def compute(self, labels, embeddings):
        """The loss of the batch: each anchor's positive and negative terms over the pairs the
        similarity-based mining keeps, averaged over anchors."""
        m = self.pair_matrices(normalize_if(embeddings, self.normalize), labels, "cosine", self.normalize)
        # "paper": the pooled ŝ only selects negatives (eq. 14); "pooled": it replaces s everywhere.
        loss_sim = m.positive if self.ee_form == "paper" else m.negative  # negative-pair similarity in ℓ and eq. 5
        big = tf.constant(1e4, m.positive.dtype)
        pos_sim, selection_sim = tf.stop_gradient(m.positive), tf.stop_gradient(m.negative)
        min_pos = tf.reduce_min(tf.where(m.positive_mask, pos_sim, big), axis=1, keepdims=True)
        max_neg = tf.reduce_max(tf.where(m.negative_mask, tf.stop_gradient(loss_sim), -big), axis=1, keepdims=True)
        keep_neg = tf.logical_and(m.negative_mask, selection_sim + self.epsilon > min_pos)
        keep_pos = tf.logical_and(m.positive_mask, pos_sim - self.epsilon < max_neg)
        pos_lse = masked_logsumexp(-self.alpha * (m.positive - self.base), keep_pos, axis=1)
        neg_lse = masked_logsumexp(self.beta * (loss_sim - self.base), keep_neg, axis=1)
        if self.plus_one:  # log(1 + Σ exp(z)) = softplus(logsumexp(z)); empty sums give softplus(-1e4) = 0.
            pos_term, neg_term = tf.nn.softplus(pos_lse), tf.nn.softplus(neg_lse)
        else:  # log Σ exp(z) (EE eqs. 6, 15 as printed); an empty sum adds 0
            pos_term = tf.where(tf.reduce_any(keep_pos, axis=1), pos_lse, tf.zeros_like(pos_lse))
            neg_term = tf.where(tf.reduce_any(keep_neg, axis=1), neg_lse, tf.zeros_like(neg_lse))
        per_anchor = pos_term / self.alpha + neg_term / self.beta
        return tf.reduce_mean(per_anchor)
