"""The losses of issue 25 against pytorch-metric-learning 2.9 (the `test` extra) as the oracle: loss value
and gradient with respect to the embeddings on random float64 inputs, with the proxies / class weights
copied across, for label layouts with several classes, singletons and a single class."""
import numpy as np
import pytest

import tfdml
from conftest import loss_and_gradient, PML_LAYOUTS

torch = pytest.importorskip("torch")
pml = pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning import losses as pml_losses  # noqa: E402

NUM_CLASSES, DIM = 4, 5
LAYOUTS = PML_LAYOUTS
# Labels outside [0, NUM_CLASSES): pair-based losses only.
PAIR_LAYOUTS = {**LAYOUTS, "instances": np.array([0, 1, 2, 3, 4, 5]),
                "unsorted_sparse_labels": np.array([7, 2, 9, 2, 7, 4])}
TOLERANCE = 1e-6


def pml_value_and_gradient(loss, labels, x):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    value = loss(xt, torch.tensor(labels, dtype=torch.long))
    if not value.requires_grad:  # PML's zero loss without a tuple
        return float(value), np.zeros_like(x)
    (grad,) = torch.autograd.grad(value, xt, allow_unused=True)
    return float(value.detach()), np.zeros_like(x) if grad is None else grad.numpy()


def assert_matches(ours, theirs):
    (value, grad), (expected, expected_grad) = ours, theirs
    if np.isnan(expected):  # PML's NCALoss averages over no sample (all singletons): tfdml's convention is 0
        assert value == 0.0 and np.all(grad == 0.0)
        return
    scale = max(1.0, abs(expected))
    assert abs(value - expected) <= TOLERANCE * scale, (value, expected)
    assert np.max(np.abs(grad - expected_grad)) <= TOLERANCE * max(1.0, np.max(np.abs(expected_grad))), \
        np.max(np.abs(grad - expected_grad))


# ------------------------------------------------------------------ pair-based
# name: (tfdml loss, PML loss); parameters away from the defaults where those saturate at random inputs.
PAIR_CASES = {
    "circle_default": (lambda: tfdml.losses.CircleLoss(dtype="float64"),
                       lambda: pml_losses.CircleLoss(m=0.25, gamma=256)),
    "circle_pml_defaults": (lambda: tfdml.losses.CircleLoss(margin=0.4, scale=80.0, dtype="float64"),
                            lambda: pml_losses.CircleLoss()),
    "supcon": (lambda: tfdml.losses.SupConLoss(average_over="active_anchors", dtype="float64"),
               lambda: pml_losses.SupConLoss(temperature=0.1)),
    "supcon_t05": (lambda: tfdml.losses.SupConLoss(temperature=0.5, average_over="active_anchors", dtype="float64"),
                   lambda: pml_losses.SupConLoss(temperature=0.5)),
    "ntxent": (lambda: tfdml.losses.NTXentLoss(temperature=0.07, denominator="negatives", dtype="float64"),
               lambda: pml_losses.NTXentLoss(temperature=0.07)),
    "ntxent_t05": (lambda: tfdml.losses.NTXentLoss(temperature=0.5, denominator="negatives", dtype="float64"),
                   lambda: pml_losses.NTXentLoss(temperature=0.5)),
    "tuplet_margin": (lambda: tfdml.losses.TupletMarginLoss(margin=np.radians(5.73), dtype="float64"),
                      lambda: pml_losses.TupletMarginLoss(margin=5.73, scale=64)),
    "tuplet_margin_small_scale": (
        lambda: tfdml.losses.TupletMarginLoss(margin=np.radians(10.0), scale=4.0, dtype="float64"),
        lambda: pml_losses.TupletMarginLoss(margin=10.0, scale=4.0)),
    "intra_pair_variance": (lambda: tfdml.losses.IntraPairVarianceLoss(dtype="float64"),
                            lambda: pml_losses.IntraPairVarianceLoss()),
    "intra_pair_variance_eps": (
        lambda: tfdml.losses.IntraPairVarianceLoss(pos_margin=0.2, neg_margin=0.3, dtype="float64"),
        lambda: pml_losses.IntraPairVarianceLoss(pos_eps=0.2, neg_eps=0.3)),
    "nca": (lambda: tfdml.losses.NCALoss(dtype="float64"), lambda: pml_losses.NCALoss()),
    "instance": (lambda: tfdml.losses.InstanceLoss(dtype="float64"), lambda: pml_losses.InstanceLoss()),
    "instance_scale": (lambda: tfdml.losses.InstanceLoss(scale=3.0, dtype="float64"),
                       lambda: pml_losses.InstanceLoss(gamma=3.0)),
    "nca_scale": (lambda: tfdml.losses.NCALoss(scale=3.0, dtype="float64"),
                  lambda: pml_losses.NCALoss(softmax_scale=3.0)),
}


