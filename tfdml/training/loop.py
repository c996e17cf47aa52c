"""`TrainingLoop`: tfdml's own training loop, under any `tf.distribute` strategy.

One device, `MirroredStrategy` and `MultiWorkerMirroredStrategy` run the same
code: a `tf.function` (optionally XLA-compiled) wraps `strategy.run(train_step)`,
where `train_step` — a plain Python method, never itself a `tf.function` —
does the forward pass, the loss, the gradient and the optimizer update on one
replica. tfdml losses all-gather embeddings and labels across replicas and
return L / R (`tfdml.losses.distributed`); the optimizer sums the replicas'
gradients, so a step equals one device with the global batch.

Keras callbacks work as in `model.fit` (`ProgbarLogger`, `CSVLogger`,
`TensorBoard`, `ModelCheckpoint`, `RetrievalEvaluation`, …). With a
`checkpoint_dir`, `fit` saves a `tf.train.CheckpointManager` checkpoint every
`checkpoint_every` steps and at every epoch end (model, optimizer, loss state,
step, the running epoch averages and the state of callbacks that have one) and
resumes from the latest one: the input restarts at the same sampler batch, so
an interrupted run continues exactly like an uninterrupted one.

Extending a step: `hooks` are objects with optional methods
`before_training(loop)` (after any resume, before the input is read — e.g. fill
a memory bank) and `after_replica_step(data, embeddings)` (inside each replica's
step, with its batch and the embeddings the loss saw — e.g. update a memory
bank). For more (two optimizer updates per iteration): subclass, override
`train_step`, return extra tensors from it and read them in `on_step_end`.
"""
import keras
import numpy as np
import tensorflow as tf

from tfdml.losses import attach_loss_state
from tfdml.metrics.callbacks import MeasuredProgbarLogger
from tfdml.training.checkpoints import Checkpointer
from tfdml.training.strategy import is_chief


