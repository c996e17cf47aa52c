"""Parametric miners: pair miners for every pair-based loss, two more triplet miners.

Pair miners (`pair_mining=` of every pair-based loss, handled in
`tfdml.losses.base.MetricLoss`) restrict the positive and negative pair masks
of the batch's `tfdml.losses.pairs.PairMatrices`: the loss then runs its own
formula over the mined pairs only, and a triplet-family loss forms its
triplets from them (with `mining="all"`: every (a, p, n) whose (a, p) and
(a, n) were both mined — pytorch-metric-learning's conversion of a pair
miner's output to triplets; with another miner: that miner among the mined
pairs).

- "hdc" (`HDCMiner`; Yuan et al., "Hard-Aware Deeply Cascaded Embedding",
  ICCV 2017, as pytorch-metric-learning's `HDCMiner`): the ⌈f·|P|⌉ farthest
  of the |P| positive pairs and the ⌈f·|N|⌉ nearest of the |N| negative pairs
  of the batch, f = `filter_percentage`.
- "pair_margin" (`PairMarginMiner`, pytorch-metric-learning's): positive pairs
  with d > `pos_margin`, negative pairs with d < `neg_margin`.
- "uniform_histogram" (`UniformHistogramMiner`, pytorch-metric-learning's):
  the range [min d, max d] of the positive (negative) pairs' distances is cut
  into `num_bins` equal bins; from every non-empty bin `pos_per_bin`
  (`neg_per_bin`) pairs are drawn uniformly with replacement; the mined pairs
  are the drawn ones (a pair drawn twice enters once — masks hold sets).
- "batch_easy_hard" (`BatchEasyHardMiner`; Xuan et al., "Improved embeddings
  with easy positive triplet mining", WACV 2020, as pytorch-metric-learning's
  `BatchEasyHardMiner`): per anchor one positive and one negative chosen by
  `pos_strategy` / `neg_strategy` among the pairs inside `allowed_pos_range` /
  `allowed_neg_range` (or all pairs of that side with the strategy "all").

Triplet miners (`mining=` of the triplet family and the contrastive loss,
through `tfdml.losses.mining.mined_distances`):

- "batch_easy_hard": the same selection as triplets (a, p_a, n_a), one per
  anchor having both; with one side "all", every pair of that side with the
  other side's pick of its anchor (B·B candidate triplets).
- "angular" (`AngularMiner`; the angle of Wang et al., "Deep Metric Learning
  with Angular Loss", ICCV 2017, as pytorch-metric-learning's `AngularMiner`):
  every triplet whose angle at the negative, arctan(d_ap / (2·d(n, c))) with
  c = (x_a + x_p)/2, exceeds `angle` degrees. d(n, c) comes from the three
  pair distances (median formula d(n,c)² = (d_an² + d_pn²)/2 − d_ap²/4), so
  no triplet of vectors is built; the candidate set is all B³ triplets, as
  for `mining="all"`.

Which distances a miner reads: pair miners read Euclidean distances between
the L2-normalised embeddings (pytorch-metric-learning's default distance),
whatever the loss's own metric; "batch_easy_hard" as a triplet miner reads
the loss's mining matrices, like the other triplet miners; "angular" reads
Euclidean distances between the embeddings the loss was called with,
L2-normalised (or raw with `normalize=False`). Under Embedding Expansion the
pair miners and "batch_easy_hard" read the distance between original points
for positive pairs and the EE-pooled distance for negative pairs; "angular"
reads original points for all three sides of its triangle (it selects
triplets of the batch; the loss then uses its pooled anchor–negative value).

Every miner is fixed-shape (XLA-compatible), O(B²) memory (angular: the B³
candidate mask of `mining="all"`), seedable ("uniform_histogram" draws from
its own `seed`) and serialises as `{"name": ..., **arguments}`
(`get_config`; `get_miner` accepts a name, that dict or a miner).
"""
import math

