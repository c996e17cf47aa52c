"""TensorBoard summaries read back from the event files: the sweep's HParams plugin data."""
import glob
import os

import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import metadata as hparams_metadata

from tfdml.training import sweep


def events(directory):
    """Every summary value of the event files directly in `directory`: [(tag, value proto)]."""
    values = []
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            values += [(value.tag, value) for value in event.summary.value]
    return values


def test_sweep_hparams_experiment_and_trials_read_back(tmp_path):
    rows = [{"config": "default", "point": {"expansion.n_points": n, "expansion.normalize": normalize}, "seed": seed,
             "values": {"fc/recall@1": 0.5 + n / 100 + seed / 1000, "fc/nmi": 0.3}}
            for n in (2, 4) for normalize in (True, False) for seed in (0, 1)]
    root = sweep.write_hparams(str(tmp_path), rows)
    ((tag, value),) = events(root)
    assert tag == hparams_metadata.EXPERIMENT_TAG
    experiment = hparams_metadata.parse_experiment_plugin_data(value.metadata.plugin_data.content)
    assert [h.name for h in experiment.hparam_infos] == ["config", "seed", "expansion.n_points",
                                                         "expansion.normalize"]
    n_points = experiment.hparam_infos[2]
    assert [v.number_value for v in n_points.domain_discrete.values] == [2, 4]
    assert [m.name.tag for m in experiment.metric_infos] == ["fc/recall@1", "fc/nmi"]
    for row in rows:
        point = f"expansion.n_points={row['point']['expansion.n_points']}," \
                f"expansion.normalize={str(row['point']['expansion.normalize']).lower()}"
        trial = os.path.join(root, "default", point, f"seed{row['seed']}")
        found = dict(events(trial))
        start = hparams_metadata.parse_session_start_info_plugin_data(
            found[hparams_metadata.SESSION_START_INFO_TAG].metadata.plugin_data.content)
        assert start.hparams["config"].string_value == "default"
        assert start.hparams["seed"].number_value == row["seed"]
        assert start.hparams["expansion.n_points"].number_value == row["point"]["expansion.n_points"]
        assert start.hparams["expansion.normalize"].bool_value == row["point"]["expansion.normalize"]
        for name, expected in row["values"].items():
            assert abs(float(tf.make_ndarray(found[name].tensor)) - expected) < 1e-6


def image_summaries(directory):
    """{(tag, step): uint8 image} of the image summaries in `directory`'s event files."""
    found = {}
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "images":
                    encoded = tf.make_ndarray(value.tensor)  # [width, height, png]
                    found[(value.tag, event.step)] = tf.io.decode_png(encoded[2]).numpy()
    return found


def _frame_colour(grid, row, column, cell):
    return tuple(grid[row * cell, column * cell])


def test_retrieval_examples_grid_is_logged_with_class_coloured_frames(tmp_path):
    import numpy as np

    from tfdml.analysis import retrieval_examples as examples_module
    from tfdml.analysis.projector import thumbnail
    from tfdml.data import load_split

    split = load_split("digits", "test", image_size=16)
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(split.num_images, 4)).astype(np.float32) + 3 * np.eye(4)[split.labels % 4]
    examples = examples_module.RetrievalExamples(split, str(tmp_path), queries=4, k=3, tile=20)
    logged = examples.log("fc", embeddings, split.labels, step=7)
    (key, image), = image_summaries(str(tmp_path)).items()
    assert key == ("retrieval/fc", 7)
    np.testing.assert_array_equal(image, logged)
    cell = 20 + 2 * 3
    assert image.shape == (4 * cell, 4 * cell, 3)
    load = split.image_loader()
    for row, query in enumerate(examples.queries):
        distances = np.sum((embeddings - embeddings[query]) ** 2, axis=1)
        distances[query] = np.inf
        nearest = np.argsort(distances, kind="stable")[:3]
        assert _frame_colour(image, row, 0, cell) == examples_module.QUERY_COLOUR
        np.testing.assert_array_equal(image[row * cell + 3:row * cell + 23, 3:23],
                                      thumbnail(load(tf.constant(int(query), tf.int64)), 20))
        for column, neighbour in enumerate(nearest, start=1):
            same = split.labels[neighbour] == split.labels[query]
            expected = examples_module.SAME_COLOUR if same else examples_module.OTHER_COLOUR
            assert _frame_colour(image, row, column, cell) == expected
            np.testing.assert_array_equal(image[row * cell + 3:row * cell + 23, column * cell + 3:column * cell + 23],
                                          thumbnail(load(tf.constant(int(neighbour), tf.int64)), 20))


def test_evaluation_callback_logs_retrieval_examples_each_evaluation(tmp_path):
    import numpy as np

    import tfdml
    from tfdml.analysis.retrieval_examples import RetrievalExamples

    split = tfdml.data.load_split("digits", "test", image_size=16)
    model = tfdml.models.EmbeddingModel("small_cnn", embedding_dim=8, input_shape=(16, 16, 3))
    model.compile(optimizer="sgd", loss=lambda y, p: tf.reduce_mean(p * 0.0))
    evaluation = tfdml.metrics.RetrievalEvaluation(tfdml.data.eval_pipeline(split, 256, 16), every=2, taps=["fc"],
                                                   examples=RetrievalExamples(split, str(tmp_path)))
    model.fit(np.zeros((4, 16, 16, 3), np.float32), np.zeros((4, 8), np.float32), epochs=3, verbose=0,
              callbacks=[evaluation])
    assert sorted(image_summaries(str(tmp_path))) == [("retrieval/fc", 1), ("retrieval/fc", 2), ("retrieval/fc", 3)]


@pytest.mark.parametrize("selection", ["dataset.validation_classes=0", "dataset.validation_classes=2"])
def test_training_logs_retrieval_examples_under_tensorboard(tmp_path, selection):
    """With and without a validation split: the examples search the split that each evaluation embeds."""
    from tfdml.training import load_config, run

    config = load_config(None, ["dataset.image_size=16", selection, "model.embedding_dim=8",
                                "sampler.batch_size=12",
                                "sampler.samples_per_class=4", "training.epochs=1", "training.steps_per_epoch=1",
                                "training.evaluate_untrained=false", "training.taps=[fc]",
                                f"output_dir={tmp_path / 'run'}"])
    run(config, verbose=0)
    assert sorted(image_summaries(str(tmp_path / "run" / "tensorboard" / "retrieval"))) == [("retrieval/fc", 1)]
