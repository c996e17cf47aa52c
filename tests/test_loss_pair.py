"""Pair-based losses (lifted, N-pair, multi-similarity, contrastive, generalized lifted,
angular, histogram) against explicit-loop numpy references (float64), with and without
Embedding Expansion (both EE forms of lifted and multi-similarity, values and gradients),
and hand-worked cases."""
import math

import numpy as np
import pytest

import reference_pair_losses as ref
import tfdml
from conftest import (LAYOUTS, expansion_id, loss_and_gradient, loss_value, make_expansion, numeric_gradient,
                      random_embeddings)

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
    "lifted": (  # EE eq. 2 without EE, eq. 12 with EE (the default ee_form="paper")
        lambda n, pairs, pooling: tfdml.losses.LiftedStructureLoss(
            margin=1.0, expansion=make_expansion(n, pairs, pooling), dtype="float64"),
        lambda x, y, n, pairs, pooling: (ref.lifted(x, y, 1.0) if n == 0
                                         else ref.lifted(x, y, 1.0, n, pairs, pooling, equation=12))),
    "lifted_pooled": (
        lambda n, pairs, pooling: tfdml.losses.LiftedStructureLoss(
            margin=1.0, expansion=make_expansion(n, pairs, pooling), ee_form="pooled", dtype="float64"),
        lambda x, y, n, pairs, pooling: ref.lifted(x, y, 1.0, n, pairs, pooling)),
    "npair": (
        lambda n, pairs, pooling: tfdml.losses.NPairLoss(
            embedding_reg=0.005, expansion=make_expansion(n, pairs, pooling, normalize=False), dtype="float64"),
        lambda x, y, n, pairs, pooling: ref.npair(x, y, 0.005, n, pairs, pooling)),
    "multi_similarity": (  # EE eqs. 14–15 with EE (the default ee_form="paper")
        lambda n, pairs, pooling: tfdml.losses.MultiSimilarityLoss(
            beta=50.0, expansion=make_expansion(n, pairs, pooling), dtype="float64"),
        lambda x, y, n, pairs, pooling: ref.multi_similarity(x, y, beta=50.0, n=n, pairs=pairs, pooling=pooling,
                                                             form="paper")),
    "npair_nca_form": (  # Xuan et al.'s N-pair selection: unit vectors, temperature 0.1
        lambda n, pairs, pooling: tfdml.losses.NPairLoss(
            embedding_reg=0.0, normalize=True, temperature=0.1, expansion=make_expansion(n, pairs, pooling),
            dtype="float64"),
        lambda x, y, n, pairs, pooling: ref.npair(x, y, 0.0, n, pairs, pooling, temperature=0.1, normalized=True)),
    "multi_similarity_no_plus_one": (  # EE eqs. 6 / 15 as printed
        lambda n, pairs, pooling: tfdml.losses.MultiSimilarityLoss(
            beta=50.0, expansion=make_expansion(n, pairs, pooling), plus_one=False, dtype="float64"),
        lambda x, y, n, pairs, pooling: ref.multi_similarity(x, y, beta=50.0, n=n, pairs=pairs, pooling=pooling,
                                                             form="paper", plus_one=False)),
    "multi_similarity_pooled": (
        lambda n, pairs, pooling: tfdml.losses.MultiSimilarityLoss(
            beta=40.0, expansion=make_expansion(n, pairs, pooling), ee_form="pooled", dtype="float64"),
        lambda x, y, n, pairs, pooling: ref.multi_similarity(x, y, beta=40.0, n=n, pairs=pairs, pooling=pooling,
                                                             form="pooled")),
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
    loss = tfdml.losses.MultiSimilarityLoss(epsilon=epsilon, dtype="float64")  # default β = 40 (Roth et al. A.1)
    assert loss_value(loss, y, x) == pytest.approx(ref.multi_similarity(x, y, beta=40.0, epsilon=epsilon), abs=1e-6)


