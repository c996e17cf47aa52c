"""Is the input pipeline the bottleneck? Images/s of the training pipeline vs a model step.

Measures the tf.data training pipeline (sampling, decoding, augmentation) on the
in-memory digits and on a temporary on-disk JPEG folder, and the time of one
training step of a small model on the same batch size, then says which is
slower. On a GPU machine run it with the real backbone (--backbone resnet50
--image-size 224) to check the pipeline keeps up.

Usage: python benchmarks/input_pipeline.py [--batches 30] [--image-size 64]
"""
import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfdml  # noqa: E402


def images_per_second(dataset, batches, batch_size):
    iterator = iter(dataset)
    next(iterator)  # warm-up
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def make_jpeg_folder(root, classes=20, per_class=30, size=300):
    rng = np.random.default_rng(0)
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class_{c:03d}"))
        for i in range(per_class):
            image = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            tf.io.write_file(os.path.join(root, f"class_{c:03d}", f"{i}.jpg"), tf.io.encode_jpeg(image))
    return root


def step_images_per_second(backbone, image_size, batch_size, steps):
    model = tfdml.models.EmbeddingModel(backbone, 64, input_shape=(image_size, image_size, 3))
    model.compile(optimizer="adam", loss=tfdml.losses.TripletLoss(expansion=tfdml.EmbeddingExpansion(2)))
    x = tf.random.uniform((batch_size, image_size, image_size, 3), 0, 255)
    y = tf.repeat(tf.range(batch_size // 8), 8)
    model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--backbone", default="small_cnn")
    args = parser.parse_args()
    rows = []
    digits = tfdml.data.load_split("digits", "train", image_size=32)
    for augmentation in ("ee", "roth"):
        data = tfdml.data.train_pipeline(digits, args.batch_size, samples_per_class=args.batch_size // 4,
                                         augmentation=augmentation,
                                         image_size=args.image_size)
        rows.append((f"digits in memory, {augmentation}", images_per_second(data, args.batches, args.batch_size)))
    with tempfile.TemporaryDirectory() as root:
        folder = tfdml.data.image_folder(make_jpeg_folder(root), "train")
        data = tfdml.data.train_pipeline(folder, args.batch_size, samples_per_class=8, augmentation="ee",
                                         image_size=args.image_size)
        rows.append(("JPEG folder 300px, ee", images_per_second(data, args.batches, args.batch_size)))
    model_rate = step_images_per_second(args.backbone, args.image_size, args.batch_size, 10)
    print(f"{'source':<28} | {'images/s':>10}")
    for name, rate in rows:
        print(f"{name:<28} | {rate:>10.0f}")
    print(f"{'train step (' + args.backbone + ')':<28} | {model_rate:>10.0f}")
    slowest = min(rate for _, rate in rows)
    verdict = "is NOT" if slowest > model_rate else "IS"
    print(f"\nThe input pipeline {verdict} the bottleneck here (slowest pipeline {slowest:.0f} img/s vs "
          f"model {model_rate:.0f} img/s).")


if __name__ == "__main__":
    main()
