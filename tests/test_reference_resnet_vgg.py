"""ResNet-18, ResNet-50 (v1.5) and VGG16-BN against torchvision's / pretrainedmodels' own definitions.

The PyTorch networks get random weights and random BatchNorm statistics, their
state dicts are assigned through the backbones' `torch_layers` maps, and the
globally average-pooled features of the same images must agree (eval mode).
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from reference_torch import pretrainedmodels, randomize, state_dict_numpy, to_nchw, torch, torchvision

import tfdml
from tfdml.models import EmbeddingModel
from tfdml.models.backbones import backbone_spec
from tfdml.weights.convert import StateDictMismatchError, assign_state_dict, unassigned_variables

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RELATIVE_TOLERANCE = 1e-4
# Index of the last MaxPool in torchvision's vgg16_bn `features` (13 × (conv, bn, relu) + 5 pools = 44 modules).
VGG16_BN_POOL5 = 43


def _reference(source):
    """(backbone name, randomized eval-mode PyTorch network) for a reference source."""
    if source == "pretrainedmodels_resnet50":
        return "resnet50", randomize(pretrainedmodels.resnet50(num_classes=1000, pretrained=None))
    return source, randomize(getattr(torchvision.models, source)(weights=None))


def _reference_features(source, net, images):
    """The reference's globally average-pooled features of 0–255 NHWC images, with its own preprocessing."""
    x = to_nchw(images) / 255.0
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        if source == "pretrainedmodels_resnet50":
            x = net.features(x)
        elif source == "vgg16_bn":
            x = net.features[:VGG16_BN_POOL5](x)
        else:
            for module in (net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4):
                x = module(x)
        return x.mean(dim=(2, 3)).numpy()


def _ported_model(backbone, state_dict, size):
    """An EmbeddingModel (no fc) with `state_dict` in its trunk, and its un-normalised "pool" output model."""
    model = EmbeddingModel(backbone, embedding_dim=None, pooling="avg", input_shape=(size, size, 3))
    spec = backbone_spec(backbone)
    trunk = model.get_layer(backbone)
    layer_map = spec.torch_layers(trunk)
    assert unassigned_variables(trunk, layer_map) == []
    assign_state_dict(trunk, state_dict, layer_map, spec.torch_ignored)
    return model, keras.Model(model.input, model.get_layer("pool").output)


def _max_relative_difference(actual, expected):
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize("source,size,batch", [
    ("resnet18", 224, 2), ("resnet18", 97, 2), ("resnet50", 224, 1), ("resnet50", 75, 2),
    ("pretrainedmodels_resnet50", 224, 1), ("vgg16_bn", 224, 1), ("vgg16_bn", 45, 2)])
def test_pooled_features_equal_the_reference(source, size, batch):
    backbone, net = _reference(source)
    _, pooled = _ported_model(backbone, state_dict_numpy(net), size)
    images = np.random.default_rng(size).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    expected = _reference_features(source, net, images)
    actual = pooled(images).numpy()
    assert actual.shape == expected.shape
    difference = _max_relative_difference(actual, expected)
    print(f"{source} at {size}px: max |diff| / max |reference| = {difference:.2e}")
    assert difference <= RELATIVE_TOLERANCE


def test_vgg16_bn_layout_of_the_reference():
    net = torchvision.models.vgg16_bn(weights=None)
    assert len(net.features) == VGG16_BN_POOL5 + 1
    assert isinstance(net.features[VGG16_BN_POOL5], torch.nn.MaxPool2d)
    assert isinstance(net.features[VGG16_BN_POOL5 - 1], torch.nn.ReLU)
    layer_map = backbone_spec("vgg16_bn").torch_layers(tfdml.models.vgg16_bn((32, 32, 3)))
    for keras_name, prefix in layer_map.items():
        module = net.features[int(prefix.split(".")[1])]
        assert isinstance(module, torch.nn.BatchNorm2d if keras_name.endswith("_bn") else torch.nn.Conv2d)


def test_same_padding_at_stride_1_equals_pytorch_padding_1():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(2, 7, 10, 3)).astype(np.float32)
    kernel = rng.normal(size=(5, 3, 3, 3)).astype(np.float32)  # PyTorch (out, in, kh, kw)
    conv = keras.layers.Conv2D(5, 3, padding="same", use_bias=False)
    conv.build((None, 7, 10, 3))
    conv.kernel.assign(np.transpose(kernel, (2, 3, 1, 0)))
    expected = torch.nn.functional.conv2d(to_nchw(images), torch.from_numpy(kernel), padding=1).numpy()
    np.testing.assert_allclose(conv(images).numpy(), np.transpose(expected, (0, 2, 3, 1)), atol=1e-5)


