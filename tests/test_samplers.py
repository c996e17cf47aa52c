"""Roth et al.'s batch samplers: exact SPC-R and the embedded GC, DDM and FRD samplers,
checked against the explicit-loop references in `sampler_reference.py`."""
import os

import numpy as np
import pytest
import scipy.linalg

import sampler_reference as ref
from tfdml.data import EmbeddedSampler, batch_indices
from tfdml.data.embedded_samplers import ddm_costs, frd_costs, greedy_coreset, psd_sqrt, trace_sqrt_product
from tfdml.data.samplers import ClassMembers, index_batch_source
from tfdml.training import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = np.repeat(np.arange(10), 6)  # a small fixed split: 10 classes × 6 images


class FixedBank:
    """Stands in for `tfdml.data.MemoryBank` in the numpy-only tests."""

    def __init__(self, values):
        self.values = np.asarray(values, np.float32)
        self.num_items = len(self.values)

    def snapshot(self):
        return self.values.copy()


def _bank(dim, seed=0):
    return FixedBank(np.random.default_rng(seed).normal(size=(len(LABELS), dim)))


# ------------------------------------------------------------------------------------------------ SPC-R
@pytest.mark.parametrize("sizes,batch_size", [([2] * 40, 2), ([1] * 30 + [2], 8), ([1, 1, 3, 1, 7, 2], 5)])
def test_spc_r_batches_always_hold_a_positive_pair(sizes, batch_size):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    gen = batch_indices(labels, "spc_r", batch_size, seed=4)
    for _ in range(300):
        batch = next(gen)
        assert batch.shape == (batch_size,) and batch.dtype == np.int32
        classes = labels[batch]
        positive = [(i, j) for i in range(batch_size) for j in range(i + 1, batch_size)
                    if classes[i] == classes[j] and batch[i] != batch[j]]
        assert positive, (batch, classes)
        assert np.all(np.diff(classes) >= 0)  # grouped by class


def test_spc_r_draws_classes_uniformly_unlike_full_random():
    labels = np.repeat(np.arange(3), [2, 3, 50])
    spc_r = np.concatenate([labels[b] for b, _ in zip(batch_indices(labels, "spc_r", 4, seed=1), range(3000))])
    full = np.concatenate([labels[b] for b, _ in zip(batch_indices(labels, "full_random", 4, seed=1), range(3000))])
    # every class has ≥ 2 images, so each of the B draws is a uniform class: 1/3 each
    np.testing.assert_allclose(np.bincount(spc_r) / len(spc_r), [1 / 3] * 3, atol=0.02)
    assert np.bincount(full)[2] / len(full) == pytest.approx(50 / 55, abs=0.02)  # proportional to size


def test_spc_r_rejects_impossible_settings():
    with pytest.raises(ValueError, match="two or more images"):
        index_batch_source(np.arange(5), "spc_r", 4)
    with pytest.raises(ValueError, match="batch_size >= 2"):
        index_batch_source(LABELS, "spc_r", 1)
    assert load_config(None, ["sampler.name=spc_r", "sampler.batch_size=30"])["sampler"]["name"] == "spc_r"


def test_class_members_draw_is_vectorised_per_class_sampling():
    labels = np.array([5, 5, 5, 5, 9, 7, 7, 7])  # class numbers: 5 → 0, 7 → 1, 9 → 2
    members, rng = ClassMembers(labels), np.random.default_rng(0)
    seen = np.zeros(len(labels))
    for _ in range(400):
        out = members.draw([0, 1, 2, 0], [3, 2, 1, 1], rng)
        assert len(set(out[:3])) == 3 and set(out[:3]) <= {0, 1, 2, 3}  # without replacement
        assert len(set(out[3:5])) == 2 and set(out[3:5]) <= {5, 6, 7} and out[5] == 4
        short = members.draw([2, 1], [3, 5], rng)  # fewer images than asked: with replacement
        assert np.all(short[:3] == 4) and set(short[3:]) <= {5, 6, 7}
        others = members.draw([0, 1, 2], 2, rng, exclude=[1, 7, 4])
        assert 1 not in others[:2] and len(set(others[:2])) == 2 and 7 not in others[2:4]
        assert np.all(others[4:] == 4)  # a one-image class: the image itself
        seen[out[:3]] += 1
    np.testing.assert_allclose(seen[:4] / seen[:4].sum(), 0.25, atol=0.03)  # uniform within the class