# ------------------------------------------- EE forms: values and gradients
EE_FORM_CASES = {
    "lifted_paper": (
        lambda ee: tfdml.losses.LiftedStructureLoss(margin=0.8, expansion=ee, dtype="float64"),
        lambda x, y, n, pairs, pooling: ref.lifted(x, y, 0.8, n, pairs, pooling, equation=12)),
    "lifted_pooled": (
        lambda ee: tfdml.losses.LiftedStructureLoss(margin=0.8, expansion=ee, ee_form="pooled", dtype="float64"),
        lambda x, y, n, pairs, pooling: ref.lifted(x, y, 0.8, n, pairs, pooling)),
    "multi_similarity_paper": (
        lambda ee: tfdml.losses.MultiSimilarityLoss(beta=10.0, epsilon=0.3, expansion=ee, dtype="float64"),
        lambda x, y, n, pairs, pooling: ref.multi_similarity(x, y, beta=10.0, epsilon=0.3, n=n, pairs=pairs,
                                                             pooling=pooling, form="paper")),
    "multi_similarity_paper_no_plus_one": (
        lambda ee: tfdml.losses.MultiSimilarityLoss(beta=10.0, epsilon=0.3, expansion=ee, plus_one=False,
                                                    dtype="float64"),
        lambda x, y, n, pairs, pooling: ref.multi_similarity(x, y, beta=10.0, epsilon=0.3, n=n, pairs=pairs,
                                                             pooling=pooling, form="paper", plus_one=False)),
    "multi_similarity_pooled": (
        lambda ee: tfdml.losses.MultiSimilarityLoss(beta=10.0, epsilon=0.3, expansion=ee, ee_form="pooled",
                                                    dtype="float64"),
        lambda x, y, n, pairs, pooling: ref.multi_similarity(x, y, beta=10.0, epsilon=0.3, n=n, pairs=pairs,
                                                             pooling=pooling, form="pooled")),
}


@pytest.mark.parametrize("case", sorted(EE_FORM_CASES))
@pytest.mark.parametrize("expansion", [(2, "consecutive", "class"), (1, "all", "anchor")], ids=expansion_id)
def test_ee_forms_values_and_gradients_match_references(case, expansion):
    y = LAYOUTS["uneven"]
    x = random_embeddings(y, 3, 21)
    build, reference = EE_FORM_CASES[case]
    value, grad = loss_and_gradient(build(make_expansion(*expansion)), y, x)
    assert value == pytest.approx(reference(x, y, *expansion), abs=1e-9)
    np.testing.assert_allclose(grad, numeric_gradient(lambda z: reference(z, y, *expansion), x), atol=1e-6)


def test_ee_forms_differ_and_agree_without_expansion():
    y = LAYOUTS["uneven"]
    x = random_embeddings(y, 3, 21)
    for name in ("lifted", "multi_similarity"):
        paper, pooled = (tfdml.losses.get(name, expansion=tfdml.EmbeddingExpansion(2), ee_form=form, dtype="float64")
                         for form in ("paper", "pooled"))
        assert abs(loss_value(paper, y, x) - loss_value(pooled, y, x)) > 1e-3, name
        plain = tfdml.losses.get(name, dtype="float64")
        zero = tfdml.losses.get(name, expansion=tfdml.EmbeddingExpansion(0), ee_form="paper", dtype="float64")
        assert loss_value(zero, y, x) == loss_value(plain, y, x), name
    with pytest.raises(ValueError, match="ee_form"):
        tfdml.losses.LiftedStructureLoss(ee_form="eq12")


def test_hand_worked_multi_similarity_ee_forms():
    # a = (1, 0), b = (0, 1) of class 0; c = (−1, 0) of class 1; α = β = 2, λ = 0.5, ε = 0.1; EE n = 1
    # (class pooling): the synthetic point (1, 1)/√2 of class 0 has cosine −1/√2 with c, so the pooled
    # ŝ(0, 1) = max(−1, 0, −1/√2) = s_bc = 0.
    # Anchor a: min_pos = s_ab = 0. Without EE c is not kept (−1 + 0.1 < 0) and b is not kept (0 − 0.1 > −1).
    #   paper: c is kept (ŝ + 0.1 > 0) but the loss uses s_ac = −1; b not kept (eq. 5 with original s_ac)
    #          → ½ log(1 + e^{2(−1 − 0.5)}).
    #   pooled: c kept with ŝ = 0, b kept (0 − 0.1 < ŝ = 0)
    #           → ½ log(1 + e^{−2(0 − 0.5)}) + ½ log(1 + e^{2(0 − 0.5)}).
    # Anchor b: s_bc = ŝ = 0 → both kept in every form: ½ log(1 + e) + ½ log(1 + e^{−1}). Anchor c: no positive.
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    y = np.array([0, 0, 1])
    anchor_b = 0.5 * math.log1p(math.e) + 0.5 * math.log1p(math.exp(-1.0))
    expected = {None: anchor_b / 3, "paper": (0.5 * math.log1p(math.exp(-3.0)) + anchor_b) / 3,
                "pooled": 2 * anchor_b / 3}
    for form, value in expected.items():
        ee = None if form is None else tfdml.EmbeddingExpansion(1)
        loss = tfdml.losses.MultiSimilarityLoss(alpha=2.0, beta=2.0, base=0.5, epsilon=0.1, expansion=ee,
                                                ee_form=form or "paper", dtype="float64")
        assert loss_value(loss, y, x) == pytest.approx(value, abs=1e-12), form