@pytest.mark.parametrize("source", ["resnet18", "resnet50", "pretrainedmodels_resnet50", "vgg16_bn"])
def test_parameter_counts_equal_the_reference_without_classifier(source):
    backbone, net = _reference(source)
    trunk = tfdml.models.build_backbone(backbone, (32, 32, 3))
    classifier = ("fc.", "last_linear.", "classifier.")
    parameters = sum(p.numel() for n, p in net.named_parameters() if not n.startswith(classifier))
    buffers = sum(b.numel() for n, b in net.named_buffers() if not n.endswith("num_batches_tracked"))
    assert sum(int(np.prod(w.shape)) for w in trunk.trainable_weights) == parameters
    assert sum(int(np.prod(w.shape)) for w in trunk.non_trainable_weights) == buffers
    if backbone == "resnet50":
        assert parameters == 25_557_032 - (2048 * 1000 + 1000) == 23_508_032


def test_resnet50_is_v1_5_with_the_published_stage_shapes():
    net = tfdml.models.resnet50((224, 224, 3))
    for stage in (3, 4, 5):
        assert net.get_layer(f"conv{stage}_block1_1_conv").strides == (1, 1)
        assert net.get_layer(f"conv{stage}_block1_2_conv").strides == (2, 2)
        assert net.get_layer(f"conv{stage}_block1_0_conv").strides == (2, 2)
    assert net.get_layer("conv2_block1_0_conv").strides == (1, 1)  # 64 → 256 projection, no downsampling
    convs = [layer for layer in net.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 53 and not any(layer.use_bias for layer in convs)
    assert all(layer.epsilon == 1e-5 for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization))
    expected = {"conv1_relu": (112, 64), "conv2_block3_out": (56, 256), "conv3_block4_out": (28, 512),
                "conv4_block6_out": (14, 1024), "conv5_block3_out": (7, 2048)}
    assert backbone_spec("resnet50").block_layers == tuple(expected)
    for name, (side, width) in expected.items():
        assert net.get_layer(name).output.shape[1:] == (side, side, width)
    assert tfdml.models.preprocessing_mode("resnet50") == "torch"


def test_resnet_layer_map_uses_torchvision_names():
    layer_map = backbone_spec("resnet50").torch_layers(tfdml.models.resnet50((32, 32, 3)))
    assert layer_map["conv1_conv"] == "conv1" and layer_map["conv1_bn"] == "bn1"
    assert layer_map["conv2_block1_1_conv"] == "layer1.0.conv1"
    assert layer_map["conv3_block2_3_bn"] == "layer2.1.bn3"
    assert layer_map["conv5_block1_0_conv"] == "layer4.0.downsample.0"
    assert layer_map["conv5_block1_0_bn"] == "layer4.0.downsample.1"
    assert len(layer_map) == 2 * 53


def _resnet18_case():
    net = randomize(torchvision.models.resnet18(weights=None))
    trunk = tfdml.models.build_backbone("resnet18", (32, 32, 3))
    spec = backbone_spec("resnet18")
    return state_dict_numpy(net), trunk, spec.torch_layers(trunk), spec.torch_ignored


def test_removed_extra_and_misshaped_tensors_are_named():
    state_dict, trunk, layer_map, ignored = _resnet18_case()
    removed = dict(state_dict)
    del removed["layer3.0.downsample.1.running_var"]
    with pytest.raises(StateDictMismatchError, match=r"layer3\.0\.downsample\.1\.running_var"):
        assign_state_dict(trunk, removed, layer_map, ignored)
    extra = {**state_dict, "layer5.0.conv1.weight": np.zeros((4, 4, 3, 3), np.float32)}
    with pytest.raises(StateDictMismatchError, match=r"layer5\.0\.conv1\.weight"):
        assign_state_dict(trunk, extra, layer_map, ignored)
    misshaped = {**state_dict, "layer2.1.conv2.weight": np.zeros((128, 128, 1, 1), np.float32)}
    with pytest.raises(StateDictMismatchError, match=r"layer2\.1\.conv2\.weight"):
        assign_state_dict(trunk, misshaped, layer_map, ignored)
    # The classifier under either name is ignored.
    renamed = {("last_linear." + k[3:] if k.startswith("fc.") else k): v for k, v in state_dict.items()}
    assign_state_dict(trunk, renamed, layer_map, ignored)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50", "vgg16_bn"])
def test_small_inputs_keras_round_trip_and_xla(backbone, tmp_path):
    images = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    model = EmbeddingModel(backbone, embedding_dim=8, input_shape=(32, 32, 3))
    features = model.embedder("pool")(images).numpy()
    path = str(tmp_path / f"{backbone}.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored.embedder("pool")(images).numpy(), features, atol=1e-5)
    compiled = tf.function(lambda x: model(x, training=False), jit_compile=True)
    np.testing.assert_allclose(compiled(tf.constant(images)).numpy(), model(images).numpy(), atol=1e-4)