import keras
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_choice, check_int, check_number, check_seed
from tfdml.losses.ops import make_seed_generator, row_searchsorted
from tfdml.losses.pairs import pair_matrices

_MINERS = {}

#: `BatchEasyHardMiner` strategies.
STRATEGIES = ("easy", "semihard", "hard", "all")


def register_miner(name):
    """Class decorator: registers a miner class under `name`."""

    def decorator(cls):
        _MINERS[name] = cls
        cls.name = name
        return cls

    return decorator


def miner_names(kind=None):
    """Sorted names of the registered miners (of `kind` "pair" or "triplet")."""
    return sorted(name for name, cls in _MINERS.items() if kind is None or kind in cls.kinds)


class Miner:
    """Base class: a name, constructor arguments (`config_args`), `get_config`."""

    #: The registered name (`register_miner`), the "name" of the config dict.
    name = None
    #: "pair" (usable as `pair_mining=`) and/or "triplet" (usable as `mining=`).
    kinds = ()
    config_args = ()

    def get_config(self):
        """`{"name": name, **arguments}`, JSON-serialisable."""
        config = {"name": self.name}
        for argument in self.config_args:
            value = getattr(self, argument)
            config[argument] = list(value) if isinstance(value, tuple) else value
        return config

    def __repr__(self):
        arguments = ", ".join(f"{a}={getattr(self, a)!r}" for a in self.config_args)
        return f"{type(self).__name__}({arguments})"


def get_miner(spec, argument="pair_mining", kind="pair"):
    """A miner from a registered name, its config dict or a miner object.

    Args:
        spec: name (str), `{"name": ..., **arguments}` or a `Miner`.
        argument: the argument's name, used in error messages.
        kind: "pair" or "triplet": the use the miner must support.

    Raises:
        ValueError: naming `argument` for an unknown name, a miner of another
            kind or a bad miner argument.
    """
    allowed = miner_names(kind)
    if isinstance(spec, Miner):
        miner = spec
    else:
        if isinstance(spec, str):
            name, arguments = spec, {}
        elif isinstance(spec, dict) and isinstance(spec.get("name"), str):
            arguments = dict(spec)
            name = arguments.pop("name")
        else:
            raise ValueError(f"{argument} must be a miner name, a dict {{'name': ..., ...arguments}} or a "
                             f"miner; got {spec!r}.")
        if name not in _MINERS:
            raise ValueError(f"Unknown {argument}={name!r}; expected one of {allowed}.")
        try:
            miner = _MINERS[name](**arguments)
        except TypeError as error:
            raise ValueError(f"Bad arguments for {argument}={name!r}: {error}; its arguments are: "
                             f"{', '.join(_MINERS[name].config_args)}.") from error
    if kind not in miner.kinds:
        raise ValueError(f"{argument}={miner.name!r} is not a {kind} miner; expected one of {allowed}.")
    return miner


def mine_pairs(miner, labels, embeddings, expansion=None, pooling="class"):
    """The (positive, negative) (B, B) bool masks a pair miner keeps, without gradient.

    The miner reads Euclidean distances between the L2-normalised embeddings
    (exact at any magnitude: the batch is divided by its largest entry first);
    with an `expansion`, negative pairs read the EE-pooled distance (`pooling`
    unless the expansion sets its own).

    Args:
        miner: a pair miner (`get_miner`).
        labels: (B,) integer labels.
        embeddings: (B, D) float embeddings.
        expansion: `tfdml.EmbeddingExpansion` or None.
        pooling: EE pooling, "class" or "anchor".
    """
    x = tf.stop_gradient(embeddings)
    unit = distances.l2_normalize(x / distances.batch_scale(x))
    return miner(pair_matrices(unit, labels, "euclidean", expansion, pooling, True))


def _one_hot_rows(index, batch):
    """(B, B) bool: row i is True at column `index[i]`."""
    return tf.equal(tf.range(batch)[None, :], index[:, None])


