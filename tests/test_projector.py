"""TensorBoard Embedding Projector files (evaluate.py --projector, EmbeddingProjector) read back with the projector
plugin's config proto and `tf.train.load_checkpoint`."""
import csv
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorboard.plugins.projector import projector_config_pb2

import evaluate
import tfdml
from tfdml.analysis import projector
from tfdml.models.export import load_keras_model


def read_projector(log_dir):
    """(config proto, {tensor name: array}, metadata rows, sprite array or None) as the projector plugin reads them."""
    config = projector_config_pb2.ProjectorConfig()
    with open(os.path.join(log_dir, "projector_config.pbtxt")) as handle:
        text_format.Parse(handle.read(), config)
    checkpoint = config.model_checkpoint_path or tf.train.latest_checkpoint(log_dir)
    reader = tf.train.load_checkpoint(os.path.join(log_dir, checkpoint))
    tensors = {e.tensor_name: reader.get_tensor(e.tensor_name) for e in config.embeddings}
    assert tf.train.latest_checkpoint(log_dir) == os.path.join(log_dir, checkpoint)
    with open(os.path.join(log_dir, config.embeddings[0].metadata_path), newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    sprite_path = config.embeddings[0].sprite.image_path
    sprite = np.asarray(keras.utils.load_img(os.path.join(log_dir, sprite_path))) if sprite_path else None
    return config, tensors, rows, sprite


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("models") / "model.keras")
    tfdml.models.EmbeddingModel("small_cnn", embedding_dim=8, input_shape=(16, 16, 3)).save(path)
    return path


def test_evaluate_projector_files_load_with_the_projector_reader(model_path, tmp_path):
    out = str(tmp_path / "projector")
    evaluate.main(["--model", model_path, "--dataset", "digits", "--taps", "pool,fc", "--quiet",
                   "--projector", out, "--projector-points", "40"])
    config, tensors, rows, sprite = read_projector(out)
    from test_tensorboard_summaries import image_summaries

    assert sorted(image_summaries(out)) == [("retrieval/fc", 0), ("retrieval/pool", 0)]
    assert [e.tensor_name for e in config.embeddings] == ["pool/.ATTRIBUTES/VARIABLE_VALUE",
                                                          "fc/.ATTRIBUTES/VARIABLE_VALUE"]
    split = tfdml.data.load_split("digits", "test", image_size=16)
    indices = projector.sample_indices(split.num_images, 40)
    model = load_keras_model(model_path)
    data = tfdml.data.eval_pipeline(split, 256, 16)
    for tap in ("pool", "fc"):
        full, labels = tfdml.metrics.embed(model.embedder(tap), data)
        np.testing.assert_allclose(tensors[f"{tap}/.ATTRIBUTES/VARIABLE_VALUE"], full[indices], rtol=1e-5, atol=1e-5)
    assert rows[0] == ["label", "class", "split", "file"] and len(rows) == 41
    for row, i in zip(rows[1:], indices):
        assert row == [str(split.labels[i]), split.class_names[split.labels[i]], "digits", f"#{i}"]
    side = config.embeddings[0].sprite.single_image_dim[0]
    load = split.image_loader()
    per_row = int(np.ceil(np.sqrt(40)))
    for n, i in enumerate(indices):
        r, c = divmod(n, per_row)
        tile = sprite[r * side:(r + 1) * side, c * side:(c + 1) * side]
        np.testing.assert_array_equal(tile, projector.thumbnail(load(tf.constant(int(i), tf.int64)), side))


def test_write_projector_checks_shapes(tmp_path):
    with pytest.raises(ValueError, match=r"embeddings\['fc'\] must have shape \(3, D\)"):
        projector.write_projector(str(tmp_path), {"fc": np.zeros((2, 4))}, [0, 1, 2])
    with pytest.raises(ValueError, match="max_points must be >= 1"):
        projector.sample_indices(10, 0)


def test_callback_writes_every_k_epochs_and_after_the_last(tmp_path):
    split = tfdml.data.load_split("digits", "test", image_size=16)
    model = tfdml.models.EmbeddingModel("small_cnn", embedding_dim=8, input_shape=(16, 16, 3))
    model.compile(optimizer="sgd", loss=lambda y, p: tf.reduce_mean(p * 0.0))
    callback = projector.EmbeddingProjector(split, str(tmp_path), 16, every=2, taps=["fc"], max_points=20)
    x, y = np.zeros((4, 16, 16, 3), np.float32), np.zeros((4, 8), np.float32)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[callback])
    assert sorted(os.listdir(tmp_path)) == ["epoch_0002", "epoch_0003"]
    config, tensors, rows, sprite = read_projector(str(tmp_path / "epoch_0003"))
    assert tensors["fc/.ATTRIBUTES/VARIABLE_VALUE"].shape == (20, 8) and len(rows) == 21 and sprite is not None


def test_training_config_key_writes_the_projector_every_k_epochs(tmp_path):
    from tfdml.training import load_config, run

    config = load_config(None, ["dataset.image_size=16", "dataset.validation_classes=0", "model.embedding_dim=8",
                                "sampler.batch_size=20",
                                "sampler.samples_per_class=4", "training.epochs=2", "training.steps_per_epoch=1",
                                "training.eval_every=2", "training.tensorboard=false",
                                "training.evaluate_untrained=false", "analysis.projector_every=1",
                                "analysis.projector_points=30", f"output_dir={tmp_path / 'run'}"])
    run(config, verbose=0)
    root = tmp_path / "run" / "tensorboard" / "projector"
    assert sorted(os.listdir(root)) == ["epoch_0001", "epoch_0002"]
    config_proto, tensors, rows, _ = read_projector(str(root / "epoch_0002"))
    taps = tfdml.training.DEFAULT_CONFIG["training"]["taps"]
    assert [e.tensor_name.split("/")[0] for e in config_proto.embeddings] == taps and len(rows) == 31


@pytest.mark.parametrize("override, match", [("analysis.projector_every=-1", "analysis.projector_every"),
                                             ("analysis.projector_points=0", "analysis.projector_points")])
def test_projector_config_keys_are_validated(override, match):
    with pytest.raises(ValueError, match=match):
        tfdml.training.load_config(None, [override])
