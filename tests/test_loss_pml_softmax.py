"""The margin-softmax losses L-Softmax, SphereFace and P2SGrad: against pytorch-metric-learning 2.9
(value and gradient with respect to the embeddings, class weights copied across; PML's weights
are laid out (D, C)), against explicit-loop references written from the papers' equations
(tests/reference_softmax_losses.py), P2SGrad's gradient against the paper's eq. 11, ψ against
arccos, and eager / tf.function / XLA, any magnitude and mixed precision."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import reference_softmax_losses as ref
import tfdml
from conftest import loss_and_gradient, loss_value, numeric_gradient, PML_LAYOUTS, mixed_precision_fit
from tfdml.losses.large_margin_softmax import angular_margin

NUM_CLASSES, DIM = 4, 5
LAYOUTS = PML_LAYOUTS
NAMES = ["large_margin_softmax", "sphereface", "p2sgrad"]


def _with_weights(loss, weights):
    loss.build_state(weights.shape[1])
    loss.state_layer.assign_value(weights)
    return loss


# ------------------------------------------------------------ PML as oracle
# case: (tfdml loss, PML loss(embedding size)), PML defaults first.
PML_CASES = {
    "large_margin_softmax": (lambda: tfdml.losses.LargeMarginSoftmaxLoss(NUM_CLASSES, dtype="float64"),
                             lambda pml: pml.LargeMarginSoftmaxLoss(NUM_CLASSES, DIM)),
    "large_margin_softmax_m2_s3": (
        lambda: tfdml.losses.LargeMarginSoftmaxLoss(NUM_CLASSES, margin=2, scale=3.0, dtype="float64"),
        lambda pml: pml.LargeMarginSoftmaxLoss(NUM_CLASSES, DIM, margin=2, scale=3)),
    "large_margin_softmax_m1": (lambda: tfdml.losses.LargeMarginSoftmaxLoss(NUM_CLASSES, margin=1, dtype="float64"),
                                lambda pml: pml.LargeMarginSoftmaxLoss(NUM_CLASSES, DIM, margin=1)),
    "sphereface": (lambda: tfdml.losses.SphereFaceLoss(NUM_CLASSES, dtype="float64"),
                   lambda pml: pml.SphereFaceLoss(NUM_CLASSES, DIM)),
    "sphereface_m3_s2": (lambda: tfdml.losses.SphereFaceLoss(NUM_CLASSES, margin=3, scale=2.0, dtype="float64"),
                         lambda pml: pml.SphereFaceLoss(NUM_CLASSES, DIM, margin=3, scale=2)),
    "p2sgrad_mse": (lambda: tfdml.losses.P2SGradLoss(NUM_CLASSES, form="mse", dtype="float64"),
                    lambda pml: pml.P2SGradLoss(DIM, NUM_CLASSES)),
}


def _pml_pair(case, seed):
    torch = pytest.importorskip("torch")
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    build, build_pml = PML_CASES[case]
    weights = np.random.default_rng(100 + seed).normal(size=(NUM_CLASSES, DIM))
    theirs = build_pml(pml)
    if case.startswith("p2sgrad"):  # PML asserts unit columns (and renormalises them itself)
        theirs.weight.data = torch.tensor((weights / np.linalg.norm(weights, axis=1, keepdims=True)).T.copy())
    else:
        theirs.W.data = torch.tensor(weights.T.copy())
    return _with_weights(build(), weights), theirs


def _pml_value_and_gradient(loss, labels, x):
    import torch
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    value = loss(xt, torch.tensor(labels, dtype=torch.long))
    (grad,) = torch.autograd.grad(value, xt)
    return float(value.detach()), grad.numpy()


def _assert_matches(ours, theirs, tolerance=1e-6):
    (value, grad), (expected, expected_grad) = ours, theirs
    assert abs(value - expected) <= tolerance * max(1.0, abs(expected)), (value, expected)
    assert np.max(np.abs(grad - expected_grad)) <= tolerance * max(1.0, np.max(np.abs(expected_grad))), \
        np.max(np.abs(grad - expected_grad))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("case", sorted(PML_CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_equal_to_pml(case, layout, seed):
    ours, theirs = _pml_pair(case, seed)
    labels = LAYOUTS[layout]
    x = np.random.default_rng(seed).normal(size=(len(labels), DIM))
    _assert_matches(loss_and_gradient(ours, labels, x), _pml_value_and_gradient(theirs, labels, x))


@pytest.mark.parametrize("case", ["large_margin_softmax", "sphereface_m3_s2"])
def test_equal_to_pml_in_every_branch_of_psi(case):
    """Embeddings spread over all angles to their class weight (every k of ψ, θ_y up to ≈ π)."""
    ours, theirs = _pml_pair(case, 0)
    weights = ours.state_layer.numpy()
    labels = np.array([0, 1, 2, 3] * 4)
    rng = np.random.default_rng(7)
    unit_w = weights[labels] / np.linalg.norm(weights[labels], axis=1, keepdims=True)
    other = rng.normal(size=unit_w.shape)
    other -= np.sum(other * unit_w, axis=1, keepdims=True) * unit_w
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    theta = np.linspace(0.05, math.pi - 0.01, len(labels))[:, None]
    x = (np.cos(theta) * unit_w + np.sin(theta) * other) * rng.uniform(0.5, 3.0, size=(len(labels), 1))
    _assert_matches(loss_and_gradient(ours, labels, x), _pml_value_and_gradient(theirs, labels, x))


# --------------------------------------------- explicit-loop references
# case: (tfdml loss, reference(x, labels, weights)), paper defaults first.
REFERENCE_CASES = {
    "large_margin_softmax": (lambda: tfdml.losses.LargeMarginSoftmaxLoss(NUM_CLASSES, dtype="float64"),
                             lambda x, y, w: ref.large_margin_softmax(x, y, w, 4)),
    "large_margin_softmax_m3_softening": (
        lambda: tfdml.losses.LargeMarginSoftmaxLoss(NUM_CLASSES, margin=3, softening=5.0, dtype="float64"),
        lambda x, y, w: ref.large_margin_softmax(x, y, w, 3, softening=5.0)),
    "sphereface": (lambda: tfdml.losses.SphereFaceLoss(NUM_CLASSES, dtype="float64"),
                   lambda x, y, w: ref.sphereface(x, y, w, 4)),
    "sphereface_m2_scale_softening": (
        lambda: tfdml.losses.SphereFaceLoss(NUM_CLASSES, margin=2, scale=1.5, softening=0.5, dtype="float64"),
        lambda x, y, w: ref.sphereface(x, y, w, 2, 1.5, 0.5)),
    "p2sgrad": (lambda: tfdml.losses.P2SGradLoss(NUM_CLASSES, dtype="float64"),
                lambda x, y, w: ref.p2sgrad(x, y, w)),
    "p2sgrad_mse": (lambda: tfdml.losses.P2SGradLoss(NUM_CLASSES, form="mse", dtype="float64"),
                    lambda x, y, w: ref.p2sgrad(x, y, w, "mse")),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_match_paper_references(case, layout, seed):
    build, reference = REFERENCE_CASES[case]
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(NUM_CLASSES, DIM))
    y = LAYOUTS[layout]
    x = rng.normal(size=(len(y), DIM)) * rng.uniform(0.3, 3.0, size=(len(y), 1))
    loss = _with_weights(build(), weights)
    assert loss_value(loss, y, x) == pytest.approx(reference(x, y, weights), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("margin", [1, 2, 3, 4, 5, 8])
def test_psi_equals_its_definition_with_arccos(margin):
    theta = np.linspace(0.0, math.pi, 2001)
    ours = angular_margin(tf.constant(np.cos(theta)), margin).numpy()
    expected = [ref.psi(t, margin) for t in theta]
    np.testing.assert_allclose(ours, expected, atol=1e-9)
    assert np.all(np.diff(ours) < 1e-12)  # monotonically decreasing in θ


def test_paper_forms_differ_from_pml_where_documented():
    rng = np.random.default_rng(3)
    y, x, weights = LAYOUTS["2_per_class"], rng.normal(size=(8, DIM)), rng.normal(size=(NUM_CLASSES, DIM))
    paper = loss_value(_with_weights(tfdml.losses.P2SGradLoss(NUM_CLASSES, dtype="float64"), weights), y, x)
    mse = loss_value(_with_weights(tfdml.losses.P2SGradLoss(NUM_CLASSES, form="mse", dtype="float64"), weights), y, x)
    assert mse == pytest.approx(paper * 2.0 / NUM_CLASSES, rel=1e-12) and mse != pytest.approx(paper)
    plain = loss_value(_with_weights(tfdml.losses.SphereFaceLoss(NUM_CLASSES, dtype="float64"), weights), y, x)
    softened = loss_value(_with_weights(tfdml.losses.SphereFaceLoss(NUM_CLASSES, softening=5.0, dtype="float64"),
                                        weights), y, x)
    assert softened < plain  # λ cos θ_y ≥ ψ(θ_y): a softer target


# --------------------------------------------------------------- gradients
def test_p2sgrad_gradients_are_the_papers_eq_11():
    rng = np.random.default_rng(4)
    y = LAYOUTS["uneven_with_singleton"]
    x, weights = rng.normal(size=(len(y), DIM)) * 2.0, rng.normal(size=(NUM_CLASSES, DIM)) * 0.7
    loss = _with_weights(tfdml.losses.P2SGradLoss(NUM_CLASSES, dtype="float64"), weights)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        value = loss(y, xt)
    grad_x, grad_w = tape.gradient(value, [xt, loss.state_layer.raw])
    expected_x, expected_w = ref.p2sgrad_gradients(x, y, weights)
    np.testing.assert_allclose(grad_x.numpy(), expected_x, rtol=1e-9, atol=1e-12)
    # lr_multiplier 1: the stored variable is the weights themselves.
    np.testing.assert_allclose(grad_w.numpy(), expected_w, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("case", ["large_margin_softmax_m3_softening", "sphereface", "p2sgrad"])
def test_gradients_match_central_differences(case):
    build, _ = REFERENCE_CASES[case]
    rng = np.random.default_rng(5)
    y = np.array([0, 0, 1, 2, 3, 3])
    x, weights = rng.normal(size=(6, DIM)), rng.normal(size=(NUM_CLASSES, DIM))
    loss = _with_weights(build(), weights)
    _, grad = loss_and_gradient(loss, y, x)
    expected = numeric_gradient(lambda z: loss_value(loss, y, z), x)
    np.testing.assert_allclose(grad, expected, atol=1e-6 * max(1.0, np.abs(expected).max()))


# ------------------------------------------------------------- robustness
ROBUST_LABELS = np.array([0, 0, 1, 1, 2, 2, 3, 3, 1])


def _build(name, dim=6, **kwargs):
    loss = tfdml.losses.get(name, num_classes=4, seed=0, **kwargs)
    loss.build_state(dim)
    return loss


def _value_and_gradient(loss, x, mode="eager"):
    def run(labels, embeddings):
        with tf.GradientTape() as tape:
            tape.watch(embeddings)
            value = loss(labels, embeddings)
        return value, tape.gradient(value, embeddings)

    if mode != "eager":
        run = tf.function(run, jit_compile=mode == "xla")
    value, grad = run(tf.constant(ROBUST_LABELS), tf.constant(x))
    return float(value), grad.numpy()


@pytest.mark.parametrize("name", NAMES)
def test_eager_tf_function_and_xla_agree_with_gradients(name):
    loss = _build(name)
    x = np.random.default_rng(1).normal(size=(len(ROBUST_LABELS), 6)).astype(np.float32)
    eager = _value_and_gradient(loss, x)
    for mode in ("graph", "xla"):
        value, grad = _value_and_gradient(loss, x, mode)
        assert value == pytest.approx(eager[0], rel=1e-4, abs=1e-5), mode
        np.testing.assert_allclose(grad, eager[1], rtol=1e-3, atol=1e-4 * max(1.0, np.abs(eager[1]).max()))


@pytest.mark.parametrize("name", NAMES)
def test_any_magnitude_is_finite_and_exact(name):
    """1e-35 … 1e35 in float32: finite value and gradient, equal to the float64 value (L-Softmax and
    SphereFace depend on ‖x‖, which is computed exactly; P2SGrad is scale invariant until ‖x‖²
    overflows, where the house L2 normalisation saturates to a zero vector)."""
    base = np.random.default_rng(0).normal(size=(len(ROBUST_LABELS), 6))
    loss32, loss64 = _build(name), _build(name, dtype="float64")
    for exponent in range(-35, 36, 5):
        x = base * 10.0 ** exponent
        value, grad = _value_and_gradient(loss32, x.astype(np.float32))
        assert np.isfinite(value) and np.isfinite(grad).all(), exponent
        if name != "p2sgrad" or -5 <= exponent <= 15:
            expected = float(loss64(ROBUST_LABELS, tf.constant(x.astype(np.float32).astype(np.float64))))
            assert value == pytest.approx(expected, rel=1e-4, abs=1e-5), exponent


def test_degenerate_angles_give_finite_gradients():
    """Embeddings exactly on, and exactly opposite, their class weight (θ_y = 0 and π) and at the
    boundaries θ = jπ/m of ψ's pieces."""
    weights = np.eye(4, 6)
    labels = np.array([0, 1, 2, 3, 0, 1])
    x = np.array([[2.0, 0, 0, 0, 0, 0], [0, -3.0, 0, 0, 0, 0],
                  [0, 0, math.cos(math.pi / 4), math.sin(math.pi / 4), 0, 0],
                  [0, 0, math.cos(3 * math.pi / 4), math.cos(math.pi / 4), 0, 0],
                  [math.cos(math.pi / 2), 1.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0, 0]])
    for name in NAMES:
        loss = _build(name, dtype="float64")
        loss.state_layer.assign_value(weights)
        value, grad = loss_and_gradient(loss, labels, x)
        assert np.isfinite(value) and np.isfinite(grad).all(), name


