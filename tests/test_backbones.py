"""VGG16-BN and ResNet-18 against the published architectures; block taps of every backbone."""
import keras
import numpy as np
import pytest

import tfdml
from tfdml.models import EmbeddingModel

RNG = np.random.default_rng(0)


def _count(weights):
    return int(sum(np.prod(w.shape) for w in weights))


def _layers(model, kind):
    return [layer for layer in model._flatten_layers(include_self=False) if type(layer) is kind]


def test_vgg16_bn_matches_the_published_architecture():
    net = tfdml.models.vgg16_bn((224, 224, 3))
    # torchvision vgg16_bn: 138,365,992 parameters, of which the classifier
    # (25088→4096→4096→1000 with biases) holds the rest; BN moving statistics are buffers.
    classifier = (25088 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    assert _count(net.trainable_weights) == 138_365_992 - classifier == 14_723_136
    assert _count(net.non_trainable_weights) == 2 * (64 * 2 + 128 * 2 + 256 * 3 + 512 * 6)
    assert len(_layers(net, keras.layers.Conv2D)) == 13 and len(_layers(net, keras.layers.BatchNormalization)) == 13
    assert all(layer.kernel_size == (3, 3) and layer.use_bias for layer in _layers(net, keras.layers.Conv2D))
    # Each block's last ReLU at 224 px (Simonyan & Zisserman Table 1, config D); no pool5.
    expected = {"conv1_2_relu": (224, 64), "conv2_2_relu": (112, 128), "conv3_3_relu": (56, 256),
                "conv4_3_relu": (28, 512), "conv5_3_relu": (14, 512)}
    for name, (side, width) in expected.items():
        assert net.get_layer(name).output.shape[1:] == (side, side, width)
    assert net.output_shape == (None, 14, 14, 512)


def test_resnet18_matches_the_published_architecture():
    net = tfdml.models.resnet18((224, 224, 3))
    # torchvision resnet18: 11,689,512 parameters including the 512→1000 classifier.
    assert _count(net.trainable_weights) == 11_689_512 - (512 * 1000 + 1000) == 11_176_512
    assert _count(net.non_trainable_weights) == 2 * (64 + 4 * 64 + 5 * 128 + 5 * 256 + 5 * 512)
    convs = _layers(net, keras.layers.Conv2D)
    assert len(convs) == 20 and not any(layer.use_bias for layer in convs)  # 17 + 3 projection shortcuts
    assert sorted(layer.name for layer in convs if layer.kernel_size == (1, 1)) == [
        "conv3_block1_0_conv", "conv4_block1_0_conv", "conv5_block1_0_conv"]
    assert len(_layers(net, keras.layers.Add)) == 8
    # He et al. Table 1: output sizes of conv1, conv2_x … conv5_x at 224 px.
    expected = {"conv1_relu": (112, 64), "conv2_block2_out": (56, 64), "conv3_block2_out": (28, 128),
                "conv4_block2_out": (14, 256), "conv5_block2_out": (7, 512)}
    for name, (side, width) in expected.items():
        assert net.get_layer(name).output.shape[1:] == (side, side, width)


@pytest.mark.parametrize("size", [32, 48])
def test_new_backbones_run_at_small_sizes(size):
    images = RNG.uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    for backbone in ("vgg16_bn", "resnet18"):
        model = EmbeddingModel(backbone, embedding_dim=8, input_shape=(size, size, 3))
        assert model(images).shape == (2, 8)
        assert model.embedder("pool")(images).shape == (2, 512)


BLOCK_WIDTHS = {
    "small_cnn": (32, 64, 128),
    "googlenet": (64, 192, 480, 832, 1024),
    "bninception": (64, 192, 320, 608, 1024),
    "vgg16_bn": (64, 128, 256, 512, 512),
    "resnet18": (64, 64, 128, 256, 512),
    "resnet50": (64, 256, 512, 1024, 2048),
}


@pytest.mark.parametrize("backbone", sorted(BLOCK_WIDTHS))
def test_block_taps_exist_with_the_block_widths(backbone):
    model = EmbeddingModel(backbone, embedding_dim=4, input_shape=(32, 32, 3))
    widths = BLOCK_WIDTHS[backbone]
    assert model.block_taps == [f"block{k}" for k in range(1, len(widths) + 1)]
    assert model.taps == ["pool", "fc"]  # block taps are separate from the head taps
    images = RNG.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    for tap, width in zip(model.block_taps, widths):
        features = model.embedder(tap)(images).numpy()
        assert features.shape == (2, width)
        np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)


def test_block_tap_is_the_global_max_of_the_block_output():
    model = EmbeddingModel("small_cnn", embedding_dim=4, input_shape=(20, 20, 3))
    images = RNG.uniform(0, 255, (3, 20, 20, 3)).astype(np.float32)
    trunk = model.get_layer("small_cnn")
    block = keras.Model(trunk.inputs[0], trunk.get_layer("relu2").output)(images / 255.0).numpy()
    expected = block.max(axis=(1, 2))
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(model.embedder("block2")(images).numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("backbone", ["vgg16_bn", "resnet18"])
def test_last_block_equals_max_pooled_pool_tap(backbone):
    model = EmbeddingModel(backbone, embedding_dim=4, pooling="max", input_shape=(32, 32, 3))
    images = RNG.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(model.embedder("block5")(images).numpy(), model.embedder("pool")(images).numpy(),
                               atol=1e-6)


def test_backbone_without_blocks_has_no_block_taps():
    model = EmbeddingModel("keras_mobilenet_v2", embedding_dim=4, input_shape=(32, 32, 3))
    assert model.block_taps == []
    with pytest.raises(ValueError, match="available taps"):
        model.embedder("block1")


def test_keras_round_trip_of_new_backbones(tmp_path):
    images = RNG.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    for backbone in ("resnet18", "vgg16_bn"):
        model = EmbeddingModel(backbone, embedding_dim=8, pooling="max", fc_names=["fc6", "fc7"],
                               input_shape=(32, 32, 3))
        path = str(tmp_path / f"{backbone}.keras")
        model.save(path)
        restored = keras.models.load_model(path)
        assert restored.taps == ["pool", "fc6", "fc7"] and restored.block_taps == model.block_taps
        for tap in ("fc7", "block3"):
            np.testing.assert_allclose(restored.embedder(tap)(images).numpy(), model.embedder(tap)(images).numpy(),
                                       atol=1e-5)
