"""Foundation losses and miners against explicit-loop numpy references (float64)."""
import numpy as np
import pytest
import tensorflow as tf

import numpy_reference as ref
import tfdml
from tfdml.losses import mining

LAYOUTS = {
    "2_per_class": np.array([0, 0, 1, 1, 2, 2, 3, 3]),
    "4_per_class": np.array([5, 5, 5, 5, 9, 9, 9, 9]),
    "uneven": np.array([0, 0, 0, 1, 2, 2, 2, 2, 3, 3]),
    "interleaved": np.array([1, 0, 1, 2, 0, 2, 1, 0]),
}
EXPANSIONS = [
    (0, "consecutive", "class"),
    (1, "consecutive", "anchor"),
    (2, "consecutive", "class"),
    (3, "all", "anchor"),
    (2, "all", "class"),
]


def _data(layout, dim=4, seed=0):
    labels = LAYOUTS[layout]
    rng = np.random.default_rng(seed + len(labels))
    return rng.normal(size=(len(labels), dim)), labels


def _ee(n, pairs, pooling, normalize=True):
    return tfdml.EmbeddingExpansion(n_points=n, pairs=pairs, pooling=pooling, normalize=normalize)


def _value(loss, labels, x):
    return float(loss(tf.constant(labels), tf.constant(x, tf.float64)))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("mining_name", ["hard", "all", "easy_positive_semihard", "easy_positive_hard"])
@pytest.mark.parametrize("form", ["hinge", "softplus", "nca"])
def test_triplet_deterministic_minings(layout, mining_name, form):
    x, y = _data(layout)
    for n, pairs, pooling in EXPANSIONS[:3]:
        loss = tfdml.losses.TripletLoss(margin=0.3, mining=mining_name, form=form, dtype="float64",
                                        expansion=_ee(n, pairs, pooling))
        expected = ref.triplet(x, y, margin=0.3, mining=mining_name, form=form, n=n, pairs=pairs, pooling=pooling)
        assert _value(loss, y, x) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("distance", ["squared_euclidean", "cosine_distance"])
def test_triplet_other_distances_and_scale(distance):
    x, y = _data("uneven")
    loss = tfdml.losses.TripletLoss(mining="all", form="softplus", distance=distance, scale=4.0, dtype="float64")
    expected = ref.triplet(x, y, mining="all", form="softplus", metric=distance, scale=4.0)
    assert _value(loss, y, x) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("expansion", EXPANSIONS)
def test_pair_losses_match_references(layout, expansion):
    x, y = _data(layout, seed=1)
    n, pairs, pooling = expansion
    ee = _ee(n, pairs, pooling)
    cases = [
        (tfdml.losses.LiftedStructureLoss(margin=1.0, expansion=ee, dtype="float64"),
         ref.lifted(x, y, 1.0, n, pairs, pooling)),
        (tfdml.losses.NPairLoss(l2_reg=0.005, expansion=_ee(n, pairs, pooling, normalize=False), dtype="float64"),
         ref.npair(x, y, 0.005, n, pairs, pooling)),
        (tfdml.losses.MultiSimilarityLoss(expansion=ee, dtype="float64"),
         ref.multi_similarity(x, y, n=n, pairs=pairs, pooling=pooling)),
        (tfdml.losses.ContrastiveLoss(pos_margin=0.1, neg_margin=1.2, expansion=ee, dtype="float64"),
         ref.contrastive(x, y, 0.1, 1.2, False, n, pairs, pooling)),
        (tfdml.losses.ContrastiveLoss(neg_margin=1.5, squared=True, expansion=ee, dtype="float64"),
         ref.contrastive(x, y, 0.0, 1.5, True, n, pairs, pooling)),
    ]
    for loss, expected in cases:
        assert _value(loss, y, x) == pytest.approx(expected, abs=1e-6), loss.name


def test_multi_similarity_mining_is_active():
    """Same data as a reference check, but with epsilon large enough to keep all pairs."""
    x, y = _data("4_per_class", seed=4)
    for eps in (0.0, 0.1, 5.0):
        loss = tfdml.losses.MultiSimilarityLoss(epsilon=eps, dtype="float64")
        assert _value(loss, y, x) == pytest.approx(ref.multi_similarity(x, y, epsilon=eps), abs=1e-6)


# --------------------------------------------------------------- hand-worked
def test_hand_worked_batch_hard_triplet():
    # Points on the unit circle: a=(1,0), p=(0,1) same class; n=(-1,0) other class, n2=(0,-1) too.
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    y = np.array([0, 0, 1, 1])
    # Every anchor: farthest positive at distance √2; nearest negative at √2 (a to n2, p to n, ...)
    # => every hinge = √2 − √2 + 0.5 = 0.5, mean 0.5.
    loss = tfdml.losses.TripletLoss(margin=0.5, dtype="float64")
    assert _value(loss, y, x) == pytest.approx(0.5, abs=1e-12)


def test_hand_worked_contrastive():
    # Two unit vectors of one class at 90° (d = √2) and one far class member of another class at
    # d = 2 from the first and √2 from the second. pos term: mean over (0,1),(1,0) of [√2 − 0]_+ = √2.
    # neg term with neg_margin 1.5: pairs (0,2),(2,0): [1.5 − 2]_+ = 0 (dropped); (1,2),(2,1): 1.5 − √2.
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    y = np.array([7, 7, 3])
    loss = tfdml.losses.ContrastiveLoss(neg_margin=1.5, dtype="float64")
    assert _value(loss, y, x) == pytest.approx(np.sqrt(2) + 1.5 - np.sqrt(2), abs=1e-12)


