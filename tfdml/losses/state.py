"""Trainable loss state: `LossVariable` and `attach_loss_state`.

Losses with variables (the margin loss's β, proxy losses' proxies) keep them in
a `LossVariable` exposed as `loss.state_layer`, created by
`loss.build_state(embedding_dim)`. `attach_loss_state(model, loss)` builds the
state and assigns the layer to the model as an attribute, so Keras tracks it:
its variables join `model.trainable_variables` (trained by `model.fit`), model
checkpoints and `.keras` files. `keras.Sequential` does not track extra layers
and is rejected with a clear error. Embedders/exported serving models are built
from the model's layers up to the embedding and never include it.

`.keras` round trips: `keras.models.load_model` rebuilds the loss from the
compile config, so the model class must attach the new loss's state before it
compiles (then the optimizer has slots for it, and the trained values and
optimizer state are restored: training continues exactly). Plain functional
models become `LossStateFunctional` (a Keras `Functional` that does this) when
given to `attach_loss_state`; `tfdml.models.EmbeddingModel.compile` attaches
the state itself. A subclassed model overriding neither `compile` nor
`compile_from_config` cannot, so `attach_loss_state` warns (its weights files
still work when the reloaded model is attached before `load_weights`).
"""
import contextlib
import math
import warnings

import keras
import numpy as np
from keras.src.models.functional import Functional  # the class of keras.Model(inputs, outputs)

from tfdml.checks import check_number, check_seed


@keras.saving.register_keras_serializable(package="tfdml")
class LossVariable(keras.layers.Layer):
    """Trainable loss state `value = lr_multiplier · raw`, with `raw` the stored variable.

    The learning-rate multiplier is a reparameterisation, so it works with any
    optimizer, `model.fit`, checkpoints and `tf.distribute` without changing the
    optimizer: the gradient of `raw` is `lr_multiplier` times that of `value`.
    For scale-invariant optimizers (Adam, AdamW, RMSprop, Adagrad) a step moves
    `value` exactly as an optimizer with learning rate `lr_multiplier · lr`
    would (Adam's ε is effectively divided by the multiplier). For plain SGD
    the effective factor is `lr_multiplier²`; pass its square root there.

    Args:
        shape: shape of the value; one entry may be None — the embedding size,
            fixed by `build_for(embedding_dim)`.
        initial: float, every entry starts at this value (exactly, when
            `lr_multiplier` is 1); or "normal": entries start N(0, 1/D) with D
            the last dimension.
        lr_multiplier: positive learning-rate multiplier.
        seed: seed of the "normal" initialisation.
    """

    def __init__(self, shape, initial="normal", lr_multiplier=1.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.value_shape = tuple(None if s is None else int(s) for s in shape)
        if not (initial == "normal" or isinstance(initial, (int, float))):
            raise ValueError(f"initial must be a number or 'normal', got {initial!r}.")
        self.initial = initial
        self.lr_multiplier = check_number(lr_multiplier, "lr_multiplier", greater_than=0.0)
        self.seed = check_seed(seed)
        self.raw = None
        if None not in self.value_shape:
            self._create(self.value_shape)

    def _initial_raw(self, shape):
        if self.initial == "normal":
            stddev = 1.0 / math.sqrt(shape[-1]) / self.lr_multiplier
            return np.random.default_rng(self.seed).normal(0.0, stddev, size=shape)
        return np.full(shape, float(self.initial) / self.lr_multiplier)

    def _create(self, shape):
        initial = self._initial_raw(shape)
        # A callable initialiser runs once, at creation (also when first created inside a
        # tf.function), never as a graph op that would reset the value on every call.
        self.raw = self.add_weight(shape=shape, initializer=lambda shape, dtype: initial.astype(dtype), name="raw",
                                   trainable=True)

    def build_for(self, embedding_dim):
        """Creates the variable with `embedding_dim` for the None entry (idempotent).

        Raises:
            ValueError: the variable exists for a different embedding size.
        """
        shape = tuple(int(embedding_dim) if s is None else s for s in self.value_shape)
        if self.raw is None:
            self._create(shape)
        elif tuple(self.raw.shape) != shape:
            raise ValueError(f"{self.name} was built for shape {tuple(self.raw.shape)}; embeddings of size "
                             f"{embedding_dim} need {shape}.")
        return self

    @property
    def built_for_embeddings(self):
        """Whether the variable has been created (`build_for`)."""
        return self.raw is not None

    @property
    def value(self):
        """The state as used by the loss (a tensor)."""
        if self.raw is None:
            raise ValueError(f"{self.name} is not built yet: call build_for(embedding_dim) first.")
        raw = keras.ops.convert_to_tensor(self.raw)
        return raw * self.lr_multiplier if self.lr_multiplier != 1.0 else raw

    def assign_value(self, values):
        """Sets the value (exactly when `lr_multiplier` is 1)."""
        self.raw.assign(np.asarray(values, dtype=self.raw.dtype) / self.lr_multiplier)

    def numpy(self):
        """The value as a numpy array."""
        return np.asarray(self.value)

    def call(self, inputs):
        """Returns `inputs`: never used as a model layer, present for Keras' `Layer` contract."""
        return inputs

    def load_own_variables(self, store):
        """Restores saved state, creating the variable with the saved shape if
        it does not exist yet (e.g. proxies of a loss rebuilt from a config)."""
        if self.raw is None and len(store.keys()):
            self._create(tuple(store["0"].shape))
        super().load_own_variables(store)

    def get_config(self):
        """Config of this layer: its shape, initializer, learning-rate multiplier and seed (Keras serialisation)."""
        return {**super().get_config(), "shape": list(self.value_shape), "initial": self.initial,
                "lr_multiplier": self.lr_multiplier, "seed": self.seed}

def frozen_loss_state(loss):
    """Context in which `loss` keeps non-trainable state (a cross-batch memory) unchanged: used by
    evaluation steps, so validation batches never enter a training memory."""
    frozen = getattr(loss, "frozen", None)
    return frozen() if callable(frozen) else contextlib.nullcontext()


@keras.saving.register_keras_serializable(package="tfdml")
class LossStateFunctional(Functional):
    """A functional model whose `.keras` file restores its loss's trainable state.

    `attach_loss_state` turns a plain functional model (`keras.Model(inputs,
    outputs)`) into this subclass: same layers, graph and behaviour. When
    `keras.models.load_model` compiles it from the saved config, it attaches
    the rebuilt loss's state before compiling, so the optimizer gets slots for
    it and the saved values and optimizer state are restored.
    """

    def test_step(self, data):
        """Keras' evaluation step with the loss's state frozen: validation never writes a cross-batch memory."""
        with frozen_loss_state(getattr(self, "loss", None)):
            return super().test_step(data)

    def compile_from_config(self, config):
        """Compiles a loaded model from its saved compile config, attaching the rebuilt loss's state first
        so the optimizer state is restored (Keras serialisation)."""
        config = keras.saving.deserialize_keras_object(config)
        if getattr(config.get("loss"), "state_layer", None) is not None:
            attach_loss_state(self, config["loss"])
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)


