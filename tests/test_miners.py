"""The parametric miners (`tfdml.losses.miners`): pair miners through `pair_mining=` of every
pair-based loss, triplet miners "batch_easy_hard" and "angular" through `mining=`.

Each deterministic miner's pairs / triplets equal pytorch-metric-learning's (PML 2.9) miner output
and an explicit-loop reference (tests/reference_miners.py); a loss with a miner equals PML's loss
with the same miner (value and gradient); uniform-histogram is checked in distribution."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

import reference_expansion as ref_ee
import reference_miners as ref
import tfdml
from conftest import loss_and_gradient, mirrored_strategy
from tfdml.losses import miners, mining
from tfdml.losses.pairs import pair_matrices

torch = pytest.importorskip("torch")
pml = pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning import losses as pml_losses  # noqa: E402
from pytorch_metric_learning import miners as pml_miners  # noqa: E402
from test_loss_pml import LAYOUTS, assert_matches  # noqa: E402

DIM = 5

PAIR_MINERS = {  # name: (tfdml spec, PML miner factory, reference)
    "hdc": ({"name": "hdc"}, lambda: pml_miners.HDCMiner(),
            lambda d, y: tuple(s for s, _ in ref.hdc(d, y, 0.5))),
    "hdc_0.3": ({"name": "hdc", "filter_percentage": 0.3}, lambda: pml_miners.HDCMiner(filter_percentage=0.3),
                lambda d, y: tuple(s for s, _ in ref.hdc(d, y, 0.3))),
    "pair_margin": ("pair_margin", lambda: pml_miners.PairMarginMiner(),
                    lambda d, y: ref.pair_margin(d, y, 0.2, 0.8)),
    "pair_margin_wide": ({"name": "pair_margin", "pos_margin": 0.6, "neg_margin": 1.3},
                         lambda: pml_miners.PairMarginMiner(pos_margin=0.6, neg_margin=1.3),
                         lambda d, y: ref.pair_margin(d, y, 0.6, 1.3)),
}
EASY_HARD = {  # (pos_strategy, neg_strategy, allowed_pos_range, allowed_neg_range)
    "easy_semihard": ("easy", "semihard", None, None),
    "hard_hard": ("hard", "hard", None, None),
    "semihard_easy": ("semihard", "easy", None, None),
    "semihard_hard": ("semihard", "hard", None, None),
    "easy_easy": ("easy", "easy", None, None),
    "hard_semihard_ranges": ("hard", "semihard", (0.2, 1.2), (0.3, 1.6)),
    "easy_hard_ranges": ("easy", "hard", (0.5, 1.5), (0.8, 1.4)),
    "all_hard": ("all", "hard", None, None),
    "easy_all": ("easy", "all", None, (0.5, 1.0)),
    "all_all": ("all", "all", None, None),
}
for _key, (_ps, _ns, _pr, _nr) in EASY_HARD.items():
    PAIR_MINERS["batch_easy_hard_" + _key] = (
        {"name": "batch_easy_hard", "pos_strategy": _ps, "neg_strategy": _ns, "allowed_pos_range": _pr,
         "allowed_neg_range": _nr},
        (lambda ps=_ps, ns=_ns, pr=_pr, nr=_nr: pml_miners.BatchEasyHardMiner(
            pos_strategy=ps, neg_strategy=ns, allowed_pos_range=pr, allowed_neg_range=nr)),
        (lambda d, y, ps=_ps, ns=_ns, pr=_pr, nr=_nr: ref.batch_easy_hard(d, y, ps, ns, pr, nr)))


def _x(labels, seed):
    return np.random.default_rng(seed).normal(size=(len(labels), DIM))


def _pml_pairs(miner, labels, x):
    a1, p, a2, n = miner(torch.tensor(x), torch.tensor(labels, dtype=torch.long))
    return set(zip(a1.tolist(), p.tolist())), set(zip(a2.tolist(), n.tolist()))


def _ours_pairs(spec, labels, x, expansion=None, pooling="class"):
    pos, neg = miners.mine_pairs(miners.get_miner(spec), tf.constant(labels), tf.constant(x), expansion, pooling)
    return {tuple(v) for v in np.argwhere(pos.numpy())}, {tuple(v) for v in np.argwhere(neg.numpy())}


def _same_up_to_ties(ours, theirs, d, kth):
    """Equal sets, except pairs tied with the k-th value (an ordered pair and its twin (j, i))."""
    if kth is None:
        assert ours == theirs
        return
    for pair in ours ^ theirs:
        assert abs(d[pair] - kth) <= 1e-12, (pair, d[pair], kth)
    assert len(ours) == len(theirs)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("name", sorted(PAIR_MINERS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pair_miners_equal_pml_and_the_loop_reference(name, layout, seed):
    spec, pml_miner, reference = PAIR_MINERS[name]
    labels = LAYOUTS[layout]
    x = _x(labels, seed)
    d = ref.euclidean(x)
    ours, theirs, expected = _ours_pairs(spec, labels, x), _pml_pairs(pml_miner(), labels, x), reference(d, labels)
    if name.startswith("hdc"):
        fraction = 0.3 if name == "hdc_0.3" else 0.5
        kths = [k for _, k in ref.hdc(d, labels, fraction)]
        for side in range(2):
            _same_up_to_ties(ours[side], theirs[side], d, kths[side])
            _same_up_to_ties(ours[side], expected[side], d, kths[side])
    else:
        assert ours == theirs == tuple(expected)


def _ours_triplets(spec, labels, x):
    matrices = pair_matrices(tfdml.distances.l2_normalize(tf.constant(x)), tf.constant(labels), "euclidean")
    matrices.source_embeddings = tf.constant(x)
    mined = mining.mined_distances(matrices, tf.constant(labels), mining.check_mining(spec))
    if mined.triplets is None:
        return {tuple(v) for v in np.argwhere(mined.valid.numpy())}
    t, valid = mined.triplets, mined.valid.numpy()
    return {(int(a), int(p), int(n)) for a, p, n, v in zip(t.anchor.numpy(), t.positive.numpy(),
                                                            t.negative.numpy(), valid) if v}


def _pml_triplets(miner, labels, x):
    out = miner(torch.tensor(x), torch.tensor(labels, dtype=torch.long))
    if len(out) == 4:
        out = pml.utils.loss_and_miner_utils.convert_to_triplets(out, torch.tensor(labels))
    return set(zip(*(v.tolist() for v in out)))


TRIPLET_MINERS = {  # PML's AngularMiner measures the raw embeddings: normalize=False
    "angular_pml": ({"name": "angular", "normalize": False}, lambda: pml_miners.AngularMiner(),
                    lambda x, y: ref.angular(x, y, 20, normalize=False)),
    "angular_pml_40": ({"name": "angular", "angle": 40, "normalize": False},
                       lambda: pml_miners.AngularMiner(angle=40), lambda x, y: ref.angular(x, y, 40, normalize=False)),
}
for _key, (_ps, _ns, _pr, _nr) in EASY_HARD.items():
    if _key == "all_all":
        continue  # every triplet: mining="all"
    TRIPLET_MINERS["batch_easy_hard_" + _key] = (
        PAIR_MINERS["batch_easy_hard_" + _key][0], PAIR_MINERS["batch_easy_hard_" + _key][1],
        (lambda x, y, ps=_ps, ns=_ns, pr=_pr, nr=_nr: ref.triplets_of_pairs(
            *ref.batch_easy_hard(ref.euclidean(x), y, ps, ns, pr, nr))))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("name", sorted(TRIPLET_MINERS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_triplet_miners_equal_pml_and_the_loop_reference(name, layout, seed):
    spec, pml_miner, reference = TRIPLET_MINERS[name]
    labels = LAYOUTS[layout]
    x = _x(labels, seed)
    assert _ours_triplets(spec, labels, x) == _pml_triplets(pml_miner(), labels, x) == reference(x, labels)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("angle", [20, 45])
def test_angular_default_measures_l2_normalised_embeddings(angle, layout):
    labels = LAYOUTS[layout]
    x = _x(labels, 5) * np.arange(1, len(labels) + 1)[:, None]  # different norms
    expected = ref.angular(x, labels, angle)
    assert _ours_triplets({"name": "angular", "angle": angle}, labels, x) == expected
    if len(labels) >= 8:  # the form matters
        assert expected != ref.angular(x, labels, angle, normalize=False)


def test_angular_miner_reads_any_euclidean_form_of_the_loss_distance():
    labels = LAYOUTS["uneven_with_singleton"]
    x = _x(labels, 3)
    y = tf.constant(labels)
    unit = tfdml.distances.l2_normalize(tf.constant(x))
    expected = ref.angular(x, labels, 25)
    for metric in ("euclidean", "squared_euclidean", "cosine_distance"):
        mined = mining.mined_distances(pair_matrices(unit, y, metric), y, {"name": "angular", "angle": 25})
        assert {tuple(v) for v in np.argwhere(mined.valid.numpy())} == expected
    with pytest.raises(ValueError, match="angular"):
        mining.mined_distances(pair_matrices(unit, y, "cosine"), y, "angular")


def test_batch_easy_hard_default_is_easy_positive_semihard():
    labels = LAYOUTS["uneven_with_singleton"]
    x = tf.constant(_x(labels, 4))
    default, epshn = (float(tfdml.losses.TripletLoss(mining=name, dtype="float64")(labels, x))
                      for name in ("batch_easy_hard", "easy_positive_semihard"))
    assert default == epshn


# ------------------------------------------------------------------ loss + miner equals PML's
def _pml_with_miner(loss, miner, labels, x):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(labels, dtype=torch.long)
    mined = miner(xt, y)
    if isinstance(loss, pml_losses.GenericPairLoss) and all(len(v) <= 1 for v in mined):
        pytest.skip("PML's pair losses return 0 when given at most one pair of each kind")
    value = loss(xt, y, mined)
    if not value.requires_grad:
        return float(value), np.zeros_like(x)
    (grad,) = torch.autograd.grad(value, xt, allow_unused=True)
    return float(value.detach()), np.zeros_like(x) if grad is None else grad.numpy()


def _tied_boundary(name, labels, x):
    """HDC's k-th pair tied with its twin (j, i): which one is kept is arbitrary (PML: torch.topk)."""
    if not name.startswith("hdc"):
        return False
    d = ref.euclidean(x)
    fraction = 0.3 if name == "hdc_0.3" else 0.5
    for pairs, farthest in ((ref.positive_pairs(labels), True), (ref.negative_pairs(labels), False)):
        k = math.ceil(fraction * len(pairs))
        values = sorted((d[p] for p in pairs), reverse=farthest)
        if 0 < k < len(values) and abs(values[k - 1] - values[k]) <= 1e-12:
            return True
    return False