def test_hand_worked_lifted_ee_paper_equation():
    # Doctest case: orthonormal a, b (class 0) and c (class 1), m = 1: every distance is √2 and the
    # synthetic point (a + b)/√2 is √2 from c too, so Ĵ = log e^{1−√2} + √2 = 1 for both ordered pairs
    # (eq. 12: mean of Ĵ² = 1), while eq. 2 on pooled distances gives
    # ½ (log(2 e^{1−√2}) + √2)² = ½ (1 + log 2)².
    x = np.eye(3)
    y = np.array([0, 0, 1])
    paper = tfdml.losses.LiftedStructureLoss(expansion=tfdml.EmbeddingExpansion(1), dtype="float64")
    pooled = tfdml.losses.LiftedStructureLoss(expansion=tfdml.EmbeddingExpansion(1), ee_form="pooled",
                                              dtype="float64")
    assert loss_value(paper, y, x) == pytest.approx(1.0, abs=1e-12)
    assert loss_value(pooled, y, x) == pytest.approx(0.5 * (1 + math.log(2)) ** 2, abs=1e-12)


# ------------------------------------------------------------- EE + N-pair
def _npair_class_hardest(x, y, embedding_reg):
    """N-pair (Sohn) with every negative similarity replaced by the class-level hardest dot product between
    original points (loops)."""
    b = len(y)
    s = np.array([[x[i] @ x[k] for k in range(b)] for i in range(b)])
    hardest = {(a, c): max(s[i, k] for i in range(b) for k in range(b) if y[i] == a and y[k] == c)
               for a in set(y) for c in set(y)}
    terms = [math.log(1 + sum(math.exp(hardest[y[i], y[k]] - s[i, j]) for k in range(b) if y[k] != y[i]))
             for i in range(b) for j in range(b) if i != j and y[i] == y[j]]
    return float(np.mean(terms)) + embedding_reg * float(np.mean(np.sum(x ** 2, axis=1)))


@pytest.mark.parametrize("pairs", ["consecutive", "all"])
def test_npair_ee_equals_class_hardest_pair_pooling_over_originals(pairs):
    """Unnormalised synthetic points never beat their end points under a dot product (bilinearity)."""
    y = LAYOUTS["uneven"]
    x = random_embeddings(y, 4, 9)
    loss = tfdml.losses.NPairLoss(embedding_reg=0.01, expansion=make_expansion(3, pairs, "class", normalize=False),
                                  dtype="float64")
    value, grad = loss_and_gradient(loss, y, x)
    assert value == pytest.approx(_npair_class_hardest(x, y, 0.01), abs=1e-9)
    np.testing.assert_allclose(grad, numeric_gradient(lambda z: _npair_class_hardest(z, y, 0.01), x), atol=1e-6)
    assert value != pytest.approx(loss_value(tfdml.losses.NPairLoss(embedding_reg=0.01, dtype="float64"), y, x),
                                  abs=1e-3)  # EE changes the loss


def test_npair_refuses_normalised_synthetic_points_on_raw_embeddings():
    with pytest.raises(ValueError, match="normalize=False"):
        tfdml.losses.NPairLoss(expansion=tfdml.EmbeddingExpansion(2))
    with pytest.raises(ValueError, match="expansion.normalize"):
        tfdml.losses.get("npair", expansion=2)
    tfdml.losses.NPairLoss(expansion=tfdml.EmbeddingExpansion(2, normalize=False))
    tfdml.losses.NPairLoss(normalize=True, expansion=tfdml.EmbeddingExpansion(2))
    tfdml.losses.NPairLoss(expansion=tfdml.EmbeddingExpansion(0))  # no EE: nothing to refuse


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


