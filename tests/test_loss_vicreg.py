"""VICReg (Bardes, Ponce & LeCun, ICLR 2022): equal to pytorch-metric-learning's VICRegLoss (value and
gradient, float64) in its named form, to an explicit-loop reference of eqs. 1–6 in the paper form, and
the two-views-per-label contract (clear errors eagerly and in graphs, NaN under XLA, 0 for an empty batch)."""
import numpy as np
import pytest
import tensorflow as tf

import reference_vicreg as ref
import tfdml
from conftest import loss_and_gradient, loss_value, numeric_gradient

# Every label exactly twice, in different orders (first occurrences form Z, second ones Z').
LAYOUTS = {
    "consecutive": np.array([0, 0, 1, 1, 2, 2, 3, 3]),
    "interleaved": np.array([3, 1, 1, 0, 3, 0]),
    "halves": np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4]),
    "unsorted_sparse": np.array([7, 2, 9, 2, 7, 9, 40, 40]),
    "two_pairs": np.array([5, 6, 6, 5]),
}
PML_TOLERANCE = 1e-6


def _embeddings(labels, dim, seed, scale=1.0):
    return np.random.default_rng(seed).normal(size=(len(labels), dim)) * scale


# ----------------------------------------------------------------- PML oracle
def _pml_value_and_gradient(pml_loss, labels, x):
    torch = pytest.importorskip("torch")
    z, z_prime = [], []
    for i, label in enumerate(labels):
        if label not in labels[:i]:
            z.append(i)
            z_prime.append(i + 1 + list(labels[i + 1:]).index(label))
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    value = pml_loss(xt[z], ref_emb=xt[z_prime])
    (grad,) = torch.autograd.grad(value, xt)
    return float(value.detach()), grad.numpy()


PML_CASES = {
    "defaults": ({}, {}),
    "weights": ({"invariance_weight": 5.0, "variance_weight": 10.0, "covariance_weight": 2.0, "epsilon": 1e-3},
                {"invariance_lambda": 5.0, "variance_mu": 10.0, "covariance_v": 2.0, "eps": 1e-3}),
}


@pytest.mark.parametrize("case", sorted(PML_CASES))
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("dim,scale", [(5, 0.6), (5, 1.5), (1, 1.0), (12, 0.3)])
def test_matches_pytorch_metric_learning(case, layout, dim, scale):
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import losses as pml_losses
    ours_args, pml_args = PML_CASES[case]
    labels = LAYOUTS[layout]
    x = _embeddings(labels, dim, seed=len(labels) + dim, scale=scale)
    ours = tfdml.losses.VICRegLoss(**ours_args, invariance_reduction="mean", variance_reduction="mean",
                                   dtype="float64")
    value, grad = loss_and_gradient(ours, labels, x)
    expected, expected_grad = _pml_value_and_gradient(pml_losses.VICRegLoss(**pml_args), labels, x)
    assert abs(value - expected) <= PML_TOLERANCE * max(1.0, abs(expected)), (value, expected)
    assert np.max(np.abs(grad - expected_grad)) <= PML_TOLERANCE * max(1.0, np.max(np.abs(expected_grad)))


def test_pml_rejects_labels_and_the_paper_form_differs_from_it():
    """PML's VICReg takes the views as (embeddings, ref_emb); the default (eqs. 5, 6) is not its form."""
    labels = LAYOUTS["consecutive"]
    x = _embeddings(labels, 4, seed=3)
    paper = loss_value(tfdml.losses.VICRegLoss(dtype="float64"), labels, x)
    pml_form = loss_value(tfdml.losses.VICRegLoss(invariance_reduction="mean", variance_reduction="mean",
                                                  dtype="float64"), labels, x)
    assert paper > pml_form


# ----------------------------------------------------------- paper reference
REFERENCE_CASES = {
    "paper_defaults": ({}, {}),
    "gamma_epsilon": ({"gamma": 2.0, "epsilon": 0.5}, {"gamma": 2.0, "epsilon": 0.5}),
    "weights": ({"invariance_weight": 1.0, "variance_weight": 3.0, "covariance_weight": 0.5},
                {"lam": 1.0, "mu": 3.0, "nu": 0.5}),
    "mean_forms": ({"invariance_reduction": "mean", "variance_reduction": "mean"},
                   {"invariance_mean": True, "variance_mean": True}),
    "invariance_mean_only": ({"invariance_reduction": "mean"}, {"invariance_mean": True}),
}


