"""EmbeddingModel taps, backbones, serialisation and SavedModel export."""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdml
from tfdml.models import EmbeddingModel

IMAGES = np.random.default_rng(0).uniform(0, 255, size=(3, 32, 32, 3)).astype(np.float32)


def _small(**kwargs):
    return EmbeddingModel(**{"backbone": "small_cnn", "embedding_dim": 8, "input_shape": (32, 32, 3), **kwargs})


def test_taps_shapes_and_normalisation():
    model = _small(extra_fc=2)
    assert model.taps == ["pool", "fc", "fc2", "fc3"]
    assert model(IMAGES).shape == (3, 8)
    pool = model.embedder("pool")(IMAGES).numpy()
    fc = model.embedder("fc")(IMAGES).numpy()
    assert pool.shape == (3, 128) and fc.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(pool, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(model(IMAGES).numpy(), axis=1), 1.0, rtol=1e-5)
    # The last tap's embedder equals the model output.
    np.testing.assert_allclose(model.embedder("fc3")(IMAGES).numpy(), model(IMAGES).numpy(), atol=1e-6)


def test_embedder_shares_weights():
    model = _small()
    before = model.embedder("fc")(IMAGES).numpy()
    model.get_layer("fc").kernel.assign(model.get_layer("fc").kernel * 2.0 + 0.1)
    assert not np.allclose(before, model.embedder("fc")(IMAGES).numpy())


def test_unnormalised_output_and_max_pooling():
    model = _small(normalize=False, pooling="max")
    assert not np.allclose(np.linalg.norm(model(IMAGES).numpy(), axis=1), 1.0)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="backbone"):
        EmbeddingModel(backbone="alexnet")
    with pytest.raises(ValueError, match="pooling"):
        _small(pooling="mean")
    with pytest.raises(ValueError, match="embedding_dim"):
        _small(embedding_dim=0)
    with pytest.raises(ValueError, match="tap"):
        _small().embedder("fc7")


def test_keras_file_round_trip(tmp_path):
    model = _small(extra_fc=1)
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, EmbeddingModel) and restored.taps == model.taps
    np.testing.assert_allclose(restored(IMAGES).numpy(), model(IMAGES).numpy(), atol=1e-6)
    np.testing.assert_allclose(restored.embedder("pool")(IMAGES).numpy(), model.embedder("pool")(IMAGES).numpy(),
                               atol=1e-6)


def test_freeze_batchnorm_keeps_statistics_and_parameters():
    model = _small(freeze_batchnorm=True)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=tfdml.losses.TripletLoss(margin=5.0))
    bn = [l for l in model.get_layer("small_cnn").layers if isinstance(l, keras.layers.BatchNormalization)]
    before = [w.numpy().copy() for layer in bn for w in layer.weights]
    fc_before = model.get_layer("fc").kernel.numpy().copy()
    model.fit(IMAGES, np.array([0, 0, 1]), epochs=1, verbose=0)
    after = [w.numpy() for layer in bn for w in layer.weights]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(fc_before, model.get_layer("fc").kernel.numpy())


def _batchnorm_weights(model):
    bn = [l for l in model.get_layer("small_cnn").layers if isinstance(l, keras.layers.BatchNormalization)]
    return ({w.name: w.numpy().copy() for layer in bn for w in (layer.gamma, layer.beta)},
            {w.name: w.numpy().copy() for layer in bn for w in (layer.moving_mean, layer.moving_variance)})


def _fit_once(model, jit_compile=False):
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=tfdml.losses.TripletLoss(margin=5.0),
                  jit_compile=jit_compile)
    model.fit(IMAGES, np.array([0, 0, 1]), epochs=1, verbose=0)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_freeze_batchnorm_statistics_trains_gamma_beta_with_fixed_moving_statistics(tmp_path, jit_compile):
    model = _small(freeze_batchnorm="statistics")
    (params, stats), images = _batchnorm_weights(model), keras.ops.convert_to_tensor(IMAGES)
    _fit_once(model, jit_compile)
    new_params, new_stats = _batchnorm_weights(model)
    assert all(not np.allclose(params[name], new_params[name]) for name in params)  # γ/β trained (Roth's code)
    for name in stats:
        np.testing.assert_array_equal(stats[name], new_stats[name])  # statistics never updated
    # the moving statistics are used in training mode too: same embeddings in both modes
    np.testing.assert_allclose(model(images, training=True), model(images, training=False), atol=1e-6)
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored(images), model(images), atol=1e-6)
    _fit_once(restored)  # still frozen statistics after a reload
    for name, value in _batchnorm_weights(restored)[1].items():
        np.testing.assert_array_equal(stats[name], value)


