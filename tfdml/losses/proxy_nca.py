"""ProxyNCA (Movshovitz-Attias et al., ICCV 2017)."""
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_number
from tfdml.losses.ops import masked_logsumexp
from tfdml.losses.proxies import ProxyLoss
from tfdml.losses.registry import register


@register("proxy_nca")
class ProxyNCALoss(ProxyLoss):
    """ProxyNCA loss (Movshovitz-Attias et al., "No fuss distance metric learning
    using proxies", ICCV 2017, eq. 6 as used by Roth et al., ICML 2020).

    Embeddings and proxies are L2-normalised and then multiplied by
    `embedding_scale` s:
    x = s·x̂, p_c = s·p̂_c, so squared distances are s² times those of the unit
    vectors. With d_c = ‖x − p_c‖²:

        ℓ = −log( exp(−d_y) / Σ_{c ≠ y} exp(−d_c) ) = d_y + log Σ_{c ≠ y} exp(−d_c)

    (the paper's form: the true proxy is *not* in the denominator, so ℓ can be
    negative; pytorch-metric-learning's ProxyNCA includes it). loss = mean of ℓ
    over the batch. With a single class the denominator is empty and ℓ = d_y.
    No Embedding Expansion (synthetic points are not defined for proxies).

    Args:
        num_classes: number of training classes (labels in [0, num_classes)).
        embedding_scale: s.
        lr_multiplier: learning-rate multiplier of the proxies.
        seed: seed of the proxy initialisation.

    Example (unit embedding (1, 0); proxies (1, 0), (−1, 0), (0, 1), so with
    s = 1 the squared distances are 0, 4 and 2):

    >>> loss = tfdml.losses.ProxyNCALoss(num_classes=3, embedding_scale=1.0)
    >>> loss.build_state(2).assign_value([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    >>> round(float(loss([0], [[5.0, 0.0]])), 4)  # 0 + log(e^{−4} + e^{−2})
    -1.8731
    """

    config_args = ("num_classes", "embedding_scale", "lr_multiplier", "seed")

    def __init__(self, num_classes, embedding_scale=3.0, lr_multiplier=1.0, seed=None, name="proxy_nca_loss",
                 **kwargs):
        super().__init__(num_classes, 1, lr_multiplier, seed, name=name, **kwargs)
        self.embedding_scale = check_number(embedding_scale, "embedding_scale", greater_than=0.0)

    def proxy_loss(self, labels, unit_embeddings, unit_proxies):
        """Squared distance to the true proxy plus the log-sum-exp of minus the distances to the other proxies,
        averaged."""
        scale = self.embedding_scale
        d = distances.squared_euclidean(scale * unit_embeddings, scale * unit_proxies)  # (B, C)
        true = tf.one_hot(labels, self.num_classes, on_value=True, off_value=False)
        d_true = tf.gather(d, labels, axis=1, batch_dims=1)
        others = masked_logsumexp(-d, tf.logical_not(true), axis=1)
        others = tf.where(tf.reduce_any(tf.logical_not(true), axis=1), others, tf.zeros_like(others))
        return tf.reduce_mean(d_true + others)
