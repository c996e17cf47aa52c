"""Choosing the `tf.distribute` strategy and the cluster it spans.

A multi-worker cluster is read from `TF_CONFIG` (validated here, so a mistake
gives an error naming `TF_CONFIG` instead of a hang or a gRPC trace) or, for
`strategy="multi_worker"` without `TF_CONFIG`, from a Slurm job step
(`tf.distribute.cluster_resolver.SlurmClusterResolver`).

Before a multi-worker strategy is created, `wait_for_cluster` checks that
every other task of the cluster answers on its address (bounded by
`training.cluster_timeout`): TensorFlow's own start-up waits for the peers
without a time limit and without reacting to Ctrl-C.
"""
import json
import os
import socket
import sys
import time

import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")

#: First port of the workers of a Slurm job step (one port per task on a node).
SLURM_PORT_BASE = 8888

_SLURM_VARIABLES = ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST", "SLURM_STEP_TASKS_PER_NODE")


def read_tf_config():
    """The parsed and checked `TF_CONFIG`, or None when it is not set.

    Raises:
        ValueError: naming `TF_CONFIG` and what is wrong (not JSON, no
            `cluster`/`worker` list, missing `task`, unknown task type, task
            index out of range).
    """
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {text!r}.") from None
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object with 'cluster' and 'task', got {text!r}.")
    cluster = config.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError(f"TF_CONFIG has no 'cluster' mapping (e.g. {{\"worker\": [\"host:port\", ...]}}): {text!r}.")
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
            raise ValueError(f"TF_CONFIG cluster[{job!r}] must be a list of 'host:port' strings, got {addresses!r}.")
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError(f"TF_CONFIG has no 'task' with 'type' and 'index' (which worker this process is): {text!r}.")
    if task["type"] not in cluster:
        raise ValueError(f"TF_CONFIG task type {task['type']!r} is not in the cluster ({sorted(cluster)}).")
    index, size = task["index"], len(cluster[task["type"]])
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        raise ValueError(f"TF_CONFIG task index {index!r} is out of range: cluster[{task['type']!r}] has {size} "
                         f"entries (valid indices 0..{size - 1}).")
    return config


def _cluster_size(tf_config):
    return sum(len(addresses) for job, addresses in tf_config["cluster"].items() if job in ("chief", "worker"))


def slurm_cluster_resolver(port_base=SLURM_PORT_BASE):
    """A `SlurmClusterResolver` for the current Slurm job step (one worker per task).

    CPU-only nodes are supported (TensorFlow's resolver otherwise asks
    `nvidia-smi` for GPUs). Ports are `port_base`, `port_base + 1`, … per task
    on a node.
    """
    missing = [name for name in _SLURM_VARIABLES if name not in os.environ]
    if missing:
        raise ValueError(f"Not inside a Slurm job step (missing {', '.join(missing)}); run the workers with srun.")
    resolver = tf.distribute.cluster_resolver.SlurmClusterResolver
    if tf.config.list_physical_devices("GPU"):
        return resolver(port_base=port_base)
    # "2(x3),1" → tasks per node 2, 2, 2, 1: CPU nodes get one placeholder "GPU" slot per task.
    per_node = max(int(part.split("(")[0]) for part in os.environ["SLURM_STEP_TASKS_PER_NODE"].split(","))
    return resolver(port_base=port_base, gpus_per_node=per_node, gpus_per_task=1, auto_set_gpu=False)


def cluster_resolver(name="auto"):
    """The cluster for strategy `name`: a resolver, or None for one machine.

    Returns:
        None (one process), a `TFConfigClusterResolver` (`TF_CONFIG` with
        several workers) or a `SlurmClusterResolver` ("multi_worker" inside a
        Slurm job step without `TF_CONFIG`).
    """
    tf_config = read_tf_config()
    if tf_config is not None and (name == "multi_worker" or (name == "auto" and _cluster_size(tf_config) > 1)):
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if name == "multi_worker":
        if "SLURM_PROCID" in os.environ:
            return slurm_cluster_resolver()
        raise ValueError("training.strategy=multi_worker needs the cluster: set TF_CONFIG on every worker, or start "
                         "the workers with srun inside a Slurm job (see README, 'Training on several machines').")
    return None


#: Default of `training.cluster_timeout`: seconds to wait for the other workers to answer.
CLUSTER_TIMEOUT = 300.0


class ClusterTimeoutError(RuntimeError):
    """A task of the multi-worker cluster did not answer within the configured time."""


def _split_address(address):
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "localhost", int(port)


def _listen(address):
    """A plain TCP listener on this task's own port while it waits (so that waiting peers see it), or None."""
    try:
        _, port = _split_address(address)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("", port))
        listener.listen(64)
        return listener
    except (OSError, ValueError):
        return None


