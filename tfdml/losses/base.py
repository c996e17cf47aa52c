"""`MetricLoss`, the base class of all tfdml losses, and its input validation.

`MetricLoss` is a `keras.losses.Loss` called as `loss(labels, embeddings)`:

- validates the inputs (ranks, batch sizes, integer labels) with errors that
  name the argument;
- keeps labels as integers (they are never compared as floats);
- computes in float32 (float64 when constructed with `dtype="float64"`), also for
  float16/bfloat16 embeddings (mixed precision);
- all-gathers embeddings and labels across replicas under `tf.distribute`
  (`tfdml.losses.distributed`), so mining sees the global batch;
- returns a scalar: each loss reduces over its own tuples as its docstring states
  (Keras' per-sample `reduction` does not apply and is rejected);
- an empty batch (0 rows) gives 0 with a zero gradient, like a batch without a
  valid tuple;
- a non-finite embedding (NaN or ±inf) makes the loss NaN, so
  `keras.callbacks.TerminateOnNaN` and loss logs see it (one reduction over the
  embeddings; no per-op checks).

A subclass declares what it can do as class attributes (`supports_expansion`,
`default_pooling`, `random_sampling`, `config_args`), implements
`compute(labels, embeddings)` and gets validation, `expansion`/`seed` handling
and `get_config` from here.
"""
import contextlib

import keras
import tensorflow as tf

from tfdml.checks import check_seed
from tfdml.losses import distributed
from tfdml.losses import miners as miners_lib
from tfdml.losses.ops import make_seed_generator, pair_masks
from tfdml.losses.pairs import deserialize_expansion, pair_matrices, resolve_pooling, serialize_expansion

_INTEGER_DTYPES = (tf.int8, tf.int16, tf.int32, tf.int64, tf.uint8, tf.uint16, tf.uint32, tf.uint64)


def validate_inputs(labels, embeddings):
    """Checks and converts `(labels, embeddings)`.

    Args:
        labels: integer class ids, shape (B,) or (B, 1). Float tensors holding
            whole numbers are accepted (Keras may cast targets) and checked when
            running eagerly.
        embeddings: float tensor of shape (B, D).

    Returns:
        (labels int32 (B,), embeddings (B, D) in their own float dtype).

    Raises:
        ValueError: naming `labels` or `embeddings` for wrong ranks, batch size
            mismatch, non-numeric or non-integer labels. When a batch size is
            only known at run time (a graph with a dynamic batch), a mismatch
            raises `tf.errors.InvalidArgumentError` with the same message.
    """
    embeddings = tf.convert_to_tensor(embeddings)
    if not embeddings.dtype.is_floating:
        raise ValueError(f"embeddings must be a float tensor, got dtype {embeddings.dtype.name}.")
    if embeddings.shape.rank != 2:
        raise ValueError(
            f"embeddings must have rank 2 (batch, dim), got shape {embeddings.shape}."
        )
    labels = tf.convert_to_tensor(labels)
    if labels.dtype == tf.string or labels.dtype == tf.bool or labels.dtype.is_complex:
        raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype.name}.")
    if labels.shape.rank == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape.rank != 1:
        raise ValueError(f"labels must have shape (batch,) or (batch, 1), got shape {labels.shape}.")
    n_labels, n_embeddings = labels.shape[0], embeddings.shape[0]
    if n_labels is not None and n_embeddings is not None and n_labels != n_embeddings:
        raise ValueError(
            f"labels and embeddings disagree on the batch size: labels has {n_labels} "
            f"entries, embeddings has {n_embeddings} rows."
        )
    if (n_labels is None or n_embeddings is None) and not tf.executing_eagerly():
        labels = _assert_same_batch(labels, embeddings)
    if labels.dtype not in _INTEGER_DTYPES:
        if tf.executing_eagerly():
            values = labels.numpy()
            if values.size and not (values == values.round()).all():
                raise ValueError("labels must be integer class ids, got non-integer values.")
        labels = tf.cast(tf.round(labels), tf.int64)
    return tf.cast(labels, tf.int32) if labels.dtype != tf.int64 else labels, embeddings


