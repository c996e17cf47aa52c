"""SphereFace / angular softmax, A-Softmax (Liu et al., CVPR 2017)."""
from tfdml.losses.large_margin_softmax import MultiplicativeMarginLoss
from tfdml.losses.registry import register


@register("sphereface")
class SphereFaceLoss(MultiplicativeMarginLoss):
    """Angular softmax loss, A-Softmax (Liu et al., "SphereFace: Deep Hypersphere Embedding for
    Face Recognition", CVPR 2017, §3.2, the A-Softmax loss L_ang).

    L-Softmax's multiplicative angular margin with L2-normalised class weights ŵ_c (‖W_c‖ = 1,
    no bias) and the raw embedding x, θ_c the angle between them:

        ℓ = −log( e^{‖x‖ψ(θ_y)} / (e^{‖x‖ψ(θ_y)} + Σ_{c≠y} e^{‖x‖cos θ_c}) )

        ψ(θ) = (−1)^k cos(mθ) − 2k,  θ ∈ [kπ/m, (k+1)π/m],  k ∈ {0, …, m−1}

    loss = mean of ℓ over the batch. cos(mθ) is the multiple-angle polynomial in cos θ. The
    default m = 4 is the paper's ("in practice we set m to 4").

    Options beyond the equation:

    - `scale` s multiplies every logit (pytorch-metric-learning's `scale`; s = 1, the default,
      is the paper's loss, and `SphereFaceLoss(margin=m, scale=s)` equals PML's
      `SphereFaceLoss(margin=m, scale=s)`, which also normalises the class weights).
    - `softening` λ replaces the target logit by ‖x‖(λ cos θ_y + ψ(θ_y)) / (1 + λ), the
      optimisation aid of the official Caffe code (λ annealed from 1000 down to λ_min = 5 over
      the iterations). Here λ is a constant; 0 (the default) is the printed loss.
      pytorch-metric-learning has no λ.

    The class weights are loss state (`state_layer`, shape (num_classes, D)), initialised
    N(0, 1/D) and normalised in the loss. ‖x‖ and the cosines are computed from x / max|x_i|, so
    they are exact at any magnitude; logits saturate at ±(dtype max / 4). The loss depends on
    ‖x‖ (not scale invariant). No Embedding Expansion.

    Args:
        num_classes: number of training classes (labels in [0, num_classes)).
        margin: m, the integer multiplicative angular margin.
        scale: s, multiplier of the logits.
        softening: λ ≥ 0, weight of cos θ_y blended into the target logit.
        lr_multiplier: learning-rate multiplier of the class weights.
        seed: seed of the weight initialisation.

    Example (m = 2; x = (1, 1), ‖x‖ = √2, is at θ_y = π/4 from class 0, so ψ = cos(π/2) = 0,
    and at cos θ_1 = −1/√2 from class 1: logits 0 and −1):

    >>> loss = tfdml.losses.SphereFaceLoss(num_classes=2, margin=2)
    >>> loss.build_state(2).assign_value([[3.0, 0.0], [0.0, -5.0]])
    >>> round(float(loss([0], [[1.0, 1.0]])), 4)  # log(1 + e^{−1})
    0.3133
    """

    config_args = ("num_classes", "margin", "scale", "softening", "lr_multiplier", "seed")
    normalize_weights = True

    def __init__(self, num_classes, margin=4, scale=1.0, softening=0.0, lr_multiplier=1.0, seed=None,
                 name="sphereface_loss", **kwargs):
        super().__init__(num_classes, margin, scale, softening, lr_multiplier, seed, name, **kwargs)
