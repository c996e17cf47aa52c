"""Do Roth et al.'s batch samplers slow training? Per-batch cost at SOP scale vs a training step.

Measures, on a synthetic SOP-sized training split (60,000 images, 11,318 classes of
2+ images, a memory bank of 60,000 × 128 unit vectors; b = 112, n = 2, b* = 1024,
m = 10 candidates):

1. the time to draw one batch with every sampler (wall and CPU time of this
   process; label samplers from `batch_indices`, GC/DDM/FRD from a bank copy);
2. the bank's costs: the per-step update (scatter of b rows, in a tf.function), the
   copy the sampler takes every ⌊N/b⌋ batches, and the fill (embedding every
   training image in inference mode, with the default model);
3. one training step of the default model (configs/default.yaml's small CNN at 32 px,
   triplet + EE) at b = 112;
4. end to end: `model.fit` seconds per step (after 10 warm-up steps; tracing and the
   bank fill excluded) of the default model with the real input pipeline on the
   synthetic split (random 32 px images, no augmentation), m_per_class vs each
   sampler (embedded ones with the bank updated every step); the slowdown is the
   issue's criterion (≤ 10 %). Repeated `--repeats` times interleaved; median shown.

The samplers draw in the tf.data generator thread, so they overlap the step; on a
CPU, their CPU time competes with the step's. Numbers are noisy on a shared machine.

Usage: python benchmarks/samplers.py [--batches 30] [--steps 30] [--repeats 3] [--fill-images 60000]
"""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfdml  # noqa: E402
from tfdml.data.samplers import ClassMembers, batch_indices  # noqa: E402
from tfdml.training import build_loss, build_model, load_config  # noqa: E402

N, CLASSES, DIM, BATCH, PER_CLASS, POOL, CANDIDATES = 60_000, 11_318, 128, 112, 2, 1024, 10
LABEL_SAMPLERS = ("m_per_class", "class_random", "spc_r", "full_random")
EMBEDDED = (("gc", "paper"), ("ddm", "paper"), ("ddm", "reference"), ("frd", "paper"))


def sop_like_labels(rng):
    sizes = 2 + rng.multinomial(N - 2 * CLASSES, np.full(CLASSES, 1.0 / CLASSES))
    return np.repeat(np.arange(CLASSES), sizes)


def timed(function, repeats):
    """(wall ms, CPU ms) per call, after one warm-up call."""
    function()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - wall) / repeats * 1e3, (time.process_time() - cpu) / repeats * 1e3


def sampler_times(labels, bank, batches):
    rows = []
    for name in LABEL_SAMPLERS:
        generator = batch_indices(labels, name, BATCH, PER_CLASS, seed=0)
        rows.append((name, *timed(lambda g=generator: next(g), batches)))
    members, snapshot, rng = ClassMembers(labels), bank.snapshot(), np.random.default_rng(0)
    for name, cost in EMBEDDED:
        sampler = tfdml.data.EmbeddedSampler(name, bank, POOL, CANDIDATES, cost)
        label = name if name != "ddm" else f"ddm ({cost})"
        rows.append((label, *timed(lambda s=sampler: s.sample(snapshot, members, BATCH, PER_CLASS, rng), batches)))
    return rows


def bank_times(bank, batches):
    indices = tf.constant(np.random.default_rng(1).choice(N, BATCH, replace=False), tf.int32)
    embeddings = tf.random.normal((BATCH, DIM))
    update = tf.function(bank.update)
    return [("bank update (b rows, per step)", *timed(lambda: update(indices, embeddings), batches)),
            ("bank copy (every ⌊N/b⌋ batches)", *timed(bank.snapshot, 5))]


def default_config(image_size, sampler="m_per_class", output_dir="runs/benchmark_samplers"):
    return load_config(None, [f"sampler.name={sampler}", f"sampler.batch_size={BATCH}",
                              f"sampler.samples_per_class={PER_CLASS}", f"dataset.image_size={image_size}",
                              f"output_dir={output_dir}"])


def compiled_model(config, num_classes=CLASSES):
    model = build_model(config)
    model.compile(optimizer="adam", loss=build_loss(config, num_classes))
    return model


