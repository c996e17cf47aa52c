"""The losses of issue 25 (Proxy-Anchor, CosFace, Sub-center ArcFace, Circle, SupCon, NT-Xent,
Tuplet-Margin, Intra-Pair-Variance, NCA) against explicit-loop references written from the papers'
equations (paper defaults, and Embedding Expansion for the pair-based ones), plus gradients of the
paper forms that pytorch-metric-learning does not compute, any magnitude, eager / tf.function / XLA
and mixed precision. Equality with pytorch-metric-learning: tests/test_loss_pml.py."""
import numpy as np
import pytest
import tensorflow as tf

import reference_new_losses as ref
import tfdml
from conftest import LAYOUTS, expansion_id, loss_and_gradient, loss_value, make_expansion, numeric_gradient, \
    mixed_precision_fit, random_embeddings

PAIR_LAYOUTS = ["2_per_class", "uneven", "interleaved", "two_classes"]
EXPANSIONS = [(0, "consecutive", "class"), (2, "consecutive", "class"), (1, "all", "anchor")]

# name: (build(expansion), reference(x, labels, n, pairs, pooling)), paper defaults unless noted.
PAIR_CASES = {
    "circle": (lambda e: tfdml.losses.CircleLoss(expansion=e, dtype="float64"),
               lambda x, y, *ee: ref.circle(x, y, 0.25, 256.0, *ee)),
    "circle_fine_grained": (lambda e: tfdml.losses.CircleLoss(margin=0.4, scale=80.0, expansion=e, dtype="float64"),
                            lambda x, y, *ee: ref.circle(x, y, 0.4, 80.0, *ee)),
    "supcon": (lambda e: tfdml.losses.SupConLoss(expansion=e, dtype="float64"),
               lambda x, y, *ee: ref.supcon(x, y, 0.1, *ee)),
    "ntxent": (lambda e: tfdml.losses.NTXentLoss(expansion=e, dtype="float64"),
               lambda x, y, *ee: ref.ntxent(x, y, 0.1, *ee)),
    "tuplet_margin": (lambda e: tfdml.losses.TupletMarginLoss(expansion=e, dtype="float64"),
                      lambda x, y, *ee: ref.tuplet_margin(x, y, 0.1, 64.0, *ee)),
    "intra_pair_variance": (lambda e: tfdml.losses.IntraPairVarianceLoss(expansion=e, dtype="float64"),
                            lambda x, y, *ee: ref.intra_pair_variance(x, y, 0.01, 0.01, *ee)),
}


@pytest.mark.parametrize("case", sorted(PAIR_CASES))
@pytest.mark.parametrize("layout", PAIR_LAYOUTS)
@pytest.mark.parametrize("expansion", EXPANSIONS, ids=expansion_id)
def test_pair_losses_match_paper_references(case, layout, expansion):
    y = LAYOUTS[layout]
    x = random_embeddings(y, 5, 3 + len(y), scale=0.6)
    build, reference = PAIR_CASES[case]
    expected = reference(x, y, *expansion)
    assert loss_value(build(make_expansion(*expansion)), y, x) == pytest.approx(expected, rel=1e-9, abs=1e-6)


@pytest.mark.parametrize("layout", PAIR_LAYOUTS + ["one_class", "singletons"])
def test_nca_matches_reference(layout):
    y = {"one_class": np.array([3, 3, 3, 3]), "singletons": np.array([0, 1, 2, 3])}.get(layout, LAYOUTS.get(layout))
    x = random_embeddings(y, 5, 7)
    for scale in (1.0, 4.0):
        expected = ref.nca(x, y, scale)
        assert loss_value(tfdml.losses.NCALoss(scale=scale, dtype="float64"), y, x) == pytest.approx(expected, abs=1e-9)