@pytest.mark.parametrize("name", NAMES)
def test_mixed_precision_training(name):
    """Under the mixed_float16 policy (float16 embeddings) the loss computes in float32, its gradients through
    the float16 model are finite, and `model.fit` (Keras' loss-scale optimizer) trains with a finite loss."""
    mixed_precision_fit(_build(name, dim=8), ROBUST_LABELS)


def test_options_round_trip_and_bad_arguments_name_themselves():
    for loss in (tfdml.losses.LargeMarginSoftmaxLoss(3, margin=2, scale=2.0, softening=4.0),
                 tfdml.losses.SphereFaceLoss(3, margin=3, softening=5.0), tfdml.losses.P2SGradLoss(3, form="mse")):
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
    for build, argument in [
        (lambda: tfdml.losses.SphereFaceLoss(3, margin=2.5), "margin"),
        (lambda: tfdml.losses.LargeMarginSoftmaxLoss(3, margin=0), "margin"),
        (lambda: tfdml.losses.SphereFaceLoss(3, scale=0.0), "scale"),
        (lambda: tfdml.losses.LargeMarginSoftmaxLoss(3, softening=-1.0), "softening"),
        (lambda: tfdml.losses.P2SGradLoss(3, form="sum"), "form"),
    ]:
        with pytest.raises(ValueError, match=argument):
            build()