LOSS_CASES = {
    "contrastive": (lambda spec: tfdml.losses.ContrastiveLoss(pair_mining=spec, dtype="float64"),
                    lambda: pml_losses.ContrastiveLoss()),
    "triplet": (lambda spec: tfdml.losses.TripletLoss(margin=0.2, mining="all", pair_mining=spec, dtype="float64"),
                lambda: pml_losses.TripletMarginLoss(margin=0.2)),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("name", sorted(PAIR_MINERS))
@pytest.mark.parametrize("loss", sorted(LOSS_CASES))
def test_loss_with_a_pair_miner_equals_pml(loss, name, layout):
    ours, theirs = LOSS_CASES[loss]
    spec, pml_miner, _ = PAIR_MINERS[name]
    labels = LAYOUTS[layout]
    x = _x(labels, 7)
    if loss == "triplet" and _tied_boundary(name, labels, x):
        pytest.skip("tie at HDC's k-th pair")
    assert_matches(loss_and_gradient(ours(spec), labels, x), _pml_with_miner(theirs(), pml_miner(), labels, x))


TRIPLET_LOSS_CASES = {
    "triplet": (lambda spec: tfdml.losses.TripletLoss(margin=0.2, mining=spec, average_over="active_triplets",
                                                      dtype="float64"),
                lambda: pml_losses.TripletMarginLoss(margin=0.2)),
    "contrastive": (lambda spec: tfdml.losses.ContrastiveLoss(mining=spec, dtype="float64"),
                    lambda: pml_losses.ContrastiveLoss()),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("name", sorted(TRIPLET_MINERS))
@pytest.mark.parametrize("loss", sorted(TRIPLET_LOSS_CASES))
def test_loss_with_a_triplet_miner_equals_pml(loss, name, layout):
    ours, theirs = TRIPLET_LOSS_CASES[loss]
    spec, pml_miner, _ = TRIPLET_MINERS[name]
    if loss == "contrastive" and name.startswith("batch_easy_hard") and "all" in name:
        pytest.skip("PML's contrastive loss takes this miner's pairs, not its triplets: see the pair_mining test")
    labels = LAYOUTS[layout]
    x = _x(labels, 8)
    assert_matches(loss_and_gradient(ours(spec), labels, x), _pml_with_miner(theirs(), pml_miner(), labels, x))


@pytest.mark.parametrize("spec", ["hdc", "pair_margin", {"name": "batch_easy_hard", "pos_strategy": "hard"}])
@pytest.mark.parametrize("name", ["multi_similarity", "circle", "supcon", "lifted", "ntxent", "margin", "snr"])
def test_every_pair_based_loss_runs_on_the_mined_pairs_only(name, spec):
    """A pair-based loss with a pair miner equals the loss on a batch where the dropped pairs do
    not exist: checked via a miner that keeps every pair (pair_margin with open margins)."""
    labels = LAYOUTS["uneven_with_singleton"]
    x = _x(labels, 9)
    extra = {"num_classes": 4} if name == "margin" else {}
    seeded = {"seed": 1} if name in ("margin", "snr") else {}
    keep_all = {"name": "pair_margin", "pos_margin": -1.0, "neg_margin": 10.0}
    plain = tfdml.losses.get(name, dtype="float64", **extra, **seeded)
    kept = tfdml.losses.get(name, dtype="float64", pair_mining=keep_all, **extra, **seeded)
    mined = tfdml.losses.get(name, dtype="float64", pair_mining=spec, **extra, **seeded)
    if name != "margin":  # margin: learnable β built on the first call
        assert float(kept(labels, x)) == pytest.approx(float(plain(labels, x)), rel=1e-12)
    value, grad = loss_and_gradient(mined, labels, x)
    assert np.isfinite(value) and np.isfinite(grad).all()


def test_contrastive_with_a_miner_equals_the_loop_formula_on_the_mined_pairs():
    labels = LAYOUTS["uneven_with_singleton"]
    x = _x(labels, 10)
    d = ref.euclidean(x)
    pos, neg = ref.pair_margin(d, labels, 0.3, 1.1)
    neg_terms = [max(1.0 - d[p], 0.0) for p in neg if 1.0 - d[p] > 0]
    expected = sum(d[p] for p in pos) / len(pos) + sum(neg_terms) / len(neg_terms)
    loss = tfdml.losses.ContrastiveLoss(pair_mining={"name": "pair_margin", "pos_margin": 0.3, "neg_margin": 1.1},
                                        dtype="float64")
    assert float(loss(labels, x)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("layout", ["2_per_class", "uneven_with_singleton"])
def test_triplet_with_miners_equals_the_loop_formula(layout):
    """Hinge [d_ap − d_an + m]_+ over the mined triplets: active-triplet mean for the triplets of HDC's
    pairs (mining="all"), mean over the per-anchor triplets for batch_easy_hard (its default average)."""
    labels = LAYOUTS[layout]
    x = _x(labels, 19)
    d = ref.euclidean(x)
    (pos, _), (neg, _) = ref.hdc(d, labels, 0.5)
    hinges = [max(d[a, p] - d[a, n] + 0.2, 0.0) for a, p, n in ref.triplets_of_pairs(pos, neg)]
    active = [h for h in hinges if h > 0]
    loss = tfdml.losses.TripletLoss(margin=0.2, mining="all", pair_mining="hdc", dtype="float64")
    if not _tied_boundary("hdc", labels, x):
        assert float(loss(labels, x)) == pytest.approx(sum(active) / len(active), rel=1e-12)
    triplets = ref.triplets_of_pairs(*ref.batch_easy_hard(d, labels, "hard", "semihard", None, (0.0, 1.5)))
    hinges = [max(d[a, p] - d[a, n] + 0.2, 0.0) for a, p, n in triplets]
    spec = {"name": "batch_easy_hard", "pos_strategy": "hard", "allowed_neg_range": [0.0, 1.5]}
    loss = tfdml.losses.TripletLoss(margin=0.2, mining=spec, dtype="float64")
    assert float(loss(labels, x)) == pytest.approx(sum(hinges) / len(hinges), rel=1e-12)


# ------------------------------------------------------------------ uniform histogram
def test_uniform_histogram_bins_equal_the_reference_and_pml():
    labels = LAYOUTS["uneven_with_singleton"]
    x = _x(labels, 11)
    d = ref.euclidean(x)
    miner = miners.UniformHistogramMiner(num_bins=7)
    unit = tfdml.distances.l2_normalize(tf.constant(x))
    m = pair_matrices(unit, tf.constant(labels), "euclidean")
    for pairs, mask in ((ref.positive_pairs(labels), m.positive_mask), (ref.negative_pairs(labels), m.negative_mask)):
        index, edges = miner.bins(m.positive, mask)
        values = [d[p] for p in pairs]
        expected_bins, expected_edges = ref.histogram_bins(values, 7)
        assert [int(index.numpy()[p]) for p in pairs] == expected_bins
        np.testing.assert_allclose(edges.numpy(), expected_edges, rtol=1e-12)
        pml_edges = pml_miners.UniformHistogramMiner(num_bins=7).get_bins(torch.tensor(values))
        np.testing.assert_allclose(edges.numpy(), pml_edges.numpy(), rtol=1e-12)
        assert int(tf.reduce_sum(tf.cast(index == 7, tf.int32))) == int(tf.reduce_sum(
            tf.cast(tf.logical_not(mask), tf.int32)))


def test_uniform_histogram_draws_are_uniform_within_bins():
    """P(pair kept) = 1 − (1 − 1/n_b)^k for a pair in a bin of n_b pairs (k draws with replacement),
    over 400 seeded calls; at most k pairs per bin, at least one in every non-empty bin; PML's
    miner, run as often, keeps as many distinct pairs per bin on average."""
    labels = LAYOUTS["uneven_with_singleton"]
    x = _x(labels, 12)
    d = ref.euclidean(x)
    num_bins, per_bin, runs = 4, 3, 400
    miner = miners.UniformHistogramMiner(num_bins=num_bins, pos_per_bin=per_bin, neg_per_bin=per_bin, seed=5)
    mine = tf.function(lambda y, e: miners.mine_pairs(miner, y, e))
    negatives = ref.negative_pairs(labels)
    probability, bins, counts = ref.histogram_selection_probability([d[p] for p in negatives], num_bins, per_bin)
    hits = np.zeros(len(negatives))
    for _ in range(runs):
        pos, neg = (v.numpy() for v in mine(tf.constant(labels), tf.constant(x)))
        kept = np.array([neg[p] for p in negatives])
        hits += kept
        per_bin_kept = [sum(kept[i] for i in range(len(negatives)) if bins[i] == b) for b in range(num_bins)]
        assert all(1 <= kept_b <= per_bin for kept_b, n in zip(per_bin_kept, counts) if n) and \
            all(kept_b == 0 for kept_b, n in zip(per_bin_kept, counts) if n == 0)
        assert {tuple(v) for v in np.argwhere(pos)} <= set(ref.positive_pairs(labels))
    frequency = hits / runs
    sigma = np.sqrt(np.array(probability) * (1 - np.array(probability)) / runs)
    assert np.all(np.abs(frequency - probability) <= 4.5 * sigma + 1e-9), (frequency, probability)
    # PML: the same expected number of distinct pairs per bin
    theirs = pml_miners.UniformHistogramMiner(num_bins=num_bins, pos_per_bin=per_bin, neg_per_bin=per_bin)
    torch.manual_seed(0)
    pml_hits = np.zeros(len(negatives))
    for _ in range(runs):
        kept = _pml_pairs(theirs, labels, x)[1]
        pml_hits += [p in kept for p in negatives]
    for b in range(num_bins):
        members = [i for i in range(len(negatives)) if bins[i] == b]
        if members:
            ours_mean, pml_mean = hits[members].sum() / runs, pml_hits[members].sum() / runs
            expected = sum(probability[i] for i in members)
            assert abs(ours_mean - expected) < 0.25 and abs(pml_mean - expected) < 0.25, (b, ours_mean, pml_mean)


def test_uniform_histogram_is_seedable_and_keeps_every_pair_of_a_small_bin():
    labels = LAYOUTS["2_per_class"]
    x = _x(labels, 13)
    spec = {"name": "uniform_histogram", "num_bins": 3, "pos_per_bin": 200, "neg_per_bin": 0, "seed": 4}
    pos, neg = _ours_pairs(spec, labels, x)
    assert pos == set(ref.positive_pairs(labels))  # 200 draws in bins of ≤ 8 pairs: all kept (p > 1 − 1e-11)
    assert neg == set()
    a = tfdml.losses.ContrastiveLoss(pair_mining={**spec, "neg_per_bin": 2, "pos_per_bin": 1})
    b = tfdml.losses.ContrastiveLoss(pair_mining={**spec, "neg_per_bin": 2, "pos_per_bin": 1})
    assert float(a(labels, x)) == float(b(labels, x))


# ------------------------------------------------------------------ Embedding Expansion
@pytest.mark.parametrize("pooling", ["class", "anchor"])
@pytest.mark.parametrize("normalize", [True, False])
def test_pair_miners_read_ee_pooled_negative_distances(pooling, normalize):
    labels = LAYOUTS["uneven_with_singleton"]
    x = _x(labels, 14)
    expansion = tfdml.EmbeddingExpansion(2, pooling=pooling, normalize=normalize)
    unit = ref.unit(x)
    pooled = ref_ee.negative_matrix(unit, labels, "euclidean", 2, normalize, "consecutive", pooling)
    original = ref_ee.positive_matrix(unit, "euclidean")
    ours = _ours_pairs({"name": "pair_margin", "pos_margin": 0.5, "neg_margin": 0.9}, labels, x, expansion)
    assert ours == ref.pair_margin(original, labels, 0.5, 0.9, neg_d=pooled)
    hdc_ours = _ours_pairs("hdc", labels, x, expansion)
    negatives = ref.negative_pairs(labels)
    k = math.ceil(0.5 * len(negatives))
    expected = set(sorted(negatives, key=lambda p: pooled[p])[:k])
    kth = sorted(pooled[p] for p in negatives)[k - 1]
    _same_up_to_ties(hdc_ours[1], expected, pooled, kth)
    # the loss reads the same pooled pairs: contrastive with EE, on the mined pairs
    loss = tfdml.losses.ContrastiveLoss(expansion=expansion, pair_mining={"name": "pair_margin", "pos_margin": 0.5,
                                                                          "neg_margin": 0.9}, dtype="float64")
    pos, neg = ours
    neg_terms = [1.0 - pooled[p] for p in neg if 1.0 - pooled[p] > 0]
    expected_value = (sum(original[p] for p in pos) / len(pos) if pos else 0.0) + (
        sum(neg_terms) / len(neg_terms) if neg_terms else 0.0)
    assert float(loss(labels, x)) == pytest.approx(expected_value, rel=1e-10)


# ------------------------------------------------------------------ modes, faults, precision
MODE_SPECS = {
    "hdc": ("pair", "hdc"),
    "pair_margin": ("pair", "pair_margin"),
    "uniform_histogram": ("pair", {"name": "uniform_histogram", "num_bins": 5, "seed": 3}),
    "batch_easy_hard_pairs": ("pair", {"name": "batch_easy_hard", "pos_strategy": "all", "neg_strategy": "hard"}),
    "batch_easy_hard": ("triplet", {"name": "batch_easy_hard", "pos_strategy": "hard", "neg_strategy": "semihard"}),
    "batch_easy_hard_all_negatives": ("triplet", {"name": "batch_easy_hard", "neg_strategy": "all"}),
    "angular": ("triplet", "angular"),
}


def _mode_losses(kind, spec, **kwargs):
    if kind == "pair":
        return [tfdml.losses.ContrastiveLoss(pair_mining=spec, **kwargs),
                tfdml.losses.TripletLoss(mining="all", pair_mining=spec, **kwargs),
                tfdml.losses.MultiSimilarityLoss(pair_mining=spec, **kwargs)]
    return [tfdml.losses.TripletLoss(mining=spec, **kwargs), tfdml.losses.ContrastiveLoss(mining=spec, **kwargs)]


@pytest.mark.parametrize("expansion", [None, 2])
@pytest.mark.parametrize("name", sorted(MODE_SPECS))
def test_eager_graph_and_xla_agree(name, expansion):
    kind, spec = MODE_SPECS[name]
    labels = LAYOUTS["uneven_with_singleton"]
    x = _x(labels, 15).astype(np.float32)
    ee = None if expansion is None else tfdml.EmbeddingExpansion(expansion)
    for index in range(len(_mode_losses(kind, spec))):
        values = []
        for mode in ("eager", "graph", "xla"):
            loss = _mode_losses(kind, spec, expansion=ee)[index]  # fresh: the same seeded draws
            call = loss if mode == "eager" else tf.function(lambda a, b: loss(a, b), jit_compile=mode == "xla")
            values.append(float(call(tf.constant(labels), tf.constant(x))))
        assert values[1] == pytest.approx(values[0], rel=1e-5, abs=1e-6)
        if name == "uniform_histogram":
            assert np.isfinite(values[2])  # XLA's random bits may differ
        else:
            assert values[2] == pytest.approx(values[0], rel=1e-4, abs=1e-5)


def test_dynamic_batch_size_under_xla():
    loss = tfdml.losses.ContrastiveLoss(pair_mining="hdc")
    spec = [tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, DIM], tf.float32)]
    call = tf.function(lambda a, b: loss(a, b), input_signature=spec, jit_compile=True)
    labels = LAYOUTS["2_per_class"]
    x = _x(labels, 16).astype(np.float32)
    assert float(call(labels, x)) == pytest.approx(float(loss(labels, x)), rel=1e-4)
    assert float(call(np.zeros([0], np.int32), np.zeros([0, DIM], np.float32))) == 0.0


@pytest.mark.parametrize("spec", ["hdc", {"name": "batch_easy_hard", "pos_strategy": "hard", "neg_strategy": "hard"}])
def test_pair_mining_sees_the_global_batch_under_a_mirrored_strategy(spec):
    labels = LAYOUTS["2_per_class"].astype(np.int32)
    x = _x(labels, 18).astype(np.float32)
    expected = float(tfdml.losses.TripletLoss(mining="all", pair_mining=spec)(labels, x))
    strategy = mirrored_strategy()
    with strategy.scope():
        loss = tfdml.losses.TripletLoss(mining="all", pair_mining=spec)
    batch = next(iter(strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((labels, x)).batch(len(labels)))))
    per_replica = strategy.run(tf.function(lambda y, e: loss(y, e)), args=batch)
    value = float(strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None))
    assert value == pytest.approx(expected, rel=1e-5)