def _check_range(value, argument):
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{argument} must be None or [low, high], got {value!r}.")
    low, high = (check_number(v, argument) for v in value)
    if low > high:
        raise ValueError(f"{argument} must have low <= high, got {value!r}.")
    return (low, high)


class PairMiner(Miner):
    """A pair miner: `miner(matrices)` → (positive_keep, negative_keep), (B, B) bool
    masks inside `matrices.positive_mask` / `matrices.negative_mask`."""

    kinds = ("pair",)

    def __call__(self, matrices):
        raise NotImplementedError


def _top_fraction(values, mask, fraction, largest):
    """Of the entries of `mask`, the ⌈fraction·count⌉ largest (smallest) values."""
    shape = tf.shape(values)
    flat, flat_mask = tf.reshape(values, [-1]), tf.reshape(mask, [-1])
    size = tf.shape(flat)[0]
    count = tf.reduce_sum(tf.cast(flat_mask, tf.float64))
    k = tf.cast(tf.math.ceil(tf.constant(fraction, tf.float64) * count), tf.int32)
    key = flat if largest else -flat
    key = tf.where(flat_mask, key, tf.fill(tf.shape(key), tf.constant(-float("inf"), key.dtype)))
    order = tf.argsort(key, direction="DESCENDING", stable=True)
    rank = tf.scatter_nd(order[:, None], tf.range(size), [size])
    return tf.reshape(tf.logical_and(flat_mask, rank < k), shape)


@register_miner("hdc")
class HDCMiner(PairMiner):
    """HDC pair miner (Yuan et al., ICCV 2017, as pytorch-metric-learning's `HDCMiner`).

    Keeps the ⌈f·|P|⌉ positive pairs with the largest distance and the
    ⌈f·|N|⌉ negative pairs with the smallest distance of the batch (ordered
    pairs; ties: the lower flat index i·B + j first). The paper's cascade
    passes each model's hard samples on to the next; this is the batch-level
    "keep the hardest fraction" step pytorch-metric-learning implements. The
    paper could not be checked offline: this miner follows
    pytorch-metric-learning's `HDCMiner` (form and default).

    Args:
        filter_percentage: f in (0, 1] (default 0.5, pytorch-metric-learning's).
    """

    config_args = ("filter_percentage",)

    def __init__(self, filter_percentage=0.5):
        self.filter_percentage = check_number(filter_percentage, "filter_percentage", greater_than=0.0,
                                              maximum=1.0)

    def __call__(self, matrices):
        return (_top_fraction(matrices.positive, matrices.positive_mask, self.filter_percentage, True),
                _top_fraction(matrices.negative, matrices.negative_mask, self.filter_percentage, False))


@register_miner("pair_margin")
class PairMarginMiner(PairMiner):
    """Pair-margin miner (pytorch-metric-learning's `PairMarginMiner`).

    Keeps positive pairs with d > `pos_margin` and negative pairs with
    d < `neg_margin` (defaults 0.2 and 0.8, pytorch-metric-learning's).

    Args:
        pos_margin: positive pairs closer than this are dropped.
        neg_margin: negative pairs farther than this are dropped.

    Example (the positive pair is √2 apart, below `pos_margin` = 1.5, so only
    the negative term of the contrastive loss is left: the two negative pairs
    √2 apart, inside its `neg_margin` = 1.5):

    >>> miner = {"name": "pair_margin", "pos_margin": 1.5, "neg_margin": 1.5}
    >>> loss = tfdml.losses.ContrastiveLoss(neg_margin=1.5, pair_mining=miner)
    >>> value = loss([7, 7, 3], [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> round(float(value), 4)  # 1.5 − √2
    0.0858
    """

    config_args = ("pos_margin", "neg_margin")

    def __init__(self, pos_margin=0.2, neg_margin=0.8):
        self.pos_margin = check_number(pos_margin, "pos_margin")
        self.neg_margin = check_number(neg_margin, "neg_margin")

    def __call__(self, matrices):
        return (tf.logical_and(matrices.positive_mask, matrices.positive > self.pos_margin),
                tf.logical_and(matrices.negative_mask, matrices.negative < self.neg_margin))