def test_paper_and_pml_forms_differ_where_documented():
    one_class = np.array([1, 1, 1, 1])
    x = random_embeddings(one_class, 5, 0)
    assert loss_value(tfdml.losses.SupConLoss(dtype="float64"), one_class, x) == pytest.approx(ref.supcon(x, one_class))
    assert loss_value(tfdml.losses.SupConLoss(average_over="active_anchors", dtype="float64"), one_class, x) == 0.0
    y = LAYOUTS["4_per_class"]
    x = random_embeddings(y, 5, 1)
    paper = loss_value(tfdml.losses.NTXentLoss(dtype="float64"), y, x)
    pml = loss_value(tfdml.losses.NTXentLoss(denominator="negatives", dtype="float64"), y, x)
    assert paper > pml  # the other positives enter eq. 1's denominator
    two_views = np.array([0, 0, 1, 1, 2, 2])
    x = random_embeddings(two_views, 5, 2)
    assert loss_value(tfdml.losses.NTXentLoss(dtype="float64"), two_views, x) == pytest.approx(
        loss_value(tfdml.losses.NTXentLoss(denominator="negatives", dtype="float64"), two_views, x), abs=1e-12)


# ---------------------------------------------------------------------- proxy
PROXY_LAYOUTS = [np.array([0, 0, 1, 1, 2, 2, 3, 3]), np.array([3, 1, 1, 0, 3, 2, 0]), np.array([2, 2, 2, 2])]
PROXY_CASES = {
    "proxy_anchor": (lambda: tfdml.losses.ProxyAnchorLoss(4, dtype="float64"), 1,
                     lambda x, y, p: ref.proxy_anchor(x, y, p, 32.0, 0.1)),
    "cosface": (lambda: tfdml.losses.CosFaceLoss(4, dtype="float64"), 1,
                lambda x, y, p: ref.cosface(x, y, p, 0.35, 64.0)),
    "sub_center_arcface": (lambda: tfdml.losses.SubCenterArcFaceLoss(4, dtype="float64"), 3,
                           lambda x, y, p: ref.sub_center_arcface(x, y, p, 3, 0.5, 64.0)),
    "sub_center_arcface_monotonic": (
        lambda: tfdml.losses.SubCenterArcFaceLoss(4, proxies_per_class=2, margin=1.2, scale=8.0, monotonic=True,
                                                  dtype="float64"), 2,
        lambda x, y, p: ref.sub_center_arcface(x, y, p, 2, 1.2, 8.0, monotonic=True)),
}


@pytest.mark.parametrize("case", sorted(PROXY_CASES))
@pytest.mark.parametrize("layout", range(len(PROXY_LAYOUTS)))
@pytest.mark.parametrize("seed", [0, 1])
def test_proxy_losses_match_paper_references(case, layout, seed):
    build, k, reference = PROXY_CASES[case]
    y = PROXY_LAYOUTS[layout]
    rng = np.random.default_rng(seed)
    loss = build()
    proxies = rng.normal(size=(4 * k, 5))
    loss.build_state(5)
    loss.state_layer.assign_value(proxies)
    x = rng.normal(size=(len(y), 5))
    assert loss_value(loss, y, x) == pytest.approx(reference(x, y, proxies), rel=1e-9, abs=1e-6)


# ------------------------------------------ gradients of the paper-only forms
@pytest.mark.parametrize("case", ["supcon_one_class", "ntxent_all", "sub_center_arcface", "supcon_ee"])
def test_gradients_of_paper_forms_match_central_differences(case):
    y = np.array([0, 0, 0, 1, 1, 2]) if case != "supcon_one_class" else np.array([1, 1, 1, 1])
    x = random_embeddings(y, 4, 11, scale=0.8)
    if case == "sub_center_arcface":
        loss = tfdml.losses.SubCenterArcFaceLoss(3, proxies_per_class=2, scale=8.0, dtype="float64")
        loss.build_state(4)
        loss.state_layer.assign_value(np.random.default_rng(3).normal(size=(6, 4)))
    elif case == "supcon_ee":  # (Circle's α is a constant in its gradient, so no central differences for it)
        loss = tfdml.losses.SupConLoss(temperature=0.5, expansion=tfdml.EmbeddingExpansion(2), dtype="float64")
    else:
        loss = (tfdml.losses.SupConLoss if case.startswith("supcon") else tfdml.losses.NTXentLoss)(dtype="float64")
    _, grad = loss_and_gradient(loss, y, x)
    expected = numeric_gradient(lambda z: loss_value(loss, y, z), x)
    np.testing.assert_allclose(grad, expected, atol=1e-5 * max(1.0, np.abs(expected).max()))


