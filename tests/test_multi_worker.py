"""Two local worker processes (`TF_CONFIG`) running train.py: same weights as one process, and
a worker killed with SIGKILL resumes from the last checkpoint.

Every worker has a free port picked at run time and a timeout, and is killed by pid on any
failure; nothing is left running. Equality is checked with plain SGD and frozen BatchNorm
(BatchNorm normalises each replica's batch separately, as in any data-parallel run).
"""
import glob
import json
import os
import signal
import sys
import time

import keras
import numpy as np

from tfdml.training import load_config, run
from tfdml.training.local_cluster import start_local_workers, stop_workers, wait_for_workers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = ["dataset.image_size=16", "model.embedding_dim=8", "model.freeze_batchnorm=true", "sampler.batch_size=20",
        "sampler.samples_per_class=4", "dataset.validation_classes=0", "augmentation.train=test", "optimizer.name=sgd",
        "optimizer.learning_rate=0.05", "optimizer.momentum=0.0", "training.tensorboard=false",
        "training.eval_batch_size=512"]
LOSSES = {
    "triplet_hard_ee": ["loss.params={margin: 0.2, mining: hard}"],
    "triplet_hard": ["loss.params={margin: 0.2, mining: hard}", "expansion=null"],
    "proxy_nca": ["loss.name=proxy_nca", "loss.params={embedding_scale: 3.0, seed: 1}", "expansion=null"],
}
DRIVER = "import json, sys, train; [train.main(argv) for argv in json.loads(sys.argv[1])]"


def _argv(overrides):
    return [arg for override in overrides for arg in ("--set", override)]


def _env(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
               TF_CPP_MIN_LOG_LEVEL="2", TMPDIR=str(tmp_path / "worker_tmp"))
    os.makedirs(env["TMPDIR"], exist_ok=True)
    env.pop("TF_CONFIG", None)
    return env


def _start(tmp_path, runs, log_dir):
    command = [sys.executable, "-c", DRIVER, json.dumps([_argv(overrides) for overrides in runs])]
    return start_local_workers(command, 2, env=_env(tmp_path), log_dir=str(log_dir), cwd=ROOT)


def _log(log_dir, worker):
    with open(os.path.join(log_dir, f"worker{worker}.log")) as handle:
        return handle.read()


def _max_difference(path_a, path_b):
    a, b = keras.models.load_model(path_a), keras.models.load_model(path_b)
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a.get_weights(), b.get_weights()))


def _assert_clean(tmp_path):
    """The non-chief worker removed its temporary checkpoints."""
    assert not glob.glob(str(tmp_path / "worker_tmp" / "tfdml-worker-*"))


def test_two_workers_train_like_one_process_with_the_global_batch(tmp_path):
    runs = {name: BASE + ["training.epochs=1", "training.steps_per_epoch=3", f"output_dir={tmp_path / name}"] + extra
            for name, extra in LOSSES.items()}
    workers = _start(tmp_path, list(runs.values()), tmp_path / "logs")
    try:
        codes = wait_for_workers(workers, timeout=400)
    finally:
        stop_workers(workers)
    assert codes == [0, 0], _log(tmp_path / "logs", 0)[-3000:] + _log(tmp_path / "logs", 1)[-3000:]
    assert "MultiWorkerMirroredStrategy (2 replicas)" in _log(tmp_path / "logs", 0)
    for name, overrides in runs.items():
        reference = [o.replace(str(tmp_path / name), str(tmp_path / f"{name}_one_process")) for o in overrides]
        run(load_config(None, reference), verbose=0)
        difference = _max_difference(tmp_path / name / "final.keras", tmp_path / f"{name}_one_process" / "final.keras")
        assert difference < 1e-5, (name, difference)
        assert sorted(os.listdir(tmp_path / name)) == sorted(os.listdir(tmp_path / f"{name}_one_process"))
    _assert_clean(tmp_path)


def test_a_killed_worker_resumes_from_the_last_checkpoint_with_the_same_result(tmp_path):
    overrides = BASE + ["training.epochs=3", "training.steps_per_epoch=2", "training.checkpoint_every=1",
                        "training.eval_every=1", f"output_dir={tmp_path / 'run'}"]
    checkpoint_file = tmp_path / "run" / "checkpoints" / "checkpoint"
    workers = _start(tmp_path, [overrides], tmp_path / "logs_killed")
    try:
        deadline = time.monotonic() + 300
        while not checkpoint_file.exists():
            assert all(w.poll() is None for w in workers), _log(tmp_path / "logs_killed", 0)[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
        os.kill(workers[0].pid, signal.SIGKILL)  # the chief: it writes the checkpoints
        # The other worker's collectives fail once the chief is gone; it exits with an error.
        codes = wait_for_workers(workers, timeout=120)
    finally:
        stop_workers(workers)
    assert codes[0] == -signal.SIGKILL and codes[1] != 0
    indexes = glob.glob(str(checkpoint_file.parent / "ckpt-*.index"))
    steps_done = [int(path.split("ckpt-")[1].split(".")[0]) for path in indexes]
    assert steps_done and max(steps_done) < 6 and not (tmp_path / "run" / "final.keras").exists()

    workers = _start(tmp_path, [overrides], tmp_path / "logs_restarted")  # the same command again
    try:
        codes = wait_for_workers(workers, timeout=300)
    finally:
        stop_workers(workers)
    chief_log = _log(tmp_path / "logs_restarted", 0)
    assert codes == [0, 0], chief_log[-3000:] + _log(tmp_path / "logs_restarted", 1)[-3000:]
    assert "Resuming from epoch" in chief_log and f"the checkpoint at step {max(steps_done)} in" in chief_log

    reference = [o.replace(str(tmp_path / "run"), str(tmp_path / "uninterrupted")) for o in overrides]
    run(load_config(None, reference), verbose=0)
    assert _max_difference(tmp_path / "run" / "final.keras", tmp_path / "uninterrupted" / "final.keras") < 1e-5
    with open(tmp_path / "run" / "log.csv") as handle:
        assert [line.split(",")[0] for line in handle.read().splitlines()[1:]] == ["0", "1", "2"]
    _assert_clean(tmp_path)