@pytest.mark.parametrize("layout", sorted(PAIR_LAYOUTS))
@pytest.mark.parametrize("case", sorted(PAIR_CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_pair_losses_equal_pml(case, layout, seed):
    ours, theirs = PAIR_CASES[case]
    labels = PAIR_LAYOUTS[layout]
    x = np.random.default_rng(seed).normal(size=(len(labels), DIM))
    assert_matches(loss_and_gradient(ours(), labels, x), pml_value_and_gradient(theirs(), labels, x))


# ---------------------------------------------------------------------- proxy
def _proxy_pair(case, seed):
    """(tfdml loss, PML loss) sharing random proxies."""
    rng = np.random.default_rng(100 + seed)
    if case == "proxy_anchor":
        ours = tfdml.losses.ProxyAnchorLoss(NUM_CLASSES, dtype="float64")
        theirs = pml_losses.ProxyAnchorLoss(NUM_CLASSES, DIM, margin=0.1, alpha=32)
        proxies = rng.normal(size=(NUM_CLASSES, DIM))
        theirs.proxies.data = torch.tensor(proxies)
    elif case == "proxy_anchor_small_alpha":
        ours = tfdml.losses.ProxyAnchorLoss(NUM_CLASSES, alpha=4.0, margin=0.3, dtype="float64")
        theirs = pml_losses.ProxyAnchorLoss(NUM_CLASSES, DIM, margin=0.3, alpha=4)
        proxies = rng.normal(size=(NUM_CLASSES, DIM))
        theirs.proxies.data = torch.tensor(proxies)
    elif case == "cosface":
        ours = tfdml.losses.CosFaceLoss(NUM_CLASSES, dtype="float64")
        theirs = pml_losses.CosFaceLoss(num_classes=NUM_CLASSES, embedding_size=DIM, margin=0.35, scale=64)
        proxies = rng.normal(size=(NUM_CLASSES, DIM))
        theirs.W.data = torch.tensor(proxies.T.copy())
    elif case.startswith("sub_center_arcface"):
        k = int(case[-1])
        ours = tfdml.losses.SubCenterArcFaceLoss(NUM_CLASSES, proxies_per_class=k, margin=np.radians(28.6),
                                                 monotonic=True, dtype="float64")
        theirs = pml_losses.SubCenterArcFaceLoss(num_classes=NUM_CLASSES, embedding_size=DIM, sub_centers=k,
                                                 margin=28.6, scale=64)
        proxies = rng.normal(size=(NUM_CLASSES * k, DIM))
        theirs.W.data = torch.tensor(proxies.T.copy())
    ours.build_state(DIM)
    ours.state_layer.assign_value(proxies)
    return ours, theirs


PROXY_CASES = ["proxy_anchor", "proxy_anchor_small_alpha", "cosface", "sub_center_arcface_k1",
               "sub_center_arcface_k3"]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("case", PROXY_CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_proxy_losses_equal_pml(case, layout, seed):
    ours, theirs = _proxy_pair(case, seed)
    labels = LAYOUTS[layout]
    x = np.random.default_rng(seed).normal(size=(len(labels), DIM))
    assert_matches(loss_and_gradient(ours, labels, x), pml_value_and_gradient(theirs, labels, x))


def test_sub_center_arcface_monotonic_fallback_equals_pml_beyond_pi_minus_m():
    """An embedding almost opposite its class's only sub-centre (θ_y > π − m): PML's fallback branch."""
    ours, theirs = _proxy_pair("sub_center_arcface_k1", 0)
    proxies = ours.state_layer.numpy()
    labels = np.array([0, 1, 2, 3])
    x = -proxies[labels] + 0.01 * np.random.default_rng(5).normal(size=(4, DIM))
    assert_matches(loss_and_gradient(ours, labels, x), pml_value_and_gradient(theirs, labels, x))