@register_miner("uniform_histogram")
class UniformHistogramMiner(PairMiner):
    """Uniform-histogram pair miner (pytorch-metric-learning's `UniformHistogramMiner`).

    For positive and negative pairs separately: edges e_b = lo + b·(hi − lo)/K,
    b = 0…K (K = `num_bins`, lo / hi the smallest / largest distance of that
    side), bin b holding e_b ≤ d < e_{b+1} (the last bin also d = hi); from
    each non-empty bin `pos_per_bin` (`neg_per_bin`) pairs are drawn uniformly
    with replacement. The mined pairs are the drawn ones, each once.

    Args:
        num_bins: K (default 100).
        pos_per_bin: draws per bin of positive pairs (default 10).
        neg_per_bin: draws per bin of negative pairs (default 10).
        seed: int seed of the draws, or None.
    """

    config_args = ("num_bins", "pos_per_bin", "neg_per_bin", "seed")

    def __init__(self, num_bins=100, pos_per_bin=10, neg_per_bin=10, seed=None):
        self.num_bins = check_int(num_bins, "num_bins", 1)
        self.pos_per_bin = check_int(pos_per_bin, "pos_per_bin", 0)
        self.neg_per_bin = check_int(neg_per_bin, "neg_per_bin", 0)
        self.seed = check_seed(seed)
        self._seed_generator = make_seed_generator(self.seed)

    def bins(self, values, mask):
        """(bin index of every entry — `num_bins` where `mask` is False, (B, B) int32;
        edges (num_bins + 1,))."""
        flat, flat_mask = tf.reshape(values, [-1]), tf.reshape(mask, [-1])
        big = tf.constant(values.dtype.max, values.dtype)
        low = tf.reduce_min(tf.where(flat_mask, flat, big))
        high = tf.reduce_max(tf.where(flat_mask, flat, -big))
        steps = tf.range(self.num_bins + 1, dtype=values.dtype) / tf.constant(self.num_bins, values.dtype)
        edges = low + (high - low) * steps
        inner = edges[1:-1]
        index = row_searchsorted(inner[None, :], flat[None, :], side="right")[0]  # edges <= d
        index = tf.where(flat_mask, index, tf.fill(tf.shape(index), self.num_bins))
        return tf.reshape(index, tf.shape(values)), edges

    def _draw(self, values, mask, per_bin):
        if per_bin == 0:
            return tf.zeros_like(mask)
        index, _ = self.bins(values, mask)
        flat_index = tf.reshape(index, [-1])
        size = tf.shape(flat_index)[0]
        counts = tf.math.unsorted_segment_sum(tf.ones_like(flat_index), flat_index, self.num_bins + 1)
        counts = counts[:self.num_bins]
        starts = tf.cumsum(counts, exclusive=True)
        order = tf.argsort(flat_index, stable=True)  # bins are contiguous blocks of `order`
        u = keras.random.uniform((self.num_bins, per_bin), seed=self._seed_generator, dtype="float32")
        offset = tf.cast(tf.floor(u * tf.cast(counts, tf.float32)[:, None]), tf.int32)
        offset = tf.minimum(offset, tf.maximum(counts - 1, 0)[:, None])
        position = tf.clip_by_value(starts[:, None] + offset, 0, size - 1)
        drawn = tf.reshape(tf.gather(order, position), [-1, 1])
        real = tf.reshape(tf.broadcast_to(counts[:, None] > 0, tf.shape(offset)), [-1])
        hits = tf.scatter_nd(drawn, tf.cast(real, tf.int32), [size])
        return tf.logical_and(mask, tf.reshape(hits > 0, tf.shape(mask)))

    def __call__(self, matrices):
        return (self._draw(matrices.positive, matrices.positive_mask, self.pos_per_bin),
                self._draw(matrices.negative, matrices.negative_mask, self.neg_per_bin))


