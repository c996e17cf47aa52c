"""Softmax cross-entropy of a linear (fc) classifier on the embeddings."""
import tensorflow as tf

from tfdml.losses.base import check_class_labels
from tfdml.losses.proxies import ProxyLoss, softmax_cross_entropy
from tfdml.losses.registry import register


@register("softmax")
class SoftmaxLoss(ProxyLoss):
    """Softmax cross-entropy of an fc classifier: the classification baseline
    of Vo & Hays ("Generalization in metric learning: should the embedding
    layer be the embedding layer?", WACV 2019, Fig. 3 right).

    Logits z_c = xᵀw_c + b_c of the raw (not normalised) embedding x with the
    trainable weights w_c and bias b_c of class c:

        ℓ = −log( exp(z_y) / Σ_c exp(z_c) )

    loss = mean of ℓ over the batch. No Embedding Expansion. The classifier is
    loss state (`state_layer`, shape (num_classes, D + 1): the weights, then
    the bias in the last column), trained with the model and never part of the
    exported embedder; initial entries N(0, 1/(D + 1)).

    Args:
        num_classes: number of training classes (labels in [0, num_classes)).
        lr_multiplier: learning-rate multiplier of the classifier.
        seed: seed of the classifier's initialisation.

    Example (logits 2 and 0 for the two classes):

    >>> loss = tfdml.losses.SoftmaxLoss(num_classes=2)
    >>> loss.build_state(2).assign_value([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> round(float(loss([0], [[2.0, 0.0]])), 4)  # log(1 + e^{−2})
    0.1269
    """

    config_args = ("num_classes", "lr_multiplier", "seed")

    def __init__(self, num_classes, lr_multiplier=1.0, seed=None, name="softmax_loss", **kwargs):
        super().__init__(num_classes, 1, lr_multiplier, seed, name=name, **kwargs)

    def build_state(self, embedding_dim):
        """Creates the classifier (weights and bias) for `embedding_dim`-d embeddings (idempotent)."""
        return self.state_layer.build_for(int(embedding_dim) + 1)

    def compute(self, labels, embeddings):
        """The loss of the batch: softmax cross-entropy of the linear classifier's logits."""
        labels = check_class_labels(labels, self.num_classes)
        classifier = tf.cast(self.state_layer.value, embeddings.dtype)
        logits = tf.matmul(embeddings, classifier[:, :-1], transpose_b=True) + classifier[:, -1][None, :]
        return softmax_cross_entropy(logits, labels)
