"""Executes examples/quickstart.ipynb (code cells in order, one namespace) at reduced size."""
import json
import os

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
