"""PNP, threshold-consistent margin and dynamic soft margin against pytorch-metric-learning 2.9 as the oracle:
loss value and gradient with respect to the embeddings on random float64 inputs, for label layouts with several
classes, singletons and a single class (harness: tests/test_loss_pml.py)."""
import numpy as np
import pytest

import tfdml
from conftest import loss_and_gradient
from test_loss_pml import DIM, PAIR_LAYOUTS, assert_matches, pml_value_and_gradient

torch = pytest.importorskip("torch")
from pytorch_metric_learning import losses as pml_losses  # noqa: E402

# PML's DynamicSoftMarginLoss(min_val=-2, num_bins=B) as tfdml options (bins at -2 + k·4/B, k < B).
def _dsm_pml_form(bins=10, momentum=0.01):
    return tfdml.losses.DynamicSoftMarginLoss(bins=bins, momentum=momentum, min_value=-2.0,
                                              max_value=2.0 - 4.0 / bins, triplets="all",
                                              batch_histogram="counts", histogram_gradient=True, dtype="float64")


CASES = {
    "pnp_pml_default": (lambda: tfdml.losses.PNPLoss(variant="O", alpha=1.0, dtype="float64"),
                        lambda: pml_losses.PNPLoss()),
    "pnp_paper_default": (lambda: tfdml.losses.PNPLoss(dtype="float64"),
                          lambda: pml_losses.PNPLoss(variant="Dq", alpha=4, anneal=0.01)),
    **{f"pnp_{v}_t02": (lambda v=v: tfdml.losses.PNPLoss(variant=v, temperature=0.2, alpha=2.0, b=3.0,
                                                         dtype="float64"),
                        lambda v=v: pml_losses.PNPLoss(variant=v, anneal=0.2, alpha=2, b=3))
       for v in ("O", "Iu", "Ib", "Ds", "Dq")},
    "tcm": (lambda: tfdml.losses.ThresholdConsistentMarginLoss(dtype="float64"),
            lambda: pml_losses.ThresholdConsistentMarginLoss()),
    "tcm_margins": (lambda: tfdml.losses.ThresholdConsistentMarginLoss(pos_margin=0.3, neg_margin=-0.2, pos_weight=0.5,
                                                                       neg_weight=2.0, dtype="float64"),
                    lambda: pml_losses.ThresholdConsistentMarginLoss(lambda_plus=0.5, lambda_minus=2.0,
                                                                     margin_plus=0.3, margin_minus=-0.2)),
    "dsm": (_dsm_pml_form, lambda: pml_losses.DynamicSoftMarginLoss()),
    "dsm_25_bins": (lambda: _dsm_pml_form(25), lambda: pml_losses.DynamicSoftMarginLoss(num_bins=25)),
}


@pytest.mark.parametrize("layout", sorted(PAIR_LAYOUTS))
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_margin_losses_equal_pml(case, layout, seed):
    ours, theirs = CASES[case]
    labels = PAIR_LAYOUTS[layout]
    x = np.random.default_rng(seed).normal(size=(len(labels), DIM))
    assert_matches(loss_and_gradient(ours(), labels, x), pml_value_and_gradient(theirs(), labels, x))


@pytest.mark.parametrize("momentum", [0.01, 0.3])
def test_dynamic_soft_margin_running_histogram_equals_pml(momentum):
    """Three batches through one loss object each: the momentum-mixed histogram, value and gradient agree."""
    ours, theirs = _dsm_pml_form(momentum=momentum), pml_losses.DynamicSoftMarginLoss(momentum=momentum)
    rng = np.random.default_rng(7)
    for labels in (PAIR_LAYOUTS["2_per_class"], PAIR_LAYOUTS["uneven_with_singleton"], PAIR_LAYOUTS["2_per_class"]):
        x = rng.normal(size=(len(labels), DIM))
        assert_matches(loss_and_gradient(ours, labels, x), pml_value_and_gradient(theirs, labels, x))
        np.testing.assert_allclose(ours.histogram.numpy(), theirs.hist_.detach().numpy(), rtol=1e-9, atol=1e-12)
