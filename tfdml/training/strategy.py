"""Choosing the `tf.distribute` strategy."""
import json
import os

import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


def make_strategy(name="auto", devices=None):
    """Returns a `tf.distribute.Strategy`.

    Args:
        name: "auto" — MultiWorkerMirroredStrategy if `TF_CONFIG` describes
            several workers, MirroredStrategy if several GPUs are visible, else
            the default (one device); "default"; "mirrored" (all GPUs, or
            `devices`); "multi_worker" (from `TF_CONFIG`).
        devices: explicit device list for "mirrored" (e.g. two logical CPUs in
            tests).
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy={name!r}; expected one of {STRATEGIES}.")
    if name == "auto":
        workers = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {}).get("worker", [])
        if len(workers) > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.MultiWorkerMirroredStrategy()
