"""Margin loss with a learnable boundary β (Wu et al. 2017, "Sampling matters")."""
import keras
import numpy as np
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


@keras.saving.register_keras_serializable(package="tfdml")
class MarginBeta(keras.layers.Layer):
    """Holds the margin loss's boundary β: one scalar or one value per class."""

    def __init__(self, size=1, initial=1.2, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)
        self.initial = float(initial)
        self.beta = self.add_weight(shape=(self.size,), initializer="ones", name="beta", trainable=True)
        self.beta.assign(np.full((self.size,), self.initial))  # exact in float64 too

    def call(self, inputs):  # never used as a model layer; present for Keras' Layer contract
        return inputs

    def get_config(self):
        return {**super().get_config(), "size": self.size, "initial": self.initial}


@register("margin")
class MarginLoss(MetricLoss):
    """Margin loss (Wu et al., ICCV 2017) as used by Roth et al. (ICML 2020).

    Per mined triplet (a, p, n) with Euclidean distances on L2-normalised
    embeddings and boundary β = β_{y_a} (per class) or β (shared):

        ℓ_apn = [d_ap − β + α]_+ + [β − d_an + α]_+

    loss = Σ ℓ_apn / #(non-zero hinge terms) (Σ ℓ when there is none)
           + ν · Σ_{triplets} β_{y_a}.

    β is trainable (`learn_beta=True`): a `MarginBeta` layer exposed as
    `state_layer`. Attach it to the model so `model.fit` trains it and saves it:
    `tfdml.models.EmbeddingModel.compile` does that automatically; for other
    Keras models call `tfdml.losses.attach_loss_state(model, loss)` before
    `compile`. β then uses the model's optimizer and learning rate (Roth et al.
    give β its own rate, 5e-4; a per-variable rate is not implemented yet).

    Triplets come from any `TripletLoss` miner (default distance-weighted
    sampling); ρ-regularisation and Embedding Expansion (negative distances
    pooled, default pooling "anchor") are supported.

    Args:
        margin: α. beta: initial β. learn_beta: train β.
        per_class_beta: one β per class (needs `num_classes`; labels in
            [0, num_classes)).
        num_classes: number of classes for per-class β.
        nu: weight ν of the β regulariser.
        mining: a `tfdml.losses.mining` miner name (not "all").
        rho: ρ-regularisation probability.
        expansion: `tfdml.EmbeddingExpansion` or None.
        seed: seed of the random miners.
    """

    default_pooling = "anchor"

    def __init__(self, margin=0.2, beta=1.2, learn_beta=True, per_class_beta=False, num_classes=None, nu=0.0,
                 mining="distance", rho=0.0, expansion=None, seed=None, name="margin_loss", **kwargs):
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
        self.state_layer = (MarginBeta(size, self.beta, name="margin_beta", dtype=self.compute_dtype.name)
                            if self.learn_beta else None)

    def build_state(self, embedding_dim=None):
        """β does not depend on the embedding size; it exists from construction."""
        return self.state_layer

    def _betas(self, anchor_labels):
        if self.state_layer is None:
            return tf.fill(tf.shape(anchor_labels), tf.constant(self.beta, self.compute_dtype))
        values = tf.cast(self.state_layer.beta, self.compute_dtype)
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
                      mining=self.mining, rho=self.rho, expansion=serialize_expansion(self.expansion),
                      seed=self.seed)
        return config
