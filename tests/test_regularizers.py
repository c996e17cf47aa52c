"""Training-time regularisers of EmbeddingModel — dropout / Gaussian noise on the pooled feature and Gaussian noise
on the embedding (the baselines of Milbich et al., Sharing Matters, Table 6)."""
import keras
import numpy as np
import pytest

from tfdml.models import EmbeddingModel
from tfdml.training.config import load_config
from tfdml.training.runner import build_model

IMAGES = np.random.default_rng(0).uniform(0, 255, (6, 16, 16, 3)).astype(np.float32)


def _model(**kwargs):
    """A small model with frozen batch norm (so training mode differs only by the regularisers)."""
    return EmbeddingModel("small_cnn", embedding_dim=8, input_shape=(16, 16, 3), freeze_batchnorm=True, **kwargs)


def _same_weights(source, target):
    for layer in source.layers:
        if layer.weights:
            target.get_layer(layer.name).set_weights(layer.get_weights())
    return target


@pytest.mark.parametrize("kwargs", [{"feature_dropout": 0.5}, {"feature_noise": 0.5}, {"embedding_noise": 0.5}])
def test_regularizers_act_in_training_only_and_leave_inference_unchanged(kwargs):
    plain = _model()
    regularized = _same_weights(plain, _model(**kwargs))
    np.testing.assert_allclose(regularized(IMAGES, training=False).numpy(), plain(IMAGES, training=False).numpy(),
                               atol=1e-6)  # same weights, no noise at inference
    assert np.abs(regularized(IMAGES, training=True).numpy() - plain(IMAGES, training=True).numpy()).max() > 1e-3
    # The taps an evaluation reads stay clean.
    for tap in ("pool", "fc"):
        np.testing.assert_allclose(regularized.embedder(tap)(IMAGES).numpy(), plain.embedder(tap)(IMAGES).numpy(),
                                   atol=1e-6)


def test_feature_dropout_zeroes_pool_units_and_rescales_the_rest():
    model = _model(feature_dropout=0.5)
    pool = keras.Model(model.inputs[0], model.get_layer("pool").output)(IMAGES).numpy()
    dropped = keras.Model(model.inputs[0], model.get_layer("feature_dropout").output)(IMAGES, training=True).numpy()
    kept = dropped != 0
    assert 0.2 < kept.mean() < 0.8
    np.testing.assert_allclose(dropped[kept], 2.0 * pool[kept], rtol=1e-5)


def test_heads_get_embedding_noise_each_and_the_config_round_trips(tmp_path):
    model = EmbeddingModel("small_cnn", embedding_dim=None, heads={"class": 4, "shared": 4}, embedding_noise=0.3,
                           feature_noise=0.1, input_shape=(16, 16, 3))
    assert {"embedding_noise_class", "embedding_noise_shared", "feature_noise"} <= {l.name for l in model.layers}
    model.save(str(tmp_path / "m.keras"))
    restored = keras.models.load_model(str(tmp_path / "m.keras"))
    assert restored.get_config()["embedding_noise"] == 0.3 and restored.get_config()["feature_noise"] == 0.1
    out = restored(IMAGES, training=False)
    np.testing.assert_allclose(out["class"].numpy(), model(IMAGES, training=False)["class"].numpy(), atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"feature_dropout": 1.0}, "feature_dropout is a rate"),
    ({"feature_noise": -0.1}, "feature_noise must be a number >= 0"),
    ({"embedding_noise": True}, "embedding_noise must be a number"),
    ({"feature_dropout": 0.2, "embedding_dim": None}, "with embedding_dim=None and no heads"),
])
def test_bad_regularizer_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EmbeddingModel("small_cnn", **{"embedding_dim": 8, **kwargs}, input_shape=(16, 16, 3))


def test_config_keys_reach_the_model():
    model = build_model(load_config(None, ["model.feature_dropout=0.25", "model.embedding_noise=0.05",
                                           "dataset.image_size=16"]))
    assert model.get_layer("feature_dropout").rate == 0.25 and model.get_layer("embedding_noise").stddev == 0.05
