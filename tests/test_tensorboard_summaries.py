"""TensorBoard summaries read back from the event files: the sweep's HParams plugin data."""
import glob
import os

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
