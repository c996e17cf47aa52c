"""Proxy-Anchor (Kim et al., CVPR 2020)."""
import tensorflow as tf

from tfdml.checks import check_number
from tfdml.losses.ops import masked_logsumexp
from tfdml.losses.proxies import ProxyLoss
from tfdml.losses.registry import register


@register("proxy_anchor")
class ProxyAnchorLoss(ProxyLoss):
    """Proxy-Anchor loss (Kim et al., "Proxy Anchor Loss for Deep Metric
    Learning", CVPR 2020, eq. 4).

    With s(x, p) the cosine similarity of an embedding and a proxy (both
    L2-normalised), P the proxies of all C classes, P⁺ the proxies of the classes
    present in the batch, X_p⁺ the batch samples of p's class and X_p⁻ the others:

        ℓ = 1/|P⁺| Σ_{p∈P⁺} log(1 + Σ_{x∈X_p⁺} e^{−α (s(x, p) − δ)})
          + 1/|P|  Σ_{p∈P}  log(1 + Σ_{x∈X_p⁻} e^{ α (s(x, p) + δ)})

    The loss is ℓ itself (one value per batch: the proxies are the anchors). An
    empty sum contributes log 1 = 0. The defaults α = 32, δ = 0.1 are the
    paper's (and pytorch-metric-learning's `ProxyAnchorLoss`, which computes the
    same equation); the paper trains the proxies with a 100× learning rate
    (`lr_multiplier`, see `tfdml.losses.LossVariable`). No Embedding Expansion.

    Args:
        num_classes: number of training classes (labels in [0, num_classes)).
        margin: δ.
        alpha: α, the scale.
        lr_multiplier: learning-rate multiplier of the proxies.
        seed: seed of the proxy initialisation.

    Example (one sample of class 0 at cosine 1 from its proxy and 0 from the
    proxy of class 1; α = 1, δ = 0):

    >>> loss = tfdml.losses.ProxyAnchorLoss(num_classes=2, alpha=1.0, margin=0.0)
    >>> loss.build_state(2).assign_value([[1.0, 0.0], [0.0, 1.0]])
    >>> round(float(loss([0], [[3.0, 0.0]])), 4)  # log(1 + e^{−1}) + ½ (log 1 + log(1 + e^0))
    0.6598
    """

    config_args = ("num_classes", "margin", "alpha", "lr_multiplier", "seed")

    def __init__(self, num_classes, margin=0.1, alpha=32.0, lr_multiplier=1.0, seed=None, name="proxy_anchor_loss",
                 **kwargs):
        super().__init__(num_classes, 1, lr_multiplier, seed, name=name, **kwargs)
        self.margin = check_number(margin, "margin")
        self.alpha = check_number(alpha, "alpha", greater_than=0.0)

    def proxy_loss(self, labels, unit_embeddings, unit_proxies):
        """The positive term averaged over proxies with positives plus the negative term averaged over all proxies."""
        cosine = tf.matmul(unit_embeddings, unit_proxies, transpose_b=True)  # (B, C)
        positive = tf.one_hot(labels, self.num_classes, on_value=True, off_value=False)
        pos_lse = masked_logsumexp(-self.alpha * (cosine - self.margin), positive, axis=0)  # (C,)
        neg_lse = masked_logsumexp(self.alpha * (cosine + self.margin), tf.logical_not(positive), axis=0)
        with_positives = tf.reduce_sum(tf.cast(tf.reduce_any(positive, axis=0), cosine.dtype))
        # log(1 + Σ exp(z)) = softplus(logsumexp(z)); an empty sum gives softplus(−1e4) = 0.
        return (tf.math.divide_no_nan(tf.reduce_sum(tf.nn.softplus(pos_lse)), with_positives)
                + tf.reduce_sum(tf.nn.softplus(neg_lse)) / self.num_classes)
