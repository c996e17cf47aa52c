"""Executes examples/quickstart.ipynb (code cells in order, one namespace) at reduced size."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDML_QUICKSTART_STEPS", "3")
    monkeypatch.setenv("TFDML_QUICKSTART_EPOCHS", "2")
    monkeypatch.setenv("TFDML_QUICKSTART_OUTPUT", str(tmp_path))
    with open(os.path.join(ROOT, "examples", "quickstart.ipynb")) as handle:
        notebook = json.load(handle)
    namespace = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), "quickstart.ipynb", "exec"), namespace)
    assert set(namespace["results"]) == {"pool", "fc"}
    assert len(namespace["history"].history["val_pool_recall@1"]) == 2
    assert os.path.exists(os.path.join(str(tmp_path), "saved_model", "saved_model.pb"))


def test_quickstart_notebook_prints_no_tensorflow_noise_nor_keras_warnings(tmp_path):
    """The notebook run in a fresh process (as a kernel would, its stderr captured at the file
    descriptor): no TensorFlow C++ start-up lines, no Keras `shuffle` warning."""
    script = tmp_path / "run.py"
    script.write_text(
        "import json\n"
        f"notebook = json.load(open({os.path.join(ROOT, 'examples', 'quickstart.ipynb')!r}))\n"
        "namespace = {}\n"
        "for cell in notebook['cells']:\n"
        "    if cell['cell_type'] == 'code':\n"
        "        exec(compile(''.join(cell['source']), 'quickstart.ipynb', 'exec'), namespace)\n")
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(TFDML_QUICKSTART_STEPS="2", TFDML_QUICKSTART_EPOCHS="1", TFDML_QUICKSTART_OUTPUT=str(tmp_path),
               PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600,
                          cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    for noise in ("absl::InitializeLog", "oneDNN", "cuda", "cuInit", "cpu_feature_guard", "shuffle"):
        assert noise not in done.stderr, done.stderr