class TrainingLoop:
    """Trains a Keras embedding model on a tfdml loss with a Keras optimizer.

    Args:
        model: a `keras.Model` mapping inputs to embeddings, created under
            `strategy.scope()`.
        loss: a tfdml loss called as `loss(labels, embeddings)` (default: the
            compiled `model.loss`). Its trainable state (β, proxies) is attached
            to the model and trained with its learning-rate multiplier.
        optimizer: a Keras optimizer (default: the compiled `model.optimizer`).
            Under the "mixed_float16" policy it is wrapped in a
            `keras.optimizers.LossScaleOptimizer` unless it is one.
        strategy: the strategy the model was created under (default:
            `model.distribute_strategy`).
        jit_compile: compile the distributed step with XLA; "auto" follows the
            compiled model's resolved `jit_compile` (False when not compiled).
        checkpoint_objects: extra trackables (e.g. a second optimizer) saved
            and restored with the checkpoints.
        hooks: objects with optional `before_training(loop)` and
            `after_replica_step(data, embeddings)` methods (see the module
            docstring), e.g. `tfdml.training.MemoryBankHook`.
    """

    def __init__(self, model, loss=None, optimizer=None, strategy=None, jit_compile="auto", checkpoint_objects=None,
                 hooks=()):
        self.model = model
        self.strategy = strategy or model.distribute_strategy
        self.loss = loss if loss is not None else getattr(model, "loss", None)
        optimizer = optimizer if optimizer is not None else getattr(model, "optimizer", None)
        if self.loss is None or optimizer is None:
            raise ValueError("TrainingLoop needs a loss and an optimizer: pass them, or compile the model first.")
        scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        if model.dtype_policy.name == "mixed_float16" and not scaled:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        self.optimizer = optimizer
        if jit_compile == "auto":
            jit_compile = bool(getattr(model, "compiled", False) and model.jit_compile)
        self.jit_compile = bool(jit_compile)
        self.checkpoint_objects = dict(checkpoint_objects or {})
        self.hooks = list(hooks)
        self._check_distributed_variables()
        with self.strategy.scope():
            _mirror_seed_generators(self.loss, self.strategy)
            if getattr(self.loss, "state_layer", None) is not None:
                attach_loss_state(model, self.loss)
            if not optimizer.built:
                optimizer.build(model.trainable_variables)
        self._train_function = None

    def _check_distributed_variables(self):
        if self.strategy.num_replicas_in_sync <= 1:
            return
        if self.model.weights and not isinstance(self.model.weights[0].value, tf.distribute.DistributedValues):
            raise ValueError(f"The model's variables are not distributed by the {type(self.strategy).__name__} given: "
                             "create the model (and compile it) under `with strategy.scope():`.")

    @property
    def replicas(self):
        """Number of replicas in sync (all workers)."""
        return self.strategy.num_replicas_in_sync

    def compute_loss(self, labels, embeddings):
        """Per-replica loss to differentiate: the tfdml loss (already L / R, see
        `tfdml.losses.distributed`) plus the model's own losses (regularisers)
        divided by the number of replicas, exactly as Keras' `fit` does."""
        loss = self.loss(labels, embeddings)
        if self.model.losses:
            extra = tf.add_n([tf.reduce_sum(tf.cast(value, loss.dtype)) for value in self.model.losses])
            loss = loss + extra / tf.cast(self.replicas, loss.dtype)
        return loss

    def train_step(self, data):
        """One replica's step; runs inside `strategy.run` (override to customise).

        Args:
            data: this replica's batch, `(inputs, labels, *extra)`.

        Returns:
            A dict of tensors. Scalars are averaged over replicas and logged
            (Keras callbacks, progress bar, epoch averages); tensors with a batch
            axis are concatenated over replicas in replica order (the global
            batch) and only passed to `on_step_end`. The default returns
            `{"loss": L}`, the loss of the global batch as `model.fit` logs it.
        """
        inputs, labels = data[0], data[1]
        with tf.GradientTape() as tape:
            embeddings = self.model(inputs, training=True)
            loss = self.compute_loss(labels, embeddings)
            scaled = self.optimizer.scale_loss(loss)
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        for hook in self.hooks:
            if hasattr(hook, "after_replica_step"):
                hook.after_replica_step(data, embeddings)
        return {"loss": loss * tf.cast(self.replicas, loss.dtype)}

    def on_step_end(self, step, outputs):
        """Host-side hook after every step (no-op; override to use `outputs`).

        Args:
            step: number of steps done so far (global, over all epochs).
            outputs: dict of numpy arrays from `train_step`, reduced over replicas.
        """

    def _reduce(self, outputs):
        reduced = {}
        for name, value in outputs.items():
            local = self.strategy.experimental_local_results(value)[0]
            if local.shape.rank == 0:
                reduced[name] = self.strategy.reduce("MEAN", value, axis=None)
            else:
                reduced[name] = self.strategy.gather(value, axis=0)
        return reduced

    def make_train_function(self):
        """The compiled step: `iterator → reduced outputs` (built once)."""
        if self._train_function is not None:
            return self._train_function

        def replica_step(data):
            # Under MultiWorkerMirroredStrategy, all-gathering a tensor that comes straight from the distributed
            # iterator (e.g. the labels, in the loss) fails with "destinations can not be empty": it has no
            # device. An identity op created inside the replica function places it.
            return self.train_step(tf.nest.map_structure(tf.identity, data))

        def step_on_data(data):
            return self._reduce(self.strategy.run(replica_step, args=(data,)))

        if self.jit_compile:
            # XLA compiles the step; reading the iterator stays outside the compiled function.
            step_on_data = tf.function(step_on_data, jit_compile=True, reduce_retracing=True)

        @tf.function
        def train_function(iterator):
            return step_on_data(next(iterator))

        self._train_function = train_function
        return train_function

    def distribute(self, data, skip_batches=0):
        """A distributed dataset from `data` (see `fit`), starting after `skip_batches` batches."""
        if isinstance(data, tf.data.Dataset):
            if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
                raise ValueError("Under MultiWorkerMirroredStrategy, pass data as a function (input_context, "
                                 "skip_batches) → dataset of per-replica batches, e.g. "
                                 "tfdml.training.train_input(...), so each worker reads its share of the same "
                                 "global batches.")
            return self.strategy.experimental_distribute_dataset(data.skip(skip_batches))
        if not callable(data):
            raise ValueError(f"data must be a tf.data.Dataset or a function (input_context, skip_batches), "
                             f"got {type(data).__name__}.")
        return self.strategy.distribute_datasets_from_function(lambda context: data(context, skip_batches))

    def fit(self, data, epochs=1, steps_per_epoch=None, callbacks=(), verbose="auto", checkpoint_dir=None,
            checkpoint_every=0, max_checkpoints=2):
        """Trains for `epochs` × `steps_per_epoch` steps (resuming from `checkpoint_dir`).

        Args:
            data: a `tf.data.Dataset` of global batches `(inputs, labels, …)`
                (one machine; on resume its first batches are skipped by reading
                them), or a function `(tf.distribute.InputContext, skip_batches)
                → dataset of per-replica batches` (any strategy; see
                `tfdml.training.train_input`).
            epochs: number of epochs.
            steps_per_epoch: steps per epoch (required: the data is infinite).
            callbacks: Keras callbacks. Callbacks with `get_loop_state()` /
                `set_loop_state(state)` have their (JSON) state checkpointed.
            verbose: 0, 1, 2 or "auto" (1), as in `model.fit`; progress is
                printed by the chief worker only.
            checkpoint_dir: directory of the checkpoints (shared by all workers);
                None: no checkpoints, no resuming.
            checkpoint_every: also save every this many steps (0: epoch ends only).
            max_checkpoints: checkpoints kept.

        Returns:
            The `keras.callbacks.History` of the epochs run in this call.
        """
        if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be a positive int, got {steps_per_epoch!r}.")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative int, got {epochs!r}.")
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be a non-negative int, got {checkpoint_every!r}.")
        chief = is_chief(self.strategy)
        verbose = (1 if verbose == "auto" else int(verbose)) if chief else 0
        checkpointer, step, state = None, 0, {}
        if checkpoint_dir is not None:
            checkpointer = Checkpointer(checkpoint_dir, self.strategy, max_to_keep=max_checkpoints,
                                        model=self.model, optimizer=self.optimizer, **self.checkpoint_objects)
            step, state = checkpointer.restore()
            if step and verbose:
                print(_resume_message(step, epochs, steps_per_epoch, checkpoint_dir))
        first_epoch = step // steps_per_epoch
        callbacks = list(callbacks)
        if verbose and not any(isinstance(c, keras.callbacks.ProgbarLogger) for c in callbacks):
            callbacks.append(MeasuredProgbarLogger())  # unmeasured (NaN) validation metrics are not printed
        callback_list = keras.callbacks.CallbackList(
            callbacks, add_history=True, add_progbar=False, model=self.model, verbose=verbose,
            epochs=epochs, steps=steps_per_epoch, initial_epoch=first_epoch)
        _restore_callback_states(callback_list.callbacks, state.get("callbacks", {}))
        averages = _EpochAverages(state.get("epoch_averages"))

        def save():
            if checkpointer is not None:
                checkpointer.save(step, {"epoch_averages": averages.state(),
                                         "callbacks": _callback_states(callback_list.callbacks)})

        for hook in self.hooks:
            if hasattr(hook, "before_training"):
                hook.before_training(self)
        iterator = iter(self.distribute(data, skip_batches=step))
        self.model.stop_training = False
        callback_list.on_train_begin()
        logs = {}
        for epoch in range(first_epoch, epochs):
            callback_list.on_epoch_begin(epoch)
            for batch in range(step - epoch * steps_per_epoch, steps_per_epoch):
                callback_list.on_train_batch_begin(batch)
                outputs = self._run_step(iterator)
                step += 1
                logs = averages.add(outputs)
                self.on_step_end(step, outputs)
                callback_list.on_train_batch_end(batch, logs)
                if checkpoint_every and step % checkpoint_every == 0 and batch + 1 < steps_per_epoch:
                    save()
                if self.model.stop_training:
                    break
            callback_list.on_epoch_end(epoch, dict(logs))
            averages = _EpochAverages()
            save()
            if self.model.stop_training:
                break
        callback_list.on_train_end(logs)
        return self.model.history

    def _run_step(self, iterator):
        first_call = self._train_function is None
        try:
            outputs = self.make_train_function()(iterator)
        except tf.errors.OpError as error:
            if first_call and self.jit_compile and self.replicas > 1:
                raise RuntimeError(
                    f"XLA could not compile the step for {self.replicas} replicas (jit_compile=True): the loss's "
                    "cross-replica all-gather has no XLA kernel here (on CPU neither MirroredStrategy nor "
                    "MultiWorkerMirroredStrategy compile). Use jit_compile=False or 'auto' (training.jit_compile)."
                ) from error
            raise
        return {name: np.asarray(value) for name, value in outputs.items()}


