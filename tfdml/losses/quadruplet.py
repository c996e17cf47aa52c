"""Quadruplet loss (Chen et al. 2017) with distance-weighted first negatives."""
import collections

import keras
import tensorflow as tf

from tfdml import distances
from tfdml.losses import mining as mining_lib
from tfdml.losses.base import (
    MetricLoss,
    check_number,
    deserialize_expansion,
    make_seed_generator,
    masked_mean,
    pair_matrices,
    serialize_expansion,
    validate_inputs,
)
from tfdml.losses.registry import register

Quadruplets = collections.namedtuple(
    "Quadruplets", ["anchor", "positive", "negative", "fourth", "valid", "has_fourth", "swapped"]
)


def sample_other_class(labels, first, second, seed_generator):
    """Per entry t, a uniformly random sample whose class is neither that of
    `first[t]` nor that of `second[t]`.

    Samples sorted by class form contiguous blocks, so the r-th admissible sample
    is found by skipping (at most) the two excluded blocks: O(B²) memory for
    block starts and sizes, O(1) per entry — no T×B candidate mask.

    Args:
        labels: (B,) integer labels.
        first, second: (T,) int32 sample indices whose classes are excluded
            (they may be of the same class).
        seed_generator: `keras.random.SeedGenerator`.

    Returns:
        (index (T,) int32, exists (T,) bool); `index` is 0 where no admissible
        sample exists.
    """
    batch = tf.shape(labels)[0]
    same = tf.equal(labels[:, None], labels[None, :])
    before = labels[None, :] < labels[:, None]  # before[i, j]: class of j sorts before class of i
    block_start = tf.reduce_sum(tf.cast(before, tf.int32), axis=1)  # (B,) start of i's class block
    block_size = tf.reduce_sum(tf.cast(same, tf.int32), axis=1)
    order = tf.argsort(labels, stable=True)
    start_1, size_1 = tf.gather(block_start, first), tf.gather(block_size, first)
    start_2, size_2 = tf.gather(block_start, second), tf.gather(block_size, second)
    size_2 = tf.where(tf.equal(start_1, start_2), tf.zeros_like(size_2), size_2)  # same class: exclude once
    first_is_lower = start_1 <= start_2
    low_start = tf.minimum(start_1, start_2)
    high_start = tf.maximum(start_1, start_2)
    low_size = tf.where(first_is_lower, size_1, size_2)
    high_size = tf.where(first_is_lower, size_2, size_1)
    count = batch - size_1 - size_2
    draw = keras.random.uniform(tf.shape(first), seed=seed_generator, dtype="float32")
    rank = tf.cast(tf.floor(draw * tf.cast(count, tf.float32)), tf.int32)
    rank = tf.clip_by_value(rank, 0, tf.maximum(count - 1, 0))
    position = rank + tf.where(rank >= low_start, low_size, tf.zeros_like(low_size))
    position = position + tf.where(position >= high_start, high_size, tf.zeros_like(high_size))
    exists = count > 0
    position = tf.where(exists, tf.minimum(position, batch - 1), tf.zeros_like(position))
    return tf.gather(order, position), exists


