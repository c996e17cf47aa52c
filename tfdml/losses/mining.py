"""Triplet miners (Roth et al. 2020 §3.1 and the papers they cite).

The triplet family (triplet, margin, SNR, quadruplet losses) mines through one
entry point, `mined_distances(matrices, labels, mining, ...)`: it mines index
triplets on a batch's `PairMatrices`, applies ρ-regularisation and gathers the
anchor–positive and anchor–negative values, so a loss holds only its formula.
Underneath, `mine_triplets` turns two B×B matrices into index triplets
(anchor, positive, negative) plus a validity mask: `pos_distances` between
original points (for anchor–positive pairs) and `neg_distances` for
anchor–negative pairs (EE-pooled under Embedding Expansion, otherwise the same
matrix). Every miner is O(B²) in memory (O(B² log B) time for "semihard" and
"distance"), fixed-shape (XLA-compatible) and seedable.

Per-anchor miners (T = B, triplet t has anchor t):

- "hard" (batch-hard / HPHN, Hermans et al. 2017): farthest positive, nearest
  negative.
- "easy_positive_hard" (Xuan et al. 2020): nearest positive, nearest negative.
- "easy_positive_semihard" (Xuan et al. 2020, EPSHN): nearest positive, then the
  nearest negative farther than it (d_an > d_ap); anchors without one are invalid.
- "softhard" (Roth & Brattoli): a random positive among those farther than the
  nearest negative (all positives if none is), a random negative among those
  closer than the farthest positive (all negatives if none is).
- "random": a random positive and a random negative.

Per-(anchor, positive) miners (T = B·B, t = i·B + j):

- "semihard" (Schroff et al. 2015): a random negative with
  d_ap < d_an < d_ap + margin, else the nearest negative.
- "distance" (Wu et al. 2017, "Sampling matters"): a negative drawn with weight
  ∝ q(d)⁻¹, q(d) ∝ d^{D−2} (1 − d²/4)^{(D−3)/2}, d clamped below at 0.5, weight
  0 for d > 1.4 (uniform among all negatives if every weight is 0); computed in
  log space so nothing overflows. Assumes L2-normalised embeddings.

Parametric miners (`tfdml.losses.miners`; a name for their defaults, or
`{"name": ..., **arguments}`, or a miner object, kept as its config dict):

- "batch_easy_hard" (Xuan et al. 2020, pytorch-metric-learning's
  `BatchEasyHardMiner`): per anchor a positive and a negative by
  `pos_strategy` / `neg_strategy` (easy, semihard, hard) within allowed
  distance ranges (T = B); with one side "all", every pair of that side
  with the other side's pick (T = B·B).
- "angular" (pytorch-metric-learning's `AngularMiner`): every triplet whose
  angle at the negative exceeds `angle` degrees (B×B×B, like "all"); reads
  Euclidean distances between the L2-normalised (`normalize=False`: raw)
  embeddings of the loss's call, original points only.

"all" (not a miner): every valid triplet, as B×B×B broadcast tensors.
A triplet is valid when its anchor has a positive and a negative (and, for the
per-pair miners, j is a positive of i).

Every miner mines among the pairs of the `PairMatrices` masks, so a loss's
`pair_mining=` (`tfdml.losses.miners`) restricts the triplets' pairs first.
Miner names and config dicts serialise with a loss's config.
"""
import collections

import keras
import tensorflow as tf

from tfdml.checks import check_choice
from tfdml.losses import miners as miners_lib
from tfdml.losses.ops import make_seed_generator, pair_masks, pair_values, row_searchsorted

PER_ANCHOR = ("hard", "easy_positive_hard", "easy_positive_semihard", "softhard", "random")
PER_PAIR = ("semihard", "distance")
#: Miners with arguments (`tfdml.losses.miners`): "batch_easy_hard" picks triplets, "angular" filters all.
PARAMETRIC = ("batch_easy_hard", "angular")
#: Miners that pick triplets (ρ-regularisation replaces picked triplets).
PICKING = PER_ANCHOR + PER_PAIR + ("batch_easy_hard",)
MININGS = PER_ANCHOR + PER_PAIR + ("all",) + PARAMETRIC