DEGENERATE = {
    "duplicates": (np.array([0, 0, 1, 1, 2]), np.repeat(np.random.default_rng(1).normal(size=(1, 6)), 5, 0)),
    "zero_vectors": (np.array([0, 0, 1, 1]), np.zeros((4, 6))),
    "one_class": (np.array([2, 2, 2, 2]), np.random.default_rng(2).normal(size=(4, 6))),
    "singletons": (np.array([0, 1, 2, 3]), np.random.default_rng(3).normal(size=(4, 6))),
    "tiny": (np.array([0, 0, 1, 1]), 1e-35 * np.random.default_rng(4).normal(size=(4, 6))),
    "huge": (np.array([0, 0, 1, 1]), 1e35 * np.random.default_rng(5).normal(size=(4, 6))),
}


@pytest.mark.parametrize("case", sorted(DEGENERATE))
@pytest.mark.parametrize("name", sorted(MODE_SPECS))
def test_degenerate_batches_and_magnitudes_give_finite_values_and_gradients(name, case):
    kind, spec = MODE_SPECS[name]
    labels, x = DEGENERATE[case]
    for expansion in (None, tfdml.EmbeddingExpansion(2)):
        for loss in _mode_losses(kind, spec, expansion=expansion):
            xt = tf.constant(x, tf.float32)
            with tf.GradientTape() as tape:
                tape.watch(xt)
                value = loss(labels, xt)
            grad = tape.gradient(value, xt)
            assert np.isfinite(float(value)), (type(loss).__name__, expansion)
            assert grad is None or np.isfinite(grad.numpy()).all()
            if case in ("one_class", "singletons") and isinstance(loss, tfdml.losses.TripletLoss):  # no triplet
                assert float(value) == 0.0 and (grad is None or np.all(grad.numpy() == 0.0))


