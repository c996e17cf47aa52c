"""Sharing Matters' decorrelation (eq. 2), gradient reversal, objective (eq. 3) and Algorithm 1 steps:
against float64 numpy references, under model.fit, saved / exported, and under MirroredStrategy."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import reference_sharing as ref
import tfdml
from tfdml.sharing import SharingObjective, decorrelation, reverse_gradient

RNG = np.random.default_rng(0)


def test_gradient_reversal_is_identity_forward_and_minus_one_backward():
    x = tf.constant(RNG.normal(size=(3, 4)))
    weights = tf.constant(RNG.normal(size=(3, 4)))

    def f(v):
        return tf.reduce_sum(weights * tf.sin(v) * v)

    np.testing.assert_array_equal(reverse_gradient(x).numpy(), x.numpy())
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        plain, reversed_ = f(x), f(reverse_gradient(x))
    assert float(plain) == float(reversed_)
    np.testing.assert_array_equal(tape.gradient(reversed_, x).numpy(), -tape.gradient(plain, x).numpy())
    numeric = ref.numerical_gradient(lambda v: float(f(tf.constant(v))), x.numpy())
    np.testing.assert_allclose(tape.gradient(reversed_, x).numpy(), -numeric, atol=1e-7)
    layer = tfdml.sharing.GradientReversal()
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = tf.reduce_sum(layer(x) * weights)
    np.testing.assert_array_equal(tape.gradient(value, x).numpy(), -weights.numpy())


def _float64_objective(gamma=7.0, units=5, dim=3, shared_dim=4):
    objective = SharingObjective(
        class_loss=tfdml.losses.MarginLoss(mining="hard", beta=1.1, dtype="float64"),
        shared_loss=tfdml.losses.SharedTripletLoss(beta=1.0, seed=3, dtype="float64"),
        gamma=gamma, regressor_units=units, dtype="float64")
    objective.build_for(dim, shared_dim)
    # Non-zero biases exercise them and keep every hidden layer (and prediction) away from zero.
    objective.regressor.hidden.bias.assign(np.full(units, 0.3) + RNG.normal(size=units) * 0.1)
    objective.regressor.projection.bias.assign(RNG.normal(size=dim) * 0.1)
    return objective


def _regressor_weights(objective):
    regressor = objective.regressor
    return [v.numpy() for v in (regressor.hidden.kernel, regressor.hidden.bias, regressor.projection.kernel,
                                regressor.projection.bias)]


def test_decorrelation_and_its_gradients_match_numpy():
    objective = _float64_objective()
    phi = RNG.normal(size=(6, 3))
    phi_star = RNG.normal(size=(6, 4))
    w1, b1, w2, b2 = _regressor_weights(objective)
    a, b = tf.constant(phi), tf.constant(phi_star)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([a, b])
        r = decorrelation(a, objective.regressor(b))
    expected = ref.decorrelation(phi, ref.regressor(phi_star, w1, b1, w2, b2))
    assert float(r) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(tape.gradient(r, a).numpy(), ref.numerical_gradient(
        lambda v: ref.decorrelation(v, ref.regressor(phi_star, w1, b1, w2, b2)), phi), atol=1e-8)
    np.testing.assert_allclose(tape.gradient(r, b).numpy(), ref.numerical_gradient(
        lambda v: ref.decorrelation(phi, ref.regressor(v, w1, b1, w2, b2)), phi_star), atol=1e-8)
    np.testing.assert_allclose(tape.gradient(r, objective.regressor.projection.kernel).numpy(),
                               ref.numerical_gradient(
                                   lambda v: ref.decorrelation(phi, ref.regressor(phi_star, w1, b1, v, b2)), w2),
                               atol=1e-8)


def test_unnormalised_regressor_is_eq2_with_the_raw_output():
    objective = SharingObjective(gamma=2.0, regressor_units=5, regressor_normalize=False, dtype="float64")
    objective.build_for(3, 4)
    objective.regressor.projection.bias.assign(RNG.normal(size=3))
    phi, phi_star = RNG.normal(size=(6, 3)), RNG.normal(size=(6, 4))
    weights = _regressor_weights(objective)
    prediction = objective.regressor(tf.constant(phi_star)).numpy()
    np.testing.assert_allclose(prediction, ref.regressor(phi_star, *weights, normalize=False), rtol=1e-12)
    assert not np.allclose(np.linalg.norm(prediction, axis=1), 1.0)  # the option matters
    r = decorrelation(tf.constant(phi), tf.constant(prediction))
    assert float(r) == pytest.approx(ref.decorrelation(phi, ref.regressor(phi_star, *weights, normalize=False)),
                                     rel=1e-12)
    restored = SharingObjective.from_config(objective.get_config())
    assert restored.regressor_normalize is False and restored.regressor_units == 5


@pytest.mark.parametrize("head", ["class", "shared"])
def test_objective_value_and_gradients_match_numpy(head):
    """Step objective ranking − γ·r(R(φ), R(φ*)): its gradient is ∂ranking + γ∂r for φ and φ* (reversed)
    and −γ∂r for the regressor (so p ascends r)."""
    gamma = 7.0
    objective = _float64_objective(gamma)
    labels = np.array([0, 0, 1, 1, 2, 2])
    phi, phi_star = RNG.normal(size=(6, 3)), RNG.normal(size=(6, 4))
    w1, b1, w2, b2 = _regressor_weights(objective)
    a, b = tf.constant(phi), tf.constant(phi_star)
    kernel = objective.regressor.hidden.kernel
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([a, b])
        ranking, r = objective.terms(labels, a, b, head)
        total = ranking - gamma * r
    # The shared loss draws T*: replay the same draws (same seed) to get the triplets it used.
    d = tfdml.distances.euclidean(tfdml.distances.l2_normalize(b))
    t = tfdml.losses.shared_triplets.sample_shared_triplets(d, labels, "distance", 4,
                                                            seed=keras.random.SeedGenerator(3))
    triplets, valid = list(zip(*(np.asarray(v) for v in t[:3]))), np.asarray(t.valid)

    def r_of(p, s, w=w1):
        return ref.decorrelation(p, ref.regressor(s, w, b1, w2, b2))

    if head == "class":
        def rank_of(p, s):
            return ref.batch_hard_margin_loss(p, labels, 0.2, 1.1)
    else:
        def rank_of(p, s):
            return ref.margin_loss_on_triplets(s, triplets, valid, 0.2, 1.0)
    assert float(total) == pytest.approx(rank_of(phi, phi_star) - gamma * r_of(phi, phi_star), rel=1e-10)
    # Gradient reversal: the embeddings receive +γ ∂r (they minimise r) ...
    np.testing.assert_allclose(tape.gradient(total, a).numpy(), ref.numerical_gradient(
        lambda v: rank_of(v, phi_star) + gamma * r_of(v, phi_star), phi), atol=1e-6)
    np.testing.assert_allclose(tape.gradient(total, b).numpy(), ref.numerical_gradient(
        lambda v: rank_of(phi, v) + gamma * r_of(phi, v), phi_star), atol=1e-6)
    # ... the regressor −γ ∂r (it maximises r).
    np.testing.assert_allclose(tape.gradient(total, kernel).numpy(), ref.numerical_gradient(
        lambda v: -gamma * r_of(phi, phi_star, v), w1), atol=1e-6)


def _model(shared=6, dim=5, **kwargs):
    return tfdml.models.EmbeddingModel("small_cnn", embedding_dim=None, heads={"class": dim, "shared": shared},
                                       input_shape=(12, 12, 3), freeze_batchnorm=True, **kwargs)


def _pair(seed=0, classes=4, per_class=3):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class).astype(np.int32)
    images = rng.uniform(0, 255, size=(len(labels), 12, 12, 3)).astype(np.float32)
    images += labels[:, None, None, None] * 20.0
    return images, labels


def test_regressor_ascends_r_while_backbone_and_heads_descend_it():
    keras.utils.set_random_seed(1)
    model = _model()
    objective = SharingObjective(gamma=1.0, regressor_units=8)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=objective)
    images, labels = _pair()

    def r_now():
        out = model(images)
        return float(decorrelation(out["class"], objective.regressor(out["shared"])))

    regressor_vars = objective.regressor.trainable_variables
    network_vars = [v for v in model.trainable_variables
                    if all(v is not w for w in objective.trainable_variables)]
    with tf.GradientTape() as tape:
        out = model(images, training=True)
        r = objective.decorrelation(out["class"], out["shared"])
        objective_value = -objective.gamma * r  # eq. 3 without the ranking terms
    grads = tape.gradient(objective_value, regressor_vars + network_vars)
    start = r_now()
    for v, g in zip(regressor_vars, grads[:len(regressor_vars)]):
        v.assign_sub(0.5 * g)  # a gradient-descent step on L for p only
    after_p = r_now()
    assert after_p > start
    for v, g in zip(network_vars, grads[len(regressor_vars):]):
        v.assign_sub(0.05 * g)  # then for the backbone and heads only (gradients of the same L)
    assert r_now() < after_p


def _digits_pairs(seed):
    split = tfdml.data.digits_split("train", image_size=12)
    return tfdml.sharing.paired_train_pipeline(split, batch_size=20, samples_per_class=4, augmentation="none",
                                               image_size=12, seed=seed)


def test_two_head_model_fit_on_digits_lowers_both_losses():
    keras.utils.set_random_seed(0)
    model = _model(shared=16, dim=16)
    objective = SharingObjective(class_loss=tfdml.losses.MarginLoss(seed=0),
                                 shared_loss=tfdml.losses.SharedTripletLoss(seed=0), gamma=5.0, regressor_units=32)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss=objective, jit_compile=False)
    held_out = _digits_pairs(seed=7).take(4).cache()
    before = model.evaluate(held_out, verbose=0, return_dict=True)
    history = model.fit(_digits_pairs(seed=1), steps_per_epoch=15, epochs=1, verbose=0)
    after = model.evaluate(held_out, verbose=0, return_dict=True)
    assert after["class_loss"] < 0.7 * before["class_loss"]
    assert after["shared_loss"] < 0.8 * before["shared_loss"]
    assert set(history.history) == set(tfdml.sharing.LOG_KEYS)
    assert int(model.optimizer.iterations) == 2 * 15  # two updates per iteration (Algorithm 1)
    assert after["class_decorrelation"] > 0


def test_mixed_precision_steps_are_finite_with_loss_scaling():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model()
        objective = SharingObjective(gamma=10.0, regressor_units=8)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=objective, jit_compile=False)
        images, labels = _pair()
        data = tfdml.sharing.paired_batches(tf.data.Dataset.from_tensors((images, labels)),
                                            tf.data.Dataset.from_tensors((images[::-1], labels[::-1])))
        history = model.fit(data.repeat(), steps_per_epoch=2, epochs=1, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert objective.regressor.hidden.compute_dtype == "float16"
    assert all(np.isfinite(values).all() for values in history.history.values())
    assert 0 < int(model.optimizer.iterations) <= 4  # updates with overflowing float16 gradients are skipped


def test_save_load_and_export_of_every_tap_round_trip_without_the_regressor(tmp_path):
    keras.utils.set_random_seed(2)
    model = _model()
    objective = SharingObjective(gamma=3.0, regressor_units=7)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=objective)
    images, labels = _pair()
    data = tfdml.sharing.paired_batches(tf.data.Dataset.from_tensors((images, labels)),
                                        tf.data.Dataset.from_tensors((images[::-1], labels[::-1])))
    model.fit(data.repeat(), steps_per_epoch=2, epochs=1, verbose=0)
    assert model.taps == ["pool", "class", "shared", "concat"]
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.heads == {"class": 5, "shared": 6}
    for mine, theirs in zip(objective.weights, restored.tfdml_sharing.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())  # regressor and both β
    assert restored.tfdml_sharing.gamma == 3.0 and restored.optimizer.iterations.numpy() == 4
    regressor_ids = {id(v) for v in objective.regressor.weights}
    for tap in model.taps:
        embedder = model.embedder(tap)
        assert not regressor_ids & {id(v) for v in embedder.weights}
        expected = embedder(images).numpy()
        np.testing.assert_allclose(restored.embedder(tap)(images).numpy(), expected, atol=1e-6)
        export_dir = tfdml.export(model, str(tmp_path / tap), tap=tap)
        stored = tf.train.list_variables(os.path.join(export_dir, "variables", "variables"))
        assert stored and not any(tuple(shape) in ((6, 7), (7, 5)) for _, shape in stored)  # p's kernels
        served = tf.saved_model.load(export_dir)
        output = served.signatures["serving_default"](images=tf.constant(images))
        np.testing.assert_allclose(output["embeddings"].numpy(), expected, atol=1e-5)
    outputs = model(images)
    concat = model.embedder("concat")(images).numpy()
    np.testing.assert_allclose(concat * np.sqrt(2), np.concatenate([outputs["class"], outputs["shared"]], 1),
                               atol=1e-6)


def _weights_of(layer):
    return [w.numpy().copy() for w in layer.weights]


@pytest.mark.parametrize("mode", ["shared_only", "both"])
def test_table7_ablation_modes_train_the_heads_they_name(mode):
    keras.utils.set_random_seed(3)
    model = _model()
    objective = SharingObjective(class_loss=tfdml.losses.MarginLoss(mining="hard", learn_beta=False),
                                 shared_loss=tfdml.losses.SharedTripletLoss(seed=0, learn_beta=False), gamma=50.0,
                                 regressor_units=8, mode=mode)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=objective, jit_compile=False)
    images, labels = _pair()
    shared_images, shared_labels = _pair(seed=1)
    batches = ((tf.constant(images), tf.constant(labels)), (tf.constant(shared_images), tf.constant(shared_labels)))
    heads = {name: model.get_layer(name) for name in ("class", "shared")}
    before = {name: _weights_of(layer) for name, layer in heads.items()}
    regressor = _weights_of(objective.regressor)
    logs = objective.train_iteration(model, model.optimizer, *batches)
    changed = {name: any(not np.array_equal(a, b.numpy()) for a, b in zip(before[name], layer.weights))
               for name, layer in heads.items()}
    assert changed == ({"class": False, "shared": True} if mode == "shared_only" else {"class": True, "shared": False})
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(regressor, objective.regressor.weights))  # no r
    assert int(model.optimizer.iterations) == objective.updates_per_iteration == (1 if mode == "shared_only" else 2)
    assert float(logs["class_decorrelation"]) == float(logs["shared_decorrelation"]) == 0.0
    # "both": T* trains φ too (the shared head, unused, keeps its weights); "shared_only": no class loss.
    assert float(logs["shared_loss"]) > 0 and (float(logs["class_loss"]) == 0.0) == (mode == "shared_only")
    assert SharingObjective.from_config(objective.get_config()).mode == mode
    with pytest.raises(ValueError, match="mode"):
        SharingObjective(mode="class_only")
