"""tfdml.training.TrainingLoop: equal to model.fit, strategies, step hooks, mixed precision, XLA, resuming."""
import numpy as np
import keras
import pytest
import tensorflow as tf

import tfdml
from tfdml.data import batch_indices, digits_split
from tfdml.training import TrainingLoop, fit_model, train_input

from conftest import mirrored_strategy




@pytest.fixture(scope="module")
def split():
    return digits_split("train", image_size=16)


def _images(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, 16, 16, 3)).astype("float32"), np.repeat(np.arange(5), n // 5)


def _dataset(batch_size=20):
    x, y = _images()
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size, drop_remainder=True).repeat()


LOSSES = {
    "triplet_hard_ee": lambda: tfdml.losses.TripletLoss(margin=0.2, mining="hard",
                                                        expansion=tfdml.EmbeddingExpansion(2)),
    "proxy_nca": lambda: tfdml.losses.get("proxy_nca", num_classes=5, seed=3),
}


def _model(loss, strategy=None, jit_compile=False, optimizer=None, freeze_batchnorm=False):
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(1)
    with strategy.scope():
        model = tfdml.models.EmbeddingModel("small_cnn", embedding_dim=8, input_shape=(16, 16, 3),
                                            freeze_batchnorm=freeze_batchnorm)
        model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-2), loss=loss, jit_compile=jit_compile)
    return model


def _max_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a.get_weights(), b.get_weights()))


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_loop_equals_fit_on_one_device(loss):
    with_fit, with_loop = _model(LOSSES[loss]()), _model(LOSSES[loss]())
    initial = [w.copy() for w in with_loop.get_weights()]
    fit_history = with_fit.fit(_dataset(), epochs=2, steps_per_epoch=3, verbose=0)
    loop_history = TrainingLoop(with_loop).fit(_dataset(), epochs=2, steps_per_epoch=3, verbose=0)
    assert max(float(np.max(np.abs(w - v))) for w, v in zip(initial, with_loop.get_weights())) > 1e-3
    assert _max_difference(with_fit, with_loop) < 1e-5
    np.testing.assert_allclose(loop_history.history["loss"], fit_history.history["loss"], rtol=1e-5)
    if loss == "proxy_nca":  # the loss state (proxies) trained, inside the model's variables
        assert any(v is with_loop.tfdml_loss_state.raw for v in with_loop.trainable_variables)


def test_loop_with_xla_equals_fit():
    def model():
        keras.utils.set_random_seed(2)
        dense = keras.Sequential([keras.Input((16 * 16 * 3,)), keras.layers.Dense(8)])
        dense.compile(optimizer=keras.optimizers.Adam(1e-2), loss=LOSSES["triplet_hard_ee"](), jit_compile=True)
        return dense

    x, y = _images()
    data = tf.data.Dataset.from_tensor_slices((x.reshape(len(x), -1) / 255, y)).batch(20, drop_remainder=True).repeat()
    with_fit, with_loop = model(), model()
    with_fit.fit(data, epochs=1, steps_per_epoch=3, verbose=0)
    loop = TrainingLoop(with_loop)
    assert loop.jit_compile
    loop.fit(data, epochs=1, steps_per_epoch=3, verbose=0)
    assert _max_difference(with_fit, with_loop) < 1e-5


