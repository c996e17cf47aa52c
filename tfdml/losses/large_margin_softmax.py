"""Large-margin softmax, L-Softmax (Liu et al., ICML 2016), and its multiplicative angular margin ψ."""
import math

import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_int, check_number
from tfdml.losses.base import check_class_labels
from tfdml.losses.proxies import ProxyLoss, softmax_cross_entropy
from tfdml.losses.registry import register


def angular_margin(cosine, margin):
    """ψ(θ) = (−1)^k cos(mθ) − 2k for θ ∈ [kπ/m, (k+1)π/m], k ∈ {0, …, m−1} (L-Softmax eq. 6,
    SphereFace's ψ), as a function of cos θ.

    cos(mθ) is the Chebyshev polynomial T_m(cos θ) (the multiple-angle formula, L-Softmax eq. 7),
    computed by the recurrence T_{n+1} = 2c·T_n − T_{n−1}, so there is no arccos and the gradient
    is finite everywhere; k counts the boundaries jπ/m (j = 1 … m−1) that θ has passed
    (θ > jπ/m ⇔ cos θ < cos(jπ/m)). ψ and its derivative are continuous at those boundaries, so
    the side a boundary is assigned to does not matter.

    Args:
        cosine: cos θ, any shape (clipped to [−1, 1]).
        margin: m, a positive int.

    Returns:
        ψ(θ), same shape and dtype as `cosine`.
    """
    c = tf.clip_by_value(cosine, -1.0, 1.0)
    previous, current = tf.ones_like(c), c
    for _ in range(margin - 1):
        previous, current = current, 2.0 * c * current - previous
    k = tf.zeros_like(c)
    for j in range(1, margin):
        k += tf.cast(c < math.cos(j * math.pi / margin), c.dtype)
    sign = 1.0 - 2.0 * tf.math.floormod(k, 2.0)
    return sign * current - 2.0 * k


def exact_norms(x):
    """(‖x_i‖, x_i / ‖x_i‖) of the rows of `x`, exact for finite rows of any magnitude.

    Computed from x_i / max|x_i| (a stop-gradient per row, so ‖x_i‖² never overflows or
    underflows); a zero row has norm 0 and direction 0, with zero gradients.
    """
    peak = tf.stop_gradient(tf.reduce_max(tf.abs(x), axis=-1, keepdims=True))
    peak = tf.where(peak > 0, peak, tf.ones_like(peak))
    scaled = x / peak
    squared = tf.reduce_sum(tf.square(scaled), axis=-1, keepdims=True)
    norms = peak * distances.safe_sqrt(squared)
    return norms[..., 0], scaled * distances.inverse_norm(squared)


class MultiplicativeMarginLoss(ProxyLoss):
    """Base of L-Softmax and SphereFace: cross-entropy on the logits

        f_c = s·‖W_c‖‖x‖ cos θ_c (c ≠ y),   f_y = s·‖W_y‖‖x‖ (λ cos θ_y + ψ(θ_y)) / (1 + λ),

    with ‖W_c‖ = 1 when `normalize_weights` (SphereFace). Logits saturate at ±(dtype max / 4)
    (zero gradient beyond), so any finite embedding gives a finite loss.
    """

    normalize_weights = False

    def __init__(self, num_classes, margin, scale, softening, lr_multiplier, seed, name, **kwargs):
        super().__init__(num_classes, 1, lr_multiplier, seed, name=name, **kwargs)
        self.margin = check_int(margin, "margin", minimum=1)
        self.scale = check_number(scale, "scale", greater_than=0.0)
        self.softening = check_number(softening, "softening", minimum=0.0)

    def compute(self, labels, embeddings):
        """The loss of the batch: cross-entropy on the logits with the multiplicative angular margin on the true
        class."""
        labels = check_class_labels(labels, self.num_classes)
        weights = tf.cast(self.state_layer.value, embeddings.dtype)
        x_norms, unit_x = exact_norms(embeddings)
        w_norms, unit_w = exact_norms(weights)
        cosine = tf.clip_by_value(tf.matmul(unit_x, unit_w, transpose_b=True), -1.0, 1.0)
        cos_true = tf.gather(cosine, labels, axis=1, batch_dims=1)
        target = (self.softening * cos_true + angular_margin(cos_true, self.margin)) / (1.0 + self.softening)
        true = tf.one_hot(labels, self.num_classes, dtype=cosine.dtype)
        angular = cosine + true * (target - cos_true)[:, None]
        magnitudes = x_norms[:, None] if self.normalize_weights else x_norms[:, None] * w_norms[None, :]
        limit = embeddings.dtype.max / 4.0
        logits = tf.clip_by_value(self.scale * magnitudes * angular, -limit, limit)
        return softmax_cross_entropy(logits, labels)