# ------------------------------------------------------------------------------------------------ GC
def test_greedy_coreset_matches_the_explicit_loop_reference():
    points = np.random.default_rng(1).normal(size=(25, 4))
    for first in (0, 7, 24):
        np.testing.assert_array_equal(greedy_coreset(points, 9, first), ref.greedy_coreset(points, 9, first))
    # ties and duplicate points: the lowest position wins, no centre is chosen twice
    duplicates = np.zeros((5, 2))
    assert list(greedy_coreset(duplicates, 5, 3)) == ref.greedy_coreset(duplicates, 5, 3) == [3, 0, 1, 2, 4]


def test_gc_batch_is_the_reference_greedy_sequence_completed_by_class():
    bank, members = _bank(4), ClassMembers(LABELS)
    sampler = EmbeddedSampler("gc", bank, pool_size=30)
    for seed in range(3):
        batch, info = sampler.sample(bank.values, members, 12, 2, np.random.default_rng(seed), details=True)
        pool, centres = info["pool"], info["centres"]
        assert len(np.unique(pool)) == 30  # drawn without replacement
        expected = ref.greedy_coreset(bank.values.astype(np.float64)[pool], 6, int(centres[0]))
        np.testing.assert_array_equal(centres, expected)
        np.testing.assert_array_equal(batch[::2], pool[centres])
        np.testing.assert_array_equal(LABELS[batch[1::2]], LABELS[batch[::2]])
        assert np.all(batch[1::2] != batch[::2])  # the completion is another image of the class


def test_gc_spreads_over_well_separated_clusters():
    """A broken coreset (e.g. one indexing a different pool) is no better than random."""
    rng = np.random.default_rng(0)
    clusters, per_cluster = 40, 25
    centres = rng.normal(size=(clusters, 16)) * 100.0
    labels = np.repeat(np.arange(clusters), per_cluster)  # one class per cluster
    bank = FixedBank(centres[labels] + rng.normal(size=(len(labels), 16)))
    members = ClassMembers(labels)
    sampler = EmbeddedSampler("gc", bank, pool_size=1000)
    gc, random = [], []
    for seed in range(20):
        batch = sampler.sample(bank.values, members, 40, 2, np.random.default_rng(seed))
        gc.append(len(np.unique(labels[batch])))
        random.append(len(np.unique(labels[rng.choice(len(labels), 20, replace=False)])))
    assert min(gc) == 20  # 20 centres in 20 different clusters, every time
    assert np.mean(random) < 18.0  # random: ≈ 40·(1 − (39/40)^20) ≈ 15.9 distinct clusters


# ------------------------------------------------------------------------------------------------ DDM / FRD
def _check_candidates(info, members, batch_size, samples_per_class, pool_size):
    pool, candidates = info["pool"], info["candidates"]
    assert len(pool) == pool_size
    pool_classes = LABELS[pool]
    for candidate in candidates:
        assert len(np.unique(candidate)) == batch_size  # distinct pool positions
        classes = pool_classes[candidate].reshape(-1, samples_per_class)
        assert np.all(classes == classes[:, :1]) and len(np.unique(classes[:, 0])) == batch_size // samples_per_class


@pytest.mark.parametrize("name,cost", [("ddm", "paper"), ("ddm", "reference"), ("frd", "paper")])
def test_ddm_and_frd_choose_the_reference_candidate_with_its_cost(name, cost):
    bank, members = _bank(3, seed=2), ClassMembers(LABELS)
    sampler = EmbeddedSampler(name, bank, pool_size=24, candidates=5, cost=cost)
    for seed in range(3):
        batch, info = sampler.sample(bank.values, members, 8, 2, np.random.default_rng(seed), details=True)
        _check_candidates(info, members, 8, 2, 24)
        points = bank.values.astype(np.float64)[info["pool"]]
        if name == "ddm":
            expected = [ref.ddm_cost(points, c, cost) for c in info["candidates"]]
        else:
            expected = [ref.frd_cost(points, c) for c in info["candidates"]]
        # DDM's pool distances are float32 (the bank's precision): same bins, costs to ~1e-7
        np.testing.assert_allclose(info["costs"], expected, rtol=1e-6 if name == "ddm" else 1e-9, atol=1e-12)
        best, second = np.sort(expected)[:2]
        assert second - best > 1e-4 * abs(best)  # a clear winner: the comparison below is meaningful
        np.testing.assert_array_equal(batch, info["pool"][info["candidates"][int(np.argmin(expected))]])