class _RecordingLoop(TrainingLoop):
    """A step that also returns its batch's labels and embeddings (what a memory bank needs)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def train_step(self, data):
        outputs = super().train_step(data)
        embeddings = tf.stop_gradient(self.model(data[0], training=False))
        return {**outputs, "labels": data[1], "embeddings": embeddings}

    def on_step_end(self, step, outputs):
        self.seen.append((step, outputs["labels"], outputs["embeddings"]))


def test_replicas_read_slices_of_the_one_process_batch_and_hooks_see_the_global_batch(split):
    def train(strategy):
        model = _model(tfdml.losses.TripletLoss(margin=0.2, mining="hard"), strategy, freeze_batchnorm=True,
                       optimizer=keras.optimizers.SGD(0.05))
        loop = _RecordingLoop(model)
        data = train_input(split, 20, samples_per_class=4, augmentation="none", image_size=16, seed=5)
        history = loop.fit(data, epochs=1, steps_per_epoch=3, verbose=0)
        return loop, model, history

    single, single_model, single_history = train(tf.distribute.get_strategy())
    mirrored, mirrored_model, mirrored_history = train(mirrored_strategy())
    sampler = batch_indices(split.labels, "m_per_class", 20, 4, seed=5)
    for (step, labels, embeddings), (_, mirrored_labels, mirrored_embeddings) in zip(single.seen, mirrored.seen):
        expected = split.labels[next(sampler)]
        np.testing.assert_array_equal(labels, expected)
        np.testing.assert_array_equal(mirrored_labels, expected)  # replica 0's rows, then replica 1's
        assert embeddings.shape == mirrored_embeddings.shape == (20, 8)
        np.testing.assert_allclose(embeddings, mirrored_embeddings, atol=1e-5)
    assert [s for s, _, _ in mirrored.seen] == [1, 2, 3]
    assert _max_difference(single_model, mirrored_model) < 1e-5
    np.testing.assert_allclose(mirrored_history.history["loss"], single_history.history["loss"], rtol=1e-5)


def test_mixed_precision_loop_uses_loss_scaling_and_equals_fit():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with_fit, with_loop = _model(LOSSES["triplet_hard_ee"]()), _model(LOSSES["triplet_hard_ee"]())
        with_fit.fit(_dataset(), epochs=1, steps_per_epoch=3, verbose=0)
        loop = TrainingLoop(with_loop)
        history = loop.fit(_dataset(), epochs=1, steps_per_epoch=3, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert isinstance(loop.optimizer, keras.optimizers.LossScaleOptimizer)
    assert with_loop.compute_dtype == "float16" and np.isfinite(history.history["loss"][0])
    assert _max_difference(with_fit, with_loop) < 1e-5


def test_xla_with_several_replicas_gives_a_clear_error():
    model = _model(tfdml.losses.TripletLoss(), mirrored_strategy())
    with pytest.raises(RuntimeError, match="jit_compile=True.*all-gather"):
        TrainingLoop(model, jit_compile=True).fit(_dataset(), steps_per_epoch=1, verbose=0)


def test_model_outside_the_strategy_scope_is_refused():
    model = _model(tfdml.losses.TripletLoss())
    with pytest.raises(ValueError, match="strategy.scope"):
        TrainingLoop(model, strategy=mirrored_strategy())


def test_bad_arguments_name_the_argument():
    loop = TrainingLoop(_model(tfdml.losses.TripletLoss()))
    with pytest.raises(ValueError, match="steps_per_epoch"):
        loop.fit(_dataset(), steps_per_epoch=None)
    with pytest.raises(ValueError, match="checkpoint_every"):
        loop.fit(_dataset(), steps_per_epoch=1, checkpoint_every=-1)
    with pytest.raises(ValueError, match="data must be"):
        loop.fit([1, 2], steps_per_epoch=1)
    with pytest.raises(ValueError, match="loss and an optimizer"):
        TrainingLoop(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))


def test_fit_under_multi_worker_strategy_gives_a_clear_error():
    class FakeMultiWorker(tf.distribute.MultiWorkerMirroredStrategy):
        def __init__(self):  # no cluster needed: only the type is checked
            pass

    model = _model(tfdml.losses.TripletLoss())
    model._distribute_strategy = FakeMultiWorker()
    with pytest.raises(RuntimeError, match="keras-team/keras#20585.*TrainingLoop"):
        fit_model(model, _dataset(), steps_per_epoch=1, verbose=0)


class _Killed(Exception):
    pass


class _StopAt(keras.callbacks.Callback):
    """Raises after `step` training steps (a killed process, for in-process tests)."""

    def __init__(self, step, steps_per_epoch):
        super().__init__()
        self.step, self.steps_per_epoch = step, steps_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch * self.steps_per_epoch + batch + 1 == self.step:
            raise _Killed(f"simulated kill after step {self.step}")


@pytest.mark.parametrize("input_kind", ["input_function", "dataset"])
def test_interrupted_loop_resumes_exactly(tmp_path, split, input_kind):
    def data():
        if input_kind == "dataset":
            return _dataset()
        return train_input(split, 20, samples_per_class=4, augmentation="none", image_size=16)

    def fit(directory, callbacks=()):
        model = _model(LOSSES["proxy_nca"]())  # Adam moments and the proxies must be restored too
        history = TrainingLoop(model).fit(data(), epochs=3, steps_per_epoch=3, verbose=0, checkpoint_dir=directory,
                                          checkpoint_every=2, callbacks=list(callbacks))
        return model, history

    uninterrupted, full_history = fit(str(tmp_path / "a"))
    with pytest.raises(_Killed):
        fit(str(tmp_path / "b"), [_StopAt(6, 3)])  # killed after step 6, before the epoch-end checkpoint
    resumed, resumed_history = fit(str(tmp_path / "b"))
    assert resumed_history.epoch == [1, 2]
    assert _max_difference(uninterrupted, resumed) < 1e-6
    # The resumed epoch's average includes its steps from before the interruption.
    np.testing.assert_allclose(resumed_history.history["loss"], full_history.history["loss"][1:], rtol=1e-6)


def test_distance_weighted_mining_runs_under_mirrored_strategy():
    """all_gather drops the static embedding width; distance-weighted sampling needs it (regression)."""
    strategy = mirrored_strategy()
    loss = tfdml.losses.MarginLoss(mining="distance", seed=0, learn_beta=False)
    x = tf.random.stateless_normal((8, 16), seed=(1, 2))
    y = tf.constant([0, 0, 1, 1, 2, 2, 3, 3])
    data = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors((x, y)))

    @tf.function
    def step(batch):
        return strategy.run(lambda b: loss(b[1], b[0]), args=(batch,))

    values = strategy.experimental_local_results(step(next(iter(data))))
    assert len(values) == 2 and all(np.isfinite(v.numpy()) and v.numpy() > 0 for v in values)


class _EveryOtherEpoch(keras.callbacks.Callback):
    """A validation metric measured on odd epochs only (NaN otherwise), like RetrievalEvaluation(every=2)."""

    def on_epoch_end(self, epoch, logs=None):
        logs["val_score"] = 0.8125 if epoch % 2 else float("nan")


@pytest.mark.parametrize("use_fit", [False, True])
def test_progress_lines_show_only_measured_metrics(capsys, use_fit):
    model = _model(LOSSES["triplet_hard_ee"]())
    callbacks = [_EveryOtherEpoch()]
    if use_fit:
        model.fit(_dataset(), epochs=2, steps_per_epoch=2, verbose=2,
                  callbacks=callbacks + [tfdml.metrics.MeasuredProgbarLogger()])
    else:
        TrainingLoop(model).fit(_dataset(), epochs=2, steps_per_epoch=2, verbose=2, callbacks=callbacks)
    lines = [line for line in capsys.readouterr().out.splitlines() if "loss:" in line]
    assert len(lines) == 2
    assert "val_score" not in lines[0] and "nan" not in lines[0]
    assert "val_score: 0.8125" in lines[1]


def test_random_miner_created_outside_the_strategy_scope_draws_the_same_tuples_on_every_replica():
    strategy = mirrored_strategy()
    loss = tfdml.losses.TripletLoss(mining="random", seed=0)  # outside the scope: one unsynchronised state
    assert not isinstance(loss._seed_generator.state.value, tf.distribute.DistributedValues)
    state = loss._seed_generator.state.numpy().copy()
    TrainingLoop(_model(loss, strategy))
    assert isinstance(loss._seed_generator.state.value, tf.distribute.DistributedValues)
    np.testing.assert_array_equal(loss._seed_generator.state.numpy(), state)  # same stream
    x = tf.random.stateless_normal((8, 4), seed=(1, 2))
    y = tf.constant([0, 0, 1, 1, 2, 2, 3, 3])
    data = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors((x, y)))

    @tf.function
    def step(batch):  # each replica mines the gathered global batch: same draws -> same loss value
        return strategy.run(lambda b: loss(b[1], b[0]), args=(batch,))

    for batch in [next(iter(data))] * 3:
        first, second = (v.numpy() for v in strategy.experimental_local_results(step(batch)))
        assert first == second
