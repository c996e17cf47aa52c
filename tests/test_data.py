"""Datasets, class splits, samplers and augmentation pipelines."""
import os
import re

import numpy as np
import pytest
import tensorflow as tf

import tfdml
from tfdml.data import batch_indices, load_split


def _write_png(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = np.full((12, 10, 3), value, np.uint8)
    tf.io.write_file(path, tf.io.encode_png(image))


def test_digits_split_by_class():
    train, test = load_split("digits", "train"), load_split("digits", "test")
    assert train.num_images + test.num_images == 1797
    assert train.num_classes == test.num_classes == 5
    assert set(train.original_labels) == {0, 1, 2, 3, 4} and set(test.original_labels) == {5, 6, 7, 8, 9}
    assert set(np.unique(test.labels)) == {0, 1, 2, 3, 4}  # remapped to 0-based within the split
    image, label = next(iter(train.image_dataset()))
    assert image.shape == (32, 32, 3) and image.dtype == tf.uint8 and int(label) == train.labels[0]


def test_image_folder_split(tmp_path):
    for c in ("a", "b", "c", "d"):
        for i in range(2):
            _write_png(str(tmp_path / c / f"{i}.png"), 10 * i)
    train, test = load_split("folder", "train", str(tmp_path)), load_split("folder", "test", str(tmp_path))
    assert train.class_names == ["a", "b"] and test.class_names == ["c", "d"]
    assert train.num_images == test.num_images == 4
    images = [img.numpy() for img, _ in test.image_dataset()]
    assert images[0].shape == (12, 10, 3)


def test_cub_original_layout(tmp_path):
    root = tmp_path / "CUB_200_2011"
    lines, labels = [], []
    for i in range(1, 9):
        cls = (i - 1) // 2 + 1  # 4 classes, 2 images each
        rel = f"{cls:03d}.cls/{i}.png"
        _write_png(str(root / "images" / rel), i)
        lines.append(f"{i} {rel}")
        labels.append(f"{i} {cls}")
    (root / "images.txt").write_text("\n".join(lines))
    (root / "image_class_labels.txt").write_text("\n".join(labels))
    with pytest.warns(UserWarning, match="standard split has 100 / 5864"):
        train = load_split("cub200", "train", str(tmp_path))
    assert train.num_classes == 2 and train.num_images == 4
    assert list(train.original_labels) == [1, 2]
    with pytest.raises(ValueError, match="100 / 5924"):
        load_split("cub200", "test", str(tmp_path), strict=True)


def test_sop_split_files(tmp_path):
    rows = ["image_id class_id super_class_id path"]
    for i in range(1, 5):
        _write_png(str(tmp_path / "bike" / f"{i}.png"), i)
        rows.append(f"{i} {(i + 1) // 2} 1 bike/{i}.png")
    (tmp_path / "Ebay_train.txt").write_text("\n".join(rows))
    with pytest.warns(UserWarning, match="sop train"):
        train = load_split("sop", "train", str(tmp_path))
    assert train.num_classes == 2 and train.num_images == 4


@pytest.mark.parametrize("name", ["cub200", "cars196"])
def test_tfds_loading_with_mock_data(name):
    tfds = pytest.importorskip("tensorflow_datasets")
    png = tf.io.encode_png(np.full((6, 5, 3), 7, np.uint8)).numpy()

    def as_dataset(self, split, decoders=None, **kwargs):
        # tfdml reads encoded images (SkipDecoding): 8 classes x 2 images per tfds split.
        examples = [{"image": png, "label": c} for c in range(8) for _ in range(2)]
        return tf.data.Dataset.from_generator(
            lambda: iter(examples),
            output_signature={"image": tf.TensorSpec([], tf.string), "label": tf.TensorSpec([], tf.int64)})

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        with pytest.warns(UserWarning, match="loaded 4 classes / 8 images"):
            train = load_split(name, "train")
        test = load_split(name, "test", strict=False)
    assert list(train.original_labels) == [0, 1, 2, 3] and list(test.original_labels) == [4, 5, 6, 7]
    image, label = next(iter(train.image_dataset()))
    assert image.shape == (6, 5, 3) and image.dtype == tf.uint8 and int(label) == 0


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="images.txt"):
        tfdml.data.datasets.cub200_folder(str(tmp_path), "train")
    with pytest.raises(FileNotFoundError, match="Ebay_test.txt"):
        load_split("sop", "test", str(tmp_path))
    with pytest.raises(ValueError, match="dataset"):
        load_split("mnist", "train")
    with pytest.raises(ValueError, match="data_dir"):
        load_split("folder", "train")


def test_m_per_class_batches_have_exactly_m_per_class():
    labels = np.repeat(np.arange(7), [3, 5, 8, 2, 9, 4, 6])  # some classes smaller than M
    gen = batch_indices(labels, "m_per_class", batch_size=12, samples_per_class=4, seed=1)
    for _ in range(50):
        batch = next(gen)
        assert batch.shape == (12,)
        classes, counts = np.unique(labels[batch], return_counts=True)
        assert len(classes) == 3 and np.all(counts == 4)
        # grouped by class in consecutive order
        assert all(len(set(labels[batch][i:i + 4])) == 1 for i in range(0, 12, 4))


