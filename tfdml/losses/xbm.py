"""Cross-batch memory, XBM (Wang et al., "Cross-Batch Memory for Embedding Learning", CVPR 2020)."""
import keras
import tensorflow as tf

from tfdml.checks import check_choice, check_number
from tfdml.losses.base import FreezableState, MetricLoss
from tfdml.losses.pairs import append_references
from tfdml.losses.registry import get as get_loss
from tfdml.losses.registry import register

#: Losses whose value reduces row by row over their pair matrices (each row an anchor of the batch), so the
#: matrices may carry extra reference columns: the pair-based losses `CrossBatchMemory` accepts.
MEMORY_LOSSES = ("contrastive", "multi_similarity", "circle", "supcon", "ntxent", "tuplet_margin")
#: What the memory stores of each batch: its embeddings, or also the wrapped loss's EE synthetic points.
MEMORY_POINTS = ("originals", "with_synthetic")
ORIGINAL, SYNTHETIC = 1, 2  # `MemoryQueue.filled` slot kinds


@keras.saving.register_keras_serializable(package="tfdml")
class MemoryQueue(keras.layers.Layer):
    """XBM's queue: the last `memory_size` (stop-gradient) embeddings the loss saw and their labels.

    Non-trainable variables, created by `build_for(embedding_dim)`: `embeddings`
    (M, D), `labels` (M,), `filled` (M,): 0 for an empty slot, `ORIGINAL` for an
    embedding, `SYNTHETIC` for an Embedding Expansion point (a negative only),
    `pointer` (the next slot to write) and `steps` (calls so far, for the warm-up).
    Under a `tf.distribute` strategy every variable is mirrored with the
    ONLY_FIRST_REPLICA aggregation: the loss enqueues the all-gathered global
    batch, identical on every replica, so the copies stay equal. Tracked by the
    model like the proxies of proxy losses (`tfdml.losses.attach_loss_state`), the
    queue is saved in checkpoints and `.keras` files: a resumed run continues
    with its memory.

    Args:
        memory_size: M, the number of stored embeddings.
        dtype: dtype of the stored embeddings ("float32" or "float64").
    """

    def __init__(self, memory_size, dtype="float32", **kwargs):
        super().__init__(dtype=dtype, **kwargs)
        self.memory_size = int(memory_size)
        self.embeddings = None

    def build_for(self, embedding_dim):
        """Creates the variables for `embedding_dim`-d embeddings (idempotent)."""
        if self.embeddings is not None:
            if int(self.embeddings.shape[1]) != int(embedding_dim):
                raise ValueError(f"The cross-batch memory holds {int(self.embeddings.shape[1])}-d embeddings; got "
                                 f"{embedding_dim}-d embeddings.")
            return self
        size, dim = self.memory_size, int(embedding_dim)

        def variable(name, shape, dtype):
            return self.add_weight(shape=shape, initializer="zeros", dtype=dtype, trainable=False, name=name,
                                   aggregation="only_first_replica")

        self.embeddings = variable("embeddings", (size, dim), self.dtype_policy.variable_dtype)
        self.labels = variable("labels", (size,), "int64")
        self.filled = variable("filled", (size,), "int32")
        self.pointer = variable("pointer", (), "int32")
        self.steps = variable("steps", (), "int64")
        return self

    @property
    def built_for_embeddings(self):
        """Whether the queue's variables have been created (`build_for`)."""
        return self.embeddings is not None

    def overwritten(self, count):
        """(M,) bool: the slots the next `enqueue` of `count` rows writes."""
        count = tf.minimum(tf.cast(count, tf.int32), self.memory_size)
        offset = tf.math.floormod(tf.range(self.memory_size) - self.pointer, self.memory_size)
        return offset < count

    def enqueue(self, embeddings, labels, enabled=True, kinds=None):
        """Writes the last min(B, M) rows at the pointer (circularly), when `enabled`; counts the call.

        `kinds`: (B,) int32 slot kinds (`ORIGINAL`, `SYNTHETIC`, or 0 for a row to leave
        unused); default all `ORIGINAL`."""
        embeddings = tf.cast(embeddings, self.embeddings.dtype)[-self.memory_size:]
        labels = tf.cast(labels, tf.int64)[-self.memory_size:]
        count = tf.shape(labels)[0]
        kinds = tf.fill([count], ORIGINAL) if kinds is None else tf.cast(kinds, tf.int32)[-self.memory_size:]
        slots = tf.math.floormod(self.pointer + tf.range(count), self.memory_size)[:, None]
        enabled = tf.convert_to_tensor(enabled)
        updates = [
            self.embeddings.assign(tf.where(enabled, tf.tensor_scatter_nd_update(
                self.embeddings.value, slots, embeddings), self.embeddings.value)),
            self.labels.assign(tf.where(enabled, tf.tensor_scatter_nd_update(self.labels.value, slots, labels),
                                        self.labels.value)),
            self.filled.assign(tf.where(enabled, tf.tensor_scatter_nd_update(self.filled.value, slots, kinds),
                                        self.filled.value)),
            self.pointer.assign(tf.where(enabled, tf.math.floormod(self.pointer + count, self.memory_size),
                                         self.pointer.value)),
            self.steps.assign_add(tf.constant(1, tf.int64)),
        ]
        return tf.group(updates)

    def reset(self):
        """Empties the memory and restarts the warm-up count."""
        for variable in (self.embeddings, self.labels, self.filled, self.pointer, self.steps):
            variable.assign(tf.zeros_like(variable))

    def call(self, inputs):
        """Returns `inputs`: never used as a model layer, present for Keras' `Layer` contract."""
        return inputs

    def load_own_variables(self, store):
        """Restores a saved queue, creating the variables with the saved width if needed."""
        if self.embeddings is None and len(store.keys()):
            self.build_for(int(store["0"].shape[1]))
        super().load_own_variables(store)

    def get_config(self):
        """Config of this layer: its `memory_size` (Keras serialisation)."""
        return {**super().get_config(), "memory_size": self.memory_size}


