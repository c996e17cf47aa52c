"""Margin loss with a learnable boundary β (Wu et al. 2017, "Sampling matters")."""
import tensorflow as tf

from tfdml.losses import mining as mining_lib
from tfdml.losses.base import (
    MetricLoss,
    check_number,
    deserialize_expansion,
    make_seed_generator,
    pair_matrices,
    serialize_expansion,
)
from tfdml.losses.registry import register
from tfdml.losses.variables import LossVariable


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
    `compile`. β uses the model's optimizer with its learning rate multiplied by
    `beta_lr_multiplier` (Roth et al. train β with 5e-4 while the network uses
    1e-5: multiplier 50 with Adam; see `LossVariable`).

    Triplets come from any `TripletLoss` miner (default distance-weighted
    sampling); ρ-regularisation and Embedding Expansion (negative distances
    pooled, default pooling "anchor") are supported.

    Args:
        margin: α. beta: initial β. learn_beta: train β.
        per_class_beta: one β per class (needs `num_classes`; labels in
            [0, num_classes)).
        num_classes: number of classes for per-class β.
        nu: weight ν of the β regulariser.
        beta_lr_multiplier: learning-rate multiplier of β.
        mining: a `tfdml.losses.mining` miner name (not "all").
        rho: ρ-regularisation probability.
        expansion: `tfdml.EmbeddingExpansion` or None.
        seed: seed of the random miners.
    """

    default_pooling = "anchor"

    def __init__(self, margin=0.2, beta=1.2, learn_beta=True, per_class_beta=False, num_classes=None, nu=0.0,
                 beta_lr_multiplier=1.0, mining="distance", rho=0.0, expansion=None, seed=None, name="margin_loss",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = check_number(margin, "margin")
        self.beta = check_number(beta, "beta")
        self.learn_beta = bool(learn_beta)
        self.per_class_beta = bool(per_class_beta)
        if self.per_class_beta and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"per_class_beta=True needs num_classes (a positive int), got {num_classes!r}.")
        self.num_classes = num_classes
        self.nu = check_number(nu, "nu", 0.0)
        self.mining = mining_lib.check_mining(mining, mining_lib.PER_ANCHOR + mining_lib.PER_PAIR)
        self.rho = check_number(rho, "rho", 0.0, 1.0)
        self.expansion = deserialize_expansion(expansion)
        self.seed = seed
        self._seed_generator = make_seed_generator(seed)
        size = num_classes if self.per_class_beta else 1
        self.beta_lr_multiplier = check_number(beta_lr_multiplier, "beta_lr_multiplier", 0.0,
                                               allow_equal_min=False)
        self.state_layer = (LossVariable((size,), self.beta, self.beta_lr_multiplier, name="margin_beta",
                                         dtype=self.compute_dtype.name) if self.learn_beta else None)

    def build_state(self, embedding_dim=None):
        """β does not depend on the embedding size; it exists from construction."""
        return self.state_layer

    def _betas(self, anchor_labels):
        if self.state_layer is None:
            return tf.fill(tf.shape(anchor_labels), tf.constant(self.beta, self.compute_dtype))
        values = tf.cast(self.state_layer.value, self.compute_dtype)
        if not self.per_class_beta:
            return tf.fill(tf.shape(anchor_labels), values[0])
        if tf.executing_eagerly():
            low, high = int(tf.reduce_min(anchor_labels)), int(tf.reduce_max(anchor_labels))
            if low < 0 or high >= self.num_classes:
                raise ValueError(f"labels must be in [0, num_classes={self.num_classes}) for per-class β, "
                                 f"got values in [{low}, {high}].")
        return tf.gather(values, tf.clip_by_value(anchor_labels, 0, self.num_classes - 1))

    def compute(self, labels, embeddings):
        embeddings = tf.math.l2_normalize(embeddings, axis=-1, epsilon=1e-12)
        matrices = pair_matrices(embeddings, labels, "euclidean", self.expansion, self.default_pooling)
        triplets = mining_lib.mine_triplets(
            tf.stop_gradient(matrices.positive), tf.stop_gradient(matrices.negative), labels, self.mining,
            margin=self.margin, seed=self._seed_generator, embedding_dim=embeddings.shape[-1])
        triplets, swapped = mining_lib.apply_rho(triplets, labels, self.rho, self._seed_generator)
        ap = tf.stack([triplets.anchor, triplets.positive], axis=1)
        an = tf.stack([triplets.anchor, triplets.negative], axis=1)
        d_ap = tf.gather_nd(matrices.positive, ap)
        d_an = tf.where(swapped, tf.gather_nd(matrices.positive, an), tf.gather_nd(matrices.negative, an))
        beta = self._betas(tf.gather(labels, triplets.anchor))
        valid = tf.cast(triplets.valid, embeddings.dtype)
        pos = tf.nn.relu(d_ap - beta + self.margin) * valid
        neg = tf.nn.relu(beta - d_an + self.margin) * valid
        active = tf.reduce_sum(tf.cast(pos > 0, embeddings.dtype) + tf.cast(neg > 0, embeddings.dtype))
        total = tf.reduce_sum(pos + neg)
        loss = tf.where(active > 0, total / tf.maximum(active, 1.0), total)
        if self.nu > 0:
            loss += self.nu * tf.reduce_sum(beta * valid)
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(margin=self.margin, beta=self.beta, learn_beta=self.learn_beta,
                      per_class_beta=self.per_class_beta, num_classes=self.num_classes, nu=self.nu,
                      beta_lr_multiplier=self.beta_lr_multiplier,
                      mining=self.mining, rho=self.rho, expansion=serialize_expansion(self.expansion),
                      seed=self.seed)
        return config
