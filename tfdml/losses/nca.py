"""Neighbourhood components analysis (Goldberger et al., NeurIPS 2004)."""
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_logsumexp, masked_mean, pair_masks
from tfdml.losses.registry import register


@register("nca")
class NCALoss(MetricLoss):
    """NCA loss (Goldberger et al., "Neighbourhood Components Analysis",
    NeurIPS 2004, the log-likelihood objective of §2), as pytorch-metric-learning's
    `NCALoss` computes it on a batch.

    With squared Euclidean distances d of L2-normalised embeddings and scale s,
    sample i picks neighbour j ≠ i with probability
    p_ij = e^{−s d_ij} / Σ_{k≠i} e^{−s d_ik}; with p_i = Σ_{j≠i, y_j=y_i} p_ij:

        loss = mean over the samples with a positive of −log p_i

    (0 if none; a sample whose every other sample is a positive has p_i = 1).
    The default s = 1 is pytorch-metric-learning's (`softmax_scale`). No
    Embedding Expansion (the neighbour softmax mixes positives and negatives).

    Args:
        scale: s, the multiplier of −d in the softmax.

    Example (the positive is 0 apart, the negative √2 apart, so squared
    distance 2):

    >>> loss = tfdml.losses.NCALoss()
    >>> value = loss([0, 0, 1], [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> round(float(value), 4)  # −log(1 / (1 + e^{−2})) for both samples of class 0
    0.1269
    """

    config_args = ("scale",)

    def __init__(self, scale=1.0, name="nca_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.scale = check_number(scale, "scale", greater_than=0.0)

    def compute(self, labels, embeddings):
        """The loss of the batch: minus the log-probability of picking a same-class neighbour, averaged over
        anchors with a positive."""
        d = distances.squared_euclidean(distances.l2_normalize(embeddings))
        positive_mask, negative_mask = pair_masks(labels)
        logits = -self.scale * d
        log_p = (masked_logsumexp(logits, positive_mask, axis=1)
                 - masked_logsumexp(logits, tf.logical_or(positive_mask, negative_mask), axis=1))
        return masked_mean(-log_p, tf.reduce_any(positive_mask, axis=1))