class _StateLayers(keras.layers.Layer):
    """The queue together with the wrapped loss's own trainable state (e.g. the margin loss's β)."""

    def __init__(self, queue, inner_state, **kwargs):
        super().__init__(**kwargs)
        self.queue = queue
        self.inner_state = inner_state

    def call(self, inputs):
        return inputs


@register("cross_batch_memory")
class CrossBatchMemory(FreezableState, MetricLoss):
    """Cross-batch memory (XBM; Wang et al., "Cross-Batch Memory for Embedding
    Learning", CVPR 2020) around a pair-based loss.

    A queue keeps the (stop-gradient) embeddings and labels of the last
    `memory_size` samples. Each call enqueues the current (global) batch, and
    the wrapped loss compares every anchor of the batch with every point of the
    memory — which then holds the current batch and the past ones (XBM Fig. 2;
    self-pairs excluded): its pair matrices get one extra column per stored
    embedding, and gradients reach the anchors only (every memory entry, the
    current batch's included, is a stop-gradient copy), so a loss that reduces row by row over anchors (`MEMORY_LOSSES`:
    contrastive with `mining="all"`, multi-similarity, Circle, SupCon, NT-Xent,
    tuplet-margin) sees many more negatives than a batch holds.

    - Default (`batch_term=False`, the paper's XBM loss): L = L(batch, memory),
      the wrapped loss over anchors of the batch against the memory (= PyTorch
      Metric Learning's `CrossBatchMemory`).
    - `batch_term=True` (the authors' code, `loss + XBM.WEIGHT · xbm_loss`):
      L = L(batch, batch) + `memory_weight` · L(batch, memory).

    Warm-up: for the first `warmup_steps` calls the memory is neither read nor
    written; L = L(batch, batch) (XBM §4: embeddings drift fast early in
    training; the authors start the memory after 1k iterations).

    Embedding Expansion (EE) of the wrapped loss expands the current batch
    (default, `memory_points="originals"`): negatives within the batch are
    EE-pooled as without the memory, memory columns hold the stored original
    points with their plain values (EE §3 synthesises points from the positive
    pairs of the batch at hand; a stored embedding has no current positive
    partner to interpolate with). `memory_points="with_synthetic"` also stores
    each batch's synthetic points (EE's interpolations of its positive pairs),
    which later anchors meet as negatives only.

    Memory: O(B·(B + M)) per pair matrix. The queue is a tracked loss state
    (`loss.state_layer`), so checkpoints and `.keras` files keep it. The
    memory is updated only by training steps: tfdml's models freeze it while
    Keras evaluates (`model.evaluate`, validation in `model.fit`).

    Args:
        loss: a pair-based tfdml loss (an instance, or its config dict
            `{"name": "contrastive", ...}`); its name must be in `MEMORY_LOSSES`.
        memory_size: M, the number of stored embeddings (XBM uses a size
            comparable to the training set on SOP).
        warmup_steps: calls before the memory is used.
        batch_term: add the batch's own loss (the authors' code).
        memory_weight: weight of the memory loss when `batch_term` is True
            (ignored otherwise).
        memory_points: "originals" or "with_synthetic" (`MEMORY_POINTS`; the
            latter needs an expanding wrapped loss).

    Example (three steps of a contrastive loss with a memory of 8 embeddings):

    >>> loss = tfdml.losses.CrossBatchMemory(tfdml.losses.ContrastiveLoss(), memory_size=8)
    >>> for _ in range(3):
    ...     value = loss([0, 0, 1], [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> int(loss.state_layer.queue.pointer.numpy())  # 9 rows written circularly
    1
    """

    config_args = ("loss", "memory_size", "warmup_steps", "batch_term", "memory_weight", "memory_points")

    def __init__(self, loss, memory_size, warmup_steps=0, batch_term=False, memory_weight=1.0,
                 memory_points="originals", name="cross_batch_memory", **kwargs):
        super().__init__(name=name, **kwargs)
        self.loss = _inner_loss(loss)
        if self.loss.gather_replicas != self.gather_replicas:
            self.loss.gather_replicas = self.gather_replicas
        self.memory_size = int(check_number(memory_size, "memory_size", greater_than=0))
        if self.memory_size != memory_size:
            raise ValueError(f"memory_size must be a positive int, got {memory_size!r}.")
        self.warmup_steps = int(check_number(warmup_steps, "warmup_steps", 0))
        self.batch_term = bool(batch_term)
        self.memory_weight = check_number(memory_weight, "memory_weight", 0.0)
        self.memory_points = check_choice(memory_points, "memory_points", MEMORY_POINTS)
        if self.memory_points == "with_synthetic" and not self.loss.expanding:
            raise ValueError("memory_points='with_synthetic' stores Embedding Expansion points: give the wrapped loss "
                             "an expansion with n_points > 0.")
        self.queue = MemoryQueue(self.memory_size, dtype=self.compute_dtype, name=f"{name}_queue")
        self.state_layer = _StateLayers(self.queue, getattr(self.loss, "state_layer", None), name=f"{name}_state")

    @property
    def expansion(self):
        """The wrapped loss's `EmbeddingExpansion` (None without one); set it on the wrapped loss."""
        return getattr(self.loss, "expansion", None)

    @expansion.setter
    def expansion(self, value):  # MetricLoss.__init__ sets None; the wrapped loss holds the expansion
        if value is not None:
            raise ValueError("Give the expansion to the wrapped loss, not to CrossBatchMemory.")

    def build_state(self, embedding_dim):
        """Creates the queue (and the wrapped loss's state) for `embedding_dim`-d embeddings."""
        self.loss.build_state(embedding_dim)
        self.queue.build_for(embedding_dim)
        return self.state_layer

    def prepare(self, embeddings):
        """Creates the queue for the embeddings' width on first use, then prepares the wrapped loss."""
        if embeddings.shape[-1] is None:
            raise ValueError("CrossBatchMemory needs embeddings with a known width.")
        if not self.queue.built_for_embeddings:
            self.queue.build_for(int(embeddings.shape[-1]))
        self.loss.prepare(embeddings)

    def compute(self, labels, embeddings):
        """The wrapped loss of the batch against the memory (plus its batch term when `batch_term`),
        enqueueing the batch; the wrapped loss alone while warming up or frozen."""
        queue = self.queue
        if self._frozen:
            return self.loss.compute(labels, embeddings)
        active = queue.steps >= self.warmup_steps
        seen = []

        def with_memory(matrices, queries, query_labels, metric, normalized):
            if seen:
                raise ValueError(f"{type(self.loss).__name__} builds its pair matrices more than once per call, "
                                 "which CrossBatchMemory does not support.")
            seen.append(self._rows_to_store(tf.stop_gradient(queries), query_labels))
            # Stored rows are the wrapped loss's own prepared queries (normalised when it normalises).
            references = tf.cast(tf.stop_gradient(queue.embeddings.value), queries.dtype)
            kept = tf.logical_and(tf.logical_not(queue.overwritten(tf.shape(seen[0][1])[0])), active)
            negatives = tf.logical_and(queue.filled.value > 0, kept)
            positives = tf.logical_and(tf.equal(queue.filled.value, ORIGINAL), kept)
            return append_references(matrices, queries, query_labels, references,
                                     tf.cast(queue.labels.value, query_labels.dtype), positives, metric,
                                     negative_usable=negatives)

        self.loss.pair_hook = with_memory
        try:
            memory_value = self.loss.compute(labels, embeddings)
        finally:
            self.loss.pair_hook = None
        if not seen:
            raise ValueError(f"{type(self.loss).__name__} does not compare pairs; CrossBatchMemory wraps one of "
                             f"{', '.join(MEMORY_LOSSES)}.")
        rows, row_labels, kinds = seen[0]
        with tf.control_dependencies([memory_value]):
            update = queue.enqueue(rows, row_labels, active, kinds)
        with tf.control_dependencies([update]):
            memory_value = tf.identity(memory_value)
        if not self.batch_term and self.warmup_steps == 0:
            return memory_value
        batch_value = self.loss.compute(labels, embeddings)
        if not self.batch_term:
            return tf.where(active, memory_value, batch_value)
        return batch_value + tf.where(active, self.memory_weight * memory_value, tf.zeros_like(memory_value))

    def _rows_to_store(self, queries, labels):
        """(rows, labels, kinds) the memory stores of this batch: its prepared embeddings, and with
        `memory_points="with_synthetic"` the wrapped loss's EE synthetic points (invalid slots: kind 0)."""
        kinds = tf.fill(tf.shape(labels), ORIGINAL)
        if self.memory_points == "originals":
            return queries, labels, kinds
        points, structure = self.loss.expansion.expanded_points(queries, labels)
        synthetic_kinds = tf.where(structure["valid"], SYNTHETIC, 0)
        return points, tf.concat([labels, tf.cast(structure["labels"], labels.dtype)], 0), \
            tf.concat([kinds, synthetic_kinds], 0)

    def get_config(self):
        """Config of this loss, the wrapped loss serialised (Keras serialisation)."""
        config = super().get_config()
        config["loss"] = keras.saving.serialize_keras_object(self.loss)
        return config


