"""KerasHub backbones (`backbone="hub:<preset>"`): tiny random ViT / DINOv2 / CLIP / SigLIP towers saved as local
presets, loaded through the same path as downloaded presets, trained with a tfdml loss, saved and exported."""
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdml
from tfdml.models import EmbeddingModel

keras_hub = pytest.importorskip("keras_hub")
SIZE = 32
IMAGES = np.random.default_rng(0).uniform(0, 255, (4, SIZE, SIZE, 3)).astype(np.float32)
LABELS = np.array([0, 0, 1, 1])
SMALL = dict(patch_size=8, num_layers=2, num_heads=2, image_shape=(SIZE, SIZE, 3))
TEXT = dict(vocabulary_size=50, embedding_dim=16, hidden_dim=16, num_layers=1, num_heads=2, intermediate_dim=32,
            max_sequence_length=8)


def _clip():
    vision = keras_hub.models.CLIPVisionEncoder(hidden_dim=16, intermediate_dim=32, **SMALL)
    return keras_hub.models.CLIPBackbone(vision, keras_hub.models.CLIPTextEncoder(**TEXT), projection_dim=16)


def _siglip():
    vision = keras_hub.models.SigLIPVisionEncoder(hidden_dim=16, intermediate_dim=32, **SMALL)
    return keras_hub.models.SigLIPBackbone(vision, keras_hub.models.SigLIPTextEncoder(**TEXT))


# Each family's backbone (image-text presets hold both towers) and its image converter class.
TOWERS = {
    "vit": (lambda: keras_hub.models.ViTBackbone(hidden_dim=16, mlp_dim=32, **SMALL), "ViTImageConverter"),
    "dinov2": (lambda: keras_hub.models.DINOV2Backbone(hidden_dim=16, intermediate_dim=32,
                                                       position_embedding_shape=(SIZE, SIZE, 3), **SMALL),
               "DINOV2ImageConverter"),
    "clip": (_clip, "CLIPImageConverter"),
    "siglip": (_siglip, "SigLIPImageConverter"),
}
SCALE, OFFSET = [1 / 58.4, 1 / 57.1, 1 / 57.4], [-2.1, -2.0, -1.8]


def _preset(tmp_path, tower, converter=True):
    keras.utils.set_random_seed(1)
    build, converter_class = TOWERS[tower]
    backbone = build()
    directory = str(tmp_path / f"{tower}_preset")
    backbone.save_to_preset(directory)
    if converter:
        getattr(keras_hub.layers, converter_class)(image_size=(SIZE, SIZE), scale=SCALE,
                                                   offset=OFFSET).save_to_preset(directory)
    return getattr(backbone, "vision_encoder", backbone), directory


def _reference_pool(backbone, pooling):
    tokens = np.asarray(backbone(IMAGES * np.array(SCALE, "float32") + np.array(OFFSET, "float32")))
    if tokens.ndim == 2:
        return tokens
    return tokens[:, 0] if pooling == "cls" else tokens.mean(axis=1)


def _pool(model):
    return keras.Model(model.inputs[0], model.get_layer("pool").output)(IMAGES).numpy()


@pytest.mark.parametrize("tower, pooling", [("vit", "cls"), ("dinov2", "avg"), ("clip", "cls"), ("siglip", "avg")])
def test_preset_weights_and_preprocessing_reach_the_pool_tap(tmp_path, tower, pooling):
    backbone, directory = _preset(tmp_path, tower)
    model = EmbeddingModel(f"hub:{directory}", embedding_dim=8, pooling=pooling, weights="imagenet",
                           input_shape=(SIZE, SIZE, 3))
    np.testing.assert_allclose(_pool(model), _reference_pool(backbone, pooling), rtol=1e-4, atol=1e-5)
    assert model.taps == ["pool", "fc"] and model.block_taps == []
    random = EmbeddingModel(f"hub:{directory}", embedding_dim=8, pooling=pooling, weights=None,
                            input_shape=(SIZE, SIZE, 3))
    assert not np.allclose(_pool(random), _pool(model), atol=1e-3)  # weights=None: the architecture only


def test_hub_model_trains_saves_without_the_preset_and_exports(tmp_path):
    backbone, directory = _preset(tmp_path, "vit")
    model = EmbeddingModel(f"hub:{directory}", embedding_dim=8, pooling="cls", weights="imagenet",
                           input_shape=(SIZE, SIZE, 3))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=tfdml.losses.ContrastiveLoss())
    before = model(IMAGES).numpy()
    model.fit(IMAGES, LABELS, batch_size=4, epochs=1, verbose=0)
    after = model(IMAGES).numpy()
    assert np.all(np.isfinite(after)) and not np.allclose(before, after)
    path = str(tmp_path / "hub.keras")
    model.save(path)
    shutil.rmtree(directory)  # a saved model never needs the preset again
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored(IMAGES).numpy(), after, atol=1e-5)
    tfdml.export(restored, str(tmp_path / "served"), tap="fc")
    served = tf.saved_model.load(str(tmp_path / "served"))
    np.testing.assert_allclose(served.signatures["serving_default"](tf.constant(IMAGES))["embeddings"].numpy(),
                               restored.embedder("fc")(IMAGES).numpy(), atol=1e-5)


def test_preset_without_image_converter_scales_to_unit_range(tmp_path):
    backbone, directory = _preset(tmp_path, "siglip", converter=False)
    model = EmbeddingModel(f"hub:{directory}", embedding_dim=None, weights="preset", input_shape=(SIZE, SIZE, 3))
    np.testing.assert_allclose(_pool(model), np.asarray(backbone(IMAGES / 255.0)), rtol=1e-4, atol=1e-5)


def test_hub_argument_errors(tmp_path):
    _, directory = _preset(tmp_path, "vit")
    with pytest.raises(ValueError, match="pooling='first'.*'cls'"):
        EmbeddingModel(f"hub:{directory}", pooling="first", input_shape=(SIZE, SIZE, 3))
    with pytest.raises(ValueError, match="weights='weights.bin'"):
        EmbeddingModel(f"hub:{directory}", weights="weights.bin", input_shape=(SIZE, SIZE, 3))
    with pytest.raises(ValueError, match=r"takes images of \(32, 32, 3\), but input_shape is \(48, 48, 3\)"):
        EmbeddingModel(f"hub:{directory}", input_shape=(48, 48, 3))
    with pytest.raises(ValueError, match="Unknown backbone"):
        EmbeddingModel("hub:", input_shape=(SIZE, SIZE, 3))
