"""evaluate.py on models other than the default: two heads (Sharing Matters), gray images, run directories."""
import json
import os

import numpy as np
import pytest

import evaluate
import tfdml


@pytest.fixture(scope="module")
def gray_two_head_model(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("models") / "heads.keras")
    model = tfdml.models.EmbeddingModel("small_cnn", embedding_dim=None, heads={"class": 8, "shared": 8},
                                        input_shape=(16, 16, 1))
    model.save(path)
    return path, model


def test_two_head_gray_model_defaults_to_the_class_head_and_writes_the_sharing_report(gray_two_head_model,
                                                                                       tmp_path):
    path, model = gray_two_head_model
    results = evaluate.main(["--model", path, "--dataset", "digits", "--report", str(tmp_path / "report"),
                             "--quiet", "--tsne-points", "200"])
    assert set(results) == {"class"}
    test = tfdml.data.load_split("digits", "test", image_size=16, channels=1)
    embeddings, labels = tfdml.metrics.embed(model.embedder("class"), tfdml.data.eval_pipeline(test, 256, 16))
    expected = tfdml.metrics.evaluate_embeddings(embeddings, labels, ks=(1, 2, 4, 8))
    assert results["class"]["recall@1"] == pytest.approx(expected["recall@1"], abs=1e-6)
    with open(tmp_path / "report" / "sharing" / "sharing.json") as handle:
        sharing = json.load(handle)
    assert set(sharing["recall"]) >= {"class", "shared"} and "generalization_gap" in sharing
    assert os.path.getsize(tmp_path / "report" / "sharing" / "cross_class_shared.png") > 0


def test_unknown_tap_is_an_error_naming_the_taps(gray_two_head_model):
    with pytest.raises(ValueError, match="no tap \\['fc'\\].*class"):
        evaluate.main(["--model", gray_two_head_model[0], "--dataset", "digits", "--tap", "fc"])


def test_report_of_a_run_directory_adds_its_training_curves(tmp_path):
    run_dir = tmp_path / "run"  # a run directory as train.py leaves it, with per-tap curves in log.csv
    run_dir.mkdir()
    tfdml.models.EmbeddingModel("small_cnn", embedding_dim=8, input_shape=(16, 16, 3)).save(str(run_dir / "final.keras"))
    tfdml.training.save_config(tfdml.training.load_config(None, ["dataset.image_size=16"]), str(run_dir / "config.yaml"))
    columns = ["tap_fc_train_recall@1", "tap_fc_test_recall@1", "tap_pool_train_recall@1", "tap_pool_test_recall@1"]
    rows = ["epoch,loss," + ",".join(columns)] + [f"{e},0.{5 - e},0.{5 + e},0.{4 + e},0.{6 + e},0.{3 + e}"
                                                  for e in range(3)]
    (run_dir / "log.csv").write_text("\n".join(rows) + "\n")
    evaluate.main(["--model", str(run_dir), "--dataset", "digits", "--report", str(tmp_path / "report"), "--quiet",
                   "--tsne-points", "200"])
    report = (tmp_path / "report" / "report.md").read_text()
    assert "tap_recall_at_1.png" in report and os.path.getsize(tmp_path / "report" / "tap_recall_at_1.png") > 0
    assert np.isfinite(json.loads((tmp_path / "report" / "metrics.json").read_text())["recall@1"])