def test_ddm_copies_of_one_image_are_at_distance_zero():
    rng = np.random.default_rng(6)
    points = rng.normal(size=(12, 64)).astype(np.float32).astype(np.float64) + 3.0  # far from the origin
    points[7] = points[2]  # image 2 drawn twice (a class with fewer images than the pool asks for)
    candidates = np.array([[2, 7, 0, 1], [3, 4, 5, 6], [2, 8, 9, 10]])
    ids = np.array([0, 1, 2, 3, 4, 5, 6, 2, 8, 9, 10, 11])
    for cost in ("paper", "reference"):
        expected = [ref.ddm_cost(points, c, cost) for c in candidates]
        np.testing.assert_allclose(ddm_costs(points, candidates, cost, pool_ids=ids), expected, rtol=1e-6)


def test_ddm_hand_computed_case():
    # 1-D points 0, 1, 3: pool distances {1, 2, 3} over [1, 3]; candidate {0, 1}: {1}.
    points = np.array([[0.0], [1.0], [3.0]])
    # 2 bins of width 1: h* = (1/3, 2/3) (3 falls in the closed last bin), h_B = (1, 0): W₁ = 1·|1 − 1/3| + 0.
    assert ddm_costs(points, [[0, 1]], bins=2)[0] == pytest.approx(2 / 3)
    # reference: |0.5 − 4/3| + |0.5 − std(0,1,3)| + 150·W₁
    expected = abs(0.5 - 4 / 3) + abs(0.5 - np.std([0.0, 1.0, 3.0])) + 150 * 2 / 3
    assert ddm_costs(points, [[0, 1]], cost="reference", bins=2)[0] == pytest.approx(expected)
    assert ddm_costs(np.zeros((4, 2)), [[0, 1], [2, 3]]).tolist() == [0.0, 0.0]  # all distances equal


def test_frd_trace_term_matches_scipy_sqrtm_and_singular_values():
    rng = np.random.default_rng(3)
    for dim in (2, 5, 9):
        a, y = rng.normal(size=(2, 3 * dim, dim))
        cov_a, cov_b = a.T @ a / len(a), y.T @ y + 1e-3 * np.eye(dim)  # full rank
        np.testing.assert_allclose(psd_sqrt(cov_a), scipy.linalg.sqrtm(cov_a).real, rtol=1e-10, atol=1e-12)
        expected = np.trace(scipy.linalg.sqrtm(cov_b @ cov_a)).real
        assert trace_sqrt_product(psd_sqrt(cov_a), cov_a, y, 1e-3) == pytest.approx(expected, rel=1e-10)
    # rank-deficient Σ_B = YᵀY (b < D): Tr((Σ_B Σ*)^{1/2}) = nuclear norm of Σ*^{1/2} Yᵀ
    y = rng.normal(size=(3, 12))
    pool = rng.normal(size=(40, 12))
    cov = pool.T @ pool / 40
    nuclear = np.linalg.svd(psd_sqrt(cov) @ y.T, compute_uv=False).sum()
    # the 9 zero eigenvalues come out as ±1e-15 round-off; their clipped square roots add ~1e-7
    assert trace_sqrt_product(psd_sqrt(cov), cov, y) == pytest.approx(nuclear, rel=1e-6)


def test_frd_cost_with_fewer_samples_than_dimensions_is_finite_and_minimal_for_the_pool_itself():
    pool = np.random.default_rng(4).normal(size=(64, 32))
    costs = frd_costs(pool, [np.arange(8), np.arange(8, 16)])
    assert np.all(np.isfinite(costs)) and np.all(costs > 1.0)
    assert frd_costs(pool, [np.arange(64)])[0] == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------------------------------------ all
@pytest.mark.parametrize("name", ["gc", "ddm", "frd"])
def test_embedded_samplers_are_seeded_and_reproducible(name):
    bank = _bank(4)
    sampler = EmbeddedSampler(name, bank, pool_size=24, candidates=4)
    first = [b for b, _ in zip(sampler.batches(LABELS, 8, 2, seed=3), range(5))]
    again = [b for b, _ in zip(sampler.batches(LABELS, 8, 2, seed=3), range(5))]
    other = [b for b, _ in zip(sampler.batches(LABELS, 8, 2, seed=4), range(5))]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    for batch in first:
        assert batch.dtype == np.int32 and batch.shape == (8,)
        assert np.all(LABELS[batch].reshape(4, 2) == LABELS[batch].reshape(4, 2)[:, :1])


