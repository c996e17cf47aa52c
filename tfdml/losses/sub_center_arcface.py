"""Sub-center ArcFace (Deng et al., ECCV 2020)."""
import math

import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_number
from tfdml.losses.proxies import ProxyLoss, softmax_cross_entropy
from tfdml.losses.registry import register


@register("sub_center_arcface")
class SubCenterArcFaceLoss(ProxyLoss):
    """Sub-center ArcFace (Deng et al., "Sub-center ArcFace: Boosting Face
    Recognition by Large-Scale Noisy Web Faces", ECCV 2020, eqs. 1–2).

    Each class c has K = `proxies_per_class` L2-normalised sub-centres w_c^k
    (rows c·K … c·K + K − 1 of the proxies). With x̂ the normalised embedding,
    the class cosine is the largest over its sub-centres,

        cos θ_c = max_k x̂ᵀw_c^k,

    and the loss is ArcFace's (Deng et al., CVPR 2019, eq. 3) on these cosines:

        ℓ = −log( e^{s·cos(θ_y + m)} / (e^{s·cos(θ_y + m)} + Σ_{c≠y} e^{s·cos θ_c}) )

    loss = mean of ℓ over the batch. cos(θ_y + m) = cos θ_y cos m − sin θ_y sin m
    with sin θ_y = √(1 − cos²θ_y) (zero gradient where 1 − cos²θ_y < 1e-12). The
    defaults K = 3, s = 64, m = 0.5 are the paper's. `monotonic=True` replaces
    cos(θ_y + m) by cos θ_y − m·sin m where θ_y > π − m (the official InsightFace
    code and pytorch-metric-learning's `SubCenterArcFaceLoss`, whose margin is in
    degrees: 28.6° ≈ 0.4992 rad); the default follows the equation. No Embedding
    Expansion.

    Args:
        num_classes: number of training classes (labels in [0, num_classes)).
        proxies_per_class: K, sub-centres of each class.
        margin: m, radians.
        scale: s, the logit scale.
        monotonic: the InsightFace / PML fallback beyond θ_y = π − m.
        lr_multiplier: learning-rate multiplier of the sub-centres.
        seed: seed of the sub-centre initialisation.

    Example (two sub-centres per class; the embedding is at θ = 0 from the
    second sub-centre of class 0, so its target logit is s·cos(π/3) = 1 against
    s·cos(π/2) = 0 for class 1):

    >>> import math
    >>> loss = tfdml.losses.SubCenterArcFaceLoss(num_classes=2, proxies_per_class=2, margin=math.pi / 3, scale=2.0)
    >>> loss.build_state(2).assign_value([[0.0, -1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    >>> round(float(loss([0], [[2.0, 0.0]])), 4)  # log(1 + e^{−1})
    0.3133
    """

    config_args = ("num_classes", "proxies_per_class", "margin", "scale", "monotonic", "lr_multiplier", "seed")

    def __init__(self, num_classes, proxies_per_class=3, margin=0.5, scale=64.0, monotonic=False, lr_multiplier=1.0,
                 seed=None, name="sub_center_arcface_loss", **kwargs):
        super().__init__(num_classes, proxies_per_class, lr_multiplier, seed, name=name, **kwargs)
        self.margin = check_number(margin, "margin", 0.0)
        self.scale = check_number(scale, "scale", greater_than=0.0)
        self.monotonic = bool(monotonic)

    def proxy_loss(self, labels, unit_embeddings, unit_proxies):
        """ArcFace on each class's nearest sub-center: cross-entropy of the scaled cosines with the angular margin."""
        sims = tf.matmul(unit_embeddings, unit_proxies, transpose_b=True)
        cosine = tf.reduce_max(tf.reshape(sims, [-1, self.num_classes, self.proxies_per_class]), axis=2)
        cosine = tf.clip_by_value(cosine, -1.0, 1.0)
        cos_true = tf.gather(cosine, labels, axis=1, batch_dims=1)
        sin_true = distances.safe_sqrt(1.0 - tf.square(cos_true))
        with_margin = cos_true * math.cos(self.margin) - sin_true * math.sin(self.margin)
        if self.monotonic:  # θ_y ≤ π − m  ⇔  cos θ_y ≥ −cos m
            fallback = cos_true - self.margin * math.sin(self.margin)
            with_margin = tf.where(cos_true >= -math.cos(self.margin), with_margin, fallback)
        true = tf.one_hot(labels, self.num_classes, dtype=cosine.dtype)
        logits = self.scale * (cosine + true * (with_margin - cos_true)[:, None])
        return softmax_cross_entropy(logits, labels)
