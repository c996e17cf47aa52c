"""EmbeddingExpansion API: structure, serialisation, counting synthetic winners."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdml
from tfdml.analysis.expansion_analysis import hard_negative_sources
from tfdml.expansion import EmbeddingExpansion


def _normalize(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


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
    x = _normalize(x)
    pts, lab, syn, owners = list(x), list(y), [False] * len(x), [{i} for i in range(len(x))]
    for c in np.unique(y):
        members = [i for i in range(len(y)) if y[i] == c]
        for a, b in zip(members[0::2], members[1::2]):
            for k in range(1, n + 1):
                pts.append(_normalize((k * x[a] + (n + 1 - k) * x[b]) / (n + 1)))
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


def test_hard_negative_sources_matches_loops():
    rng = np.random.default_rng(11)
    y = np.array([0, 0, 1, 1, 2, 2, 0, 0])
    for trial in range(3):
        x = rng.normal(size=(8, 3))
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