MinedTriplets = collections.namedtuple("MinedTriplets", ["anchor", "positive", "negative", "valid"])
MinedDistances = collections.namedtuple("MinedDistances", ["d_ap", "d_an", "valid", "triplets", "swapped"])

DISTANCE_WEIGHT_FLOOR = 0.5
DISTANCE_WEIGHT_CUTOFF = 1.4


def miner_name(mining):
    """The name of a checked `mining` value (a name or a parametric miner's config dict)."""
    return mining["name"] if isinstance(mining, dict) else mining


def check_mining(mining, allowed=MININGS, rho=0.0):
    """`mining` if it is in `allowed` and compatible with ρ-regularisation.

    A parametric miner (`PARAMETRIC`) may be given as its name, its config dict
    or a `tfdml.losses.miners` object; dicts and objects are returned as the
    miner's full config dict (which serialises with the loss's config).

    Raises:
        ValueError: unknown `mining` or bad miner arguments (naming them), or
            `rho > 0` with a miner that picks no triplets ("all", "angular").
    """
    name = getattr(mining, "name", None) if not isinstance(mining, dict) else mining.get("name")
    name = mining if isinstance(mining, str) else name
    if isinstance(name, str) and name in miners_lib.miner_names("pair") and name not in PARAMETRIC:
        raise ValueError(f"mining={name!r} is not a triplet miner but a pair miner: pass it as pair_mining= "
                         "(with mining='all' the loss takes the triplets of its pairs).")
    if isinstance(mining, (dict, miners_lib.Miner)):
        miner = miners_lib.get_miner(mining, "mining", "triplet")
        check_choice(miner.name, "mining", allowed)
        _check_triplet_miner(miner)
        mining = miner.get_config()
    else:
        check_choice(mining, "mining", allowed)
    if rho > 0 and miner_name(mining) not in PICKING:
        raise ValueError(f"rho > 0 needs a miner that picks triplets; mining={miner_name(mining)!r} does not.")
    return mining


def _check_triplet_miner(miner):
    if miner.name == "batch_easy_hard" and miner.pos_strategy == miner.neg_strategy == "all":
        raise ValueError("mining='batch_easy_hard' with pos_strategy='all' and neg_strategy='all' is every "
                         "triplet: use mining='all'.")


def triplet_miner(mining):
    """The `tfdml.losses.miners` object of a parametric `mining` (None for the named miners)."""
    if miner_name(mining) not in PARAMETRIC:
        return None
    return miners_lib.get_miner(mining, "mining", "triplet")


def _angular_distances(miner, matrices):
    """The Euclidean distances the angular miner measures: of the loss's call embeddings
    (`matrices.source_embeddings`), else from the matrices themselves (L2-normalised
    embeddings only)."""
    if matrices.source_embeddings is not None:
        return miner.euclidean(matrices.source_embeddings)
    if not miner.normalize:
        raise ValueError("mining='angular' with normalize=False needs the embeddings: PairMatrices built by a loss.")
    return euclidean_from(tf.stop_gradient(matrices.positive), matrices.metric)


def euclidean_from(matrix, metric):
    """Euclidean distances from a (B, B) matrix in `metric` (unit vectors for "cosine_distance").

    Raises:
        ValueError: for another metric.
    """
    if metric == "euclidean":
        return matrix
    if metric == "squared_euclidean":
        return tf.sqrt(tf.nn.relu(matrix))
    if metric == "cosine_distance":
        return tf.sqrt(tf.nn.relu(2.0 * matrix))
    raise ValueError(f"mining='angular' needs Euclidean, squared Euclidean or cosine distances, got {metric!r}.")


