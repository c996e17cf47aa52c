"""Configs, the training job, resuming, strategy equivalence and evaluate.py."""
import csv
import glob
import inspect
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

import tfdml
from tfdml.training import DEFAULT_CONFIG, load_config, run

from conftest import mirrored_strategy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_config(tmp_path, **training):
    overrides = [f"output_dir={tmp_path / 'run'}", "dataset.image_size=16", "model.embedding_dim=8",
                 "sampler.batch_size=20", "sampler.samples_per_class=4", "training.epochs=2",
                 "dataset.validation_classes=0", "training.steps_per_epoch=3", "training.eval_every=1",
                 "training.tensorboard=false", "training.evaluate_untrained=false"]
    overrides += [f"training.{k}={v}" for k, v in training.items()]
    return load_config(None, overrides)


def test_default_config_file_matches_embedded_default():
    with open(os.path.join(ROOT, "configs", "default.yaml")) as handle:
        assert yaml.safe_load(handle) == DEFAULT_CONFIG


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml"))))
def test_shipped_configs_validate_and_build_their_loss(path):
    config = load_config(path)
    loss = tfdml.training.build_loss(config, num_classes=100)
    assert isinstance(loss, keras.losses.Loss)


@pytest.mark.parametrize("name", tfdml.losses.names())
def test_every_registered_loss_builds_from_a_config(name):
    overrides = [f"loss.name={name}"]
    config = load_config(None, overrides)  # another loss: its own defaults, not triplet's
    if not tfdml.losses.get_class(name).supports_expansion:
        with pytest.raises(ValueError, match="'expansion'.*expansion=null"):
            tfdml.training.build_loss(config, num_classes=7)
        overrides.append("expansion=null")
        config = load_config(None, overrides)
    if name == "npair":  # EE + N-pair needs unnormalised synthetic points (EE §3); the default expansion normalises
        with pytest.raises(ValueError, match="expansion.normalize: false"):
            tfdml.training.build_loss(config, num_classes=7)
        config = load_config(None, overrides + ["expansion.normalize=false"])
    if name == "cross_batch_memory":  # a wrapper: the wrapped loss and the memory size have no default
        with pytest.raises(ValueError, match="missing 2 required positional arguments: 'loss' and 'memory_size'"):
            tfdml.training.build_loss(config, num_classes=7)
        config = load_config(None, overrides + ["loss.params.memory_size=40", "loss.params.loss={name: contrastive}"])
    loss = tfdml.training.build_loss(config, num_classes=7)
    assert type(loss) is tfdml.losses.get_class(name)
    if "num_classes" in loss.get_config():
        assert loss.get_config()["num_classes"] == 7


def test_roth_config_numbers():
    config = load_config(os.path.join(ROOT, "configs", "roth_margin_cub200.yaml"))
    assert config["model"]["backbone"] == "resnet50" and config["model"]["embedding_dim"] == 128
    assert config["model"]["freeze_batchnorm"] and config["optimizer"]["learning_rate"] == 1e-5
    assert config["optimizer"]["weight_decay"] == 4e-4 and config["sampler"]["samples_per_class"] == 2
    loss = tfdml.training.build_loss(config, num_classes=100)
    assert loss.mining == "distance" and loss.rho == 0.0
    # β's own rate 5e-4 = 50 × 1e-5 through the learning-rate multiplier.
    assert loss.state_layer.lr_multiplier * config["optimizer"]["learning_rate"] == pytest.approx(5e-4)
    rho = tfdml.training.build_loss(load_config(os.path.join(ROOT, "configs", "roth_margin_rho_cub200.yaml")),
                                    num_classes=100)  # per-class beta (their code) needs the class count
    assert rho.rho == 0.35  # Roth et al. Table 4 / their runs: p = 0.35 for the margin loss with beta 1.2 on CUB