@register_miner("batch_easy_hard")
class BatchEasyHardMiner(PairMiner):
    """Batch easy/semi-hard/hard miner (Xuan et al., WACV 2020; pytorch-metric-learning's
    `BatchEasyHardMiner`).

    Per anchor a, among its positive pairs with d in `allowed_pos_range` and its
    negative pairs with d in `allowed_neg_range` (inclusive; None: no bound):

    - positive: "easy" the nearest, "hard" the farthest, "semihard" the farthest
      with d_ap < d_an of the anchor's chosen negative;
    - negative: "easy" the farthest, "hard" the nearest, "semihard" the nearest
      with d_an > d_ap of the anchor's chosen positive;
    - "all": every pair of that side (its range does not apply).

    With neither side "all", an anchor contributes only when both picks exist;
    with one side "all", the other side's pick contributes wherever it exists.
    "semihard" on both sides, or with "all", is rejected. Defaults: easy
    positive, semi-hard negative (Xuan et al.'s EPSHN; pytorch-metric-learning's
    defaults), which is the triplet miner "easy_positive_semihard". The
    strategies, ranges and their combinations follow pytorch-metric-learning's
    `BatchEasyHardMiner` (the paper was not checked offline).

    Args:
        pos_strategy: one of `STRATEGIES` (default "easy").
        neg_strategy: one of `STRATEGIES` (default "semihard").
        allowed_pos_range: None or [low, high] of positive-pair distances.
        allowed_neg_range: None or [low, high] of negative-pair distances.
    """

    kinds = ("pair", "triplet")
    config_args = ("pos_strategy", "neg_strategy", "allowed_pos_range", "allowed_neg_range")

    def __init__(self, pos_strategy="easy", neg_strategy="semihard", allowed_pos_range=None,
                 allowed_neg_range=None):
        self.pos_strategy = check_choice(pos_strategy, "pos_strategy", STRATEGIES)
        self.neg_strategy = check_choice(neg_strategy, "neg_strategy", STRATEGIES)
        if pos_strategy == neg_strategy == "semihard":
            raise ValueError("pos_strategy and neg_strategy cannot both be 'semihard'.")
        if "semihard" in (pos_strategy, neg_strategy) and "all" in (pos_strategy, neg_strategy):
            raise ValueError(f"pos_strategy={pos_strategy!r} with neg_strategy={neg_strategy!r}: 'semihard' "
                             "cannot be combined with 'all'.")
        self.allowed_pos_range = _check_range(allowed_pos_range, "allowed_pos_range")
        self.allowed_neg_range = _check_range(allowed_neg_range, "allowed_neg_range")

    @staticmethod
    def _pick(values, candidates, largest):
        fill = tf.constant(values.dtype.min if largest else values.dtype.max, values.dtype)
        masked = tf.where(candidates, values, fill)
        pick = tf.argmax if largest else tf.argmin
        index = pick(masked, axis=1, output_type=tf.int32)
        return index, tf.reduce_any(candidates, axis=1), tf.gather(masked, index, batch_dims=1)

    @staticmethod
    def _in_range(values, mask, allowed):
        if allowed is None:
            return mask
        return tf.logical_and(mask, tf.logical_and(values >= allowed[0], values <= allowed[1]))

    def select(self, pos_d, neg_d, pos_mask, neg_mask):
        """Per-anchor picks: ((positive (B,), has_positive (B,)) or None for "all",
        (negative, has_negative) or None)."""
        pos_candidates = self._in_range(pos_d, pos_mask, self.allowed_pos_range)
        neg_candidates = self._in_range(neg_d, neg_mask, self.allowed_neg_range)
        pos_largest = self.pos_strategy in ("hard", "semihard")
        neg_largest = self.neg_strategy == "easy"
        positive = negative = None
        if self.pos_strategy == "semihard":
            n, has_n, d_an = self._pick(neg_d, neg_candidates, neg_largest)
            pos_candidates = tf.logical_and(pos_candidates, pos_d < d_an[:, None])
            p, has_p, _ = self._pick(pos_d, pos_candidates, True)
            return (p, has_p), (n, has_n)
        if self.pos_strategy != "all":
            positive = self._pick(pos_d, pos_candidates, pos_largest)
        if self.neg_strategy == "semihard":
            neg_candidates = tf.logical_and(neg_candidates, neg_d > positive[2][:, None])
            negative = self._pick(neg_d, neg_candidates, False)
        elif self.neg_strategy != "all":
            negative = self._pick(neg_d, neg_candidates, neg_largest)
        return (None if positive is None else positive[:2]), (None if negative is None else negative[:2])

    def __call__(self, matrices):
        positive, negative = self.select(matrices.positive, matrices.negative, matrices.positive_mask,
                                         matrices.negative_mask)
        batch = tf.shape(matrices.positive)[0]
        if positive is not None and negative is not None:
            keep = tf.logical_and(positive[1], negative[1])[:, None]
            return (tf.logical_and(_one_hot_rows(positive[0], batch), keep),
                    tf.logical_and(_one_hot_rows(negative[0], batch), keep))
        pos_keep = matrices.positive_mask if positive is None else tf.logical_and(
            _one_hot_rows(positive[0], batch), positive[1][:, None])
        neg_keep = matrices.negative_mask if negative is None else tf.logical_and(
            _one_hot_rows(negative[0], batch), negative[1][:, None])
        return pos_keep, neg_keep


