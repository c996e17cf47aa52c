"""Triplet family (triplet, margin, SNR, quadruplet losses) against explicit-loop numpy
references (float64), with and without Embedding Expansion and ρ, and hand-worked cases.
Random miners are checked on the tuples they drew: the tests mine with the loss's own
entry point (`tfdml.losses.mining`) on the same matrices and seed as the loss."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import reference_expansion as ref_ee
import reference_triplet_losses as ref
import tfdml
from conftest import (LAYOUTS, expansion_id, loss_and_gradient, loss_value, make_expansion, numeric_gradient,
                      random_embeddings)
from tfdml.losses import mining
from tfdml.losses.pairs import pair_matrices

FOUNDATION_LAYOUTS = ("2_per_class", "4_per_class", "uneven", "interleaved")
EXPANSIONS = [(0, "consecutive", "class"), (1, "consecutive", "anchor"), (2, "consecutive", "class")]
ZOO_LAYOUTS = ("2_per_class", "uneven", "interleaved", "two_classes")
ZOO_EXPANSIONS = [(0, "consecutive", "class"), (2, "consecutive", "class"), (1, "all", "anchor")]


def _mining_matrices(x, y, expansion, loss_class, normalize=True):
    """The Euclidean `PairMatrices` a loss of `loss_class` mines on (same ops as the loss)."""
    embeddings = tf.constant(x, tf.float64)
    if normalize:
        embeddings = tfdml.distances.l2_normalize(embeddings)
    return pair_matrices(embeddings, tf.constant(y), "euclidean", expansion, loss_class.default_pooling, normalize)


# ------------------------------------------------------------------- triplet
@pytest.mark.parametrize("layout", FOUNDATION_LAYOUTS)
@pytest.mark.parametrize("mining_name", ["hard", "all", "easy_positive_semihard", "easy_positive_hard"])
@pytest.mark.parametrize("form", ["hinge", "softplus", "nca"])
@pytest.mark.parametrize("expansion", EXPANSIONS, ids=expansion_id)
def test_triplet_deterministic_minings(layout, mining_name, form, expansion):
    y = LAYOUTS[layout]
    x = random_embeddings(y, 4, len(y))
    n, pairs, pooling = expansion
    loss = tfdml.losses.TripletLoss(margin=0.3, mining=mining_name, form=form, dtype="float64",
                                    expansion=make_expansion(n, pairs, pooling))
    expected = ref.triplet(x, y, margin=0.3, mining=mining_name, form=form, n=n, pairs=pairs, pooling=pooling)
    assert loss_value(loss, y, x) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("mining_name", ["all", "hard", "easy_positive_semihard"])
@pytest.mark.parametrize("average_over", ["triplets", "active_triplets", "positive_pairs", "sum"])
@pytest.mark.parametrize("expansion", [(0, "consecutive", "anchor"), (2, "consecutive", "class")], ids=expansion_id)
def test_triplet_average_over_values_and_gradients(mining_name, average_over, expansion):
    y = LAYOUTS["uneven"]
    x = random_embeddings(y, 3, 5)
    n, pairs, pooling = expansion
    loss = tfdml.losses.TripletLoss(margin=0.4, mining=mining_name, average_over=average_over, dtype="float64",
                                    expansion=make_expansion(n, pairs, pooling))

    def reference(z):
        return ref.triplet(z, y, margin=0.4, mining=mining_name, n=n, pairs=pairs, pooling=pooling,
                           average_over=average_over)

    value, grad = loss_and_gradient(loss, y, x)
    assert value == pytest.approx(reference(x), abs=1e-9)
    np.testing.assert_allclose(grad, numeric_gradient(reference, x), atol=1e-6)


def test_hand_worked_triplet_average_over():
    # a = (1, 0), p = (0, 1) of class 0; n = (−1, 0), q = (0, −1) of class 1; |P| = 4 ordered positive pairs,
    # 8 triplets (each anchor has one positive and two negatives, one √2 and one 2 away; d_ap = √2).
    # Margin 0.5: per anchor [√2 − 2 + 0.5]_+ = 0 and [√2 − √2 + 0.5]_+ = 0.5 → sum 2.
    # Margin 1.0: per anchor √2 − 1 and 1 → sum 4√2.
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    y = np.array([0, 0, 1, 1])
    expected = {(0.5, "triplets"): 2 / 8, (0.5, "active_triplets"): 2 / 4, (0.5, "positive_pairs"): 2 / 4,
                (1.0, "triplets"): 4 * np.sqrt(2) / 8, (1.0, "active_triplets"): 4 * np.sqrt(2) / 8,
                (1.0, "positive_pairs"): 4 * np.sqrt(2) / 4, (0.5, None): 2 / 4, (0.5, "sum"): 2.0,
                (1.0, "sum"): 4 * np.sqrt(2)}
    for (margin, average_over), value in expected.items():
        loss = tfdml.losses.TripletLoss(margin=margin, mining="all", average_over=average_over, dtype="float64")
        assert loss_value(loss, y, x) == pytest.approx(value, abs=1e-12), (margin, average_over)
    with pytest.raises(ValueError, match="average_over"):
        tfdml.losses.TripletLoss(average_over="mean")


@pytest.mark.parametrize("distance", ["squared_euclidean", "cosine_distance"])
def test_triplet_other_distances_and_scale(distance):
    y = LAYOUTS["uneven"]
    x = random_embeddings(y, 4, len(y))
    loss = tfdml.losses.TripletLoss(mining="all", form="softplus", distance=distance, embedding_scale=4.0,
                                    dtype="float64")
    expected = ref.triplet(x, y, mining="all", form="softplus", metric=distance, embedding_scale=4.0)
    assert loss_value(loss, y, x) == pytest.approx(expected, abs=1e-6)


def test_hand_worked_batch_hard_triplet():
    # Points on the unit circle: a=(1,0), p=(0,1) same class; n=(-1,0) other class, n2=(0,-1) too.
    # Every anchor: farthest positive at distance √2; nearest negative at √2 (a to n2, p to n, ...)
    # => every hinge = √2 − √2 + 0.5 = 0.5, mean 0.5.
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    y = np.array([0, 0, 1, 1])
    loss = tfdml.losses.TripletLoss(margin=0.5, dtype="float64")
    assert loss_value(loss, y, x) == pytest.approx(0.5, abs=1e-12)


def test_hphn_ee_equals_official_semantics_values_and_gradients():
    rng = np.random.default_rng(7)
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    x = rng.normal(size=(8, 5))
    loss = tfdml.losses.TripletLoss(margin=0.5, mining="hard", expansion=tfdml.EmbeddingExpansion(2),
                                    dtype="float64")
    assert loss_value(loss, y, x) == pytest.approx(ref.official_hphn_ee(x, y, 0.5, 2), abs=1e-9)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        value = loss(tf.constant(y), xt)
    grad = tape.gradient(value, xt).numpy()
    numeric = np.zeros_like(x)
    h = 1e-6
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            up, down = x.copy(), x.copy()
            up[i, j] += h
            down[i, j] -= h
            numeric[i, j] = (ref.official_hphn_ee(up, y, 0.5, 2) - ref.official_hphn_ee(down, y, 0.5, 2)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, atol=1e-6)


# -------------------------------------------------------------------- margin
@pytest.mark.parametrize("mining_name", ["distance", "hard", "semihard"])
@pytest.mark.parametrize("per_class", [False, True])
def test_margin_loss_matches_reference(mining_name, per_class):
    rng = np.random.default_rng(4)
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3, 3])
    x = rng.normal(size=(9, 5))
    loss = tfdml.losses.MarginLoss(margin=0.2, beta=0.9, per_class_beta=per_class, num_classes=4, nu=0.01,
                                   mining=mining_name, seed=3, dtype="float64")
    if per_class:
        loss.state_layer.assign_value(np.array([0.7, 0.8, 0.9, 1.1]))
    betas = loss.state_layer.numpy()
    d = ref_ee.positive_matrix(ref_ee.normalize(x), "euclidean")
    triplets = [np.asarray(t) for t in mining.mine_triplets(tf.constant(d), tf.constant(d), tf.constant(y),
                                                             mining_name, margin=0.2, seed=3, embedding_dim=5)]
    expected = ref.margin_loss(x, y, triplets, 0.2, betas, 0.01)
    assert float(loss(y, tf.constant(x))) == pytest.approx(expected, abs=1e-6)


def test_margin_loss_without_normalization():
    y = np.array([0, 0, 1, 1, 2, 2])
    x = random_embeddings(y, 4, 8, scale=0.3)
    loss = tfdml.losses.MarginLoss(mining="hard", normalize=False, dtype="float64")
    d = ref_ee.positive_matrix(x, "euclidean")
    triplets = [np.asarray(t) for t in mining.mine_triplets(tf.constant(d), tf.constant(d), tf.constant(y), "hard")]
    expected = ref.margin_loss(x, y, triplets, 0.2, [1.2], 0.0, normalized=False)
    assert loss_value(loss, y, x) == pytest.approx(expected, abs=1e-6)
    normalized = ref.margin_loss(x, y, triplets, 0.2, [1.2], 0.0)
    assert expected != pytest.approx(normalized, abs=1e-3)  # the option matters


def test_hand_worked_margin():
    # a=(1,0), p=(0,1) [d=√2], n=(-1,0) [d=2]; hard mining, β=1.2, α=0.2:
    # pos = [√2 − 1.2 + 0.2]_+ = 0.4142, neg = [1.2 − 2 + 0.2]_+ = 0 for anchor a; by symmetry the
    # positive's triplet: d(p,a)=√2, nearest negative of p is n at √2 → neg = [1.2 − √2 + 0.2]_+ = 0 → 0.
    # Anchor n has no positive. Total = 2·0.4142 over 2 non-zero terms = 0.4142.
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    y = np.array([0, 0, 1])
    loss = tfdml.losses.MarginLoss(mining="hard", dtype="float64")
    assert float(loss(y, x)) == pytest.approx(np.sqrt(2) - 1.0, abs=1e-9)


def test_per_class_beta_rejects_labels_out_of_range():
    loss = tfdml.losses.MarginLoss(per_class_beta=True, num_classes=2, mining="hard")
    x = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError, match="num_classes=2"):
        loss(np.array([0, 0, 2, 2]), x)
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_classes"):
        tf.function(lambda a, b: loss(a, b))(tf.constant([0, 0, 2, 2]), x)
    with pytest.raises(ValueError, match="num_classes"):
        tfdml.losses.MarginLoss(per_class_beta=True)


# ----------------------------------------------------------------------- SNR
@pytest.mark.parametrize("layout", ZOO_LAYOUTS)
@pytest.mark.parametrize("expansion", ZOO_EXPANSIONS, ids=expansion_id)
def test_snr_all_triplets_match_reference(layout, expansion):
    y = LAYOUTS[layout]
    x = random_embeddings(y, 5, 10 * len(y), scale=0.6)
    loss = tfdml.losses.SNRLoss(margin=0.3, embedding_reg=0.01, mining="all", expansion=make_expansion(*expansion),
                                dtype="float64")
    assert loss_value(loss, y, x) == pytest.approx(ref.snr(x, y, None, 0.3, 0.01, *expansion), abs=1e-6)


@pytest.mark.parametrize("mining_name", ["distance", "hard", "semihard"])
@pytest.mark.parametrize("expansion", ZOO_EXPANSIONS, ids=expansion_id)
@pytest.mark.parametrize("rho", [0.0, 0.4])
@pytest.mark.parametrize("seed", [0, 1])
def test_snr_matches_reference_on_its_mined_triplets(mining_name, expansion, rho, seed):
    y = LAYOUTS["uneven"]
    x = random_embeddings(y, 5, 2 + 10 * len(y))
    ee = make_expansion(*expansion)
    mined = mining.mined_distances(_mining_matrices(x, y, ee, tfdml.losses.SNRLoss), tf.constant(y), mining_name,
                                   margin=0.25, rho=rho, seed=seed)
    tuples = [np.asarray(v) for v in mined.triplets] + [np.asarray(mined.swapped)]
    expected = ref.snr(x, y, tuples, 0.25, 0.02, *expansion)
    loss = tfdml.losses.SNRLoss(margin=0.25, embedding_reg=0.02, mining=mining_name, rho=rho, seed=seed,
                                dtype="float64", expansion=ee)
    assert loss_value(loss, y, x) == pytest.approx(expected, abs=1e-6)


def test_snr_without_normalization():
    y = LAYOUTS["two_classes"]
    x = random_embeddings(y, 5, 11, scale=2.0)
    loss = tfdml.losses.SNRLoss(mining="all", normalize=False, dtype="float64")
    expected = ref.snr(x, y, None, 0.2, 0.005, normalized=False)
    assert loss_value(loss, y, x) == pytest.approx(expected, abs=1e-6)
    assert expected != pytest.approx(ref.snr(x, y, None, 0.2, 0.005), abs=1e-3)  # the option matters


def test_hand_worked_snr_distance():
    # a = (1, 2, 3): Var = 2/3. b = (2, 2, 2): b − a = (1, 0, −1), Var = 2/3 → d = 1.
    a, b = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0])
    from tfdml.losses.snr import snr_distances

    d = snr_distances(tf.constant(np.stack([a, b])))
    assert float(d[0, 1]) == pytest.approx(1.0, abs=1e-12)
    assert ref.snr_distance(a, b) == pytest.approx(1.0, abs=1e-12)


# ---------------------------------------------------------------- quadruplet
def _quadruplets(x, y, expansion, rho, seed, normalize=True):
    """The quadruplets `QuadrupletLoss(seed=seed)` draws, from the mining module's two calls
    on the same matrices with the same seed generator."""
    labels = tf.constant(y)
    matrices = _mining_matrices(x, y, expansion, tfdml.losses.QuadrupletLoss, normalize)
    generator = keras.random.SeedGenerator(seed)
    mined = mining.mined_distances(matrices, labels, "distance", rho=rho, seed=generator)
    t = mined.triplets
    fourth, has_fourth = mining.sample_other_class(labels, t.anchor, t.negative, generator)
    has_fourth = tf.logical_and(t.valid, has_fourth)
    return [np.asarray(v) for v in (t.anchor, t.positive, t.negative, fourth, t.valid, has_fourth, mined.swapped)]


@pytest.mark.parametrize("layout", ["uneven", "interleaved", "two_classes"])
@pytest.mark.parametrize("expansion", ZOO_EXPANSIONS, ids=expansion_id)
@pytest.mark.parametrize("rho", [0.0, 0.5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quadruplet_matches_reference_on_its_sampled_quadruplets(layout, expansion, rho, seed):
    y = LAYOUTS[layout]
    x = random_embeddings(y, 5, 1 + 10 * len(y))
    ee = make_expansion(*expansion)
    q = _quadruplets(x, y, ee, rho, seed)
    for i, j, k, l, v, h, s in zip(*q):
        if not v:
            continue
        assert y[j] == y[i] and (j != i or s)
        assert y[k] == y[i] if s else y[k] != y[i]
        assert h == (len(set(y) - {y[i], y[k]}) > 0)
        if h:
            assert y[l] not in (y[i], y[k])
    expected = ref.quadruplet(x, y, q, 0.9, 0.4, *expansion)
    loss = tfdml.losses.QuadrupletLoss(margin=0.9, second_margin=0.4, rho=rho, seed=seed, dtype="float64",
                                       expansion=ee)
    assert loss_value(loss, y, x) == pytest.approx(expected, abs=1e-6)


def test_quadruplet_without_normalization():
    y = LAYOUTS["uneven"]
    x = random_embeddings(y, 5, 5, scale=0.4)
    q = _quadruplets(x, y, None, 0.0, 0, normalize=False)
    expected = ref.quadruplet(x, y, q, normalized=False)
    loss = tfdml.losses.QuadrupletLoss(normalize=False, seed=0, dtype="float64")
    assert loss_value(loss, y, x) == pytest.approx(expected, abs=1e-6)
    assert expected != pytest.approx(ref.quadruplet(x, y, q), abs=1e-3)  # the option matters
