"""Margin loss with a learnable boundary β (Wu et al. 2017, "Sampling matters")."""
import warnings

import tensorflow as tf

from tfdml.checks import check_int, check_number
from tfdml.losses import mining as mining_lib
from tfdml.losses.base import MetricLoss, check_class_labels
from tfdml.losses.ops import normalize_if
from tfdml.losses.registry import register
from tfdml.losses.state import LossVariable


@register("margin")
class MarginLoss(MetricLoss):
    """Margin loss (Wu et al., ICCV 2017) as used by Roth et al. (ICML 2020).

    Per mined triplet (a, p, n) with Euclidean distances on L2-normalised
    embeddings and boundary β = β_{y_a} (per class) or β (shared):

        ℓ_apn = [d_ap − β + α]_+ + [β − d_an + α]_+

    loss = Σ ℓ_apn / #(non-zero hinge terms) (Σ ℓ when there is none)
           + ν · Σ_{triplets} β_{y_a}.

    β is trainable (`learn_beta=True`): a `LossVariable` layer exposed as
    `state_layer` (`loss.state_layer.numpy()` reads β). Attach it to the model so
    `model.fit` trains it and saves it:
    `tfdml.models.EmbeddingModel.compile` does that automatically; for other
    Keras models call `tfdml.losses.attach_loss_state(model, loss)` before
    `compile` (the first call warns when β is not attached). β uses the model's optimizer with its learning rate multiplied by
    `lr_multiplier` (Roth et al. train β with 5e-4 while the network uses
    1e-5: multiplier 50 with Adam; see `LossVariable`).

    Triplets come from any `TripletLoss` miner (default distance-weighted
    sampling, which assumes L2-normalised embeddings); ρ-regularisation and
    Embedding Expansion (negative distances pooled, default pooling "anchor")
    are supported.

    Args:
        margin: α.
        beta: initial β.
        learn_beta: train β.
        per_class_beta: one β per class (needs `num_classes`; labels in
            [0, num_classes)).
        num_classes: number of classes for per-class β.
        nu: weight ν of the β regulariser.
        lr_multiplier: learning-rate multiplier of β.
        mining: a `tfdml.losses.mining` miner that picks triplets (`PICKING`; not
            "all" or "angular").
        rho: ρ-regularisation probability.
        normalize: L2-normalise embeddings first (default True, as Wu et al.).
        expansion: `tfdml.EmbeddingExpansion` or None.
        seed: seed of the random miners.

    Example (batch-hard: for a = (1, 0), p = (0, 1), d_ap = √2 and the positive
    hinge is √2 − 1.2 + 0.2; the other three hinges are 0):

    >>> loss = tfdml.losses.MarginLoss(margin=0.2, beta=1.2, mining="hard")
    >>> value = loss([0, 0, 1], [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> round(float(value), 4)  # (2 · (√2 − 1)) / 2 non-zero terms
    0.4142
    """

    config_args = ("margin", "beta", "learn_beta", "per_class_beta", "num_classes", "nu", "lr_multiplier", "mining",
                   "rho", "normalize", "expansion", "seed")
    supports_expansion = True
    default_pooling = "anchor"
    random_sampling = True

    def __init__(self, margin=0.2, beta=1.2, learn_beta=True, per_class_beta=False, num_classes=None, nu=0.0,
                 lr_multiplier=1.0, mining="distance", rho=0.0, normalize=True, expansion=None, seed=None,
                 name="margin_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, seed=seed, **kwargs)
        self.margin = check_number(margin, "margin")
        self.beta = check_number(beta, "beta")
        self.learn_beta = bool(learn_beta)
        self.per_class_beta = bool(per_class_beta)
        if self.per_class_beta:
            check_int(num_classes, "num_classes (needed by per_class_beta=True)", minimum=1)
        self.num_classes = num_classes
        self.nu = check_number(nu, "nu", 0.0)
        self.lr_multiplier = check_number(lr_multiplier, "lr_multiplier", greater_than=0.0)
        self.mining = mining_lib.check_mining(mining, mining_lib.PICKING)
        self.rho = check_number(rho, "rho", 0.0, 1.0)
        self.normalize = bool(normalize)
        size = num_classes if self.per_class_beta else 1
        self.state_layer = (LossVariable((size,), self.beta, self.lr_multiplier, name="margin_beta",
                                         dtype=self.compute_dtype.name) if self.learn_beta else None)

    def build_state(self, embedding_dim=None):
        """β does not depend on the embedding size; it exists from construction."""
        return self.state_layer

    def prepare(self, embeddings):
        """Warns once when a learnable β is used by a model that does not track it (β would not be trained)."""
        super().prepare(embeddings)
        layer = self.state_layer
        if layer is not None and not getattr(layer, "attached_to_model", False) and not getattr(self, "_warned", 0):
            self._warned = 1
            warnings.warn(
                "MarginLoss's learnable beta is not tracked by a model, so it is not trained or saved: use "
                "tfdml.models.EmbeddingModel, or call tfdml.losses.attach_loss_state(model, loss) before compile "
                "(or pass learn_beta=False for a fixed beta).", stacklevel=3)

    def _betas(self, anchor_labels):
        if self.state_layer is None:
            return tf.fill(tf.shape(anchor_labels), tf.constant(self.beta, self.compute_dtype))
        values = tf.cast(self.state_layer.value, self.compute_dtype)
        if not self.per_class_beta:
            return tf.fill(tf.shape(anchor_labels), values[0])
        return tf.gather(values, check_class_labels(anchor_labels, self.num_classes))

    def compute(self, labels, embeddings):
        """The margin loss over the mined triplets (see the class docstring)."""
        matrices = self.pair_matrices(normalize_if(embeddings, self.normalize), labels, "euclidean", self.normalize)
        mined = mining_lib.mined_distances(matrices, labels, self.mining, margin=self.margin, rho=self.rho,
                                           seed=self._seed_generator)
        beta = self._betas(tf.gather(labels, mined.triplets.anchor))
        valid = tf.cast(mined.valid, embeddings.dtype)
        pos = tf.nn.relu(mined.d_ap - beta + self.margin) * valid
        neg = tf.nn.relu(beta - mined.d_an + self.margin) * valid
        active = tf.reduce_sum(tf.cast(pos > 0, embeddings.dtype) + tf.cast(neg > 0, embeddings.dtype))
        total = tf.reduce_sum(pos + neg)
        loss = tf.where(active > 0, total / tf.maximum(active, 1.0), total)
        if self.nu > 0:
            loss += self.nu * tf.reduce_sum(beta * valid)
        return loss