def _inner_loss(loss):
    """The wrapped loss from an instance or a config dict (a registry `{"name": ...}` or a Keras config)."""
    if isinstance(loss, dict):
        if "class_name" in loss:
            loss = keras.saving.deserialize_keras_object(loss)
        else:
            arguments = dict(loss)
            if "name" not in arguments:
                raise ValueError(f"loss: a config dict needs a 'name' (one of {', '.join(MEMORY_LOSSES)}); "
                                 f"got {loss!r}.")
            loss = get_loss(arguments.pop("name"), **arguments)
    registered = getattr(type(loss), "registered_name", None)
    if not isinstance(loss, MetricLoss) or registered not in MEMORY_LOSSES:
        raise ValueError(f"loss: CrossBatchMemory wraps one of {', '.join(MEMORY_LOSSES)}; got "
                         f"{registered or type(loss).__name__}.")
    if getattr(loss, "pair_mining", None) is not None:
        raise ValueError(f"loss: CrossBatchMemory does not mine the memory's pairs; give the wrapped loss no "
                         f"pair_mining (got pair_mining={loss.pair_mining.name!r}).")
    if registered == "contrastive" and loss.mining != "all":
        raise ValueError(f"loss: CrossBatchMemory wraps ContrastiveLoss with mining='all' (pairs of the memory "
                         f"are not mined as triplets); got mining={loss.mining!r}.")
    return loss
