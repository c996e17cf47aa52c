"""GoogLeNet and BN-Inception against the published PyTorch definitions (torchvision, pretrainedmodels).

The reference networks get random weights and random BatchNorm statistics, their
state dicts are assigned to tfdml's backbones, and both sides see the same RGB
images in [0, 255], each through its own preprocessing.
"""
import numpy as np
import pytest

import keras
import reference_torch as ref
import tensorflow as tf
from tfdml.models import EmbeddingModel, PixelPreprocessing
from tfdml.models.backbones import backbone_spec
from tfdml.weights.convert import StateDictMismatchError, assign_state_dict, unassigned_variables

torch = ref.torch
RNG = np.random.default_rng(0)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
BNINCEPTION_MEAN_BGR = np.array([104, 117, 128], np.float32)
# Documented block widths (conv1, conv2/3, end of stage 3, end of stage 4, output).
BLOCK_WIDTHS = {"googlenet": (64, 192, 480, 832, 1024), "bninception": (64, 192, 320, 608, 1024)}


def _googlenet_reference():
    return ref.torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False, transform_input=True)


def _bninception_reference():
    return ref.pretrainedmodels.bninception(num_classes=1000, pretrained=None)


REFERENCES = {"googlenet": _googlenet_reference, "bninception": _bninception_reference}


@pytest.fixture(scope="module")
def references():
    """{backbone: (randomised reference module, its state dict as numpy)}."""
    out = {}
    for name, constructor in REFERENCES.items():
        module = ref.randomize(constructor())
        out[name] = (module, ref.state_dict_numpy(module))
    return out


def _reference_map(name, module, images):
    """The reference's last feature map (NCHW) for RGB images in [0, 255] (NHWC), its own preprocessing."""
    if name == "googlenet":  # the standard torchvision input; transform_input=True maps it to x / 127.5 - 1
        x = ref.to_nchw((images / 255.0 - IMAGENET_MEAN) / IMAGENET_STD)
        captured = {}
        hook = module.inception5b.register_forward_hook(lambda _, __, output: captured.update(map=output))
        with torch.no_grad():
            module(x)
        hook.remove()
        return captured["map"].numpy()
    x = ref.to_nchw(images[..., ::-1] - BNINCEPTION_MEAN_BGR)  # input_space BGR, range [0, 255], std 1
    with torch.no_grad():
        return module.features(x).numpy()


def _model_with_reference_weights(name, state_dict, size, **kwargs):
    model = EmbeddingModel(name, **{"embedding_dim": None, "pooling": "avg", **kwargs}, input_shape=(size, size, 3))
    spec = backbone_spec(name)
    trunk = model.get_layer(name)
    assign_state_dict(trunk, state_dict, spec.torch_layers(trunk), spec.torch_ignored)
    return model, trunk


def _pooled(model, images):
    return keras.Model(model.inputs[0], model.get_layer("pool").output)(images).numpy()


def _relative_difference(actual, expected):
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize("size", [224, 227])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_pooled_features_equal_the_reference(references, name, size):
    module, state_dict = references[name]
    model, trunk = _model_with_reference_weights(name, state_dict, size)
    images = RNG.uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    expected_map = _reference_map(name, module, images)
    expected = expected_map.mean(axis=(2, 3))
    pooled = _pooled(model, images)
    assert pooled.shape == expected.shape == (2, 1024)
    assert _relative_difference(pooled, expected) <= 1e-4
    # the whole feature map agrees too (the ceil-mode pools keep PyTorch's grid)
    preprocessed = PixelPreprocessing(backbone_spec(name).preprocessing)(images)
    feature_map = np.transpose(trunk(preprocessed).numpy(), (0, 3, 1, 2))
    assert feature_map.shape == expected_map.shape
    assert _relative_difference(feature_map, expected_map) <= 1e-4


def test_googlenet_preprocessing_is_torchvisions_transform_input(references):
    """Mode "tf" on RGB in [0, 255] equals transform_input applied to the mean/std-normalised image."""
    images = RNG.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    module = references["googlenet"][0]
    transformed = module._transform_input(ref.to_nchw((images / 255.0 - IMAGENET_MEAN) / IMAGENET_STD)).numpy()
    assert backbone_spec("googlenet").preprocessing == "tf"
    ours = np.transpose(PixelPreprocessing("tf")(images).numpy(), (0, 3, 1, 2))
    np.testing.assert_allclose(ours, transformed, atol=1e-5)


