"""Triplet miners, ρ-regularisation and the quadruplet's fourth-sample draw
(`tfdml.losses.mining`): validity, selection rules and sampling distributions."""
import numpy as np
import pytest
import tensorflow as tf

import reference_expansion as ref
import tfdml
from conftest import LAYOUTS, loss_value, random_embeddings
from tfdml.losses import mining
from tfdml.losses.ops import make_seed_generator, row_searchsorted
from tfdml.losses.pairs import PairMatrices


def _mined(mining_name, seed, x, y, margin=0.2):
    xn = ref.normalize(x)
    d = ref.positive_matrix(xn, "euclidean")
    t = mining.mine_triplets(tf.constant(d), tf.constant(d), tf.constant(y), mining_name, margin=margin,
                             seed=seed, embedding_dim=x.shape[1])
    return d, [np.asarray(v) for v in t]


@pytest.mark.parametrize("seed", range(5))
def test_semihard_selects_from_window_or_hardest(seed):
    y = LAYOUTS["4_per_class"]
    x = random_embeddings(y, 3, 3 + len(y))
    margin = 0.4
    d, (anchor, positive, negative, valid) = _mined("semihard", seed, x, y, margin)
    for a, p, q, v in zip(anchor, positive, negative, valid):
        is_pair = a != p and y[a] == y[p]
        assert v == is_pair
        if not v:
            continue
        negs = [k for k in range(len(y)) if y[k] != y[a]]
        window = [k for k in negs if d[a, p] < d[a, k] < d[a, p] + margin]
        assert y[q] != y[a]
        if window:
            assert q in window
        else:
            assert d[a, q] == min(d[a, k] for k in negs)


def test_distance_weighted_sampling_frequencies():
    rng = np.random.default_rng(0)
    dim = 4
    y = np.array([0, 0] + [1] * 6)
    x = ref.normalize(rng.normal(size=(8, dim)))
    d = ref.positive_matrix(x, "euclidean")
    counts = np.zeros(8)
    draws = 0
    for seed in range(60):
        _, (anchor, positive, negative, valid) = _mined("distance", seed, x, y)
        for a, q, v in zip(anchor, negative, valid):
            if v and a == 0:
                counts[q] += 1
                draws += 1
    weights = np.zeros(8)
    for k in range(2, 8):
        dk = max(d[0, k], 0.5)
        q = dk ** (dim - 2) * (1 - dk ** 2 / 4) ** ((dim - 3) / 2)
        weights[k] = 0.0 if d[0, k] > 1.4 else 1.0 / q
    if weights.sum() == 0:
        weights[2:] = 1.0
    weights /= weights.sum()
    freq = counts / draws
    assert counts[:2].sum() == 0  # never a same-class sample
    np.testing.assert_allclose(freq, weights, atol=0.08)


@pytest.mark.parametrize("mining_name", ["softhard", "random"])
@pytest.mark.parametrize("seed", range(3))
def test_random_per_anchor_miners_valid_and_loss_matches(mining_name, seed):
    y = LAYOUTS["uneven"]
    x = random_embeddings(y, 4, 5 + len(y))
    xn = ref.normalize(x)
    d = ref.positive_matrix(xn, "euclidean")
    _, (anchor, positive, negative, valid) = _mined(mining_name, seed, x, y)
    for a, p, q, v in zip(anchor, positive, negative, valid):
        if not v:
            continue
        assert p != a and y[p] == y[a] and y[q] != y[a]
        if mining_name == "softhard":
            pos = [j for j in range(len(y)) if j != a and y[j] == y[a]]
            negs = [k for k in range(len(y)) if y[k] != y[a]]
            hard_pos = [j for j in pos if d[a, j] > min(d[a, k] for k in negs)]
            hard_neg = [k for k in negs if d[a, k] < max(d[a, j] for j in pos)]
            assert p in (hard_pos or pos)
            assert q in (hard_neg or negs)
    expected = np.mean([max(d[a, p] - d[a, q] + 0.2, 0) for a, p, q, v in zip(anchor, positive, negative, valid)
                        if v])
    loss = tfdml.losses.TripletLoss(margin=0.2, mining=mining_name, seed=seed, dtype="float64")
    # A fresh loss with the same seed draws the same triplets as mine_triplets(seed=seed).
    assert loss_value(loss, y, x) == pytest.approx(expected, abs=1e-9)