def test_embedded_samplers_reject_impossible_settings_naming_the_argument():
    bank = _bank(4)
    cases = [
        (dict(name="gc"), dict(batch_size=9, samples_per_class=2), "batch_size.*divisible by samples_per_class"),
        (dict(name="gc", pool_size=8), dict(batch_size=12, samples_per_class=2), "pool_size.*>= batch_size"),
        (dict(name="gc", pool_size=61), dict(batch_size=12, samples_per_class=2), "pool_size.*60 images"),
        (dict(name="ddm", pool_size=25), dict(batch_size=10, samples_per_class=2), "pool_size.*divisible"),
        (dict(name="frd"), dict(batch_size=24, samples_per_class=2), "12 classes per batch.*only 10 classes"),
    ]
    for kwargs, arguments, message in cases:
        with pytest.raises(ValueError, match=message):
            EmbeddedSampler(bank=bank, **{"pool_size": 24, **kwargs}).check(LABELS, **arguments)
    with pytest.raises(ValueError, match="61 rows but the split has 60"):
        EmbeddedSampler("gc", FixedBank(np.zeros((61, 2))), pool_size=24).check(LABELS, 8, 2)
    with pytest.raises(ValueError, match="candidates"):
        EmbeddedSampler("ddm", bank, candidates=0)
    with pytest.raises(ValueError, match="cost"):
        EmbeddedSampler("ddm", bank, cost="moments")
    with pytest.raises(ValueError, match="name='dm'"):
        EmbeddedSampler("dm", bank)
    with pytest.raises(ValueError, match="EmbeddedSampler"):
        index_batch_source(LABELS, "gc", 8, 2)


def test_embedded_sampler_config_keys_are_validated():
    config = load_config(None, ["sampler.name=ddm", "sampler.pool_size=64", "sampler.candidates=3",
                                "sampler.ddm_cost=reference"])
    assert config["sampler"]["pool_size"] == 64 and config["sampler"]["ddm_cost"] == "reference"
    for overrides, key in [(["sampler.name=gc", "sampler.pool_size=20"], "'sampler.pool_size'"),
                           (["sampler.name=ddm", "sampler.pool_size=1025"], "'sampler.pool_size'"),
                           (["sampler.name=frd", "sampler.candidates=0"], "'sampler.candidates'"),
                           (["sampler.name=greedy"], "'sampler.name'"),
                           (["sampler.ddm_cost=fid"], "'sampler.ddm_cost'")]:
        with pytest.raises(ValueError, match=key):
            load_config(None, overrides)


ROTH_SAMPLERS = {"spc2": ("class_random", 2), "spc4": ("class_random", 4), "spc8": ("class_random", 8),
                 "spc_r": ("spc_r", 2), "gc": ("gc", 2), "ddm": ("ddm", 2), "frd": ("frd", 2)}


@pytest.mark.parametrize("key", sorted(ROTH_SAMPLERS))
def test_roth_sampler_configs_reproduce_the_table_7_to_9_setting(key):
    from tfdml.training.runner import make_sampler

    config = load_config(os.path.join(ROOT, "configs", f"roth_sampler_{key}_cub200.yaml"))
    model, sampler = config["model"], config["sampler"]
    assert (model["backbone"], model["embedding_dim"], model["freeze_batchnorm"]) == ("resnet50", 128, "statistics")
    assert config["loss"]["name"] == "margin" and config["loss"]["params"]["mining"] == "distance"
    assert config["dataset"]["name"] == "cub200" and sampler["batch_size"] == 112
    assert (sampler["name"], sampler["samples_per_class"]) == ROTH_SAMPLERS[key]
    assert (sampler["pool_size"], sampler["candidates"]) == (1024, 10)
    cub_labels = np.repeat(np.arange(100), 59)[:5864]  # CUB's training split: 5,864 images of 100 classes
    built = make_sampler(config, FixedBank(np.zeros((len(cub_labels), 128))) if key in ("gc", "ddm", "frd") else None)
    index_batch_source(cub_labels, built, sampler["batch_size"], sampler["samples_per_class"])  # settings possible