@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("scale", [0.4, 2.0])
def test_matches_the_paper_reference(case, layout, scale):
    ours_args, ref_args = REFERENCE_CASES[case]
    labels = LAYOUTS[layout]
    x = _embeddings(labels, 4, seed=len(labels), scale=scale)
    expected = ref.vicreg(x, labels, **ref_args)
    assert loss_value(tfdml.losses.VICRegLoss(**ours_args, dtype="float64"), labels, x) == pytest.approx(
        expected, rel=1e-10, abs=1e-12)


def test_reference_terms_by_hand():
    """The reference itself on the docstring example: s = 1, v = 0.99 / 2 per view, c = 0."""
    x = np.array([[2.0, 0.0], [0.0, 0.0], [3.0, 0.0], [1.0, 0.0]])
    z, z_prime = ref.split_views(x, [0, 1, 0, 1])
    assert ref.invariance_term(z, z_prime) == 1.0
    assert ref.variance_term(z) == pytest.approx(0.495)
    assert ref.covariance_term(z) == 0.0
    assert ref.vicreg(x, [0, 1, 0, 1]) == pytest.approx(49.75)
    # One correlated pair of dimensions: C = [[2, 2], [2, 2]] → c = (4 + 4) / 2.
    assert ref.covariance_term([[1.0, 1.0], [-1.0, -1.0]]) == 4.0


@pytest.mark.parametrize("options", [{}, {"invariance_reduction": "mean", "variance_reduction": "mean"}])
def test_gradient_matches_central_differences(options):
    labels = LAYOUTS["interleaved"]
    x = _embeddings(labels, 3, seed=5, scale=0.7)
    loss = tfdml.losses.VICRegLoss(**options, dtype="float64")
    _, grad = loss_and_gradient(loss, labels, x)
    expected = numeric_gradient(lambda z: loss_value(loss, labels, z), x)
    np.testing.assert_allclose(grad, expected, atol=1e-5 * max(1.0, np.abs(expected).max()))


def test_order_of_pairs_and_of_the_views_does_not_matter():
    labels = LAYOUTS["consecutive"]
    x = _embeddings(labels, 4, seed=8)
    loss = tfdml.losses.VICRegLoss(dtype="float64")
    value = loss_value(loss, labels, x)
    order = np.random.default_rng(0).permutation(len(labels))
    assert loss_value(loss, labels[order], x[order]) == pytest.approx(value, rel=1e-12)
    swapped = np.array([1, 0, 3, 2, 5, 4, 7, 6])  # the second view first
    assert loss_value(loss, labels[swapped], x[swapped]) == pytest.approx(value, rel=1e-12)
    relabelled = np.array([9, 9, 4, 4, 0, 0, 2, 2])
    assert loss_value(loss, relabelled, x) == pytest.approx(value, rel=1e-12)


# --------------------------------------------------- the two-views contract
BAD_LABELS = {
    "singletons": np.array([0, 1, 2, 3]),
    "one_class": np.array([2, 2, 2, 2]),
    "three_views": np.array([0, 0, 0, 1, 1, 1]),
    "mixed": np.array([0, 0, 1, 1, 1, 2]),
    "one_pair": np.array([4, 4]),
    "odd": np.array([0, 0, 1, 1, 2]),
}


@pytest.mark.parametrize("case", sorted(BAD_LABELS))
def test_labels_that_are_not_two_views_raise_eagerly(case):
    labels = BAD_LABELS[case]
    with pytest.raises(ValueError, match="every label exactly twice and at least two pairs"):
        tfdml.losses.VICRegLoss()(labels, _embeddings(labels, 3, 0).astype(np.float32))