def attach_loss_state(model, loss, embedding_dim=None):
    """Makes `model` track the trainable state of `loss`.

    A plain functional model becomes a `LossStateFunctional` (same layers), so
    its `.keras` file restores the state too.

    Args:
        model: a `keras.Model`.
        loss: a tfdml loss; losses without state are ignored.
        embedding_dim: embedding size used to build the state (default: the last
            dimension of `model.output_shape` when available).

    Returns:
        `model` itself (now tracking the state), so `model =
        attach_loss_state(model, loss)` works; the state is `loss.state_layer`.
    """
    layer = getattr(loss, "state_layer", None)
    if layer is None:
        return model
    if embedding_dim is None:
        shape = getattr(model, "output_shape", None)
        embedding_dim = shape[-1] if shape else None
    if embedding_dim is None:
        raise ValueError("embedding_dim is needed to build the loss state of this model.")
    loss.build_state(int(embedding_dim))
    model.tfdml_loss_state = loss.state_layer
    loss.state_layer.attached_to_model = True  # read by losses that warn when their state is not trained
    tracked = {id(v) for v in model.trainable_variables}
    if not all(id(v) in tracked for v in loss.state_layer.trainable_variables):
        raise ValueError(
            f"{type(model).__name__} does not track layers assigned as attributes, so the loss's trainable "
            "state would not be trained or saved. Use a functional keras.Model (keras.Model(inputs, "
            "outputs)) or tfdml.models.EmbeddingModel.")
    if type(model) is Functional:
        model.__class__ = LossStateFunctional
    elif (type(model).compile is keras.Model.compile
          and type(model).compile_from_config is keras.Model.compile_from_config):
        warnings.warn(
            f"{type(model).__name__} does not attach the loss state when keras.models.load_model rebuilds it, so "
            "its .keras file would not restore the trained loss state: override compile_from_config to call "
            "tfdml.losses.attach_loss_state(self, loss) before compiling (as tfdml.models.EmbeddingModel's "
            "compile does), or save weights and attach before load_weights.", stacklevel=2)
    return model
