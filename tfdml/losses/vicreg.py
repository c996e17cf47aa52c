"""VICReg, variance-invariance-covariance regularisation (Bardes, Ponce & LeCun, ICLR 2022)."""
import numpy as np
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_choice, check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.registry import register

REDUCTIONS = ("sum", "mean")


@register("vicreg")
class VICRegLoss(MetricLoss):
    """VICReg loss (Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance
    Regularization for Self-Supervised Learning", ICLR 2022, eqs. 1–6).

    **Views from labels.** The two samples that share a label are the two views
    of one image: every label must occur exactly twice, and a batch needs at
    least two such pairs (a `ValueError` otherwise; in a `tf.function` a
    `tf.errors.InvalidArgumentError`, and under XLA, which drops assertions,
    the loss is NaN). The first occurrences of the labels form Z, their second
    occurrences Z' (row i of Z' is the partner of row i of Z). A batch of
    singletons, or of one class, is therefore rejected; with
    `tfdml.data.self_supervised_pipeline` every image appears as two views
    labelled by its instance id.

    With n pairs of d-dimensional embeddings z_i, z'_i (no normalisation):

    - variance (eqs. 1–2), with zʲ the j-th dimension over the batch and
      Var its unbiased variance:

          v(Z) = 1/d Σ_j max(0, γ − √(Var(zʲ) + ε))

    - covariance (eqs. 3–4), with z̄ the batch mean:

          C(Z) = 1/(n−1) Σ_i (z_i − z̄)(z_i − z̄)ᵀ,   c(Z) = 1/d Σ_{j≠k} C(Z)_{jk}²

    - invariance (eq. 5):

          s(Z, Z') = 1/n Σ_i ‖z_i − z'_i‖²

    - loss (eq. 6):

          ℓ = λ s(Z, Z') + μ [v(Z) + v(Z')] + ν [c(Z) + c(Z')]

    The defaults λ = μ = 25, ν = 1, γ = 1, ε = 10⁻⁴ are the paper's (and PML's).
    The paper could not be re-read offline when this loss was written: the
    equation numbers and printed forms above are quoted from memory of it
    (eq. 5 without a 1/d, eq. 6 without a 1/2), and the "mean" options follow
    PML's code, which the tests match exactly.

    Two named options select the form of the official code and of
    pytorch-metric-learning's `VICRegLoss` (whose call takes the two views as
    `embeddings` and `ref_emb`):

    - `invariance_reduction="mean"`: s is also averaged over the d
      dimensions, `mse_loss(z, z')` of the paper's Algorithm 1 (eq. 5 / d);
      "sum" (default) is eq. 5.
    - `variance_reduction="mean"`: the variance terms are averaged over the
      two views, μ [v(Z) + v(Z')] / 2, as the official code and PML do;
      "sum" (default) is eq. 6 and Algorithm 1.

    PML's `VICRegLoss(invariance_lambda=λ, variance_mu=μ, covariance_v=ν, eps=ε)`
    equals `VICRegLoss(λ, μ, ν, epsilon=ε, invariance_reduction="mean",
    variance_reduction="mean")` (γ = 1). No Embedding Expansion (there are no
    pairs of different images to expand).

    Embeddings of any finite magnitude give a finite loss and gradient: the
    invariance and covariance terms (homogeneous of degree 2 and 4) are exact
    below a quarter of the dtype's maximum and saturate there above, their
    gradient entries likewise.

    Args:
        invariance_weight: λ.
        variance_weight: μ.
        covariance_weight: ν.
        gamma: γ, the target standard deviation of every dimension.
        epsilon: ε > 0 inside the square root.
        invariance_reduction: "sum" (eq. 5) or "mean" (over the dimensions too).
        variance_reduction: "sum" (eq. 6) or "mean" (over the two views).

    Returns (when called):
        The scalar loss ℓ of the batch.

    Example (Z = [[2, 0], [0, 0]], Z' = [[3, 0], [1, 0]]: s = (1 + 1)/2 = 1;
    dimension 0 has standard deviation √(2 + ε) > 1 in both views,
    dimension 1 has √ε = 0.01, so v(Z) = v(Z') = 0.99 / 2; dimension 1 is
    constant, so C is diagonal and c = 0):

    >>> loss = tfdml.losses.VICRegLoss()
    >>> value = loss([0, 1, 0, 1], [[2.0, 0.0], [0.0, 0.0], [3.0, 0.0], [1.0, 0.0]])
    >>> round(float(value), 4)  # 25 · 1 + 25 · (0.495 + 0.495)
    49.75
    """

    config_args = ("invariance_weight", "variance_weight", "covariance_weight", "gamma", "epsilon",
                   "invariance_reduction", "variance_reduction")

    def __init__(self, invariance_weight=25.0, variance_weight=25.0, covariance_weight=1.0, gamma=1.0,
                 epsilon=1e-4, invariance_reduction="sum", variance_reduction="sum", name="vicreg_loss",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.invariance_weight = check_number(invariance_weight, "invariance_weight", minimum=0.0)
        self.variance_weight = check_number(variance_weight, "variance_weight", minimum=0.0)
        self.covariance_weight = check_number(covariance_weight, "covariance_weight", minimum=0.0)
        self.gamma = check_number(gamma, "gamma", minimum=0.0)
        self.epsilon = check_number(epsilon, "epsilon", greater_than=0.0)
        self.invariance_reduction = check_choice(invariance_reduction, "invariance_reduction", REDUCTIONS)
        self.variance_reduction = check_choice(variance_reduction, "variance_reduction", REDUCTIONS)

    def _compute_any_batch(self, labels, embeddings):
        return super()._compute_any_batch(check_two_views(labels), embeddings)

    def compute(self, labels, embeddings):
        """The loss of the batch: the weighted invariance, variance and covariance terms of its two views; NaN for
        labels that are not pairs."""
        first, partner, valid = view_pairs(labels)
        x = embeddings
        dtype = x.dtype
        w = tf.cast(first, dtype)
        w_second = 1.0 - w
        n = tf.reduce_sum(w)
        dim = tf.cast(tf.shape(x)[1], dtype)
        invariance_scale = self.invariance_weight / n
        if self.invariance_reduction == "mean":
            invariance_scale = invariance_scale / dim

        def invariance(y, y_partner):
            return invariance_scale * tf.reduce_sum(w[:, None] * tf.square(y - y_partner))

        def covariance(y):
            return self.covariance_weight * (_off_diagonal_term(y, w) + _off_diagonal_term(y, w_second)) / dim

        value = (_saturating_homogeneous(lambda y: invariance(y, tf.gather(y, partner)), x, 2)
                 + _saturating_homogeneous(covariance, x, 4))
        variance = _variance_term(x, w, self.gamma, self.epsilon) + _variance_term(x, w_second, self.gamma,
                                                                                      self.epsilon)
        if self.variance_reduction == "mean":
            variance = variance / 2.0
        value = value + self.variance_weight * variance
        return tf.where(valid, value, tf.constant(np.nan, dtype))


def check_two_views(labels):
    """`labels`, checked to hold every label exactly twice and at least two pairs.

    Eagerly (and for a static batch size that cannot hold two pairs) this
    raises a `ValueError`; in graphs it adds a `tf.debugging` assertion (a
    no-op under XLA, where `VICRegLoss` returns NaN for such labels instead).
    """
    rows = labels.shape[0]
    if rows is not None and rows > 0 and (rows % 2 or rows < 4):
        raise ValueError(_two_views_message(f"a batch of {rows} rows"))
    if tf.executing_eagerly():
        values = labels.numpy()
        if values.size:
            _, counts = np.unique(values, return_counts=True)
            if (counts != 2).any():
                bad = ", ".join(f"{v}×{c}" for v, c in zip(*np.unique(values, return_counts=True)) if c != 2)
                raise ValueError(_two_views_message(f"label counts {bad[:200]}"))
        return labels
    counts = tf.reduce_sum(tf.cast(tf.equal(labels[:, None], labels[None, :]), tf.int32), axis=1)
    rows = tf.size(labels)
    ok = tf.logical_and(tf.reduce_all(tf.equal(counts, 2)), tf.logical_or(tf.equal(rows, 0), rows >= 4))
    check = tf.debugging.Assert(ok, [_two_views_message("labels that are not")])
    with tf.control_dependencies([check]):
        return tf.identity(labels)


def _two_views_message(what):
    return (f"VICRegLoss needs labels that pair the batch into two views per image: every label exactly "
            f"twice and at least two pairs; got {what}.")


def view_pairs(labels):
    """(first, partner, valid) for labels that occur twice each.

    first: bool (B,), the row is its label's first occurrence (a row of Z);
    partner: int (B,), the other row with the same label;
    valid: scalar bool, every label occurs exactly twice and there are ≥ 2 pairs.
    """
    same = tf.equal(labels[:, None], labels[None, :])
    rows = tf.shape(labels)[0]
    index = tf.range(rows)
    earlier = index[None, :] < index[:, None]
    first = tf.logical_not(tf.reduce_any(tf.logical_and(same, earlier), axis=1))
    other = tf.logical_and(same, tf.logical_not(tf.eye(rows, dtype=tf.bool)))
    partner = tf.argmax(tf.cast(other, tf.int32), axis=1, output_type=tf.int32)
    counts = tf.reduce_sum(tf.cast(same, tf.int32), axis=1)
    valid = tf.logical_and(tf.reduce_all(tf.equal(counts, 2)), rows >= 4)
    return first, partner, valid


def _weighted_centered(y, w):
    """Rows of `y` in the view `w` (0/1 weights) minus the view's mean; 0 outside it; and n − 1."""
    n = tf.reduce_sum(w)
    mean = tf.reduce_sum(w[:, None] * y, axis=0) / tf.maximum(n, 1.0)
    return w[:, None] * (y - mean), tf.maximum(n - 1.0, 1.0)


def _variance_term(x, w, gamma, epsilon):
    """v of the view `w` (eqs. 1–2); +inf variances (huge embeddings) give a 0 hinge with a 0 gradient."""
    centered, dof = _weighted_centered(x, w)
    variance = tf.reduce_sum(tf.square(centered), axis=0) / dof
    return tf.reduce_mean(tf.nn.relu(gamma - tf.sqrt(variance + epsilon)))


def _off_diagonal_term(y, w):
    """Σ_{j≠k} C_jk² of the view `w` (eqs. 3–4 without the 1/d)."""
    centered, dof = _weighted_centered(y, w)
    cov = tf.matmul(centered, centered, transpose_a=True) / dof
    off = cov * (1.0 - tf.eye(tf.shape(cov)[0], dtype=cov.dtype))
    return tf.reduce_sum(tf.square(off))


def _times_scale(value, scale, times):
    for _ in range(times):
        value = value * scale
    return value


def _saturating_homogeneous(term, x, degree):
    """`term(x)` for a function homogeneous of `degree` (term(s·y) = s^degree term(y)).

    Computed as s^degree · term(x / s) with s = max |x|, so nothing overflows
    inside; the value and every entry of its gradient s^(degree−1) ∇term(x / s)
    saturate at ±(dtype max / 4).
    """
    limit = x.dtype.max / 4.0

    @tf.custom_gradient
    def saturated(inputs):
        scale = distances.batch_scale(inputs)
        y = inputs / scale
        with tf.GradientTape() as tape:
            tape.watch(y)
            value = term(y)
        grad_y = tape.gradient(value, y)
        out = tf.clip_by_value(_times_scale(value, scale, degree), -limit, limit)

        def grad(upstream):
            return tf.clip_by_value(_times_scale(upstream * grad_y, scale, degree - 1), -limit, limit)

        return out, grad

    return saturated(tf.identity(x))