def _argmin_masked(values, mask):
    big = tf.constant(values.dtype.max, values.dtype)
    return tf.argmin(tf.where(mask, values, big), axis=1, output_type=tf.int32)


def _argmax_masked(values, mask):
    small = tf.constant(values.dtype.min, values.dtype)
    return tf.argmax(tf.where(mask, values, small), axis=1, output_type=tf.int32)


def _random_member(mask, seed_generator):
    """Per row, a uniformly random column among True entries (0 if none)."""
    keys = keras.random.uniform(tf.shape(mask), seed=seed_generator)
    return tf.argmax(tf.where(mask, keys, -tf.ones_like(keys)), axis=1, output_type=tf.int32)


def _prefer(mask, fallback):
    """Rows of `mask` that have no True entry are replaced by `fallback`."""
    return tf.where(tf.reduce_any(mask, axis=1, keepdims=True), mask, fallback)


def _per_anchor(pos_d, neg_d, pos_mask, neg_mask, mining, seed_generator):
    has_pos = tf.reduce_any(pos_mask, axis=1)
    has_neg = tf.reduce_any(neg_mask, axis=1)
    valid = tf.logical_and(has_pos, has_neg)
    if mining == "hard":
        return _argmax_masked(pos_d, pos_mask), _argmin_masked(neg_d, neg_mask), valid
    if mining in ("easy_positive_hard", "easy_positive_semihard"):
        positive = _argmin_masked(pos_d, pos_mask)
        if mining == "easy_positive_hard":
            return positive, _argmin_masked(neg_d, neg_mask), valid
        d_ap = tf.gather(pos_d, positive, batch_dims=1)
        farther = tf.logical_and(neg_mask, neg_d > d_ap[:, None])
        valid = tf.logical_and(valid, tf.reduce_any(farther, axis=1))
        return positive, _argmin_masked(neg_d, farther), valid
    if mining == "softhard":
        big = tf.constant(pos_d.dtype.max, pos_d.dtype)
        max_pos = tf.reduce_max(tf.where(pos_mask, pos_d, -big), axis=1, keepdims=True)
        min_neg = tf.reduce_min(tf.where(neg_mask, neg_d, big), axis=1, keepdims=True)
        hard_pos = tf.logical_and(pos_mask, pos_d > min_neg)
        hard_neg = tf.logical_and(neg_mask, neg_d < max_pos)
        positive = _random_member(_prefer(hard_pos, pos_mask), seed_generator)
        negative = _random_member(_prefer(hard_neg, neg_mask), seed_generator)
        return positive, negative, valid
    # random
    return _random_member(pos_mask, seed_generator), _random_member(neg_mask, seed_generator), valid


def _sample_rows(logits, seed_generator):
    """B draws per row i from softmax(logits[i]) (entries at −inf never drawn), by
    inverse-CDF search: O(B² log B) time and O(B²) memory, also under XLA (where
    `categorical` would build a B×B×B Gumbel tensor)."""
    probabilities = tf.exp(logits - tf.reduce_max(logits, axis=1, keepdims=True))
    cdf = tf.cumsum(probabilities, axis=1)
    u = keras.random.uniform(tf.shape(logits), seed=seed_generator, dtype=logits.dtype) * cdf[:, -1:]
    index = row_searchsorted(cdf, u, side="right")  # first entry whose cdf exceeds u
    possible = probabilities > 0
    last = tf.shape(logits)[1] - 1 - tf.argmax(tf.cast(tf.reverse(possible, [1]), tf.int32), axis=1,
                                               output_type=tf.int32)
    return tf.minimum(index, last[:, None])


