"""ProxyNCA (Movshovitz-Attias et al., ICCV 2017)."""
import tensorflow as tf

from tfdml import distances
from tfdml.losses.base import check_number, masked_logsumexp
from tfdml.losses.proxies import ProxyLoss
from tfdml.losses.registry import register


@register("proxy_nca")
class ProxyNCALoss(ProxyLoss):
    """ProxyNCA loss (Movshovitz-Attias et al., "No fuss distance metric learning
    using proxies", ICCV 2017, eq. 6 as used by Roth et al., ICML 2020).

    Embeddings and proxies are L2-normalised and then multiplied by `scale` s:
    x = s·x̂, p_c = s·p̂_c, so squared distances are s² times those of the unit
    vectors. With d_c = ‖x − p_c‖²:

        ℓ = −log( exp(−d_y) / Σ_{c ≠ y} exp(−d_c) ) = d_y + log Σ_{c ≠ y} exp(−d_c)

    (the paper's form: the true proxy is *not* in the denominator, so ℓ can be
    negative; pytorch-metric-learning's ProxyNCA includes it). loss = mean of ℓ
    over the batch. With a single class the denominator is empty and ℓ = d_y.
    No Embedding Expansion (synthetic points are not defined for proxies).

    Args:
        num_classes: number of training classes (labels in [0, num_classes)).
        scale: s.
        lr_multiplier: learning-rate multiplier of the proxies.
        seed: seed of the proxy initialisation.
    """

    def __init__(self, num_classes, scale=3.0, lr_multiplier=1.0, seed=None, name="proxy_nca_loss", **kwargs):
        self.scale = check_number(scale, "scale", 0.0, allow_equal_min=False)
        super().__init__(num_classes, lr_multiplier, seed, name=name, **kwargs)

    def proxy_loss(self, labels, unit_embeddings, unit_proxies):
        d = distances.squared_euclidean(self.scale * unit_embeddings, self.scale * unit_proxies)  # (B, C)
        true = tf.one_hot(labels, self.num_classes, on_value=True, off_value=False)
        d_true = tf.gather(d, labels, axis=1, batch_dims=1)
        others = masked_logsumexp(-d, tf.logical_not(true), axis=1)
        others = tf.where(tf.reduce_any(tf.logical_not(true), axis=1), others, tf.zeros_like(others))
        return tf.reduce_mean(d_true + others)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}
