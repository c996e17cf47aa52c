"""Ranked list loss (Wang et al., CVPR 2019)."""
import tensorflow as tf

from tfdml.checks import check_choice, check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import normalize_if
from tfdml.losses.registry import register

FORMS = ("paper", "pml")
#: pytorch-metric-learning's per-entry term in the weight sums of its `RankedListLoss`.
_PML_EPSILON = 1e-5


def _weighted_mean(values, logits, mask):
    """Σ_mask softmax_mask(logits) · values per row; 0 for a row with an empty mask.

    The weights e^{logits} / Σ_mask e^{logits} are constants in the gradient."""
    peak = tf.reduce_max(tf.where(mask, logits, tf.zeros_like(logits)), axis=1, keepdims=True)
    weights = tf.where(mask, tf.exp(tf.minimum(logits - peak, 0.0)), tf.zeros_like(logits))
    weights = tf.stop_gradient(tf.math.divide_no_nan(weights, tf.reduce_sum(weights, axis=1, keepdims=True)))
    return tf.reduce_sum(tf.where(mask, weights * values, tf.zeros_like(values)), axis=1)


@register("ranked_list")
class RankedListLoss(MetricLoss):
    """Ranked list loss, RLL (Wang et al., "Ranked List Loss for Deep Metric
    Learning", CVPR 2019: the pairwise margin loss, the mining of the
    non-trivial positives and negatives, the weighted set losses and their
    sum, as printed there; the equation numbers could not be checked offline).

    On Euclidean distances d_ij of L2-normalised embeddings, every sample i is
    a query; with the boundary α on negatives and the margin m between the
    positive and the negative sets:

        P*_i = {j ≠ i, y_j = y_i : d_ij > α − m}      (non-trivial positives)
        N*_i = {j, y_j ≠ y_i : d_ij < α}              (non-trivial negatives)
        L_P(i) = Σ_{j∈P*_i} w⁺_ij (d_ij − (α − m)) / Σ_{j∈P*_i} w⁺_ij,
                 w⁺_ij = e^{T_p (d_ij − (α − m))}
        L_N(i) = Σ_{j∈N*_i} w⁻_ij (α − d_ij) / Σ_{j∈N*_i} w⁻_ij,
                 w⁻_ij = e^{T_n (α − d_ij)}
        loss = (1/B) Σ_i (L_P(i) + λ L_N(i))

    (an empty set contributes 0). T_p = 0 gives every non-trivial positive the
    same weight — the CVPR paper's L_P, a plain mean ("RLL-Simpler"); T_p > 0
    is the positive weighting of the extended version. The weights are
    constants in the gradient, as in the authors' released Caffe layer.
    Defaults α = 1.2, m = 0.4 (α = 1 + m/2, pytorch-metric-learning's rule),
    T_n = 10, T_p = 0, λ = 1; the paper's printed values could not be checked
    offline (the authors' CUB-200 configuration uses α = 1.4, m = 0.2, T_n = 10,
    T_p = 0).

    `form="pml"` is pytorch-metric-learning's `RankedListLoss`:
    loss = (1/B) Σ_i ((1 − λ) L_P(i) + λ L_N(i)) (`balance` is its
    `imbalance`, default 0.5 there), each weight sum gets 1e-5 per batch entry
    (Σ_j (w_ij + 1e-5) over all B columns), the gradient flows through the
    weights, and negatives at distance exactly 0 are not counted.

    Embedding Expansion: every negative distance d_ij (in N*_i, L_N and w⁻)
    is the EE-pooled one (the minimum over the pools; default pooling
    "class").

    Args:
        margin: m, the margin between the positive and the negative sets.
        alpha: α, the distance beyond which negatives are trivial.
        t_n: T_n, the temperature (multiplier) of the negatives' weights.
        t_p: T_p, the temperature (multiplier) of the positives' weights.
        balance: λ, the weight of L_N.
        normalize: L2-normalise the embeddings first.
        form: "paper" or "pml".
        expansion: `tfdml.EmbeddingExpansion` or None.

    Example (α = 1.5, m = ½, T_n = 0: the positive pair has d = √2 > α − m = 1,
    each of its two samples adds L_P = √2 − 1; the negative pair (1, 2) has
    d = √2 < α and adds L_N = 1.5 − √2 to both of its samples; the pair (0, 2)
    has d = 2, trivial):

    >>> loss = tfdml.losses.RankedListLoss(margin=0.5, alpha=1.5, t_n=0.0)
    >>> value = loss([0, 0, 1], [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> round(float(value), 4)  # (2 (√2 − 1) + 2 (1.5 − √2)) / 3
    0.3333
    """

    config_args = ("margin", "alpha", "t_n", "t_p", "balance", "normalize", "form", "expansion")
    supports_expansion = True
    default_pooling = "class"

    def __init__(self, margin=0.4, alpha=1.2, t_n=10.0, t_p=0.0, balance=1.0, normalize=True, form="paper",
                 expansion=None, name="ranked_list_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, **kwargs)
        self.margin = check_number(margin, "margin", minimum=0.0)
        self.alpha = check_number(alpha, "alpha")
        self.t_n = check_number(t_n, "t_n", minimum=0.0)
        self.t_p = check_number(t_p, "t_p", minimum=0.0)
        self.balance = check_number(balance, "balance", minimum=0.0)
        if not isinstance(normalize, bool):
            raise ValueError(f"normalize must be True or False, got {normalize!r}.")
        self.normalize = normalize
        self.form = check_choice(form, "form", FORMS)
        if self.form == "pml" and self.balance > 1.0:
            raise ValueError(f"balance must be in [0, 1] with form='pml' (its imbalance), got {balance!r}.")

    def compute(self, labels, embeddings):
        """The loss of the batch: the weighted losses of the mined non-trivial positives and negatives, summed and
        averaged over anchors."""
        m = self.pair_matrices(normalize_if(embeddings, self.normalize), labels, "euclidean",
                               normalized=self.normalize)
        boundary = self.alpha - self.margin
        positives = tf.logical_and(m.positive_mask, m.positive > boundary)
        negatives = tf.logical_and(m.negative_mask, m.negative < self.alpha)
        pos_excess = m.positive - boundary  # > 0 on the mined positives
        neg_excess = self.alpha - m.negative  # > 0 on the mined negatives
        if self.form == "paper":
            loss_p = _weighted_mean(pos_excess, self.t_p * pos_excess, positives)
            loss_n = _weighted_mean(neg_excess, self.t_n * neg_excess, negatives)
            return tf.reduce_mean(loss_p + self.balance * loss_n)
        negatives = tf.logical_and(negatives, m.negative > 0.0)
        loss_p = self._pml_weighted_mean(pos_excess, self.t_p, positives)
        loss_n = self._pml_weighted_mean(neg_excess, self.t_n, negatives)
        return tf.reduce_mean((1.0 - self.balance) * loss_p + self.balance * loss_n)

    @staticmethod
    def _pml_weighted_mean(excess, temperature, mask):
        """Σ_mask w·excess / Σ_all (w + 1e-5), w = e^{T·excess} on the mask and 0 elsewhere."""
        safe = tf.where(mask, excess, tf.zeros_like(excess))
        weights = tf.where(mask, tf.exp(temperature * safe), tf.zeros_like(safe))
        columns = tf.cast(tf.shape(excess)[1], excess.dtype)
        denominator = tf.reduce_sum(weights, axis=1) + _PML_EPSILON * columns
        return tf.reduce_sum(weights * safe, axis=1) / denominator
