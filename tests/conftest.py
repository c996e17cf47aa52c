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


def mirrored_strategy():
    """A MirroredStrategy over the two logical CPUs, with collective keys of its own.

    Every MirroredStrategy numbers its collective ops from the same base, so a second strategy in
    one process can collide with an earlier one ("Shape mismatch in the collective instance");
    TensorFlow's own tests set `_collective_key_base` for this, as done here after each creation.
    """
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    tf.distribute.MirroredStrategy._collective_key_base += 1000
    return strategy
