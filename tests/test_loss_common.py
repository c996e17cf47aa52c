"""Checks every registered loss must pass: built by name with its default config."""
import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdml

# Extra constructor arguments for losses that cannot be built without them.
REQUIRED_ARGS = {
    "proxy_nca": {"num_classes": 4},
    "soft_triple": {"num_classes": 4},
    "arcface": {"num_classes": 4},
    "normalized_softmax": {"num_classes": 4},
    "softmax": {"num_classes": 4},
    "margin": {"num_classes": 4},
    "proxy_anchor": {"num_classes": 4},
    "cosface": {"num_classes": 4},
    "sub_center_arcface": {"num_classes": 4},
    "cross_batch_memory": {"loss": {"name": "contrastive"}, "memory_size": 16},
    "large_margin_softmax": {"num_classes": 4},
    "sphereface": {"num_classes": 4},
    "p2sgrad": {"num_classes": 4},
    "manifold": {"num_classes": 4},
}
RANDOM_LOSSES = {"margin", "quadruplet", "snr"}
MEMORY_LOSSES = {"cross_batch_memory"}  # state changes with every call
# Losses on two views per label (every label exactly twice): one class or singletons raise a ValueError.
TWO_VIEWS = {"vicreg"}


def _build(name, dim=6, **kwargs):
    loss = tfdml.losses.get(name, **{**REQUIRED_ARGS.get(name, {}), **kwargs})
    loss.build_state(dim)
    return loss


def _batch(seed=0, dim=6):
    rng = np.random.default_rng(seed)
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    centres = rng.normal(size=(4, dim)) * 2
    return labels, (centres[labels] + rng.normal(size=(8, dim))).astype(np.float32)


ALL = tfdml.losses.names()


def test_registry_lists_losses_and_rejects_unknown():
    assert {"triplet", "lifted", "npair", "multi_similarity", "contrastive"} <= set(ALL)
    with pytest.raises(ValueError, match="valid names: .*triplet"):
        tfdml.losses.get("does_not_exist")
    with pytest.raises(ValueError, match="triplet"):
        tfdml.losses.get("triplet", not_an_argument=1)


@pytest.mark.parametrize("name", ALL)
def test_serialisation_round_trip(name):
    loss = _build(name)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()


@pytest.mark.parametrize("name", ALL)
def test_expansion_config_round_trip(name):
    if not tfdml.losses.get_class(name).supports_expansion:
        pytest.skip("loss without expansion")
    loss = _build(name, expansion=tfdml.EmbeddingExpansion(3, normalize=False, pairs="all", pooling="anchor"))
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert restored.expansion == loss.expansion


@pytest.mark.parametrize("name", ALL)
def test_class_declares_its_arguments_and_capabilities(name):
    """`config_args` lists exactly the constructor arguments (so `get_config` saves them all)."""
    cls = tfdml.losses.get_class(name)
    signature = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "name", "kwargs")]
    assert list(cls.config_args) == signature
    assert cls.supports_expansion == ("expansion" in signature)
    assert (cls.default_pooling in ("class", "anchor")) == cls.supports_expansion
    assert cls.random_sampling <= ("seed" in signature)


def test_default_pooling_of_the_triplet_family_is_anchor():
    anchor = {name for name in ALL if tfdml.losses.get_class(name).default_pooling == "anchor"}
    assert anchor == {"triplet", "margin", "quadruplet", "snr"}
    loss = tfdml.losses.SNRLoss(expansion=tfdml.EmbeddingExpansion(2))
    assert loss.pooling == "anchor"
    assert tfdml.losses.SNRLoss(expansion=tfdml.EmbeddingExpansion(2, pooling="class")).pooling == "class"


@pytest.mark.parametrize("name", ALL)
def test_unsupported_expansion_or_seed_is_rejected(name):
    cls = tfdml.losses.get_class(name)
    if not cls.supports_expansion:
        with pytest.raises(ValueError, match="expansion"):
            _build(name, expansion=tfdml.EmbeddingExpansion(2))
    if "seed" not in cls.config_args:
        with pytest.raises(ValueError, match="seed"):
            _build(name, seed=1)
    else:
        with pytest.raises(ValueError, match="seed must be an int"):
            _build(name, seed="one")