def _answers(address, timeout=1.0):
    try:
        with socket.create_connection(_split_address(address), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def wait_for_cluster(cluster_spec, task_type, task_id, timeout=CLUSTER_TIMEOUT, interval=0.5, progress_every=10.0,
                     stream=None):
    """Waits until every other task of the cluster accepts a TCP connection on its address.

    While it waits, this task listens on its own port (the peers run the same
    check), prints what it waits for and, every `progress_every` seconds, which
    tasks have not answered yet. Ctrl-C and SIGTERM end the wait at any time.

    Args:
        cluster_spec: a `tf.train.ClusterSpec` or a dict {job: ["host:port", ...]}.
        task_type: this task's job name (e.g. "worker").
        task_id: this task's index in its job.
        timeout: seconds to wait in all (`training.cluster_timeout`).
        interval: seconds between connection attempts.
        progress_every: seconds between progress lines.
        stream: where the lines go (default stdout).

    Raises:
        ClusterTimeoutError: naming the tasks that did not answer within `timeout`.
    """
    stream = sys.stdout if stream is None else stream
    spec = cluster_spec.as_dict() if hasattr(cluster_spec, "as_dict") else dict(cluster_spec)
    tasks = {}
    for job, addresses in spec.items():
        items = addresses.items() if isinstance(addresses, dict) else enumerate(addresses)
        for index, address in items:
            tasks[(job, int(index))] = address
    own = tasks.pop((task_type, int(task_id)), None)
    if not tasks:
        return
    listener = _listen(own) if own else None
    start = time.monotonic()
    waiting = dict(tasks)

    def names(items):
        return ", ".join(f"{job} {index} ({address})" for (job, index), address in sorted(items.items()))

    print(f"Waiting for the cluster ({task_type} {task_id} of {len(tasks) + 1} tasks): {names(waiting)}; "
          f"at most {timeout:g} s (training.cluster_timeout).", file=stream, flush=True)
    next_report = start + progress_every
    try:
        while True:
            waiting = {task: address for task, address in waiting.items() if not _answers(address)}
            now = time.monotonic()
            if not waiting:
                print(f"Cluster ready after {now - start:.0f} s.", file=stream, flush=True)
                return
            if now - start >= timeout:
                raise ClusterTimeoutError(
                    f"Cluster not ready: {names(waiting)} did not answer within {timeout:g} s "
                    f"(training.cluster_timeout). Check that every worker was started with the same TF_CONFIG "
                    f"cluster and that the address is reachable from this host.")
            if now >= next_report:
                print(f"Still waiting for {names(waiting)} ({now - start:.0f} s of {timeout:g} s).", file=stream,
                      flush=True)
                next_report = now + progress_every
            time.sleep(min(interval, max(timeout - (now - start), 0.0)))
    finally:
        if listener is not None:
            listener.close()


_MULTI_WORKER = {}


def make_strategy(name="auto", devices=None, cluster_timeout=CLUSTER_TIMEOUT):
    """Returns a `tf.distribute.Strategy`.

    Args:
        name: "auto" — MultiWorkerMirroredStrategy if `TF_CONFIG` describes
            several workers, MirroredStrategy if several GPUs are visible, else
            the default (one device); "default"; "mirrored" (all GPUs, or
            `devices`); "multi_worker" (cluster from `TF_CONFIG`, else from
            Slurm). A process creates at most one multi-worker strategy; later
            calls return it.
        devices: explicit device list for "mirrored" (e.g. two logical CPUs in
            tests).
        cluster_timeout: seconds a multi-worker start waits for the other
            workers (see `wait_for_cluster`); None: no check.

    Raises:
        ClusterTimeoutError: a worker of the cluster did not answer in time.
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy={name!r}; expected one of {STRATEGIES}.")
    resolver = cluster_resolver(name)
    if resolver is not None:
        if "strategy" not in _MULTI_WORKER:
            if cluster_timeout is not None:
                wait_for_cluster(resolver.cluster_spec(), resolver.task_type, resolver.task_id, cluster_timeout)
            _MULTI_WORKER["strategy"] = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
        return _MULTI_WORKER["strategy"]
    if name == "auto":
        name = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    return tf.distribute.MirroredStrategy(devices)


def describe(strategy):
    """E.g. "MultiWorkerMirroredStrategy (2 replicas)"."""
    name = type(strategy).__name__
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        name = "MultiWorkerMirroredStrategy"
    elif not tf.distribute.has_strategy() and strategy is tf.distribute.get_strategy():
        name = "one device"
    replicas = strategy.num_replicas_in_sync
    return f"{name} ({replicas} replica{'s' if replicas > 1 else ''})"


def is_chief(strategy):
    """True on the worker that writes logs, models and checkpoints (always on one machine)."""
    return bool(strategy.extended.should_checkpoint)


def gather_over_replicas(strategy, value):
    """The int `value` of every replica (all workers), as a numpy array; also a barrier.

    Every worker must call it at the same point.
    """

    @tf.function
    def gather():
        def replica_fn():
            return tf.distribute.get_replica_context().all_gather(tf.constant([value], tf.int64), axis=0)
        return strategy.experimental_local_results(strategy.run(replica_fn))[0]

    return gather().numpy()