def _semihard_negatives(pos_d, neg_d, neg_mask, margin, seed_generator):
    """(B, B) negative index for every (anchor i, positive j) pair.

    Sorting each anchor's negatives once makes the semi-hard candidates of pair
    (i, j) a contiguous range [lo, hi) of the sorted row, found by binary search,
    so no B×B×B tensor is needed.
    """
    big = tf.constant(neg_d.dtype.max, neg_d.dtype)
    masked = tf.where(neg_mask, neg_d, big)
    order = tf.argsort(masked, axis=1, stable=True)
    sorted_d = tf.gather(masked, order, batch_dims=1)
    lo = row_searchsorted(sorted_d, pos_d, side="right")  # first index with d > d_ap
    hi = row_searchsorted(sorted_d, pos_d + margin, side="left")  # first with d >= d_ap + m
    count = tf.maximum(hi - lo, 0)
    u = keras.random.uniform(tf.shape(pos_d), seed=seed_generator, dtype="float32")
    offset = tf.minimum(tf.cast(tf.floor(u * tf.cast(count, tf.float32)), tf.int32), count - 1)
    pick = tf.where(count > 0, lo + offset, tf.zeros_like(lo))  # else nearest negative
    return tf.gather(order, pick, batch_dims=1)


def distance_weight_logits(neg_d, neg_mask, embedding_dim):
    """log q(d)⁻¹ of Wu et al. for every anchor row (−inf where not allowed).

    Args:
        neg_d: (B, B) Euclidean distances between L2-normalised embeddings.
        neg_mask: (B, B) negative-pair mask.
        embedding_dim: the embedding dimension D.

    Returns:
        (B, B) float32 logits; rows with no negative within the cut-off get
        uniform logits over all negatives.
    """
    d = tf.cast(neg_d, tf.float32)
    dim = float(embedding_dim)
    clamped = tf.maximum(d, DISTANCE_WEIGHT_FLOOR)
    one_minus = tf.maximum(1.0 - tf.square(clamped) / 4.0, 1e-8)
    log_q = (dim - 2.0) * tf.math.log(clamped) + ((dim - 3.0) / 2.0) * tf.math.log(one_minus)
    allowed = tf.logical_and(neg_mask, d <= DISTANCE_WEIGHT_CUTOFF)
    allowed = _prefer(allowed, neg_mask)
    log_w = tf.where(allowed, -log_q, tf.zeros_like(log_q))
    peak = tf.reduce_max(tf.where(allowed, log_w, tf.fill(tf.shape(log_w), -1e30)), axis=1, keepdims=True)
    neg_inf = tf.fill(tf.shape(log_w), float("-inf"))
    return tf.where(allowed, log_w - tf.stop_gradient(peak), neg_inf)


def _distance_negatives(neg_d, neg_mask, embedding_dim, seed_generator):
    logits = distance_weight_logits(neg_d, neg_mask, embedding_dim)
    has_neg = tf.reduce_any(neg_mask, axis=1, keepdims=True)
    logits = tf.where(has_neg, logits, tf.zeros_like(logits))  # keep sampler defined
    return _sample_rows(tf.stop_gradient(logits), seed_generator)  # (B, B): sample j for the pair (i, j)


def _easy_hard_triplets(miner, pos_d, neg_d, pos_mask, neg_mask):
    """`MinedTriplets` of a `BatchEasyHardMiner` (T = B, or B·B with one side "all")."""
    positive, negative = miner.select(pos_d, neg_d, pos_mask, neg_mask)
    batch = tf.shape(pos_d)[0]
    index = tf.range(batch)
    if positive is not None and negative is not None:
        return MinedTriplets(index, positive[0], negative[0], tf.logical_and(positive[1], negative[1]))
    anchor = tf.repeat(index, batch)
    other = tf.tile(index, [batch])
    if positive is None:  # every positive pair (i, j), t = i·B + j, with i's negative
        valid = tf.logical_and(pos_mask, negative[1][:, None])
        return MinedTriplets(anchor, other, tf.gather(negative[0], anchor), tf.reshape(valid, [-1]))
    valid = tf.logical_and(neg_mask, positive[1][:, None])  # every negative pair (i, k), t = i·B + k
    return MinedTriplets(anchor, tf.gather(positive[0], anchor), other, tf.reshape(valid, [-1]))