@pytest.mark.parametrize("name", sorted(MODE_SPECS))
def test_nan_in_nan_out_and_half_precision(name):
    kind, spec = MODE_SPECS[name]
    labels = LAYOUTS["2_per_class"]
    x = _x(labels, 17).astype(np.float32)
    bad = x.copy()
    bad[2, 1] = np.nan
    for loss in _mode_losses(kind, spec):
        assert np.isnan(float(loss(labels, bad)))
        value = loss(labels, tf.constant(x, tf.float16))
        assert value.dtype == tf.float32 and np.isfinite(float(value))


# ------------------------------------------------------------------ serialisation and errors
def test_configs_round_trip_and_name_miners():
    loss = tfdml.losses.ContrastiveLoss(pair_mining=miners.PairMarginMiner(0.3, 0.7),
                                        mining={"name": "angular", "angle": 30})
    config = loss.get_config()
    assert config["pair_mining"] == {"name": "pair_margin", "pos_margin": 0.3, "neg_margin": 0.7}
    assert config["mining"] == {"name": "angular", "angle": 30.0, "normalize": True}
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert restored.get_config() == config
    assert "pair_mining" not in tfdml.losses.ContrastiveLoss().get_config()
    text = """
    loss: {name: triplet, mining: all, pair_mining: {name: batch_easy_hard, pos_strategy: hard,
           neg_strategy: easy, allowed_neg_range: [0.1, 1.5]}}
    """
    params = yaml.safe_load(text)["loss"]
    built = tfdml.losses.get(params.pop("name"), **params)
    assert built.pair_mining.allowed_neg_range == (0.1, 1.5)
    assert built.get_config()["pair_mining"]["allowed_neg_range"] == [0.1, 1.5]
    triplet = tfdml.losses.TripletLoss(mining=miners.BatchEasyHardMiner("hard", "hard"))
    assert triplet.get_config()["mining"]["pos_strategy"] == "hard"


