"""tfdml.metrics against explicit loops, hand-worked cases and edge cases."""
import keras
import numpy as np
import pytest

import tfdml
from tfdml import metrics


def _clustered(n_classes=6, per_class=5, dim=4, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    x = rng.normal(size=(n_classes, dim))[labels] * 2 + spread * rng.normal(size=(len(labels), dim))
    return x.astype(np.float32), labels


def _ranking_loop(x, labels, q, refs=None, ref_labels=None):
    """Reference ranking for query q by explicit distances; ties by lower index."""
    same = refs is None
    refs = x if same else refs
    ref_labels = labels if same else ref_labels
    order = sorted((float(np.sum((x[q] - refs[j]) ** 2)), j) for j in range(len(refs)) if not (same and j == q))
    return [j for _, j in order], ref_labels


def _reference_metrics(x, labels, ks, refs=None, ref_labels=None):
    out = {f"recall@{k}": [] for k in ks}
    out.update({"map@r": [], "r_precision": [], "map@1000": []})
    per_class = {}
    for q in range(len(x)):
        ranking, rl = _ranking_loop(x, labels, q, refs, ref_labels)
        rel = [int(rl[j] == labels[q]) for j in ranking]
        r = sum(rel)
        if r == 0:
            continue
        for k in ks:
            out[f"recall@{k}"].append(float(any(rel[:k])))
        hits, ap = 0, 0.0
        for i in range(r):
            if rel[i]:
                hits += 1
                ap += hits / (i + 1)
        out["map@r"].append(ap / r)
        out["r_precision"].append(sum(rel[:r]) / r)
        top = min(1000, len(rel))
        hits, ap1000 = 0, 0.0
        for i in range(top):
            if rel[i]:
                hits += 1
                ap1000 += hits / (i + 1)
        out["map@1000"].append(ap1000 / min(r, top))
        per_class.setdefault(labels[q], []).append(ap / r)
    result = {k: float(np.mean(v)) for k, v in out.items()}
    result["map_c"] = float(np.mean([np.mean(v) for v in per_class.values()]))
    return result


@pytest.mark.parametrize("spread", [0.5, 2.0])
def test_retrieval_metrics_match_loops(spread):
    x, y = _clustered(spread=spread)
    got = metrics.retrieval_metrics(x, y, ks=(1, 2, 4, 8, 100), chunk_size=7,
                                    metrics=("recall", "map@r", "r_precision", "map@1000", "map_c"))
    expected = _reference_metrics(x, y, (1, 2, 4, 8, 100))
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key


def test_separate_reference_set_matches_loops():
    x, y = _clustered(seed=1)
    refs, ref_y = _clustered(seed=2)
    got = metrics.retrieval_metrics(x, y, ks=(1, 4), reference_embeddings=refs, reference_labels=ref_y,
                                    metrics=("recall", "map@r"))
    expected = _reference_metrics(x, y, (1, 4), refs, ref_y)
    for key in ("recall@1", "recall@4", "map@r"):
        assert got[key] == pytest.approx(expected[key], abs=1e-9)


def test_hand_worked_line():
    # Points on a line at 0, 1, 3, 4, 10 with labels a, b, a, b, a.
    x = np.array([[0.0], [1.0], [3.0], [4.0], [10.0]])
    y = np.array([0, 1, 0, 1, 0])
    # Rankings (nearest first, ties → lower index):
    # q0: 1(b),2(a),3(b),4(a)  R=2  rel 0,1,0,1  recall@1=0  AP@R: rel in first 2 = [0,1] → (1/2)/2 = 0.25
    # q1: 0(a),2(a),3(b),4(a)  R=1  rel 0,0,1,0  recall@1=0  AP@R = 0
    # q2: 3(b),1(b),0(a),4(a)  R=2  rel 0,0,1,1  AP@R = 0
    # q3: 2(a),1(b),0(a),4(a)  R=1  rel 0,1,.. recall@1=0, recall@2=1, AP@R = 0
    # q4: 3(b),2(a),1(b),0(a)  R=2  rel 0,1,0,1  AP@R = (1/2)/2 = 0.25
    got = metrics.retrieval_metrics(x, y, ks=(1, 2), metrics=("recall", "map@r", "r_precision"))
    assert got["recall@1"] == pytest.approx(0.0)
    assert got["recall@2"] == pytest.approx(3 / 5)  # q0, q3, q4
    assert got["map@r"] == pytest.approx((0.25 + 0 + 0 + 0 + 0.25) / 5)
    assert got["r_precision"] == pytest.approx((0.5 + 0 + 0 + 0 + 0.5) / 5)


@pytest.mark.parametrize("chunk", [1, 7, 30])
def test_chunked_neighbors_equal_brute_force(chunk):
    x, _ = _clustered(seed=3)
    idx, dist = metrics.nearest_neighbors(x, k=5, chunk_size=chunk)
    d = np.sqrt(((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    brute = np.argsort(d, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(idx, brute)
    np.testing.assert_allclose(dist, np.take_along_axis(d, brute, axis=1), atol=1e-4)


def test_ties_broken_by_lower_index():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    idx, _ = metrics.nearest_neighbors(x, k=3, chunk_size=2)
    np.testing.assert_array_equal(idx[0], [1, 2, 3])
    np.testing.assert_array_equal(idx[2], [1, 3, 0])


def test_degenerate_inputs():
    # A singleton class is excluded (cannot be scored); k larger than N is clipped.
    x = np.array([[0.0], [0.1], [5.0]])
    y = np.array([0, 0, 1])
    got = metrics.retrieval_metrics(x, y, ks=(1, 50))
    assert got["recall@1"] == 1.0 and got["recall@50"] == 1.0
    only_singletons = metrics.retrieval_metrics(x[:1], y[:1], ks=(1,))
    assert np.isnan(only_singletons["recall@1"])
    with pytest.raises(ValueError, match="labels"):
        metrics.evaluate_embeddings(x, y[:2])
    with pytest.raises(ValueError, match="labels"):
        metrics.evaluate_embeddings(x, np.array([0.5, 1.0, 2.0]))
    with pytest.raises(ValueError, match="embeddings"):
        metrics.evaluate_embeddings(x[:, 0], y)
    with pytest.raises(ValueError, match="valid names"):
        metrics.evaluate_embeddings(x, y, metrics=("recall", "accuracy"))


def test_pairwise_f1_hand_worked():
    # classes  [0,0,0,1,1], clusters [0,0,1,1,1]
    # same-class pairs: C(3,2)+C(2,2) = 4; same-cluster pairs: 1 + 3 = 4; TP: (0,1),(3,4) = 2.
    assert metrics.pairwise_f1(np.array([0, 0, 0, 1, 1]), np.array([0, 0, 1, 1, 1])) == pytest.approx(0.5)


def test_nmi_and_f1_perfect_on_separated_clusters():
    x, y = _clustered(spread=0.01, seed=4)
    got = metrics.evaluate_embeddings(x, y, metrics=("nmi", "f1"))
    assert got["nmi"] == pytest.approx(1.0) and got["f1"] == pytest.approx(1.0)


def test_spectral_decay_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)) * np.array([5, 3, 2, 1, 0.5, 0.1])
    s = np.linalg.svd(x, compute_uv=False)
    for drop in (True, False):
        v = s[1:] if drop else s
        p = v / v.sum()
        expected = sum((1 / len(p)) * np.log((1 / len(p)) / pi) for pi in p)
        assert metrics.spectral_decay(x, drop_largest=drop) == pytest.approx(expected)
    # A flat spectrum has ρ = 0.
    assert metrics.spectral_decay(np.eye(5), drop_largest=False) == pytest.approx(0.0, abs=1e-12)


def test_class_separation_loops():
    x, y = _clustered(seed=5)
    got = metrics.class_separation(x, y)
    x64 = x.astype(np.float64)
    intra = []
    for c in np.unique(y):
        pts = x64[y == c]
        intra.append(np.mean([np.linalg.norm(pts[i] - pts[j]) for i in range(len(pts))
                              for j in range(len(pts)) if i != j]))
    centres = [x64[y == c].mean(0) for c in np.unique(y)]
    inter = np.mean([np.linalg.norm(a - b) for i, a in enumerate(centres) for j, b in enumerate(centres) if i != j])
    assert got["pi_intra"] == pytest.approx(np.mean(intra))
    assert got["pi_inter"] == pytest.approx(inter)
    assert got["pi_ratio"] == pytest.approx(np.mean(intra) / inter)


def test_evaluate_embeddings_returns_all_keys():
    x, y = _clustered()
    keys = set(metrics.evaluate_embeddings(x, y))
    assert keys == {"recall@1", "recall@2", "recall@4", "recall@8", "nmi", "f1", "map@r", "r_precision",
                    "map@1000", "map_c", "rho", "pi_intra", "pi_inter", "pi_ratio"}


def test_callback_logs_into_history():
    x, y = _clustered(n_classes=4, per_class=8, dim=6)
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    model.compile(optimizer="adam", loss=tfdml.losses.TripletLoss())
    callback = metrics.RetrievalEvaluation(data, every=2, ks=(1, 2))
    history = model.fit(data, epochs=3, verbose=0, callbacks=[callback])
    assert len(history.history["val_recall@1"]) == 3
    assert 0.0 <= history.history["val_recall@2"][-1] <= 1.0
    assert "val_nmi" in history.history