@register("large_margin_softmax")
class LargeMarginSoftmaxLoss(MultiplicativeMarginLoss):
    """Large-margin softmax loss, L-Softmax (Liu et al., "Large-Margin Softmax Loss for
    Convolutional Neural Networks", ICML 2016, eqs. 5–7).

    Class weights W_c (no bias) and the raw embedding x, with θ_c the angle between them:

        ℓ = −log( e^{‖W_y‖‖x‖ψ(θ_y)} / (e^{‖W_y‖‖x‖ψ(θ_y)} + Σ_{c≠y} e^{‖W_c‖‖x‖cos θ_c}) )

        ψ(θ) = (−1)^k cos(mθ) − 2k,  θ ∈ [kπ/m, (k+1)π/m],  k ∈ {0, …, m−1}

    loss = mean of ℓ over the batch. cos(mθ) is the multiple-angle polynomial in cos θ (eq. 7);
    m = 1 is the softmax without bias. The default m = 4 is the largest margin of the paper's
    experiments (and pytorch-metric-learning's default).

    Options beyond the equation:

    - `scale` s multiplies every logit (pytorch-metric-learning's `scale`; s = 1, the default,
      is the paper's loss, and `LargeMarginSoftmaxLoss(margin=m, scale=s)` equals PML's
      `LargeMarginSoftmaxLoss(margin=m, scale=s)`).
    - `softening` λ replaces the target logit by ‖W_y‖‖x‖(λ cos θ_y + ψ(θ_y)) / (1 + λ), the
      optimisation aid the paper describes for training (and its Caffe code implements),
      where λ starts very large and is reduced gradually over the iterations. Here λ is a
      constant; 0 (the default) is eq. 5. pytorch-metric-learning has no λ.

    The class weights are loss state (`state_layer`, shape (num_classes, D)), initialised
    N(0, 1/D). ‖x‖, ‖W_c‖ and the cosines are computed from x / max|x_i|, so they are exact at
    any magnitude; logits saturate at ±(dtype max / 4). The loss is not scale invariant: it
    depends on ‖x‖ and ‖W_c‖. No Embedding Expansion.

    Args:
        num_classes: number of training classes (labels in [0, num_classes)).
        margin: m, the integer multiplicative angular margin.
        scale: s, multiplier of the logits.
        softening: λ ≥ 0, weight of cos θ_y blended into the target logit.
        lr_multiplier: learning-rate multiplier of the class weights.
        seed: seed of the weight initialisation.

    Example (m = 2; x = (1, 1) is at θ_y = π/4 from W_0 = (2, 0), so ψ = cos(π/2) = 0 and the
    target logit is 0, against W_1ᵀx = −2):

    >>> loss = tfdml.losses.LargeMarginSoftmaxLoss(num_classes=2, margin=2)
    >>> loss.build_state(2).assign_value([[2.0, 0.0], [0.0, -2.0]])
    >>> round(float(loss([0], [[1.0, 1.0]])), 4)  # log(1 + e^{−2})
    0.1269
    """

    config_args = ("num_classes", "margin", "scale", "softening", "lr_multiplier", "seed")

    def __init__(self, num_classes, margin=4, scale=1.0, softening=0.0, lr_multiplier=1.0, seed=None,
                 name="large_margin_softmax_loss", **kwargs):
        super().__init__(num_classes, margin, scale, softening, lr_multiplier, seed, name, **kwargs)
