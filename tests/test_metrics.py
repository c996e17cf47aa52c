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


def test_metrics_exact_on_near_collapsed_embeddings():
    # Embeddings squeezed together (1 + 1e-4·noise): float32 ‖r‖² − 2⟨q, r⟩ cannot rank them; the metrics
    # must still equal an exact brute force (explicit float64 loops on the same float32 embeddings).
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 8, 90)
    x = (1.0 + 1e-4 * rng.normal(size=(90, 12))).astype(np.float32)
    sq = (x ** 2).sum(1)
    plain = sq[None, :] - 2 * x @ x.T
    np.fill_diagonal(plain, np.inf)
    exact_d = ((x[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1)
    np.fill_diagonal(exact_d, np.inf)
    assert np.mean(plain.argmin(1) != exact_d.argmin(1)) > 0.2  # the plain float32 ranking really is wrong
    names = ("recall", "map@r", "r_precision", "map@1000", "map_c")
    expected = _reference_metrics(x.astype(np.float64), labels, (1, 2, 4, 8, 32))
    for chunk_size in (32, 1024):
        got = metrics.retrieval_metrics(x, labels, ks=(1, 2, 4, 8, 32), metrics=names, chunk_size=chunk_size,
                                        block_size=chunk_size)
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=1e-12), (key, chunk_size)


def test_nan_embeddings_are_a_named_error():
    x, y = _clustered()
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"embeddings contain NaN or infinite values in 1 rows \(first: \[3\]\)"):
        metrics.evaluate_embeddings(x, y)


def test_callback_logs_nan_on_epochs_without_evaluation(tmp_path):
    import csv

    import tensorflow as tf

    x, y = _clustered(n_classes=4, per_class=8, dim=6)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    model.compile(optimizer="adam", loss=tfdml.losses.TripletLoss())
    callback = metrics.RetrievalEvaluation(data, every=3, ks=(1, 2))
    log, blank_log = str(tmp_path / "log.csv"), str(tmp_path / "blank.csv")
    history = model.fit(data, epochs=5, verbose=0, callbacks=[
        callback, keras.callbacks.CSVLogger(log), metrics.MeasuredCSVLogger(blank_log)])
    # Evaluated after the first epoch, every 3rd epoch and after the last: epochs 0, 2, 4 (0-based).
    measured = [not np.isnan(v) for v in history.history["val_recall@1"]]
    assert measured == [True, False, True, False, True]
    assert all(np.isnan(history.history["val_nmi"][i]) for i in (1, 3))
    with open(log) as handle:
        rows = list(csv.DictReader(handle))
    assert [row["val_recall@1"] == "nan" for row in rows] == [False, True, False, True, False]
    with open(blank_log) as handle:
        blank_rows = list(csv.DictReader(handle))
    assert [row["val_nmi"] == "" for row in blank_rows] == [False, True, False, True, False]
    assert all(row["loss"] for row in blank_rows)  # measured values are kept
    assert np.isnan(history.history["val_nmi"][1])  # the logger did not change the logs other callbacks see
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="val_recall@1",
                                                 mode="max", save_best_only=True)
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0, {"val_recall@1": 0.5})
    checkpoint.on_epoch_end(1, {"val_recall@1": float("nan")})
    assert checkpoint.best == 0.5  # an unmeasured epoch is never an improvement


def test_callback_gives_nan_metrics_for_diverged_embeddings():
    import tensorflow as tf

    x, y = _clustered(n_classes=3, per_class=4, dim=5)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(6)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Lambda(lambda t: t * np.float32(np.nan))])
    callback = metrics.RetrievalEvaluation(data, ks=(1,))
    callback.set_model(model)
    with pytest.warns(UserWarning, match="NaN or infinite"):
        values = callback.evaluate()
    assert set(values) == {"val_recall@1", "val_nmi"} and all(np.isnan(v) for v in values.values())


class _CountingLayer(keras.layers.Layer):
    calls = 0

    def call(self, inputs):
        type(self).calls += 1  # Python runs only while tracing when the model is compiled
        return inputs * 2.0


def test_embed_is_compiled_and_matches_predict():
    import tensorflow as tf

    model = keras.Sequential([keras.Input((4,)), _CountingLayer(), keras.layers.Dense(3)])
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, np.arange(50))).batch(8)
    _CountingLayer.calls = 0
    embeddings, labels = metrics.embed(model, data, verbose=False)
    assert _CountingLayer.calls == 1  # traced once (any batch size), not run eagerly 7 times
    np.testing.assert_allclose(embeddings, model.predict(x, verbose=0), atol=1e-6)
    np.testing.assert_array_equal(labels, np.arange(50))
    _CountingLayer.calls = 0
    metrics.embed(model, data.rebatch(5), verbose=False)  # another evaluation: no new trace
    assert _CountingLayer.calls == 0


def test_kmeans_reaches_a_lloyd_fixed_point():
    from tfdml.metrics import kmeans as kmeans_module

    x, _ = _clustered(n_classes=5, per_class=12, dim=4, spread=1.5, seed=9)
    for limit in (kmeans_module.KMEANS_PP_LIMIT, 0):  # k-means++ init, then uniform random init
        kmeans_module.KMEANS_PP_LIMIT, saved = limit, kmeans_module.KMEANS_PP_LIMIT
        try:
            assignments, centres, inertia = kmeans_module.kmeans(x, 5, seed=1, max_iter=100)
        finally:
            kmeans_module.KMEANS_PP_LIMIT = saved
        x64, c64 = x.astype(np.float64), centres.astype(np.float64)
        d = ((x64[:, None, :] - c64[None]) ** 2).sum(-1)
        np.testing.assert_array_equal(assignments, d.argmin(1))  # every point at its nearest centre
        for c in range(5):  # every centre the mean of its points
            np.testing.assert_allclose(c64[c], x64[assignments == c].mean(0), atol=1e-5)
        assert inertia == pytest.approx(d.min(1).sum(), rel=1e-4)


def test_progress_only_on_terminals_or_when_asked(capsys):
    import io

    from tfdml.metrics.progress import Progress

    stream = io.StringIO()
    with Progress("k-means", 3, stream=stream) as progress:  # not a terminal: silent
        progress(3)
    assert stream.getvalue() == ""
    with Progress("k-means", 3, verbose=True, stream=stream, interval=0) as progress:
        progress(1)
        progress(3)
    assert "k-means: 3/3" in stream.getvalue() and "done in" in stream.getvalue()
    x, y = _clustered()
    metrics.evaluate_embeddings(x, y, metrics=("recall", "nmi"), verbose=False)
    assert capsys.readouterr().err == ""


def test_format_table():
    table = metrics.format_table({"pool": {"recall@1": 0.5, "recall@2": 0.75, "nmi": 0.123456}}, (1, 2))
    assert table.splitlines() == [" tap |   R@1 |   R@2 |   NMI", "pool | 50.00 | 75.00 | 12.35"]


def test_callback_is_quiet_inside_fit_unless_asked(capsys, monkeypatch):
    import tensorflow as tf

    from tfdml.metrics import progress as progress_module

    monkeypatch.setattr(progress_module.sys.stderr, "isatty", lambda: True, raising=False)
    x, y = _clustered(n_classes=3, per_class=4, dim=5)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(6)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    callback = metrics.RetrievalEvaluation(data, ks=(1,))
    callback.set_model(model)
    callback.evaluate()
    assert capsys.readouterr().err == ""
    metrics.evaluate_embeddings(x, y, metrics=("recall",))  # a terminal, not silenced: a progress line
    assert "neighbour search" in capsys.readouterr().err
