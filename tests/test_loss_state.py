"""Trainable loss state (`tfdml.losses.state`): the margin loss's β and the proxies get
gradients, follow their learning-rate multiplier, are trained by `model.fit`, saved in
checkpoints and `.keras` files, and never enter serving models."""
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdml

PROXY_LOSSES = ["proxy_nca", "soft_triple", "arcface", "normalized_softmax"]


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
    assert trained.shape == (4 * loss.proxies_per_class, 8)
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