def test_keras_file_round_trip(tmp_path):
    loss = tfdml.losses.TripletLoss(mining="all", pair_mining={"name": "uniform_histogram", "num_bins": 8,
                                                               "seed": 2})
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile(optimizer="sgd", loss=loss)
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.loss.get_config() == loss.get_config()
    assert isinstance(restored.loss.pair_mining, miners.UniformHistogramMiner)


def test_bad_miner_arguments_are_named():
    with pytest.raises(ValueError, match="pair_mining='nope'"):
        tfdml.losses.ContrastiveLoss(pair_mining="nope")
    with pytest.raises(ValueError, match="filter_percentage"):
        tfdml.losses.ContrastiveLoss(pair_mining={"name": "hdc", "filter_percentage": 1.5})
    with pytest.raises(ValueError, match="num_bins"):
        tfdml.losses.ContrastiveLoss(pair_mining={"name": "uniform_histogram", "num_bins": 0})
    with pytest.raises(ValueError, match="nope"):
        tfdml.losses.ContrastiveLoss(pair_mining={"name": "pair_margin", "nope": 1})
    with pytest.raises(ValueError, match="pos_strategy"):
        miners.BatchEasyHardMiner(pos_strategy="medium")
    with pytest.raises(ValueError, match="semihard"):
        miners.BatchEasyHardMiner(pos_strategy="semihard", neg_strategy="semihard")
    with pytest.raises(ValueError, match="semihard"):
        miners.BatchEasyHardMiner(pos_strategy="all", neg_strategy="semihard")
    with pytest.raises(ValueError, match="allowed_neg_range"):
        miners.BatchEasyHardMiner(allowed_neg_range=[1.0])
    with pytest.raises(ValueError, match="angle"):
        tfdml.losses.TripletLoss(mining={"name": "angular", "angle": -1})
    with pytest.raises(ValueError, match="not a pair miner"):
        tfdml.losses.ContrastiveLoss(pair_mining="angular")
    with pytest.raises(ValueError, match="not a triplet miner"):
        tfdml.losses.TripletLoss(mining="hdc")
    with pytest.raises(ValueError, match="mining='all'"):
        tfdml.losses.TripletLoss(mining={"name": "batch_easy_hard", "pos_strategy": "all", "neg_strategy": "all"})
    with pytest.raises(ValueError, match="rho"):
        tfdml.losses.TripletLoss(mining="angular", rho=0.1)
    with pytest.raises(ValueError, match="mining"):
        tfdml.losses.MarginLoss(mining="angular")
    with pytest.raises(TypeError, match="pair_mining"):
        tfdml.losses.CosFaceLoss(4, pair_mining="hdc")
    with pytest.raises(ValueError, match="pair_mining"):
        tfdml.losses.get("proxy_anchor", num_classes=4, pair_mining="hdc")
    with pytest.raises(ValueError, match="pair_mining"):
        tfdml.losses.CrossBatchMemory(tfdml.losses.ContrastiveLoss(pair_mining="hdc"), memory_size=8)
