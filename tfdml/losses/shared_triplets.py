"""Shared inter-class triplets T* and their loss (Milbich et al., "Sharing Matters", §3.2).

A shared triplet (i, j, k) has three members of three different classes: the
loss pulls the anchor i towards the "positive" j and pushes it from the
"negative" k, so the embedding φ* learns characteristics shared across classes
instead of class identity. One triplet per anchor i; distances are Euclidean
between L2-normalised embeddings, without gradient for sampling.

Samplings (`sampling`, Table 8 of the paper):

- "distance" (the paper's T*): the negative k is drawn with probability
  ∝ min(λ, q(d_ik)⁻¹) among samples with y_k ≠ y_i, q(d) ∝ d^{D*−2}
  (1 − d²/4)^{(D*−3)/2} — exactly the weights of the distance-weighted miner
  (`tfdml.losses.mining.distance_weight_logits`: d clamped below at 0.5, which
  bounds q⁻¹ (the role of λ), weight 0 for d > 1.4 unless no candidate is
  that close); then the positive j with probability ∝ q(d_ij)⁻¹ (same weights)
  among samples with y_j ∉ {y_i, y_k}.
- "random": k uniform among y_k ≠ y_i, then j uniform among y_j ∉ {y_i, y_k}.
- "semihard": j uniform among y_j ≠ y_i, then k uniform among the semi-hard
  candidates y_k ∉ {y_i, y_j} with d_ij < d_ik < d_ij + margin, else the
  nearest y_k ∉ {y_i, y_j} (Schroff et al.'s rule with the third-class
  constraint).
- "min_distance" (Table 8's "min d(a,p)", our reading of it): the negative k
  as in "distance", then the positive j nearest to the anchor among
  y_j ∉ {y_i, y_k} (instead of a distance-weighted draw).
- "unconstrained": random triplets ignoring labels: j uniform among j ≠ i, k
  uniform among k ∉ {i, j}.

A triplet is invalid (masked, contributes 0) when a candidate set is empty:
a batch needs at least three classes (three samples for "unconstrained").
Sampling is O(B²) memory and O(B² log B) time (inverse-CDF search), also
under XLA.
"""
import keras
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_choice, check_int, check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.mining import (MinedTriplets, _argmin_masked, _random_member, _sample_rows,
                                 distance_weight_logits)
from tfdml.losses.ops import make_seed_generator, masked_mean, normalize_if, pair_values
from tfdml.losses.state import LossVariable

SAMPLINGS = ("distance", "min_distance", "random", "semihard", "unconstrained")
FORMS = ("margin", "triplet", "npair")


def other_class_mask(labels):
    """(B, B) bool: y_k ≠ y_i."""
    return tf.not_equal(labels[:, None], labels[None, :])


def third_class_mask(labels, other):
    """(B, B) bool, row i: samples j with y_j ∉ {y_i, y_{other[i]}}."""
    second = tf.gather(labels, other)
    return tf.logical_and(other_class_mask(labels), tf.not_equal(labels[None, :], second[:, None]))


def _weighted_logits(distances_, mask, embedding_dim):
    """Distance weights of `mask`'s entries; rows without any candidate get zeros (kept defined)."""
    logits = distance_weight_logits(distances_, mask, embedding_dim)
    return tf.where(tf.reduce_any(mask, axis=1, keepdims=True), logits, tf.zeros_like(logits))


def shared_negative_logits(distances_, labels, embedding_dim):
    """(B, B) log-weights of the negative k of each anchor i ("distance" sampling, step 1).

    Row i is log min(λ, q(d_ik)⁻¹) up to a constant over y_k ≠ y_i, −inf
    elsewhere; softmax of a row is the sampling distribution.
    """
    return _weighted_logits(distances_, other_class_mask(labels), embedding_dim)


def shared_positive_logits(distances_, labels, negative, embedding_dim):
    """(B, B) log-weights of the positive j of each anchor i given its negative `negative[i]` (step 2):
    q(d_ij)⁻¹ over y_j ∉ {y_i, y_k}, −inf elsewhere."""
    return _weighted_logits(distances_, third_class_mask(labels, negative), embedding_dim)


def _draw(logits, seed_generator):
    """One index per row from softmax(logits[i])."""
    return _sample_rows(tf.stop_gradient(logits), seed_generator)[:, 0]


