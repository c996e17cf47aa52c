"""Analysis tools: each runs on small data / a small model and writes a readable PNG."""
import keras
import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf

import tfdml
from tfdml import analysis

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    with open(path, "rb") as handle:
        assert handle.read(8) == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0.01  # not a blank canvas


def _clustered(classes=5, per_class=12, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    x = rng.normal(size=(classes, dim))[labels] * 3 + rng.normal(size=(len(labels), dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


@pytest.fixture(scope="module")
def fitted():
    """A small EmbeddingModel trained briefly on digits, with its data."""
    keras.utils.set_random_seed(0)
    train = tfdml.data.load_split("digits", "train", image_size=16)
    test = tfdml.data.load_split("digits", "test", image_size=16)
    model = tfdml.models.EmbeddingModel("small_cnn", 16, input_shape=(16, 16, 3))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=tfdml.losses.TripletLoss())
    data = tfdml.data.train_pipeline(train, batch_size=20, samples_per_class=4, augmentation="none", image_size=16)
    model.fit(data, steps_per_epoch=5, epochs=1, verbose=0)
    test_images = np.concatenate([x.numpy() for x, _ in tfdml.data.eval_pipeline(test, 200, 16, "none")])[:150]
    return model, test_images, test.labels[:150], data


def test_distance_heatmap(tmp_path):
    x, y = _clustered()
    d = analysis.distance_heatmap(x, y, str(tmp_path / "h.png"))
    assert d.shape == (5, 5) and d.min() >= 0 and d.max() == pytest.approx(1.0)
    assert np.mean(np.diag(d)) < np.mean(d[~np.eye(5, dtype=bool)])  # same class closer
    _assert_png(tmp_path / "h.png")


def test_synthetic_query_recall_and_test_queries(tmp_path):
    x, y = _clustered()
    assert 0.9 <= analysis.synthetic_query_recall(x, y, n_points=2) <= 1.0
    positions, recalls = analysis.synthetic_test_queries(x, y, n_points=3, path=str(tmp_path / "q.png"))
    assert list(positions) == [1, 2, 3] and np.all((recalls >= 0) & (recalls <= 1))
    _assert_png(tmp_path / "q.png")


def test_hard_negative_ratio_counts_every_anchor():
    x, y = _clustered(classes=3, per_class=4)
    stats = analysis.hard_negative_ratio([(x, y)], tfdml.EmbeddingExpansion(2))
    assert stats["synthetic"] + stats["original"] == 12 and 0 <= stats["ratio"] <= 1


def test_occlusion_robustness_starts_at_plain_recall(fitted, tmp_path):
    model, images, labels, _ = fitted
    plain = tfdml.metrics.recall_at_k(model.predict(images, verbose=0), labels, ks=(1,))["recall@1"]
    for kind in ("center", "boundary"):
        sizes, recalls = analysis.occlusion_robustness(model, images, labels, kind, steps=3,
                                                       path=str(tmp_path / f"{kind}.png"))
        assert sizes[0] == 0 and sizes[-1] == 16
        assert recalls[0] == pytest.approx(plain, abs=1e-6)
        _assert_png(tmp_path / f"{kind}.png")


def test_joint_tsne(tmp_path):
    x, y = _clustered(seed=1)
    xt, yt = _clustered(seed=2)
    a, b = analysis.joint_tsne(x, y, xt, yt, str(tmp_path / "t.png"), perplexity=10)
    assert a.shape == (60, 2) and b.shape == (60, 2)
    _assert_png(tmp_path / "t.png")


def test_yoked_tsne_yoke_controls_alignment(tmp_path):
    x, y = _clustered(classes=4, per_class=15, seed=3)
    noisy = x + 0.2 * np.random.default_rng(0).normal(size=x.shape)
    free_a, free_b = analysis.yoked_tsne(x, noisy, yoke=0.0, perplexity=10, iterations=250)
    tied_a, tied_b = analysis.yoked_tsne(x, noisy, yoke=100.0, perplexity=10, iterations=250, labels=y,
                                         path=str(tmp_path / "y.png"))
    free_gap = np.abs(free_a - free_b).mean() / free_a.std()
    tied_gap = np.abs(tied_a - tied_b).mean() / tied_a.std()
    assert tied_gap < 0.01 < 0.2 < free_gap
    _assert_png(tmp_path / "y.png")
    with pytest.raises(ValueError, match="same number of points"):
        analysis.yoked_tsne(x, x[:10])


def test_same_vs_different_matches_loops(tmp_path):
    x, y = _clustered(seed=4)
    result = analysis.same_vs_different({"train": (x, y), "test": (x[::-1], y[::-1])}, str(tmp_path / "s.png"))
    sims = x @ x.T
    for i in range(0, 60, 7):
        same = max(sims[i, j] for j in range(60) if j != i and y[j] == y[i])
        diff = max(sims[i, j] for j in range(60) if y[j] != y[i])
        assert result["train"]["same"][i] == pytest.approx(same, abs=1e-5)
        assert result["train"]["different"][i] == pytest.approx(diff, abs=1e-5)
    assert 0 <= result["test"]["correct_fraction"] <= 1
    _assert_png(tmp_path / "s.png")


def test_spectrum(tmp_path):
    x, _ = _clustered()
    values = analysis.singular_value_spectrum(x, str(tmp_path / "sp.png"))
    assert values.shape == (8,) and values.sum() == pytest.approx(1.0) and np.all(np.diff(values) <= 1e-12)
    _assert_png(tmp_path / "sp.png")


def test_tap_and_expansion_callbacks_log_into_history(fitted, tmp_path):
    model, images, labels, data = fitted
    test = tf.data.Dataset.from_tensor_slices((images, labels)).batch(64)
    taps = analysis.TapRecallHistory({"train": data.take(2), "test": test})
    monitor = analysis.ExpansionMonitor(data.take(2), tfdml.EmbeddingExpansion(2))
    history = model.fit(data, steps_per_epoch=2, epochs=2, verbose=0, callbacks=[taps, monitor])
    for key in ("tap_pool_test_recall@1", "tap_fc_train_recall@1", "ee_synthetic_recall@1",
                "ee_synthetic_negative_ratio"):
        assert len(history.history[key]) == 2, key
    analysis.plot_tap_recalls(taps.history, str(tmp_path / "taps.png"))
    _assert_png(tmp_path / "taps.png")


def test_write_report(tmp_path):
    x, y = _clustered(seed=5)
    xt, yt = _clustered(seed=6)
    metrics = analysis.write_report(str(tmp_path), x, y, xt, yt)
    assert {"recall@1", "map@r", "rho", "pi_ratio"} <= set(metrics)
    text = (tmp_path / "report.md").read_text()
    for name in ("spectrum.png", "same_vs_different.png", "distance_heatmap.png", "synthetic_queries.png",
                 "joint_tsne.png"):
        assert f"]({name})" in text
        _assert_png(tmp_path / name)


def test_synthetic_test_queries_exclude_their_own_end_points():
    # class 0: three tight points; classes 1 and 2: two tight points each. A synthetic point
    # of class 0 finds its third point; one of class 1 or 2 has no same-class point left once
    # its two end points are excluded (counting them would give Recall@1 = 1 for every class).
    x = np.array([[0.0, 0.0], [0.01, 0.0], [0.0, 0.01],
                  [1.0, 0.0], [1.01, 0.0],
                  [0.0, 1.0], [0.0, 1.01]])
    y = np.array([0, 0, 0, 1, 1, 2, 2])
    positions, recalls = analysis.synthetic_test_queries(x, y, n_points=2, normalize=False, pairs_per_class=1)
    np.testing.assert_allclose(recalls, [1 / 3, 1 / 3])
    # chunked like unchunked; by default enough pairs per class for a few-class test set
    _, chunked = analysis.synthetic_test_queries(x, y, n_points=2, normalize=False, pairs_per_class=4, chunk_size=5)
    _, whole = analysis.synthetic_test_queries(x, y, n_points=2, normalize=False, pairs_per_class=4)
    np.testing.assert_allclose(chunked, whole)
    _, default = analysis.synthetic_test_queries(x, y, n_points=2, normalize=False, max_queries=300)
    np.testing.assert_allclose(default, [1 / 3, 1 / 3], atol=0.08)  # 100 pairs per class


def test_tsne_legend_names_test_classes_with_their_own_colours():
    fig, (ax_train, ax_test) = analysis.plotting.figure(ncols=2)
    points = np.random.default_rng(0).normal(size=(6, 2))
    labels = np.array([0, 0, 1, 1, 2, 2])
    analysis.tsne.scatter_by_class(ax_train, points, labels, names=["0", "1", "2"])
    analysis.tsne.scatter_by_class(ax_test, points, labels, names=["5", "6", "7"], color_offset=3)
    assert ax_test.get_legend_handles_labels()[1] == ["class 5", "class 6", "class 7"]
    train_colours = {tuple(c.get_facecolor()[0]) for c in ax_train.collections}
    test_colours = {tuple(c.get_facecolor()[0]) for c in ax_test.collections}
    assert len(test_colours) == 3 and not train_colours & test_colours


def test_distance_heatmap_names_its_split(tmp_path, monkeypatch):
    titles = []
    monkeypatch.setattr(analysis.expansion_analysis, "save", lambda fig, path: titles.append(fig.axes[0].get_title()))
    x, y = _clustered()
    analysis.distance_heatmap(x, y, split="test (unseen classes)")
    assert titles and titles[0].startswith("test (unseen classes) split")


def test_yoked_tsne_maps_yoke_any_number_of_embeddings():
    x, _ = _clustered(classes=4, per_class=12, seed=5)
    rng = np.random.default_rng(1)
    views = [x + 0.2 * rng.normal(size=x.shape) for _ in range(3)] + [x[:, :3]]  # dimensions may differ
    tied = analysis.yoked_tsne_maps(views, yoke=100.0, perplexity=10, iterations=200)
    free = analysis.yoked_tsne_maps(views, yoke=0.0, perplexity=10, iterations=200)
    assert len(tied) == 4 and all(m.shape == (48, 2) for m in tied)
    gaps = [np.abs(maps[0] - maps[k]).mean() / maps[0].std() for maps in (tied, free) for k in (1, 3)]
    assert max(gaps[:2]) < 0.01 < 0.2 < min(gaps[2:])
    # Two maps: exactly `yoked_tsne`.
    pair = analysis.yoked_tsne(views[0], views[1], yoke=0.5, perplexity=10, iterations=50)
    maps = analysis.yoked_tsne_maps(views[:2], yoke=0.5, perplexity=10, iterations=50)
    np.testing.assert_array_equal(pair[0], maps[0])
    np.testing.assert_array_equal(pair[1], maps[1])
    with pytest.raises(ValueError, match="same number of points"):
        analysis.yoked_tsne_maps([x, x[:10]])
    with pytest.raises(ValueError, match="at least 2"):
        analysis.yoked_tsne_maps([x])


def test_yoked_runs_tsne_command_maps_run_directories(tmp_path):
    from tfdml.analysis import tsne
    from tfdml.training import build_model, load_config, save_config

    runs = []
    for seed in (0, 1):
        config = load_config(None, ["dataset.image_size=16", f"seed={seed}"])
        run_dir = tmp_path / f"run{seed}"
        run_dir.mkdir()
        save_config(config, str(run_dir / "config.yaml"))
        keras.utils.set_random_seed(seed)
        build_model(config).save(str(run_dir / "final.keras"))
        runs.append(str(run_dir))
    output = tmp_path / "yoked.png"
    assert tsne.main(runs + ["--output", str(output), "--points", "30", "--iterations", "60"]) == 0
    _assert_png(output)
    maps = analysis.yoked_runs_tsne(runs, str(tmp_path / "again.png"), points=30, iterations=60)
    assert len(maps) == 2 and maps[0].shape == (60, 2)  # 30 training + 30 test images


def test_report_with_a_plain_run_log_shows_training_curves(tmp_path):
    """A run without an analysis section logs only loss and validation metrics: the report still shows them."""
    x, y = _clustered(seed=5)
    log = tmp_path / "log.csv"
    log.write_text("epoch,loss,val_pool_recall@1,val_pool_map@r\n0,0.9,0.5,0.3\n1,0.7,,\n2,0.5,0.7,0.4\n")
    analysis.write_report(str(tmp_path / "report"), x, y, run_log=str(log))
    report = (tmp_path / "report" / "report.md").read_text()
    assert "![training_curves.png](training_curves.png)" in report
    _assert_png(tmp_path / "report" / "training_curves.png")