def mine_triplets(pos_distances, neg_distances, labels, mining, margin=0.2, seed=None, embedding_dim=None,
                  masks=None):
    """Mines triplets from a batch (see the module docstring for each miner).

    Args:
        pos_distances: (B, B) distances between original points.
        neg_distances: (B, B) distances for negative pairs (EE-pooled or equal to
            `pos_distances`).
        labels: (B,) integer labels.
        mining: a name in `PICKING` (or a "batch_easy_hard" config dict).
        margin: semi-hard window width.
        seed: int, None or `keras.random.SeedGenerator` for the random miners.
        embedding_dim: embedding dimension D, required for "distance".
        masks: (positive, negative) (B, B) bool pair masks to mine among
            (default: all pairs of the labels).

    Returns:
        `MinedTriplets(anchor, positive, negative, valid)`, int32 / bool of shape
        (T,): T = B for per-anchor miners, B·B for per-pair miners.
    """
    mining = check_mining(mining, PICKING)
    seed_generator = make_seed_generator(seed)
    labels = tf.reshape(labels, [-1])
    pos_mask, neg_mask = pair_masks(labels) if masks is None else masks
    if miner_name(mining) == "batch_easy_hard":
        return _easy_hard_triplets(triplet_miner(mining), pos_distances, neg_distances, pos_mask, neg_mask)
    batch = tf.shape(labels)[0]
    index = tf.range(batch)
    if mining in PER_ANCHOR:
        positive, negative, valid = _per_anchor(
            pos_distances, neg_distances, pos_mask, neg_mask, mining, seed_generator
        )
        return MinedTriplets(index, positive, negative, valid)
    if mining == "semihard":
        negative = _semihard_negatives(pos_distances, neg_distances, neg_mask, margin, seed_generator)
    else:
        if embedding_dim is None:
            raise ValueError("embedding_dim is required for mining='distance'.")
        negative = _distance_negatives(neg_distances, neg_mask, embedding_dim, seed_generator)
    anchor = tf.repeat(index, batch)
    positive = tf.tile(index, [batch])
    has_neg = tf.reduce_any(neg_mask, axis=1)
    valid = tf.logical_and(pos_mask, has_neg[:, None])
    return MinedTriplets(anchor, positive, tf.reshape(negative, [-1]), tf.reshape(valid, [-1]))


def apply_rho(triplets, labels, rho, seed_generator):
    """Roth et al.'s ρ-regularisation of mined triplets.

    With probability `rho` per triplet, (i, p, n) becomes (i, i, j) with j a
    random other sample of i's class (when i has one): the loss then pushes a
    same-class sample away (d_ap = 0, d_an = d(i, j) on original points).

    Args:
        triplets: `MinedTriplets`.
        labels: (B,) integer labels.
        rho: replacement probability in [0, 1].
        seed_generator: int, None or `keras.random.SeedGenerator`.

    Returns:
        (MinedTriplets, swapped bool (T,)) — `swapped` marks replaced triplets,
        whose "negative" must use the original (not EE-pooled) distance.
    """
    if rho <= 0.0:
        return triplets, tf.zeros_like(triplets.valid)
    seed_generator = make_seed_generator(seed_generator)
    labels = tf.reshape(labels, [-1])
    pos_mask, _ = pair_masks(labels)
    same_class_other = _random_member(pos_mask, seed_generator)  # (B,)
    has_other = tf.reduce_any(pos_mask, axis=1)
    draw = keras.random.uniform(tf.shape(triplets.anchor), seed=seed_generator, dtype="float32")
    swapped = tf.logical_and(draw < rho, tf.gather(has_other, triplets.anchor))
    swapped = tf.logical_and(swapped, triplets.valid)
    replaced = MinedTriplets(
        triplets.anchor,
        tf.where(swapped, triplets.anchor, triplets.positive),
        tf.where(swapped, tf.gather(same_class_other, triplets.anchor), triplets.negative),
        triplets.valid,
    )
    return replaced, swapped


