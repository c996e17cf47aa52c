"""Gray (1-channel) and other non-RGB images through Split, pipelines, models and embedders."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdml
from tfdml.data import Split
from tfdml.models import EmbeddingModel

RNG = np.random.default_rng(0)
LABELS = np.repeat(np.arange(4), 6)


def _gray(n=24, size=20):
    return RNG.integers(0, 256, (n, size, size, 1)).astype(np.uint8)


def test_split_keeps_or_adds_the_channel_axis():
    assert Split("g", LABELS, images=_gray()).image_shape == (20, 20, 1)
    no_axis = Split("g", LABELS, images=_gray()[..., 0])
    assert no_axis.image_shape == (20, 20, 1) and no_axis.channels == 1
    four = Split("g", LABELS, images=RNG.integers(0, 256, (24, 8, 8, 4)).astype(np.uint8))
    assert four.channels == 4
    with pytest.raises(ValueError, match="images must be an array"):
        Split("g", LABELS, images=np.zeros((24, 8), np.uint8))


def test_float_images_are_scaled_by_their_value_range_not_binarised():
    floats = RNG.uniform(0, 1, (24, 8, 8, 1)) * (RNG.uniform(size=(24, 8, 8, 1)) > 0.3)
    split = Split("f", LABELS, images=floats.astype(np.float32), value_range=(0, 1))
    stored = next(iter(split.image_dataset()))[0].numpy()
    np.testing.assert_array_equal(stored, np.round(floats[0] * 255).astype(np.uint8))
    nonzero = (split.image_dataset().map(lambda x, y: x).batch(24).get_single_element().numpy() > 0).mean()
    assert abs(nonzero - (floats > 0).mean()) < 0.01  # ≈ 70 % non-zero, not a binary 0/1 image
    same = Split("f", LABELS, images=(floats * 255).astype(np.float64), value_range=(0, 255))
    np.testing.assert_array_equal(next(iter(same.image_dataset()))[0].numpy(), stored)


def test_ambiguous_or_out_of_range_images_are_refused():
    with pytest.raises(ValueError, match="value_range"):
        Split("f", LABELS, images=RNG.uniform(0, 1, (24, 8, 8, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="outside value_range"):
        Split("f", LABELS, images=RNG.uniform(0, 2, (24, 8, 8, 3)), value_range=(0, 1))
    nan = RNG.uniform(0, 1, (24, 8, 8, 3))
    nan[3, 2, 1, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        Split("f", LABELS, images=nan, value_range=(0, 1))
    with pytest.raises(ValueError, match="value_range"):
        Split("i", LABELS, images=np.full((24, 8, 8, 1), 300, np.int32))
    ints = Split("i", LABELS, images=np.full((24, 8, 8, 1), 200, np.int64))  # in [0, 255]: cast losslessly
    assert next(iter(ints.image_dataset()))[0].numpy().max() == 200


@pytest.mark.parametrize("kind,size", [("ee_noflip", 16), ("roth_adv", 28), ("xuan", 16), ("pad_crop_noflip", 28)])
def test_pipelines_keep_one_channel(kind, size):
    for images in (_gray(), _gray()[..., 0]):
        split = Split("g", LABELS, images=images)
        batch, labels = next(iter(tfdml.data.train_pipeline(split, batch_size=8, samples_per_class=2,
                                                            augmentation=kind, image_size=size)))
        assert batch.shape == (8, size, size, 1) and labels.shape == (8,)
        test = next(iter(tfdml.data.eval_pipeline(split, batch_size=24, image_size=size, augmentation="roth_test")))
        assert test[0].shape == (24, size, size, 1)


def test_gray_digits_and_folder_images_load_with_one_channel(tmp_path):
    digits = tfdml.data.load_split("digits", "test", image_size=16, channels=1)
    assert digits.image_shape == (16, 16, 1)
    rgb = tfdml.data.load_split("digits", "test", image_size=16)
    np.testing.assert_array_equal(rgb._images[..., :1], digits._images)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        tf.io.write_file(str(tmp_path / cls / "0.png"), tf.io.encode_png(RNG.integers(0, 256, (9, 7, 3), np.uint8)))
    split = tfdml.data.load_split("folder", "train", str(tmp_path), channels=1)
    assert next(iter(split.image_dataset()))[0].shape == (9, 7, 1)
    with pytest.raises(ValueError, match="channels"):
        tfdml.data.load_split("digits", "train", channels=2)


# Backbones by preprocessing mode: unit (1-channel trunk), tf (1-channel trunk), torch, caffe and bninception
# (repeated to RGB).
@pytest.mark.parametrize("backbone,repeats,size", [
    ("small_cnn", False, 24), ("small_cnn", False, 40), ("keras_mobilenet_v2", False, 32), ("googlenet", False, 40),
    ("bninception", True, 32),
    ("resnet18", True, 48), ("resnet50", True, 32)])
def test_gray_models_and_embedders(backbone, repeats, size):
    model = EmbeddingModel(backbone, embedding_dim=6, input_shape=(size, size, 1))
    assert ("gray_to_rgb" in [layer.name for layer in model.layers]) == repeats
    images = RNG.uniform(0, 255, (2, size, size, 1)).astype(np.float32)
    assert model(images).shape == (2, 6)
    for tap in model.taps + model.block_taps[:1]:
        features = model.embedder(tap)(images).numpy()
        assert features.shape[0] == 2 and np.all(np.isfinite(features))


def test_gray_model_equals_the_rgb_model_on_repeated_gray_images():
    gray = EmbeddingModel("googlenet", embedding_dim=6, input_shape=(32, 32, 1), gray_to_rgb=True)
    rgb = EmbeddingModel("googlenet", embedding_dim=6, input_shape=(32, 32, 3))
    rgb.set_weights(gray.get_weights())
    images = RNG.uniform(0, 255, (2, 32, 32, 1)).astype(np.float32)
    np.testing.assert_allclose(gray(images).numpy(), rgb(np.repeat(images, 3, axis=-1)).numpy(), atol=1e-5)


def test_pretrained_rgb_weights_serve_gray_input(tmp_path):
    source = tfdml.models.build_backbone("small_cnn", (32, 32, 3))
    path = str(tmp_path / "rgb.weights.h5")
    source.save_weights(path)
    model = EmbeddingModel("small_cnn", embedding_dim=6, weights=path, input_shape=(32, 32, 1))
    assert "gray_to_rgb" in [layer.name for layer in model.layers]
    images = RNG.uniform(0, 255, (2, 32, 32, 1)).astype(np.float32)
    trunk = model.get_layer("small_cnn")
    np.testing.assert_allclose(trunk(np.repeat(images, 3, -1) / 255.0).numpy(),
                               source(np.repeat(images, 3, -1) / 255.0).numpy(), atol=1e-5)
    saved = str(tmp_path / "gray.keras")
    model.save(saved)
    restored = keras.models.load_model(saved)
    np.testing.assert_allclose(restored.embedder("pool")(images).numpy(), model.embedder("pool")(images).numpy(),
                               atol=1e-6)


def test_channel_counts_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="input_shape"):
        EmbeddingModel("resnet18", embedding_dim=4, input_shape=(32, 32, 2))
    assert EmbeddingModel("small_cnn", embedding_dim=4, input_shape=(16, 16, 4))(
        np.zeros((1, 16, 16, 4), np.float32)).shape == (1, 4)
    with pytest.raises(ValueError, match="3 channels"):
        tfdml.models.PixelPreprocessing("caffe")(np.zeros((1, 4, 4, 1), np.float32))
    with pytest.raises(ValueError, match="gray_to_rgb"):
        EmbeddingModel("resnet18", embedding_dim=4, input_shape=(32, 32, 1), gray_to_rgb=False)
    forced = EmbeddingModel("small_cnn", embedding_dim=4, input_shape=(16, 16, 1), gray_to_rgb=True)
    assert forced.get_config()["gray_to_rgb"] is True and forced.get_layer("small_cnn").input_shape[-1] == 3
    assert EmbeddingModel("small_cnn", embedding_dim=4, input_shape=(16, 16, 1)).get_config()["gray_to_rgb"] is False


def test_gray_digits_train_and_embed_end_to_end():
    train = tfdml.data.load_split("digits", "train", image_size=16, channels=1)
    test = tfdml.data.load_split("digits", "test", image_size=16, channels=1)
    data = tfdml.data.train_pipeline(train, batch_size=20, samples_per_class=4, augmentation="ee_noflip",
                                     image_size=16)
    model = EmbeddingModel("small_cnn", embedding_dim=8, input_shape=(16, 16, 1))
    model.compile(optimizer="adam", loss=tfdml.losses.TripletLoss(margin=0.2))
    history = model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    embeddings, labels = tfdml.metrics.embed(model.embedder("block2"),
                                             tfdml.data.eval_pipeline(test, 256, 16, "test"))
    assert embeddings.shape == (test.num_images, 64) and len(labels) == test.num_images
