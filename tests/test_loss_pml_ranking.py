"""The ranking losses (FastAP, Smooth-AP, ranked list) against pytorch-metric-learning 2.9 as the oracle:
loss value and gradient with respect to the embeddings on random float64 inputs, for label layouts with
several classes, singletons and a single class (Smooth-AP: the layouts PML computes correctly)."""
import numpy as np
import pytest

import tfdml
from conftest import loss_and_gradient
from test_loss_pml import PAIR_LAYOUTS, assert_matches, pml_value_and_gradient

torch = pytest.importorskip("torch")
pml = pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning import losses as pml_losses  # noqa: E402

DIM = 5

# name: (tfdml loss, PML loss).
CASES = {
    "fastap": (lambda: tfdml.losses.FastAPLoss(dtype="float64"), lambda: pml_losses.FastAPLoss()),
    "fastap_bins_4": (lambda: tfdml.losses.FastAPLoss(bins=4, dtype="float64"),
                      lambda: pml_losses.FastAPLoss(num_bins=4)),
    "fastap_bins_37": (lambda: tfdml.losses.FastAPLoss(bins=37, dtype="float64"),
                       lambda: pml_losses.FastAPLoss(num_bins=37)),
    "ranked_list_pml_defaults": (
        lambda: tfdml.losses.RankedListLoss(margin=0.4, alpha=1.2, t_n=10.0, balance=0.5, form="pml",
                                            dtype="float64"),
        lambda: pml_losses.RankedListLoss(margin=0.4, Tn=10)),
    "ranked_list_weighted_positives": (
        lambda: tfdml.losses.RankedListLoss(margin=0.3, alpha=1.1, t_n=3.0, t_p=2.0, balance=0.3, form="pml",
                                            dtype="float64"),
        lambda: pml_losses.RankedListLoss(margin=0.3, alpha=1.1, Tn=3, Tp=2, imbalance=0.3)),
    "ranked_list_no_weighting": (
        lambda: tfdml.losses.RankedListLoss(margin=0.2, alpha=1.4, t_n=0.0, balance=0.8, form="pml",
                                            dtype="float64"),
        lambda: pml_losses.RankedListLoss(margin=0.2, alpha=1.4, Tn=0, imbalance=0.8)),
}


@pytest.mark.parametrize("layout", sorted(PAIR_LAYOUTS))
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_ranking_losses_equal_pml(case, layout, seed):
    ours, theirs = CASES[case]
    labels = PAIR_LAYOUTS[layout]
    x = np.random.default_rng(seed).normal(size=(len(labels), DIM))
    assert_matches(loss_and_gradient(ours(), labels, x), pml_value_and_gradient(theirs(), labels, x))


# PML's SmoothAPLoss needs equal-sized classes in contiguous blocks, and groups the batch into blocks of
# (number of classes) samples: it is Smooth-AP only when each class has as many samples as there are classes.
SMOOTH_AP_LAYOUTS = {
    "2x2": np.array([0, 0, 1, 1]),
    "3x3": np.array([0, 0, 0, 1, 1, 1, 2, 2, 2]),
    "3x3_sparse_labels": np.array([7, 7, 7, 2, 2, 2, 9, 9, 9]),
    "4x4": np.repeat(np.array([3, 0, 2, 1]), 4),
    "one_sample": np.array([5]),
}


@pytest.mark.parametrize("layout", sorted(SMOOTH_AP_LAYOUTS))
@pytest.mark.parametrize("temperature", [0.01, 0.1, 0.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_smooth_ap_include_query_equals_pml(layout, temperature, seed):
    labels = SMOOTH_AP_LAYOUTS[layout]
    x = np.random.default_rng(seed).normal(size=(len(labels), DIM))
    ours = tfdml.losses.SmoothAPLoss(temperature=temperature, include_query=True, dtype="float64")
    theirs = pml_losses.SmoothAPLoss(temperature=temperature)
    assert_matches(loss_and_gradient(ours, labels, x), pml_value_and_gradient(theirs, labels, x))


def test_pml_smooth_ap_groups_by_the_number_of_classes():
    """The documented PML 2.9 limitation: with 2 samples in each of 4 classes it is not Smooth-AP."""
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    x = np.random.default_rng(0).normal(size=(len(labels), DIM))
    ours = loss_and_gradient(tfdml.losses.SmoothAPLoss(temperature=0.5, include_query=True, dtype="float64"),
                             labels, x)
    theirs = pml_value_and_gradient(pml_losses.SmoothAPLoss(temperature=0.5), labels, x)
    assert abs(ours[0] - theirs[0]) > 1e-3
