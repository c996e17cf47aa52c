"""Pair-based losses (lifted, N-pair, multi-similarity, contrastive, generalized lifted,
angular, histogram) against explicit-loop numpy references (float64), with and without
Embedding Expansion, and hand-worked cases."""
import math

import numpy as np
import pytest

import reference_pair_losses as ref
import tfdml
from conftest import LAYOUTS, expansion_id, loss_value, make_expansion, random_embeddings

FOUNDATION_LAYOUTS = ("2_per_class", "4_per_class", "uneven", "interleaved")
FOUNDATION_EXPANSIONS = [
    (0, "consecutive", "class"),
    (1, "consecutive", "anchor"),
    (2, "consecutive", "class"),
    (3, "all", "anchor"),
    (2, "all", "class"),
]
ZOO_LAYOUTS = ("2_per_class", "uneven", "interleaved", "two_classes")
ZOO_EXPANSIONS = [(0, "consecutive", "class"), (2, "consecutive", "class"), (1, "all", "anchor")]

# name: (loss built with an expansion (n, pairs, pooling), its reference value on (x, y)).
FOUNDATION_CASES = {
    "lifted": (
        lambda n, pairs, pooling: tfdml.losses.LiftedStructureLoss(
            margin=1.0, expansion=make_expansion(n, pairs, pooling), dtype="float64"),
        lambda x, y, n, pairs, pooling: ref.lifted(x, y, 1.0, n, pairs, pooling)),
    "npair": (
        lambda n, pairs, pooling: tfdml.losses.NPairLoss(
            embedding_reg=0.005, expansion=make_expansion(n, pairs, pooling, normalize=False), dtype="float64"),
        lambda x, y, n, pairs, pooling: ref.npair(x, y, 0.005, n, pairs, pooling)),
    "multi_similarity": (
        lambda n, pairs, pooling: tfdml.losses.MultiSimilarityLoss(
            expansion=make_expansion(n, pairs, pooling), dtype="float64"),
        lambda x, y, n, pairs, pooling: ref.multi_similarity(x, y, n=n, pairs=pairs, pooling=pooling)),
    "contrastive": (
        lambda n, pairs, pooling: tfdml.losses.ContrastiveLoss(
            pos_margin=0.1, neg_margin=1.2, expansion=make_expansion(n, pairs, pooling), dtype="float64"),
        lambda x, y, n, pairs, pooling: ref.contrastive(x, y, 0.1, 1.2, False, n, pairs, pooling)),
    "contrastive_squared": (
        lambda n, pairs, pooling: tfdml.losses.ContrastiveLoss(
            neg_margin=1.5, squared=True, expansion=make_expansion(n, pairs, pooling), dtype="float64"),
        lambda x, y, n, pairs, pooling: ref.contrastive(x, y, 0.0, 1.5, True, n, pairs, pooling)),
}
ZOO_CASES = {
    "generalized_lifted": (
        lambda n, pairs, pooling: tfdml.losses.GeneralizedLiftedStructureLoss(
            margin=1.0, embedding_reg=0.005, expansion=make_expansion(n, pairs, pooling, normalize=False),
            dtype="float64"),
        lambda x, y, n, pairs, pooling: ref.generalized_lifted(x, y, 1.0, 0.005, n, pairs, pooling)),
    "angular": (
        lambda n, pairs, pooling: tfdml.losses.AngularLoss(
            alpha_degrees=40.0, angular_weight=2.0, embedding_reg=0.005,
            expansion=make_expansion(n, pairs, pooling, normalize=False), dtype="float64"),
        lambda x, y, n, pairs, pooling: ref.angular(x, y, 40.0, 2.0, 0.005, n, pairs, pooling)),
    "histogram_9_bins": (
        lambda n, pairs, pooling: tfdml.losses.HistogramLoss(
            bins=9, expansion=make_expansion(n, pairs, pooling), dtype="float64"),
        lambda x, y, n, pairs, pooling: ref.histogram(x, y, 9, n, pairs, pooling)),
    "histogram_65_bins": (
        lambda n, pairs, pooling: tfdml.losses.HistogramLoss(
            bins=65, expansion=make_expansion(n, pairs, pooling), dtype="float64"),
        lambda x, y, n, pairs, pooling: ref.histogram(x, y, 65, n, pairs, pooling)),
}


@pytest.mark.parametrize("case", sorted(FOUNDATION_CASES))
@pytest.mark.parametrize("layout", FOUNDATION_LAYOUTS)
@pytest.mark.parametrize("expansion", FOUNDATION_EXPANSIONS, ids=expansion_id)
def test_foundation_pair_losses_match_references(case, layout, expansion):
    y = LAYOUTS[layout]
    x = random_embeddings(y, 4, 1 + len(y))
    build, reference = FOUNDATION_CASES[case]
    assert loss_value(build(*expansion), y, x) == pytest.approx(reference(x, y, *expansion), abs=1e-6)