def _resume_message(step, epochs, steps_per_epoch, checkpoint_dir):
    """"resuming from epoch N (step S) …" (N counted from 1, as the progress bar does)."""
    if step >= epochs * steps_per_epoch:
        return f"Resuming after the last epoch (step {step}): all {epochs} epochs are done ({checkpoint_dir})."
    epoch, batch = divmod(step, steps_per_epoch)
    within = f", batch {batch + 1} of {steps_per_epoch}" if batch else ""
    return (f"Resuming from epoch {epoch + 1}/{epochs} (step {step}{within}): the checkpoint at step {step} in "
            f"{checkpoint_dir}.")


def _mirror_seed_generators(loss, strategy, depth=3):
    """Re-creates, under `strategy`'s scope, the random states of `loss` (and of the losses it wraps) that
    were created outside it.

    A random miner's `keras.random.SeedGenerator` made outside the scope is one
    plain variable that every replica advances on its own: the replicas would
    draw different random tuples from the same global batch, depending on
    timing. Mirrored, the state advances in sync and all replicas draw the same
    tuples. The current state value is kept.
    """
    if strategy.num_replicas_in_sync <= 1:
        return
    for name, value in list(vars(loss).items()):
        if isinstance(value, keras.random.SeedGenerator):
            if not isinstance(value.state.value, tf.distribute.DistributedValues):
                mirrored = keras.random.SeedGenerator(0)
                mirrored.state.assign(value.state.value)
                setattr(loss, name, mirrored)
        elif depth and isinstance(value, keras.losses.Loss):
            _mirror_seed_generators(value, strategy, depth - 1)