def test_rho_replaces_triplets_with_same_class_pushes():
    y = LAYOUTS["4_per_class"]
    x = random_embeddings(y, 4, 6 + len(y))
    d = ref.positive_matrix(ref.normalize(x), "euclidean")
    t = mining.mine_triplets(tf.constant(d), tf.constant(d), tf.constant(y), "hard")
    swapped_any = False
    for seed in range(4):
        replaced, swapped = mining.apply_rho(t, tf.constant(y), 0.5, make_seed_generator(seed))
        for a, p, q, s in zip(*[np.asarray(v) for v in (replaced.anchor, replaced.positive, replaced.negative,
                                                         swapped)]):
            if s:
                swapped_any = True
                assert p == a and q != a and y[q] == y[a]
    assert swapped_any
    always = tfdml.losses.TripletLoss(margin=0.2, rho=1.0, seed=0, dtype="float64")
    # ρ = 1: every triplet is (i, i, j): loss = mean [0 − d_ij + m]_+ over the drawn j.
    value = loss_value(always, y, x)
    assert 0.0 <= value <= 0.2


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("length", [1, 2, 7, 64])
def test_row_searchsorted_equals_numpy(side, length):
    rng = np.random.default_rng(length)
    rows = np.sort(rng.integers(0, 5, size=(3, length)).astype(np.float64), axis=1)  # many ties
    values = rng.integers(-1, 7, size=(3, 11)).astype(np.float64)
    expected = np.stack([np.searchsorted(r, v, side=side) for r, v in zip(rows, values)])
    got = row_searchsorted(tf.constant(rows), tf.constant(values), side=side)
    np.testing.assert_array_equal(got.numpy(), expected)
    unknown = tf.function(lambda r, v: row_searchsorted(r, v, side=side),
                          input_signature=[tf.TensorSpec([None, None], tf.float64)] * 2)
    np.testing.assert_array_equal(unknown(rows, values).numpy(), expected)


def test_quadruplet_fourth_sample_is_uniform_over_admissible_samples():
    y = tf.constant([3, 1, 1, 0, 3, 2, 2, 2, 1, 5])
    first = tf.constant([0, 1, 5, 9], tf.int32)
    second = tf.constant([3, 2, 6, 9], tf.int32)  # classes excluded: {3,0}, {1}, {2}, {5}
    counts = np.zeros((4, 10))
    generator = make_seed_generator(0)
    for _ in range(400):
        index, exists = mining.sample_other_class(y, first, second, generator)
        assert np.asarray(exists).all()
        for row, value in enumerate(np.asarray(index)):
            counts[row, value] += 1
    labels = y.numpy()
    for row, (f, s) in enumerate(zip(first.numpy(), second.numpy())):
        admissible = [k for k in range(10) if labels[k] not in (labels[f], labels[s])]
        assert set(np.nonzero(counts[row])[0]) == set(admissible)
        np.testing.assert_allclose(counts[row, admissible] / 400, 1 / len(admissible), atol=0.07)


# ------------------------------------------------------ the one mining entry point
def _matrices(y, seed=0):
    """PairMatrices with different positive / negative matrices (as under EE)."""
    rng = np.random.default_rng(seed)
    positive = rng.uniform(0.5, 2.0, size=(len(y), len(y)))
    labels = tf.constant(y)
    same = y[:, None] == y[None, :]
    return PairMatrices(tf.constant(positive), tf.constant(positive - 0.3),
                        tf.constant(same & ~np.eye(len(y), dtype=bool)), tf.constant(~same), 4), labels


def test_mined_distances_gathers_values_of_the_mined_triplets():
    y = LAYOUTS["uneven"]
    matrices, labels = _matrices(y)
    values, _ = _matrices(y, seed=1)
    mined = mining.mined_distances(matrices, labels, "hard", values=values)
    anchor, positive, negative = (np.asarray(v) for v in mined.triplets[:3])
    expected = mining.mine_triplets(matrices.positive, matrices.negative, labels, "hard")
    np.testing.assert_array_equal(negative, np.asarray(expected.negative))  # mined on `matrices`
    np.testing.assert_allclose(mined.d_ap, values.positive.numpy()[anchor, positive])  # values from `values`
    np.testing.assert_allclose(mined.d_an, values.negative.numpy()[anchor, negative])
    assert not np.asarray(mined.swapped).any()


def test_mined_distances_rho_swapped_triplets_read_original_distances():
    y = LAYOUTS["4_per_class"]
    matrices, labels = _matrices(y)
    mined = mining.mined_distances(matrices, labels, "hard", rho=1.0, seed=0)
    anchor, positive, negative = (np.asarray(v) for v in mined.triplets[:3])
    assert np.asarray(mined.swapped).all()  # every anchor has another sample of its class
    np.testing.assert_array_equal(anchor, positive)
    np.testing.assert_allclose(mined.d_an, matrices.positive.numpy()[anchor, negative])


def test_mined_distances_all_is_every_valid_triplet():
    y = LAYOUTS["interleaved"]
    matrices, labels = _matrices(y)
    mined = mining.mined_distances(matrices, labels, "all")
    assert mined.triplets is None and mined.swapped is None
    b = len(y)
    valid = np.asarray(mined.valid)
    assert valid.shape == (b, b, b)
    for a in range(b):
        for p in range(b):
            for n in range(b):
                assert valid[a, p, n] == (a != p and y[p] == y[a] and y[n] != y[a])
    np.testing.assert_allclose(np.broadcast_to(mined.d_ap, (b, b, b))[:, :, 0], matrices.positive.numpy())
    np.testing.assert_allclose(np.broadcast_to(mined.d_an, (b, b, b))[:, 0, :], matrices.negative.numpy())


def test_mining_arguments_are_checked():
    with pytest.raises(ValueError, match="mining='all'"):
        tfdml.losses.TripletLoss(mining="all", rho=0.1)
    with pytest.raises(ValueError, match="mining='all'"):
        tfdml.losses.SNRLoss(mining="all", rho=0.1)
    with pytest.raises(ValueError, match="mining"):
        tfdml.losses.MarginLoss(mining="all")
    with pytest.raises(ValueError, match="mining"):
        tfdml.losses.TripletLoss(mining="hardest")
