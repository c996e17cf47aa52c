"""Analysis callbacks of train.py's `analysis` section against explicit numpy references, and their plots."""
import csv

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdml
from tfdml import analysis


def _nearest_neighbour_recall(queries, query_labels, references, reference_labels, leave_one_out=False):
    """Recall@1 by an explicit loop over queries (Euclidean distance)."""
    hits = 0
    for i, (query, label) in enumerate(zip(queries, query_labels)):
        distances = np.sqrt(((references - query) ** 2).sum(axis=1))
        if leave_one_out:
            distances[i] = np.inf
        hits += reference_labels[int(np.argmin(distances))] == label
    return hits / len(queries)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _normalizer(dim):
    inputs = keras.Input((dim,))
    return keras.Model(inputs, tfdml.models.layers.L2Normalization()(inputs))


def test_expansion_monitor_matches_explicit_synthetic_and_original_recall():
    rng = np.random.default_rng(0)
    labels = [np.array([0, 1, 0, 2, 1, 0, 2, 0]), np.array([3, 1, 3, 1, 2, 2, 3, 3])]
    centres = rng.normal(size=(4, 5))
    batches = [(centres[y] + rng.normal(size=(8, 5)) * 1.2, y) for y in labels]
    n = 3
    monitor = analysis.ExpansionMonitor(batches, tfdml.EmbeddingExpansion(n_points=n), every=3)
    monitor.set_model(_normalizer(5))
    monitor.set_params({"epochs": 5})
    x = _unit(np.concatenate([b for b, _ in batches]))
    y = np.concatenate(labels)
    synthetic, synthetic_labels = [], []
    for c in np.unique(y):  # consecutive pairs within each class, in order: samples 1&2, 3&4, …
        members = np.flatnonzero(y == c)
        for a, b in zip(members[0::2], members[1::2]):
            for k in range(1, n + 1):
                synthetic.append(_unit((k * x[a] + (n + 1 - k) * x[b]) / (n + 1)))
                synthetic_labels.append(c)
    expected_synthetic = _nearest_neighbour_recall(np.array(synthetic), synthetic_labels, x, y)
    expected_original = _nearest_neighbour_recall(x, y, x, y, leave_one_out=True)
    assert 0.0 < expected_original < 1.0  # the data leaves room for errors
    logged = []
    for epoch in range(5):
        logs = {}
        monitor.on_epoch_end(epoch, logs)
        logged.append(logs)
    for epoch in (0, 2, 4):  # the first, every 3rd, the last
        assert logged[epoch]["ee_synthetic_recall@1"] == pytest.approx(expected_synthetic)
        assert logged[epoch]["ee_original_recall@1"] == pytest.approx(expected_original)
        assert 0.0 <= logged[epoch]["ee_synthetic_negative_ratio"] <= 1.0
    for epoch in (1, 3):
        assert set(logged[epoch]) == set(monitor.KEYS) and all(np.isnan(v) for v in logged[epoch].values())


@pytest.fixture(scope="module")
def small_model():
    keras.utils.set_random_seed(1)
    model = tfdml.models.EmbeddingModel("small_cnn", 6, input_shape=(16, 16, 3), fc_names=["fc6", "fc_7"])
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 6)
    images = (rng.uniform(0, 255, size=(4, 16, 16, 3))[labels] * 0.6
              + rng.uniform(0, 255, size=(24, 16, 16, 3)) * 0.4).astype(np.float32)
    return model, images, labels


def test_tap_history_measures_every_tap_with_block_taps_by_default(small_model):
    model, images, labels = small_model
    train = tf.data.Dataset.from_tensor_slices((images, labels)).batch(10)
    test = tf.data.Dataset.from_tensor_slices((images[::-1], labels[::-1])).batch(7)
    history = analysis.TapRecallHistory({"train": train, "test": test}, metrics=("recall", "rho"), every=2)
    history.set_model(model)
    history.set_params({"epochs": 4})
    logs = [{} for _ in range(4)]
    for epoch in range(4):
        history.on_epoch_end(epoch, logs[epoch])
    taps = model.taps + model.block_taps
    assert taps == ["pool", "fc6", "fc_7", "block1", "block2", "block3"]
    for tap in taps:
        embeddings = np.asarray(model.embedder(tap)(images, training=False))
        recall = _nearest_neighbour_recall(embeddings, labels, embeddings, labels, leave_one_out=True)
        for epoch in (0, 1, 3):  # the first, every 2nd, the last
            for split in ("train", "test"):
                assert logs[epoch][f"tap_{tap}_{split}_recall@1"] == pytest.approx(recall), (tap, epoch)
            if tap == "fc6":  # full rank (fc_7 after a ReLU is not): ρ is not set by rounding-level singular values
                assert logs[epoch][f"tap_{tap}_train_rho"] == pytest.approx(
                    tfdml.metrics.spectral_decay(embeddings), rel=1e-4)
        assert np.isfinite(logs[0][f"tap_{tap}_test_rho"])
        assert np.isnan(logs[2][f"tap_{tap}_train_recall@1"]) and np.isnan(logs[2][f"tap_{tap}_test_rho"])
        assert len(history.history[(tap, "train")]) == 4
    combined = analysis.tap_embedder(model, ["fc_7", "block2"])(images[:5], training=False)
    np.testing.assert_allclose(combined["block2"], model.embedder("block2")(images[:5]), atol=1e-6)


def _write_log(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_training_curves_and_report_from_a_run_log(tmp_path):
    rows = [{"epoch": e, "loss": 1.0 / (e + 1), "ee_synthetic_recall@1": 0.5 + 0.1 * e,
             "ee_original_recall@1": "nan" if e == 1 else 0.4 + 0.1 * e,
             "tap_fc_6_train_recall@1": 0.6, "tap_fc_6_test_recall@1": 0.5, "tap_pool_train_recall@1": 0.7,
             "tap_pool_test_recall@1": 0.6, "tap_fc_6_train_pi_intra": 0.3, "tap_fc_6_test_pi_intra": 0.4}
            for e in range(3)]
    _write_log(tmp_path / "log.csv", rows)
    history = analysis.read_history(str(tmp_path / "log.csv"))
    assert analysis.taps.tap_metric_names(history) == ["recall@1", "pi_intra"]
    with pytest.raises(ValueError, match="tap_<tap>_<split>_rho"):
        analysis.plot_tap_metrics(history, "rho", str(tmp_path / "x.png"))
    x, y = np.random.default_rng(0).normal(size=(40, 4)), np.repeat(np.arange(8), 5)
    analysis.write_report(str(tmp_path / "report"), x, y, run_log=str(tmp_path / "log.csv"))
    text = (tmp_path / "report" / "report.md").read_text()
    for name in ("expansion_recall.png", "tap_recall_at_1.png", "tap_pi_intra.png", "spectrum.png"):
        assert f"]({name})" in text and (tmp_path / "report" / name).stat().st_size > 0, name
    assert "EE paper Fig. 3" in text
    _write_log(tmp_path / "plain.csv", [{"epoch": 0, "loss": 1.0}])
    # A log without analysis columns gets the training curves (loss per epoch) and no analysis plot.
    written = analysis.write_training_curves(str(tmp_path / "plain"), str(tmp_path / "plain.csv"))
    assert [name for name, _ in written] == ["training_curves.png"]
