"""Shared inter-class triplets T* (Milbich et al. §3.2): sampler validity, its distribution against an
explicit-loop reference, the loss forms against numpy, and the loss contract (graph/XLA, degenerate
batches, NaN, mixed precision, serialisation)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import reference_sharing as ref
import tfdml
from tfdml.losses import shared_triplets as st

LAYOUTS = {
    "3_classes": np.array([0, 0, 1, 1, 2, 2]),
    "uneven": np.array([0, 0, 0, 1, 2, 2, 3, 3, 3, 3]),
    "interleaved": np.array([1, 0, 3, 2, 0, 2, 1, 3, 0]),
    "singletons": np.array([0, 1, 2, 3, 4]),
}


def _embeddings(labels, dim=4, seed=0):
    return np.random.default_rng(seed).normal(size=(len(labels), dim))


def _distances(x):
    return tfdml.distances.euclidean(tfdml.distances.l2_normalize(tf.constant(x, tf.float32)))


@pytest.mark.parametrize("sampling", ["distance", "min_distance", "random", "semihard"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_valid_triplet_has_three_distinct_classes(sampling, layout):
    labels = LAYOUTS[layout]
    for seed in range(5):
        x = _embeddings(labels, seed=seed)
        t = st.sample_shared_triplets(_distances(x), labels, sampling, embedding_dim=4, seed=seed)
        anchor, positive, negative, valid = (np.asarray(v) for v in t)
        assert valid.all()  # every layout has >= 3 classes
        assert (labels[anchor] != labels[positive]).all()
        assert (labels[anchor] != labels[negative]).all()
        assert (labels[positive] != labels[negative]).all()


@pytest.mark.parametrize("sampling", ["distance", "min_distance", "random", "semihard", "unconstrained"])
def test_batches_without_three_classes_give_no_valid_triplet(sampling):
    labels = np.array([3, 3, 5, 5, 5])
    t = st.sample_shared_triplets(_distances(_embeddings(labels)), labels, sampling, embedding_dim=4, seed=1)
    valid = np.asarray(t.valid)
    if sampling == "unconstrained":  # labels are ignored: any three distinct samples
        assert valid.all()
        assert len({*zip(np.asarray(t.anchor), np.asarray(t.positive), np.asarray(t.negative))}) >= 1
        for i, j, k in zip(*(np.asarray(v) for v in t[:3])):
            assert len({i, j, k}) == 3
    else:
        assert not valid.any()
    two = np.array([0, 1])
    assert not np.asarray(st.sample_shared_triplets(_distances(_embeddings(two)), two, "unconstrained",
                                                    seed=0).valid).any()


@pytest.mark.parametrize("layout", ["uneven", "interleaved", "singletons"])
@pytest.mark.parametrize("dim", [4, 16])
def test_distance_sampling_probabilities_match_the_reference(layout, dim):
    labels = LAYOUTS[layout]
    x = _embeddings(labels, dim, seed=3) * np.linspace(0.3, 2.0, len(labels))[:, None]
    d = _distances(x)
    expected = ref.shared_triplet_probabilities(x, labels, dim)  # P[i, k, j]
    negative = tf.nn.softmax(st.shared_negative_logits(d, labels, dim), axis=1).numpy()
    np.testing.assert_allclose(negative, expected.sum(axis=2), atol=1e-6)
    joint = np.zeros_like(expected)
    for k in range(len(labels)):
        logits = st.shared_positive_logits(d, labels, tf.fill([len(labels)], k), dim)
        joint[:, k, :] = negative[:, k:k + 1] * tf.nn.softmax(logits, axis=1).numpy()
    np.testing.assert_allclose(joint, expected, atol=1e-6)


def test_distance_sampler_draws_follow_the_reference_distribution():
    labels = LAYOUTS["uneven"]
    x = _embeddings(labels, 6, seed=5)
    expected = ref.shared_triplet_probabilities(x, labels, 6)
    d = _distances(x)
    generator = keras.random.SeedGenerator(11)
    draw = tf.function(lambda: st.sample_shared_triplets(d, labels, "distance", 6, seed=generator)[1:3])
    draws = 3000
    counts = np.zeros_like(expected)
    for _ in range(draws):
        positive, negative = (np.asarray(v) for v in draw())
        counts[np.arange(len(labels)), negative, positive] += 1
    # Each anchor's (k, j) frequencies: total-variation distance to the reference is at sampling-noise level.
    tv = 0.5 * np.abs(counts / draws - expected).sum(axis=(1, 2))
    assert tv.max() < 0.06
    assert counts[expected == 0].sum() == 0  # nothing is drawn outside the support


def test_random_and_semihard_follow_their_rules():
    labels = LAYOUTS["uneven"]
    x = _embeddings(labels, seed=2)
    d = _distances(x).numpy()
    counts = np.zeros((len(labels), len(labels)))
    for seed in range(150):
        _, positive, negative, _ = (np.asarray(v) for v in st.sample_shared_triplets(d, labels, "random", seed=seed))
        counts[np.arange(len(labels)), negative] += 1
        _, sp, sn, _ = (np.asarray(v) for v in st.sample_shared_triplets(d, labels, "semihard", margin=0.3,
                                                                          seed=seed))
        for i, (j, k) in enumerate(zip(sp, sn)):
            third = [c for c in range(len(labels)) if labels[c] not in (labels[i], labels[j])]
            window = [c for c in third if d[i, j] < d[i, c] < d[i, j] + 0.3]
            assert k in window if window else k == min(third, key=lambda c: d[i, c])
    # Random negatives: uniform over the other classes' samples (each ≈ 150 / count).
    for i in range(len(labels)):
        others = labels != labels[i]
        np.testing.assert_allclose(counts[i, others] / 150, 1 / others.sum(), atol=0.12)
        assert counts[i, ~others].sum() == 0


@pytest.mark.parametrize("sampling", ["distance", "min_distance", "random", "semihard"])
@pytest.mark.parametrize("form", ["margin", "triplet"])
def test_loss_equals_the_numpy_formula_on_the_sampled_triplets(sampling, form):
    labels = LAYOUTS["uneven"]
    x = _embeddings(labels, 5, seed=7)
    loss = tfdml.losses.SharedTripletLoss(form=form, sampling=sampling, margin=0.2, beta=1.1, seed=4,
                                          dtype="float64")
    value = float(loss(labels, tf.constant(x)))
    # The same seed gives the same draws: the triplets the loss used.
    d = tfdml.distances.euclidean(tfdml.distances.l2_normalize(tf.constant(x)))
    t = st.sample_shared_triplets(d, labels, sampling, 5, 0.2, seed=keras.random.SeedGenerator(4))
    triplets = list(zip(*(np.asarray(v) for v in t[:3])))
    if form == "margin":
        expected = ref.margin_loss_on_triplets(x, triplets, np.asarray(t.valid), 0.2, 1.1)
    else:
        expected = ref.triplet_loss_on_triplets(x, triplets, np.asarray(t.valid), 0.2)
    assert value == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert expected > 0


def test_min_distance_sampling_takes_the_nearest_third_class_positive():
    labels = LAYOUTS["interleaved"]
    x = _embeddings(labels, 5, seed=3)
    d = ref.distance_matrix(ref.normalize(x))
    for seed in range(5):
        t = st.sample_shared_triplets(tf.constant(d), labels, "min_distance", 5, seed=seed)
        anchor, positive, negative, valid = (np.asarray(v) for v in t)
        assert valid.all()
        for i, j, k in zip(anchor, positive, negative):
            third = [c for c in range(len(labels)) if labels[c] not in (labels[i], labels[k])]
            assert j == min(third, key=lambda c: d[i, c])  # the explicit loop's nearest candidate


def test_npair_form_equals_the_numpy_formula():
    labels = LAYOUTS["interleaved"]
    x = _embeddings(labels, 5, seed=8)
    loss = tfdml.losses.SharedTripletLoss(form="npair", sampling="random", negatives=3, seed=2, dtype="float64")
    value = float(loss(labels, tf.constant(x)))
    generator = keras.random.SeedGenerator(2)
    d = tfdml.distances.euclidean(tfdml.distances.l2_normalize(tf.constant(x)))
    t = st.sample_shared_triplets(d, labels, "random", 5, seed=generator)
    negatives = np.asarray(st.sample_third_class(labels, t.positive, 3, generator))
    for i, (j, ks) in enumerate(zip(np.asarray(t.positive), negatives)):
        assert all(labels[k] not in (labels[i], labels[j]) for k in ks)
    expected = ref.npair_loss_on_triplets(x, np.asarray(t.anchor), np.asarray(t.positive), negatives,
                                          np.asarray(t.valid))
    assert value == pytest.approx(expected, rel=1e-9)


def test_learnable_beta_gets_a_gradient_and_the_regulariser_counts():
    labels = LAYOUTS["3_classes"]
    x = tf.constant(_embeddings(labels, seed=1), tf.float32)
    loss = tfdml.losses.SharedTripletLoss(seed=0)
    with tf.GradientTape() as tape:
        value = loss(labels, x)
    assert np.isfinite(float(value))
    assert tape.gradient(value, loss.state_layer.trainable_variables[0]) is not None
    assert tfdml.losses.SharedTripletLoss(learn_beta=False).state_layer is None
    plain = float(tfdml.losses.SharedTripletLoss(seed=0, learn_beta=False)(labels, x))
    regularised = float(tfdml.losses.SharedTripletLoss(seed=0, learn_beta=False, nu=0.01)(labels, x))
    assert regularised == pytest.approx(plain + 0.01 * 1.2 * 6, rel=1e-5)  # ν · Σ_valid β, 6 valid triplets


@pytest.mark.parametrize("form", ["margin", "triplet", "npair"])
def test_eager_and_graph_agree_for_the_same_seed_and_xla_compiles(form):
    labels = LAYOUTS["interleaved"]
    x = _embeddings(labels, 6, seed=4).astype(np.float32)

    def value(wrap):
        loss = tfdml.losses.SharedTripletLoss(form=form, seed=9)
        return float(wrap(lambda a, b: loss(a, b))(labels, x))

    eager = value(lambda f: f)
    assert value(tf.function) == pytest.approx(eager, rel=1e-5, abs=1e-6)
    if form == "margin":  # XLA selects another stateless RNG algorithm: its draws (not its formula) differ
        assert np.isfinite(value(lambda f: tf.function(f, jit_compile=True)))


DEGENERATE = {
    "two_classes": (np.array([0, 0, 1, 1]), np.random.default_rng(1).normal(size=(4, 6))),
    "duplicates": (np.array([0, 1, 2, 3]), np.ones((4, 6))),
    "zero_vectors": (np.array([0, 1, 2, 3]), np.zeros((4, 6))),
}


@pytest.mark.parametrize("form", ["margin", "triplet", "npair"])
@pytest.mark.parametrize("case", sorted(DEGENERATE))
def test_degenerate_batches_give_finite_values_and_gradients(form, case):
    labels, x = DEGENERATE[case]
    xt = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        value = tfdml.losses.SharedTripletLoss(form=form, seed=0)(labels, xt)
    grad = tape.gradient(value, xt)
    assert np.isfinite(float(value)) and np.isfinite(grad.numpy()).all()
    if case == "two_classes":  # no shared triplet: zero loss, zero gradient
        assert float(value) == 0.0 and not grad.numpy().any()


@pytest.mark.parametrize("form", ["margin", "triplet", "npair"])
def test_nan_embeddings_give_nan(form):
    labels = LAYOUTS["3_classes"]
    x = _embeddings(labels).astype(np.float32)
    x[2, 1] = np.nan
    assert np.isnan(float(tfdml.losses.SharedTripletLoss(form=form, seed=0)(labels, x)))


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_half_precision_inputs_compute_in_float32(dtype):
    labels = LAYOUTS["uneven"]
    value = tfdml.losses.SharedTripletLoss(seed=0)(labels, tf.cast(_embeddings(labels), dtype))
    assert value.dtype == tf.float32 and np.isfinite(float(value))


def test_arguments_config_and_errors():
    loss = tfdml.losses.SharedTripletLoss(form="triplet", sampling="semihard", margin=0.3, seed=5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is tfdml.losses.SharedTripletLoss and restored.get_config() == loss.get_config()
    for kwargs, argument in [({"form": "square"}, "form"), ({"sampling": "hard"}, "sampling"),
                             ({"margin": float("nan")}, "margin"), ({"negatives": 0}, "negatives"),
                             ({"lr_multiplier": 0.0}, "lr_multiplier"), ({"seed": "x"}, "seed")]:
        with pytest.raises(ValueError, match=argument):
            tfdml.losses.SharedTripletLoss(**kwargs)
    with pytest.raises(ValueError, match="labels"):
        loss(np.array([0, 1, 2]), np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="embedding_dim"):
        st.sample_shared_triplets(tf.zeros((3, 3)), [0, 1, 2], "distance")
    with pytest.raises(ValueError, match="sampling"):
        st.sample_shared_triplets(tf.zeros((3, 3)), [0, 1, 2], "hardest")
