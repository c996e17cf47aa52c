"""The memory bank of the embedded samplers: fill, per-step updates (eager, `model.fit`,
MirroredStrategy on two logical CPUs), fault handling, and short train.py runs."""
import csv
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdml
from tfdml.data import EmbeddedSampler, MemoryBank, prepare_memory_bank

from conftest import mirrored_strategy

N, D = 20, 5


def _identity(images, training=False):
    return images


def _filled_bank(strategy=None, values=None):
    values = np.arange(N * D, dtype=np.float32).reshape(N, D) if values is None else values
    bank = MemoryBank(N, D, strategy)
    bank.fill(_identity, tf.data.Dataset.from_tensor_slices(values).batch(6), verbose=False)
    return bank, values


def test_fill_embeds_in_order_chunk_by_chunk_with_inference_mode():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(D), keras.layers.Dropout(0.9)])
    images = np.random.default_rng(0).normal(size=(N, 3)).astype(np.float32)
    bank = MemoryBank(N, D)
    bank.fill(model, tf.data.Dataset.from_tensor_slices((images, np.zeros(N))).batch(7), verbose=False)
    # dropout off (training=False) and rows in dataset order, the last chunk partial
    np.testing.assert_allclose(bank.snapshot(), model(images, training=False), atol=1e-6)


def test_update_overwrites_exactly_the_given_rows():
    bank, values = _filled_bank()
    indices = np.array([3, 17, 0, 9], np.int32)
    new = np.random.default_rng(1).normal(size=(4, D)).astype(np.float32)
    bank.update(indices, new)
    expected = values.copy()
    expected[indices] = new
    np.testing.assert_array_equal(bank.snapshot(), expected)
    # a repeated index takes its last occurrence
    bank.update([5, 6, 5], np.stack([np.full(D, 1.0), np.full(D, 2.0), np.full(D, 3.0)]).astype(np.float32))
    np.testing.assert_array_equal(bank.snapshot()[[5, 6]], [[3.0] * D, [2.0] * D])


def test_bank_faults_are_errors():
    bank = MemoryBank(N, D)
    with pytest.raises(ValueError, match="before MemoryBank.fill"):
        bank.update([0], np.zeros((1, D), np.float32))
    with pytest.raises(ValueError, match="memory bank is empty"):
        bank.snapshot()
    with pytest.raises(ValueError, match="gave 18 images.*20 rows"):
        bank.fill(_identity, tf.data.Dataset.from_tensor_slices(np.zeros((18, D), np.float32)).batch(6))
    with pytest.raises(ValueError, match=r"shape \(6, 4\)"):
        bank.fill(_identity, tf.data.Dataset.from_tensor_slices(np.zeros((N, 4), np.float32)).batch(6))
    values = np.zeros((N, D), np.float32)
    values[11, 2] = np.nan
    with pytest.raises(FloatingPointError, match="fill.*1 non-finite.*row 11"):
        _filled_bank(values=values)
    bank, _ = _filled_bank()
    with pytest.raises(tf.errors.InvalidArgumentError, match="20"):
        bank.update([20], np.zeros((1, D), np.float32))
    bank.update([4], np.full((1, D), np.inf, np.float32))
    with pytest.raises(FloatingPointError, match="holds 1 non-finite.*row 4"):
        bank.snapshot()
    with pytest.raises(ValueError, match="num_items"):
        MemoryBank(0, D)


def test_pipeline_with_an_unfilled_bank_fails_with_a_clear_error():
    split = tfdml.data.load_split("digits", "train", image_size=8)
    bank = MemoryBank(split.num_images, 4)
    data = tfdml.data.train_pipeline(split, 8, EmbeddedSampler("gc", bank, pool_size=64), 2, "none", 8,
                                     with_indices=True)
    with pytest.raises(Exception, match="memory bank is empty"):
        next(iter(data))


def test_pipeline_carries_each_image_index():
    split = tfdml.data.load_split("digits", "train", image_size=8)
    bank = MemoryBank(split.num_images, 4)
    bank.fill(lambda images, training: tf.reshape(images, (-1, 192))[:, :4],
              tfdml.data.eval_pipeline(split, 128, 8, "none"), verbose=False)
    data = tfdml.data.train_pipeline(split, 8, EmbeddedSampler("ddm", bank, pool_size=64), 2, "none", 8,
                                     with_indices=True)
    images, labels, indices = next(iter(data))
    np.testing.assert_array_equal(labels, split.labels[indices.numpy()])
    loader = split.image_loader()
    for image, index in zip(images, indices):
        np.testing.assert_array_equal(image, tf.cast(loader(index), tf.float32))


