"""PNP, threshold-consistent margin and dynamic soft margin against the explicit-loop references of
tests/reference_margin_losses.py (paper defaults, named options, Embedding Expansion), the dynamic soft margin's
running histogram and paper gradient, and the paper forms' gradients. Equality with pytorch-metric-learning:
tests/test_loss_pml_margin.py."""
import numpy as np
import pytest
import tensorflow as tf

import reference_margin_losses as ref
import tfdml
from conftest import LAYOUTS, expansion_id, loss_and_gradient, loss_value, make_expansion, numeric_gradient, \
    random_embeddings

PAIR_LAYOUTS = ["2_per_class", "uneven", "interleaved", "two_classes"]
EXPANSIONS = [(0, "consecutive", "class"), (2, "consecutive", "class"), (1, "all", "anchor")]

# name: (build(expansion), reference(x, labels, n, pairs, pooling)), paper defaults unless noted.
CASES = {
    "pnp": (lambda e: tfdml.losses.PNPLoss(expansion=e, dtype="float64"),
            lambda x, y, *ee: ref.pnp(x, y, "Dq", 0.01, 4.0, 2.0, True, *ee)),
    "pnp_o_without_query": (
        lambda e: tfdml.losses.PNPLoss(variant="O", temperature=0.3, query_as_positive=False, expansion=e,
                                       dtype="float64"),
        lambda x, y, *ee: ref.pnp(x, y, "O", 0.3, 4.0, 2.0, False, *ee)),
    "pnp_iu": (lambda e: tfdml.losses.PNPLoss(variant="Iu", temperature=0.3, expansion=e, dtype="float64"),
               lambda x, y, *ee: ref.pnp(x, y, "Iu", 0.3, 4.0, 2.0, True, *ee)),
    "pnp_ib": (lambda e: tfdml.losses.PNPLoss(variant="Ib", temperature=0.3, b=5.0, expansion=e, dtype="float64"),
               lambda x, y, *ee: ref.pnp(x, y, "Ib", 0.3, 4.0, 5.0, True, *ee)),
    "pnp_ds": (lambda e: tfdml.losses.PNPLoss(variant="Ds", temperature=0.3, expansion=e, dtype="float64"),
               lambda x, y, *ee: ref.pnp(x, y, "Ds", 0.3, 4.0, 2.0, True, *ee)),
    "tcm": (lambda e: tfdml.losses.ThresholdConsistentMarginLoss(expansion=e, dtype="float64"),
            lambda x, y, *ee: ref.threshold_consistent_margin(x, y, 0.9, 0.5, 1.0, 1.0, *ee)),
    "tcm_low_margins": (
        lambda e: tfdml.losses.ThresholdConsistentMarginLoss(pos_margin=0.2, neg_margin=-0.1, pos_weight=0.3,
                                                             neg_weight=2.0, expansion=e, dtype="float64"),
        lambda x, y, *ee: ref.threshold_consistent_margin(x, y, 0.2, -0.1, 0.3, 2.0, *ee)),
    "dsm": (lambda e: tfdml.losses.DynamicSoftMarginLoss(expansion=e, dtype="float64"),
            lambda x, y, *ee: ref.dynamic_soft_margin(x, y, 512, "hardest", None, 0.01, *ee)[0]),
    "dsm_all_16_bins": (
        lambda e: tfdml.losses.DynamicSoftMarginLoss(bins=16, triplets="all", expansion=e, dtype="float64"),
        lambda x, y, *ee: ref.dynamic_soft_margin(x, y, 16, "all", None, 0.01, *ee)[0]),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("layout", PAIR_LAYOUTS)
@pytest.mark.parametrize("expansion", EXPANSIONS, ids=expansion_id)
def test_margin_losses_match_paper_references(case, layout, expansion):
    y = LAYOUTS[layout]
    x = random_embeddings(y, 5, 3 + len(y), scale=0.6)
    build, reference = CASES[case]
    expected = reference(x, y, *expansion)
    assert loss_value(build(make_expansion(*expansion)), y, x) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("case", sorted(CASES))
def test_expansion_changes_the_loss_through_the_negatives_only(case):
    """With EE the value differs from the plain one (pooled negatives), and one-class batches (no negatives)
    are unchanged by EE."""
    build, _ = CASES[case]
    y = LAYOUTS["uneven"]
    x = random_embeddings(y, 5, 0, scale=0.6)
    assert loss_value(build(make_expansion(2, "consecutive", "class")), y, x) != pytest.approx(
        loss_value(build(None), y, x), rel=1e-9, abs=1e-12)
    one_class = np.array([1, 1, 1, 1])
    x = random_embeddings(one_class, 5, 4)
    assert loss_value(build(make_expansion(2, "consecutive", "class")), one_class, x) == loss_value(
        build(None), one_class, x)


@pytest.mark.parametrize("layout", ["one_class", "singletons"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_degenerate_layouts_match_references(case, layout):
    y = {"one_class": np.array([3, 3, 3, 3]), "singletons": np.array([0, 1, 2, 3])}[layout]
    x = random_embeddings(y, 5, 7)
    build, reference = CASES[case]
    assert loss_value(build(None), y, x) == pytest.approx(reference(x, y, 0, "consecutive", "class"), abs=1e-12)


# ------------------------------------------------------------ PNP gradients
@pytest.mark.parametrize("options", [{"variant": "O", "query_as_positive": False}, {"variant": "Dq"},
                                     {"variant": "Ib", "expansion": 2}])
def test_pnp_gradients_match_central_differences(options):
    y = np.array([0, 0, 0, 1, 1, 2])
    x = random_embeddings(y, 4, 11, scale=0.8)
    loss = tfdml.losses.PNPLoss(temperature=0.5, dtype="float64", **options)
    _, grad = loss_and_gradient(loss, y, x)
    expected = numeric_gradient(lambda z: loss_value(loss, y, z), x)
    np.testing.assert_allclose(grad, expected, atol=1e-6 * max(1.0, np.abs(expected).max()))


def test_pnp_variants_order_hard_positives_as_the_paper_says():
    """PNP-I's derivative grows with R (hard positives weigh more), PNP-D's shrinks."""
    rank = np.linspace(0.0, 5.0, 11)
    for variant, increasing in (("Iu", True), ("Ib", True), ("Ds", False), ("Dq", False)):
        loss = tfdml.losses.PNPLoss(variant=variant, dtype="float64")
        r = tf.constant(rank)
        with tf.GradientTape() as tape:
            tape.watch(r)
            values = loss._transform(r)
        slope = tape.gradient(values, r).numpy()
        assert np.all(np.diff(slope) > 0) == increasing and np.all(np.diff(slope) < 0) == (not increasing), variant


# ------------------------------------------------ dynamic soft margin state
def test_dynamic_soft_margin_running_histogram_matches_reference():
    loss = tfdml.losses.DynamicSoftMarginLoss(bins=32, momentum=0.2, dtype="float64")
    histogram = None
    for seed, layout in enumerate(["2_per_class", "uneven", "interleaved", "2_per_class"]):
        y = LAYOUTS[layout]
        x = random_embeddings(y, 5, 20 + seed)
        expected, histogram = ref.dynamic_soft_margin(x, y, 32, "hardest", histogram, 0.2)
        assert loss_value(loss, y, x) == pytest.approx(expected, rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(loss.histogram.numpy(), histogram, rtol=1e-9, atol=1e-12)
    loss.reset_histogram()
    assert np.all(loss.histogram.numpy() == 0.0)


def test_dynamic_soft_margin_keeps_its_histogram_without_a_triplet_or_with_nan():
    loss = tfdml.losses.DynamicSoftMarginLoss(bins=8)
    y = LAYOUTS["2_per_class"]
    loss(y, random_embeddings(y, 5, 1).astype(np.float32))
    before = loss.histogram.numpy().copy()
    assert float(loss(np.array([0, 1, 2, 3]), np.ones((4, 5), np.float32))) == 0.0
    x = random_embeddings(y, 5, 2).astype(np.float32)
    x[0, 0] = np.nan
    assert np.isnan(float(loss(y, x)))
    np.testing.assert_array_equal(loss.histogram.numpy(), before)


def test_dynamic_soft_margin_histogram_is_checkpointed_saved_and_left_alone_by_evaluation(tmp_path):
    """The running histogram is model state: fit updates it, evaluate does not, a checkpoint and a .keras file
    restore it (a resumed run continues with its histogram)."""
    loss = tfdml.losses.DynamicSoftMarginLoss(bins=16, momentum=0.5)
    inputs = tf.keras.Input((5,))
    model = tfdml.losses.attach_loss_state(tf.keras.Model(inputs, tf.keras.layers.Dense(4)(inputs)), loss)
    model.compile(optimizer="adam", loss=loss)
    assert any(v is loss.histogram for v in model.non_trainable_variables)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, 5)).astype(np.float32), np.repeat(np.arange(6), 4)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    trained = loss.histogram.numpy().copy()
    assert trained.sum() == pytest.approx(1.0)
    model.evaluate(rng.normal(size=(16, 5)).astype(np.float32) * 3.0, np.repeat(np.arange(4), 4), batch_size=8,
                   verbose=0)
    np.testing.assert_array_equal(loss.histogram.numpy(), trained)

    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    loss.reset_histogram()
    tf.train.Checkpoint(model=model).read(path).assert_existing_objects_matched()
    np.testing.assert_array_equal(loss.histogram.numpy(), trained)

    model.save(tmp_path / "dsm.keras")
    restored = tf.keras.models.load_model(tmp_path / "dsm.keras")
    np.testing.assert_array_equal(restored.loss.histogram.numpy(), trained)


def test_dynamic_soft_margin_two_replicas_equal_one_device():
    """The histogram is built from the all-gathered global batch: 2 replicas with 4 samples each equal one device
    with the 8, in every batch's value and in the running histogram of each replica."""
    from conftest import mirrored_strategy

    single = tfdml.losses.DynamicSoftMarginLoss(bins=16, momentum=0.3)
    strategy = mirrored_strategy()
    with strategy.scope():
        mirrored = tfdml.losses.DynamicSoftMarginLoss(bins=16, momentum=0.3)

    @tf.function
    def replica_values(labels, x):
        def step(labels, x):
            index = tf.distribute.get_replica_context().replica_id_in_sync_group
            return mirrored(labels[4 * index:4 * index + 4], x[4 * index:4 * index + 4])

        return strategy.reduce("SUM", strategy.run(step, (labels, x)), axis=None)

    rng = np.random.default_rng(3)
    for _ in range(3):
        labels = rng.permutation(np.repeat(np.arange(4), 2))
        x = rng.normal(size=(8, 5)).astype(np.float32)
        expected = float(single(labels, x))
        assert float(replica_values(tf.constant(labels), tf.constant(x))) == pytest.approx(expected, rel=1e-5)
    for replica_value in mirrored.histogram.value.values:
        np.testing.assert_allclose(replica_value.numpy(), single.histogram.numpy(), rtol=1e-6)


@pytest.mark.parametrize("triplets", ["hardest", "all"])
def test_dynamic_soft_margin_gradient_is_the_cdf_weight(triplets):
    """Paper form: ∂loss/∂x = Φ(x)/|T| with Φ held fixed — central differences of Σ Φ_fixed·x / |T|."""
    y = np.array([0, 0, 0, 1, 1, 2])
    x = random_embeddings(y, 4, 13, scale=0.8)
    loss = tfdml.losses.DynamicSoftMarginLoss(bins=16, triplets=triplets, dtype="float64")
    _, grad = loss_and_gradient(loss, y, x)
    values = ref.dsm_relative_distances(x, y, triplets)
    weights = ref.dsm_weights(values, ref.dsm_histogram(values, 16))

    def fixed_weights(z):
        return float(np.mean([w * v for w, v in zip(weights, ref.dsm_relative_distances(z, y, triplets))]))

    np.testing.assert_allclose(grad, numeric_gradient(fixed_weights, x), atol=1e-7)
    pml_form = tfdml.losses.DynamicSoftMarginLoss(bins=16, triplets=triplets, histogram_gradient=True,
                                                  dtype="float64")
    assert not np.allclose(loss_and_gradient(pml_form, y, x)[1], grad, atol=1e-9)
