"""The manifold loss (Aziere & Todorovic, CVPR 2019): equal to pytorch-metric-learning 2.9's
`ManifoldLoss` (loss value and gradient with respect to the embeddings, float64, proxies copied across,
labels passed as PML's proxy assignment `indices_tuple`; PML's own random assignment reproduced by
seeding torch), to the explicit-loop random-walk reference (tests/reference_manifold_loss.py), and its
own promises: λ_C = ∞, no violating term → 0 with a zero gradient, degenerate batches, proxy gradients,
NaN in → NaN out."""
import math

import numpy as np
import pytest
import tensorflow as tf

import reference_manifold_loss as ref
import tfdml
from conftest import loss_and_gradient, loss_value, numeric_gradient, PML_LAYOUTS

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning import losses as pml_losses  # noqa: E402

NUM_CLASSES, DIM = 4, 5
LAYOUTS = PML_LAYOUTS
TOLERANCE = 1e-6  # PML inverts I − αS̄ in float32 even for float64 inputs: agreement to ~1e-8


def _pair(seed, **kwargs):
    """(tfdml ManifoldLoss, PML ManifoldLoss) sharing random proxies; kwargs are tfdml's names."""
    proxies = np.random.default_rng(100 + seed).normal(size=(NUM_CLASSES, DIM))
    ours = tfdml.losses.ManifoldLoss(NUM_CLASSES, dtype="float64", **kwargs)
    ours.build_state(DIM)
    ours.state_layer.assign_value(proxies)
    pml_names = {"lambda_c": "lambdaC", "alpha": "alpha", "margin": "margin"}
    theirs = pml_losses.ManifoldLoss(l=DIM, K=NUM_CLASSES, **{pml_names[k]: v for k, v in kwargs.items()})
    theirs.proxies.data = torch.tensor(proxies)
    return ours, theirs


def _pml(loss, x, assignment=None):
    """(value, gradient) of PML's loss; `assignment`: the proxy of each embedding (`indices_tuple`)."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    value = loss(xt, indices_tuple=None if assignment is None else torch.tensor(assignment, dtype=torch.long))
    (grad,) = torch.autograd.grad(value, xt)
    return float(value.detach()), grad.numpy()


def _assert_matches(ours, theirs):
    (value, grad), (expected, expected_grad) = ours, theirs
    assert abs(value - expected) <= TOLERANCE * max(1.0, abs(expected)), (value, expected)
    assert np.max(np.abs(grad - expected_grad)) <= TOLERANCE * max(1.0, np.max(np.abs(expected_grad))), \
        np.max(np.abs(grad - expected_grad))


CASES = {
    "default": {},
    "intrinsic_only_alpha_099": {"lambda_c": 0.0, "alpha": 0.99},
    "margin_and_weight": {"lambda_c": 2.5, "alpha": 0.5, "margin": 0.05},
    "no_margin": {"margin": 0.0, "alpha": 0.9},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_equals_pml(case, layout, seed):
    ours, theirs = _pair(seed, **CASES[case])
    labels = LAYOUTS[layout]
    x = np.random.default_rng(seed).normal(size=(len(labels), DIM))
    _assert_matches(loss_and_gradient(ours, labels, x), _pml(theirs, x, labels))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pml_random_assignment_with_its_draw_as_labels(seed):
    """Without `indices_tuple` PML draws the proxy of each embedding (every proxy once, the rest at random,
    shuffled): the same torch draws, passed as labels, give PML's loss."""
    ours, theirs = _pair(seed)
    x = np.random.default_rng(seed).normal(size=(9, DIM))
    torch.manual_seed(seed)
    expected = _pml(theirs, x)
    torch.manual_seed(seed)
    assignment = torch.cat((torch.arange(NUM_CLASSES), torch.randint(0, NUM_CLASSES, (9 - NUM_CLASSES,))))
    assignment = assignment[torch.randperm(9)].numpy()
    _assert_matches(loss_and_gradient(ours, assignment, x), expected)


