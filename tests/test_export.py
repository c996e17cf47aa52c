"""tfdml.export: retrieval signatures checked in a fresh process, 1-channel models, stored input size,
corrupt model files (truncated for real) and evaluate.py on them."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdml
from tfdml.models import EmbeddingModel
from tfdml.models.export import load_exported, load_keras_model
from tfdml.retrieval import Index

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _model(channels=3, size=16):
    return EmbeddingModel("small_cnn", embedding_dim=8, input_shape=(size, size, channels))


def _images(n, channels=3, size=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, channels)).astype(np.uint8)


def _run(script, tmp_path):
    """Runs `script` in a fresh Python process (timeout, no GPU) and returns its JSON output."""
    out = tmp_path / "out.json"
    code = "import json, numpy as np, tensorflow as tf\n" + script + f"\njson.dump(result, open({str(out)!r}, 'w'))\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300,
                   env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"})
    return json.loads(out.read_text())


def test_retrieve_signature_in_fresh_process_equals_python_index(tmp_path):
    model = _model()
    embedder = model.embedder("fc")
    gallery = _images(60)
    labels = np.arange(60) % 6
    ids = np.array([f"item-{i}" for i in range(60)])
    data = tf.data.Dataset.from_tensor_slices((gallery.astype(np.float32), labels)).batch(25)
    index = Index.from_dataset(embedder, data, ids=ids, verbose=False)
    export_dir = str(tmp_path / "served")
    tfdml.export(model, export_dir, tap="fc", index=index, k=5)
    queries = np.concatenate([gallery[:4], _images(4, seed=1)])
    np.save(tmp_path / "queries.npy", queries)
    result = _run(
        f"m = tf.saved_model.load({export_dir!r})\n"
        f"x = np.load({str(tmp_path / 'queries.npy')!r})\n"
        "r = m.signatures['retrieve'](images=tf.constant(x.astype('float32')))\n"
        "u = m.signatures['retrieve_uint8'](images=tf.constant(x))\n"
        "e = m.signatures['serving_default'](images=tf.constant(x.astype('float32')))['embeddings']\n"
        "s = m.signatures['search'](embeddings=e)\n"
        "result = {'retrieve': {k: v.numpy().tolist() for k, v in r.items()},\n"
        "          'uint8': {k: v.numpy().tolist() for k, v in u.items()},\n"
        "          'search': {k: v.numpy().tolist() for k, v in s.items()},\n"
        "          'embeddings': e.numpy().tolist(), 'input_shape': m.input_shape.numpy().tolist()}\n"
        "for part in ('retrieve', 'uint8', 'search'):\n"
        "    result[part]['ids'] = [[i.decode() for i in row] for row in result[part]['ids']]\n",
        tmp_path)
    served_embeddings = np.array(result["embeddings"], np.float32)
    # Same embeddings → the served search equals the Python index exactly.
    python = index.search(served_embeddings, k=5)
    np.testing.assert_array_equal(result["search"]["indices"], python.indices)
    np.testing.assert_array_equal(result["search"]["labels"], python.labels)
    np.testing.assert_allclose(result["search"]["distances"], python.distances, rtol=1e-6)
    # Raw images: the served graph embeds and searches like the Python index searching the same images.
    by_images = index.search(queries.astype(np.float32), k=5)
    np.testing.assert_array_equal(result["retrieve"]["indices"], by_images.indices)
    np.testing.assert_array_equal(np.array(result["retrieve"]["ids"]), by_images.ids)
    np.testing.assert_array_equal(result["uint8"]["indices"], by_images.indices)
    np.testing.assert_array_equal(np.array(result["retrieve"]["indices"])[:4, 0], np.arange(4))  # finds itself
    assert result["input_shape"] == [16, 16, 3]


def test_one_channel_model_exports_and_serves(tmp_path):
    model = _model(channels=1)
    export_dir = str(tmp_path / "gray")
    embeddings = model.embedder("fc")(_images(10, channels=1).astype(np.float32)).numpy()
    tfdml.export(model, export_dir, tap="fc", index=Index(embeddings, np.arange(10) % 2), k=3)
    loaded = tf.saved_model.load(export_dir)
    images = _images(3, channels=1, seed=5)
    served = loaded.signatures["serving_uint8"](images=tf.constant(images))["embeddings"].numpy()
    expected = model.embedder("fc")(images.astype(np.float32)).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)
    found = loaded.signatures["retrieve_uint8"](images=tf.constant(_images(10, channels=1)))
    np.testing.assert_array_equal(found["indices"].numpy()[:, 0], np.arange(10))
    np.testing.assert_array_equal(loaded.input_shape.numpy(), [16, 16, 1])
    with pytest.raises(ValueError, match="dimensional"):
        tfdml.export(model, str(tmp_path / "bad"), tap="pool", index=Index(embeddings))


def _truncate(path, keep=0.5):
    data = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data[:int(len(data) * keep)])


@pytest.mark.parametrize("part", ["saved_model.pb", "variables/variables.data-00000-of-00001"])
def test_truncated_saved_model_gives_clear_error(tmp_path, part):
    export_dir = str(tmp_path / "served")
    tfdml.export(_model(), export_dir)
    _truncate(os.path.join(export_dir, part))
    with pytest.raises(ValueError, match="corrupt or truncated.*export it again"):
        load_exported(export_dir)


def test_truncated_keras_file_gives_clear_error(tmp_path):
    path = str(tmp_path / "best.keras")
    _model().save(path)
    _truncate(path)
    with pytest.raises(ValueError, match="best.keras.*corrupt or truncated"):
        load_keras_model(path)


def _run_dir(tmp_path, model):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("dataset:\n  image_size: 16\n")
    model.save(str(run_dir / "best.keras"))
    model.save(str(run_dir / "final.keras"))
    return run_dir


def test_evaluate_falls_back_to_final_keras_when_best_is_corrupt(tmp_path):
    import evaluate

    model = _model()
    run_dir = _run_dir(tmp_path, model)
    expected = evaluate.main(["--model", str(run_dir / "final.keras"), "--dataset", "digits", "--quiet"])
    _truncate(str(run_dir / "best.keras"))
    with pytest.warns(UserWarning, match="best.keras.*Falling back to.*final.keras"):
        got = evaluate.main(["--model", str(run_dir), "--dataset", "digits", "--quiet"])
    assert got["fc"]["recall@1"] == expected["fc"]["recall@1"]
    os.remove(run_dir / "final.keras")
    with pytest.raises(ValueError, match="best.keras.*corrupt or truncated"):
        evaluate.main(["--model", str(run_dir), "--dataset", "digits", "--quiet"])


def test_evaluate_saved_model_without_image_size_and_report_path(tmp_path, capsys, monkeypatch):
    import evaluate

    model = _model()
    export_dir = str(tmp_path / "saved_model")
    tfdml.export(model, export_dir, tap="fc")
    served = evaluate.main(["--model", export_dir, "--dataset", "digits", "--quiet"])  # size read from the export
    keras_result = evaluate.main(["--model", str(_run_dir(tmp_path, model) / "final.keras"), "--dataset", "digits",
                                  "--quiet"])
    queries = tfdml.data.load_split("digits", "test", image_size=16).num_images
    assert served["output"]["recall@1"] == pytest.approx(keras_result["fc"]["recall@1"], abs=3 / queries)
    capsys.readouterr()

    def write_report(directory, embeddings, labels, *args, **kwargs):  # the report itself: tests/test_training.py
        os.makedirs(directory, exist_ok=True)
        (tmp_path / "report" / "report.md").write_text("# report\n")
        return tfdml.metrics.evaluate_embeddings(embeddings, labels, metrics=("recall", "nmi"), verbose=False)

    monkeypatch.setattr(tfdml.analysis, "write_report", write_report)
    report_dir = tmp_path / "report"
    evaluate.main(["--model", export_dir, "--dataset", "digits", "--quiet", "--report", str(report_dir),
                   "--output", str(tmp_path / "metrics.json")])
    printed = capsys.readouterr().out
    assert f"report: {report_dir / 'report.md'}" in printed
    assert f"metrics: {tmp_path / 'metrics.json'}" in printed


def test_signatures_name_the_pixel_range_and_take_encoded_image_bytes(tmp_path):
    model = _model()
    images = _images(4, seed=3)
    references = model.embedder("fc")(_images(6).astype(np.float32)).numpy()
    tfdml.export(model, str(tmp_path / "m"), tap="fc", index=Index(references, np.arange(6) % 3), k=2)
    loaded = tf.saved_model.load(str(tmp_path / "m"))
    assert {"serving_float_0_255", "serving_encoded", "retrieve_float_0_255", "retrieve_encoded"} <= set(
        loaded.signatures)
    assert "[0, 255] (not [0, 1]" in loaded.expected_input.numpy().decode()
    expected = loaded.signatures["serving_uint8"](images=tf.constant(images))["embeddings"].numpy()
    floats = loaded.signatures["serving_float_0_255"](images=tf.constant(images.astype(np.float32)))
    np.testing.assert_allclose(floats["embeddings"].numpy(), expected, atol=1e-6)
    encoded = tf.constant([tf.io.encode_png(image).numpy() for image in images])  # lossless
    served = loaded.signatures["serving_encoded"](encoded=encoded)["embeddings"].numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)
    found = loaded.signatures["retrieve_encoded"](encoded=encoded)
    by_pixels = loaded.signatures["retrieve_uint8"](images=tf.constant(images))
    np.testing.assert_array_equal(found["indices"].numpy(), by_pixels["indices"].numpy())
    larger = tf.constant([tf.io.encode_png(np.repeat(np.repeat(images[0], 2, 0), 2, 1)).numpy()])
    assert loaded.signatures["serving_encoded"](encoded=larger)["embeddings"].shape == (1, 8)  # resized inside


def test_exported_index_stores_the_reference_embeddings_once(tmp_path):
    model = _model()
    references = np.random.default_rng(0).normal(size=(700, 8)).astype(np.float32)
    index = Index(references, labels=np.arange(700) % 7, block_size=256)  # padded to 768 rows for the matmuls
    export_dir = str(tmp_path / "served")
    tfdml.export(model, export_dir, tap="fc", index=index, k=3)
    stored = [shape for _, shape in tf.train.list_variables(os.path.join(export_dir, "variables", "variables"))]
    assert sum(1 for shape in stored if len(shape) == 2 and shape[0] >= 700 and shape[1] == 8) == 1
    served = tf.saved_model.load(export_dir).signatures["search"](embeddings=tf.constant(references[:5]))
    expected = index.search(references[:5], k=3)
    np.testing.assert_array_equal(served["indices"].numpy(), expected.indices)
    np.testing.assert_array_equal(served["indices"].numpy()[:, 0], np.arange(5))