def step_time(steps):
    model = compiled_model(default_config(32))
    images = tf.random.uniform((BATCH, 32, 32, 3), 0, 255)
    labels = tf.repeat(tf.range(BATCH // PER_CLASS), PER_CLASS)
    return timed(lambda: model.train_on_batch(images, labels), steps)


def synthetic_split(labels, image_size, rng):
    images = rng.integers(0, 256, size=(len(labels), image_size, image_size, 3), dtype=np.uint8)
    return tfdml.data.Split("synthetic_sop", labels, images=images)


def fill_time(split, image_size):
    model = compiled_model(default_config(image_size))
    bank = tfdml.data.MemoryBank(split.num_images, model.embedding_dim)
    start = time.perf_counter()
    bank.fill(model, tfdml.data.eval_pipeline(split, 256, image_size, "test"), verbose=False)
    return time.perf_counter() - start


class _StepClock(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append((time.perf_counter(), time.process_time()))


def fit_seconds_per_step(split, sampler, steps, image_size, warmup=10):
    """(wall, process CPU) seconds per step of one `model.fit`, steps after `warmup`
    (tracing, first batches and the bank fill excluded)."""
    config = default_config(image_size, sampler)
    model = compiled_model(config)
    bank, callbacks = None, [_StepClock()]
    if sampler in tfdml.data.EMBEDDED_SAMPLERS:
        bank = tfdml.data.MemoryBank(split.num_images, model.embedding_dim)
        sampler = tfdml.data.EmbeddedSampler(sampler, bank, POOL, CANDIDATES)
    data = tfdml.data.train_pipeline(split, BATCH, sampler, PER_CLASS, "none", image_size,
                                     with_indices=bank is not None)
    if bank is not None:
        callbacks.append(tfdml.data.prepare_memory_bank(
            model, bank, tfdml.data.eval_pipeline(split, 512, image_size), verbose=False))
    model.fit(data, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=callbacks)
    ends = np.array(callbacks[0].ends)
    return tuple((ends[-1] - ends[warmup - 1]) / steps)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30, help="batches timed per sampler")
    parser.add_argument("--steps", type=int, default=30, help="model.fit steps timed per sampler")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved end-to-end repetitions")
    parser.add_argument("--fill-images", type=int, default=N, help="images embedded by the fill timing")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    labels = sop_like_labels(rng)
    bank = tfdml.data.MemoryBank(N, DIM)
    vectors = rng.normal(size=(N, DIM)).astype(np.float32)
    bank.fill(lambda images, training: images,
              tf.data.Dataset.from_tensor_slices(vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).batch(4096),
              verbose=False)
    print(f"SOP-scale split: {N} images, {CLASSES} classes; bank {N} x {DIM}; b = {BATCH}, n = {PER_CLASS}, "
          f"b* = {POOL}, m = {CANDIDATES}")
    step_wall, step_cpu = step_time(args.batches)
    rows = sampler_times(labels, bank, args.batches) + bank_times(bank, args.batches)
    print(f"\n{'per batch':34s} {'wall ms':>9s} {'CPU ms':>9s} {'CPU / step CPU':>15s}")
    for name, wall, cpu in rows:
        print(f"{name:34s} {wall:9.2f} {cpu:9.2f} {100 * cpu / step_cpu:14.1f}%")
    print(f"{'train step, default model (32 px)':34s} {step_wall:9.2f} {step_cpu:9.2f}")
    fill_split = synthetic_split(labels[:args.fill_images], 32, rng)
    print(f"bank fill: {args.fill_images} images at 32 px with the default model: "
          f"{fill_time(fill_split, 32):.1f} s (once at the start of training)")

    split = fill_split if args.fill_images == N else synthetic_split(labels, 32, rng)
    names = ("m_per_class", "spc_r", "gc", "ddm", "frd")
    runs = {name: [] for name in names}
    for _ in range(args.repeats):
        for name in names:
            runs[name].append(fit_seconds_per_step(split, name, args.steps, 32))
    median = {name: np.median(np.array(values), axis=0) for name, values in runs.items()}
    base_wall, base_cpu = median["m_per_class"]
    print(f"\nmodel.fit, default model at 32 px, b = {BATCH}, real pipeline, median of {args.repeats} "
          "(CPU = this process's CPU time per step, all threads):")
    for name in names:
        wall, cpu = median[name]
        print(f"  {name:12s} wall {1e3 * wall:7.1f} ms/step ({100 * (wall / base_wall - 1):+6.1f}%)   "
              f"CPU {1e3 * cpu:7.1f} ms/step ({100 * (cpu / base_cpu - 1):+6.1f}%)")
    worst = max(median[name][1] / base_cpu - 1 for name in names)
    print(f"largest CPU-time increase per step {100 * worst:+.1f}% "
          f"({'within' if worst <= 0.10 else 'above'} the 10% budget)")


if __name__ == "__main__":
    main()