def _assert_same_batch(labels, embeddings):
    """`labels`, gated by a run-time check that it has one entry per embedding row."""
    n_labels, n_embeddings = tf.shape(labels)[0], tf.shape(embeddings)[0]
    check = tf.debugging.Assert(  # string constants only: XLA compiles (and skips) it
        tf.equal(n_labels, n_embeddings),
        ["labels and embeddings disagree on the batch size: labels has", n_labels, "entries, embeddings has",
         n_embeddings, "rows."])
    with tf.control_dependencies([check]):
        return tf.identity(labels)


def check_class_labels(labels, num_classes):
    """Checks that integer labels lie in [0, num_classes) (class-indexed state).

    Eagerly this raises a ValueError naming `labels`; in graphs it adds a
    `tf.debugging` assertion (a no-op under XLA, where labels are clipped).

    Returns:
        The labels, clipped to the valid range.
    """
    if tf.executing_eagerly():
        low, high = int(tf.reduce_min(labels)), int(tf.reduce_max(labels))
        if low < 0 or high >= num_classes:
            raise ValueError(f"labels must be class ids in [0, num_classes={num_classes}), got values in "
                             f"[{low}, {high}].")
    else:
        tf.debugging.assert_less(labels, tf.cast(num_classes, labels.dtype),
                                 message=f"labels must be < num_classes={num_classes}")
        tf.debugging.assert_non_negative(labels, message="labels must be >= 0")
    return tf.clip_by_value(labels, tf.cast(0, labels.dtype), tf.cast(num_classes - 1, labels.dtype))


def nan_if_not_finite(value, embeddings):
    """`value`, or NaN when any embedding is NaN or ±inf.

    One reduction of `embeddings · 0`: exactly 0 for finite embeddings of any
    magnitude, NaN as soon as one entry is NaN or ±inf.
    """
    total = tf.stop_gradient(tf.reduce_sum(embeddings * tf.zeros([], embeddings.dtype)))
    return tf.where(tf.math.is_finite(total), value, tf.constant(float("nan"), value.dtype))


def compute_dtype_for(loss_dtype):
    """float64 if the loss was built with dtype float64, else float32."""
    return tf.float64 if loss_dtype in ("float64", tf.float64) else tf.float32


class FreezableState:
    """Mixin of a loss with non-trainable state updated by each call (a cross-batch memory, a running
    histogram): inside `frozen()` calls leave that state unchanged. Evaluation steps enter it
    (`tfdml.losses.state.frozen_loss_state`), so validation batches never change training state."""

    _frozen = False

    @contextlib.contextmanager
    def frozen(self):
        """While active (also while a function is traced), calls do not update the loss's state."""
        previous, self._frozen = self._frozen, True
        try:
            yield self
        finally:
            self._frozen = previous


