"""A non-editable install: configs as package data, console scripts, bounded dependencies, tfds as an extra."""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

import tfdml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the sources (the build leaves build/ and *.egg-info where it runs)."""
    work = tmp_path_factory.mktemp("package")
    source = work / "source"
    source.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source / name)
    for name in ("tfdml", "configs"):
        shutil.copytree(os.path.join(ROOT, name), source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(work / "dist"), str(source)], check=True, timeout=120)
    (path,) = (work / "dist").glob("tfdml-*.whl")
    return path


def _read(archive, suffix):
    (name,) = [n for n in archive.namelist() if n.endswith(suffix)]
    return archive.read(name).decode()


def test_wheel_ships_every_config_once_and_the_console_scripts(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = _read(archive, ".dist-info/entry_points.txt")
        metadata = _read(archive, ".dist-info/METADATA")
    shipped = sorted(n for n in names if n.startswith("tfdml/configs/"))
    expected = sorted(f"tfdml/configs/{n}" for n in os.listdir(os.path.join(ROOT, "configs")) if n.endswith(".yaml"))
    assert shipped == expected and "tfdml/configs/default.yaml" in shipped
    assert "tfdml/__main__.py" in names and "tfdml/cli/train.py" in names
    for script, target in (("tfdml-train", "tfdml.cli.train:cli"), ("tfdml-evaluate", "tfdml.cli.evaluate:cli"),
                           ("tfdml-sweep", "tfdml.cli.sweep:cli"), ("tfdml-weights", "tfdml.cli.weights:cli")):
        assert f"{script} = {target}" in entry_points
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert "tensorflow<3,>=2.16" in requires and "keras<4,>=3.0" in requires and "tensorboard" in requires
    tfds = [r for r in requires if r.startswith("tensorflow-datasets")]
    assert tfds and all('extra == "datasets"' in r or 'extra == "test"' in r for r in tfds)
    # Users never need torch: the reference networks are the test extra's only.
    reference = [r for r in requires if r.split("=")[0].split("<")[0].strip() in ("torch", "torchvision",
                                                                               "pretrainedmodels")]
    assert len(reference) == 3 and all('extra == "test"' in r for r in reference)


def test_installed_package_finds_a_config_by_name_from_any_directory(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", "--target",
                    str(target), str(wheel)], check=True, timeout=120)
    assert (target / "tfdml" / "configs" / "ee_cub200.yaml").is_file()
    code = ("import tfdml.training.config as c; print(c.find_config('ee_cub200')); "
            "print(c.load_config('ee_cub200')['dataset']['name'])")
    env = dict(os.environ, PYTHONPATH=str(target), TF_CPP_MIN_LOG_LEVEL="2")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True,
                            timeout=120, check=True)
    path, dataset = result.stdout.split()
    assert path == str(target / "tfdml" / "configs" / "ee_cub200.yaml") and dataset == "cub200"


def test_missing_tensorflow_datasets_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # `import tensorflow_datasets` fails
    with pytest.raises(tfdml.data.MissingDependencyError, match=r'pip install "tfdml\[datasets\]"'):
        tfdml.data.load_split("cub200", "train")
