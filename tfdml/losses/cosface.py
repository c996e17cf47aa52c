"""CosFace / large-margin cosine loss (Wang et al., CVPR 2018)."""
import tensorflow as tf

from tfdml.checks import check_number
from tfdml.losses.proxies import ProxyLoss, softmax_cross_entropy
from tfdml.losses.registry import register


@register("cosface")
class CosFaceLoss(ProxyLoss):
    """Large-margin cosine loss, LMCL (Wang et al., "CosFace: Large Margin Cosine
    Loss for Deep Face Recognition", CVPR 2018, eq. 4).

    With cos θ_c = x̂ᵀŵ_c (L2-normalised embedding and class weights), margin m
    and scale s:

        ℓ = −log( e^{s (cos θ_y − m)} / (e^{s (cos θ_y − m)} + Σ_{c≠y} e^{s cos θ_c}) )

    loss = mean of ℓ over the batch. Defaults s = 64, m = 0.35 are the paper's
    (and pytorch-metric-learning's `CosFaceLoss`, which computes the same
    equation). No Embedding Expansion.

    Args:
        num_classes: number of training classes (labels in [0, num_classes)).
        margin: m, subtracted from the target cosine.
        scale: s, the logit scale.
        lr_multiplier: learning-rate multiplier of the class weights.
        seed: seed of the weight initialisation.

    Example (cosines 1 with the target class and 0 with the other; s = 2,
    m = ½: logits 1 and 0):

    >>> loss = tfdml.losses.CosFaceLoss(num_classes=2, margin=0.5, scale=2.0)
    >>> loss.build_state(2).assign_value([[1.0, 0.0], [0.0, 3.0]])
    >>> round(float(loss([0], [[2.0, 0.0]])), 4)  # log(1 + e^{−1})
    0.3133
    """

    config_args = ("num_classes", "margin", "scale", "lr_multiplier", "seed")

    def __init__(self, num_classes, margin=0.35, scale=64.0, lr_multiplier=1.0, seed=None, name="cosface_loss",
                 **kwargs):
        super().__init__(num_classes, 1, lr_multiplier, seed, name=name, **kwargs)
        self.margin = check_number(margin, "margin")
        self.scale = check_number(scale, "scale", greater_than=0.0)

    def proxy_loss(self, labels, unit_embeddings, unit_proxies):
        """Softmax cross-entropy of the scaled cosines, `margin` subtracted from the true class's."""
        cosine = tf.matmul(unit_embeddings, unit_proxies, transpose_b=True)
        true = tf.one_hot(labels, self.num_classes, dtype=cosine.dtype)
        return softmax_cross_entropy(self.scale * (cosine - self.margin * true), labels)