def test_freeze_batchnorm_rejects_other_values():
    with pytest.raises(ValueError, match="freeze_batchnorm must be one of"):
        _small(freeze_batchnorm="stats")
    with pytest.raises(ValueError, match="'model.freeze_batchnorm'.*'statistics'"):
        tfdml.training.load_config(None, ["model.freeze_batchnorm=stats"])
    assert tfdml.training.load_config(None, ["model.freeze_batchnorm=statistics"])["model"]["freeze_batchnorm"] \
        == "statistics"


def test_googlenet_architecture():
    net = tfdml.models.googlenet((96, 96, 3))
    assert net.output_shape[-1] == 1024
    assert net.get_layer("inception4e_output").output.shape[-1] == 832
    assert net.get_layer("inception3a_output").output.shape[-1] == 256


def test_imagenet_weights_offline_error_is_clear(monkeypatch):
    def failing(*args, **kwargs):
        raise OSError("URL fetch failure: network unreachable")

    monkeypatch.setattr(keras.applications, "MobileNetV2", failing)
    with pytest.raises(RuntimeError, match="weights=None"):
        tfdml.models.build_backbone("keras_mobilenet_v2", (32, 32, 3), weights="imagenet")


def test_local_weights_file(tmp_path):
    source = tfdml.models.build_backbone("small_cnn", (32, 32, 3))
    path = str(tmp_path / "backbone.weights.h5")
    source.save_weights(path)
    loaded = tfdml.models.build_backbone("small_cnn", (32, 32, 3), weights=path)
    x = tf.constant(IMAGES / 255.0)
    np.testing.assert_allclose(loaded(x).numpy(), source(x).numpy(), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        tfdml.models.build_backbone("small_cnn", (32, 32, 3), weights=str(tmp_path / "missing.weights.h5"))


def test_keras_applications_backbone_builds():
    model = EmbeddingModel("keras_mobilenet_v2", embedding_dim=4, input_shape=(32, 32, 3))
    assert model(IMAGES).shape == (3, 4)


def test_export_round_trip_in_fresh_process(tmp_path):
    model = _small(extra_fc=1)
    export_dir = str(tmp_path / "served")
    tfdml.export(model, export_dir, tap="pool")
    images = np.random.default_rng(1).integers(0, 256, size=(3, 32, 32, 3)).astype(np.uint8)
    np.save(tmp_path / "images.npy", images)
    script = (
        "import numpy as np, tensorflow as tf\n"
        f"m = tf.saved_model.load({export_dir!r})\n"
        f"x = np.load({str(tmp_path / 'images.npy')!r})\n"
        "u8 = m.signatures['serving_uint8'](images=tf.constant(x))['embeddings'].numpy()\n"
        "f32 = m.signatures['serving_default'](images=tf.constant(x[:1].astype('float32')))['embeddings'].numpy()\n"
        f"np.save({str(tmp_path / 'u8.npy')!r}, u8); np.save({str(tmp_path / 'f32.npy')!r}, f32)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    expected = model.embedder("pool")(images.astype(np.float32)).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "u8.npy"), expected, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "f32.npy"), expected[:1], atol=1e-5)


def test_avg_max_pooling_is_the_sum_of_global_average_and_max():
    model = tfdml.models.EmbeddingModel(backbone="resnet18", embedding_dim=8, pooling="avg_max", weights=None,
                                        input_shape=(32, 32, 3))
    images = np.random.default_rng(0).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    pool = keras.Model(model.inputs, model.get_layer("pool").output)(images).numpy()
    features = keras.Model(model.inputs, model.get_layer("pool_avg").input)(images).numpy()
    np.testing.assert_allclose(pool, features.mean(axis=(1, 2)) + features.max(axis=(1, 2)), rtol=1e-5, atol=1e-5)