@pytest.mark.parametrize("case", ["singletons", "one_class", "three_views", "mixed"])
def test_labels_that_are_not_two_views_fail_in_graphs_and_give_nan_under_xla(case):
    labels = BAD_LABELS[case]
    x = _embeddings(labels, 3, 0).astype(np.float32)
    loss = tfdml.losses.VICRegLoss()
    with pytest.raises(tf.errors.InvalidArgumentError, match="every label exactly twice"):
        tf.function(lambda a, b: loss(a, b))(labels, x)
    dynamic = [tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, 3], tf.float32)]
    with pytest.raises(tf.errors.InvalidArgumentError, match="every label exactly twice"):
        tf.function(lambda a, b: loss(a, b), input_signature=dynamic)(labels, x)
    assert np.isnan(float(tf.function(lambda a, b: loss(a, b), jit_compile=True)(labels, x)))


def test_static_batch_sizes_that_cannot_hold_two_pairs_raise_while_tracing():
    loss = tfdml.losses.VICRegLoss()
    for rows in (2, 5):
        with pytest.raises(ValueError, match=f"a batch of {rows} rows"):
            tf.function(lambda a, b: loss(a, b)).get_concrete_function(
                tf.TensorSpec([rows], tf.int32), tf.TensorSpec([rows, 3], tf.float32))


def test_valid_batches_agree_eagerly_in_graphs_with_a_dynamic_batch_and_under_xla():
    labels = LAYOUTS["halves"]
    x = _embeddings(labels, 6, 2).astype(np.float32)
    loss = tfdml.losses.VICRegLoss()
    eager = float(loss(labels, x))
    dynamic = [tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, 6], tf.float32)]
    graph = tf.function(lambda a, b: loss(a, b), input_signature=dynamic)
    assert float(graph(labels, x)) == pytest.approx(eager, rel=1e-5)
    assert float(tf.function(lambda a, b: loss(a, b), jit_compile=True)(labels, x)) == pytest.approx(eager, rel=1e-4)
    assert float(graph(tf.zeros([0], tf.int64), tf.zeros([0, 6]))) == 0.0  # empty batch: 0


def test_degenerate_views_are_finite():
    """Identical views (s = 0), zero vectors (every std √ε) and float16 inputs."""
    labels = LAYOUTS["consecutive"]
    loss = tfdml.losses.VICRegLoss()
    for x in (np.repeat(_embeddings(labels[::2], 3, 1), 2, axis=0), np.zeros((8, 3)), np.ones((8, 3))):
        xt = tf.constant(x, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            value = loss(labels, xt)
        assert np.isfinite(float(value)) and np.isfinite(tape.gradient(value, xt).numpy()).all()
    assert float(loss(labels, np.zeros((8, 3), np.float32))) == pytest.approx(2 * 25 * (1 - 0.01), rel=1e-5)
    half = loss(labels, tf.constant(_embeddings(labels, 3, 2), tf.float16))
    assert half.dtype == tf.float32 and np.isfinite(float(half))


def test_huge_embeddings_saturate_and_keep_a_finite_gradient():
    labels = LAYOUTS["consecutive"]
    x = _embeddings(labels, 4, 3)
    loss = tfdml.losses.VICRegLoss()
    for magnitude in (1e10, 1e20, 1e35):
        xt = tf.constant(x * magnitude, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            value = loss(labels, xt)
        grad = tape.gradient(value, xt).numpy()
        assert np.isfinite(float(value)) and float(value) > 1e37
        assert np.isfinite(grad).all() and np.abs(grad).max() > 1e30
    # Below the saturation, float32 at magnitude 1e4 (covariance terms ~1e16) equals float64.
    exact = loss_value(tfdml.losses.VICRegLoss(dtype="float64"), labels, x * 1e4)
    assert float(loss(labels, tf.constant(x * 1e4, tf.float32))) == pytest.approx(exact, rel=1e-4)


def test_no_expansion_and_config_round_trip():
    import keras
    with pytest.raises(ValueError, match="expansion"):
        tfdml.losses.get("vicreg", expansion=tfdml.EmbeddingExpansion(2))
    loss = tfdml.losses.get("vicreg", gamma=2.0, invariance_reduction="mean")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert restored.get_config() == loss.get_config() and restored.gamma == 2.0
    for argument, value in (("epsilon", 0.0), ("invariance_reduction", "max"), ("variance_reduction", "none"),
                            ("covariance_weight", -1.0)):
        with pytest.raises(ValueError, match=argument):
            tfdml.losses.VICRegLoss(**{argument: value})
