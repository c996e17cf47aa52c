"""Loss speed benchmark (EE paper Table 1 and every registered loss).

Forward + backward time of a loss on random embeddings, median of repeats, with
and without XLA. Part 1 reproduces EE Table 1: batch-hard (HPHN) triplet at batch
128 (4 classes × 32 samples, the official layout), dim 512, n ∈ {0, 2, 4, 8, 16,
32}, overhead relative to n = 0. Part 2 times every registered loss at
batch 128 / dim 128 and batch 512 / dim 512. `--ee-batch B` instead compares
graph mode and XLA for the default triplet loss with and without EE (n = 2)
at batch B (4 classes), dim 512.

Usage: python benchmarks/loss_speed.py [--quick] [--repeats N] [--ee-batch B]
"""
import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

import tfdml  # noqa: E402

PROXY_ARGS = {"num_classes": 4}


def time_loss(loss, batch, dim, classes, jit, repeats):
    """Median seconds of one forward+backward pass (gradients for the embeddings and the
    loss's own trainable state, e.g. proxies)."""
    state = list(loss.state_layer.trainable_variables) if loss.state_layer is not None else []
    labels = tf.repeat(tf.range(classes), batch // classes)
    embeddings = tf.random.stateless_normal((batch, dim), seed=(1, 2))

    @tf.function(jit_compile=jit)
    def step(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = loss(y, x)
        grads = tape.gradient(value, [x] + state)
        return value, grads[0]

    step(embeddings, labels)  # trace / compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _, grad = step(embeddings, labels)
        grad.numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build(name, dim):
    needs_classes = "num_classes" in tfdml.losses.get_class(name).config_args
    loss = tfdml.losses.get(name, **(PROXY_ARGS if needs_classes else {}))
    loss.build_state(dim)
    return loss


def ee_table(repeats, points):
    print("EE Table 1: HPHN triplet, batch 128 (4 x 32), dim 512, forward+backward")
    print(f"{'n':>4} | {'eager-graph ms':>14} | {'overhead':>8} | {'XLA ms':>8} | {'overhead':>8}")
    base = {}
    for n in points:
        row = []
        for jit in (False, True):
            loss = tfdml.losses.TripletLoss(margin=1e-5, expansion=tfdml.EmbeddingExpansion(n_points=n))
            ms = 1e3 * time_loss(loss, 128, 512, 4, jit, repeats)
            base.setdefault(jit, ms)
            row += [ms, 100.0 * (ms / base[jit] - 1.0)]
        print(f"{n:>4} | {row[0]:>14.3f} | {row[1]:>7.1f}% | {row[2]:>8.3f} | {row[3]:>7.1f}%")


def zoo_table(repeats, sizes):
    print("\nEvery registered loss, forward+backward ms (graph / XLA)")
    header = " | ".join(f"B{b}/D{d} graph | B{b}/D{d} XLA" for b, d in sizes)
    print(f"{'loss':<22} | {header}")
    for name in tfdml.losses.names():
        cells = []
        for batch, dim in sizes:
            for jit in (False, True):
                try:
                    cells.append(f"{1e3 * time_loss(build(name, dim), batch, dim, 4, jit, repeats):>12.3f}")
                except Exception as error:  # report, keep going
                    cells.append(f"{'error':>12}")
                    print(f"  {name} B{batch} D{dim} jit={jit}: {type(error).__name__}: {error}")
        print(f"{name:<22} | " + " | ".join(cells))


def ee_xla_table(repeats, batch):
    print(f"Default triplet loss, batch {batch} (4 classes), dim 512, forward+backward ms")
    print(f"{'expansion':<10} | {'graph':>8} | {'XLA':>8} | XLA / graph")
    for n in (0, 2):
        times = [1e3 * time_loss(tfdml.losses.TripletLoss(expansion=n or None), batch, 512, 4, jit, repeats)
                 for jit in (False, True)]
        print(f"{'n = ' + str(n):<10} | {times[0]:>8.1f} | {times[1]:>8.1f} | {times[1] / times[0]:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sizes")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--ee-batch", type=int, default=None, help="only the graph-vs-XLA EE comparison at batch B")
    args = parser.parse_args()
    repeats = args.repeats or (5 if args.quick else 30)
    if args.ee_batch:
        return ee_xla_table(repeats, args.ee_batch)
    ee_table(repeats, (0, 2, 4) if args.quick else (0, 2, 4, 8, 16, 32))
    zoo_table(repeats, [(128, 128)] if args.quick else [(128, 128), (512, 512)])


if __name__ == "__main__":
    main()
