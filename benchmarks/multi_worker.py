"""Cost of training on two workers: steps/s of one process vs. two local workers, and the all-gather.

Runs `tfdml.training.TrainingLoop` (batch-hard triplet loss with Embedding
Expansion, n = 2) with the same per-worker batch b in one process and in two
local worker processes (`MultiWorkerMirroredStrategy`, `TF_CONFIG` with free
ports), on synthetic data (no input pipeline), and times separately the two
collectives of a step: the loss's all-gather of the embeddings and labels
(B × D floats, B = 2b the global batch) and the optimizer's all-reduce of the
gradients (one float per model parameter). Models: "dense" (one Dense layer on
16×16×3 pixels) and "cnn" (tfdml's small_cnn on 32×32 images, BatchNorm
frozen). Then the two collectives alone over a range of sizes: the all-gather
grows with B × D, independent of the model; the gradient all-reduce grows with
the number of parameters. On a single 2-core machine two workers are not faster
— they share the cores — the point is the communication cost per step and what
it grows with. Times are medians; numbers are noisy on a shared machine.

Usage: python benchmarks/multi_worker.py [--steps 20] [--batches 64 256] [--dims 64 512]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODELS = ("dense", "cnn")
GATHER_ROWS = (32, 128, 512, 2048, 8192)  # rows per worker
ALL_REDUCE_SIZES = (10_000, 100_000, 1_000_000, 10_000_000)  # parameters


def build_model(kind, dim):
    import keras

    import tfdml

    if kind == "dense":
        return keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(dim)])
    return tfdml.models.EmbeddingModel("small_cnn", dim, input_shape=(32, 32, 3), freeze_batchnorm=True)


def time_calls(function, calls):
    """Median seconds per call (after tracing and a warm-up call)."""
    function()
    function()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(sorted(times)[len(times) // 2])


def time_all_gather(strategy, rows, dim, calls):
    """Seconds of one all-gather of (rows, dim) float32 embeddings plus (rows,) int32 labels per replica."""
    import tensorflow as tf

    embeddings, labels = tf.zeros((rows, dim)), tf.zeros((rows,), tf.int32)

    @tf.function
    def gather():
        def replica():
            context = tf.distribute.get_replica_context()
            return context.all_gather(tf.identity(embeddings), 0), context.all_gather(tf.identity(labels), 0)
        return strategy.run(replica)

    return time_calls(gather, calls)


def time_all_reduce(strategy, shapes, calls):
    """Seconds of one all-reduce (sum) of tensors of the given shapes (a model's gradients)."""
    import tensorflow as tf

    gradients = [tf.zeros(shape) for shape in shapes]

    @tf.function
    def all_reduce():
        def replica():
            return tf.distribute.get_replica_context().all_reduce("SUM", [tf.identity(g) for g in gradients])
        return strategy.run(replica)

    return time_calls(all_reduce, calls)


def measure(strategy, kind, batch, dim, steps):
    """Seconds per training step, per embedding all-gather and per gradient all-reduce."""
    import keras
    import numpy as np
    import tensorflow as tf

    import tfdml
    from tfdml.training import TrainingLoop

    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model(kind, dim)
        model.compile(optimizer=keras.optimizers.SGD(1e-3),
                      loss=tfdml.losses.TripletLoss(mining="hard", expansion=tfdml.EmbeddingExpansion(2)))
    loop = TrainingLoop(model)
    size = model.inputs[0].shape[1]
    images = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype("float32")
    labels = np.repeat(np.arange(batch // 4), 4).astype("int32")
    data = strategy.distribute_datasets_from_function(
        lambda context: tf.data.Dataset.from_tensors((images, labels)).repeat())
    iterator = iter(data)
    train = loop.make_train_function()
    step = time_calls(lambda: train(iterator), steps)
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    return {"model": kind, "b": batch, "D": dim, "parameters": int(sum(np.prod(s) for s in shapes)), "step": step,
            "gather": time_all_gather(strategy, batch, dim, steps),
            "all_reduce": time_all_reduce(strategy, shapes, steps)}


def worker(args):
    from tfdml.training import is_chief, make_strategy

    strategy = make_strategy("multi_worker" if args.mode == "workers" else "default")
    results = {"steps": [measure(strategy, kind, batch, dim, args.steps)
                         for kind in MODELS for batch in args.batches for dim in args.dims]}
    if args.mode == "workers":
        results["gather"] = [(rows, dim, time_all_gather(strategy, rows, dim, 3 * args.steps))
                             for rows in GATHER_ROWS for dim in args.dims]
        results["all_reduce"] = [(size, time_all_reduce(strategy, [(size,)], 3 * args.steps))
                                 for size in ALL_REDUCE_SIZES]
    if is_chief(strategy):
        with open(args.output, "w") as handle:
            json.dump(results, handle)


def run_mode(mode, args, directory):
    from tfdml.training.local_cluster import start_local_workers, stop_workers, wait_for_workers

    output = os.path.join(directory, f"{mode}.json")
    command = [sys.executable, os.path.abspath(__file__), "--mode", mode, "--output", output,
               "--steps", str(args.steps), "--batches", *map(str, args.batches), "--dims", *map(str, args.dims)]
    if mode == "one":
        subprocess.run(command, check=True, timeout=args.timeout)
    else:
        workers = start_local_workers(command, 2, log_dir=os.path.join(directory, "logs"))
        try:
            codes = wait_for_workers(workers, timeout=args.timeout)
        finally:
            stop_workers(workers)
        if codes != [0, 0]:
            with open(os.path.join(directory, "logs", "worker0.log")) as handle:
                raise RuntimeError(f"workers exited with {codes}:\n{handle.read()[-3000:]}")
    with open(output) as handle:
        return json.load(handle)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256], help="per-worker batch sizes b")
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 512], help="embedding sizes D")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--mode", choices=("compare", "one", "workers"), default="compare")
    parser.add_argument("--output")
    args = parser.parse_args()
    if args.mode != "compare":
        return worker(args)
    with tempfile.TemporaryDirectory() as directory:
        one, two = run_mode("one", args, directory), run_mode("workers", args, directory)
    print("Training step (triplet hard + EE n=2); per-worker batch b, global batch B = 2b, embedding size D")
    print("model  |    b |    D |  params | 1 process steps/s | 2 workers steps/s | all-gather ms | share of step "
          "| gradient all-reduce ms")
    for single, multi in zip(one["steps"], two["steps"]):
        print(f"{multi['model']:6s} | {multi['b']:4d} | {multi['D']:4d} | {multi['parameters']:7d} | "
              f"{1 / single['step']:17.1f} | {1 / multi['step']:17.1f} | {1e3 * multi['gather']:13.2f} | "
              f"{100 * multi['gather'] / multi['step']:12.1f}% | {1e3 * multi['all_reduce']:10.2f}")
    print("\nAll-gather of the embeddings and labels (two workers): grows with B × D")
    print("B (global) |    D | MB gathered | ms")
    for rows, dim, seconds in two["gather"]:
        print(f"{2 * rows:10d} | {dim:4d} | {2 * rows * (dim + 1) * 4 / 1e6:11.2f} | {1e3 * seconds:7.2f}")
    print("\nGradient all-reduce (two workers): grows with the number of parameters")
    print("parameters |    MB |     ms")
    for size, seconds in two["all_reduce"]:
        print(f"{size:10d} | {size * 4 / 1e6:5.1f} | {1e3 * seconds:6.2f}")


if __name__ == "__main__":
    main()