# ------------------------------------------------------------- robustness
NEW = ["proxy_anchor", "cosface", "sub_center_arcface", "circle", "supcon", "ntxent", "tuplet_margin",
       "intra_pair_variance", "nca", "instance", "manifold", "fastap", "smooth_ap", "ranked_list", "pnp",
       "threshold_consistent_margin", "dynamic_soft_margin"]
PROXY = {"proxy_anchor", "cosface", "sub_center_arcface", "manifold"}
LABELS = np.array([0, 0, 1, 1, 2, 2, 3, 3, 1])


def _build(name, dim=6, **kwargs):
    loss = tfdml.losses.get(name, **({"num_classes": 4, "seed": 0} if name in PROXY else {}), **kwargs)
    loss.build_state(dim)
    return loss


def _value_and_gradient(loss, x, mode="eager"):
    if hasattr(loss, "reset_histogram"):  # dynamic soft margin: every call against a fresh running histogram
        loss.reset_histogram()
    def run(labels, embeddings):
        with tf.GradientTape() as tape:
            tape.watch(embeddings)
            value = loss(labels, embeddings)
        return value, tape.gradient(value, embeddings)

    if mode != "eager":
        run = tf.function(run, jit_compile=mode == "xla")
    value, grad = run(tf.constant(LABELS), tf.constant(x))
    return float(value), grad.numpy()


@pytest.mark.parametrize("name", NEW)
def test_finite_for_any_magnitude(name):
    """1e-30 … 1e30 in float32: finite values and gradients; scale-invariant where the L2 normalisation
    sees a non-zero vector (‖x‖² > 1e-12) and ‖x‖² does not overflow before it."""
    loss = _build(name)
    base = np.random.default_rng(0).normal(size=(len(LABELS), 6)).astype(np.float32)
    unit, _ = _value_and_gradient(loss, base)
    for exponent in range(-30, 31, 5):
        value, grad = _value_and_gradient(loss, base * np.float32(10.0 ** exponent))
        assert np.isfinite(value) and np.isfinite(grad).all(), exponent
        if -5 <= exponent <= 15:
            assert value == pytest.approx(unit, rel=1e-4, abs=1e-5), exponent


@pytest.mark.parametrize("name", NEW)
def test_eager_tf_function_and_xla_agree_with_gradients(name):
    loss = _build(name, expansion=2) if tfdml.losses.get_class(name).supports_expansion else _build(name)
    x = np.random.default_rng(1).normal(size=(len(LABELS), 6)).astype(np.float32)
    eager = _value_and_gradient(loss, x)
    for mode in ("graph", "xla"):
        value, grad = _value_and_gradient(loss, x, mode)
        assert value == pytest.approx(eager[0], rel=1e-4, abs=1e-5), mode
        np.testing.assert_allclose(grad, eager[1], rtol=1e-3, atol=1e-4 * max(1.0, np.abs(eager[1]).max()))


@pytest.mark.parametrize("name", NEW)
def test_mixed_precision_training(name):
    """Under the mixed_float16 policy (float16 embeddings) the loss computes in float32, its gradients through
    the float16 model are finite, and `model.fit` (Keras' loss-scale optimizer) trains with a finite loss."""
    mixed_precision_fit(_build(name, dim=8), LABELS)


@pytest.mark.parametrize("jit", [False, True])
def test_instance_label_ranks_equal_numpy_unique_inverse(jit):
    from tfdml.losses.instance import label_ranks

    ranks = tf.function(label_ranks, jit_compile=jit)
    for labels in ([7, 2, 9, 2, 7, 4], [0, 1, 2, 3], [5, 5, 5], [3, -1, 3, 0, -1]):
        expected = np.unique(labels, return_inverse=True)[1]
        np.testing.assert_array_equal(ranks(tf.constant(labels, tf.int32)).numpy(), expected)
