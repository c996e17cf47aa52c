"""`MemoryBank`: the training split's latest embeddings, for the embedded samplers.

Roth et al. (ICML 2020, §3.2) keep M ∈ ℝ^{N×D}: filled at the start of training by
embedding the whole training split in inference mode with the test-time
preprocessing, then, after every training step, the rows of the batch's images
are overwritten with the step's (stop-gradient) training embeddings. The embedded
samplers (`tfdml.data.EmbeddedSampler`) read copies of M.

Use from any training loop:

    bank = MemoryBank(split.num_images, dim, strategy)      # before the pipeline
    data = train_pipeline(split, sampler=EmbeddedSampler("gc", bank), with_indices=True)
    bank.fill(model, eval_pipeline(split, augmentation="test", model=model))   # after restoring weights
    # in each step, with the embeddings the loss saw (replica or cross-replica context):
    bank.update(indices, embeddings)

With `model.fit`: `callback = prepare_memory_bank(model, bank, fill_data)` before `fit`
(fills the bank, builds the compiled loss), then `model.fit(data, callbacks=[callback])`.
"""
import functools
import sys

import keras
import numpy as np
import tensorflow as tf


class MemoryBank:
    """M ∈ ℝ^{N×D}, a non-trainable float32 variable mirrored across replicas.

    Args:
        num_items: N, the number of images of the training split.
        dim: D, the embedding width (the model's output).
        strategy: the `tf.distribute` strategy of training (default: the current).
        name: variable name.
    """

    def __init__(self, num_items, dim, strategy=None, name="memory_bank"):
        for key, value in (("num_items", num_items), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{key} must be a positive int, got {value!r}.")
        self.strategy = strategy or tf.distribute.get_strategy()
        with self.strategy.scope():
            # ONLY_FIRST_REPLICA: an update in replica context applies the first replica's
            # value to every copy; `update` all-gathers first, so that value is the global batch.
            self.variable = tf.Variable(
                tf.zeros((int(num_items), int(dim)), tf.float32), trainable=False, name=name,
                synchronization=tf.VariableSynchronization.ON_WRITE,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.filled = False

    @property
    def num_items(self):
        """Rows of the bank (N)."""
        return int(self.variable.shape[0])

    @property
    def dim(self):
        """Embedding size of the bank (D)."""
        return int(self.variable.shape[1])

    def fill(self, embedder, dataset, verbose="auto"):
        """Overwrites every row with `embedder(images, training=False)`.

        Args:
            embedder: callable model, images → (B, D) embeddings (e.g. the trained model).
            dataset: finite iterable of image batches or `(images, labels, ...)` batches
                covering the split in index order, e.g. `tfdml.data.eval_pipeline(split,
                augmentation="test")`; embedded chunk by chunk.
            verbose: progress bar: True, False or "auto" (when stdout is a terminal).
        """
        call = tf.function(lambda images: embedder(images, training=False), reduce_retracing=True)
        values = np.empty((self.num_items, self.dim), np.float32)
        show = getattr(sys.stdout, "isatty", lambda: False)() if verbose == "auto" else bool(verbose)
        progress = keras.utils.Progbar(self.num_items, unit_name="image") if show else None
        count = 0
        for batch in dataset:
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            chunk = np.asarray(call(images), np.float32)
            if chunk.ndim != 2 or chunk.shape[1] != self.dim:
                raise ValueError(f"MemoryBank.fill: the embedder returned shape {chunk.shape}; the bank holds "
                                 f"(N, {self.dim}) embeddings.")
            if count + len(chunk) > self.num_items:
                raise ValueError(f"MemoryBank.fill: the dataset has more than the bank's {self.num_items} images.")
            values[count:count + len(chunk)] = chunk
            count += len(chunk)
            if progress is not None:
                progress.update(count)
        if count != self.num_items:
            raise ValueError(f"MemoryBank.fill: the dataset gave {count} images, the bank has {self.num_items} rows.")
        _check_finite(values, "MemoryBank.fill: the embedder produced")
        self.variable.assign(values)
        self.filled = True

    def update(self, indices, embeddings):
        """Overwrites rows `indices` with `stop_gradient(embeddings)`.

        In replica context (inside `strategy.run`, e.g. a train step) each replica
        passes its own rows; they are all-gathered so that every replica's rows are
        written. In cross-replica or eager code pass the global batch. If an index
        occurs more than once, its last occurrence wins. Out-of-range indices raise
        (not under XLA, which drops them).

        Args:
            indices: (B,) int bank rows (image indices in the split).
            embeddings: (B, D) embeddings.
        """
        if not self.filled:
            raise ValueError("MemoryBank.update before MemoryBank.fill: fill the bank at the start of training.")
        indices = tf.reshape(tf.cast(indices, tf.int32), [-1])
        embeddings = tf.cast(tf.stop_gradient(embeddings), tf.float32)
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            indices = context.all_gather(indices, axis=0)
            embeddings = context.all_gather(embeddings, axis=0)
        same = tf.equal(indices[:, None], indices[None, :])
        positions = tf.range(tf.shape(indices)[0])
        last = tf.reduce_max(tf.where(same, positions[None, :], -1), axis=1)
        # nothing returned: returning the variable's value would copy all N × D floats every step
        self.variable.scatter_update(tf.IndexedSlices(tf.gather(embeddings, last), indices))

    def snapshot(self):
        """A numpy copy of M (N, D); raises if the bank is unfilled or non-finite."""
        if not self.filled:
            raise ValueError("The memory bank is empty: call MemoryBank.fill(embedder, dataset) (or let "
                             "tfdml's training set-up do it) before drawing batches from it.")
        values = np.array(self.variable.numpy())  # own copy: an alias would make every update copy M
        _check_finite(values, "The memory bank holds")
        return values


def _check_finite(values, prefix):
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise FloatingPointError(f"{prefix} {int(bad.sum())} non-finite (NaN/inf) embedding rows, e.g. row "
                                 f"{int(np.flatnonzero(bad)[0])}: the training embeddings diverged.")


def memory_bank_train_step(model, bank, data):
    """Keras' default TensorFlow train step on `(images, labels, indices)` batches,
    followed by `bank.update(indices, embeddings)` with the step's embeddings."""
    images, labels, indices = data
    with tf.GradientTape() as tape:
        embeddings = model(images, training=True)
        loss = model.compute_loss(x=images, y=labels, y_pred=embeddings, training=True)
        scaled = model.optimizer.scale_loss(loss) if model.optimizer is not None else loss
    weights = model.trainable_weights
    model.optimizer.apply_gradients(zip(tape.gradient(scaled, weights), weights))
    bank.update(indices, embeddings)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync  # Keras scales the loss by 1/replicas
    for metric in model.metrics:
        if metric.name == "loss":
            metric.update_state(loss * replicas, sample_weight=tf.shape(images)[0])
    return model.compute_metrics(images, labels, embeddings)


class MemoryBankUpdate(keras.callbacks.Callback):
    """Keeps a `MemoryBank` current during `model.fit`.

    For the duration of `fit`, the model's `train_step` is replaced by
    `memory_bank_train_step`: the data must be `(images, labels, indices)` batches
    (`train_pipeline(..., with_indices=True)`), and after each step the batch's rows
    of the bank are overwritten with the step's embeddings (all replicas' rows under
    a `tf.distribute` strategy). The model and its outputs are unchanged; the original
    step is restored when `fit` ends. Create it with `prepare_memory_bank`, which
    does what must happen before `fit` (Keras draws the first batch before any
    callback runs).

    Args:
        bank: the `MemoryBank`.
    """

    def __init__(self, bank):
        super().__init__()
        self.bank = bank

    def set_model(self, model):
        """Replaces the model's train step with one that also writes the batch's rows of the bank (Keras callback)."""
        super().set_model(model)
        model.train_step = functools.partial(memory_bank_train_step, model, self.bank)
        model.train_function = None  # rebuilt with the bank step

    def on_train_end(self, logs=None):
        """Restores the model's own train step (Keras callback)."""
        self.model.__dict__.pop("train_step", None)
        self.model.train_function = None


def prepare_memory_bank(model, bank, fill_data, verbose="auto"):
    """Everything `model.fit` needs before training from a memory bank.

    Fills `bank` with `model`'s inference embeddings of `fill_data`, and builds the
    model's compiled loss and metrics on the first fill batch: under a
    `tf.distribute` strategy Keras would otherwise build them from the first
    training batch, taking its indices for sample weights.

    Args:
        model: the compiled model (output: the embeddings the loss sees).
        bank: the `MemoryBank`.
        fill_data: finite dataset of `(images, labels)` batches over the training split
            in index order, with test-time preprocessing (`eval_pipeline`).
        verbose: progress bar of the fill (see `MemoryBank.fill`).

    Returns:
        The `MemoryBankUpdate` callback to pass to `model.fit`.
    """
    bank.fill(model, fill_data, verbose)
    images, labels = next(iter(fill_data))[:2]
    with model.distribute_strategy.scope():
        embeddings = model(images, training=False)
        model.compute_loss(x=images, y=labels, y_pred=embeddings, training=False)
        model.compute_metrics(images, labels, embeddings)
    model.reset_metrics()
    return MemoryBankUpdate(bank)
