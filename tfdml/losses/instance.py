"""Instance loss in pytorch-metric-learning's batch form (after Zheng et al., ACM TOMM 2020)."""
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.proxies import softmax_cross_entropy
from tfdml.losses.registry import register


def label_ranks(labels):
    """Index of each label among the batch's distinct labels in increasing order, (B,) int32
    (`torch.unique(labels, return_inverse=True)`); O(B²), fixed-shape."""
    same = tf.equal(labels[:, None], labels[None, :])
    size = tf.shape(labels)[0]
    earlier = tf.linalg.band_part(tf.ones([size, size], tf.bool), 0, -1)  # (k, j) with k ≤ j
    earlier = tf.logical_and(earlier, tf.logical_not(tf.eye(size, dtype=tf.bool)))  # k < j
    first = tf.logical_not(tf.reduce_any(tf.logical_and(same, earlier), axis=0))  # first occurrence of y_j
    smaller = tf.logical_and(first[None, :], labels[None, :] < labels[:, None])
    return tf.reduce_sum(tf.cast(smaller, tf.int32), axis=1)


@register("instance")
class InstanceLoss(MetricLoss):
    """Instance loss as pytorch-metric-learning's `InstanceLoss` computes it on a
    batch (after Zheng et al., "Dual-Path Convolutional Image-Text Embeddings
    with Instance Loss", ACM TOMM 2020).

    With cosine similarities of L2-normalised embeddings (self-similarities
    included) scaled by γ, and t_i the rank of y_i among the batch's distinct
    labels in increasing order:

        ℓ_i = −log( e^{γ cos(x_i, x_{t_i})} / Σ_j e^{γ cos(x_i, x_j)} )

    loss = mean of ℓ_i over the batch. With one sample per instance, labelled
    0 … B − 1 in batch order, t_i = i: each sample is its own class and every
    other sample of the batch a negative (instance discrimination). With
    repeated labels t_i is a batch *position*, as in PML. The paper itself
    trains a softmax classifier with one class per training image (a proxy
    loss; `tfdml.losses.NormalizedSoftmaxLoss` with one class per image is its
    cosine form), which this batch form does not reproduce. γ = 64 is PML's
    default. No Embedding Expansion.

    Args:
        scale: γ.

    Example (two orthonormal samples labelled 0 and 1, γ = 1: each row has
    logits 1 (itself, the target) and 0):

    >>> loss = tfdml.losses.InstanceLoss(scale=1.0)
    >>> round(float(loss([0, 1], [[2.0, 0.0], [0.0, 1.0]])), 4)  # log(1 + e^{−1})
    0.3133
    """

    config_args = ("scale",)

    def __init__(self, scale=64.0, name="instance_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.scale = check_number(scale, "scale", greater_than=0.0)

    def compute(self, labels, embeddings):
        """The loss of the batch: softmax cross-entropy of scaled cosine similarities, each sample's class among
        the batch's."""
        unit = distances.l2_normalize(embeddings)
        logits = self.scale * tf.matmul(unit, unit, transpose_b=True)
        return softmax_cross_entropy(logits, label_ranks(labels))