def test_ee_paper_config_numbers():
    config = load_config(os.path.join(ROOT, "configs", "ee_cub200.yaml"))
    assert config["model"]["backbone"] == "googlenet" and config["model"]["embedding_dim"] == 512
    assert config["dataset"]["image_size"] == 227
    assert (config["sampler"]["batch_size"], config["sampler"]["samples_per_class"]) == (128, 32)
    assert config["loss"]["params"] == {"margin": 1e-5, "mining": "hard", "average_over": "sum"}
    assert config["optimizer"]["learning_rate"] == 1e-4 and config["optimizer"]["weight_decay"] == 5e-4
    assert config["schedule"] == {"decay_epochs": [400, 800, 1200, 1600], "factor": 0.5}
    assert config["training"]["epochs"] == 4000 and config["training"]["steps_per_epoch"] == 100 * 32 // 128
    assert config["expansion"]["n_points"] == 2
    assert load_config(os.path.join(ROOT, "configs", "ee_cub200_no_ee.yaml"))["expansion"] is None


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="'training.epochz'"):
        load_config(None, ["training.epochz=3"])
    with pytest.raises(ValueError, match="'optimizer.learning_rate'"):
        load_config(None, ["optimizer.learning_rate=fast"])
    with pytest.raises(ValueError, match="'optimizer.name'"):
        load_config(None, ["optimizer.name=lamb"])
    with pytest.raises(ValueError, match="'sampler.batch_size'"):
        load_config(None, ["sampler.batch_size=30", "sampler.samples_per_class=4"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  backbone: small_cnn\n  depth: 3\n")
    with pytest.raises(ValueError, match="'model.depth'"):
        load_config(str(bad))
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(str(tmp_path / "missing.yaml"))


def test_overrides_are_parsed_as_yaml():
    config = load_config(None, ["training.epochs=3", "schedule.decay_epochs=[1, 2]", "expansion=null",
                                "loss.params={margin: 0.1, mining: semihard}"])
    assert config["training"]["epochs"] == 3 and config["schedule"]["decay_epochs"] == [1, 2]
    assert config["expansion"] is None and config["loss"]["params"]["mining"] == "semihard"


def test_a_dotted_loss_params_override_changes_one_key_and_a_mapping_replaces_them():
    default = DEFAULT_CONFIG["loss"]["params"]
    assert load_config(None, ["loss.params.temperature=0.05"])["loss"]["params"] == {**default, "temperature": 0.05}
    assert load_config(None, ["loss.params={margin: 0.1}"])["loss"]["params"] == {"margin": 0.1}
    # another loss starts from its own defaults, also with a dotted override of its parameters
    assert load_config(None, ["loss.name=margin", "loss.params.beta=1.0"])["loss"] == {"name": "margin",
                                                                                       "params": {"beta": 1.0}}
    ee = load_config(os.path.join(ROOT, "configs", "ee_cub200.yaml"), ["loss.params.margin=0.1"])
    assert ee["loss"]["params"] == {"margin": 0.1, "mining": "hard", "average_over": "sum"}  # a file's params replace the defaults
    shared = load_config(os.path.join(ROOT, "configs", "sharing_cub200.yaml"),
                         ["sharing.shared_loss.params.margin=0.3"])["sharing"]["shared_loss"]["params"]
    assert shared["margin"] == 0.3 and shared["sampling"] == "distance"


def test_step_decay_schedule():
    schedule = tfdml.training.step_decay(1.0, [2, 4], 0.5, steps_per_epoch=10)
    assert [float(schedule(s)) for s in (0, 19, 21, 41)] == [1.0, 1.0, 0.5, 0.25]


def test_reduced_default_run_writes_run_directory(tmp_path):
    config = _tiny_config(tmp_path, evaluate_untrained="true")
    results = run(config, verbose=0)
    run_dir = config["output_dir"]
    for name in ("config.yaml", "log.csv", "best.keras", "final.keras", "metrics.json", "saved_model"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    assert set(results) == {"pool", "fc"} and 0.0 <= results["fc"]["recall@1"] <= 1.0
    with open(os.path.join(run_dir, "metrics.json")) as handle:
        assert json.load(handle)["pool"]["recall@8"] == pytest.approx(results["pool"]["recall@8"])
    with open(os.path.join(run_dir, "log.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and "val_pool_recall@1" in rows[0]

    import evaluate

    table = evaluate.main(["--model", os.path.join(run_dir, "final.keras"), "--dataset", "digits", "--taps",
                           "all"])
    assert set(table) == {"pool", "fc"}
    for tap in ("pool", "fc"):
        assert table[tap]["recall@1"] == pytest.approx(results[tap]["recall@1"], abs=1e-6)
    report = evaluate.main(["--model", os.path.join(run_dir, "final.keras"), "--dataset", "digits", "--tap", "fc",
                            "--report", str(tmp_path / "report"), "--tsne-points", "200"])
    assert report["fc"]["recall@1"] == pytest.approx(results["fc"]["recall@1"], abs=1e-6)
    assert "map@r" in report["fc"] and "rho" in report["fc"]
    for name in ("report.md", "metrics.json", "spectrum.png", "joint_tsne.png", "same_vs_different.png"):
        assert os.path.getsize(tmp_path / "report" / name) > 0, name
    served = evaluate.main(["--model", os.path.join(run_dir, "saved_model"), "--dataset", "digits",
                            "--image-size", "16"])
    # The served graph computes the same embeddings up to float rounding (checked directly), which can
    # flip a near-tie between neighbours, so its Recall@1 may differ from Keras' by a query or two.
    queries = tfdml.data.load_split("digits", "test", image_size=16).num_images
    assert served["output"]["recall@1"] == pytest.approx(results["fc"]["recall@1"], abs=3 / queries)
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (6, 16, 16, 3)), tf.float32)
    serving = tf.saved_model.load(os.path.join(run_dir, "saved_model")).signatures["serving_default"]
    served_embeddings = next(iter(serving(images).values())).numpy()
    keras_embeddings = keras.models.load_model(os.path.join(run_dir, "final.keras")).embedder(tap="fc")(images)
    np.testing.assert_allclose(served_embeddings, keras.ops.convert_to_numpy(keras_embeddings), atol=1e-5)


def test_final_table_shows_the_untrained_model_beside_the_trained_one(tmp_path, capsys):
    config = _tiny_config(tmp_path, epochs=1, steps_per_epoch=2, evaluate_untrained="true")
    results = run(config, verbose=0)
    with open(os.path.join(config["output_dir"], "untrained_metrics.json")) as handle:
        untrained = json.load(handle)
    keras.utils.set_random_seed(config["seed"])  # the run's initial weights, rebuilt independently
    fresh = tfdml.training.runner.build_model(config)
    test = tfdml.data.eval_pipeline(tfdml.data.load_split("digits", "test", image_size=16), 256, 16, "test")
    for tap in ("pool", "fc"):
        embeddings, labels = tfdml.metrics.embed(fresh.embedder(tap), test)
        expected = tfdml.metrics.evaluate_embeddings(embeddings, labels, ks=(1, 2, 4, 8), metrics=("recall", "nmi"))
        assert untrained[tap] == pytest.approx(expected, abs=1e-6)
        assert untrained[tap]["recall@1"] != results[tap]["recall@1"] or untrained[tap]["nmi"] != results[tap]["nmi"]
    lines = capsys.readouterr().out.splitlines()
    for tap in ("pool", "fc"):
        row = next(line for line in lines if line.strip().startswith(f"untrained {tap} |"))
        assert f"{100 * untrained[tap]['recall@1']:.2f}" in row
        assert any(line.strip().startswith(f"trained {tap} |") for line in lines)
    config_off = _tiny_config(tmp_path / "off", epochs=1, steps_per_epoch=1, evaluate_untrained="false")
    run(config_off, verbose=0)
    assert not os.path.exists(os.path.join(config_off["output_dir"], "untrained_metrics.json"))


class _Crash(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("simulated kill")


def test_interrupted_run_resumes_from_backup(tmp_path):
    config = _tiny_config(tmp_path, epochs=4)
    with pytest.raises(RuntimeError, match="simulated kill"):
        run(config, callbacks=[_Crash()], verbose=0)
    run(config, verbose=0)
    with open(os.path.join(config["output_dir"], "log.csv")) as handle:
        epochs = [int(row["epoch"]) for row in csv.DictReader(handle)]
    assert epochs == [0, 1, 2, 3]  # continued at epoch 2, not restarted


def _one_step_weights(strategy, x, y, initial, trainer):
    with strategy.scope():
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5)])
        model.set_weights(initial)
        model.compile(optimizer=keras.optimizers.SGD(0.5),
                      loss=tfdml.losses.TripletLoss(margin=0.5, expansion=tfdml.EmbeddingExpansion(2)))
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    if trainer == "fit":
        model.fit(data, epochs=1, verbose=0, shuffle=False)
    else:
        tfdml.training.TrainingLoop(model).fit(data, steps_per_epoch=1, verbose=0)
    return model.get_weights()


@pytest.mark.parametrize("trainer", ["fit", "loop"])
def test_mirrored_step_equals_single_device_step_with_global_batch(trainer):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6)).astype(np.float32)
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    initial = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5)]).get_weights()
    single = _one_step_weights(tf.distribute.get_strategy(), x, y, initial, trainer)
    mirrored = _one_step_weights(mirrored_strategy(), x, y, initial, trainer)
    assert not np.allclose(single[0], initial[0])  # the step did something
    for a, b in zip(single, mirrored):
        np.testing.assert_allclose(a, b, atol=1e-5)