# ------------------------------------------------- contrastive, Roth et al. form
def _mined_triplets(x, y, expansion, mining_name, rho, seed):
    """The triplets `ContrastiveLoss(mining=mining_name, seed=seed)` draws: the mining entry point on the
    same matrices with the same seed generator."""
    import keras
    import tensorflow as tf

    from tfdml.losses import mining
    from tfdml.losses.pairs import pair_matrices

    matrices = pair_matrices(tfdml.distances.l2_normalize(tf.constant(x, tf.float64)), tf.constant(y),
                             "euclidean", expansion, tfdml.losses.ContrastiveLoss.default_pooling, True)
    mined = mining.mined_distances(matrices, tf.constant(y), mining_name, rho=rho,
                                   seed=keras.random.SeedGenerator(seed))
    t = mined.triplets
    return [np.asarray(v) for v in (t.anchor, t.positive, t.negative, t.valid, mined.swapped)]


@pytest.mark.parametrize("layout", ["2_per_class", "uneven", "interleaved"])
@pytest.mark.parametrize("expansion", [(0, "consecutive", "class"), (2, "consecutive", "class")], ids=expansion_id)
@pytest.mark.parametrize("mining_name", ["distance", "random"])
@pytest.mark.parametrize("reduction", ["batch", "mean"])
@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_contrastive_mined_pairs_match_reference(layout, expansion, mining_name, reduction, rho):
    y = LAYOUTS[layout]
    x = random_embeddings(y, 5, 3 + len(y))
    ee = make_expansion(*expansion)
    triplets = _mined_triplets(x, y, ee, mining_name, rho, seed=4)
    for i, j, k, valid, swapped in zip(*triplets):
        if valid:
            assert y[j] == y[i] and (y[k] == y[i]) == bool(swapped)
    expected = ref.contrastive_mined(x, y, triplets, 0.1, 1.1, False, reduction, *expansion)
    loss = tfdml.losses.ContrastiveLoss(pos_margin=0.1, neg_margin=1.1, mining=mining_name, reduction=reduction,
                                        rho=rho, seed=4, expansion=ee, dtype="float64")
    assert loss_value(loss, y, x) == pytest.approx(expected, abs=1e-6)


def test_contrastive_roth_form_gradient_and_batch_reduction_over_all_pairs():
    y = LAYOUTS["2_per_class"]
    x = random_embeddings(y, 4, 21)
    loss = tfdml.losses.ContrastiveLoss(mining="distance", reduction="batch", seed=2, dtype="float64")
    value, grad = loss_and_gradient(loss, y, x)
    triplets = _mined_triplets(x, y, None, "distance", 0.0, seed=2)
    assert value == pytest.approx(ref.contrastive_mined(x, y, triplets), abs=1e-6)
    assert sum(triplets[3]) == len(y)  # two samples per class: b triplets, so 1/b Σ is their mean
    fixed = lambda z: ref.contrastive_mined(z, y, triplets)  # noqa: E731 (the drawn triplets, held fixed)
    assert grad == pytest.approx(numeric_gradient(fixed, x), abs=1e-5)
    every_pair = tfdml.losses.ContrastiveLoss(pos_margin=0.2, neg_margin=1.3, squared=True, reduction="batch",
                                              dtype="float64")
    expected = ref.contrastive(x, y, 0.2, 1.3, True, reduction="batch")
    assert loss_value(every_pair, y, x) == pytest.approx(expected, abs=1e-9)
    assert expected != pytest.approx(ref.contrastive(x, y, 0.2, 1.3, True), abs=1e-3)  # the option matters


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_contrastive_roth_form_compiles(mode):
    import tensorflow as tf

    y = LAYOUTS["uneven"]
    x = random_embeddings(y, 6, 8).astype(np.float32)
    loss = tfdml.losses.ContrastiveLoss(mining="distance", reduction="batch", rho=0.3, seed=1)
    eager = float(loss(y, x))
    compiled = float(tf.function(lambda a, b: loss(a, b), jit_compile=mode == "xla")(y, x))
    assert np.isfinite([eager, compiled]).all() and compiled > 0


def test_contrastive_rejects_unknown_mining_and_reduction():
    with pytest.raises(ValueError, match="mining"):
        tfdml.losses.ContrastiveLoss(mining="nearest")
    with pytest.raises(ValueError, match="reduction"):
        tfdml.losses.ContrastiveLoss(reduction="sum")


def test_multi_similarity_plus_one_must_be_a_bool():
    with pytest.raises(ValueError, match="plus_one"):
        tfdml.losses.MultiSimilarityLoss(plus_one="no")