def sample_other_class(labels, first, second, seed_generator):
    """Per entry t, a uniformly random sample whose class is neither that of
    `first[t]` nor that of `second[t]` (the quadruplet loss's fourth sample).

    Samples sorted by class form contiguous blocks, so the r-th admissible sample
    is found by skipping (at most) the two excluded blocks: O(B²) memory for
    block starts and sizes, O(1) per entry — no T×B candidate mask.

    Args:
        labels: (B,) integer labels.
        first, second: (T,) int32 sample indices whose classes are excluded
            (they may be of the same class).
        seed_generator: int, None or `keras.random.SeedGenerator`.

    Returns:
        (index (T,) int32, exists (T,) bool); `index` is 0 where no admissible
        sample exists.
    """
    seed_generator = make_seed_generator(seed_generator)
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


def mined_distances(matrices, labels, mining, margin=0.2, rho=0.0, seed=None, values=None):
    """Mines triplets and gathers their anchor–positive / anchor–negative values.

    The one mining path of the triplet family: mine on `matrices` (without
    gradient), apply ρ-regularisation (`apply_rho`), then read each triplet's
    values from `values`. A ρ-replaced triplet (i, i, j) reads d(i, j) from
    `values.positive` (j is of i's class: an original, not EE-pooled, pair);
    every other anchor–negative value comes from `values.negative`.

    Args:
        matrices: `tfdml.losses.pairs.PairMatrices` to mine on (`positive` for
            anchor–positive, `negative` for anchor–negative pairs).
        labels: (B,) integer labels.
        mining: a name in `MININGS` (or a parametric miner's config dict).
            "all" mines nothing: every valid triplet, as broadcast tensors
            d_ap (B, B, 1), d_an (B, 1, B), valid (B, B, B); "angular" the
            same with the triplets below its angle invalid. Triplets are mined
            among the pairs of `matrices.positive_mask` / `negative_mask`.
        margin: semi-hard window width.
        rho: ρ-regularisation probability (0 with "all").
        seed: int, None or `keras.random.SeedGenerator` of the random draws
            (mining first, then ρ).
        values: `PairMatrices` holding the values the loss uses (another metric
            on the same batch, e.g. cosine similarities or SNR distances);
            default `matrices`.

    Returns:
        `MinedDistances(d_ap, d_an, valid, triplets, swapped)`: values and
        validity of the T mined triplets ((T,) each), the `MinedTriplets` after
        ρ and the bool (T,) mask of ρ-replaced triplets (both None for "all").
    """
    mining = check_mining(mining, MININGS, rho)
    values = matrices if values is None else values
    if miner_name(mining) in ("all", "angular"):
        valid = tf.logical_and(matrices.positive_mask[:, :, None], matrices.negative_mask[:, None, :])
        if miner_name(mining) == "angular":
            valid = tf.logical_and(valid, triplet_miner(mining).keep(_angular_distances(triplet_miner(mining),
                                                                                        matrices)))
        return MinedDistances(values.positive[:, :, None], values.negative[:, None, :], valid, None, None)
    seed_generator = make_seed_generator(seed)
    triplets = mine_triplets(tf.stop_gradient(matrices.positive), tf.stop_gradient(matrices.negative), labels,
                             mining, margin=margin, seed=seed_generator, embedding_dim=matrices.embedding_dim,
                             masks=(matrices.positive_mask, matrices.negative_mask))
    triplets, swapped = apply_rho(triplets, labels, rho, seed_generator)
    d_ap = pair_values(values.positive, triplets.anchor, triplets.positive)
    negative_pairs = tf.stack([triplets.anchor, triplets.negative], axis=1)
    d_an = tf.gather_nd(values.negative, negative_pairs)
    if rho > 0:
        d_an = tf.where(swapped, tf.gather_nd(values.positive, negative_pairs), d_an)
    return MinedDistances(d_ap, d_an, triplets.valid, triplets, swapped)
