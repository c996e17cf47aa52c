"""The published-checkpoint path end to end, for every backbone with a PyTorch layout: the reference definition
(torchvision / pretrainedmodels code, random weights and BN statistics) saved with `torch.save` as the libraries
publish it, loaded by `EmbeddingModel(weights=<file>)` (numpy reader, no torch), gives the reference's pooled
features — also after a `.keras` round trip and through the exported SavedModel. gluoncv's GoogLeNet is checked
through its MXNet `.params` file in the published zip, fetched by source name over a file:// URL."""
import hashlib
import io
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdml
from reference_torch import pretrainedmodels, randomize, to_nchw, torch, torchvision
from test_weight_readers import mxnet_params_bytes
from tfdml.models import EmbeddingModel
from tfdml.weights import SOURCES, WeightSource, load

SIZE = 64  # every backbone's stride pattern (ceil-mode pools included) at a CPU-friendly size
IMAGES = np.random.default_rng(5).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def _mean_std(images):
    return to_nchw((images / 255.0 - MEAN) / STD)


def _googlenet_features(net, images, transform_input=True):
    captured = {}
    hook = net.inception5b.register_forward_hook(lambda module, inputs, output: captured.update(map=output))
    with torch.no_grad():
        net(_mean_std(images))  # torchvision's standard input; transform_input maps it to x / 127.5 - 1
    hook.remove()
    return captured["map"].mean(dim=(2, 3)).numpy()


def _resnet_features(net, images):
    x = _mean_std(images)
    with torch.no_grad():
        for module in (net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4):
            x = module(x)
    return x.mean(dim=(2, 3)).numpy()


def _vgg_features(net, images):
    with torch.no_grad():
        return net.features[:-1](_mean_std(images)).mean(dim=(2, 3)).numpy()  # our output is conv5_3's ReLU


def _bninception_features(net, images):
    with torch.no_grad():  # pretrainedmodels' settings: BGR, 0-255, minus (104, 117, 128)
        return net.features(to_nchw(images[..., ::-1] - np.array([104, 117, 128], np.float32))).mean(
            dim=(2, 3)).numpy()


# backbone: (reference constructor, its pooled features, saved in torch's legacy format as the published file)
REFERENCES = {
    "googlenet": (lambda: torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False,
                                                       transform_input=True), _googlenet_features, True),
    "bninception": (lambda: pretrainedmodels.bninception(num_classes=1000, pretrained=None),
                    _bninception_features, False),
    "resnet18": (lambda: torchvision.models.resnet18(weights=None), _resnet_features, True),
    "resnet50": (lambda: torchvision.models.resnet50(weights=None), _resnet_features, False),
    "vgg16_bn": (lambda: torchvision.models.vgg16_bn(weights=None), _vgg_features, True),
}


def _pool(model, images=IMAGES):
    return keras.Model(model.inputs[0], model.get_layer("pool").output)(images).numpy()


def _assert_close(actual, expected):
    assert np.max(np.abs(actual - expected)) <= 1e-4 * np.max(np.abs(expected))


@pytest.mark.parametrize("backbone", sorted(REFERENCES))
def test_published_checkpoint_file_gives_the_reference_features(backbone, tmp_path):
    constructor, features, legacy = REFERENCES[backbone]
    net = randomize(constructor(), seed=11)
    expected = features(net, IMAGES)
    path = str(tmp_path / f"{backbone}.pth")
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    model = EmbeddingModel(backbone, embedding_dim=16, weights=path, input_shape=(SIZE, SIZE, 3))
    _assert_close(_pool(model), expected)
    model.save(str(tmp_path / "model.keras"))
    restored = keras.models.load_model(str(tmp_path / "model.keras"))
    _assert_close(_pool(restored), expected)
    tfdml.export(restored, str(tmp_path / "served"), tap="pool")
    served = tf.saved_model.load(str(tmp_path / "served")).signatures["serving_default"]
    embeddings = served(tf.constant(IMAGES))["embeddings"].numpy()
    np.testing.assert_allclose(embeddings, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)


def _gluon_names(state_dict):
    """torchvision GoogLeNet tensor names → gluoncv's `save_parameters` names (from gluoncv's definition)."""
    renamed = {}
    for name, value in state_dict.items():
        if name.endswith("num_batches_tracked"):
            continue  # Gluon's BatchNorm has no counter
        module, _, tensor = name.rpartition(".")
        module = module.replace(".conv", ".0").replace(".bn", ".1")
        tensor = {"weight": "gamma", "bias": "beta"}.get(tensor, tensor) if module.endswith(".1") else tensor
        for torch_branch, gluon_branch in (("branch1", "0.0"), ("branch2", "1"), ("branch3", "2"),
                                           ("branch4", "3")):
            module = module.replace(f".{torch_branch}", f".{gluon_branch}")
        renamed[f"{'output' if module == 'fc' else module}.{tensor}"] = value
    renamed.update({name.replace("output.", "head.2."): v for name, v in renamed.items() if name.startswith("output.")})
    return renamed


def test_gluoncv_googlenet_params_in_the_published_zip(tmp_path, monkeypatch):
    net = randomize(torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False,
                                                 transform_input=False), seed=12)
    expected = _googlenet_features(net, IMAGES)  # gluoncv's input: ImageNet mean/std, no transform_input
    names = _gluon_names({k: v.numpy() for k, v in net.state_dict().items()})
    assert "inception3a.3.1.1.gamma" in names and "conv1.0.weight" in names  # gluoncv's pool-branch / stem names
    params = mxnet_params_bytes([names[n].astype(np.float32) for n in names], list(names))
    digest = hashlib.sha1(params).hexdigest()[:8]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(f"googlenet-{digest}.params", params)
    served = tmp_path / f"googlenet-{digest}.zip"
    served.write_bytes(archive.getvalue())
    published = SOURCES["gluoncv/googlenet"]
    source = WeightSource("test/gluoncv_googlenet", "googlenet", served.as_uri(), published.top1,
                          preprocessing=published.preprocessing, hash_algorithm=published.hash_algorithm,
                          archive_member=f"googlenet-{digest}.params", rename=published.rename)
    monkeypatch.setitem(SOURCES, source.name, source)
    monkeypatch.setenv(load.CACHE_ENV, str(tmp_path / "cache"))
    model = EmbeddingModel("googlenet", embedding_dim=None, weights=source.name, input_shape=(SIZE, SIZE, 3))
    assert model.get_layer("preprocessing").mode == "torch"
    _assert_close(_pool(model), expected)
    assert (tmp_path / "cache" / f"googlenet-{digest}.params").exists()


def test_gluoncv_names_cover_every_tensor_of_the_layout():
    from tfdml.weights.renames import gluoncv_googlenet_to_torchvision

    net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    torch_names = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
    gluon = _gluon_names({k: np.zeros(1) for k in torch_names})
    assert set(gluoncv_googlenet_to_torchvision(gluon)) == torch_names
    assert set(gluoncv_googlenet_to_torchvision({"inception3a.3.0.weight": 1})) == {"inception3a.3.0.weight"}