def test_run_directory_has_checkpoints_and_no_backup(tmp_path):
    config = _tiny_config(tmp_path, epochs=1)
    run(config, verbose=0)
    files = set(os.listdir(config["output_dir"]))
    assert {"config.yaml", "log.csv", "best.keras", "final.keras", "metrics.json", "saved_model",
            "checkpoints"} <= files and "backup" not in files
    assert tf.train.latest_checkpoint(os.path.join(config["output_dir"], "checkpoints")).endswith("ckpt-3")


class _CrashAt(keras.callbacks.Callback):
    """Raises at a given point, like a process killed there."""

    def __init__(self, hook, epoch):
        super().__init__()
        setattr(self, hook, self._crash)
        self.epoch = epoch

    def _crash(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("simulated kill")


def _scripted_validation(monkeypatch, recalls):
    """Validation Recall@1 of the k-th evaluation is `recalls[k]` (the same for every tap)."""
    calls = []

    def evaluate(embeddings, labels, ks, metrics):
        value = recalls[len(calls) // 2]  # two taps per evaluation
        calls.append(value)
        return {**{f"recall@{k}": value for k in ks}, "nmi": value}

    monkeypatch.setattr(tfdml.metrics.callbacks, "evaluate_embeddings", evaluate)


@pytest.mark.parametrize("kill", ["on_epoch_begin", "on_epoch_end"])
def test_resume_never_overwrites_the_best_model_with_a_worse_one(tmp_path, monkeypatch, kill):
    # Epochs 0 and 1 score 0.5 and 0.9; after the kill every epoch is worse than 0.9. Killed when
    # epoch 2 starts (epoch 1's checkpoint holds the best score) or right after epoch 1's
    # best.keras was written (before its checkpoint: the record next to the checkpoints holds it).
    _scripted_validation(monkeypatch, [0.5, 0.9, 0.6, 0.7, 0.8])
    config = _tiny_config(tmp_path, epochs=4)
    with pytest.raises(RuntimeError, match="simulated kill"):
        run(config, callbacks=[_CrashAt(kill, 2 if kill == "on_epoch_begin" else 1)], verbose=0)
    best = os.path.join(config["output_dir"], "best.keras")
    with open(best, "rb") as handle:
        saved = handle.read()
    run(config, verbose=0)
    with open(best, "rb") as handle:
        assert handle.read() == saved, "best.keras was overwritten by a worse epoch after resuming"
    with open(os.path.join(config["output_dir"], "checkpoints", "best.json")) as handle:
        assert json.load(handle) == {"monitor": "val_pool_recall@1", "best": 0.9, "best_epoch": 1}


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    def config(name):
        return load_config(None, [f"output_dir={tmp_path / name}", "dataset.image_size=16",
                                  "model.embedding_dim=8", "sampler.batch_size=20", "sampler.samples_per_class=4",
                                  "dataset.validation_classes=0",
                                  "augmentation.train=test", "training.epochs=2", "training.steps_per_epoch=4",
                                  "training.checkpoint_every=3", "training.eval_every=1",
                                  "training.tensorboard=false"])

    class KillAtStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1 and len(self.model.history.epoch) == 1:  # step 6; last checkpoint at step 4
                raise RuntimeError("simulated kill")

    run(config("uninterrupted"), verbose=0)
    with pytest.raises(RuntimeError, match="simulated kill"):
        run(config("resumed"), callbacks=[KillAtStep()], verbose=0)
    run(config("resumed"), verbose=0)
    a = keras.models.load_model(tmp_path / "uninterrupted" / "final.keras").get_weights()
    b = keras.models.load_model(tmp_path / "resumed" / "final.keras").get_weights()
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=1e-6)
    logs = []
    for name in ("uninterrupted", "resumed"):
        with open(tmp_path / name / "log.csv") as handle:
            logs.append(list(csv.DictReader(handle)))
    assert [row["epoch"] for row in logs[1]] == ["0", "1"]
    for row_a, row_b in zip(*logs):
        assert float(row_a["loss"]) == pytest.approx(float(row_b["loss"]), rel=1e-6)


def test_backup_of_an_older_tfdml_is_migrated(tmp_path, capsys):
    config = _tiny_config(tmp_path, epochs=2)
    run_dir = config["output_dir"]
    model = tfdml.training.build_model(config)  # what Keras' BackupAndRestore left after epoch 0
    model.compile(optimizer="adam", loss=tfdml.training.build_loss(config))
    model.optimizer.build(model.trainable_variables)
    os.makedirs(os.path.join(run_dir, "backup"))
    model.save_weights(os.path.join(run_dir, "backup", "latest.weights.h5"))
    with open(os.path.join(run_dir, "backup", "training_metadata.json"), "w") as handle:
        json.dump({"epoch": 1, "batch": 0}, handle)
    with open(os.path.join(run_dir, "log.csv"), "w") as handle:
        handle.write("epoch,loss,val_pool_recall@1\n0,123.0,0.99\n")
    model.save(os.path.join(run_dir, "best.keras"))
    run(config, verbose=0)
    assert "Migrated the BackupAndRestore backup" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(run_dir, "backup"))
    with open(os.path.join(run_dir, "log.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["0", "1"] and rows[0]["loss"] == "123.0"  # resumed at epoch 1
    with open(os.path.join(run_dir, "checkpoints", "best.json")) as handle:
        assert json.load(handle)["best"] == 0.99


@pytest.mark.parametrize("tf_config, message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["localhost:1", "localhost:2"]}}', "TF_CONFIG has no 'task'"),
    ('{"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 2}}',
     r"TF_CONFIG task index 2 is out of range.*0\.\.1"),
    ('{"task": {"type": "worker", "index": 0}}', "TF_CONFIG has no 'cluster'"),
    ('{"cluster": {"worker": "localhost:1"}, "task": {"type": "worker", "index": 0}}', "list of 'host:port'"),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "chief", "index": 0}}', "task type 'chief'"),
])
def test_bad_tf_config_names_tf_config_and_the_problem(monkeypatch, tf_config, message):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    for strategy in ("auto", "multi_worker"):
        with pytest.raises(ValueError, match=message):
            tfdml.training.make_strategy(strategy)


