"""Coupled (L2) and decoupled weight decay against explicit numpy update rules (model.fit, TrainingLoop,
MirroredStrategy), the variables that decay, serialisation and the config key."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdml
from tfdml.training import AdamL2, SGDL2, TrainingLoop, build_optimizer, exclude_loss_state_from_decay, load_config
from tfdml.training.optimizers import make_optimizer

from conftest import mirrored_strategy

STEPS, LR, L2, MOMENTUM = 4, 0.0625, 0.25, 0.875
# Keras casts its Python-float hyperparameters (β₁, 1 − β₁, β₂, ε, …) through float32 before the float64
# update, so the float64 variables match the float64 reference to ~1e-6 relative; the modes differ by > 1e-3.
TOLERANCE = {"rtol": 1e-5, "atol": 1e-8}
RNG = np.random.default_rng(0)
X = RNG.normal(size=(8, 3))
T = RNG.normal(size=(8, 2))
W0 = RNG.normal(size=(3, 2))
B0 = RNG.normal(size=(2,))


def _mse_gradients(w, b):
    """Gradients of mean((X W + b − T)²) over all entries (written out by hand)."""
    residual = X @ w + b - T
    scale = 2.0 / residual.size
    return scale * X.T @ residual, scale * residual.sum(axis=0)


def _adam_reference(coupled, decoupled=0.0, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """MXNet's Adam with wd (the EE code): g = ∇ + wd·w; m, v moments;
    w -= lr·√(1−β₂ᵗ)/(1−β₁ᵗ)·m/(√v + ε).
    `decoupled`: Keras/AdamW decay w -= lr·λ·w before the step (the gradient is taken before it)."""
    params = [W0.copy(), B0.copy()]
    moments = [np.zeros_like(p) for p in params]
    velocities = [np.zeros_like(p) for p in params]
    for t in range(1, STEPS + 1):
        grads = _mse_gradients(*params)
        for i, (p, g) in enumerate(zip(params, grads)):
            p = p * (1.0 - LR * decoupled)
            g = g + coupled * params[i]
            moments[i] = beta_1 * moments[i] + (1 - beta_1) * g
            velocities[i] = beta_2 * velocities[i] + (1 - beta_2) * g ** 2
            alpha = LR * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
            params[i] = p - alpha * moments[i] / (np.sqrt(velocities[i]) + epsilon)
    return params


def _sgd_reference(coupled):
    """PyTorch's SGD with momentum and weight_decay (Vo & Hays' code): g = ∇ + λ·w; buf = μ·buf + g;
    w -= lr·buf."""
    params = [W0.copy(), B0.copy()]
    buffers = [np.zeros_like(p) for p in params]
    for _ in range(STEPS):
        grads = _mse_gradients(*params)
        for i, g in enumerate(grads):
            buffers[i] = MOMENTUM * buffers[i] + g + coupled * params[i]
            params[i] = params[i] - LR * buffers[i]
    return params


def _linear_model():
    inputs = keras.Input((3,), dtype="float64")
    dense = keras.layers.Dense(2, dtype="float64", kernel_initializer=keras.initializers.Constant(W0),
                               bias_initializer=keras.initializers.Constant(B0))
    return keras.Model(inputs, dense(inputs))


def _optimizer(kind):
    return {"adam_coupled": lambda: build_optimizer("adam", LR, L2, "coupled"),
            "adam_decoupled": lambda: build_optimizer("adam", LR, L2, "decoupled"),
            "sgd_coupled": lambda: build_optimizer("sgd", LR, L2, "coupled", momentum=MOMENTUM)}[kind]()


def _reference(kind):
    return {"adam_coupled": lambda: _adam_reference(coupled=L2),
            "adam_decoupled": lambda: _adam_reference(coupled=0.0, decoupled=L2),
            "sgd_coupled": lambda: _sgd_reference(coupled=L2)}[kind]()


def _weights(model):
    return [np.asarray(v) for v in model.trainable_variables]


KINDS = ["adam_coupled", "adam_decoupled", "sgd_coupled"]


@pytest.mark.parametrize("kind", KINDS)
def test_model_fit_follows_the_explicit_update_rule(kind):
    model = _linear_model()
    model.compile(optimizer=_optimizer(kind), loss="mse")
    model.fit(X, T, batch_size=8, epochs=STEPS, shuffle=False, verbose=0)
    for got, expected in zip(_weights(model), _reference(kind)):
        np.testing.assert_allclose(got, expected, **TOLERANCE)


def _fit_with_loop(kind, strategy):
    with strategy.scope():
        model = _linear_model()
        optimizer = _optimizer(kind)
    replicas = strategy.num_replicas_in_sync

    def loss(targets, outputs):  # each replica's mean over its rows / R: the replicas' sum is the global mean
        return tf.reduce_mean(tf.square(outputs - tf.cast(targets, outputs.dtype))) / replicas

    data = tf.data.Dataset.from_tensors((X, T)).repeat()
    TrainingLoop(model, loss=loss, optimizer=optimizer, strategy=strategy, jit_compile=False).fit(
        data, epochs=1, steps_per_epoch=STEPS, verbose=0)
    return _weights(model)


@pytest.mark.parametrize("kind", KINDS)
def test_training_loop_follows_the_explicit_update_rule_on_one_and_two_replicas(kind):
    expected = _reference(kind)
    for strategy in (tf.distribute.get_strategy(), mirrored_strategy()):
        for got, want in zip(_fit_with_loop(kind, strategy), expected):
            np.testing.assert_allclose(got, want, **TOLERANCE, err_msg=str(strategy))


def test_coupled_and_decoupled_decay_differ_and_no_decay_is_plain_adam():
    coupled, decoupled = _reference("adam_coupled"), _reference("adam_decoupled")
    # The tests above can tell the modes apart.
    assert np.abs(coupled[0] - decoupled[0]).max() > 1e-3 and np.abs(coupled[0] - _adam_reference(0.0)[0]).max() > 1e-3
    model = _linear_model()
    model.compile(optimizer=build_optimizer("adam", LR, 0.0, "coupled"), loss="mse")
    model.fit(X, T, batch_size=8, epochs=STEPS, shuffle=False, verbose=0)
    for got, expected in zip(_weights(model), _adam_reference(coupled=0.0)):
        np.testing.assert_allclose(got, expected, **TOLERANCE)


@pytest.mark.parametrize("mode", ["coupled", "decoupled"])
def test_every_network_weight_decays_but_not_the_loss_state_or_batchnorm_statistics(mode):
    """With zero gradients and plain SGD, a step scales each decayed variable by exactly 1 − lr·λ."""
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, bias_initializer="ones", name="dense")(inputs)
    x = keras.layers.BatchNormalization(beta_initializer="ones", name="bn")(x)
    model = keras.Model(inputs, x)
    loss = tfdml.losses.MarginLoss(per_class_beta=True, num_classes=3)
    optimizer = build_optimizer("sgd", 0.1, 0.2, mode, momentum=0.0)
    model.compile(optimizer=optimizer, loss=loss)
    tfdml.losses.attach_loss_state(model, loss)  # EmbeddingModel.compile does this itself
    excluded = exclude_loss_state_from_decay(optimizer, model)
    beta = loss.state_layer.trainable_variables
    assert [id(v) for v in excluded] == [id(v) for v in beta]
    before = {v.path: np.asarray(v) for v in model.variables}
    optimizer.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_variables])
    decayed = {v.path for v in model.trainable_variables} - {v.path for v in beta}
    assert {"dense/kernel", "dense/bias", "bn/gamma", "bn/beta"} <= decayed
    for variable in model.variables:
        factor = 1.0 - 0.1 * 0.2 if variable.path in decayed else 1.0
        np.testing.assert_allclose(np.asarray(variable), before[variable.path] * factor, rtol=1e-6,
                                   err_msg=variable.path)


def test_loss_scale_optimizer_applies_coupled_decay_to_unscaled_gradients():
    plain, scaled = keras.Variable(np.array([1.0, -2.0], np.float32)), keras.Variable(np.array([1.0, -2.0], np.float32))
    gradient = np.array([0.1, 0.3], np.float32)
    AdamL2(0.1, l2=0.5).apply_gradients([(tf.constant(gradient), plain)])
    wrapped = keras.optimizers.LossScaleOptimizer(AdamL2(0.1, l2=0.5), initial_scale=1024.0)
    wrapped.apply_gradients([(tf.constant(gradient * 1024.0), scaled)])
    np.testing.assert_allclose(np.asarray(scaled), np.asarray(plain), rtol=1e-6)


def test_coupled_optimizers_serialise_and_refuse_a_second_decay(tmp_path):
    for optimizer in (AdamL2(1e-3, l2=5e-4), SGDL2(1e-2, l2=5e-4, momentum=0.9)):
        restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
        assert type(restored) is type(optimizer) and restored.l2 == 5e-4
    model = _linear_model()
    model.compile(optimizer=AdamL2(1e-3, l2=5e-4), loss="mse")
    model.fit(X, T, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer) is AdamL2 and loaded.optimizer.l2 == 5e-4
    with pytest.raises(ValueError, match="weight_decay"):
        AdamL2(1e-3, l2=5e-4, weight_decay=1e-4)
    with pytest.raises(ValueError, match="l2"):
        SGDL2(1e-3, l2=-1.0)


def test_config_weight_decay_mode():
    assert load_config(None)["optimizer"]["weight_decay_mode"] == "decoupled"  # today's behaviour stays the default
    config = load_config(None, ["optimizer.weight_decay=0.0005", "optimizer.weight_decay_mode=coupled"])
    optimizer = make_optimizer(config, steps_per_epoch=10)
    assert type(optimizer) is AdamL2 and optimizer.l2 == 5e-4 and optimizer.weight_decay is None
    config = load_config(None, ["optimizer.name=sgd", "optimizer.weight_decay=0.0005"])
    optimizer = make_optimizer(config, steps_per_epoch=10)
    assert type(optimizer) is keras.optimizers.SGD and optimizer.weight_decay == 5e-4
    with pytest.raises(ValueError, match="'optimizer.weight_decay_mode'"):
        load_config(None, ["optimizer.weight_decay_mode=l2"])
    with pytest.raises(ValueError, match="'optimizer.weight_decay'"):
        load_config(None, ["optimizer.weight_decay=-0.1"])
