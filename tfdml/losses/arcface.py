"""ArcFace (Deng et al., CVPR 2019)."""
import math

import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_number
from tfdml.losses.proxies import ProxyLoss, softmax_cross_entropy
from tfdml.losses.registry import register


@register("arcface")
class ArcFaceLoss(ProxyLoss):
    """Additive angular margin loss (Deng et al., "ArcFace", CVPR 2019, eq. 3;
    Roth et al., ICML 2020).

    With cos θ_c = x̂ᵀŵ_c (L2-normalised embedding and class weights), margin m
    in radians and scale s:

        ℓ = −log( e^{s·cos(θ_y + m)} / (e^{s·cos(θ_y + m)} + Σ_{c≠y} e^{s·cos θ_c}) )

    loss = mean of ℓ over the batch. cos(θ_y + m) is computed as
    cos θ_y·cos m − sin θ_y·sin m with sin θ_y = √(1 − cos²θ_y) (θ ∈ [0, π]);
    the square root has a zero gradient where 1 − cos²θ_y < 1e-12, so the
    gradient stays finite at θ_y = 0. As in the paper, θ_y + m is not clipped
    at π. No Embedding Expansion.

    Args:
        num_classes: number of training classes (labels in [0, num_classes)).
        margin: m, radians.
        scale: s, the logit scale.
        lr_multiplier: learning-rate multiplier of the class weights.
        seed: seed of the weight initialisation.

    Example (θ_y = 0, so the target logit is s·cos(π/3) = 1 against s·cos(π/2)
    = 0 for the other class):

    >>> import math
    >>> loss = tfdml.losses.ArcFaceLoss(num_classes=2, margin=math.pi / 3, scale=2.0)
    >>> loss.build_state(2).assign_value([[1.0, 0.0], [0.0, 3.0]])
    >>> round(float(loss([0], [[2.0, 0.0]])), 4)  # log(1 + e^{−1})
    0.3133
    """

    config_args = ("num_classes", "margin", "scale", "lr_multiplier", "seed")

    def __init__(self, num_classes, margin=0.5, scale=16.0, lr_multiplier=1.0, seed=None, name="arcface_loss",
                 **kwargs):
        super().__init__(num_classes, 1, lr_multiplier, seed, name=name, **kwargs)
        self.margin = check_number(margin, "margin", 0.0)
        self.scale = check_number(scale, "scale", greater_than=0.0)

    def proxy_loss(self, labels, unit_embeddings, unit_proxies):
        """Softmax cross-entropy of the scaled cosines, the true class's angle increased by `margin`."""
        cosine = tf.clip_by_value(tf.matmul(unit_embeddings, unit_proxies, transpose_b=True), -1.0, 1.0)
        cos_true = tf.gather(cosine, labels, axis=1, batch_dims=1)
        sin_true = distances.safe_sqrt(1.0 - tf.square(cos_true))
        with_margin = cos_true * math.cos(self.margin) - sin_true * math.sin(self.margin)
        true = tf.one_hot(labels, self.num_classes, dtype=cosine.dtype)
        logits = self.scale * (cosine + true * (with_margin - cos_true)[:, None])
        return softmax_cross_entropy(logits, labels)
