"""The command-line tools: python -m tfdml, error lines and exit status, --debug, progress verbosity, quiet start-up,
no run directory left by a failed start."""
import os
import subprocess
import sys

import pytest

from tfdml import _startup
from tfdml.cli.common import progress_verbosity

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["dataset.image_size=16", "model.embedding_dim=8", "sampler.batch_size=20", "sampler.samples_per_class=4",
        "dataset.validation_classes=0", "training.epochs=1", "training.steps_per_epoch=2", "training.eval_every=1",
        "training.tensorboard=false", "training.taps=[fc]"]


def _sets(overrides):
    return [arg for override in overrides for arg in ("--set", override)]


def _tool(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the tools set it themselves
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_python_m_tfdml_lists_the_commands(capsys):
    from tfdml.__main__ import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "python -m tfdml {train,evaluate,sweep,weights}" in out and "tfdml-weights" in out
    assert main([]) == 2 and "commands:" in capsys.readouterr().err
    assert main(["fit"]) == 2 and "unknown command 'fit'" in capsys.readouterr().err


def test_user_error_is_one_line_with_status_2_in_a_real_process():
    result = _tool("train.py", "--set", "training.epochs=0")
    assert result.returncode == 2, result.stderr
    assert result.stderr == "error: Config key 'training.epochs' must be >= 1, got 0.\n"


@pytest.mark.parametrize("tool, args, message", [
    ("evaluate", ["--model", "no/such/model"], "error: 'no/such/model' is not a run directory"),
    ("sweep", ["--config", "ee_cub20", "--plan"], "error: Config 'ee_cub20' is neither a file nor a config "),
    ("train", ["--set", "training.epochs=0"], "error: Config key 'training.epochs' must be >= 1, got 0."),
])
def test_evaluate_sweep_and_train_errors_are_one_line(tool, args, message, capsys):
    """In-process (the subprocess path is covered above): the console entry point returns 2 and prints one line."""
    import importlib

    cli = importlib.import_module(f"tfdml.cli.{tool}").cli
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    with pytest.raises((ValueError, FileNotFoundError)):  # --debug: the exception itself, with its traceback
        cli(args + ["--debug"])


def test_train_quiet_prints_only_the_table_and_no_tensorflow_start_up_lines(tmp_path):
    run_dir = tmp_path / "run"
    result = _tool("-m", "tfdml", "train", "--quiet", "--output", str(run_dir), *_sets(TINY), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    title, *lines = result.stdout.splitlines()
    assert title.startswith("Test split, final weights (last epoch); best.keras is best-on-test"), result.stdout
    assert lines[0].split() == ["tap", "|", "R@1", "|", "R@2", "|", "R@4", "|", "R@8", "|", "NMI"], result.stdout
    assert lines[1].lstrip().startswith("untrained fc |") and lines[2].lstrip().startswith("trained fc |")
    assert lines[3:] == [f"run directory: {run_dir}"]
    for noise in ("absl::InitializeLog", "I0000", "cuInit", "cudart_stub"):
        assert noise not in result.stderr, result.stderr


def test_filtered_stderr_drops_only_start_up_noise(capfd, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    noise = [b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
             b"I0000 00:00:1796301530.396488    5564 port.cc:153] oneDNN custom operations are on.\n",
             b"E0000 00:00:1796301537.157829    5564 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA\n"]
    real = [b"E0000 00:00:1796301537.157829    5564 something.cc:1] a real error\n", b"Segmentation fault hint\n"]
    with _startup.filtered_stderr(True) as dropped:
        for line in noise[:2] + real[:1] + noise[2:] + real[1:]:
            os.write(2, line)
    expected = [n.decode().rstrip("\n") for n in noise]
    if os.path.exists("/dev/nvidiactl"):
        expected = expected[:2]
    assert dropped == expected
    assert capfd.readouterr().err.encode().count(b"real error") == 1
    with _startup.filtered_stderr(False) as dropped:
        os.write(2, noise[0])
    assert dropped == [] and "absl" in capfd.readouterr().err


@pytest.mark.parametrize("argv, expected", [
    (["python", "train.py"], True), (["python", "/x/tfdml-train", "--set", "a=1"], True),
    (["python", "-m", "tfdml", "train"], True), (["python", "-u", "-W", "ignore", "evaluate.py"], True),
    (["python", "-m", "pytest"], False), (["python", "-c", "import tfdml"], False), (["python", "my_script.py"], False),
])
def test_cli_command_detection(argv, expected):
    assert _startup.cli_command(argv) is expected
    assert _startup.prepare_cli(argv + ["--debug"]) is False


def test_progress_verbosity(monkeypatch):
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    from tfdml.cli.train import build_parser

    parse = build_parser().parse_args
    assert progress_verbosity(parse([]), Stream(True)) == 1  # a step bar on a terminal
    assert progress_verbosity(parse([]), Stream(False)) == 2  # a line per epoch in a log file
    assert progress_verbosity(parse(["--verbose"]), Stream(False)) == 1
    assert progress_verbosity(parse(["--quiet"]), Stream(True)) == 0
    with pytest.raises(SystemExit):
        parse(["--quiet", "--verbose"])


def test_train_verbose_shows_step_progress(tmp_path, capsys):
    import train

    train.main(["--verbose", "--output", str(tmp_path / "run"), *_sets(TINY + ["training.steps_per_epoch=3"])])
    out = capsys.readouterr().out
    assert "1/3" in out and "━" in out and "train: Split" in out  # the bar, drawn from the first step on


def test_failed_start_removes_the_run_directory_it_created(tmp_path):
    import train

    run_dir = tmp_path / "run"
    args = ["--output", str(run_dir), "--set", "dataset.name=folder", "--set", f"dataset.data_dir={tmp_path / 'none'}"]
    with pytest.raises(FileNotFoundError, match="none"):
        train.main(args + _sets(TINY))
    assert not run_dir.exists()
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(FileNotFoundError):
        train.main(args + _sets(TINY))
    assert (run_dir / "notes.txt").read_text() == "mine"  # a directory this run did not create is kept


def test_the_default_run_shortened_to_three_evaluations_runs_every_default_feature(tmp_path):
    """`python train.py` with every default (validation split, TensorBoard, retrieval examples, untrained
    baseline, both taps) and only fewer steps: exit 0 and the run directory's outputs."""
    output = tmp_path / "default"
    result = _tool("train.py", "--output", str(output), *_sets(["training.epochs=3", "training.steps_per_epoch=2",
                                                                "training.eval_every=1"]))
    assert result.returncode == 0, result.stderr
    assert "val_* metrics and best.keras: validation split" in result.stdout
    assert "retracing" not in result.stdout + result.stderr  # evaluations reuse one traced search
    for name in ("best.keras", "final.keras", "metrics.json", "log.csv", "saved_model"):
        assert (output / name).exists(), name
    assert any((output / "tensorboard" / "retrieval").glob("events.out.tfevents.*"))
