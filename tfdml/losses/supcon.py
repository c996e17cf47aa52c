"""Supervised contrastive loss (Khosla et al., NeurIPS 2020)."""
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_choice, check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_logsumexp, masked_mean
from tfdml.losses.registry import register

AVERAGES = ("anchors", "active_anchors")


@register("supcon")
class SupConLoss(MetricLoss):
    """Supervised contrastive loss (Khosla et al., "Supervised Contrastive
    Learning", NeurIPS 2020, L^sup_out of eq. 2).

    On cosine similarities s of L2-normalised embeddings and temperature τ, for
    anchor i with positives P(i) (same class, ≠ i) and A(i) all other samples:

        ℓ_i = −1/|P(i)| Σ_{p∈P(i)} log( e^{s_ip/τ} / Σ_{a∈A(i)} e^{s_ia/τ} )

    Reduction (`average_over`):

    - "anchors" (default): the mean of ℓ_i over the anchors with a positive
      (the paper sums over anchors; its official code averages);
    - "active_anchors": pytorch-metric-learning's `SupConLoss` — the mean of
      the non-zero ℓ_i, and 0 when the batch has no negative pair (a one-class
      batch).

    The default τ = 0.1 is the paper's (and pytorch-metric-learning's).

    Embedding Expansion: every negative similarity s_ia (a of another class) in
    the denominator is the EE-pooled one (maximum over the pools; default
    pooling "class").

    Args:
        temperature: τ.
        average_over: "anchors" or "active_anchors".
        expansion: `tfdml.EmbeddingExpansion` or None.

    Example (orthonormal points: every similarity is 0; each of the two
    anchors of class 0 has ℓ = −log(e^0 / (e^0 + e^0)), the lone sample of
    class 1 has no positive):

    >>> loss = tfdml.losses.SupConLoss(temperature=1.0)
    >>> value = loss([0, 0, 1], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    >>> round(float(value), 4)  # log 2
    0.6931
    """

    config_args = ("temperature", "average_over", "expansion")
    supports_expansion = True
    default_pooling = "class"

    def __init__(self, temperature=0.1, average_over="anchors", expansion=None, name="supcon_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, **kwargs)
        self.temperature = check_number(temperature, "temperature", greater_than=0.0)
        self.average_over = check_choice(average_over, "average_over", AVERAGES)

    def compute(self, labels, embeddings):
        """The loss of the batch: minus the mean log-probability of each anchor's positives, averaged over anchors."""
        m = self.pair_matrices(distances.l2_normalize(embeddings), labels, "cosine")
        logits = tf.where(m.positive_mask, m.positive, m.negative) / self.temperature
        others = tf.logical_or(m.positive_mask, m.negative_mask)
        denominator = masked_logsumexp(logits, others, axis=1)  # (B,)
        log_prob = logits - denominator[:, None]
        positives = tf.cast(m.positive_mask, logits.dtype)
        count = tf.reduce_sum(positives, axis=1)
        per_anchor = -tf.math.divide_no_nan(
            tf.reduce_sum(tf.where(m.positive_mask, log_prob, tf.zeros_like(log_prob)), axis=1), count)
        if self.average_over == "anchors":
            return masked_mean(per_anchor, count > 0)
        active = tf.stop_gradient(per_anchor) > 0
        value = masked_mean(per_anchor, active)
        return tf.where(tf.reduce_any(m.negative_mask), value, tf.zeros_like(value))
