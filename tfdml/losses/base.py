"""Base class and shared pieces of all tfdml losses.

`MetricLoss` is a `keras.losses.Loss` called as `loss(labels, embeddings)`:
- validates the inputs (ranks, batch sizes, integer labels) with errors that
  name the argument;
- keeps labels as integers (they are never compared as floats);
- computes in float32 (float64 when constructed with `dtype="float64"`), also for
  float16/bfloat16 embeddings (mixed precision);
- all-gathers embeddings and labels across replicas under `tf.distribute`
  (`tfdml.losses.distributed`), so mining sees the global batch;
- returns a scalar: each loss reduces over its own tuples as its docstring states.
"""
import keras
import tensorflow as tf

from tfdml import distances
from tfdml.expansion import EmbeddingExpansion, metric_from_gram
from tfdml.losses import distributed

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
            mismatch, non-numeric or non-integer labels.
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
    if labels.dtype not in _INTEGER_DTYPES:
        if tf.executing_eagerly():
            values = labels.numpy()
            if values.size and not (values == values.round()).all():
                raise ValueError("labels must be integer class ids, got non-integer values.")
        labels = tf.cast(tf.round(labels), tf.int64)
    return tf.cast(labels, tf.int32) if labels.dtype != tf.int64 else labels, embeddings


def compute_dtype_for(loss_dtype):
    """float64 if the loss was built with dtype float64, else float32."""
    return tf.float64 if loss_dtype in ("float64", tf.float64) else tf.float32


def pair_masks(labels):
    """Boolean (B, B) masks: positive pairs (same class, i ≠ j), negative pairs."""
    same = tf.equal(labels[:, None], labels[None, :])
    not_self = tf.logical_not(tf.eye(tf.shape(labels)[0], dtype=tf.bool))
    return tf.logical_and(same, not_self), tf.logical_not(same)


def masked_mean(values, mask):
    """Mean of `values` where `mask`; 0 (with zero gradient) when the mask is empty."""
    mask = tf.cast(mask, values.dtype)
    count = tf.reduce_sum(mask)
    total = tf.reduce_sum(tf.where(mask > 0, values, tf.zeros_like(values)))
    return tf.math.divide_no_nan(total, count)


def masked_logsumexp(values, mask, axis=-1):
    """log Σ_{mask} exp(values) along `axis`; a large negative number if empty.

    Gradients are finite everywhere (masked entries get zero gradient).
    """
    neg = tf.constant(-1e4, values.dtype)
    safe = tf.where(mask, values, neg)
    peak = tf.stop_gradient(tf.reduce_max(safe, axis=axis, keepdims=True))
    summed = tf.reduce_sum(tf.where(mask, tf.exp(safe - peak), tf.zeros_like(safe)), axis=axis)
    has_any = tf.reduce_any(mask, axis=axis)
    log_sum = tf.math.log(tf.where(has_any, summed, tf.ones_like(summed)))
    return tf.where(has_any, log_sum + tf.squeeze(peak, axis), neg + tf.zeros_like(summed))


class PairMatrices:
    """Pairwise matrices of one batch used by pair-based losses.

    Attributes:
        positive: (B, B) metric between original points (used for positive pairs).
        negative: (B, B) metric for negative pairs: EE-pooled when an expansion is
            active, otherwise the same tensor as `positive`.
        positive_mask, negative_mask: (B, B) bool masks (positive excludes i = j).
    """

    def __init__(self, positive, negative, positive_mask, negative_mask):
        self.positive = positive
        self.negative = negative
        self.positive_mask = positive_mask
        self.negative_mask = negative_mask


def pair_matrices(embeddings, labels, metric, expansion=None, pooling="class"):
    """Builds `PairMatrices` from the Gram matrix of `embeddings`.

    Args:
        embeddings: (B, D) embeddings, already normalised/scaled as the loss wants.
        labels: (B,) integer labels.
        metric: a `tfdml.distances.METRICS` name.
        expansion: `EmbeddingExpansion` or None. With `n_points == 0` the result is
            exactly the one without expansion.
        pooling: pooling used when `expansion.pooling` is None.
    """
    gram = tf.matmul(embeddings, embeddings, transpose_b=True)
    positive_mask, negative_mask = pair_masks(labels)
    if expansion is None or expansion.n_points == 0:
        matrix = metric_from_gram(gram, metric)
        return PairMatrices(matrix, matrix, positive_mask, negative_mask)
    original, pooled = expansion.pooled_matrix(gram, labels, metric, expansion.pooling or pooling)
    return PairMatrices(original, pooled, positive_mask, negative_mask)


def serialize_expansion(expansion):
    return None if expansion is None else expansion.get_config()


def deserialize_expansion(expansion):
    """Accepts None, an `EmbeddingExpansion`, its config dict, or an int n_points."""
    if expansion is None or isinstance(expansion, EmbeddingExpansion):
        return expansion
    if isinstance(expansion, dict):
        config = expansion.get("config", expansion)
        return EmbeddingExpansion(**{k: v for k, v in config.items()})
    if isinstance(expansion, int) and not isinstance(expansion, bool):
        return EmbeddingExpansion(n_points=expansion)
    raise ValueError(
        "expansion must be None, an EmbeddingExpansion, its config dict or an int "
        f"n_points; got {expansion!r}."
    )


def make_seed_generator(seed):
    """A `keras.random.SeedGenerator` from an int / None / existing generator."""
    if isinstance(seed, keras.random.SeedGenerator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an int or None, got {seed!r}.")
    return keras.random.SeedGenerator(seed)


def check_number(value, argument, minimum=None, maximum=None, allow_equal_min=True):
    """Validates a float hyper-parameter, raising a `ValueError` naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{argument} must be a number, got {value!r}.")
    if minimum is not None and (value < minimum or (value == minimum and not allow_equal_min)):
        bound = ">=" if allow_equal_min else ">"
        raise ValueError(f"{argument} must be {bound} {minimum}, got {value!r}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{argument} must be <= {maximum}, got {value!r}.")
    return float(value)


class MetricLoss(keras.losses.Loss):
    """Base class: validation, dtype handling and global-batch gathering.

    Subclasses implement `compute(labels, embeddings)` on int labels (B,) and
    embeddings (B, D) in the compute dtype, returning a scalar, and extend
    `get_config`.

    Args:
        name: loss name.
        dtype: "float64" computes in float64; anything else computes in float32.
        gather_replicas: all-gather the batch across replicas under a
            `tf.distribute` strategy (global-batch mining). Default True.
    """

    #: Trainable state (proxies, β) as a Keras layer; None for stateless losses.
    state_layer = None

    def __init__(self, name=None, dtype=None, gather_replicas=True, reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.gather_replicas = bool(gather_replicas)

    @property
    def compute_dtype(self):
        return compute_dtype_for(self.dtype)

    def build_state(self, embedding_dim):
        """Creates trainable state for `embedding_dim`-d embeddings (no-op here)."""
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
            return distributed.scale_for_replicas(self.compute(labels, embeddings))

    def call(self, y_true, y_pred):
        labels, embeddings = validate_inputs(y_true, y_pred)
        return self.compute(labels, tf.cast(embeddings, self.compute_dtype))

    def compute(self, labels, embeddings):
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)
        config["dtype"] = self.dtype
        config["gather_replicas"] = self.gather_replicas
        return config


def normalize_if(embeddings, normalize):
    """L2-normalises `embeddings` when `normalize` is true."""
    return distances.l2_normalize(embeddings) if normalize else embeddings