def test_multi_worker_cluster_from_slurm(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    for name in ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST", "SLURM_STEP_TASKS_PER_NODE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG.*srun"):
        tfdml.training.cluster_resolver("multi_worker")
    assert tfdml.training.cluster_resolver("auto") is None
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "node[7-8]")
    monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "2(x2)")
    resolver = tfdml.training.cluster_resolver("multi_worker")
    assert isinstance(resolver, tf.distribute.cluster_resolver.SlurmClusterResolver)
    assert resolver.cluster_spec().as_dict() == {
        "worker": ["node7:8888", "node7:8889", "node8:8888", "node8:8889"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 3)


def test_config_uses_the_modules_lists_and_argument_names():
    from tfdml.training import config as config_module

    assert config_module._CHOICES["sampler.name"] is tfdml.data.samplers.SAMPLER_NAMES
    assert config_module._CHOICES["augmentation.train"] is tfdml.data.AUGMENTATIONS
    assert config_module._CHOICES["training.strategy"] is tfdml.training.strategy.STRATEGIES
    assert config_module._CHOICES["model.pooling"] is tfdml.models.POOLINGS
    assert DEFAULT_CONFIG["training"]["export_tap"] == tfdml.models.DEFAULT_TAP
    assert "strict" in inspect.signature(tfdml.data.load_split).parameters
    assert DEFAULT_CONFIG["dataset"]["strict"] is False
    with pytest.raises(ValueError, match="'dataset.strict_counts'"):
        load_config(None, ["dataset.strict_counts=true"])
    with pytest.raises(ValueError, match="'training.checkpoint_every'"):
        load_config(None, ["training.checkpoint_every=-1"])
    with pytest.raises(ValueError, match="'training.jit_compile'"):
        load_config(None, ["training.jit_compile=maybe"])
    assert load_config(None, ["training.jit_compile=true"])["training"]["jit_compile"] is True
    with pytest.raises(ValueError, match="sampler.samples_per_class.*divisible"):
        load_config(None, ["sampler.batch_size=30", "sampler.samples_per_class=4"])


def test_config_rejects_invalid_expansion_values_like_the_python_api():
    """`expansion.n_points=-1` used to train silently without EE (issue 15 item 6)."""
    with pytest.raises(ValueError, match="'expansion'.*n_points"):
        tfdml.training.build_loss(load_config(None, ["expansion.n_points=-1"]))
    assert tfdml.training.build_loss(load_config(None, ["expansion.n_points=0"])).expansion is None