def sample_shared_triplets(distances_, labels, sampling="distance", embedding_dim=None, margin=0.2, seed=None):
    """Samples one shared triplet per anchor (see the module docstring).

    Args:
        distances_: (B, B) Euclidean distances between L2-normalised embeddings
            (used without gradient).
        labels: (B,) integer class labels.
        sampling: one of `SAMPLINGS`.
        embedding_dim: D*, required for "distance".
        margin: semi-hard window width.
        seed: int, None or `keras.random.SeedGenerator`.

    Returns:
        `tfdml.losses.mining.MinedTriplets(anchor, positive, negative, valid)`,
        each (B,); anchor i = i.
    """
    check_choice(sampling, "sampling", SAMPLINGS)
    seed_generator = make_seed_generator(seed)
    labels = tf.reshape(labels, [-1])
    d = tf.stop_gradient(distances_)
    batch = tf.shape(labels)[0]
    anchor = tf.range(batch)
    others = other_class_mask(labels)
    if sampling == "unconstrained":
        not_self = tf.logical_not(tf.eye(batch, dtype=tf.bool))
        positive = _random_member(not_self, seed_generator)
        rest = tf.logical_and(not_self, tf.not_equal(anchor[None, :], positive[:, None]))
        negative = _random_member(rest, seed_generator)
        valid = tf.fill([batch], batch >= 3)
        return MinedTriplets(anchor, positive, negative, valid)
    if sampling == "semihard":
        positive = _random_member(others, seed_generator)
        third = third_class_mask(labels, positive)
        d_ij = tf.gather(d, positive, batch_dims=1)[:, None]
        window = tf.logical_and(third, tf.logical_and(d > d_ij, d < d_ij + margin))
        semihard = _random_member(window, seed_generator)
        negative = tf.where(tf.reduce_any(window, axis=1), semihard, _argmin_masked(d, third))
    else:
        if sampling in ("distance", "min_distance"):
            if embedding_dim is None:
                raise ValueError(f"embedding_dim is required for sampling={sampling!r}.")
            negative = _draw(shared_negative_logits(d, labels, embedding_dim), seed_generator)
        else:
            negative = _random_member(others, seed_generator)
        third = third_class_mask(labels, negative)
        if sampling == "distance":
            positive = _draw(shared_positive_logits(d, labels, negative, embedding_dim), seed_generator)
        elif sampling == "min_distance":
            positive = _argmin_masked(d, third)
        else:
            positive = _random_member(third, seed_generator)
    valid = tf.logical_and(tf.reduce_any(others, axis=1), tf.reduce_any(third, axis=1))
    return MinedTriplets(anchor, positive, negative, valid)


def sample_third_class(labels, other, count, seed=None):
    """`count` uniform draws (with replacement) per anchor i among samples with y_k ∉ {y_i, y_{other[i]}}.

    Returns:
        (B, count) int32 indices (0 in rows without any such sample).
    """
    seed_generator = make_seed_generator(seed)
    third = third_class_mask(tf.reshape(labels, [-1]), other)
    return tf.stack([_random_member(third, seed_generator) for _ in range(count)], axis=1)


