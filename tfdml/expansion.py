"""Embedding Expansion (Ko & Gu, "Embedding Expansion: Augmentation in Embedding
Space for Deep Metric Learning", CVPR 2020).

For a positive pair (x_i, x_j) (x_i before x_j in batch order) EE generates the n
points that divide the segment into n + 1 equal parts,

    x̄_k = (k · x_i + (n + 1 − k) · x_j) / (n + 1),   k = 1..n,

L2-normalised when `normalize=True` (paper eqs. 7–10). Eq. 7 as printed divides
by n instead of n + 1, which would make x̄_n = x_i, an original point rather than
a new one; the text's "n + 1 equal parts" (above) is what is implemented.
Synthetic points carry the class label of their pair. Losses use them only for
negative pairs: every negative pair (i, k) of original points keeps its place in
the loss, but its distance (or similarity) is replaced by the hardest value over
a pool of original and synthetic points (paper eqs. 11–15), in the mining
conditions and in the loss alike.

Speed: nothing here touches the embedding dimension. Synthetic points are linear
combinations x̄ = W x of the originals, so their inner products follow from the
B×B Gram matrix G = X Xᵀ: ⟨x̄_s, x_b⟩ = (W G)_sb and ⟨x̄_s, x̄_t⟩ = (W G Wᵀ)_st, and
their squared norms are the diagonal of W G Wᵀ. No B×B×B tensor is built.

Memory: a batch of B points with S synthetic points builds several
(B + S)×(B + S) matrices (Gram matrix, metric, pooling), so memory grows as
O((B + S)²) — S = n·⌊B/2⌋ for consecutive pairs, n·Σ_c m_c(m_c − 1)/2 for all
pairs — i.e. quadratically in `n_points`. `EmbeddingExpansion` estimates it
up front and raises a `ValueError` above `memory_budget_mb`.
"""
import keras
import numpy as np
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_choice, check_int, check_number

PAIR_MODES = ("consecutive", "all")
"""Values of `EmbeddingExpansion(pairs=)`: `"consecutive"` (samples 1&2, 3&4, … of each class, the official EE code) or `"all"` positive pairs."""
POOLING_MODES = ("class", "anchor")
"""Values of `EmbeddingExpansion(pooling=)`: hardest pair over two whole classes (`"class"`, Ko & Gu eqs. 11–15) or per anchor group (`"anchor"`, the official code)."""
#: (B + S)×(B + S) matrices counted by the memory estimate (Gram matrix, metric, pooling copies).
ESTIMATED_MATRICES = 4
"""Number of (B + S)×(B + S) matrices counted by the memory estimate (Gram matrix, metric, pooling copies)."""