def _one_step(strategy, x, y, initial, indices=None):
    """One `model.fit` step; with `indices`, through `prepare_memory_bank` / `MemoryBankUpdate`.

    Returns (model, history, bank, bank contents before the step, the step's embeddings)."""
    with strategy.scope():
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(D)])
        model.set_weights(initial)
        model.compile(optimizer=keras.optimizers.SGD(0.5),
                      loss=tfdml.losses.TripletLoss(margin=0.5, expansion=tfdml.EmbeddingExpansion(2)))
    if indices is None:
        return model, model.fit(tf.data.Dataset.from_tensors((x, y)), verbose=0), None, None, None
    bank = MemoryBank(N, D, strategy)
    fill_images = np.random.default_rng(5).normal(size=(N, 6)).astype(np.float32)
    fill_data = tf.data.Dataset.from_tensor_slices((fill_images, np.repeat(np.arange(10), 2))).batch(6)
    callback = prepare_memory_bank(model, bank, fill_data, verbose=False)
    before = bank.snapshot()
    np.testing.assert_allclose(before, model(fill_images), atol=1e-6)
    step_embeddings = model(x, training=True).numpy()  # the embeddings the step will compute
    history = model.fit(tf.data.Dataset.from_tensors((x, y, indices)), verbose=0, callbacks=[callback])
    return model, history, bank, before, step_embeddings


@pytest.mark.parametrize("mirrored", [False, True], ids=["default", "mirrored"])
def test_fit_step_updates_the_bank_rows_of_the_batch_and_trains_like_keras(mirrored):
    strategy = mirrored_strategy() if mirrored else tf.distribute.get_strategy()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6)).astype(np.float32)
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    indices = np.array([3, 5, 7, 9, 11, 2, 19, 0], np.int32)  # replica 1 gets the last four rows
    initial = keras.Sequential([keras.Input((6,)), keras.layers.Dense(D)]).get_weights()
    model, history, bank, before, step_embeddings = _one_step(strategy, x, y, initial, indices)
    expected = before.copy()
    expected[indices] = step_embeddings
    np.testing.assert_allclose(bank.snapshot(), expected, atol=1e-6)
    if mirrored:  # every replica's copy holds every replica's rows
        for copy in bank.variable.values:
            np.testing.assert_allclose(copy.numpy(), expected, atol=1e-6)
    plain, plain_history = _one_step(strategy, x, y, initial)[:2]  # Keras' own train step
    assert not np.allclose(plain.get_weights()[0], initial[0])
    for a, b in zip(model.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert history.history["loss"] == pytest.approx(plain_history.history["loss"], abs=1e-6)
    assert "train_step" not in model.__dict__  # the model's own step is back after fit
    model.fit(tf.data.Dataset.from_tensors((x, y)), verbose=0)


@pytest.mark.parametrize("mirrored", [False, True], ids=["default", "mirrored"])
def test_training_loop_hook_fills_after_start_and_updates_the_batch_rows(mirrored):
    """`TrainingLoop(hooks=[MemoryBankHook])` (train.py's path): the same rows as the fit step."""
    strategy = mirrored_strategy() if mirrored else tf.distribute.get_strategy()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6)).astype(np.float32)
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    indices = np.array([3, 5, 7, 9, 11, 2, 19, 0], np.int32)
    fill_images = np.random.default_rng(5).normal(size=(N, 6)).astype(np.float32)
    fill_data = tf.data.Dataset.from_tensor_slices((fill_images, np.repeat(np.arange(10), 2))).batch(6)
    with strategy.scope():
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(D)])
        model.compile(optimizer=keras.optimizers.SGD(0.5),
                      loss=tfdml.losses.TripletLoss(margin=0.5, expansion=tfdml.EmbeddingExpansion(2)))
    bank = MemoryBank(N, D, strategy)
    before_model = model(fill_images).numpy()
    step_embeddings = model(x, training=True).numpy()
    loop = tfdml.training.TrainingLoop(model, hooks=[tfdml.training.MemoryBankHook(bank, fill_data, verbose=False)])
    loop.fit(tf.data.Dataset.from_tensors((x, y, indices)).repeat(), epochs=1, steps_per_epoch=1, verbose=0)
    expected = before_model.copy()
    expected[indices] = step_embeddings
    np.testing.assert_allclose(bank.snapshot(), expected, atol=1e-6)
    if mirrored:
        for copy in bank.variable.values:
            np.testing.assert_allclose(copy.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("sampler", ["spc_r", "gc", "ddm", "frd"])
def test_short_train_run_with_each_sampler_lowers_the_loss_and_writes_metrics(tmp_path, sampler):
    import train

    run_dir = tmp_path / "run"
    results = train.main(["--output", str(run_dir), "--set", f"sampler.name={sampler}", "--set",
                          "sampler.pool_size=120", "--set", "sampler.candidates=4", "--set", "dataset.image_size=16",
                          "--set", "model.embedding_dim=16", "--set", "training.epochs=2", "--set",
                          "training.steps_per_epoch=6", "--set", "training.eval_every=2", "--set",
                          "training.tensorboard=false", "--set", "training.taps=[fc]",
                          "--set", "loss.params={margin: 0.2, mining: hard}",
                          "--set", "training.evaluate_untrained=false"])  # HPHN: its loss falls steadily
    with open(run_dir / "log.csv") as handle:
        losses = [float(row["loss"]) for row in csv.DictReader(handle)]
    assert len(losses) == 2 and losses[1] < losses[0]
    with open(run_dir / "metrics.json") as handle:
        assert json.load(handle)["fc"]["recall@1"] == pytest.approx(results["fc"]["recall@1"])
    assert os.path.exists(run_dir / "final.keras")