def test_bad_hyperparameters_name_the_argument():
    for build, argument in [
        (lambda: tfdml.losses.TripletLoss(margin=float("nan")), "margin"),
        (lambda: tfdml.losses.TripletLoss(form="square"), "form"),
        (lambda: tfdml.losses.TripletLoss(temperature=0.0), "temperature"),
        (lambda: tfdml.losses.TripletLoss(embedding_scale=-1.0), "embedding_scale"),
        (lambda: tfdml.losses.ContrastiveLoss(rho=1.5), "rho"),
        (lambda: tfdml.losses.AngularLoss(alpha_degrees=90.0), "alpha_degrees"),
        (lambda: tfdml.losses.HistogramLoss(bins=1), "bins"),
        (lambda: tfdml.losses.NPairLoss(embedding_reg=-0.1), "embedding_reg"),
        (lambda: tfdml.losses.MarginLoss(lr_multiplier=0.0), "lr_multiplier"),
        (lambda: tfdml.losses.QuadrupletLoss(second_margin="big"), "second_margin"),
    ]:
        with pytest.raises(ValueError, match=argument):
            build()


DEGENERATE = {
    "duplicates": (np.array([0, 0, 1, 1]), np.ones((4, 6), np.float32)),
    "zero_vectors": (np.array([0, 0, 1, 1]), np.zeros((4, 6), np.float32)),
    "one_class": (np.array([2, 2, 2, 2]), np.random.default_rng(1).normal(size=(4, 6)).astype(np.float32)),
    "singletons": (np.array([0, 1, 2, 3]), np.random.default_rng(2).normal(size=(4, 6)).astype(np.float32)),
}


@pytest.mark.parametrize("case", sorted(DEGENERATE))
@pytest.mark.parametrize("name", ALL)
def test_degenerate_batches_give_finite_values_and_gradients(name, case):
    labels, x = DEGENERATE[case]
    if name in TWO_VIEWS and case in ("one_class", "singletons"):
        with pytest.raises(ValueError, match="every label exactly twice"):
            _build(name)(labels, x)
        return
    for expansion in (None, tfdml.EmbeddingExpansion(2), tfdml.EmbeddingExpansion(2, normalize=False)):
        try:
            loss = _build(name, expansion=expansion)
        except ValueError:
            continue  # loss without expansion support
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            value = loss(labels, xt)
        grad = tape.gradient(value, xt)
        assert np.isfinite(float(value))
        assert grad is None or np.isfinite(grad.numpy()).all()


# Losses whose value is 0 without a positive pair, with their regularisers switched off.
NO_TUPLE_ARGS = {
    "triplet": {}, "lifted": {}, "multi_similarity": {}, "histogram": {}, "quadruplet": {}, "margin": {},
    "npair": {"embedding_reg": 0.0}, "angular": {"embedding_reg": 0.0}, "generalized_lifted": {"embedding_reg": 0.0},
    "snr": {"embedding_reg": 0.0},
    "circle": {}, "supcon": {}, "ntxent": {}, "tuplet_margin": {}, "nca": {},
    "fastap": {}, "smooth_ap": {}, "pnp": {}, "dynamic_soft_margin": {},
}


@pytest.mark.parametrize("name", sorted(NO_TUPLE_ARGS))
def test_no_valid_tuple_gives_zero_loss_and_zero_gradient(name):
    labels, x = DEGENERATE["singletons"]
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        value = _build(name, **NO_TUPLE_ARGS[name])(labels, xt)
    assert float(value) == 0.0
    assert np.all(tape.gradient(value, xt).numpy() == 0.0)


@pytest.mark.parametrize("name", ALL)
def test_eager_graph_and_xla_agree(name):
    labels, x = _batch()
    loss = _build(name, seed=3) if name in RANDOM_LOSSES else _build(name)
    # A memory changes with every call: each mode gets a fresh loss.
    fresh = _build if name in MEMORY_LOSSES else (lambda _: loss)
    eager = float(fresh(name)(labels, x))
    graph_loss, xla_loss = fresh(name), fresh(name)
    graph = float(tf.function(lambda a, b: graph_loss(a, b))(labels, x))
    xla = float(tf.function(lambda a, b: xla_loss(a, b), jit_compile=True)(labels, x))
    if name in RANDOM_LOSSES:
        assert np.isfinite([eager, graph, xla]).all()
    else:
        assert graph == pytest.approx(eager, rel=1e-5, abs=1e-6)
        assert xla == pytest.approx(eager, rel=1e-4, abs=1e-5)


