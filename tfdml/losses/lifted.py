"""Lifted structure loss (Oh Song et al. 2016) in the form of EE eqs. 2 and 12."""
import tensorflow as tf

from tfdml.checks import check_choice, check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_logsumexp, masked_mean, normalize_if
from tfdml.losses.pairs import EE_FORMS
from tfdml.losses.registry import register


@register("lifted")
class LiftedStructureLoss(MetricLoss):
    """Lifted structure loss (Oh Song et al., CVPR 2016; Ko & Gu, CVPR 2020 eqs. 2, 12).

    Euclidean distances d between (by default L2-normalised) embeddings; P is the
    set of ordered positive pairs (i, j), i ≠ j, y_i = y_j; N_i the samples of
    other classes than i.

    Without Embedding Expansion (EE eq. 2):

        J_ij = log( Σ_{k∈N_i} exp(m − d_ik) + Σ_{k∈N_j} exp(m − d_jk) ) + d_ij
        loss = 1/(2|P|) Σ_{(i,j)∈P} [J_ij]_+²

    With Embedding Expansion (`ee_form="paper"`, the default: Ko & Gu, CVPR
    2020, eq. 12), with d̂_ik the EE-pooled distance of the negative pair
    (i, k) (minimum over the pools; default pooling "class"):

        Ĵ_ij = log Σ_{k∈N_i} exp(m − d̂_ik) + d_ij
        loss = 1/|P| Σ_{(i,j)∈P} [Ĵ_ij]_+²

    (one sum, no ½: under class pooling Σ_k exp(m − d̂_ik) = Σ_k exp(m − d̂_jk),
    so eq. 2 on pooled distances would equal eq. 12 with log 2 inside the hinge
    and a factor ½). `ee_form="pooled"` keeps eq. 2 with every d_ik, d_jk
    replaced by d̂_ik, d̂_jk (the rule of the other pair-based losses).
    Without EE (or with `n_points=0`) both forms are eq. 2.

    Pairs whose anchors have no negative in the batch contribute [−∞]_+ = 0.
    No positive pair → loss 0.

    Args:
        margin: m.
        normalize: L2-normalise embeddings first (default True).
        expansion: `tfdml.EmbeddingExpansion` or None.
        ee_form: "paper" (EE eq. 12) or "pooled" (eq. 2 on pooled distances).

    Example (three orthonormal points, every distance √2: for both ordered
    positive pairs J = log(2·e^{1−√2}) + √2 = 1 + log 2; with EE (n = 1) the
    synthetic point (1, 1, 0)/√2 of class 0 is also √2 from (0, 0, 1), so
    d̂ = √2 and Ĵ = (1 − √2) + √2 = 1):

    >>> loss = tfdml.losses.LiftedStructureLoss(margin=1.0)
    >>> labels, embeddings = [0, 0, 1], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> round(float(loss(labels, embeddings)), 4)  # ½ (1 + log 2)²
    1.4334
    >>> loss = tfdml.losses.LiftedStructureLoss(margin=1.0, expansion=tfdml.EmbeddingExpansion(1))
    >>> round(float(loss(labels, embeddings)), 4)  # mean of 1² over both pairs
    1.0
    """

    config_args = ("margin", "normalize", "expansion", "ee_form")
    supports_expansion = True
    default_pooling = "class"

    def __init__(self, margin=1.0, normalize=True, expansion=None, ee_form="paper", name="lifted_structure_loss",
                 **kwargs):
        super().__init__(name=name, expansion=expansion, **kwargs)
        self.margin = check_number(margin, "margin")
        self.normalize = bool(normalize)
        self.ee_form = check_choice(ee_form, "ee_form", EE_FORMS)

    def compute(self, labels, embeddings):
        """The loss of the batch: the squared hinge of the lifted structure term per positive pair
        (EE eq. 12 when expanding with `ee_form="paper"`, else eq. 2), averaged over positive pairs."""
        m = self.pair_matrices(normalize_if(embeddings, self.normalize), labels, "euclidean", self.normalize)
        neg_lse = masked_logsumexp(self.margin - m.negative, m.negative_mask, axis=1)  # (B,)
        if self.expanding and self.ee_form == "paper":  # EE eq. 12
            return masked_mean(tf.square(tf.nn.relu(neg_lse[:, None] + m.positive)), m.positive_mask)
        j = tf.experimental.numpy.logaddexp(neg_lse[:, None], neg_lse[None, :]) + m.positive  # EE eq. 2
        return masked_mean(0.5 * tf.square(tf.nn.relu(j)), m.positive_mask)