@keras.saving.register_keras_serializable(package="tfdml")
class SharedTripletLoss(MetricLoss):
    """Ranking loss on shared inter-class triplets T* (Milbich et al., §3.2, L(T*; φ*) of eq. 3).

    Triplets come from `sample_shared_triplets` (`sampling`); with Euclidean
    distances d on L2-normalised embeddings, per valid triplet (i, j, k):

    - `form="margin"` (paper default, Wu et al.'s margin loss with its own
      learnable boundary β*): ℓ = [d_ij − β* + α]_+ + [β* − d_ik + α]_+,
      α = `margin`; loss = Σ ℓ / #(non-zero hinge terms) (Σ ℓ when there is
      none) + ν · Σ_valid β*. β* is a `LossVariable` in `state_layer`
      (`tfdml.sharing.SharingObjective` attaches it to the model).
    - `form="triplet"`: ℓ = [d_ij − d_ik + margin]_+, mean over valid triplets
      (the paper's choice with semi-hard sampling when the class loss is
      ProxyNCA).
    - `form="npair"`: the anchor–positive pair of each triplet with
      `negatives` negatives drawn uniformly (with replacement) among
      y_k ∉ {y_i, y_j}: ℓ = log(1 + Σ_t exp(s_ik_t − s_ij)), s the dot
      product of the (with `normalize`, L2-normalised) embeddings; mean over
      valid anchors ("N-pair with several random negatives").

    A batch without a valid triplet (fewer than three classes) gives 0 with a
    zero gradient; non-finite embeddings give NaN.

    Args:
        form: "margin", "triplet" or "npair".
        sampling: one of `SAMPLINGS` (default "distance", the paper's T*).
        margin: α of the margin form, m of the triplet form; also the
            semi-hard window.
        beta: initial β* of the margin form.
        learn_beta: train β*.
        nu: weight ν of the β* regulariser.
        lr_multiplier: learning-rate multiplier of β*.
        negatives: number of random negatives of the npair form.
        normalize: L2-normalise embeddings first.
        seed: seed of the sampling.

    Example (three classes at 0°, 120° and 240° on the unit circle: every
    distance is √3, so every triplet gives [√3 − √3 + 0.2]_+ whatever is drawn):

    >>> loss = tfdml.losses.SharedTripletLoss(form="triplet", sampling="random")
    >>> value = loss([0, 1, 2], [[1.0, 0.0], [-0.5, 0.8660254], [-0.5, -0.8660254]])
    >>> round(float(value), 4)
    0.2
    """

    config_args = ("form", "sampling", "margin", "beta", "learn_beta", "nu", "lr_multiplier", "negatives",
                   "normalize", "seed")
    random_sampling = True

    def __init__(self, form="margin", sampling="distance", margin=0.2, beta=1.2, learn_beta=True, nu=0.0,
                 lr_multiplier=1.0, negatives=5, normalize=True, seed=None, name="shared_triplet_loss", **kwargs):
        super().__init__(name=name, seed=seed, **kwargs)
        self.form = check_choice(form, "form", FORMS)
        self.sampling = check_choice(sampling, "sampling", SAMPLINGS)
        self.margin = check_number(margin, "margin")
        self.beta = check_number(beta, "beta")
        self.learn_beta = bool(learn_beta)
        self.nu = check_number(nu, "nu", 0.0)
        self.lr_multiplier = check_number(lr_multiplier, "lr_multiplier", greater_than=0.0)
        self.negatives = check_int(negatives, "negatives", minimum=1)
        self.normalize = bool(normalize)
        self.state_layer = (LossVariable((1,), self.beta, self.lr_multiplier, name="shared_margin_beta",
                                         dtype=self.compute_dtype.name)
                            if self.form == "margin" and self.learn_beta else None)

    def build_state(self, embedding_dim=None):
        """β* does not depend on the embedding size; it exists from construction."""
        return self.state_layer

    def compute(self, labels, embeddings):
        """The loss of the batch on its shared triplets; NaN when an embedding is not finite."""
        value = self._value(labels, normalize_if(embeddings, self.normalize))
        # NaN in → NaN out (a NaN distance must not be mistaken for 0 by the safe square root).
        return tf.where(tf.reduce_all(tf.math.is_finite(embeddings)), value, tf.constant(float("nan"), value.dtype))

    def _value(self, labels, x):
        d = distances.euclidean(x)
        triplets = sample_shared_triplets(d, labels, self.sampling, x.shape[-1], self.margin, self._seed_generator)
        if self.form == "npair":  # the anchor-positive pairs of T* with `negatives` random third-class negatives
            return self._npair(x, labels, triplets)
        valid = triplets.valid
        d_ij = pair_values(d, triplets.anchor, triplets.positive)
        d_ik = pair_values(d, triplets.anchor, triplets.negative)
        if self.form == "triplet":
            return masked_mean(tf.nn.relu(d_ij - d_ik + self.margin), valid)
        beta = (tf.cast(self.state_layer.value[0], x.dtype) if self.state_layer is not None
                else tf.constant(self.beta, x.dtype))
        weight = tf.cast(valid, x.dtype)
        pull = tf.nn.relu(d_ij - beta + self.margin) * weight
        push = tf.nn.relu(beta - d_ik + self.margin) * weight
        active = tf.reduce_sum(tf.cast(pull > 0, x.dtype) + tf.cast(push > 0, x.dtype))
        total = tf.reduce_sum(pull + push)
        value = tf.where(active > 0, total / tf.maximum(active, 1.0), total)
        return value + self.nu * beta * tf.reduce_sum(weight) if self.nu > 0 else value

    def _npair(self, x, labels, triplets):
        s = tf.matmul(x, x, transpose_b=True)
        s_ij = pair_values(s, triplets.anchor, triplets.positive)
        negatives = sample_third_class(labels, triplets.positive, self.negatives, self._seed_generator)
        s_ik = tf.gather(s, negatives, batch_dims=1)  # (B, negatives)
        logits = tf.concat([tf.zeros_like(s_ij)[:, None], s_ik - s_ij[:, None]], axis=1)
        return masked_mean(tf.reduce_logsumexp(logits, axis=1), triplets.valid)
