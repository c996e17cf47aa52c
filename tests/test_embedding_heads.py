"""EmbeddingModel heads: named fc taps, NetD (no fc), NetB (re-initialised layers), weights files."""
import os

import keras
import numpy as np
import pytest

import tfdml
from tfdml.models import EmbeddingModel

IMAGES = np.random.default_rng(0).uniform(0, 255, size=(3, 32, 32, 3)).astype(np.float32)


def _small(**kwargs):
    return EmbeddingModel(**{"backbone": "small_cnn", "embedding_dim": 8, "input_shape": (32, 32, 3), **kwargs})


def _all_layers(model):
    return list(model._flatten_layers(include_self=False, recursive=True))


def test_named_fc_taps_like_vo_and_hays():
    model = _small(fc_names=["fc6", "fc7", "fc8"])
    assert model.taps == ["pool", "fc6", "fc7", "fc8"]
    assert [model.get_layer(n).units for n in ("fc6", "fc7", "fc8")] == [8, 8, 8]
    assert {"relu_fc7", "relu_fc8"} <= {layer.name for layer in model.layers}
    np.testing.assert_allclose(model.embedder("fc8")(IMAGES).numpy(), model(IMAGES).numpy(), atol=1e-6)
    # fc7 = W7 · ReLU(fc6) + b7, read off the fc6 tap.
    fc6 = keras.Model(model.inputs[0], model.get_layer("fc6").output)(IMAGES).numpy()
    fc7 = keras.Model(model.inputs[0], model.get_layer("fc7").output)(IMAGES).numpy()
    layer = model.get_layer("fc7")
    np.testing.assert_allclose(np.maximum(fc6, 0) @ layer.kernel.numpy() + layer.bias.numpy(), fc7, atol=1e-5)
    # The default names are unchanged.
    assert _small(extra_fc=2).taps == ["pool", "fc", "fc2", "fc3"]
    assert _small(fc_names=["fc6", "fc7"], extra_fc=1).taps == ["pool", "fc6", "fc7"]


def test_fc_names_errors_name_the_argument():
    for bad in (["fc6", "fc6"], ["pool"], ["conv1"], ["block2"], ["6fc"], "fc6", []):
        with pytest.raises(ValueError, match="fc_names"):
            _small(fc_names=bad)
    with pytest.raises(ValueError, match="extra_fc"):
        _small(fc_names=["fc6", "fc7"], extra_fc=2)
    with pytest.raises(ValueError, match="embedding_dim=None"):
        _small(embedding_dim=None, extra_fc=1)
    with pytest.raises(ValueError, match="embedding_dim"):
        _small(embedding_dim=-1)


def test_netd_has_no_fc_and_trains_on_the_pooled_feature():
    model = _small(embedding_dim=None, pooling="max")
    assert model.taps == ["pool"]
    assert not any(isinstance(layer, keras.layers.Dense) for layer in _all_layers(model))
    assert model.embedding_dim == 128 and model.output_shape == (None, 128)
    np.testing.assert_allclose(model(IMAGES).numpy(), model.embedder("pool")(IMAGES).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="available taps"):
        model.embedder("fc")
    # A proxy loss gets the pooled width for its proxies.
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=tfdml.losses.ProxyNCALoss(num_classes=3))
    history = model.fit(IMAGES, np.array([0, 1, 2]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.get_config()["embedding_dim"] is None and EmbeddingModel.from_config(model.get_config()).taps == [
        "pool"]


def _perturbed_weights_file(tmp_path, backbone, input_shape):
    """A backbone weights file whose every variable (BN statistics included) is far from its initial value."""
    source = tfdml.models.build_backbone(backbone, input_shape)
    rng = np.random.default_rng(7)
    for variable in source.weights:
        variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype(np.float32))
    path = str(tmp_path / f"{backbone}.weights.h5")
    source.save_weights(path)
    return path


def _weights_by_layer(model):
    return {layer.name: [w.numpy() for w in layer.weights] for layer in _all_layers(model)
            if layer.weights and not isinstance(layer, keras.Model)}


def test_netb_reinitializes_exactly_the_named_layers(tmp_path):
    path = _perturbed_weights_file(tmp_path, "vgg16_bn", (32, 32, 3))
    arguments = dict(backbone="vgg16_bn", embedding_dim=8, pooling="max", fc_names=["fc6", "fc7"],
                     weights=path, input_shape=(32, 32, 3))
    named = ["conv5_3", "conv5_3_bn", "fc6"]
    keras.utils.set_random_seed(3)
    net_a = EmbeddingModel(**arguments)
    keras.utils.set_random_seed(3)
    net_b = EmbeddingModel(**arguments, reinitialize=named)
    before, after = _weights_by_layer(net_a), _weights_by_layer(net_b)
    assert before.keys() == after.keys() and set(named) <= set(after)
    for name, values in after.items():
        for old, new in zip(before[name], values):
            if name in named and not (name == "fc6" and old.ndim == 1):  # fc6's bias is zero in both
                assert not np.any(old == new), name
            elif name not in named:
                np.testing.assert_array_equal(old, new, err_msg=name)
    # The re-initialised values are the layers' initial values: BN γ=1, β=0, μ=0, σ²=1; zero biases;
    # Glorot-uniform kernels (limit √(6 / (fan_in + fan_out))).
    gamma, beta, mean, variance = after["conv5_3_bn"]
    assert np.all(gamma == 1) and np.all(beta == 0) and np.all(mean == 0) and np.all(variance == 1)
    kernel, bias = after["conv5_3"]
    assert np.all(bias == 0) and np.abs(kernel).max() <= np.sqrt(6 / (2 * 9 * 512)) and kernel.std() > 0
    assert np.abs(after["fc6"][0]).max() <= np.sqrt(6 / (512 + 8))


def test_reinitialize_errors_name_the_argument():
    with pytest.raises(ValueError, match="reinitialize.*conv9.*Close names"):
        _small(reinitialize=["conv9"])
    with pytest.raises(ValueError, match="reinitialize.*no weights"):
        _small(reinitialize=["relu1"])
    with pytest.raises(ValueError, match="reinitialize"):
        _small(reinitialize="fc")


def test_keras_file_loads_without_the_original_weights_file(tmp_path):
    path = _perturbed_weights_file(tmp_path, "small_cnn", (32, 32, 3))
    model = _small(weights=path, reinitialize=["conv1"])
    saved = str(tmp_path / "model.keras")
    model.save(saved)
    os.remove(path)
    restored = keras.models.load_model(saved)
    np.testing.assert_allclose(restored(IMAGES).numpy(), model(IMAGES).numpy(), atol=1e-6)
    assert restored.get_config()["reinitialize"] == ["conv1"]