def _positive_pairs(labels, pairs):
    """Index pairs (first, second) of original points that get synthetic points.

    Args:
        labels: (B,) integer labels.
        pairs: "consecutive" — within each class, in batch order, the 1st and 2nd
            samples form a pair, the 3rd and 4th, ... (odd last one gets none);
            "all" — every i < j of the same class.

    Returns:
        first, second: int32 (K,) indices; valid: bool (K,). For "consecutive" K is
        ⌊B/2⌋ (a static bound) and invalid slots are masked; for "all" K is the exact
        number of pairs.
    """
    batch = tf.shape(labels)[0]
    same = tf.equal(labels[:, None], labels[None, :])
    index = tf.range(batch)
    before = index[None, :] < index[:, None]  # before[i, j]: j precedes i
    if pairs == "all":
        upper = tf.logical_and(same, tf.logical_not(before))
        upper = tf.logical_and(upper, tf.not_equal(index[:, None], index[None, :]))
        ij = tf.cast(tf.where(upper), tf.int32)
        first, second = ij[:, 0], ij[:, 1]
        return first, second, tf.ones_like(first, dtype=tf.bool)
    # Rank of each sample within its class, in batch order.
    rank = tf.reduce_sum(tf.cast(tf.logical_and(same, before), tf.int32), axis=1)
    follows = tf.logical_and(same, tf.equal(rank[None, :], rank[:, None] + 1))
    has_partner = tf.logical_and(tf.equal(rank % 2, 0), tf.reduce_any(follows, axis=1))
    partner = tf.cast(tf.argmax(tf.cast(follows, tf.int32), axis=1), tf.int32)
    # Stable compaction of the pair starts into ⌊B/2⌋ slots (pairs use 2 points each).
    order = tf.argsort(tf.cast(tf.logical_not(has_partner), tf.int32), stable=True)
    order = order[: batch // 2]
    return order, tf.gather(partner, order), tf.gather(has_partner, order)


def _interpolation_weights(n_points, dtype):
    """(n,) weights of x_i and x_j for k = 1..n: k/(n+1) and (n+1−k)/(n+1)."""
    k = tf.range(1, n_points + 1, dtype=dtype)
    total = tf.cast(n_points + 1, dtype)
    return k / total, (total - k) / total


@keras.saving.register_keras_serializable(package="tfdml")
class EmbeddingExpansion:
    """Embedding Expansion configuration and computation.

    Args:
        n_points: number n of synthetic points per positive pair; 0 disables EE
            (the loss is then exactly the loss without EE).
        normalize: L2-normalise synthetic points (required for losses on
            normalised embeddings, paper eqs. 7–10). Use `False` for losses on
            unnormalised embeddings such as N-pair.
        pairs: "consecutive" (official code, default): within each class in batch
            order the 1st and 2nd samples form a pair, the 3rd and 4th, and so on
            — S = n·⌊m/2⌋ points per class of m samples. "all": every positive
            pair (the paper's P) — S = n·m(m−1)/2 per class.
        pooling: how a negative pair (i, k) between classes a = y_i and b = y_k
            is pooled. "class" (paper eqs. 11–15): hardest pair among all points
            (original or synthetic) of class a × all points of class b. "anchor"
            (official code): hardest pair in G(i) × G(k), where G(i) is x_i plus
            the synthetic points on segments having x_i as an end. `None` lets
            the loss choose its class attribute `default_pooling`: "anchor" for
            the triplet family (triplet — exactly the official HPHN code —,
            margin, quadruplet and SNR), "class" (the paper's equations) for
            the other pair-based losses.
        memory_budget_mb: largest estimated memory, in MiB, of the
            (B + S)×(B + S) matrices of one batch (`estimated_bytes`: 4
            matrices of the compute dtype). Above it a loss call raises a
            `ValueError` before allocating anything (a `tf.debugging`
            assertion when the size is only known at run time, e.g.
            `pairs="all"` in a graph). Default 2048.
    """

    def __init__(self, n_points=2, normalize=True, pairs="consecutive", pooling=None, memory_budget_mb=2048):
        self.n_points = check_int(n_points, "n_points", minimum=0)
        self.normalize = bool(normalize)
        self.pairs = check_choice(pairs, "pairs", PAIR_MODES)
        self.pooling = None if pooling is None else check_choice(pooling, "pooling", POOLING_MODES)
        self.memory_budget_mb = check_number(memory_budget_mb, "memory_budget_mb", greater_than=0.0)

    def get_config(self):
        """Config of this expansion: its constructor arguments (Keras serialisation)."""
        return {
            "n_points": self.n_points,
            "normalize": self.normalize,
            "pairs": self.pairs,
            "pooling": self.pooling,
            "memory_budget_mb": self.memory_budget_mb,
        }

    @classmethod
    def from_config(cls, config):
        """An expansion from `get_config`'s dict (Keras serialisation)."""
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"EmbeddingExpansion({args})"

    def __eq__(self, other):
        return isinstance(other, EmbeddingExpansion) and self.get_config() == other.get_config()

    # ------------------------------------------------------------------ memory
    def synthetic_count(self, labels):
        """S, the number of synthetic points (slots) EE builds for a batch.

        Returns:
            A Python int when it is known before running (consecutive pairs
            with a static batch size, or eager labels), else an int32 tensor.
        """
        batch = labels.shape[0]
        if self.pairs == "consecutive":
            slots = batch // 2 if batch is not None else tf.shape(labels)[0] // 2
        elif tf.executing_eagerly():
            _, counts = np.unique(np.asarray(labels), return_counts=True)
            slots = int(np.sum(counts * (counts - 1) // 2))
        else:
            same = tf.reduce_sum(tf.cast(tf.equal(labels[:, None], labels[None, :]), tf.int32))
            slots = (same - tf.shape(labels)[0]) // 2
        return self.n_points * slots

    def estimated_bytes(self, batch, synthetic, dtype=tf.float32):
        """Estimated memory of the (B + S)×(B + S) matrices of one batch
        (`ESTIMATED_MATRICES` of them, `dtype` entries)."""
        return ESTIMATED_MATRICES * (batch + synthetic) ** 2 * tf.as_dtype(dtype).size

    def check_memory(self, labels, dtype=tf.float32):
        """Raises a `ValueError` (or, for sizes known only at run time, adds a
        `tf.debugging` assertion) when `estimated_bytes` exceeds
        `memory_budget_mb`."""
        synthetic = self.synthetic_count(labels)
        batch = labels.shape[0] if labels.shape[0] is not None else tf.shape(labels)[0]
        budget = self.memory_budget_mb * 2 ** 20
        text = (f"EmbeddingExpansion(n_points={self.n_points}, pairs={self.pairs!r}) would build several "
                f"(B + S)×(B + S) matrices (S synthetic points)")
        advice = "Lower n_points or the batch size, or raise memory_budget_mb."
        if isinstance(synthetic, int) and isinstance(batch, int):
            needed = self.estimated_bytes(batch, synthetic, dtype)
            if needed > budget:
                points = batch + synthetic
                raise ValueError(f"{text}: {points}×{points} for a batch of {batch} (S = {synthetic}), about "
                                 f"{needed / 2 ** 20:,.0f} MiB, above memory_budget_mb={self.memory_budget_mb:g}. "
                                 f"{advice}")
            return None
        needed = self.estimated_bytes(tf.cast(batch, tf.float64), tf.cast(synthetic, tf.float64), dtype)
        return tf.debugging.assert_less_equal(
            needed, tf.constant(budget, tf.float64),
            message=f"{text} above memory_budget_mb={self.memory_budget_mb:g} (estimated bytes below). {advice}")

    # ------------------------------------------------------------------ points
    def synthetic_structure(self, labels, dtype=tf.float32):
        """Which originals each synthetic point combines, and with which weights.

        Args:
            labels: (B,) integer labels.
            dtype: float dtype of the weights.

        Returns:
            dict of (S,) tensors, points ordered pair by pair with k = 1..n within a
            pair (S = K·n for K pair slots): `first`, `second` endpoint indices,
            `weight_first` = k/(n+1) and `weight_second` = (n+1−k)/(n+1) (both 0 on
            invalid slots), `valid` bool and `labels`; plus `num_slots` K.
        """
        n = self.n_points
        check = self.check_memory(labels, dtype)
        if check is not None:
            with tf.control_dependencies([check]):
                labels = tf.identity(labels)
        first, second, valid = _positive_pairs(labels, self.pairs)
        w_first, w_second = _interpolation_weights(n, dtype)
        num_pairs = tf.shape(first)[0]
        valid_s = tf.reshape(tf.repeat(valid[:, None], n, axis=1), [-1])
        mask = tf.cast(valid_s, dtype)
        first_s = tf.reshape(tf.repeat(first[:, None], n, axis=1), [-1])
        return {
            "first": first_s,
            "second": tf.reshape(tf.repeat(second[:, None], n, axis=1), [-1]),
            "weight_first": tf.reshape(tf.tile(w_first[None, :], [num_pairs, 1]), [-1]) * mask,
            "weight_second": tf.reshape(tf.tile(w_second[None, :], [num_pairs, 1]), [-1]) * mask,
            "valid": valid_s,
            "labels": tf.gather(labels, first_s),
            "num_slots": num_pairs,
        }

    def expanded_points(self, embeddings, labels):
        """All original and synthetic-slot points, for metrics without a Gram form.

        Returns:
            (points (B + S, D) — invalid slots are zero rows that `pool` ignores,
            structure dict from `synthetic_structure`).
        """
        embeddings = tf.convert_to_tensor(embeddings)
        structure = self.synthetic_structure(labels, embeddings.dtype)
        synthetic = _combine(embeddings, structure, axis=0)
        if self.normalize:
            synthetic = distances.l2_normalize(synthetic)
        return tf.concat([embeddings, synthetic], axis=0), structure

    def expand(self, embeddings, labels):
        """Explicit synthetic points (for analysis; losses use the Gram form).

        Args:
            embeddings: (B, D) float embeddings.
            labels: (B,) integer labels.

        Returns:
            points (B + S, D) — originals first, then the valid synthetic points in
            pair order, k = 1..n; point_labels (B + S,); is_synthetic (B + S,) bool.
        """
        labels = tf.convert_to_tensor(labels)
        points, structure = self.expanded_points(embeddings, labels)
        batch = tf.shape(labels)[0]
        keep = tf.concat([tf.ones_like(labels, dtype=tf.bool), structure["valid"]], axis=0)
        point_labels = tf.concat([labels, structure["labels"]], axis=0)
        is_synthetic = tf.range(tf.shape(keep)[0]) >= batch
        return (
            tf.boolean_mask(points, keep),
            tf.boolean_mask(point_labels, keep),
            tf.boolean_mask(is_synthetic, keep),
        )

    def expanded_gram(self, gram, labels, synthetic_norm=1.0):
        """Gram matrix of all original and synthetic points, from the B×B Gram.

        Args:
            gram: (B, B) Gram matrix of the original embeddings.
            labels: (B,) integer labels.
            synthetic_norm: the norm `normalize=True` gives synthetic points
                (1; 1/c when `gram` is that of the embeddings divided by c).

        Returns:
            (gram_all (P, P) with P = B + S and the original block equal to `gram`
            bit for bit, structure dict from `synthetic_structure`; with
            `normalize=True` its weights include the normalisation).
        """
        structure = self.synthetic_structure(labels, gram.dtype)
        if self.normalize:
            # Normalisation is folded into the weights (x̄ = (w_f x_f + w_s x_s)/‖·‖), with the squared norms
            # from three Gram entries: no pass over an (S, S) matrix that XLA would fuse with the gathers
            # into a slow kernel (3–4× slower than graph mode at B = 1024 on CPU).
            first, second = structure["first"], structure["second"]
            w_first, w_second = structure["weight_first"], structure["weight_second"]
            diagonal = tf.linalg.diag_part(gram)
            cross = tf.gather_nd(gram, tf.stack([first, second], axis=1))
            sq_norm = (w_first * w_first * tf.gather(diagonal, first) + 2.0 * w_first * w_second * cross
                       + w_second * w_second * tf.gather(diagonal, second))
            inv = distances.inverse_norm(sq_norm) * synthetic_norm
            inv = tf.where(structure["valid"], inv, tf.zeros_like(inv))
            structure = dict(structure, weight_first=w_first * inv, weight_second=w_second * inv)
        syn_orig = _combine(gram, structure, axis=0)  # (S, B) = W G
        syn_syn = _combine(tf.transpose(syn_orig), structure, axis=0)  # (S, S) = W (W G)ᵀ = W G Wᵀ (G symmetric)
        top = tf.concat([gram, tf.transpose(syn_orig)], axis=1)
        bottom = tf.concat([syn_orig, syn_syn], axis=1)
        return tf.concat([top, bottom], axis=0), structure

    # ----------------------------------------------------------------- pooling
    def pooled_matrix(self, gram, labels, metric, pooling, synthetic_norm=1.0):
        """Hardest negative-pair values between original points under EE.

        Args:
            gram: (B, B) Gram matrix of the (possibly normalised) embeddings.
            labels: (B,) integer labels.
            metric: a `tfdml.distances.METRICS` name; distances pool by minimum,
                similarities by maximum.
            pooling: "class" or "anchor" (see the class docstring).
            synthetic_norm: see `expanded_gram`.

        Returns:
            (matrix (B, B) — the metric between originals, (B, B) pooled matrix).
            Only the entries of negative pairs of the pooled matrix are meaningful.
        """
        batch = tf.shape(labels)[0]
        gram_all, structure = self.expanded_gram(gram, labels, synthetic_norm)
        # The square root is monotone: pool squared distances, take roots on B×B only.
        pooled_metric = "squared_euclidean" if metric == "euclidean" else metric
        full = metric_from_gram(gram_all, pooled_metric)
        pooled = self.pool(full, labels, structure, distances.is_similarity(metric), pooling)
        original = full[:batch, :batch]
        if metric == "euclidean":
            return distances.safe_sqrt(original), distances.safe_sqrt(pooled)
        return original, pooled

    def pool(self, full, labels, structure, similarity, pooling):
        """Pools a (P, P) matrix over all points down to (B, B) original pairs.

        "anchor": pooled[i, k] = hardest over G(i) × G(k). "class": the hardest over
        the classes' pools, which is the hardest anchor-pooled value over i' of
        class y_i and k' of class y_k (every synthetic point lies in the pool G of
        its endpoints, which belong to its class).

        Args:
            full: (B + S, B + S) metric among original and synthetic-slot points
                (layout of `expanded_gram` / `expanded_points`). It need not be
                symmetric.
            labels: (B,) integer labels.
            structure: dict from `synthetic_structure`.
            similarity: True to pool by maximum, False by minimum.
            pooling: "class" or "anchor".

        Returns:
            (B, B) pooled matrix (meaningful for negative pairs).
        """
        check_choice(pooling, "pooling", POOLING_MODES)
        batch = tf.shape(labels)[0]
        if self.n_points == 0:
            pooled = full[:batch, :batch]
        elif self.pairs == "consecutive":
            pooled = _anchor_pool_disjoint(full, labels, structure, self.n_points, similarity)
        else:
            pooled = _anchor_pool_segments(full, labels, structure, similarity)
        if pooling == "anchor":
            return pooled
        return _class_pool(pooled, labels, similarity)


def _combine(matrix, structure, axis=0):
    """Applies the synthetic coefficients W: `W @ matrix` (axis 0) or `matrix @ Wᵀ` (axis 1).

    Each row of W has two non-zeros, so this is two gathers, not a matmul.
    """
    wf, ws = structure["weight_first"], structure["weight_second"]
    if axis == 0:
        return (wf[:, None] * tf.gather(matrix, structure["first"])
                + ws[:, None] * tf.gather(matrix, structure["second"]))
    # Axis-1 gathers go through a transpose: TF's axis-1 gather gradient fails on
    # empty index lists (a batch without positive pairs under pairs="all").
    return tf.transpose(_combine(tf.transpose(matrix), structure, axis=0))


def _anchor_pool_disjoint(full, labels, structure, n_points, similarity):
    """Anchor pooling when every original point ends at most one pair slot.

    The n synthetic points of a slot are contiguous, so pooling is a reduction
    over that axis followed by a gather of each original point's slot (dense ops
    only; no scatter).
    """
    batch = tf.shape(labels)[0]
    reduce = tf.reduce_max if similarity else tf.reduce_min
    pair_reduce = tf.maximum if similarity else tf.minimum
    num_slots = structure["num_slots"]
    slot_first = structure["first"][::n_points]
    slot_second = structure["second"][::n_points]
    slot_valid = structure["valid"][::n_points]
    index = tf.range(batch)
    ends = tf.logical_and(
        tf.logical_or(tf.equal(index[:, None], slot_first[None, :]), tf.equal(index[:, None], slot_second[None, :])),
        slot_valid[None, :],
    )  # (B, K)
    has_slot = tf.reduce_any(ends, axis=1)
    slot_of = tf.cast(tf.argmax(tf.cast(ends, tf.int32), axis=1), tf.int32)
    points = tf.shape(full)[1]
    rows_by_slot = reduce(tf.reshape(full[batch:], [num_slots, n_points, points]), axis=1)  # (K, P)
    rows = tf.where(has_slot[:, None], pair_reduce(full[:batch], tf.gather(rows_by_slot, slot_of)), full[:batch])
    cols_by_slot = reduce(tf.reshape(rows[:, batch:], [batch, num_slots, n_points]), axis=2)  # (B, K)
    cols = tf.gather(cols_by_slot, slot_of, axis=1)
    return tf.where(has_slot[None, :], pair_reduce(rows[:, :batch], cols), rows[:, :batch])


def _anchor_pool_segments(full, labels, structure, similarity):
    """Anchor pooling for overlapping pools ("all" pairs) via segment reductions.

    Every synthetic point belongs to the pools of its two endpoints.
    """
    batch = tf.shape(labels)[0]
    segment_reduce = tf.math.unsorted_segment_max if similarity else tf.math.unsorted_segment_min
    pair_reduce = tf.maximum if similarity else tf.minimum
    index = tf.range(batch)
    dummy = batch  # segment of invalid synthetic slots, dropped at the end
    group_a = tf.concat([index, tf.where(structure["valid"], structure["first"], dummy)], 0)
    group_b = tf.concat([index, tf.where(structure["valid"], structure["second"], dummy)], 0)

    def reduce_rows(m):
        return pair_reduce(segment_reduce(m, group_a, batch + 1), segment_reduce(m, group_b, batch + 1))

    rows = reduce_rows(full)  # (B + 1, P)
    return tf.transpose(reduce_rows(tf.transpose(rows)))[:batch, :batch]


def class_representatives(labels):
    """Index of the first sample of each sample's class in the batch, (B,)."""
    same = tf.equal(labels[:, None], labels[None, :])
    return tf.cast(tf.argmax(tf.cast(same, tf.int32), axis=1), tf.int32)


def _class_pool(anchor_pooled, labels, similarity):
    """Hardest anchor-pooled value over all pairs of samples of the two classes."""
    batch = tf.shape(labels)[0]
    segment_reduce = tf.math.unsorted_segment_max if similarity else tf.math.unsorted_segment_min
    representative = class_representatives(labels)
    rows = segment_reduce(anchor_pooled, representative, batch)
    by_class = tf.transpose(segment_reduce(tf.transpose(rows), representative, batch))
    return tf.gather(tf.gather(by_class, representative, axis=0), representative, axis=1)


def metric_from_gram(gram, metric):
    """Pairwise `metric` among the points of a square Gram matrix.

    The diagonal of distance metrics is set to exactly zero.
    """
    sq_norms = tf.linalg.diag_part(gram)
    result = distances.from_gram(gram, sq_norms, sq_norms, metric)
    if not distances.is_similarity(metric):
        result = distances.zero_diagonal(result)
    return result


def expand(embeddings, labels, n_points=2, normalize=True, pairs="consecutive"):
    """Functional form of `EmbeddingExpansion.expand`.

    Returns:
        points (B + S, D) (originals first), point_labels (B + S,), is_synthetic
        (B + S,) bool.
    """
    labels = tf.reshape(tf.convert_to_tensor(labels), [-1])
    return EmbeddingExpansion(n_points, normalize, pairs).expand(embeddings, labels)