@pytest.mark.parametrize("layout", ["2_per_class", "one_class", "pair_and_singletons"])
def test_context_only_equals_pml_difference(layout):
    """λ_C = ∞ is L_ctx alone, which PML computes as loss(λ_C = 1) − loss(λ_C = 0) (PML's λ_C = ∞ gives ∞)."""
    ours, with_context = _pair(3, lambda_c=math.inf)
    _, intrinsic = _pair(3, lambda_c=0.0)
    with_context.lambdaC = 1.0
    labels = LAYOUTS[layout]
    x = np.random.default_rng(3).normal(size=(len(labels), DIM))
    (total, total_grad), (part, part_grad) = _pml(with_context, x, labels), _pml(intrinsic, x, labels)
    _assert_matches(loss_and_gradient(ours, labels, x), (total - part, total_grad - part_grad))


# -------------------------------------------------------- explicit loops
REFERENCE_CASES = {
    "default": {},
    "authors_code_kernel": {"temperature": 0.05, "margin": 0.0},
    "weighted": {"lambda_c": 0.3, "alpha": 0.6, "margin": 0.02, "temperature": 1.0},
    "intrinsic_only": {"lambda_c": 0.0},
    "context_only": {"lambda_c": math.inf},
}


@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_matches_explicit_loop_reference(case, layout):
    kwargs = REFERENCE_CASES[case]
    labels = LAYOUTS[layout]
    rng = np.random.default_rng(7)
    proxies, x = rng.normal(size=(NUM_CLASSES, DIM)), rng.normal(size=(len(labels), DIM))
    loss = tfdml.losses.ManifoldLoss(NUM_CLASSES, dtype="float64", **kwargs)
    loss.build_state(DIM)
    loss.state_layer.assign_value(proxies)
    expected = ref.manifold(x, labels, proxies, **kwargs)
    assert loss_value(loss, labels, x) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_manifold_similarities_are_the_random_walk_fixed_point():
    rng = np.random.default_rng(8)
    proxies, x = rng.normal(size=(3, 4)), rng.normal(size=(6, 4))
    loss = tfdml.losses.ManifoldLoss(3, alpha=0.7, temperature=0.8, dtype="float64")
    unit = tfdml.distances.l2_normalize
    f = loss.manifold_similarities(unit(tf.constant(x)), unit(tf.constant(proxies))).numpy()
    np.testing.assert_allclose(f, ref.manifold_matrix(x, proxies, 0.7, 0.8), rtol=1e-10, atol=1e-13)


