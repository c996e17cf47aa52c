"""Embedding Expansion: synthetic points against the paper's formula, structure, exact
equivalence at n = 0, serialisation, pooling bounds and counting synthetic winners."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import reference_expansion as ref
import reference_pair_losses as pair_ref
import tfdml
from conftest import LAYOUTS, loss_value, make_expansion, random_embeddings
from tfdml.analysis.expansion_analysis import hard_negative_sources
from tfdml.expansion import EmbeddingExpansion


def test_invalid_arguments_name_the_argument():
    with pytest.raises(ValueError, match="n_points"):
        EmbeddingExpansion(n_points=-1)
    with pytest.raises(ValueError, match="pairs"):
        EmbeddingExpansion(pairs="random")
    with pytest.raises(ValueError, match="pooling"):
        EmbeddingExpansion(pooling="mean")


def test_config_round_trip_through_keras():
    ee = EmbeddingExpansion(3, normalize=False, pairs="all", pooling="class")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(ee))
    assert restored == ee


def test_expanded_gram_matches_explicit_points():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(7, 5))
    y = np.array([4, 4, 9, 4, 9, 9, 1])
    for pairs in ("consecutive", "all"):
        ee = EmbeddingExpansion(2, pairs=pairs)
        points, structure = ee.expanded_points(tf.constant(x), tf.constant(y))
        gram_all, _ = ee.expanded_gram(tf.constant(x @ x.T), tf.constant(y))
        valid = np.concatenate([np.ones(7, bool), structure["valid"].numpy()])
        p = points.numpy()[valid]
        np.testing.assert_allclose(gram_all.numpy()[np.ix_(valid, valid)], p @ p.T, atol=1e-10)


def _hard_negative_sources_reference(x, y, n):
    """Loops: per anchor, is the nearest (pool point, other-class point) pair synthetic?"""
    x = ref.normalize(x)
    pts, lab, syn, owners = list(x), list(y), [False] * len(x), [{i} for i in range(len(x))]
    for c in np.unique(y):
        members = [i for i in range(len(y)) if y[i] == c]
        for a, b in zip(members[0::2], members[1::2]):
            for k in range(1, n + 1):
                pts.append(ref.normalize((k * x[a] + (n + 1 - k) * x[b]) / (n + 1)))
                lab.append(c)
                syn.append(True)
                owners.append({a, b})
    pts, lab = np.array(pts), np.array(lab)
    count = 0
    for i in range(len(y)):
        best, best_syn = np.inf, False
        for p in range(len(pts)):
            if i not in owners[p]:
                continue
            for q in range(len(pts)):
                if lab[q] == y[i]:
                    continue
                d = np.linalg.norm(pts[p] - pts[q])
                if d < best:
                    best, best_syn = d, syn[p] or syn[q]
        count += best_syn
    return count


@pytest.mark.parametrize("trial", range(3))
def test_hard_negative_sources_matches_loops(trial):
    y = np.array([0, 0, 1, 1, 2, 2, 0, 0])
    x = np.random.default_rng(11).normal(size=(3, 8, 3))[trial]
    counts = hard_negative_sources(EmbeddingExpansion(3), x, y)
    expected = _hard_negative_sources_reference(x, y, 3)
    assert int(counts["synthetic"]) == expected
    assert int(counts["synthetic"]) + int(counts["original"]) == 8


def test_pairs_all_works_under_xla():
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(6, 4)), tf.float32)
    y = tf.constant([0, 0, 0, 1, 1, 1])
    loss = tfdml.losses.TripletLoss(expansion=EmbeddingExpansion(2, pairs="all"))
    eager = loss(y, x)
    compiled = tf.function(lambda a, b: loss(a, b), jit_compile=True)(y, x)
    np.testing.assert_allclose(eager.numpy(), compiled.numpy(), rtol=1e-5)


def test_pooled_values_never_exceed_originals():
    rng = np.random.default_rng(5)
    x = tfdml.distances.l2_normalize(tf.constant(rng.normal(size=(10, 6))))
    y = tf.constant([0, 0, 1, 1, 1, 2, 2, 3, 3, 3])
    gram = tf.matmul(x, x, transpose_b=True)
    for pooling in ("anchor", "class"):
        for pairs in ("consecutive", "all"):
            original, pooled = EmbeddingExpansion(2, pairs=pairs).pooled_matrix(gram, y, "euclidean", pooling)
            assert np.all(pooled.numpy() <= original.numpy() + 1e-12)
            sim, pooled_sim = EmbeddingExpansion(2, pairs=pairs).pooled_matrix(gram, y, "cosine", pooling)
            assert np.all(pooled_sim.numpy() >= sim.numpy() - 1e-12)


@pytest.mark.parametrize("pairs", ["consecutive", "all"])
def test_batch_without_positive_pairs_has_zero_finite_gradient(pairs):
    x = tf.constant(np.random.default_rng(2).normal(size=(5, 3)))
    y = tf.constant([0, 1, 2, 3, 4])
    loss = tfdml.losses.LiftedStructureLoss(expansion=EmbeddingExpansion(2, pairs=pairs))
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = loss(y, x)
    grad = tape.gradient(value, x).numpy()
    assert float(value) == 0.0
    assert np.all(grad == 0.0)


# ------------------------------------------------------------ EE structure
def test_hand_worked_expansion_points():
    x = np.array([[3.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    y = np.array([1, 1, 2])
    points, labels, synthetic = tfdml.expand(x, y, n_points=2, normalize=False)
    # k = 1: (1·x0 + 2·x1)/3 = (1, 2); k = 2: (2·x0 + 1·x1)/3 = (2, 1).
    np.testing.assert_allclose(points.numpy()[3:], [[1.0, 2.0], [2.0, 1.0]])
    np.testing.assert_array_equal(labels.numpy(), [1, 1, 2, 1, 1])
    np.testing.assert_array_equal(synthetic.numpy(), [False, False, False, True, True])


@pytest.mark.parametrize("pairs", ["consecutive", "all"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_synthetic_points_formula_and_counts(pairs, n):
    y = LAYOUTS["uneven"]
    x = random_embeddings(y, 3, len(y))
    points, labels, synthetic = tfdml.expand(x, y, n_points=n, normalize=True, pairs=pairs)
    expected = ref.synthetic_points(x, y, n, True, pairs)
    counts = {c: int(np.sum(y == c)) for c in np.unique(y)}
    if pairs == "consecutive":
        total = sum(n * (m // 2) for m in counts.values())
    else:
        total = sum(n * m * (m - 1) // 2 for m in counts.values())
    assert int(np.sum(synthetic.numpy())) == total == len(expected)
    got = points.numpy()[synthetic.numpy()]
    # Same multiset of points (order: pair by pair, k = 1..n).
    np.testing.assert_allclose(got, np.array([p for p, _, _ in expected]), atol=1e-12)
    np.testing.assert_array_equal(labels.numpy()[synthetic.numpy()], [l for _, l, _ in expected])


@pytest.mark.parametrize("name", ["triplet", "lifted", "npair", "multi_similarity", "contrastive"])
def test_n_points_zero_equals_no_expansion_exactly(name):
    y = LAYOUTS["uneven"]
    x = random_embeddings(y, 4, len(y))
    plain = tfdml.losses.get(name)
    zero = tfdml.losses.get(name, expansion=tfdml.EmbeddingExpansion(n_points=0))
    xt = tf.constant(x, tf.float32)
    assert float(plain(y, xt)) == float(zero(y, xt)), name


@pytest.mark.parametrize("pairs, should_change", [("consecutive", True), ("all", False)])
def test_consecutive_pairing_follows_batch_order(pairs, should_change):
    """Documented: pairs are (1st, 2nd), (3rd, 4th) of each class in batch order, so reordering
    samples within a class changes which synthetic points exist (and the loss), while the
    pairs='all' expansion does not depend on the order."""
    y = LAYOUTS["4_per_class"]
    x = random_embeddings(y, 3, len(y))
    perm = np.array([0, 2, 1, 3, 4, 5, 6, 7])  # swap 2nd and 3rd sample of the first class
    loss = tfdml.losses.LiftedStructureLoss(expansion=make_expansion(2, pairs, "class"), dtype="float64")
    a, b = loss_value(loss, y, x), loss_value(loss, y[perm], x[perm])
    assert (abs(a - b) > 1e-9) == should_change
    assert b == pytest.approx(pair_ref.lifted(x[perm], y[perm], 1.0, 2, pairs, "class", equation=12), abs=1e-6)


def test_expansion_argument_accepts_config_and_n_points():
    config = EmbeddingExpansion(3, pairs="all").get_config()
    assert tfdml.losses.LiftedStructureLoss(expansion=config).expansion == EmbeddingExpansion(3, pairs="all")
    assert tfdml.losses.LiftedStructureLoss(expansion=2).expansion == EmbeddingExpansion(2)
    with pytest.raises(ValueError, match="expansion"):
        tfdml.losses.LiftedStructureLoss(expansion="two")
