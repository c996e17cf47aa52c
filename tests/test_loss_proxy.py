"""Proxy losses (ProxyNCA, normalised softmax, ArcFace, SoftTriple) against explicit-loop
references for given proxies, and hand-worked cases."""
import math

import numpy as np
import pytest

import reference_proxy_losses as ref
import tfdml
from conftest import loss_value

LAYOUTS = [np.array([0, 0, 1, 1, 2, 2, 3, 3]), np.array([3, 1, 1, 0, 3, 2, 0]), np.array([2, 2, 2, 2])]


def _setup(cls, labels, dim=5, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    loss = cls(num_classes=4, dtype="float64", **kwargs)
    loss.build_state(dim)
    proxies = rng.normal(size=loss.state_layer.raw.shape)
    loss.state_layer.assign_value(proxies)
    return loss, rng.normal(size=(len(labels), dim)), proxies


# name: (loss class, its arguments, reference(x, labels, proxies)).
CASES = {
    "proxy_nca": (tfdml.losses.ProxyNCALoss, {"embedding_scale": 2.5},
                  lambda x, y, p: ref.proxy_nca(x, y, p, 2.5)),
    "normalized_softmax": (tfdml.losses.NormalizedSoftmaxLoss, {"temperature": 0.2},
                           lambda x, y, p: ref.normalized_softmax(x, y, p, 0.2)),
    "softmax": (tfdml.losses.SoftmaxLoss, {}, lambda x, y, p: ref.softmax(x, y, p)),
    "arcface": (tfdml.losses.ArcFaceLoss, {"margin": 0.4, "scale": 8.0},
                lambda x, y, p: ref.arcface(x, y, p, 0.4, 8.0)),
    **{f"soft_triple_k{k}": (tfdml.losses.SoftTripleLoss,
                             {"proxies_per_class": k, "scale": 6.0, "gamma": 0.2, "margin": 0.05, "tau": 0.3},
                             lambda x, y, p, k=k: ref.soft_triple(x, y, p, 4, k, 6.0, 0.2, 0.05, 0.3))
       for k in (1, 2, 3)},
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("layout", range(len(LAYOUTS)))
@pytest.mark.parametrize("seed", [0, 1])
def test_proxy_losses_match_references(case, layout, seed):
    y = LAYOUTS[layout]
    cls, kwargs, reference = CASES[case]
    loss, x, p = _setup(cls, y, seed=seed, **kwargs)
    assert loss_value(loss, y, x) == pytest.approx(reference(x, y, p), abs=1e-6)


def test_lr_multiplier_does_not_change_the_value():
    y = LAYOUTS[0]
    plain, x, p = _setup(tfdml.losses.SoftTripleLoss, y)
    scaled = tfdml.losses.SoftTripleLoss(num_classes=4, lr_multiplier=8.0, dtype="float64")
    scaled.build_state(5)
    scaled.state_layer.assign_value(p)
    assert loss_value(scaled, y, x) == pytest.approx(loss_value(plain, y, x), abs=1e-12)


# --------------------------------------------------------------- hand-worked
def test_hand_worked_normalized_softmax_and_arcface():
    # x = (1, 0); class weights (1, 0) and (0, 1): cosines 1 and 0.
    x = np.array([[2.0, 0.0]])
    w = np.array([[1.0, 0.0], [0.0, 3.0]])
    ns = tfdml.losses.NormalizedSoftmaxLoss(num_classes=2, temperature=0.5, dtype="float64")
    ns.build_state(2)
    ns.state_layer.assign_value(w)
    # −log(e^2 / (e^2 + e^0)) = log(1 + e^−2)
    assert loss_value(ns, np.array([0]), x) == pytest.approx(math.log1p(math.exp(-2.0)), abs=1e-12)
    arc = tfdml.losses.ArcFaceLoss(num_classes=2, margin=math.pi / 3, scale=2.0, dtype="float64")
    arc.build_state(2)
    arc.state_layer.assign_value(w)
    # θ_y = 0 → cos(π/3) = ½: −log(e^1 / (e^1 + e^0)) = log(1 + e^−1)
    assert loss_value(arc, np.array([0]), x) == pytest.approx(math.log1p(math.exp(-1.0)), abs=1e-12)
    # Target class 1: θ_y = π/2 → cos(5π/6) = −√3/2; other logit 2·1.
    expected = -(-math.sqrt(3)) + math.log(math.exp(-math.sqrt(3)) + math.exp(2.0))
    assert loss_value(arc, np.array([1]), x) == pytest.approx(expected, abs=1e-12)


def test_hand_worked_proxy_nca():
    # Unit x = (1, 0); proxies (1, 0), (−1, 0), (0, 1); scale 1 → d = 0, 4, 2.
    # Label 0: 0 + log(e^−4 + e^−2).
    loss = tfdml.losses.ProxyNCALoss(num_classes=3, embedding_scale=1.0, dtype="float64")
    loss.build_state(2)
    loss.state_layer.assign_value(np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]))
    expected = math.log(math.exp(-4.0) + math.exp(-2.0))
    assert loss_value(loss, np.array([0]), np.array([[5.0, 0.0]])) == pytest.approx(expected, abs=1e-12)
