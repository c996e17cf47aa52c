"""Run directories (issue 15 item 4: lock, finished runs, resuming said) and training.deterministic (item 5)."""
import csv
import json
import os
import socket
import subprocess
import sys

import pytest

from tfdml.training import RunDirectory, RunDirectoryError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["dataset.image_size=16", "model.embedding_dim=8", "sampler.batch_size=20", "sampler.samples_per_class=4",
        "dataset.validation_classes=0", "training.epochs=1", "training.steps_per_epoch=2", "training.eval_every=1",
        "training.tensorboard=false", "training.taps=[fc]", "training.evaluate_untrained=false"]
HOLDER = ("import sys, time; from tfdml.training.run_directory import RunDirectory; "
          "held = RunDirectory(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(120)")


def _train(run_dir, *extra, overrides=(), quiet=True):
    import train

    return train.main((["--quiet"] if quiet else []) + ["--output", str(run_dir), *extra]
                      + [arg for override in TINY + list(overrides) for arg in ("--set", override)])


def _rows(run_dir):
    with open(os.path.join(run_dir, "log.csv")) as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def holder(tmp_path):
    """Another process holding the run directory `tmp_path / "run"`."""
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True,
                               env=env)
    try:
        assert process.stdout.readline().strip() == "locked"
        yield run_dir, process.pid
    finally:
        process.kill()
        process.wait()


def test_second_run_into_a_locked_directory_fails_naming_the_other_process(holder):
    run_dir, pid = holder
    with pytest.raises(RunDirectoryError, match=rf"in use by process {pid} on host {socket.gethostname()}"):
        _train(run_dir)
    assert sorted(os.listdir(run_dir)) == [".lock"]  # nothing written by the refused run


def test_lock_of_a_killed_process_is_taken_over_with_a_warning(holder):
    run_dir, pid = holder
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    with pytest.warns(UserWarning, match=rf"stale lock of process {pid} .*no longer running"):
        directory = RunDirectory(str(run_dir)).acquire()
    with open(run_dir / ".lock") as handle:
        assert json.load(handle)["pid"] == os.getpid()
    directory.release()
    assert not (run_dir / ".lock").exists()


def test_finished_run_is_kept_unless_overwrite_and_a_resumed_run_says_so(tmp_path, capsys):
    run_dir = tmp_path / "run"
    _train(run_dir)
    log, metrics = (run_dir / "log.csv").read_text(), (run_dir / "metrics.json").read_text()
    with pytest.raises(RunDirectoryError, match="finished run.*--overwrite"):
        _train(run_dir)
    assert (run_dir / "log.csv").read_text() == log and (run_dir / "metrics.json").read_text() == metrics
    assert not (run_dir / ".lock").exists()

    _train(run_dir, "--overwrite")
    assert [row["epoch"] for row in _rows(run_dir)] == ["0"]  # trained again, log.csv not appended to

    os.remove(run_dir / "metrics.json")  # as if killed after the checkpoint of epoch 1
    config = (run_dir / "config.yaml").read_text()
    changed = r"optimizer\.learning_rate: 0\.001 -> 0\.01; training\.epochs: 1 -> 2\."
    with pytest.raises(RunDirectoryError, match=r"another config \(resuming at epoch 1\); changed keys: " + changed):
        _train(run_dir, overrides=["training.epochs=2", "optimizer.learning_rate=0.01"])
    assert (run_dir / "config.yaml").read_text() == config and not (run_dir / ".lock").exists()
    capsys.readouterr()
    with pytest.warns(UserWarning, match="resuming at epoch 1 with a changed config"):
        _train(run_dir, "--allow-config-change", overrides=["training.epochs=2"], quiet=False)
    assert "Resuming from epoch 2/2 (step 2)" in capsys.readouterr().out
    assert [row["epoch"] for row in _rows(run_dir)] == ["0", "1"]
    assert (run_dir / "config.before_epoch1.yaml").read_text() == config
    assert "epochs: 2" in (run_dir / "config.yaml").read_text()
    changes = json.loads((run_dir / "config_changes.json").read_text())
    assert changes == [{"epoch": 1, "step": 2, "previous_config": "config.before_epoch1.yaml",
                        "changed": {"training.epochs": {"from": 1, "to": 2}}}]


def test_deterministic_runs_give_identical_logs(tmp_path):
    overrides = TINY + ["training.epochs=2", "training.steps_per_epoch=3", "training.deterministic=true",
                        "augmentation.train=ee"]
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    processes = [subprocess.Popen([sys.executable, "train.py", "--quiet", "--output", str(tmp_path / name)]
                                  + [arg for override in overrides for arg in ("--set", override)],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for name in ("a", "b")]
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert len(a) == 2 and "loss" in a[0]
    for row_a, row_b in zip(a, b):
        assert {k: v for k, v in row_a.items() if "time" not in k} == {k: v for k, v in row_b.items()
                                                                        if "time" not in k}
