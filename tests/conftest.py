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
