"""Sharing Matters analyses (tfdml.analysis): per-head Recall@K, generalisation gap, cross-class
neighbours, curves and the report — against brute-force numpy."""
import os

import numpy as np
import pytest

import tfdml
from tfdml.analysis import sharing as analysis


def _brute_recall_at_1(x, labels):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    hits = 0
    for i in range(len(x)):
        d = [np.linalg.norm(x[i] - x[j]) if j != i else np.inf for j in range(len(x))]
        hits += labels[int(np.argmin(d))] == labels[i]
    return hits / len(x)


def _heads(seed, n=40, classes=5):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n // classes)
    phi = rng.normal(size=(classes, 6))[labels] + rng.normal(size=(n, 6)) * 0.8
    phi_star = rng.normal(size=(n, 4))  # class-agnostic
    return {"class": phi, "shared": phi_star}, labels


def test_head_recalls_side_by_side_with_the_concatenation():
    heads, labels = _heads(0)
    results = analysis.head_recalls(heads, labels, ks=(1, 2))
    assert list(results) == ["class", "shared", "concat"]
    concat = np.concatenate([h / np.linalg.norm(h, axis=1, keepdims=True) for h in heads.values()], axis=1)
    for head, x in {**heads, "concat": concat}.items():
        assert results[head]["recall@1"] == pytest.approx(_brute_recall_at_1(x, labels))
    assert results["class"]["recall@1"] > results["shared"]["recall@1"]
    assert set(results["class"]) == {"recall@1", "recall@2"}


def test_generalization_gap_is_train_minus_test_recall_per_head():
    train, train_labels = _heads(1)
    test, test_labels = _heads(2)
    gap = analysis.generalization_gap(train, train_labels, test, test_labels)
    for head in ("class", "shared"):
        expected_train = _brute_recall_at_1(train[head], train_labels)
        expected_test = _brute_recall_at_1(test[head], test_labels)
        assert gap[head]["train_recall@1"] == pytest.approx(expected_train)
        assert gap[head]["gap"] == pytest.approx(expected_train - expected_test)


def test_reinitialized_head_is_a_fresh_glorot_head_on_the_pooled_features():
    rng = np.random.default_rng(5)
    pooled = rng.normal(size=(30, 12))
    embeddings, kernel = analysis.reinitialized_head(pooled, 8, seed=3)
    assert embeddings.shape == (30, 8) and kernel.shape == (12, 8)
    bound = np.sqrt(6.0 / (12 + 8))  # Glorot-uniform limit
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.5 * bound
    for i in range(30):  # ℓ2(f_i W), row by row
        row = pooled[i] @ kernel
        np.testing.assert_allclose(embeddings[i], row / np.linalg.norm(row), rtol=1e-5, atol=1e-6)
    again, _ = analysis.reinitialized_head(pooled, 8, seed=3)
    other, _ = analysis.reinitialized_head(pooled, 8, seed=4)
    np.testing.assert_array_equal(again, embeddings)
    assert not np.allclose(other, embeddings)
    heads, labels = _heads(3)
    heads["reinitialized"], _ = analysis.reinitialized_head(heads["class"], 4, seed=0)  # Table 5's φ(𝒩) row
    assert 0.0 <= analysis.head_recalls(heads, labels, (1,))["reinitialized"]["recall@1"] <= 1.0
    with pytest.raises(ValueError, match="width"):
        analysis.reinitialized_head(pooled, 0)
    with pytest.raises(ValueError, match="pooled"):
        analysis.reinitialized_head(pooled[0], 4)


def test_cross_class_neighbours_exclude_the_query_class():
    rng = np.random.default_rng(3)
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 3, 3, 3])
    x = rng.normal(size=(10, 3))
    indices, distances = analysis.cross_class_neighbors(x, labels, k=4, chunk_size=3)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    for q in range(10):
        others = [j for j in range(10) if labels[j] != labels[q]]
        expected = sorted(others, key=lambda j: (np.linalg.norm(xn[q] - xn[j]), j))[:4]
        assert list(indices[q]) == expected
        np.testing.assert_allclose(distances[q], [np.linalg.norm(xn[q] - xn[j]) for j in expected], atol=1e-5)
    # Fewer other-class samples than k: padded with -1 / inf.
    few, far = analysis.cross_class_neighbors(x[:6], labels[:6], k=3, queries=[0, 4])
    assert set(few[0][:2]) == {4, 5} and few[0][2] == -1 and np.isinf(far[0][2])
    assert list(few[1]) == sorted(range(4), key=lambda j: np.linalg.norm(xn[4] - xn[j]))[:3]
    assert analysis.cross_class_label_agreement(indices, np.zeros(10)) == 1.0
    with pytest.raises(ValueError, match="labels"):
        analysis.cross_class_neighbors(x, labels[:5])


def test_head_embeddings_match_the_embedders():
    model = tfdml.models.EmbeddingModel("small_cnn", embedding_dim=None, heads={"class": 4, "shared": 3},
                                        input_shape=(8, 8, 3))
    split = tfdml.data.digits_split("test", image_size=8)
    data = tfdml.data.eval_pipeline(split, 64, 8, "none").take(2)
    embeddings, labels = analysis.head_embeddings(model, data)
    assert {k: v.shape[1] for k, v in embeddings.items()} == {"class": 4, "shared": 3, "concat": 7}
    images = next(iter(data))[0]
    for tap in ("class", "shared", "concat"):
        np.testing.assert_allclose(embeddings[tap][:64], model.embedder(tap)(images).numpy(), atol=1e-5)
    np.testing.assert_array_equal(labels, split.labels[:128])


def test_curves_neighbour_grid_and_report_files(tmp_path):
    heads, labels = _heads(4)
    history = {"class_loss": [1.0, 0.6], "shared_loss": [1.1, 0.9], "loss": [2.0, 1.4],
               "val_class_recall@1": [0.5, 0.6], "val_shared_recall@1": [0.3, 0.35],
               "tap_class_train_recall@1": [0.7, 0.9]}
    log = tmp_path / "log.csv"
    log.write_text("epoch,class_loss,shared_loss\n0,1.0,1.1\n1,0.6,0.9\n")
    assert analysis.read_history(str(log)) == {"epoch": [0.0, 1.0], "class_loss": [1.0, 0.6],
                                               "shared_loss": [1.1, 0.9]}
    assert os.path.getsize(analysis.plot_head_curves(history, str(tmp_path / "curves.png"))) > 0
    images = np.random.default_rng(0).uniform(0, 255, size=(40, 8, 8, 3))
    results = analysis.write_sharing_report(str(tmp_path / "report"), heads, labels, heads, labels,
                                            history=str(log), images=images, queries=3, neighbors=2)
    files = set(os.listdir(tmp_path / "report"))
    assert {"sharing.json", "sharing.md", "head_curves.png", "cross_class_shared.png",
            "cross_class_class.png"} <= files
    assert set(results) == {"recall", "generalization_gap"}
    assert results["generalization_gap"]["class"]["gap"] == pytest.approx(0.0)
    text = (tmp_path / "report" / "sharing.md").read_text()
    assert "| concat |" in text and "Table 5" in text