@register("quadruplet")
class QuadrupletLoss(MetricLoss):
    """Quadruplet loss (Chen et al., "Beyond triplet loss: a deep quadruplet
    network for person re-identification", CVPR 2017; Roth et al., ICML 2020,
    eq. 14 and their code).

    Euclidean distances d on L2-normalised embeddings. Triplets (i, j, k) — j a
    positive of anchor i, k a negative — come from distance-weighted sampling
    (Wu et al.; `tfdml.losses.mining`, one negative per anchor–positive pair).
    For each, a fourth sample l is drawn uniformly among the samples whose class
    is neither y_i nor y_k. Per quadruplet:

        ℓ1 = [d_ij − d_ik + γ1]_+          (γ1 = margin_an)
        ℓ2 = [d_ij − d_lk + γ2]_+          (γ2 = margin_nn)

    ℓ2 is Chen et al.'s second term (and Roth et al.'s code): the positive pair
    must be closer than a negative pair that does not share the anchor. (The
    form [d_ik − d_lk + γ2]_+ would pull anchor and negative together, so it is
    not used.)

    loss = mean over valid triplets of ℓ1 + mean over valid quadruplets of ℓ2
    (Roth's code: mean(ℓ1) + mean(ℓ2)). A quadruplet is valid when its triplet
    is and an l exists (the batch has a third class); with ≥ 3 classes both
    sets coincide. No valid triplet gives 0 with a zero gradient.

    ρ-regularisation: with probability `rho` per triplet, (i, j, k) becomes
    (i, i, k') with k' a random other sample of i's class (d_ii = 0, d_ik' on
    original points); l is then drawn among classes ≠ y_i.

    Embedding Expansion: every negative-pair distance (d_ik in sampling and ℓ1,
    d_lk in ℓ2) is EE-pooled (minimum; default pooling "anchor", as for the
    triplet loss); positives are original points.

    Args:
        margin_an: γ1. margin_nn: γ2.
        rho: ρ-regularisation probability in [0, 1].
        expansion: `tfdml.EmbeddingExpansion` or None.
        seed: int seed of the sampling.
    """

    default_pooling = "anchor"

    def __init__(self, margin_an=1.0, margin_nn=0.5, rho=0.0, expansion=None, seed=None, name="quadruplet_loss",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin_an = check_number(margin_an, "margin_an")
        self.margin_nn = check_number(margin_nn, "margin_nn")
        self.rho = check_number(rho, "rho", 0.0, 1.0)
        self.expansion = deserialize_expansion(expansion)
        self.seed = seed
        self._seed_generator = make_seed_generator(seed)

    def _matrices(self, labels, embeddings):
        unit = distances.l2_normalize(embeddings)
        return pair_matrices(unit, labels, "euclidean", self.expansion, self.default_pooling)

    def _sample(self, labels, matrices, embedding_dim):
        triplets = mining_lib.mine_triplets(
            tf.stop_gradient(matrices.positive), tf.stop_gradient(matrices.negative), labels, "distance",
            margin=self.margin_an, seed=self._seed_generator, embedding_dim=embedding_dim)
        triplets, swapped = mining_lib.apply_rho(triplets, labels, self.rho, self._seed_generator)
        fourth, has_fourth = sample_other_class(labels, triplets.anchor, triplets.negative, self._seed_generator)
        return Quadruplets(triplets.anchor, triplets.positive, triplets.negative, fourth, triplets.valid,
                           tf.logical_and(triplets.valid, has_fourth), swapped)

    def sample_quadruplets(self, labels, embeddings):
        """The quadruplets a call `loss(labels, embeddings)` would use (advances the seed).

        Returns:
            `Quadruplets` of (B·B,) tensors: anchor, positive, negative, fourth
            indices; valid (triplet), has_fourth (valid quadruplet), swapped (ρ).
        """
        labels, embeddings = self._prepare(labels, embeddings)
        return self._sample(labels, self._matrices(labels, embeddings), embeddings.shape[-1])

    def _prepare(self, labels, embeddings):
        labels, embeddings = validate_inputs(labels, embeddings)
        return labels, tf.cast(embeddings, self.compute_dtype)

    def compute(self, labels, embeddings):
        m = self._matrices(labels, embeddings)
        q = self._sample(labels, m, embeddings.shape[-1])
        ij = tf.stack([q.anchor, q.positive], axis=1)
        ik = tf.stack([q.anchor, q.negative], axis=1)
        lk = tf.stack([q.fourth, q.negative], axis=1)
        d_ij = tf.gather_nd(m.positive, ij)
        d_ik = tf.where(q.swapped, tf.gather_nd(m.positive, ik), tf.gather_nd(m.negative, ik))
        d_lk = tf.gather_nd(m.negative, lk)
        first = tf.nn.relu(d_ij - d_ik + self.margin_an)
        second = tf.nn.relu(d_ij - d_lk + self.margin_nn)
        return masked_mean(first, q.valid) + masked_mean(second, q.has_fourth)

    def get_config(self):
        config = super().get_config()
        config.update(margin_an=self.margin_an, margin_nn=self.margin_nn, rho=self.rho,
                      expansion=serialize_expansion(self.expansion),
                      seed=self.seed if not hasattr(self.seed, "get_config") else None)
        return config
