"""A result says what it is: a class-disjoint validation split for model selection, tables and metrics.json naming
the weights and the split, evaluate.py naming the weights it loaded, and every user error as one `error:` line."""
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tfdml.training import load_config
from tfdml.training.config import DEFAULT_CONFIG

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--set", "dataset.image_size=16", "--set", "model.embedding_dim=8", "--set", "training.epochs=2",
        "--set", "training.steps_per_epoch=2", "--set", "training.eval_every=1", "--set", "training.tensorboard=false",
        "--set", "training.evaluate_untrained=false", "--set", "training.taps=[fc]"]


def _cli(argv, capsys):
    from tfdml.cli.train import cli

    status = cli(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _errors(err):
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_default_run_selects_on_a_validation_split_carved_from_the_training_classes(tmp_path, capsys):
    from tfdml.training.runner import load_splits, validation_split

    config = load_config(None, [f"output_dir={tmp_path / 'run'}"])
    assert DEFAULT_CONFIG["dataset"]["validation_classes"] == config["dataset"]["validation_classes"] == 0.2
    full, test = load_splits(config)
    train, validation = validation_split(config, full)
    assert list(train.original_labels) == [0, 1, 2] and list(validation.original_labels) == [3, 4]
    assert list(test.original_labels) == [5, 6, 7, 8, 9]
    assert train.num_images + validation.num_images == full.num_images
    assert validation.class_names == ["3", "4"]
    assert validation_split(load_config(None, ["dataset.validation_classes=0"]), full)[1] is None
    with pytest.raises(ValueError, match="dataset.validation_classes.*fewer than 2"):
        validation_split(load_config(None, ["dataset.validation_classes=4"]), full)
    with pytest.raises(ValueError, match="dataset.validation_classes"):
        load_config(None, ["dataset.validation_classes=2.5"])

    status, out, err = _cli(["--output", str(tmp_path / "run")] + TINY, capsys)
    assert status == 0, err
    assert "validation: Split('digits validation', images=364, classes=2)" in out
    assert "val_* metrics and best.keras: validation split (best-by-validation)" in out
    assert "Test split, final weights (last epoch); best.keras is best-by-validation" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["weights"] == "final (last epoch)" and metrics["split"] == "test"
    assert metrics["best.keras"].startswith("best-by-validation") and 0 <= metrics["fc"]["recall@1"] <= 1

    import evaluate

    evaluate.main(["--model", str(tmp_path / "run"), "--quiet"])
    out = capsys.readouterr().out
    assert f"weights: {tmp_path / 'run' / 'best.keras'} (best-by-validation, epoch " in out
    assert "(test split)" in out


def test_paper_configs_keep_their_protocol_and_say_so():
    config = load_config("ee_cub200")
    assert config["dataset"]["validation_classes"] == 0
    assert load_config("ee_cub200", ["dataset.validation_classes=0.2"])["dataset"]["validation_classes"] == 0.2
    from tfdml.training.runner import describe_weights

    assert "best-on-test" in describe_weights(config, "best-on-test")["best.keras"]
    assert "papers' protocol" in describe_weights(config, "best-on-test")["best.keras"]


def test_sweep_reads_metrics_json_with_its_labels(tmp_path):
    from tfdml.training.sweep import collect

    (tmp_path / "metrics.json").write_text(json.dumps({"weights": "final (last epoch)", "split": "test",
                                                       "best.keras": "best-by-validation", "fc": {"recall@1": 0.5}}))
    rows = collect([{"run_dir": str(tmp_path), "config": "c", "point": {}, "seed": 0}], select="final")
    assert rows[0]["values"] == {"fc/recall@1": 0.5}


def test_malformed_yaml_is_one_error_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  epochs: [1, 2\nseed: 3\n")
    status, _, err = _cli(["--config", str(bad)], capsys)
    assert status == 2 and _errors(err) == [f"error: {bad} is not valid YAML (while parsing a flow sequence: "
                                            "expected ',' or ']', but got ':' at line 3, column 5)."], err
    status, _, err = _cli(["--set", "loss.params={margin: 0.1"], capsys)
    assert status == 2 and len(_errors(err)) == 1 and "--set 'loss.params={margin: 0.1' is not valid YAML" in err


def test_an_output_directory_that_cannot_be_created_is_one_error_line(tmp_path, capsys):
    (tmp_path / "file").write_text("not a directory")
    status, _, err = _cli(["--output", str(tmp_path / "file" / "run")] + TINY, capsys)
    assert status == 2 and len(_errors(err)) == 1 and "Cannot create or write the run directory" in err, err


def test_unknown_loss_parameter_lists_the_valid_ones(tmp_path, capsys):
    import tfdml

    with pytest.raises(ValueError, match="unexpected keyword argument 'marginx'; its parameters are: margin, mining"):
        tfdml.losses.get("triplet", marginx=0.1)
    status, _, err = _cli(["--output", str(tmp_path / "run"), "--set", "loss.params.marginx=0.1"] + TINY, capsys)
    assert status == 2 and len(_errors(err)) == 1 and "its parameters are: margin" in err


def test_a_full_disk_is_one_error_line_and_leaves_no_partial_checkpoint(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)],
                                                       capture_output=True).returncode != 0:
        pytest.skip("needs a small tmpfs (mount as root)")
    try:
        env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
        result = subprocess.run([sys.executable, "train.py", "--output", str(mount / "run"), "--set",
                                 "training.checkpoint_every=1"] + TINY, cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=240)
        assert result.returncode == 2, result.stderr[-3000:]
        errors = _errors(result.stderr)
        assert len(errors) == 1 and "No space left on device" in errors[0] and "{{" not in errors[0], result.stderr
        assert "Traceback" not in result.stderr
        assert not glob.glob(str(mount / "run" / "checkpoints" / "*_temp*"))
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_split_subset_keeps_original_labels_and_names():
    from tfdml.data import Split

    split = Split("s", [10, 10, 20, 30, 30], images=np.zeros((5, 2, 2, 3), np.uint8), class_names=["a", "b", "c"])
    part = split.subset([2, 3, 4], name="part")
    assert list(part.original_labels) == [20, 30] and part.class_names == ["b", "c"] and part.name == "part"
    assert list(part.labels) == [0, 1, 1]
