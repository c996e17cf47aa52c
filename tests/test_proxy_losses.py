"""Proxy losses: explicit-loop references, hand-worked cases, and their trainable
proxies (gradients, learning-rate multiplier, saving, exclusion from serving models)."""
import math
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdml
import zoo_reference as zoo

LAYOUTS = [np.array([0, 0, 1, 1, 2, 2, 3, 3]), np.array([3, 1, 1, 0, 3, 2, 0]), np.array([2, 2, 2, 2])]


def _setup(cls, labels, dim=5, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    loss = cls(num_classes=4, dtype="float64", **kwargs)
    loss.build_state(dim)
    proxies = rng.normal(size=loss.state_layer.raw.shape)
    loss.state_layer.assign_value(proxies)
    return loss, rng.normal(size=(len(labels), dim)), proxies


def _value(loss, labels, x):
    return float(loss(tf.constant(labels), tf.constant(x, tf.float64)))


@pytest.mark.parametrize("layout", range(len(LAYOUTS)))
def test_proxy_losses_match_references(layout):
    y = LAYOUTS[layout]
    for seed in range(2):
        loss, x, p = _setup(tfdml.losses.ProxyNCALoss, y, seed=seed, scale=2.5)
        assert _value(loss, y, x) == pytest.approx(zoo.proxy_nca(x, y, p, 2.5), abs=1e-6)
        loss, x, p = _setup(tfdml.losses.NormalizedSoftmaxLoss, y, seed=seed, temperature=0.2)
        assert _value(loss, y, x) == pytest.approx(zoo.normalized_softmax(x, y, p, 0.2), abs=1e-6)
        loss, x, p = _setup(tfdml.losses.ArcFaceLoss, y, seed=seed, margin=0.4, scale=8.0)
        assert _value(loss, y, x) == pytest.approx(zoo.arcface(x, y, p, 0.4, 8.0), abs=1e-6)
        for k in (1, 2, 3):
            loss, x, p = _setup(tfdml.losses.SoftTripleLoss, y, seed=seed, centers_per_class=k, la=6.0,
                                gamma=0.2, margin=0.05, tau=0.3)
            expected = zoo.soft_triple(x, y, p, 4, k, 6.0, 0.2, 0.05, 0.3)
            assert _value(loss, y, x) == pytest.approx(expected, abs=1e-6), k


def test_lr_multiplier_does_not_change_the_value():
    y = LAYOUTS[0]
    plain, x, p = _setup(tfdml.losses.SoftTripleLoss, y)
    scaled = tfdml.losses.SoftTripleLoss(num_classes=4, lr_multiplier=8.0, dtype="float64")
    scaled.build_state(5)
    scaled.state_layer.assign_value(p)
    assert _value(scaled, y, x) == pytest.approx(_value(plain, y, x), abs=1e-12)


# --------------------------------------------------------------- hand-worked
def test_hand_worked_normalized_softmax_and_arcface():
    # x = (1, 0); class weights (1, 0) and (0, 1): cosines 1 and 0.
    x = np.array([[2.0, 0.0]])
    w = np.array([[1.0, 0.0], [0.0, 3.0]])
    ns = tfdml.losses.NormalizedSoftmaxLoss(num_classes=2, temperature=0.5, dtype="float64")
    ns.build_state(2)
    ns.state_layer.assign_value(w)
    # −log(e^2 / (e^2 + e^0)) = log(1 + e^−2)
    assert _value(ns, np.array([0]), x) == pytest.approx(math.log1p(math.exp(-2.0)), abs=1e-12)
    arc = tfdml.losses.ArcFaceLoss(num_classes=2, margin=math.pi / 3, scale=2.0, dtype="float64")
    arc.build_state(2)
    arc.state_layer.assign_value(w)
    # θ_y = 0 → cos(π/3) = ½: −log(e^1 / (e^1 + e^0)) = log(1 + e^−1)
    assert _value(arc, np.array([0]), x) == pytest.approx(math.log1p(math.exp(-1.0)), abs=1e-12)
    # Target class 1: θ_y = π/2 → cos(5π/6) = −√3/2; other logit 2·1.
    expected = -(-math.sqrt(3)) + math.log(math.exp(-math.sqrt(3)) + math.exp(2.0))
    assert _value(arc, np.array([1]), x) == pytest.approx(expected, abs=1e-12)


def test_hand_worked_proxy_nca():
    # Unit x = (1, 0); proxies (1, 0), (−1, 0), (0, 1); scale 1 → d = 0, 4, 2.
    # Label 0: 0 + log(e^−4 + e^−2).
    loss = tfdml.losses.ProxyNCALoss(num_classes=3, scale=1.0, dtype="float64")
    loss.build_state(2)
    loss.state_layer.assign_value(np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]))
    expected = math.log(math.exp(-4.0) + math.exp(-2.0))
    assert _value(loss, np.array([0]), np.array([[5.0, 0.0]])) == pytest.approx(expected, abs=1e-12)


# ------------------------------------------------------------------ proxies
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
    assert trained.shape == (4 * getattr(loss, "proxies_per_class", 1), 8)
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
    with pytest.raises(ValueError, match="centers_per_class"):
        tfdml.losses.SoftTripleLoss(num_classes=3, centers_per_class=0)
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
