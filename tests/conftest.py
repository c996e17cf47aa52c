"""Shared pytest set-up: quiet TensorFlow, two logical CPUs for strategy tests."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0],
        [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
    )
except RuntimeError:  # devices already initialised by another import
    pass


# ----------------------------------------------- helpers shared by the loss tests
import numpy as np  # noqa: E402

import tfdml  # noqa: E402

#: Label layouts of the loss reference tests (classes of different sizes and orders).
LAYOUTS = {
    "2_per_class": np.array([0, 0, 1, 1, 2, 2, 3, 3]),
    "4_per_class": np.array([5, 5, 5, 5, 9, 9, 9, 9]),
    "uneven": np.array([0, 0, 0, 1, 2, 2, 2, 2, 3, 3]),
    "interleaved": np.array([1, 0, 1, 2, 0, 2, 1, 0]),
    "two_classes": np.array([4, 4, 4, 7, 7, 7]),
}

#: Label layouts of the comparisons with pytorch-metric-learning: class ids in [0, 4), including singletons and
#: a single class (proxy losses index their proxies with them).
PML_LAYOUTS = {
    "2_per_class": np.array([0, 0, 1, 1, 2, 2, 3, 3]),
    "uneven_with_singleton": np.array([3, 1, 1, 0, 3, 2, 0, 1, 1]),
    "singletons": np.array([0, 1, 2, 3]),
    "one_class": np.array([2, 2, 2, 2, 2]),
    "pair_and_singletons": np.array([1, 0, 1, 3]),
}


def mixed_precision_fit(loss, labels, dim=8):
    """Under the mixed_float16 policy: the gradient of `loss` through a float16 model is finite, and two epochs
    of `model.fit` (Keras' loss-scale optimizer) give finite losses and weights. Restores the float32 policy."""
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6,))
        model = keras.Model(inputs, keras.layers.Dense(dim)(inputs))
        tfdml.losses.attach_loss_state(model, loss)
        x = np.random.default_rng(2).normal(size=(len(labels), 6)).astype(np.float32)
        with tf.GradientTape() as tape:
            embeddings = model(x)
            value = loss(labels, embeddings)
        assert embeddings.dtype == tf.float16 and value.dtype == tf.float32
        grads = tape.gradient(value, model.trainable_variables)
        assert np.isfinite(float(value)) and all(np.isfinite(g.numpy()).all() for g in grads)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
        history = model.fit(np.tile(x, (4, 1)), np.tile(labels, 4), batch_size=len(labels), epochs=2, shuffle=False,
                            verbose=0)
        assert np.isfinite(history.history["loss"]).all()
        assert all(np.isfinite(np.asarray(v)).all() for v in model.trainable_variables)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def random_embeddings(labels, dim, seed, scale=1.0):
    """float64 N(0, scale²) embeddings, one row per label."""
    return np.random.default_rng(seed).normal(size=(len(labels), dim)) * scale


def loss_and_gradient(loss, labels, x):
    """(value, gradient with respect to the embeddings) of `loss` at float64 embeddings `x`."""
    xt = tf.constant(x, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        value = loss(tf.constant(labels), xt)
    return float(value), tape.gradient(value, xt).numpy()


def numeric_gradient(fn, x, h=1e-6):
    """Central differences of the float function `fn` at the float64 array `x`."""
    grad = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[index] += h
        down[index] -= h
        grad[index] = (fn(up) - fn(down)) / (2 * h)
    return grad


def make_expansion(n, pairs, pooling, normalize=True):
    """`EmbeddingExpansion(n_points=n, pairs=pairs, pooling=pooling, normalize=normalize)`."""
    return tfdml.EmbeddingExpansion(n_points=n, pairs=pairs, pooling=pooling, normalize=normalize)


def loss_value(loss, labels, x):
    """The loss of float64 embeddings `x` as a Python float."""
    return float(loss(tf.constant(labels), tf.constant(x, tf.float64)))


def expansion_id(expansion):
    """Readable test id of an (n, pairs, pooling) tuple, e.g. "n2-consecutive-class"."""
    n, pairs, pooling = expansion
    return f"n{n}-{pairs}-{pooling}"


def mirrored_strategy():
    """A MirroredStrategy over the two logical CPUs, with collective keys of its own.

    Every MirroredStrategy numbers its collective ops from the same base, so a second strategy in
    one process can collide with an earlier one ("Shape mismatch in the collective instance");
    TensorFlow's own tests set `_collective_key_base` for this, as done here after each creation.
    """
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    tf.distribute.MirroredStrategy._collective_key_base += 1000
    return strategy