def test_hand_worked_expansion_points():
    x = np.array([[3.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    y = np.array([1, 1, 2])
    points, labels, synthetic = tfdml.expand(x, y, n_points=2, normalize=False)
    # k = 1: (1·x0 + 2·x1)/3 = (1, 2); k = 2: (2·x0 + 1·x1)/3 = (2, 1).
    np.testing.assert_allclose(points.numpy()[3:], [[1.0, 2.0], [2.0, 1.0]])
    np.testing.assert_array_equal(labels.numpy(), [1, 1, 2, 1, 1])
    np.testing.assert_array_equal(synthetic.numpy(), [False, False, False, True, True])


# ------------------------------------------------------------ EE structure
@pytest.mark.parametrize("pairs", ["consecutive", "all"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_synthetic_points_formula_and_counts(pairs, n):
    x, y = _data("uneven", dim=3)
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


def test_n_points_zero_equals_no_expansion_exactly():
    x, y = _data("uneven")
    for name in ("triplet", "lifted", "npair", "multi_similarity", "contrastive"):
        plain = tfdml.losses.get(name)
        zero = tfdml.losses.get(name, expansion=tfdml.EmbeddingExpansion(n_points=0))
        xt = tf.constant(x, tf.float32)
        assert float(plain(y, xt)) == float(zero(y, xt)), name


def test_consecutive_pairing_follows_batch_order():
    """Documented: pairs are (1st, 2nd), (3rd, 4th) of each class in batch order, so reordering
    samples within a class changes which synthetic points exist (and the loss), while the
    pairs='all' expansion does not depend on the order."""
    x, y = _data("4_per_class", dim=3)
    perm = np.array([0, 2, 1, 3, 4, 5, 6, 7])  # swap 2nd and 3rd sample of the first class
    for pairs, should_change in (("consecutive", True), ("all", False)):
        loss = tfdml.losses.LiftedStructureLoss(expansion=_ee(2, pairs, "class"), dtype="float64")
        a, b = _value(loss, y, x), _value(loss, y[perm], x[perm])
        assert (abs(a - b) > 1e-9) == should_change
        assert b == pytest.approx(ref.lifted(x[perm], y[perm], 1.0, 2, pairs, "class"), abs=1e-6)


# ---------------------------------------------------- official HPHN + EE code
def test_hphn_ee_equals_official_semantics_values_and_gradients():
    rng = np.random.default_rng(7)
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    x = rng.normal(size=(8, 5))
    loss = tfdml.losses.TripletLoss(margin=0.5, mining="hard", expansion=tfdml.EmbeddingExpansion(2),
                                    dtype="float64")
    assert _value(loss, y, x) == pytest.approx(ref.official_hphn_ee(x, y, 0.5, 2), abs=1e-9)
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


# ---------------------------------------------------------- random miners
def _mined(mining_name, seed, x, y, margin=0.2):
    xn = ref.normalize(x)
    d = ref.positive_matrix(xn, "euclidean")
    t = mining.mine_triplets(tf.constant(d), tf.constant(d), tf.constant(y), mining_name, margin=margin,
                             seed=seed, embedding_dim=x.shape[1])
    return d, [np.asarray(v) for v in t]


def test_semihard_selects_from_window_or_hardest():
    x, y = _data("4_per_class", dim=3, seed=3)
    margin = 0.4
    for seed in range(5):
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
def test_random_per_anchor_miners_valid_and_loss_matches(mining_name):
    x, y = _data("uneven", seed=5)
    xn = ref.normalize(x)
    d = ref.positive_matrix(xn, "euclidean")
    for seed in range(3):
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
        assert _value(loss, y, x) == pytest.approx(expected, abs=1e-9)


def test_rho_replaces_triplets_with_same_class_pushes():
    x, y = _data("4_per_class", seed=6)
    d = ref.positive_matrix(ref.normalize(x), "euclidean")
    t = mining.mine_triplets(tf.constant(d), tf.constant(d), tf.constant(y), "hard")
    from tfdml.losses.base import make_seed_generator

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
    value = _value(always, y, x)
    assert 0.0 <= value <= 0.2


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("length", [1, 2, 7, 64])
def test_row_searchsorted_equals_numpy(side, length):
    rng = np.random.default_rng(length)
    rows = np.sort(rng.integers(0, 5, size=(3, length)).astype(np.float64), axis=1)  # many ties
    values = rng.integers(-1, 7, size=(3, 11)).astype(np.float64)
    expected = np.stack([np.searchsorted(r, v, side=side) for r, v in zip(rows, values)])
    got = mining.row_searchsorted(tf.constant(rows), tf.constant(values), side=side)
    np.testing.assert_array_equal(got.numpy(), expected)
    unknown = tf.function(lambda r, v: mining.row_searchsorted(r, v, side=side),
                          input_signature=[tf.TensorSpec([None, None], tf.float64)] * 2)
    np.testing.assert_array_equal(unknown(rows, values).numpy(), expected)
