"""Normalised softmax (Zhai & Wu, BMVC 2019)."""
import tensorflow as tf

from tfdml.checks import check_number
from tfdml.losses.proxies import ProxyLoss, softmax_cross_entropy
from tfdml.losses.registry import register


@register("normalized_softmax")
class NormalizedSoftmaxLoss(ProxyLoss):
    """Normalised softmax loss (Zhai & Wu, "Classification is a strong baseline
    for deep metric learning", BMVC 2019; Roth et al., ICML 2020).

    Cosine logits between the L2-normalised embedding x̂ and class weights ŵ_c,
    divided by the temperature T:

        ℓ = −log( exp(x̂ᵀŵ_y / T) / Σ_c exp(x̂ᵀŵ_c / T) )

    loss = mean of ℓ over the batch. No Embedding Expansion.

    Args:
        num_classes: number of training classes (labels in [0, num_classes)).
        temperature: T.
        lr_multiplier: learning-rate multiplier of the class weights.
        seed: seed of the weight initialisation.

    Example (cosines 1 and 0 with the two class weights, T = ½):

    >>> loss = tfdml.losses.NormalizedSoftmaxLoss(num_classes=2, temperature=0.5)
    >>> loss.build_state(2).assign_value([[1.0, 0.0], [0.0, 3.0]])
    >>> round(float(loss([0], [[2.0, 0.0]])), 4)  # log(1 + e^{−2})
    0.1269
    """

    config_args = ("num_classes", "temperature", "lr_multiplier", "seed")

    def __init__(self, num_classes, temperature=0.05, lr_multiplier=1.0, seed=None, name="normalized_softmax_loss",
                 **kwargs):
        super().__init__(num_classes, 1, lr_multiplier, seed, name=name, **kwargs)
        self.temperature = check_number(temperature, "temperature", greater_than=0.0)

    def proxy_loss(self, labels, unit_embeddings, unit_proxies):
        """Softmax cross-entropy of the cosines divided by `temperature`."""
        logits = tf.matmul(unit_embeddings, unit_proxies, transpose_b=True) / self.temperature
        return softmax_cross_entropy(logits, labels)
