"""Faults fed to every loss for real (issue 15): non-finite embeddings, empty batches, wrong-length
labels in a dynamic-batch graph, extreme magnitudes, Keras' `reduction` argument, and Embedding
Expansion's memory budget. Each promise is checked eagerly, under tf.function and with XLA."""
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdml

NEEDS_CLASSES = {"proxy_nca", "soft_triple", "arcface", "normalized_softmax", "softmax", "proxy_anchor", "cosface",
                 "sub_center_arcface", "large_margin_softmax", "sphereface", "p2sgrad", "manifold"}
WRAPPERS = {"cross_batch_memory": {"loss": {"name": "contrastive"}, "memory_size": 16}}  # wrapped loss, memory
ALL = tfdml.losses.names()
MODES = ("eager", "graph", "xla")
LABELS = np.array([0, 0, 1, 1, 2, 2, 3, 3], np.int32)


def _build(name, dim=6, **kwargs):
    """The loss `name` with `kwargs` (seed 0 for losses with random draws), state built for `dim`."""
    cls = tfdml.losses.get_class(name)
    defaults = {"num_classes": 4} if name in NEEDS_CLASSES else {}
    defaults.update(WRAPPERS.get(name, {}))
    if "seed" in cls.config_args:
        defaults["seed"] = 0
    loss = tfdml.losses.get(name, **{**defaults, **kwargs})
    loss.build_state(dim)
    return loss


def _runner(loss, mode, signature=None):
    """A function (labels, embeddings) → (value, gradient w.r.t. the embeddings) in `mode`."""

    def value_and_gradient(labels, embeddings):
        with tf.GradientTape() as tape:
            tape.watch(embeddings)
            value = loss(labels, embeddings)
        return value, tape.gradient(value, embeddings)

    if mode == "eager":
        return value_and_gradient
    return tf.function(value_and_gradient, jit_compile=mode == "xla", input_signature=signature)


def _embeddings(seed=0, scale=1.0, rows=8, dim=6):
    return (np.random.default_rng(seed).normal(size=(rows, dim)) * scale).astype(np.float32)


# ------------------------------------------------ NaN / inf and empty batches
DYNAMIC = [tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, 6], tf.float32)]
WRONG_LENGTH = r"labels has\] \[12\] \[entries, embeddings has\] \[16\] \[rows"  # tf.debugging.Assert's format


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ALL)
def test_non_finite_embeddings_give_nan_and_empty_batches_give_zero(name, mode):
    """One function per mode (dynamic batch size): a NaN or ±inf entry makes the loss NaN; a batch of 0
    rows gives 0 with a zero gradient (the value of a batch without a valid tuple)."""
    run = _runner(_build(name), mode, DYNAMIC if mode != "eager" else None)
    value, _ = run(tf.constant(LABELS), tf.constant(_embeddings()))
    assert np.isfinite(float(value)) and float(value) != 0.0
    for bad in (np.nan, np.inf, -np.inf):
        x = _embeddings()
        x[3, 2] = bad
        value, _ = run(tf.constant(LABELS), tf.constant(x))
        assert np.isnan(float(value)), bad
    value, grad = run(tf.zeros([0], tf.int32), tf.zeros([0, 6], tf.float32))
    assert float(value) == 0.0
    assert grad is None or grad.shape == (0, 6)


@pytest.mark.parametrize("name", ["multi_similarity", "triplet", "contrastive", "arcface"])
def test_terminate_on_nan_fires_in_fit_with_one_nan_pixel(name):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (32, 6, 6, 1)).astype(np.float32)
    labels = np.repeat(np.arange(4), 8)
    images[20, 2, 3, 0] = np.nan  # one pixel of one image, in the third batch of 8
    inputs = keras.Input((6, 6, 1))
    model = keras.Model(inputs, keras.layers.Dense(8)(keras.layers.Flatten()(inputs)))
    loss = _build(name, dim=8)
    tfdml.losses.attach_loss_state(model, loss)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    batches = []
    model.fit(images, labels, batch_size=8, epochs=3, shuffle=False, verbose=0,
              callbacks=[keras.callbacks.TerminateOnNaN(),
                         keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: batches.append(logs))])
    assert len(batches) == 3  # stopped at the batch holding the NaN pixel (of 12 batches)
    assert np.isnan(batches[-1]["loss"])


