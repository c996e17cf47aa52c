"""Nothing hangs: a multi-worker start whose peer never answers, SIGTERM / Ctrl-C at any time, corrupt images.

Every case runs `train.py` in a subprocess with a deadline (`subprocess.run(timeout=...)` or a polling loop);
the process must end by itself before it.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tfdml.training.local_cluster import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--set", "training.epochs=1", "--set", "training.steps_per_epoch=2", "--set", "training.tensorboard=false",
         "--set", "training.evaluate_untrained=false", "--set", "dataset.image_size=16", "--set",
         "model.embedding_dim=8"]


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", **extra)
    if "TF_CONFIG" not in extra:
        env.pop("TF_CONFIG", None)
    return env


def _tf_config_with_absent_peer():
    own, absent = free_ports(2)
    cluster = {"worker": [f"localhost:{own}", f"localhost:{absent}"]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}), absent


def test_a_peer_that_never_answers_gives_a_one_line_error_after_the_cluster_timeout(tmp_path):
    tf_config, absent = _tf_config_with_absent_peer()
    start = time.monotonic()
    result = subprocess.run([sys.executable, "train.py", "--output", str(tmp_path / "run"),
                             "--set", "training.cluster_timeout=4"] + SMALL,
                            cwd=ROOT, env=_env(TF_CONFIG=tf_config), capture_output=True, text=True, timeout=180)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"worker 1 (localhost:{absent})" in errors[0], result.stderr[-3000:]
    assert "training.cluster_timeout" in errors[0] and "Traceback" not in result.stderr
    assert "Waiting for the cluster" in result.stdout and f"localhost:{absent}" in result.stdout
    assert time.monotonic() - start < 150
    assert not (tmp_path / "run").exists()  # a failed start leaves nothing


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_ends_the_wait_for_the_cluster(tmp_path, signum, status):
    tf_config, _ = _tf_config_with_absent_peer()
    process = subprocess.Popen([sys.executable, "train.py", "--output", str(tmp_path / "run")] + SMALL,
                               cwd=ROOT, env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 150
        line = ""
        while "Waiting for the cluster" not in line:
            line = process.stdout.readline()
            assert line or process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline
        time.sleep(1.0)
        process.send_signal(signum)
        assert process.wait(timeout=30) == status
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigterm_during_training_ends_the_run_and_leaves_the_last_checkpoint_usable(tmp_path):
    import tensorflow as tf

    run_dir = tmp_path / "run"
    command = [sys.executable, "train.py", "--output", str(run_dir), "--set", "training.epochs=500", "--set",
               "training.checkpoint_every=1"] + SMALL[4:]
    process = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 240
        while not glob.glob(str(run_dir / "checkpoints" / "ckpt-2.index")):
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 143
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    assert latest is not None and tf.train.load_checkpoint(latest).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") >= 2
    assert not glob.glob(str(run_dir / "checkpoints" / "*_temp*"))
    assert not (run_dir / ".lock").exists()