@register_miner("angular")
class AngularMiner(Miner):
    """Angular triplet miner (the angle of Wang et al., ICCV 2017; pytorch-metric-learning's
    `AngularMiner`).

    Keeps every triplet (a, p, n) with arctan(d_ap / (2·d(n, c))) > `angle`,
    c = (x_a + x_p)/2, on Euclidean distances between the L2-normalised
    embeddings (the angle of Wang et al.'s angular loss, which normalises its
    features; arctan2: a triplet with d_ap = d(n, c) = 0 has angle 0).
    `normalize=False` is pytorch-metric-learning's form: its miner asserts a
    normalising distance but measures the triangle on the raw embeddings
    (`pairwise_distance` does not normalise; torch also adds 1e-6 to each
    coordinate difference, which this does not). The threshold and its
    default follow pytorch-metric-learning (the paper, checked only for the
    angle's definition from memory, uses the angle in its loss, not as a miner).

    Args:
        angle: threshold in degrees (default 20, pytorch-metric-learning's).
        normalize: measure the angle on L2-normalised (True, default) or raw
            (False, pytorch-metric-learning's) embeddings.
    """

    kinds = ("triplet",)
    config_args = ("angle", "normalize")

    def __init__(self, angle=20.0, normalize=True):
        self.angle = check_number(angle, "angle", 0.0, 180.0)
        self.normalize = bool(normalize)

    def euclidean(self, embeddings):
        """(B, B) Euclidean distances the angle is measured on (up to a common scale,
        to which the angle is invariant), without gradient."""
        x = tf.stop_gradient(embeddings)
        x = x / distances.batch_scale(x)
        if self.normalize:
            x = distances.l2_normalize(x)
        return distances.euclidean(x)

    def keep(self, euclidean):
        """(B, B, B) bool: triplet (a, p, n) passes, from the (B, B) Euclidean distances."""
        d_ap = euclidean[:, :, None]
        d_an = euclidean[:, None, :]
        d_pn = euclidean[None, :, :]
        d_nc = tf.sqrt(tf.nn.relu((tf.square(d_an) + tf.square(d_pn)) / 2.0 - tf.square(d_ap) / 4.0))
        threshold = tf.constant(math.radians(self.angle), euclidean.dtype)
        return tf.atan2(d_ap, 2.0 * d_nc) > threshold
