"""Trainable loss state (`tfdml.losses.state`): the margin loss's β and the proxies get
gradients, follow their learning-rate multiplier, are trained by `model.fit`, saved in
checkpoints and `.keras` files, and never enter serving models."""
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdml

PROXY_LOSSES = ["proxy_nca", "soft_triple", "arcface", "normalized_softmax", "softmax", "proxy_anchor", "cosface",
                "sub_center_arcface", "large_margin_softmax", "sphereface", "p2sgrad", "manifold"]


@pytest.mark.parametrize("name", PROXY_LOSSES)
def test_proxies_get_gradients(name):
    loss = tfdml.losses.get(name, num_classes=4)
    loss.build_state(6)
    x = tf.constant(np.random.default_rng(0).normal(size=(8, 6)), tf.float32)
    with tf.GradientTape() as tape:
        value = loss(np.array([0, 0, 1, 1, 2, 2, 3, 3]), x)
    grad = tape.gradient(value, loss.state_layer.raw)
    assert grad is not None and np.abs(grad.numpy()).sum() > 0


def test_lr_multiplier_scales_the_adam_step():
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    x = tf.constant(np.random.default_rng(1).normal(size=(8, 6)), tf.float32)
    moves = []
    for multiplier in (1.0, 10.0):
        loss = tfdml.losses.NormalizedSoftmaxLoss(num_classes=4, lr_multiplier=multiplier, seed=0)
        loss.build_state(6)
        before = loss.state_layer.numpy().copy()
        optimizer = keras.optimizers.Adam(1e-3, epsilon=1e-12)
        with tf.GradientTape() as tape:
            value = loss(y, x)
        optimizer.apply_gradients([(tape.gradient(value, loss.state_layer.raw), loss.state_layer.raw)])
        moves.append(loss.state_layer.numpy() - before)
    np.testing.assert_allclose(moves[1], 10.0 * moves[0], rtol=1e-3, atol=1e-7)


def test_same_seed_gives_same_initial_proxies_for_any_multiplier():
    a = tfdml.losses.ArcFaceLoss(num_classes=3, seed=5).build_state(4).numpy()
    b = tfdml.losses.ArcFaceLoss(num_classes=3, seed=5, lr_multiplier=7.0).build_state(4).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-6)


def _digits_like(n=40, size=16, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, size, size, 3)).astype("float32"), np.repeat(np.arange(classes), n // classes)


@pytest.mark.parametrize("name", PROXY_LOSSES)
def test_proxies_are_trained_saved_and_excluded_from_serving(name, tmp_path):
    x, y = _digits_like()
    model = tfdml.models.EmbeddingModel("small_cnn", 8, input_shape=(16, 16, 3))
    loss = tfdml.losses.get(name, num_classes=4, lr_multiplier=5.0)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)  # builds and attaches the proxies
    initial = loss.state_layer.numpy().copy()
    model.fit(x, y, batch_size=20, epochs=2, verbose=0)
    trained = loss.state_layer.numpy()
    assert trained.shape == (4 * loss.proxies_per_class, 8 + (name == "softmax"))  # softmax: weights and bias
    assert not np.allclose(initial, trained)
    # .keras round trip: bit-identical proxies.
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(restored.tfdml_loss_state.numpy(), trained)
    # Checkpoint round trip.
    checkpoint = str(tmp_path / "w.weights.h5")
    model.save_weights(checkpoint)
    loss.state_layer.assign_value(np.zeros_like(trained))
    model.load_weights(checkpoint)
    np.testing.assert_array_equal(loss.state_layer.numpy(), trained)
    # Serving models never contain the proxies.
    state_ids = {id(v) for v in loss.state_layer.weights}
    for tap in model.taps:
        assert not state_ids & {id(v) for v in model.embedder(tap).weights}


def test_labels_out_of_range_and_dimension_mismatch_are_errors():
    loss = tfdml.losses.ProxyNCALoss(num_classes=3)
    loss.build_state(4)
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="labels must be class ids in \\[0, num_classes=3\\)"):
        loss(np.array([0, 3]), x)
    with pytest.raises(ValueError, match="labels"):
        loss(np.array([-1, 0]), x)
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_classes"):
        tf.function(lambda a, b: loss(a, b))(tf.constant([0, 5]), x)
    with pytest.raises(ValueError, match="embeddings of size 5"):
        loss(np.array([0, 1]), np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="num_classes"):
        tfdml.losses.get("arcface")
    with pytest.raises(ValueError, match="proxies_per_class"):
        tfdml.losses.SoftTripleLoss(num_classes=3, proxies_per_class=0)
    with pytest.raises(ValueError, match="lr_multiplier"):
        tfdml.losses.SoftTripleLoss(num_classes=3, lr_multiplier=0)


