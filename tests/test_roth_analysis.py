"""Roth et al.'s analysis figures: metric correlations over runs (Figs. 4-5), class-conditioned
singular-value spectra (Fig. 10) and the 2-D toy example of ρ-regularisation (Figs. 6/11)."""
import csv
import importlib.util
import json
import math
import os

import numpy as np
import pytest

import tfdml
from tfdml.analysis import correlation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_run(directory, rows):
    os.makedirs(directory, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(os.path.join(directory, "log.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def test_correlation_report_reads_best_epochs_and_correlates(tmp_path):
    recalls = [0.40, 0.55, 0.50, 0.62, 0.45]
    for index, recall in enumerate(recalls):
        # Epoch 1 is the best; ρ is measured at epochs 0 and 2 only (the value before the best epoch counts).
        _write_run(tmp_path / "sweep" / f"run{index}", [
            {"epoch": 0, "loss": 1.0, "val_fc_recall@1": recall - 0.1, "val_fc_nmi": 0.3,
             "tap_fc_train_rho": 1.0 - recall, "tap_fc_train_pi_ratio": 0.1 * index},
            {"epoch": 1, "loss": 0.9, "val_fc_recall@1": recall, "val_fc_nmi": 0.2 + recall / 2,
             "tap_fc_train_rho": "", "tap_fc_train_pi_ratio": ""},
            {"epoch": 2, "loss": 0.8, "val_fc_recall@1": recall - 0.05, "val_fc_nmi": 0.9,
             "tap_fc_train_rho": 5.0, "tap_fc_train_pi_ratio": 5.0}])
    _write_run(tmp_path / "sweep" / "unevaluated", [{"epoch": 0, "loss": 1.0, "val_fc_recall@1": ""}])
    report = correlation.write_correlation_report([str(tmp_path / "sweep")], str(tmp_path / "out"), "fc")
    assert len(report["runs"]) == 5 and report["names"][0] == "recall@1"
    assert set(report["names"]) == {"recall@1", "nmi", "train_rho", "train_pi_ratio"}
    matrix, names = report["matrix"], report["names"]
    pick = names.index
    assert matrix[pick("recall@1"), pick("train_rho")] == pytest.approx(-1.0)  # ρ = 1 − R@1 at epoch 0
    assert matrix[pick("recall@1"), pick("nmi")] == pytest.approx(1.0)
    expected = np.corrcoef(recalls, 0.1 * np.arange(5))[0, 1]
    assert report["structure"]["train_pi_ratio"] == pytest.approx(expected)
    for path in report["files"]:
        assert os.path.getsize(path) > 0
    assert {os.path.basename(p) for p in report["files"]} == {
        "metrics.csv", "correlation.csv", "correlation_matrix.png", "structure_vs_recall.png"}
    with pytest.raises(ValueError, match="at least 3"):
        correlation.write_correlation_report([str(tmp_path / "sweep" / "run0")], str(tmp_path / "x"), "fc")
    assert math.isnan(correlation.pearson([1, 1, 1], [1, 2, 3]))


def test_class_singular_value_spectra(tmp_path):
    rng = np.random.default_rng(0)
    flat = rng.normal(size=(30, 6))  # class 0: every direction
    line = np.outer(rng.normal(size=30), rng.normal(size=6)) + 1e-3 * rng.normal(size=(30, 6))  # class 1: one
    embeddings, labels = np.concatenate([flat, line]), np.repeat([0, 1], 30)
    spectra = tfdml.analysis.class_singular_value_spectra(embeddings, labels, str(tmp_path / "fig10.png"))
    assert set(spectra) == {0, 1} and all(v.shape == (6,) for v in spectra.values())
    for values in spectra.values():
        assert values.sum() == pytest.approx(1.0) and np.all(np.diff(values) <= 0)
    assert spectra[1][0] > 0.99 and spectra[0][0] < 0.5
    np.testing.assert_allclose(spectra[1], np.linalg.svd(line, compute_uv=False) / np.linalg.svd(
        line, compute_uv=False).sum(), rtol=1e-4)
    assert os.path.getsize(tmp_path / "fig10.png") > 0
    with pytest.raises(ValueError, match="classes"):
        tfdml.analysis.class_singular_value_spectra(embeddings, labels, classes=[7])


def test_toy_rho_example_runs_and_writes_its_figure(tmp_path):
    spec = importlib.util.spec_from_file_location("roth_toy_rho", os.path.join(ROOT, "examples", "roth_toy_rho.py"))
    toy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toy)
    x, y = toy.toy_data()
    assert x.shape == (8 * 4 * 8, 2) and set(y) == set(range(8))
    results = toy.main(["--output", str(tmp_path), "--steps", "30", "--rho", "0.4"])
    assert set(results) == {"baseline", "rho=0.4"}
    for values in results.values():
        assert 0.0 <= values["test_recall@1"] <= 1.0 and np.isfinite(values["rho"])
    assert results["baseline"] != results["rho=0.4"]  # the regularisation changes the embedding
    assert os.path.getsize(tmp_path / "toy_embeddings.png") > 0
    with open(tmp_path / "toy_metrics.json") as handle:
        assert json.load(handle) == results
