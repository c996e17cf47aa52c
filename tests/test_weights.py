"""Published ImageNet sources, `weights=` resolution (file, source, "imagenet"), download + checksum + cache,
the `tfdml-weights` command and the paper configs' weights. Feature equality with the reference networks is in
tests/test_reference_*.py; here the reference is torchvision's ResNet-18 (small and fast)."""
import hashlib
import glob
import os
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest

from reference_torch import randomize, state_dict_numpy, to_nchw, torch, torchvision
from tfdml.cli import weights as weights_cli
from tfdml.models import EmbeddingModel, backbone_names
from tfdml.models.backbones import backbone_spec
from tfdml.training.config import load_config
from tfdml.training.runner import build_model
from tfdml.weights import (IMAGENET_DEFAULTS, SOURCES, StateDictMismatchError, WeightSource, WeightsDownloadError,
                           load, sources)

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")
SIZE = 64
IMAGES = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def reference():
    """A randomised torchvision ResNet-18, its pooled features on IMAGES, and its state dict saved as .pth."""
    net = randomize(torchvision.models.resnet18(weights=None), seed=3)
    with torch.no_grad():
        x = to_nchw(((IMAGES / 255.0 - MEAN) / STD).astype(np.float32))
        features = net.avgpool(net.layer4(net.layer3(net.layer2(net.layer1(
            net.maxpool(net.relu(net.bn1(net.conv1(x))))))))).flatten(1).numpy()
    return net, features


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(load.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _pool(model):
    return keras.Model(model.inputs[0], model.get_layer("pool").output)(IMAGES).numpy()


def _assert_close(features, expected):
    assert np.max(np.abs(features - expected)) <= 1e-4 * np.max(np.abs(expected))


def _save(net, path, legacy=False):
    torch.save(net.state_dict(), str(path), _use_new_zipfile_serialization=not legacy)
    return str(path)


def test_every_source_fits_a_registered_backbone_with_a_pytorch_layout():
    for source in SOURCES.values():
        assert source.backbone in backbone_names(), source.name
        assert backbone_spec(source.backbone).torch_layers is not None, source.name
        assert source.url.endswith(source.file_name) and source.hash_prefix, source.name
        assert 60 < source.top1 < 90
    for backbone, name in IMAGENET_DEFAULTS.items():
        assert SOURCES[name].backbone == backbone and SOURCES[name].papers


def test_hash_prefix_is_read_from_the_published_name():
    assert SOURCES["pretrainedmodels/resnet50"].hash_prefix == "19c8e357"
    assert SOURCES["pretrainedmodels/bninception"].hash_prefix == "52deb4733"
    assert WeightSource("x", "resnet18", "https://h/model.pth", 70.0).hash_prefix is None


@pytest.mark.parametrize("legacy", [False, True])
def test_pth_file_loads_into_the_model_and_gives_the_reference_features(reference, tmp_path, legacy):
    net, expected = reference
    path = _save(net, tmp_path / "r18.pth", legacy)
    model = EmbeddingModel("resnet18", embedding_dim=8, weights=path, input_shape=(SIZE, SIZE, 3))
    _assert_close(_pool(model), expected)


def test_keras_weights_file_and_convert_command_round_trip(reference, tmp_path, capsys):
    net, expected = reference
    out = str(tmp_path / "r18.weights.h5")
    assert weights_cli.cli(["convert", "resnet18", _save(net, tmp_path / "r18.pth"), out]) == 0
    assert "wrote" in capsys.readouterr().out
    model = EmbeddingModel("resnet18", embedding_dim=None, weights=out, input_shape=(SIZE, SIZE, 3))
    _assert_close(_pool(model), expected)


def test_convert_command_errors_are_one_line(tmp_path, capsys):
    assert weights_cli.cli(["convert", "small_cnn", str(tmp_path / "x.pth"), str(tmp_path / "y.weights.h5")]) == 2
    assert capsys.readouterr().err.startswith("error: backbone='small_cnn' has no PyTorch layout")
    assert weights_cli.cli(["convert", "resnet18", str(tmp_path / "missing.pth"), str(tmp_path / "y.weights.h5")]) == 2
    assert "missing.pth" in capsys.readouterr().err


def test_mismatched_checkpoint_names_the_tensor(reference, tmp_path):
    net, _ = reference
    state = net.state_dict()
    del state["layer2.0.bn1.running_var"]
    path = str(tmp_path / "broken.pth")
    torch.save(state, path)
    with pytest.raises(StateDictMismatchError, match=r"layer2\.0\.bn1\.running_var"):
        EmbeddingModel("resnet18", embedding_dim=8, weights=path, input_shape=(SIZE, SIZE, 3))
    other = _save(randomize(torchvision.models.resnet34(weights=None)), tmp_path / "r34.pth")
    with pytest.raises(StateDictMismatchError, match=r"layer1\.2\."):
        EmbeddingModel("resnet18", embedding_dim=8, weights=other, input_shape=(SIZE, SIZE, 3))


def test_list_command_names_every_source(capsys):
    rows = weights_cli.main(["list"])
    printed = capsys.readouterr().out
    assert len(rows) == len(SOURCES)
    for source in SOURCES.values():
        assert source.url in printed and source.hash_prefix in printed
    assert "resnet50-19c8e357.pth" in printed and "(imagenet)" in printed and load.cache_dir() in printed


def _local_source(monkeypatch, directory, data):
    """A source served from a file:// URL whose name carries the data's SHA-256 prefix (a real download path)."""
    digest = hashlib.sha256(data).hexdigest()[:8]
    served = directory / f"resnet18-{digest}.pth"
    served.write_bytes(data)
    source = WeightSource("test/resnet18", "resnet18", served.as_uri(), 69.0, ("test",))
    monkeypatch.setitem(SOURCES, source.name, source)
    return source


def test_source_is_downloaded_checked_converted_and_cached(reference, tmp_path, cache, monkeypatch):
    net, expected = reference
    data = open(_save(net, tmp_path / "plain.pth"), "rb").read()
    source = _local_source(monkeypatch, tmp_path, data)
    lines = []
    model = backbone_spec("resnet18").constructor((SIZE, SIZE, 3))
    load.load_source(model, backbone_spec("resnet18"), "resnet18", source.name, announce=lines.append)
    assert (cache / source.file_name).read_bytes() == data
    assert len(lines) == 1 and source.file_name in lines[0] and "test/resnet18" in lines[0]
    # Second load: the converted cache, no download (the served file is gone).
    os.remove(tmp_path / source.file_name)
    again = EmbeddingModel("resnet18", embedding_dim=None, weights=source.name, input_shape=(SIZE, SIZE, 3))
    _assert_close(_pool(again), expected)
    assert glob.glob(str(cache / "*.weights.h5")) and not glob.glob(str(cache / "*.part"))


def test_checksum_mismatch_is_refused(reference, tmp_path, cache, monkeypatch):
    net, _ = reference
    source = _local_source(monkeypatch, tmp_path, b"not the checkpoint")
    (tmp_path / source.file_name).write_bytes(open(_save(net, tmp_path / "plain.pth"), "rb").read())
    with pytest.raises(WeightsDownloadError, match="SHA-256"):
        EmbeddingModel("resnet18", embedding_dim=None, weights=source.name, input_shape=(SIZE, SIZE, 3))


def test_offline_imagenet_names_the_url_and_how_to_pass_the_file(cache, monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    url = SOURCES[IMAGENET_DEFAULTS["resnet18"]].url
    with pytest.raises(WeightsDownloadError, match=f"{url}.*model.weights=/path/to/resnet18-5c106cde.pth"):
        EmbeddingModel("resnet18", embedding_dim=8, weights="imagenet", input_shape=(SIZE, SIZE, 3))
    assert not os.listdir(cache)  # nothing partial left behind


def test_imagenet_finds_a_published_file_placed_in_the_cache(reference, tmp_path, cache, monkeypatch):
    """Offline users copy the published file into the cache; its checksum is still checked."""
    net, expected = reference
    data = open(_save(net, tmp_path / "plain.pth"), "rb").read()
    source = _local_source(monkeypatch, tmp_path, data)
    monkeypatch.setitem(sources.IMAGENET_DEFAULTS, "resnet18", source.name)
    cache.mkdir()
    (cache / source.file_name).write_bytes(data)
    monkeypatch.setattr(urllib.request, "urlopen", None)  # any download attempt would fail
    model = EmbeddingModel("resnet18", embedding_dim=None, weights="imagenet", input_shape=(SIZE, SIZE, 3))
    _assert_close(_pool(model), expected)


def test_wrong_backbone_for_a_source_is_an_error():
    with pytest.raises(ValueError, match="'resnet50' checkpoint, not one for backbone 'resnet18'"):
        EmbeddingModel("resnet18", embedding_dim=8, weights="torchvision/resnet50_v2", input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="no published ImageNet checkpoint is known for backbone 'small_cnn'"):
        EmbeddingModel("small_cnn", embedding_dim=8, weights="imagenet", input_shape=(32, 32, 3))


def test_every_paper_config_starts_from_its_papers_imagenet_source():
    paper = [p for p in sorted(glob.glob(os.path.join(CONFIGS, "*.yaml"))) if not p.endswith("default.yaml")]
    assert len(paper) >= 100
    for path in paper:
        config = load_config(path)
        if config["dataset"]["name"] == "digits":  # runs on the embedded 8x8 digits, not a paper's ImageNet setting
            assert config["model"]["weights"] is None, path
            continue
        weights, backbone = config["model"]["weights"], config["model"]["backbone"]
        if "_netc_" in os.path.basename(path):  # Vo & Hays §4.2: the whole network from scratch
            assert weights is None, path
            continue
        source = sources.resolve_source(backbone, weights)
        if os.path.basename(path).startswith("ee_"):  # the authors' MXNet code loads gluoncv's GoogLeNet
            assert weights == "gluoncv/googlenet", path
        else:
            assert weights == "imagenet" and source.name == IMAGENET_DEFAULTS[backbone], path
        header = open(path).read().split("\nseed:")[0]
        assert source.weights_file_name in header, path


def test_a_random_backbone_with_an_imagenet_source_warns():
    config = load_config(None, ["model.backbone=resnet18", "dataset.image_size=32"])
    with pytest.warns(UserWarning, match="resnet18 starts from random weights.*pretrainedmodels/resnet18"):
        build_model(config)