def test_bninception_preprocessing_is_pretrainedmodels_settings():
    settings = ref.pretrainedmodels.pretrained_settings["bninception"]["imagenet"]
    assert settings["input_space"] == "BGR" and settings["input_range"] == [0, 255] and settings["std"] == [1, 1, 1]
    images = RNG.uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    expected = images[..., ::-1] - np.array(settings["mean"], np.float32)
    np.testing.assert_allclose(PixelPreprocessing("bninception")(images).numpy(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="3 channels"):
        PixelPreprocessing("bninception")(np.zeros((1, 4, 4, 1), np.float32))


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_layer_map_covers_every_weight_and_checks_the_state_dict(references, name):
    state_dict = references[name][1]
    spec = backbone_spec(name)
    trunk = spec.constructor((32, 32, 3))
    layer_map = spec.torch_layers(trunk)
    assert unassigned_variables(trunk, layer_map) == []
    # every backbone tensor of the reference is used: Keras holds exactly their values
    used = sum(value.size for key, value in state_dict.items()
               if not key.startswith(spec.torch_ignored) and not key.endswith("num_batches_tracked"))
    assert sum(int(np.prod(w.shape)) for w in trunk.weights) == used
    some_conv = next(key for key in state_dict if key.endswith("weight") and state_dict[key].ndim == 4
                     and not key.startswith(spec.torch_ignored))
    missing = {key: value for key, value in state_dict.items() if key != some_conv}
    with pytest.raises(StateDictMismatchError, match=f"missing: .*{some_conv}"):
        assign_state_dict(trunk, missing, layer_map, spec.torch_ignored)
    extra = {**state_dict, "head.weight": np.zeros((3, 3), np.float32)}
    with pytest.raises(StateDictMismatchError, match="no place.*head.weight"):
        assign_state_dict(trunk, extra, layer_map, spec.torch_ignored)
    misshaped = {**state_dict, some_conv: state_dict[some_conv][:1]}
    with pytest.raises(StateDictMismatchError, match=some_conv):
        assign_state_dict(trunk, misshaped, layer_map, spec.torch_ignored)
    assign_state_dict(trunk, state_dict, layer_map, spec.torch_ignored)  # the full dict fits


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_block_taps_have_the_documented_widths(name):
    model = EmbeddingModel(name, embedding_dim=4, input_shape=(64, 64, 3))
    widths = BLOCK_WIDTHS[name]
    assert model.block_taps == [f"block{k}" for k in range(1, 6)]
    images = RNG.uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    for tap, width in zip(model.block_taps, widths):
        assert model.embedder(tap)(images).shape == (2, width)
    # at 224 px the blocks end at 112, 56, 28, 14 and 7 px
    trunk = backbone_spec(name).constructor((224, 224, 3))
    sides = [trunk.get_layer(layer).output.shape[1] for layer in backbone_spec(name).block_layers]
    assert sides == [112, 56, 28, 14, 7]


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_keras_round_trip_keeps_the_features(references, name, tmp_path):
    model, _ = _model_with_reference_weights(name, references[name][1], 64, embedding_dim=8)
    images = RNG.uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    for tap in ("pool", "fc", "block3"):
        np.testing.assert_allclose(restored.embedder(tap)(images).numpy(), model.embedder(tap)(images).numpy(),
                                   atol=1e-5)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_small_inputs_and_jit_compile(name):
    for size in (32, 64):
        model = EmbeddingModel(name, embedding_dim=4, input_shape=(size, size, 3))
        images = RNG.uniform(0, 255, (2, size, size, 3)).astype(np.float32)
        eager = model(images).numpy()
        assert eager.shape == (2, 4) and np.all(np.isfinite(eager))
    compiled = tf.function(lambda x: model(x, training=False), jit_compile=True)
    np.testing.assert_allclose(compiled(tf.constant(images)).numpy(), eager, atol=1e-4)


def test_bninception_rejects_the_sizes_the_reference_rejects(references):
    """Blocks 3c / 4e concatenate floor-mode convolutions with ceil-mode pools: 40 px fails in both."""
    with pytest.raises(RuntimeError):
        with torch.no_grad():
            references["bninception"][0].features(torch.zeros(1, 3, 40, 40))
    with pytest.raises(ValueError, match="input side 40"):
        backbone_spec("bninception").constructor((40, 40, 3))
    for size, side in ((31, 1), (38, 1), (63, 2), (70, 2)):
        assert backbone_spec("bninception").constructor((size, size, 3)).output_shape[1:] == (side, side, 1024)
