"""Roth et al. loss zoo against explicit-loop numpy references (float64), hand-worked
cases, and the random samplers' validity and distributions."""
import math

import numpy as np
import pytest
import tensorflow as tf

import numpy_reference as ref
import tfdml
import zoo_reference as zoo

LAYOUTS = {
    "2_per_class": np.array([0, 0, 1, 1, 2, 2, 3, 3]),
    "uneven": np.array([0, 0, 0, 1, 2, 2, 2, 2, 3, 3]),
    "interleaved": np.array([1, 0, 1, 2, 0, 2, 1, 0]),
    "two_classes": np.array([4, 4, 4, 7, 7, 7]),
}
EXPANSIONS = [(0, "consecutive", "class"), (2, "consecutive", "class"), (1, "all", "anchor")]


def _data(layout, dim=5, seed=0, scale=1.0):
    labels = LAYOUTS[layout]
    rng = np.random.default_rng(seed + 10 * len(labels))
    return rng.normal(size=(len(labels), dim)) * scale, labels


def _ee(n, pairs, pooling, normalize=True):
    return tfdml.EmbeddingExpansion(n_points=n, pairs=pairs, pooling=pooling, normalize=normalize)


def _value(loss, labels, x):
    return float(loss(tf.constant(labels), tf.constant(x, tf.float64)))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("expansion", EXPANSIONS)
def test_deterministic_zoo_losses_match_references(layout, expansion):
    x, y = _data(layout, scale=0.6)
    n, pairs, pooling = expansion
    raw_ee = _ee(n, pairs, pooling, normalize=False)
    cases = [
        (tfdml.losses.GeneralizedLiftedStructureLoss(margin=1.0, embedding_l2=0.005, expansion=raw_ee,
                                                     dtype="float64"),
         zoo.generalized_lifted(x, y, 1.0, 0.005, n, pairs, pooling)),
        (tfdml.losses.AngularLoss(alpha_degrees=40.0, angular_weight=2.0, l2_reg=0.005, expansion=raw_ee,
                                  dtype="float64"),
         zoo.angular(x, y, 40.0, 2.0, 0.005, n, pairs, pooling)),
        (tfdml.losses.HistogramLoss(bins=9, expansion=_ee(n, pairs, pooling), dtype="float64"),
         zoo.histogram(x, y, 9, n, pairs, pooling)),
        (tfdml.losses.HistogramLoss(bins=65, expansion=_ee(n, pairs, pooling), dtype="float64"),
         zoo.histogram(x, y, 65, n, pairs, pooling)),
        (tfdml.losses.SNRLoss(margin=0.3, reg=0.01, mining="all", expansion=_ee(n, pairs, pooling),
                              dtype="float64"),
         zoo.snr(x, y, None, 0.3, 0.01, n, pairs, pooling)),
    ]
    for loss, expected in cases:
        assert _value(loss, y, x) == pytest.approx(expected, abs=1e-6), loss.name


def test_angular_with_large_alpha_and_large_norms_stays_accurate():
    x, y = _data("uneven", seed=3, scale=4.0)
    loss = tfdml.losses.AngularLoss(alpha_degrees=60.0, dtype="float64")
    assert _value(loss, y, x) == pytest.approx(zoo.angular(x, y, 60.0), rel=1e-9)


@pytest.mark.parametrize("layout", ["uneven", "interleaved", "two_classes"])
@pytest.mark.parametrize("expansion", EXPANSIONS)
@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_quadruplet_matches_reference_on_its_sampled_quadruplets(layout, expansion, rho):
    x, y = _data(layout, seed=1)
    n, pairs, pooling = expansion
    for seed in range(3):
        kwargs = dict(margin_an=0.9, margin_nn=0.4, rho=rho, seed=seed, dtype="float64",
                      expansion=_ee(n, pairs, pooling))
        q = [np.asarray(v) for v in tfdml.losses.QuadrupletLoss(**kwargs).sample_quadruplets(y, x)]
        anchor, positive, negative, fourth, valid, has_fourth, swapped = q
        for i, j, k, l, v, h, s in zip(*q):
            if not v:
                continue
            assert y[j] == y[i] and (j != i or s)
            assert y[k] == y[i] if s else y[k] != y[i]
            assert h == (len(set(y) - {y[i], y[k]}) > 0)
            if h:
                assert y[l] not in (y[i], y[k])
        expected = zoo.quadruplet(x, y, q, 0.9, 0.4, n, pairs, pooling)
        assert _value(tfdml.losses.QuadrupletLoss(**kwargs), y, x) == pytest.approx(expected, abs=1e-6)