# --------------------------------------------------------------- empty batch
def test_arcface_empty_batch_under_tf_function_with_tape_does_not_kill_the_process():
    """Run in a child process: before the fix this aborted the interpreter (Floating point exception)."""
    script = textwrap.dedent("""
        import numpy as np, tensorflow as tf, tfdml
        loss = tfdml.losses.ArcFaceLoss(num_classes=4)
        loss.build_state(6)
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, 6], tf.float32)])
        def step(y, x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = loss(y, x)
            return value, tape.gradient(value, [x, loss.state_layer.raw])
        value, grads = step(tf.zeros([0], tf.int32), tf.zeros([0, 6]))
        print("value", float(value), all(np.all(g.numpy() == 0) for g in grads))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "value 0.0 True" in result.stdout


# ------------------------------------------------------- wrong-length labels
def test_wrong_length_labels_in_a_dynamic_batch_graph_name_both_sizes():
    loss = tfdml.losses.TripletLoss()
    run = _runner(loss, "graph", DYNAMIC)
    with pytest.raises(tf.errors.InvalidArgumentError, match=WRONG_LENGTH):
        run(tf.zeros([12], tf.int32), tf.constant(_embeddings(rows=16)))


def test_wrong_length_labels_inside_fit_give_the_clear_message():
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(4)(inputs))
    model.compile(optimizer="adam", loss=tfdml.losses.MultiSimilarityLoss())
    x = _embeddings(rows=16)

    def batches():
        yield x, np.zeros(12, np.int32)

    data = tf.data.Dataset.from_generator(batches, output_signature=(
        tf.TensorSpec([None, 6], tf.float32), tf.TensorSpec([None], tf.int32)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=WRONG_LENGTH):
        model.fit(data, epochs=1, verbose=0)


# ------------------------------------------------------------ extreme values
@pytest.mark.parametrize("name", ALL)
def test_huge_embeddings_give_no_nan(name):
    """At |x| ~ 1e20 (‖x‖² overflows float32) value and gradient are finite: L2-normalised embeddings
    saturate to zero vectors, the squared-norm regulariser of raw-embedding losses (N-pair, angular,
    generalized lifted, softmax) saturates below the float range. At |x| ~ 1e15 losses on normalised embeddings
    still equal their value at |x| ~ 1 (scale invariance). The full sweep is in test_loss_magnitudes."""
    value, grad = _runner(_build(name), "eager")(tf.constant(LABELS), tf.constant(_embeddings(scale=1e20)))
    assert np.isfinite(float(value))
    assert np.isfinite(grad.numpy()).all()
    if name in ("npair", "angular", "generalized_lifted", "softmax", "large_margin_softmax", "sphereface",
                "vicreg"):  # raw embeddings: not scale invariant
        return
    large, _ = _runner(_build(name), "eager")(tf.constant(LABELS), tf.constant(_embeddings(scale=1e15)))
    unit, _ = _runner(_build(name), "eager")(tf.constant(LABELS), tf.constant(_embeddings(scale=1.0)))
    assert float(large) == pytest.approx(float(unit), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", ["npair", "angular", "generalized_lifted"])
def test_huge_raw_embeddings_without_regulariser_are_exact_or_saturate(name):
    loss = _build(name, embedding_reg=0.0, dtype="float64")
    x = _embeddings(scale=1e20).astype(np.float64)
    expected = float(loss(LABELS, tf.constant(x)))  # float64 holds 1e40: the exact value
    value, grad = _runner(_build(name, embedding_reg=0.0), "eager")(tf.constant(LABELS), tf.constant(x, tf.float32))
    assert np.isfinite(grad.numpy()).all()
    if name == "generalized_lifted":  # distances (~1e20) are exact after rescaling
        assert float(value) == pytest.approx(expected, rel=1e-5)
    else:  # dot products ~1e40 saturate at float32 max / 4
        assert np.isfinite(float(value))


@pytest.mark.parametrize("name", ALL)
def test_zero_embeddings_give_small_gradients(name):
    """Zero vectors count as zero after L2 normalisation: no 1e6-amplified gradient (issue 15: 3e5–9e5
    for the proxy losses)."""
    loss = _build(name)
    params = list(loss.state_layer.trainable_variables) if loss.state_layer is not None else []
    x = tf.zeros((8, 6))
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = loss(LABELS, x)
    grads = [g for g in tape.gradient(value, [x] + params) if g is not None]
    assert np.isfinite(float(value))
    assert max(float(tf.reduce_max(tf.abs(g))) for g in grads) < 10.0


# ---------------------------------------------------------- Keras reduction
@pytest.mark.parametrize("name", ALL)
def test_keras_reduction_argument_is_rejected(name):
    for reduction in ("sum", "sum_over_batch_size", "none"):
        with pytest.raises(ValueError, match="reduction="):
            _build(name, reduction=reduction)


# ----------------------------------------------------------- memory budget
def test_expansion_memory_budget_rejects_huge_n_before_allocating():
    loss = tfdml.losses.TripletLoss(expansion=tfdml.EmbeddingExpansion(n_points=1000))
    labels = np.repeat(np.arange(4), 32)
    x = _embeddings(rows=128, dim=8)
    with pytest.raises(ValueError, match=r"64128×64128 .*memory_budget_mb=2048"):
        loss(labels, x)
    with pytest.raises(ValueError, match="memory_budget_mb"):
        tf.function(lambda a, b: loss(a, b))(labels, x)
    small = tfdml.losses.TripletLoss(expansion=tfdml.EmbeddingExpansion(2, memory_budget_mb=0.5))
    with pytest.raises(ValueError, match="memory_budget_mb=0.5"):  # 4 · 256² · 4 bytes = 1 MiB
        small(labels, x)
    assert np.isfinite(float(tfdml.losses.TripletLoss(expansion=tfdml.EmbeddingExpansion(2))(labels, x)))
    with pytest.raises(ValueError, match="memory_budget_mb"):
        tfdml.EmbeddingExpansion(2, memory_budget_mb=0)


def test_expansion_memory_budget_with_sizes_known_only_at_run_time():
    loss = tfdml.losses.LiftedStructureLoss(expansion=tfdml.EmbeddingExpansion(50, pairs="all", memory_budget_mb=1))
    run = _runner(loss, "graph", [tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, 8], tf.float32)])
    few = np.array([0, 0, 1, 1], np.int32)  # S = 100: fine
    assert np.isfinite(float(run(tf.constant(few), tf.constant(_embeddings(rows=4, dim=8)))[0]))
    many = np.repeat(np.arange(2, dtype=np.int32), 16)  # S = 50 · 240 = 12000 points: about 2.2 GiB
    with pytest.raises(tf.errors.InvalidArgumentError, match="memory_budget_mb=1"):
        run(tf.constant(many), tf.constant(_embeddings(rows=32, dim=8)))
