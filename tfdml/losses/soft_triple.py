"""SoftTriple (Qian et al., ICCV 2019)."""
import tensorflow as tf

from tfdml.checks import check_number
from tfdml.losses.proxies import ProxyLoss, softmax_cross_entropy
from tfdml.losses.registry import register

# Added under the square root of ‖w − w'‖ = √(2 − 2 wᵀw'), as in the official code.
_CENTRE_EPSILON = 1e-5


@register("soft_triple")
class SoftTripleLoss(ProxyLoss):
    """SoftTriple loss (Qian et al., "SoftTriple loss: deep metric learning
    without triplet sampling", ICCV 2019, eqs. 8–12; Roth et al., ICML 2020,
    eq. 18).

    Each class c has K = `proxies_per_class` L2-normalised centres w_c^k. For a
    normalised embedding x̂, with s_c^k = x̂ᵀw_c^k:

        S_c = Σ_k softmax_k(s_c^k / γ) · s_c^k                (relaxed similarity)
        ℓ   = −log( e^{λ(S_y − δ)} / (e^{λ(S_y − δ)} + Σ_{c≠y} e^{λ S_c}) )

    loss = mean of ℓ over the batch + τ · R, with the centre regulariser

        R = Σ_c Σ_{k<k'} √(2 + ε − 2 w_c^kᵀ w_c^k') / (C · K · (K − 1))

    (ε = 1e-5, the official code's; R = 0 when K = 1). λ = `scale` (the paper's
    logit scale, `la` in the official code), γ = `gamma`, δ = `margin`,
    τ = `tau`. No Embedding Expansion.

    Args:
        num_classes: number of training classes C (labels in [0, C)).
        proxies_per_class: K, centres of each class.
        scale: λ, the logit scale.
        gamma: γ, temperature of the softmax over a class's centres.
        margin: δ.
        tau: τ, weight of the centre regulariser.
        lr_multiplier: learning-rate multiplier of the centres.
        seed: seed of the centre initialisation.

    Example (one centre per class, cosines 1 and 0: cross-entropy on
    λ·(1 − δ) = 1 against 0):

    >>> loss = tfdml.losses.SoftTripleLoss(num_classes=2, proxies_per_class=1, scale=2.0, margin=0.5)
    >>> loss.build_state(2).assign_value([[1.0, 0.0], [0.0, 1.0]])
    >>> round(float(loss([0], [[2.0, 0.0]])), 4)  # log(1 + e^{−1})
    0.3133
    """

    config_args = ("num_classes", "proxies_per_class", "scale", "gamma", "margin", "tau", "lr_multiplier", "seed")

    def __init__(self, num_classes, proxies_per_class=2, scale=8.0, gamma=0.1, margin=0.01, tau=0.2,
                 lr_multiplier=1.0, seed=None, name="soft_triple_loss", **kwargs):
        super().__init__(num_classes, proxies_per_class, lr_multiplier, seed, name=name, **kwargs)
        self.scale = check_number(scale, "scale", greater_than=0.0)
        self.gamma = check_number(gamma, "gamma", greater_than=0.0)
        self.margin = check_number(margin, "margin")
        self.tau = check_number(tau, "tau", 0.0)

    def proxy_loss(self, labels, unit_embeddings, unit_proxies):
        """Softmax cross-entropy of the relaxed class similarities with a margin, plus the `tau`-weighted centre
        regulariser."""
        k = self.proxies_per_class
        sims = tf.reshape(tf.matmul(unit_embeddings, unit_proxies, transpose_b=True), [-1, self.num_classes, k])
        weights = tf.nn.softmax(sims / self.gamma, axis=2)
        relaxed = tf.reduce_sum(weights * sims, axis=2)  # (B, C)
        true = tf.one_hot(labels, self.num_classes, dtype=relaxed.dtype)
        loss = softmax_cross_entropy(self.scale * (relaxed - self.margin * true), labels)
        if self.tau > 0 and k > 1:
            centres = tf.reshape(unit_proxies, [self.num_classes, k, -1])
            gram = tf.matmul(centres, centres, transpose_b=True)  # (C, K, K)
            upper = tf.linalg.band_part(tf.ones([k, k], tf.bool), 0, -1)
            upper = tf.logical_and(upper, tf.logical_not(tf.eye(k, dtype=tf.bool)))
            spread = tf.sqrt(tf.maximum(2.0 + _CENTRE_EPSILON - 2.0 * gram, _CENTRE_EPSILON))
            total = tf.reduce_sum(tf.where(upper[None], spread, tf.zeros_like(spread)))
            loss += self.tau * total / (self.num_classes * k * (k - 1))
        return loss