class _EpochAverages:
    """Running means of the scalar step outputs within an epoch (checkpointable as JSON)."""

    def __init__(self, state=None):
        state = state or {}
        self.sums = {name: float(value) for name, value in state.get("sums", {}).items()}
        self.count = int(state.get("count", 0))

    def add(self, outputs):
        """Adds one step's outputs; returns the current means (the logs)."""
        self.count += 1
        for name, value in outputs.items():
            if value.ndim == 0:
                self.sums[name] = self.sums.get(name, 0.0) + float(value)
        return {name: total / self.count for name, total in self.sums.items()}

    def state(self):
        return {"sums": self.sums, "count": self.count}


def _callback_key(index, callback):
    return f"{index}:{type(callback).__name__}"


def _callback_states(callbacks):
    return {_callback_key(i, c): c.get_loop_state() for i, c in enumerate(callbacks) if hasattr(c, "get_loop_state")}


def _restore_callback_states(callbacks, states):
    for index, callback in enumerate(callbacks):
        key = _callback_key(index, callback)
        if key in states and hasattr(callback, "set_loop_state"):
            callback.set_loop_state(states[key])


def fit_model(model, data, **kwargs):
    """`model.fit(data, **kwargs)` with a clear error where Keras 3 cannot: under
    `MultiWorkerMirroredStrategy` (keras-team/keras#20585) use `TrainingLoop`."""
    if isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        raise RuntimeError(
            "Keras 3's model.fit does not support MultiWorkerMirroredStrategy (keras-team/keras#20585). Train with "
            "tfdml.training.TrainingLoop(model).fit(...) instead (what train.py does for every strategy).")
    return model.fit(data, **kwargs)
