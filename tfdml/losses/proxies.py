"""Base of the losses with trainable class proxies (ProxyNCA, SoftTriple, ArcFace,
normalised softmax)."""
import warnings

import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_int, check_number
from tfdml.losses.base import MetricLoss, check_class_labels
from tfdml.losses.state import LossVariable


def softmax_cross_entropy(logits, labels):
    """Mean over the batch of −log softmax(logits)[label] (float64-exact)."""
    target = tf.gather(logits, labels, axis=1, batch_dims=1)
    return tf.reduce_mean(tf.reduce_logsumexp(logits, axis=1) - target)


class ProxyLoss(MetricLoss):
    """Base of proxy losses: `num_classes · proxies_per_class` trainable proxies.

    The proxies are a `LossVariable` exposed as `state_layer`, shape
    (num_classes · proxies_per_class, D), rows grouped by class (class c owns
    rows c·K … c·K + K − 1). They are created with the embedding size D by
    `build_state(D)` — called by `tfdml.losses.attach_loss_state(model, loss)`
    and by `tfdml.models.EmbeddingModel.compile`, which make the model track
    them so `model.fit` trains them and checkpoints / `.keras` files save them —
    or, failing that, on the first call (with a warning: a model that does not
    track them will not train them). Serving models built by
    `EmbeddingModel.embedder` / `tfdml.export` never contain them. Initial
    proxies are N(0, 1/D); `lr_multiplier` scales their learning rate (Roth et
    al. train proxies with their own rate; see `LossVariable`).

    Labels must be class ids in [0, num_classes).

    Args:
        num_classes: number of training classes.
        proxies_per_class: K, proxies of each class.
        lr_multiplier: learning-rate multiplier of the proxies.
        seed: seed of the proxy initialisation.
    """

    def __init__(self, num_classes, proxies_per_class=1, lr_multiplier=1.0, seed=None, name=None, **kwargs):
        super().__init__(name=name, seed=seed, **kwargs)
        self.num_classes = check_int(num_classes, "num_classes", minimum=1)
        self.proxies_per_class = check_int(proxies_per_class, "proxies_per_class", minimum=1)
        self.lr_multiplier = check_number(lr_multiplier, "lr_multiplier", greater_than=0.0)
        self.state_layer = LossVariable((num_classes * proxies_per_class, None), "normal", self.lr_multiplier,
                                        self.seed, name=f"{name}_proxies", dtype=self.compute_dtype.name)

    def build_state(self, embedding_dim):
        """Creates the proxies for `embedding_dim`-d embeddings (idempotent)."""
        return self.state_layer.build_for(embedding_dim)

    def prepare(self, embeddings):
        """Creates the proxies on first use (with a warning: a model trains and
        saves them only if it tracks them), or checks the embedding size."""
        if not self.state_layer.built_for_embeddings:
            warnings.warn(
                f"{type(self).__name__} creates its proxies on first call. A model trains and saves them only "
                "if it tracks them: use tfdml.models.EmbeddingModel, or call "
                "tfdml.losses.attach_loss_state(model, loss) before compile.", stacklevel=3)
        if embeddings.shape[-1] is not None:
            self.build_state(embeddings.shape[-1])  # creates, or checks the embedding size

    def unit_proxies(self, dtype):
        """The L2-normalised proxies in `dtype`."""
        return distances.l2_normalize(tf.cast(self.state_layer.value, dtype))

    def compute(self, labels, embeddings):
        """Checks the labels against `num_classes` and returns `proxy_loss` of the L2-normalised embeddings and
        proxies."""
        labels = check_class_labels(labels, self.num_classes)
        return self.proxy_loss(labels, distances.l2_normalize(embeddings), self.unit_proxies(embeddings.dtype))

    def proxy_loss(self, labels, unit_embeddings, unit_proxies):
        """The loss from labels, L2-normalised embeddings (B, D) and proxies (P, D)."""
        raise NotImplementedError