class MetricLoss(keras.losses.Loss):
    """Base class: validation, dtype handling and global-batch gathering.

    Subclasses implement `compute(labels, embeddings)` on int labels (B,) and
    embeddings (B, D) in the compute dtype, returning a scalar, and declare:

    - `config_args`: their constructor arguments, in signature order;
      `get_config` saves each from the attribute of the same name.
    - `supports_expansion`: the loss takes `expansion=` (Embedding Expansion).
    - `default_pooling`: EE pooling used when `expansion.pooling` is None.
    - `random_sampling`: the loss draws random tuples (miners, ρ) from a
      `keras.random.SeedGenerator` seeded by `seed`.

    Args:
        name: loss name.
        dtype: "float64" computes in float64; anything else computes in float32.
        gather_replicas: all-gather the batch across replicas under a
            `tf.distribute` strategy (global-batch mining). Default True.
        reduction: must be None. Keras' per-sample reductions do not apply: each
            loss reduces over its own tuples as its docstring states (the
            triplet loss chooses its normalisation with `average_over`).
        expansion: `tfdml.EmbeddingExpansion`, its config dict, an int n_points
            or None (only for losses with "expansion" in `config_args`).
        seed: int or None; seed of the loss's random draws or of its state's
            initialisation (only for losses with "seed" in `config_args`).
        pair_mining: a pair miner (`tfdml.losses.miners`: "hdc", "pair_margin",
            "uniform_histogram", "batch_easy_hard"), as a name, a config dict
            `{"name": ..., **arguments}` or an object, or None (only for the
            pair-based losses, `supports_expansion`). Every `PairMatrices` the
            loss builds in a call then holds only the mined pairs in its masks;
            the miner reads Euclidean distances between the L2-normalised
            embeddings (negative pairs EE-pooled with the loss's expansion and
            pooling), mined once per call, without gradient.
    """

    config_args = ()
    supports_expansion = False
    default_pooling = None
    random_sampling = False
    #: Trainable state (proxies, β) as a Keras layer; None for stateless losses.
    state_layer = None
    #: Set by a wrapper for the duration of one call (`tfdml.losses.CrossBatchMemory`):
    #: `hook(matrices, embeddings, labels, metric, normalized)` returns the `PairMatrices` to use;
    #: `matrices` are then built with gradients through their rows only (`detach_columns`).
    pair_hook = None

    def __init__(self, name=None, dtype=None, gather_replicas=True, reduction=None, expansion=None, seed=None,
                 pair_mining=None):
        if reduction is not None:
            raise ValueError(
                f"reduction={reduction!r} is not supported by {type(self).__name__}: a metric-learning loss "
                "reduces over its own tuples (pairs, triplets, anchors) exactly as its docstring states, not "
                "per sample. Leave reduction unset (TripletLoss chooses its normalisation with average_over=).")
        super().__init__(name=name, reduction="sum_over_batch_size", dtype=dtype)
        self.gather_replicas = bool(gather_replicas)
        for argument, value in (("expansion", expansion), ("seed", seed)):
            if value is not None and argument not in self.config_args:  # as Python would for a missing argument
                raise TypeError(f"{type(self).__name__}.__init__() got an unexpected keyword argument "
                                f"{argument!r}")
        self.expansion = deserialize_expansion(expansion)
        self.seed = check_seed(seed)
        self._seed_generator = make_seed_generator(self.seed) if self.random_sampling else None
        if pair_mining is not None and not self.supports_expansion:
            raise TypeError(f"{type(self).__name__}.__init__() got an unexpected keyword argument 'pair_mining' "
                            "(pair mining applies to the pair-based losses)")
        self.pair_mining = None if pair_mining is None else miners_lib.get_miner(pair_mining, "pair_mining")
        self._mined_pairs = self._source_embeddings = None

    @property
    def compute_dtype(self):
        """tf.float64 for a loss built with dtype "float64", else tf.float32 (also under mixed precision)."""
        return compute_dtype_for(self.dtype)

    @property
    def expanding(self):
        """True when Embedding Expansion is active (an expansion with n_points > 0)."""
        return self.expansion is not None and self.expansion.n_points > 0

    @property
    def pooling(self):
        """The EE pooling in use: `expansion.pooling`, else `default_pooling`."""
        return resolve_pooling(self.expansion, self.default_pooling)

    def pair_matrices(self, embeddings, labels, metric, normalized=True):
        """`tfdml.losses.pairs.PairMatrices` of the batch in `metric`, EE-pooled
        for negative pairs with this loss's expansion and pooling.
        `normalized`: the embeddings are L2-normalised (False: raw embeddings,
        computed without overflow at any magnitude)."""
        hooked = self.pair_hook is not None
        matrices = pair_matrices(embeddings, labels, metric, self.expansion, self.pooling, normalized,
                                 detach_columns=hooked)
        if self._mined_pairs is not None:
            matrices.positive_mask, matrices.negative_mask = self.mined_pair_masks(labels)
        matrices.source_embeddings = self._source_embeddings
        if hooked:
            matrices = self.pair_hook(matrices, embeddings, labels, metric, normalized)
        return matrices

    def mined_pair_masks(self, labels):
        """(positive, negative) (B, B) bool pair masks of `labels`: all pairs, or
        during a call with `pair_mining` the mined ones."""
        if self._mined_pairs is not None:
            return self._mined_pairs
        return pair_masks(labels)

    def _mine_pairs(self, labels, embeddings):
        """The `pair_mining` masks of the batch: Euclidean distances of the L2-normalised
        embeddings (EE-pooled for negative pairs), without gradient."""
        return miners_lib.mine_pairs(self.pair_mining, labels, embeddings, self.expansion, self.pooling)

    def compute_mined(self, labels, embeddings):
        """`compute` of validated, gathered, cast inputs, with the `pair_mining` masks
        and the call's embeddings in place for `pair_matrices` during the call
        (what `__call__` runs; for callers that gather the batch themselves)."""
        self._source_embeddings = embeddings
        if self.pair_mining is not None:
            self._mined_pairs = self._mine_pairs(labels, embeddings)
        try:
            return self.compute(labels, embeddings)
        finally:
            self._mined_pairs = self._source_embeddings = None

    def build_state(self, embedding_dim):
        """Creates trainable state for `embedding_dim`-d embeddings (no-op here)."""
        return None

    def prepare(self, embeddings):
        """Called with the (gathered, cast) embeddings before `compute`: creates
        state that depends on them (no-op here)."""
        return None

    def __call__(self, y_true, y_pred, sample_weight=None):
        """Computes the loss for `labels = y_true`, `embeddings = y_pred`.

        Returns:
            Scalar loss in the compute dtype (float32, or float64).
        """
        if sample_weight is not None:
            raise ValueError(
                "sample_weight is not supported by metric-learning losses (the loss "
                "is defined over tuples of samples, not per sample)."
            )
        labels, embeddings = validate_inputs(y_true, y_pred)
        with tf.name_scope(self.name or "loss"):
            if self.gather_replicas:
                labels, embeddings, _ = distributed.gather_across_replicas(labels, embeddings)
            embeddings = tf.cast(embeddings, self.compute_dtype)
            self.prepare(embeddings)
            value = nan_if_not_finite(self._compute_any_batch(labels, embeddings), embeddings)
            return distributed.scale_for_replicas(value)

    def _compute_any_batch(self, labels, embeddings):
        """`compute`, or 0 with a zero gradient for a batch of 0 rows."""
        rows = embeddings.shape[0]
        if rows == 0:
            return tf.reduce_sum(embeddings)  # exactly 0; its gradient is the (empty) zero tensor
        if rows is not None:
            return self.compute_mined(labels, embeddings)
        # Dynamic batch size: an empty batch gets one zero stand-in row, so every op stays defined (also
        # when XLA compiles the function for 0 rows); its value is discarded. No control flow.
        count = tf.shape(embeddings)[0]
        missing = tf.maximum(1 - count, 0)
        value = self.compute_mined(tf.pad(labels, [[0, missing]]), tf.pad(embeddings, [[0, missing], [0, 0]]))
        return tf.where(count > 0, value, tf.zeros_like(value))

    def compute(self, labels, embeddings):
        """The loss of validated int labels (B,) and embeddings (B, D) in the compute dtype."""
        raise NotImplementedError

    def get_config(self):
        """Keras config: name, dtype, `gather_replicas`, every `config_args` entry (the
        expansion as its config dict) and, when set, `pair_mining` as its miner config."""
        config = super().get_config()
        config.pop("reduction", None)
        config["dtype"] = self.dtype
        config["gather_replicas"] = self.gather_replicas
        for argument in self.config_args:
            value = getattr(self, argument)
            config[argument] = serialize_expansion(value) if argument == "expansion" else value
        if self.pair_mining is not None:
            config["pair_mining"] = self.pair_mining.get_config()
        return config