@pytest.mark.parametrize("case", sorted(ZOO_CASES))
@pytest.mark.parametrize("layout", ZOO_LAYOUTS)
@pytest.mark.parametrize("expansion", ZOO_EXPANSIONS, ids=expansion_id)
def test_zoo_pair_losses_match_references(case, layout, expansion):
    y = LAYOUTS[layout]
    x = random_embeddings(y, 5, 10 * len(y), scale=0.6)
    build, reference = ZOO_CASES[case]
    assert loss_value(build(*expansion), y, x) == pytest.approx(reference(x, y, *expansion), abs=1e-6)


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 5.0])
def test_multi_similarity_mining_is_active(epsilon):
    """Same data as a reference check, but with epsilon large enough to keep all pairs."""
    y = LAYOUTS["4_per_class"]
    x = random_embeddings(y, 4, 4 + len(y))
    loss = tfdml.losses.MultiSimilarityLoss(epsilon=epsilon, dtype="float64")
    assert loss_value(loss, y, x) == pytest.approx(ref.multi_similarity(x, y, epsilon=epsilon), abs=1e-6)


def test_angular_with_large_alpha_and_large_norms_stays_accurate():
    y = LAYOUTS["uneven"]
    x = random_embeddings(y, 5, 3 + 10 * len(y), scale=4.0)
    loss = tfdml.losses.AngularLoss(alpha_degrees=60.0, dtype="float64")
    assert loss_value(loss, y, x) == pytest.approx(ref.angular(x, y, 60.0), rel=1e-9)


@pytest.mark.parametrize("layout", ["uneven", "two_classes"])
def test_generalized_lifted_normalize_option(layout):
    y = LAYOUTS[layout]
    x = random_embeddings(y, 5, 7, scale=3.0)
    loss = tfdml.losses.GeneralizedLiftedStructureLoss(embedding_reg=0.01, normalize=True, dtype="float64")
    expected = ref.generalized_lifted(x, y, 1.0, 0.01, normalized=True)
    assert loss_value(loss, y, x) == pytest.approx(expected, abs=1e-6)
    assert expected != pytest.approx(ref.generalized_lifted(x, y, 1.0, 0.01), abs=1e-3)  # the option matters


# --------------------------------------------------------------- hand-worked
def test_hand_worked_contrastive():
    # Two unit vectors of one class at 90° (d = √2) and one far class member of another class at
    # d = 2 from the first and √2 from the second. pos term: mean over (0,1),(1,0) of [√2 − 0]_+ = √2.
    # neg term with neg_margin 1.5: pairs (0,2),(2,0): [1.5 − 2]_+ = 0 (dropped); (1,2),(2,1): 1.5 − √2.
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    y = np.array([7, 7, 3])
    loss = tfdml.losses.ContrastiveLoss(neg_margin=1.5, dtype="float64")
    assert loss_value(loss, y, x) == pytest.approx(np.sqrt(2) + 1.5 - np.sqrt(2), abs=1e-12)


def test_hand_worked_generalized_lifted():
    # Points (0,0), (1,0) class 0 and (0,2) class 1, margin 1, no regulariser.
    # Anchor 0: log e^1 + log e^(1−2) = 0 → 0. Anchor 1: log e^1 + log e^(1−√5) = 2 − √5 < 0 → 0.
    # Move the negative closer: (0, 0.5): anchor 0: 1 + 0.5 = 1.5; anchor 1: 1 + 1 − √1.25.
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.5]])
    y = np.array([0, 0, 1])
    loss = tfdml.losses.GeneralizedLiftedStructureLoss(margin=1.0, embedding_reg=0.0, dtype="float64")
    assert loss_value(loss, y, x) == pytest.approx((1.5 + 2.0 - math.sqrt(1.25)) / 2, abs=1e-12)
    loss = tfdml.losses.GeneralizedLiftedStructureLoss(margin=1.0, embedding_reg=0.3, dtype="float64")
    assert loss_value(loss, y, x) == pytest.approx((1.5 + 2.0 - math.sqrt(1.25)) / 2 + 0.3 * 1.25 / 3, abs=1e-12)


def test_hand_worked_histogram():
    # Three bins at −1, 0, 1. Positive pair similarity 0 → h⁺ = (0, 1, 0).
    # Negative similarities 1 and −1 (pairs (0,2), (1,2)) → h⁻ = (½, 0, ½).
    # loss = h⁻_1·0 + h⁻_2·1 + h⁻_3·1 = ½.
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    x[2] = [1.0, 0.0]
    y = np.array([0, 0, 1])
    # s(0,1) = 0 (positive); s(0,2) = 1; s(1,2) = 0 → h⁻ = (0, ½, ½), loss = ½·1 + ½·1 = 1.
    loss = tfdml.losses.HistogramLoss(bins=3, dtype="float64")
    assert loss_value(loss, y, x) == pytest.approx(1.0, abs=1e-12)
    x[2] = [-1.0, 0.0]  # s(0,2) = −1, s(1,2) = 0 → h⁻ = (½, ½, 0): loss = ½·0 + ½·1 = ½.
    assert loss_value(loss, y, x) == pytest.approx(0.5, abs=1e-12)


def test_hand_worked_angular_single_pair():
    # a = (1,0), p = (1,0), n = (0,1); α = 45° (tan² = 1), no regulariser, angular only:
    # f = 4·(0 + 0) − 2·2·1 = −4 → log(1 + e^−4); N-pair: log(1 + e^(0 − 1)).
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 0, 1])
    loss = tfdml.losses.AngularLoss(alpha_degrees=45.0, angular_weight=2.0, embedding_reg=0.0, dtype="float64")
    expected = math.log1p(math.exp(-1.0)) + 2 * math.log1p(math.exp(-4.0))
    assert loss_value(loss, y, x) == pytest.approx(expected, abs=1e-9)
