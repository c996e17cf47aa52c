"""Several workers on this machine: `TF_CONFIG`s with free ports, started and stopped by pid.

For trying multi-worker training on one machine, for tests and for benchmarks:

    workers = start_local_workers([sys.executable, "train.py"], 2, log_dir="logs")
    codes = wait_for_workers(workers, timeout=600)
"""
import json
import os
import socket
import subprocess
import time


def free_ports(count):
    """`count` distinct TCP ports that are free now (picked by the OS)."""
    sockets = []
    try:
        for _ in range(count):
            handle = socket.socket()
            handle.bind(("localhost", 0))
            sockets.append(handle)
        return [handle.getsockname()[1] for handle in sockets]
    finally:
        for handle in sockets:
            handle.close()


def local_tf_configs(num_workers, ports=None):
    """One `TF_CONFIG` JSON string per worker of a cluster on localhost."""
    ports = ports or free_ports(num_workers)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(num_workers)]


def start_local_workers(command, num_workers, env=None, log_dir=None, cwd=None):
    """Starts `command` (argv list) once per worker, each with its own `TF_CONFIG`.

    Args:
        command: argv of every worker, e.g. `[sys.executable, "train.py", ...]`.
        num_workers: number of worker processes.
        env: base environment (default: this process's).
        log_dir: worker i writes stdout and stderr to `log_dir/worker{i}.log`
            (default: inherited).
        cwd: working directory.

    Returns:
        The `subprocess.Popen` objects, in worker order.
    """
    processes = []
    try:
        for index, tf_config in enumerate(local_tf_configs(num_workers)):
            worker_env = dict(os.environ if env is None else env, TF_CONFIG=tf_config)
            output = None
            if log_dir is not None:
                os.makedirs(log_dir, exist_ok=True)
                output = open(os.path.join(log_dir, f"worker{index}.log"), "w")
            try:
                processes.append(subprocess.Popen(command, env=worker_env, cwd=cwd, stdout=output,
                                                  stderr=subprocess.STDOUT if output else None))
            finally:
                if output is not None:
                    output.close()
    except BaseException:
        stop_workers(processes)
        raise
    return processes


def wait_for_workers(processes, timeout):
    """Waits for every process (`timeout` seconds in total); kills them all by pid on timeout.

    Returns:
        The exit codes.

    Raises:
        subprocess.TimeoutExpired: after killing the processes still running.
    """
    deadline = time.monotonic() + timeout
    try:
        return [process.wait(timeout=max(deadline - time.monotonic(), 0.01)) for process in processes]
    except subprocess.TimeoutExpired:
        stop_workers(processes)
        raise


def stop_workers(processes):
    """SIGKILLs (by pid) the processes that are still running and reaps them."""
    for process in processes:
        if process.poll() is None:
            process.kill()
    for process in processes:
        process.wait()