# Named options of the paper protocols, with and without EE: eager, tf.function and XLA agree.
OPTIONS = {
    "triplet_sum": ("triplet", {"mining": "hard", "margin": 1e-5, "average_over": "sum"}),
    "triplet_squared_positive_pairs": ("triplet", {"mining": "all", "distance": "squared_euclidean",
                                                   "average_over": "positive_pairs"}),
    "multi_similarity_no_plus_one": ("multi_similarity", {"beta": 50.0, "plus_one": False}),
    "npair_nca_form": ("npair", {"normalize": True, "temperature": 0.1, "embedding_reg": 0.0}),
    "smooth_ap_include_query": ("smooth_ap", {"temperature": 0.1, "include_query": True}),
    "ranked_list_pml": ("ranked_list", {"form": "pml", "balance": 0.5, "t_p": 1.0}),
}


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("expansion", [None, 2])
def test_named_options_agree_eagerly_in_graphs_and_under_xla(option, expansion):
    name, params = OPTIONS[option]
    labels, x = _batch(4)
    loss = _build(name, **params, expansion=None if expansion is None else tfdml.EmbeddingExpansion(expansion))
    eager = float(loss(labels, x))
    graph = float(tf.function(lambda a, b: loss(a, b))(labels, x))
    xla = float(tf.function(lambda a, b: loss(a, b), jit_compile=True)(labels, x))
    assert graph == pytest.approx(eager, rel=1e-5, abs=1e-6)
    assert xla == pytest.approx(eager, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("mining", ["hard", "semihard", "distance", "softhard", "random", "easy_positive_semihard"])
def test_triplet_miners_compile_with_xla_and_ee(mining):
    labels, x = _batch(1)
    loss = tfdml.losses.TripletLoss(mining=mining, rho=0.2, seed=1, expansion=tfdml.EmbeddingExpansion(2))
    value = tf.function(lambda a, b: loss(a, b), jit_compile=True)(labels, x)
    assert np.isfinite(float(value))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_half_precision_inputs_compute_in_float32(name, dtype):
    labels, x = _batch(2)
    loss = _build(name)
    value = loss(labels, tf.cast(x, dtype))
    assert value.dtype == tf.float32
    assert np.isfinite(float(value))


@pytest.mark.parametrize("name", ALL)
def test_bad_inputs_raise_clear_errors(name):
    loss = _build(name)
    labels, x = _batch()
    with pytest.raises(ValueError, match="embeddings"):
        loss(labels, x[0])
    with pytest.raises(ValueError, match="labels"):
        loss(labels[:5], x)
    with pytest.raises(ValueError, match="labels"):
        loss(labels.astype(np.float32) + 0.5, x)
    with pytest.raises(ValueError, match="labels"):
        loss(np.array(["a"] * 8), x)
    with pytest.raises(ValueError, match="labels"):
        loss(labels.reshape(2, 4), x)
    with pytest.raises(ValueError, match="sample_weight"):
        loss(labels, x, sample_weight=np.ones(8))


def test_float_labels_holding_integers_are_accepted():
    labels, x = _batch()
    loss = tfdml.losses.TripletLoss()
    assert float(loss(labels.astype(np.float32), x)) == pytest.approx(float(loss(labels, x)))
    assert float(loss(labels.reshape(-1, 1), x)) == pytest.approx(float(loss(labels, x)))


def _separable_problem(seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), 16)
    centres = rng.normal(size=(4, 8)) * 3
    x = (centres[labels] + rng.normal(size=(64, 8))).astype(np.float32)
    order = rng.permutation(64)
    return x[order], labels[order]


def _grouped_dataset(x, labels, per_class=4, classes=4):
    """Batches of `classes` × `per_class` samples grouped by class (EE's batch layout)."""
    idx = np.concatenate([np.where(labels == c)[0] for c in range(classes)])
    xs, ys = x[idx], labels[idx]
    batches_x, batches_y = [], []
    for start in range(0, 16, per_class):
        sel = np.concatenate([np.arange(c * 16 + start, c * 16 + start + per_class) for c in range(classes)])
        batches_x.append(xs[sel])
        batches_y.append(ys[sel])
    return tf.data.Dataset.from_tensor_slices((np.stack(batches_x), np.stack(batches_y)))


@pytest.mark.parametrize("name", ALL)
def test_model_fit_lowers_the_loss(name):
    x, labels = _separable_problem()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(16)(inputs))
    loss = _build(name, dim=16, seed=0) if name in RANDOM_LOSSES else _build(name, dim=16)
    tfdml.losses.attach_loss_state(model, loss, embedding_dim=16)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    data = _grouped_dataset(x, labels, per_class=2 if name in TWO_VIEWS else 4)
    before = float(np.mean([float(loss(yb, model(xb))) for xb, yb in data]))
    model.fit(data, epochs=8, verbose=0)
    if hasattr(loss, "reset_histogram"):  # dynamic soft margin: Φ·x against a fresh running histogram, as before
        loss.reset_histogram()
    after = float(np.mean([float(loss(yb, model(xb))) for xb, yb in data]))
    assert after < before


def test_mixed_precision_fit_is_finite():
    x, labels = _separable_problem(1)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16)])
        loss = tfdml.losses.TripletLoss(expansion=tfdml.EmbeddingExpansion(2))
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
        history = model.fit(_grouped_dataset(x, labels), epochs=2, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(history.history["loss"]).all()