def test_proxies_built_lazily_on_first_call_warn():
    loss = tfdml.losses.NormalizedSoftmaxLoss(num_classes=2)
    with pytest.warns(UserWarning, match="attach_loss_state"):
        value = loss(np.array([0, 1]), np.ones((2, 3), np.float32))
    assert np.isfinite(float(value)) and loss.state_layer.raw.shape == (2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss(np.array([0, 1]), np.ones((2, 3), np.float32))  # built: no second warning


def test_beta_gets_a_gradient_and_is_trained_and_saved(tmp_path):
    model = tfdml.models.EmbeddingModel("small_cnn", 8, input_shape=(16, 16, 3))
    loss = tfdml.losses.MarginLoss(mining="hard", seed=0)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    x = np.random.default_rng(0).uniform(0, 255, (20, 16, 16, 3)).astype("float32")
    y = np.repeat(np.arange(5), 4)
    with tf.GradientTape() as tape:
        value = loss(y, model(x))
    assert float(tf.abs(tape.gradient(value, loss.state_layer.raw))[0]) > 0
    before = loss.state_layer.numpy().copy()
    model.fit(x, y, batch_size=20, epochs=2, verbose=0, shuffle=False)
    trained = loss.state_layer.numpy()
    assert not np.allclose(before, trained)
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(restored.tfdml_loss_state.numpy(), trained)
    # The serving embedder has no β.
    state_ids = {id(v) for v in loss.state_layer.weights}
    assert state_ids and not state_ids & {id(v) for v in model.embedder("fc").weights}


def test_sequential_model_is_rejected_with_a_clear_error():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="functional"):
        tfdml.losses.attach_loss_state(model, tfdml.losses.MarginLoss(), 3)


# Every loss with trainable state, deterministic (hard mining), with a per-class β for the margin loss.
STATEFUL = {
    "margin": {"mining": "hard", "per_class_beta": True, "num_classes": 4, "lr_multiplier": 5.0},
    "proxy_nca": {"num_classes": 4, "seed": 0},
    "soft_triple": {"num_classes": 4, "seed": 0},
    "arcface": {"num_classes": 4, "seed": 0},
    "normalized_softmax": {"num_classes": 4, "seed": 0, "lr_multiplier": 3.0},
    "proxy_anchor": {"num_classes": 4, "seed": 0, "lr_multiplier": 100.0},
    "cosface": {"num_classes": 4, "seed": 0},
    "sub_center_arcface": {"num_classes": 4, "seed": 0},
    "large_margin_softmax": {"num_classes": 4, "seed": 0},
    "sphereface": {"num_classes": 4, "seed": 0, "lr_multiplier": 2.0},
    "p2sgrad": {"num_classes": 4, "seed": 0},
    "manifold": {"num_classes": 4, "seed": 0, "lr_multiplier": 10.0},
}


def _functional_model_with_loss_state(name):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(5)(inputs))
    loss = tfdml.losses.get(name, **STATEFUL[name])
    tfdml.losses.attach_loss_state(model, loss)
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=loss)
    return model, loss


@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_plain_functional_model_keras_file_restores_loss_state_and_training_continues(name, tmp_path):
    """Issue 15: the loss state of a `keras.Model(inputs, outputs)` survives `.keras` (values, optimizer
    slots), so training after a reload equals uninterrupted training."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 6)).astype("float32"), np.repeat(np.arange(4), 8)
    model, loss = _functional_model_with_loss_state(name)
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    path = str(tmp_path / "full.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(restored.loss.state_layer.numpy(), loss.state_layer.numpy())
    assert restored.loss.state_layer in restored.tfdml_loss_state._flatten_layers()
    assert restored.evaluate(x, y, batch_size=32, verbose=0) == model.evaluate(x, y, batch_size=32, verbose=0)
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    restored.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(restored.loss.state_layer.numpy(), loss.state_layer.numpy(), rtol=1e-5, atol=1e-6)
    for a, b in zip(restored.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert int(restored.optimizer.iterations) == int(model.optimizer.iterations) == 8


@keras.saving.register_keras_serializable(package="tfdml_tests")
class SubclassedEmbedder(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(5)

    def call(self, inputs):
        return self.dense(inputs)


def test_subclassed_model_that_cannot_reattach_its_loss_state_is_warned_about():
    model = SubclassedEmbedder()
    with pytest.warns(UserWarning, match="compile_from_config"):
        tfdml.losses.attach_loss_state(model, tfdml.losses.ArcFaceLoss(num_classes=4), embedding_dim=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tfdml.models.EmbeddingModel("small_cnn", 8, input_shape=(16, 16, 3)).compile(
            loss=tfdml.losses.ArcFaceLoss(num_classes=4))


def test_learnable_beta_not_tracked_by_the_model_warns_once():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))  # plain functional model, β not attached
    loss = tfdml.losses.MarginLoss(mining="hard", seed=0)
    x, y = np.random.default_rng(0).normal(size=(8, 4)).astype("float32"), np.repeat(np.arange(4), 2)
    with pytest.warns(UserWarning, match="beta is not tracked by a model.*attach_loss_state"):
        loss(y, model(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss(y, model(x))  # said once
        tfdml.losses.MarginLoss(learn_beta=False, mining="hard")(y, model(x))  # fixed β: nothing to train
        attached = tfdml.losses.MarginLoss(mining="hard", seed=0)
        tfdml.losses.attach_loss_state(model, attached)
        attached(y, model(x))


@pytest.mark.parametrize("name", ["margin", "arcface", "triplet"])
def test_attach_loss_state_returns_the_model(name):
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(5)(inputs))
    loss = tfdml.losses.get(name, **STATEFUL.get(name, {}))
    attached = tfdml.losses.attach_loss_state(model, loss)
    assert attached is model
    model = tfdml.losses.attach_loss_state(model, loss)  # idempotent, assignable
    model.compile(optimizer="adam", loss=loss)
    if loss.state_layer is not None:
        assert isinstance(model, tfdml.losses.LossStateFunctional)
        assert all(any(v is w for w in model.trainable_variables) for v in loss.state_layer.trainable_variables)
