"""Sharing Matters wiring: the two-head EmbeddingModel, MirroredStrategy equivalence, the grouping variant,
the (B, B*) pipeline, configs and the train.py hook."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdml
from tfdml.sharing import SharingObjective
from tfdml.training.sharing import build_shared_loss
from tfdml.training import load_config, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = np.random.default_rng(0).uniform(0, 255, size=(4, 12, 12, 3)).astype(np.float32)


def _model(**kwargs):
    arguments = dict(backbone="small_cnn", embedding_dim=None, heads={"class": 5, "shared": 6},
                     input_shape=(12, 12, 3), freeze_batchnorm=True)
    return tfdml.models.EmbeddingModel(**{**arguments, **kwargs})


def test_two_heads_are_linear_layers_on_pool_with_l2_outputs_and_taps():
    model = _model()
    assert model.taps == ["pool", "class", "shared", "concat"] and model.embedding_dim is None
    outputs = model(IMAGES)
    pool = keras.Model(model.inputs[0], model.get_layer("pool").output)(IMAGES).numpy()
    for head, width in (("class", 5), ("shared", 6)):
        layer = model.get_layer(head)
        raw = pool @ layer.kernel.numpy() + layer.bias.numpy()  # φ = ℓ2(W f + b)
        np.testing.assert_allclose(outputs[head].numpy(), raw / np.linalg.norm(raw, axis=1, keepdims=True),
                                   atol=1e-5)
        np.testing.assert_allclose(model.embedder(head)(IMAGES).numpy(), outputs[head].numpy(), atol=1e-6)
        assert outputs[head].shape == (4, width)
    assert model.get_layer("class").get_config()["activation"] == "linear"
    restored = tfdml.models.EmbeddingModel.from_config(model.get_config())
    assert restored.heads == {"class": 5, "shared": 6} and restored.taps == model.taps
    single = tfdml.models.EmbeddingModel("small_cnn", embedding_dim=4, input_shape=(12, 12, 3))
    assert single.heads is None and single.get_config()["heads"] is None and single.taps == ["pool", "fc"]


def test_bad_heads_and_compile_errors_name_the_argument():
    with pytest.raises(ValueError, match="embedding_dim=None"):
        _model(embedding_dim=8)
    for heads in ({}, {"class": 0}, {"pool": 4}, {"conv1": 4}, {"block1": 3}, {"concat": 3}, {"a b": 2},
                  {"class": True}, [("class", 4)]):
        with pytest.raises(ValueError, match="heads"):
            _model(heads=heads)
    one_head = _model(heads={"class": 4})
    assert one_head.taps == ["pool", "class"]
    with pytest.raises(ValueError, match="SharingObjective"):
        _model().compile(optimizer="adam", loss=tfdml.losses.TripletLoss())
    with pytest.raises(ValueError, match="heads 'class' and 'shared'"):
        one_head.compile(optimizer="adam", loss=SharingObjective())
    model = _model()
    model.compile(optimizer="adam", loss=SharingObjective())
    with pytest.raises(ValueError, match="already attached"):
        model.compile(optimizer="adam", loss=SharingObjective())
    with pytest.raises(ValueError, match="gamma"):
        SharingObjective(gamma=-1.0)
    with pytest.raises(ValueError, match="pair of batches"):
        model.fit(tf.data.Dataset.from_tensors((IMAGES, np.arange(4))), verbose=0)


def _one_sharing_step(strategy, images, labels, weights):
    with strategy.scope():
        model = _model()
        objective = SharingObjective(class_loss=tfdml.losses.MarginLoss(seed=1),
                                     shared_loss=tfdml.losses.SharedTripletLoss(seed=2), gamma=50.0,
                                     regressor_units=8)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=objective, jit_compile=False)
        for variable, value in zip(model.trainable_variables, weights):
            variable.assign(value)
    data = tfdml.sharing.paired_batches(tf.data.Dataset.from_tensors((images[:8], labels[:8])),
                                        tf.data.Dataset.from_tensors((images[8:], labels[8:])))
    history = model.fit(data, epochs=1, verbose=0)
    return [v.numpy() for v in model.trainable_variables], history.history


def _mirrored_strategy_with_own_collective_keys():
    """MirroredStrategy over the two logical CPUs with collective keys no other test's strategy uses.

    TF caches each collective op's shape by (group, instance) key, and every MirroredStrategy over the same
    devices starts its keys at the same base: a strategy created later in this process (another test) would
    reuse this one's keys with other shapes and abort ("Shape mismatch in the collective instance").
    TF's own tests offset the key base the same way (strategy_combinations).
    """
    base = tf.distribute.MirroredStrategy._collective_key_base
    tf.distribute.MirroredStrategy._collective_key_base = base + 1_000_000
    try:
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    finally:
        tf.distribute.MirroredStrategy._collective_key_base = base


def test_mirrored_sharing_step_equals_single_device_step_with_global_batch():
    rng = np.random.default_rng(3)
    labels = np.tile(np.repeat(np.arange(4), 2), 2).astype(np.int32)  # B and B*: 4 classes × 2 each
    images = rng.uniform(0, 255, size=(16, 12, 12, 3)).astype(np.float32) + labels[:, None, None, None] * 10
    keras.utils.set_random_seed(0)
    reference = _model()
    reference.compile(optimizer="sgd", loss=SharingObjective(regressor_units=8))
    weights = [v.numpy() for v in reference.trainable_variables]
    single, single_logs = _one_sharing_step(tf.distribute.get_strategy(), images, labels, weights)
    mirrored, mirrored_logs = _one_sharing_step(_mirrored_strategy_with_own_collective_keys(), images, labels,
                                                weights)
    assert any(not np.allclose(a, b) for a, b in zip(single, weights))  # the step did something
    assert len(single) == len(mirrored) == len(weights)
    for a, b, w in zip(single, mirrored, weights):  # the updates agree up to float32 summation order
        np.testing.assert_allclose(a - w, b - w, atol=1e-3 * np.abs(a - w).max() + 1e-7)
    for key in tfdml.sharing.LOG_KEYS:
        assert mirrored_logs[key][0] == pytest.approx(single_logs[key][0], rel=1e-4, abs=1e-6)


def test_per_class_standardisation_matches_a_loop_reference():
    rng = np.random.default_rng(1)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    features = rng.normal(size=(9, 3)) * np.arange(1, 10)[:, None]
    features[5:, 2] = 4.0  # a constant dimension within class 2 (σ = 0 counts as 1)
    result = tfdml.sharing.standardize_per_class(features, labels)
    for i, label in enumerate(labels):
        members = features[labels == label]
        for s in range(3):
            mean = sum(members[:, s]) / len(members)
            std = (sum((v - mean) ** 2 for v in members[:, s]) / len(members)) ** 0.5
            assert result[i, s] == pytest.approx((features[i, s] - mean) / (std if std > 1e-8 else 1.0))


def test_groups_cut_across_classes():
    """Features = class offset + one of 3 shared patterns: per-class standardisation removes the class, so
    k-means recovers the shared patterns (every group spans all classes)."""
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(4), 30)
    pattern = np.tile(np.arange(3), 40)
    features = (rng.normal(size=(4, 8)) * 50)[labels] + (rng.normal(size=(3, 8)) * 5)[pattern]
    features += rng.normal(size=features.shape) * 0.1
    groups = tfdml.sharing.cluster_groups(features, labels, num_groups=3, seed=0)
    assert groups.dtype == np.int32 and set(groups) == {0, 1, 2}
    for g in range(3):  # each group is exactly one pattern and contains every class
        assert len(set(pattern[groups == g])) == 1 and set(labels[groups == g]) == set(range(4))
    raw = tfdml.sharing.cluster_groups(features, labels, num_groups=3, seed=0, standardize=False)  # "T^G − std"
    for g in set(raw):  # without standardisation the class offsets dominate: groups are unions of classes
        assert all(set(raw[labels == c]) == {g} for c in set(labels[raw == g]))
    with pytest.raises(ValueError, match="num_groups"):
        tfdml.sharing.cluster_groups(features, labels, num_groups=1)
    features[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tfdml.sharing.cluster_groups(features, labels, num_groups=3)


def test_regrouping_callback_relabels_the_shared_batches():
    split = tfdml.data.digits_split("train", image_size=12)
    assignment = tfdml.sharing.GroupAssignment(len(split.labels))
    pairs = tfdml.sharing.paired_train_pipeline(split, batch_size=20, samples_per_class=4, augmentation="none",
                                                image_size=12, seed=0, shared_labels=assignment)
    model = _model()
    ordered = tfdml.data.eval_pipeline(split, 256, 12, "none")
    callback = tfdml.sharing.RegroupingCallback(ordered, assignment, num_groups=4, every=2, seed=0)
    callback.set_model(model)
    callback.on_train_begin()
    assert assignment.updates == 1 and set(np.unique(assignment.groups)) == {0, 1, 2, 3}
    for epoch, regrouped in ((0, False), (1, False), (2, True), (3, False), (4, True)):
        before = assignment.updates
        callback.on_epoch_begin(epoch)
        assert (assignment.updates > before) == regrouped
    (_, class_labels), (shared_images, shared_labels) = next(iter(pairs))
    assert set(np.unique(class_labels)) <= set(range(5)) and len(np.unique(class_labels)) == 5
    # B* is class-sampled (4 per class) but carries the current group ids.
    batch_groups = shared_labels.numpy()
    assert set(batch_groups) <= set(np.unique(assignment.groups)) and shared_images.shape == (20, 12, 12, 3)
    assignment.update(np.full(len(split.labels), 7))
    later = [y.numpy() for (_, _), (_, y) in pairs.take(12)][-1]
    assert (later == 7).all()  # new groups reach the pipeline (after the prefetched batches)
    with pytest.raises(ValueError, match="shape"):
        assignment.update(np.zeros(3))


def test_train_pipeline_relabel_keeps_images_and_class_sampling():
    split = tfdml.data.digits_split("train", image_size=8)
    plain = tfdml.data.train_pipeline(split, batch_size=10, samples_per_class=2, augmentation="none",
                                      image_size=8, seed=3)
    relabelled = tfdml.data.train_pipeline(split, batch_size=10, samples_per_class=2, augmentation="none",
                                           image_size=8, seed=3, relabel=lambda: split.labels + 100)
    (x1, y1), (x2, y2) = next(iter(plain)), next(iter(relabelled))
    np.testing.assert_array_equal(x1.numpy(), x2.numpy())
    np.testing.assert_array_equal(y1.numpy() + 100, y2.numpy())


def test_shipped_sharing_configs_hold_the_paper_defaults():
    for name in ("cub200", "cars196", "sop"):
        config = load_config(os.path.join(ROOT, "configs", f"sharing_{name}.yaml"))
        model, sampler, sharing = config["model"], config["sampler"], config["sharing"]
        assert model["backbone"] == "resnet50" and model["freeze_batchnorm"] and model["embedding_dim"] is None
        assert model["heads"] == {"class": 128, "shared": 128}
        assert (sampler["batch_size"], sampler["samples_per_class"]) == (112, 4)
        assert config["optimizer"]["name"] == "adam" and config["optimizer"]["learning_rate"] == 1e-5
        assert config["loss"]["name"] == "margin" and config["loss"]["params"]["margin"] == 0.2
        assert sharing["gamma"] == 500.0 and sharing["regressor_units"] == 512 and sharing["groups"] == 0
        loss = build_shared_loss(sharing["shared_loss"])
        assert isinstance(loss, tfdml.losses.SharedTripletLoss)
        assert (loss.form, loss.sampling, loss.margin, loss.learn_beta) == ("margin", "distance", 0.2, True)
        assert config["training"]["export_tap"] == "class"
        assert config["augmentation"] == {"train": "sharing", "test": "sharing_test"}  # 256 x 256, crop 224
        assert config["training"]["epochs"] == (100 if name == "sop" else 150)  # as Roth et al.
        assert sharing["regressor_normalize"] is True


def test_sharing_config_errors_name_the_key():
    heads = ["model.embedding_dim=null", "model.heads={class: 8, shared: 8}"]
    with pytest.raises(ValueError, match="'model.heads'.*'sharing' is null"):
        load_config(None, heads)
    with pytest.raises(ValueError, match="'sharing' needs 'model.heads'"):
        load_config(None, ["sharing={gamma: 1.0}"])
    for override, key in (("sharing.gamma=-1", "sharing.gamma"), ("sharing.groups=1", "sharing.groups"),
                          ("sharing.regroup_every=0", "sharing.regroup_every"),
                          ("sharing.gamma=big", "sharing.gamma"), ("sharing.extra=1", "sharing.extra")):
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            load_config(None, [*heads, "sharing={gamma: 2.0}", override])
    config = load_config(None, [*heads, "sharing={groups: 5}", "sharing.shared_loss.name=margin"])
    assert config["sharing"]["shared_loss"] == {"name": "margin", "params": {}}  # another loss: its defaults
    loss = build_shared_loss({"name": "margin", "params": {"per_class_beta": True}}, 5)
    assert loss.num_classes == 5
    with pytest.raises(ValueError, match="sharing.shared_loss.params"):
        build_shared_loss({"name": "shared_triplet", "params": {"alpha": 1}})


def test_train_py_runs_sharing_matters_end_to_end(tmp_path):
    """Config → two-head model, objective, (B, B*) pipeline, two updates per step, evaluation, .keras files
    and the export."""
    config = load_config(None, [
        f"output_dir={tmp_path / 'run'}", "dataset.image_size=12", "model.embedding_dim=null",
        "model.heads={class: 8, shared: 8}", "model.freeze_batchnorm=true", "loss.name=margin", "expansion=null",
        "sharing={gamma: 10.0, regressor_units: 16}", "sampler.batch_size=20", "sampler.samples_per_class=4",
        "dataset.validation_classes=0", "training.epochs=2", "training.steps_per_epoch=2", "training.eval_every=1",
        "training.tensorboard=false", "training.evaluate_untrained=false",
        "training.taps=[shared]", "training.export_tap=shared", "schedule.decay_epochs=[1]",
        "training.strategy=default"])
    results = run(config, verbose=0)
    assert set(results) == {"shared"}
    run_dir = config["output_dir"]
    history = tfdml.analysis.read_history(os.path.join(run_dir, "log.csv"))
    assert {"class_loss", "shared_loss", "val_shared_recall@1"} <= set(history) and len(history["loss"]) == 2
    restored = keras.models.load_model(os.path.join(run_dir, "final.keras"))
    # Two optimizer updates per step; the step decay counts updates (epoch 1 = 2 steps × 2 updates).
    assert int(restored.optimizer.iterations) == 8
    assert float(restored.optimizer.learning_rate) == pytest.approx(0.5e-3)
    served = tf.saved_model.load(os.path.join(run_dir, "saved_model")).signatures["serving_default"]
    images = np.random.default_rng(0).uniform(0, 255, size=(3, 12, 12, 3)).astype(np.float32)
    np.testing.assert_allclose(served(images=tf.constant(images))["embeddings"].numpy(),
                               restored.embedder("shared")(images).numpy(), atol=1e-5)