def test_other_samplers_and_determinism():
    labels = np.repeat(np.arange(6), 10)
    a = [next(g) for g in [batch_indices(labels, "class_random", 12, 3, seed=5)] for _ in range(3)]
    b = [next(g) for g in [batch_indices(labels, "class_random", 12, 3, seed=5)] for _ in range(3)]
    np.testing.assert_array_equal(a, b)
    gen = batch_indices(labels, "full_random", 16, seed=2)
    seen = np.concatenate([next(gen) for _ in range(3)])
    assert len(np.unique(seen)) == 48  # no repeats within a pass
    batch = next(batch_indices(labels, "full_random", 16, seed=3))
    assert np.all(np.diff(labels[batch]) >= 0)  # ordered by class
    with pytest.raises(ValueError, match="divisible"):
        next(batch_indices(labels, "m_per_class", 10, 3))
    with pytest.raises(ValueError, match="sampler"):
        next(batch_indices(labels, "nope", 12, 3))


@pytest.mark.parametrize("augmentation", ["ee", "roth", "test", "none"])
def test_train_pipeline_shapes(augmentation):
    split = load_split("digits", "train", image_size=24)
    data = tfdml.data.train_pipeline(split, batch_size=12, samples_per_class=4, augmentation=augmentation,
                                     image_size=24)
    images, labels = next(iter(data))
    assert images.shape == (12, 24, 24, 3) and images.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255.0
    counts = np.unique(labels.numpy(), return_counts=True)[1]
    assert np.all(counts == 4)


def test_eval_pipeline_keeps_order_and_size():
    split = load_split("digits", "test", image_size=16)
    labels = np.concatenate([y.numpy() for _, y in tfdml.data.eval_pipeline(split, 100, 16)])
    np.testing.assert_array_equal(labels, split.labels)


def test_train_pipeline_rejects_more_classes_than_the_split_has():
    split = load_split("digits", "train")
    with pytest.raises(ValueError, match="only 5 classes"):
        tfdml.data.train_pipeline(split, batch_size=64, samples_per_class=8)


def _image_tree(root, classes=("a", "b", "c", "d"), per_class=3):
    rng = np.random.default_rng(0)
    for cls in classes:
        os.makedirs(root / cls, exist_ok=True)
        for i in range(per_class):
            image = rng.integers(0, 256, (20, 18, 3)).astype(np.uint8)
            tf.io.write_file(str(root / cls / f"{i}.jpg"), tf.io.encode_jpeg(image))


def test_corrupt_image_stops_training_with_an_error_naming_the_file(tmp_path):
    _image_tree(tmp_path)
    bad = tmp_path / "b" / "1.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # a truncated JPEG: valid header, broken data
    with pytest.raises(ValueError, match=re.escape(str(bad)) + ".*truncated JPEG"):
        load_split("folder", "train", str(tmp_path))  # found by the header check before training
    listed = tfdml.data.datasets.image_folder(str(tmp_path), "train")  # unchecked: decoding finds it
    train = tfdml.data.Split("folder", listed.labels, paths=listed.paths)  # classes a, b: every batch holds all of b
    data = tfdml.data.train_pipeline(train, batch_size=6, samples_per_class=3, augmentation="ee", image_size=16)
    model = tfdml.models.EmbeddingModel("small_cnn", embedding_dim=4, input_shape=(16, 16, 3))
    model.compile(optimizer="adam", loss=tfdml.losses.TripletLoss())
    with pytest.raises(tf.errors.OpError, match=re.escape(str(bad))) as error:
        model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
    assert "corrupt, truncated or not a JPEG/PNG/GIF/BMP/WebP image. Delete or replace it" in str(error.value)


def test_non_image_and_missing_files_are_named(tmp_path):
    _image_tree(tmp_path, per_class=2)
    fake = tmp_path / "c" / "2.png"
    fake.write_text("<html>404 not found</html>")
    with pytest.raises(ValueError, match=re.escape(str(fake)) + ".*not a JPEG"):
        load_split("folder", "test", str(tmp_path))
    listed = tfdml.data.datasets.image_folder(str(tmp_path), "test")  # unchecked: decoding finds it
    test = tfdml.data.Split("folder", listed.labels, paths=listed.paths)
    with pytest.raises(tf.errors.OpError, match=re.escape(str(fake))):
        list(tfdml.data.eval_pipeline(test, batch_size=4, image_size=8))
    (tmp_path / "Ebay_train.txt").write_text(
        "image_id class_id super_class_id path\n1 1 1 a/0.jpg\n2 1 1 a/1.jpg\n3 2 1 a/gone.jpg\n")
    with pytest.raises(ValueError, match=r"a/gone\.jpg': file not found"):
        load_split("sop", "train", str(tmp_path))
    with pytest.warns(UserWarning, match="sop train"):
        paths = [str(tmp_path / p) for p in ("a/0.jpg", "a/1.jpg", "a/gone.jpg")]
        sop = tfdml.data.Split("sop", [1, 1, 2], paths=paths)
        tfdml.data.datasets.check_counts(sop, "sop", "train")
    with pytest.raises(tf.errors.OpError, match=r"Image file not found: .*a/gone\.jpg"):
        list(sop.image_dataset())


def test_eval_pipeline_size_follows_the_model_or_is_an_error():
    split = tfdml.data.load_split("digits", "test", image_size=16)
    model = tfdml.models.EmbeddingModel("small_cnn", embedding_dim=8, input_shape=(20, 20, 3))
    images, _ = next(iter(tfdml.data.eval_pipeline(split, 8, augmentation="test", model=model)))
    assert images.shape[1:3] == (20, 20)
    images, _ = next(iter(tfdml.data.eval_pipeline(split, 8, 12, model=model)))  # explicit size wins
    assert images.shape[1:3] == (12, 12)
    with pytest.raises(ValueError, match="image_size="):
        tfdml.data.eval_pipeline(split, augmentation="test")