def test_quadruplet_fourth_sample_is_uniform_over_admissible_samples():
    from tfdml.losses.base import make_seed_generator
    from tfdml.losses.quadruplet import sample_other_class

    y = tf.constant([3, 1, 1, 0, 3, 2, 2, 2, 1, 5])
    first = tf.constant([0, 1, 5, 9], tf.int32)
    second = tf.constant([3, 2, 6, 9], tf.int32)  # classes excluded: {3,0}, {1}, {2}, {5}
    counts = np.zeros((4, 10))
    generator = make_seed_generator(0)
    for _ in range(400):
        index, exists = sample_other_class(y, first, second, generator)
        assert np.asarray(exists).all()
        for row, value in enumerate(np.asarray(index)):
            counts[row, value] += 1
    labels = y.numpy()
    for row, (f, s) in enumerate(zip(first.numpy(), second.numpy())):
        admissible = [k for k in range(10) if labels[k] not in (labels[f], labels[s])]
        assert set(np.nonzero(counts[row])[0]) == set(admissible)
        np.testing.assert_allclose(counts[row, admissible] / 400, 1 / len(admissible), atol=0.07)


@pytest.mark.parametrize("mining_name", ["distance", "hard", "semihard"])
@pytest.mark.parametrize("expansion", EXPANSIONS)
@pytest.mark.parametrize("rho", [0.0, 0.4])
def test_snr_matches_reference_on_its_mined_triplets(mining_name, expansion, rho):
    x, y = _data("uneven", seed=2)
    n, pairs, pooling = expansion
    for seed in range(2):
        kwargs = dict(margin=0.25, reg=0.02, mining=mining_name, rho=rho, seed=seed, dtype="float64",
                      expansion=_ee(n, pairs, pooling))
        triplets, swapped = tfdml.losses.SNRLoss(**kwargs).sample_triplets(y, x)
        tuples = [np.asarray(v) for v in triplets] + [np.asarray(swapped)]
        expected = zoo.snr(x, y, tuples, 0.25, 0.02, n, pairs, pooling)
        assert _value(tfdml.losses.SNRLoss(**kwargs), y, x) == pytest.approx(expected, abs=1e-6)


# --------------------------------------------------------------- hand-worked
def test_hand_worked_generalized_lifted():
    # Points (0,0), (1,0) class 0 and (0,2) class 1, margin 1, no regulariser.
    # Anchor 0: log e^1 + log e^(1−2) = 0 → 0. Anchor 1: log e^1 + log e^(1−√5) = 2 − √5 < 0 → 0.
    # Move the negative closer: (0, 0.5): anchor 0: 1 + 0.5 = 1.5; anchor 1: 1 + 1 − √1.25.
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.5]])
    y = np.array([0, 0, 1])
    loss = tfdml.losses.GeneralizedLiftedStructureLoss(margin=1.0, embedding_l2=0.0, dtype="float64")
    assert _value(loss, y, x) == pytest.approx((1.5 + 2.0 - math.sqrt(1.25)) / 2, abs=1e-12)
    loss = tfdml.losses.GeneralizedLiftedStructureLoss(margin=1.0, embedding_l2=0.3, dtype="float64")
    assert _value(loss, y, x) == pytest.approx((1.5 + 2.0 - math.sqrt(1.25)) / 2 + 0.3 * 1.25 / 3, abs=1e-12)


def test_hand_worked_histogram():
    # Three bins at −1, 0, 1. Positive pair similarity 0 → h⁺ = (0, 1, 0).
    # Negative similarities 1 and −1 (pairs (0,2), (1,2)) → h⁻ = (½, 0, ½).
    # loss = h⁻_1·0 + h⁻_2·1 + h⁻_3·1 = ½.
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    x[2] = [1.0, 0.0]
    y = np.array([0, 0, 1])
    # s(0,1) = 0 (positive); s(0,2) = 1; s(1,2) = 0 → h⁻ = (0, ½, ½), loss = ½·1 + ½·1 = 1.
    loss = tfdml.losses.HistogramLoss(bins=3, dtype="float64")
    assert _value(loss, y, x) == pytest.approx(1.0, abs=1e-12)
    x[2] = [-1.0, 0.0]  # s(0,2) = −1, s(1,2) = 0 → h⁻ = (½, ½, 0): loss = ½·0 + ½·1 = ½.
    assert _value(loss, y, x) == pytest.approx(0.5, abs=1e-12)


def test_hand_worked_snr_distance():
    # a = (1, 2, 3): Var = 2/3. b = (2, 2, 2): b − a = (1, 0, −1), Var = 2/3 → d = 1.
    a, b = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0])
    from tfdml.losses.snr import snr_distances

    d = snr_distances(tf.constant(np.stack([a, b])))
    assert float(d[0, 1]) == pytest.approx(1.0, abs=1e-12)
    assert zoo.snr_distance(a, b) == pytest.approx(1.0, abs=1e-12)


def test_hand_worked_angular_single_pair():
    # a = (1,0), p = (1,0), n = (0,1); α = 45° (tan² = 1), no regulariser, angular only:
    # f = 4·(0 + 0) − 2·2·1 = −4 → log(1 + e^−4); N-pair: log(1 + e^(0 − 1)).
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 0, 1])
    loss = tfdml.losses.AngularLoss(alpha_degrees=45.0, angular_weight=2.0, l2_reg=0.0, dtype="float64")
    expected = math.log1p(math.exp(-1.0)) + 2 * math.log1p(math.exp(-4.0))
    assert _value(loss, y, x) == pytest.approx(expected, abs=1e-9)