def test_hand_computed_symmetric_graph():
    """One embedding orthogonal to two orthogonal proxies: S = J − I, F = ½(I − ¼(J − I))⁻¹ = 0.6 I + 0.2 (J − I),
    so v = u = m and the loss is (1 + λ_C)·log(1 + e^m)."""
    loss = tfdml.losses.ManifoldLoss(2, alpha=0.5, margin=0.3, lambda_c=2.0, dtype="float64")
    loss.build_state(3).assign_value([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    x = tf.constant([[0.0, 0.0, 5.0]], tf.float64)
    f = loss.manifold_similarities(tfdml.distances.l2_normalize(x), loss.unit_proxies(tf.float64)).numpy()
    np.testing.assert_allclose(f, 0.2 + 0.4 * np.eye(3), atol=1e-14)
    assert float(loss([1], x)) == pytest.approx(3.0 * math.log1p(math.exp(0.3)), rel=1e-12)


# ------------------------------------------------------------ promises
def test_gradients_match_central_differences_for_embeddings_and_proxies():
    labels = np.array([0, 0, 1, 2, 2, 1])
    rng = np.random.default_rng(4)
    x, proxies = rng.normal(size=(6, 4)), rng.normal(size=(3, 4))
    loss = tfdml.losses.ManifoldLoss(3, margin=0.05, dtype="float64")
    loss.build_state(4)
    loss.state_layer.assign_value(proxies)
    _, grad = loss_and_gradient(loss, labels, x)
    np.testing.assert_allclose(grad, numeric_gradient(lambda z: loss_value(loss, labels, z), x), atol=1e-7)

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        value = loss(labels, xt)
    proxy_grad = tape.gradient(value, loss.state_layer.raw).numpy()

    def at(p):
        loss.state_layer.assign_value(p)
        return loss_value(loss, labels, x)

    np.testing.assert_allclose(proxy_grad, numeric_gradient(at, proxies), atol=1e-7)
    assert np.abs(proxy_grad).max() > 1e-4


@pytest.mark.parametrize("case", ["one_proxy", "far_apart_margin"])
def test_no_violating_term_gives_zero_and_zero_gradient(case):
    """One proxy has no other proxy to violate; a very negative margin silences every term."""
    if case == "one_proxy":
        loss, labels = tfdml.losses.ManifoldLoss(1, dtype="float64"), np.zeros(5, int)
    else:
        loss, labels = tfdml.losses.ManifoldLoss(4, margin=-10.0, dtype="float64"), LAYOUTS["2_per_class"]
    loss.build_state(DIM)
    x = np.random.default_rng(5).normal(size=(len(labels), DIM))
    value, grad = loss_and_gradient(loss, labels, x)
    assert value == 0.0 and np.all(grad == 0.0)


@pytest.mark.parametrize("batch", ["duplicates", "zeros", "proxy_copies", "one_row"])
@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_degenerate_batches_are_finite(batch, mode):
    loss = tfdml.losses.ManifoldLoss(NUM_CLASSES, seed=0)
    loss.build_state(DIM)
    rng = np.random.default_rng(6)
    labels = np.array([0, 0, 1, 1, 2, 3])
    x = {"duplicates": np.tile(rng.normal(size=(1, DIM)), (6, 1)), "zeros": np.zeros((6, DIM)),
         "proxy_copies": loss.state_layer.numpy()[labels] * 3.0,
         "one_row": rng.normal(size=(1, DIM))}[batch]
    labels = labels[:len(x)]

    def run(y, z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = loss(y, z)
        return value, tape.gradient(value, z)

    if mode != "eager":
        run = tf.function(run, jit_compile=mode == "xla")
    value, grad = run(tf.constant(labels), tf.constant(x, tf.float32))
    assert np.isfinite(float(value)) and np.isfinite(grad.numpy()).all()
    if batch == "proxy_copies":  # each embedding on its own proxy: no intrinsic violation beyond the margin
        assert float(value) >= 0.0


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_nan_in_nan_out(mode):
    loss = tfdml.losses.ManifoldLoss(NUM_CLASSES, seed=0)
    loss.build_state(DIM)
    x = np.random.default_rng(9).normal(size=(8, DIM)).astype(np.float32)
    x[3, 1] = np.nan
    fn = (lambda y, z: loss(y, z)) if mode == "eager" else tf.function(lambda y, z: loss(y, z),
                                                                       jit_compile=mode == "xla")
    assert np.isnan(float(fn(tf.constant(LAYOUTS["2_per_class"]), tf.constant(x))))


def test_arguments_are_checked_and_serialised():
    for bad in ({"alpha": 1.0}, {"alpha": 0.0}, {"lambda_c": -1.0}, {"temperature": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            tfdml.losses.ManifoldLoss(4, **bad)
    loss = tfdml.losses.get("manifold", num_classes=3, lambda_c=math.inf, alpha=0.6, temperature=0.05)
    config = loss.get_config()
    assert {k: config[k] for k in ("num_classes", "lambda_c", "alpha", "margin", "temperature")} == {
        "num_classes": 3, "lambda_c": math.inf, "alpha": 0.6, "margin": 5e-4, "temperature": 0.05}
    assert type(loss).from_config(config).get_config() == config
