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
                             "--quiet"])
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
    from tfdml.training import load_config, run

    run_dir = tmp_path / "run"
    run(load_config(None, [f"output_dir={run_dir}", "dataset.image_size=16", "model.embedding_dim=8",
                           "sampler.batch_size=20", "sampler.samples_per_class=4", "training.epochs=2",
                           "training.steps_per_epoch=2", "training.eval_every=1", "training.tensorboard=false",
                           "training.evaluate_untrained=false", "analysis.tap_metrics=[recall]"]), verbose=0)
    evaluate.main(["--model", str(run_dir), "--dataset", "digits", "--report", str(tmp_path / "report"), "--quiet"])
    report = (tmp_path / "report" / "report.md").read_text()
    assert "tap_recall_at_1.png" in report and os.path.getsize(tmp_path / "report" / "tap_recall_at_1.png") > 0
    assert np.isfinite(json.loads((tmp_path / "report" / "metrics.json").read_text())["recall@1"])
