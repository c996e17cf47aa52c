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


def _write_images(root, classes=4, per_class=6, extension="jpg"):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for c in range(classes):
        os.makedirs(root / f"class{c}", exist_ok=True)
        for i in range(per_class):
            image = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
            data = tf.io.encode_jpeg(image) if extension == "jpg" else tf.io.encode_png(image)
            tf.io.write_file(str(root / f"class{c}" / f"{i}.{extension}"), data)


def _corrupt(root):
    """A truncated JPEG and a zero-byte file in train classes, text named .jpg in a test class."""
    data = (root / "class0" / "0.jpg").read_bytes()
    (root / "class0" / "0.jpg").write_bytes(data[: len(data) // 2])
    (root / "class1" / "empty.jpg").write_bytes(b"")
    (root / "class2" / "text.jpg").write_text("not an image")
    return [root / "class0" / "0.jpg", root / "class1" / "empty.jpg", root / "class2" / "text.jpg"]


FOLDER = ["--set", "dataset.name=folder", "--set", "sampler.batch_size=8", "--set", "sampler.samples_per_class=4",
          "--set", "dataset.validation_classes=0"]  # 2 training classes: none to hold out


def _train_on(tmp_path, data, *extra, timeout=240):
    return subprocess.run([sys.executable, "train.py", "--set", f"dataset.data_dir={data}", "--output",
                           str(tmp_path / "run")] + FOLDER + SMALL + list(extra),
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)


def test_header_check_finds_truncated_empty_and_non_image_files(tmp_path):
    from PIL import Image

    from tfdml.data.split import find_unreadable_images, image_file_problem

    _write_images(tmp_path, classes=3, per_class=1)
    _write_images(tmp_path / "png", classes=1, per_class=1, extension="png")
    good = [tmp_path / "class1" / "0.jpg", tmp_path / "png" / "class0" / "0.png"]
    for fmt in ("GIF", "BMP", "WEBP"):
        good.append(tmp_path / f"ok.{fmt.lower()}")
        Image.new("RGB", (9, 7), (200, 10, 10)).save(good[-1], format=fmt)
    png = (tmp_path / "png" / "class0" / "0.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(png[: len(png) - 20])
    bad = _corrupt(tmp_path) + [tmp_path / "truncated.png", tmp_path / "missing.jpg"]
    assert [image_file_problem(str(path)) for path in good] == [None] * len(good)
    found = find_unreadable_images([str(p) for p in good + bad])
    assert [path for path, _ in found] == [str(p) for p in bad]
    assert [reason.split(" (")[0] for _, reason in found] == [
        "truncated JPEG", "empty file", "not a JPEG/PNG/GIF/BMP/WebP image", "truncated PNG", "file not found"]


def test_corrupt_images_stop_the_start_with_one_error_line(tmp_path):
    _write_images(tmp_path / "data")
    bad = _corrupt(tmp_path / "data")
    result = _train_on(tmp_path, tmp_path / "data")
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(bad[0]) in errors[0] and "dataset.skip_corrupt" in errors[0], result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_skip_corrupt_leaves_the_files_out_and_lists_them_in_the_run_directory(tmp_path):
    _write_images(tmp_path / "data")
    bad = _corrupt(tmp_path / "data")
    result = _train_on(tmp_path, tmp_path / "data", "--set", "dataset.skip_corrupt=true")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped 2 image files" in result.stderr and "skipped 1 image files" in result.stderr
    listed = (tmp_path / "run" / "skipped_files.txt").read_text().splitlines()
    assert [line.split("\t")[:2] for line in listed] == [["train", str(bad[0])], ["train", str(bad[1])],
                                                        ["test", str(bad[2])]]


def test_an_image_that_fails_to_decode_during_training_ends_the_process_with_one_line(tmp_path):
    _write_images(tmp_path / "data")
    bad = tmp_path / "data" / "class1" / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xffnot-image-data\xff\xd9")  # passes the header check, fails to decode
    result = _train_on(tmp_path, tmp_path / "data")
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(bad) in errors[0] and "Traceback" not in result.stderr, result.stderr[-3000:]


def test_folder_loads_every_decodable_format_and_reports_what_it_left_out(tmp_path):
    from PIL import Image

    from tfdml.data import load_split

    _write_images(tmp_path, classes=4, per_class=2)
    Image.new("RGB", (9, 7), (200, 10, 10)).save(tmp_path / "class0" / "extra.webp", format="WEBP")
    (tmp_path / "class0" / "notes.txt").write_text("labels")
    os.makedirs(tmp_path / "class_empty")
    with pytest.warns(UserWarning, match=r"left out 1 files that are not images .* and 1 class folders without "
                                         r"images \(class_empty\)"):
        train = load_split("folder", "train", str(tmp_path))
    test = load_split("folder", "test", str(tmp_path))
    assert str(tmp_path / "class0" / "extra.webp") in train.paths and train.num_images == 5
    assert train.class_names == ["class0", "class1"] and test.class_names == ["class2", "class3"]
    assert sorted(reason for _, reason in train.skipped) == ["class folder without images",
                                                             "not an image file (name ending)"]
    images = list(train.image_dataset().as_numpy_iterator())
    assert images[2][0].shape == (7, 9, 3)
