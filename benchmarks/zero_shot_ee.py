"""Zero-shot retrieval benchmark: each pair-based loss with and without Embedding Expansion.

A procedurally generated glyph dataset (no download): every class is a random
"character" of 3–5 strokes (line segments and arcs); every image renders it
with its own random affine distortion (rotation, scale, shear, shift), stroke
jitter and width, blur-free anti-aliasing, contrast and pixel noise. Classes
are split into training classes and unseen test classes (zero-shot, as in the
EE paper's CUB/Cars/SOP protocol). The same small CNN (no batch norm) is
trained with each loss, with class-balanced batches (P classes × K samples),
for a few hundred steps, and evaluated by Recall@1 (cosine) among the unseen
classes' test images. Each configuration runs with several seeds (model
initialisation and batch sampling; the dataset is fixed) and the script prints
a markdown table of mean ± std.

Usage: python benchmarks/zero_shot_ee.py [--seeds 3] [--steps 300] [--losses multi_similarity lifted ...]
       python benchmarks/zero_shot_ee.py --quick   (one seed, 60 steps: a smoke run)
"""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfdml  # noqa: E402

IMAGE_SIZE = 24


# ------------------------------------------------------------------ data
def _stroke_vocabulary(rng, size=48):
    """Stroke primitives shared by all classes (so classes share parts): segments and arcs as polylines
    of points in the unit square."""
    strokes = []
    for _ in range(size):
        if rng.random() < 0.35:  # arc
            centre, radius = rng.uniform(0.3, 0.7, 2), rng.uniform(0.15, 0.35)
            angles = rng.uniform(0, 2 * np.pi) + np.linspace(0, rng.uniform(0.5, 1.5) * np.pi, 6)
            strokes.append(centre + radius * np.stack([np.cos(angles), np.sin(angles)], 1))
        else:
            strokes.append(rng.uniform(0.1, 0.9, (2, 2)))
    return strokes


def _class_glyph(vocabulary, rng):
    """A glyph: 3 or 4 strokes of the vocabulary, each slightly moved."""
    chosen = rng.choice(len(vocabulary), rng.integers(3, 5), replace=False)
    return [vocabulary[i] + rng.normal(0, 0.05, 2) for i in chosen]


def _render(strokes, rng):
    """One distorted image of a glyph, float32 in [0, 1] of shape (24, 24, 1)."""
    angle = rng.normal(0, 0.25)
    scale = rng.uniform(0.75, 1.15)
    shear = rng.normal(0, 0.2)
    matrix = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ np.array(
        [[1.0, shear], [0.0, 1.0]])
    shift = rng.normal(0, 0.06, 2)
    width = rng.uniform(0.2, 0.8) / IMAGE_SIZE  # half-width of the stroke core
    grid = (np.stack(np.meshgrid(np.arange(IMAGE_SIZE), np.arange(IMAGE_SIZE), indexing="xy"), -1).reshape(-1, 2)
            + 0.5) / IMAGE_SIZE
    image = np.zeros(len(grid))
    for stroke in strokes:
        points = (stroke + rng.normal(0, 0.035, stroke.shape) - 0.5) @ matrix.T + 0.5 + shift
        for a, b in zip(points[:-1], points[1:]):
            ab = b - a
            t = np.clip(((grid - a) @ ab) / max(ab @ ab, 1e-9), 0.0, 1.0)
            distance = np.linalg.norm(grid - (a + t[:, None] * ab), axis=1)
            image = np.maximum(image, np.clip(1.0 - (distance - width) * IMAGE_SIZE, 0.0, 1.0))
    image = image.reshape(IMAGE_SIZE, IMAGE_SIZE)
    if rng.random() < 0.3:  # an occluding blank patch
        top, left = rng.integers(0, IMAGE_SIZE - 8, 2)
        image[top:top + 8, left:left + 8] = 0.0
    image = image * rng.uniform(0.5, 1.0) + rng.normal(0, 0.1, image.shape)
    return np.clip(image, 0.0, 1.0)[..., None].astype(np.float32)


def glyph_dataset(num_classes=160, per_class=30, train_classes=60, seed=1234):
    """(train images, train labels, test images, test labels): classes [0, train_classes) for training,
    the other (unseen) classes for testing."""
    rng = np.random.default_rng(seed)
    vocabulary = _stroke_vocabulary(rng)
    glyphs = [_class_glyph(vocabulary, rng) for _ in range(num_classes)]
    images = np.stack([_render(glyphs[c], rng) for c in range(num_classes) for _ in range(per_class)])
    labels = np.repeat(np.arange(num_classes), per_class).astype(np.int32)
    train = labels < train_classes
    return images[train], labels[train], images[~train], labels[~train]


# ----------------------------------------------------------------- model
def small_cnn(embedding_dim=64):
    """Conv–ReLU blocks without batch norm (class-sampled batches and BN statistics do not mix well for
    unseen classes), global average pooling, a linear embedding."""
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1))
    x = inputs
    for i, width in enumerate((32, 64, 64)):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
        if i < 2:
            x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(embedding_dim)(x))


# -------------------------------------------------------------- training
def class_balanced_batches(labels, classes_per_batch, per_class, rng):
    """Endless index batches of `classes_per_batch` classes × `per_class` samples (grouped by class)."""
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    while True:
        chosen = rng.choice(len(by_class), classes_per_batch, replace=False)
        yield np.concatenate([rng.choice(by_class[c], per_class, replace=False) for c in chosen])


def recall_at_1(embeddings, labels):
    """Recall@1 of every test image against all the others (cosine)."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return float(np.mean(labels[np.argmax(similarity, axis=1)] == labels))


def train_and_evaluate(loss, data, seed, steps, classes_per_batch=16, per_class=4, learning_rate=1e-3):
    """Recall@1 on the unseen classes of `data` after `train`."""
    model = train(loss, data, seed, steps, classes_per_batch, per_class, learning_rate)
    embeddings = model.predict(data[2], batch_size=400, verbose=0)
    return recall_at_1(embeddings, data[3])


def train(loss, data, seed, steps, classes_per_batch=16, per_class=4, learning_rate=1e-3):
    """The benchmark CNN trained with `loss` on the training classes of `data` (class-balanced batches)."""
    x_train, y_train = data[0], data[1]
    keras.utils.set_random_seed(seed)
    model = small_cnn()
    optimizer = keras.optimizers.Adam(learning_rate)

    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            value = loss(labels, model(images, training=True))
        optimizer.apply_gradients(zip(tape.gradient(value, model.trainable_variables), model.trainable_variables))
        return value

    batches = class_balanced_batches(y_train, classes_per_batch, per_class, np.random.default_rng(seed))
    for _ in range(steps):
        index = next(batches)
        value = step(tf.constant(x_train[index]), tf.constant(y_train[index]))
    if not np.isfinite(float(value)):
        raise RuntimeError(f"non-finite loss {float(value)}")
    return model


# Each entry: (row label, loss builder). EE uses n = 2 synthetic points, the EE paper's default, with each
# loss's default pooling; N-pair's synthetic points are unnormalised (EE §3).
def _configurations():
    ee = tfdml.EmbeddingExpansion(n_points=2)
    raw_ee = tfdml.EmbeddingExpansion(n_points=2, normalize=False)
    L = tfdml.losses
    return {
        "multi_similarity": [("MS", lambda: L.MultiSimilarityLoss()),
                             ("MS + EE", lambda: L.MultiSimilarityLoss(expansion=ee)),
                             ("MS + EE (ee_form=pooled)", lambda: L.MultiSimilarityLoss(expansion=ee,
                                                                                         ee_form="pooled"))],
        "lifted": [("lifted", lambda: L.LiftedStructureLoss()),
                   ("lifted + EE", lambda: L.LiftedStructureLoss(expansion=ee)),
                   ("lifted + EE (ee_form=pooled)", lambda: L.LiftedStructureLoss(expansion=ee, ee_form="pooled"))],
        "triplet": [("triplet HPHN", lambda: L.TripletLoss()),
                    ("triplet HPHN + EE", lambda: L.TripletLoss(expansion=ee))],
        "npair": [("N-pair", lambda: L.NPairLoss()),
                  ("N-pair + EE", lambda: L.NPairLoss(expansion=raw_ee)),
                  ("N-pair + EE (pooling=anchor)", lambda: L.NPairLoss(expansion=tfdml.EmbeddingExpansion(
                      n_points=2, normalize=False, pooling="anchor"))),
                  # Anchor pooling over every positive pair (EE eqs. 11-15's P) instead of consecutive pairs.
                  ("N-pair + EE (pooling=anchor, pairs=all)", lambda: L.NPairLoss(
                      expansion=tfdml.EmbeddingExpansion(n_points=2, normalize=False, pairs="all",
                                                         pooling="anchor")))],
        **{name: [(label, lambda cls=cls: cls()), (f"{label} + EE", lambda cls=cls: cls(expansion=ee))]
           for name, label, cls in NEWCOMERS},
        # Cross-batch memory of 512 embeddings (8 batches) from step 50; EE expands the current batch only.
        "xbm": [("MS + XBM", lambda: L.CrossBatchMemory(L.MultiSimilarityLoss(), 512, warmup_steps=50)),
                ("MS + EE + XBM", lambda: L.CrossBatchMemory(L.MultiSimilarityLoss(expansion=ee), 512,
                                                             warmup_steps=50)),
                ("MS + EE + XBM (memory_points=with_synthetic)", lambda: L.CrossBatchMemory(
                    L.MultiSimilarityLoss(expansion=ee), 512, warmup_steps=50, memory_points="with_synthetic"))],
    }


# The pair-based losses added after the five papers' set, each at its own (paper) defaults.
NEWCOMERS = [("circle", "Circle", tfdml.losses.CircleLoss), ("supcon", "SupCon", tfdml.losses.SupConLoss),
             ("ntxent", "NT-Xent", tfdml.losses.NTXentLoss),
             ("tuplet_margin", "tuplet margin", tfdml.losses.TupletMarginLoss),
             ("intra_pair_variance", "intra-pair variance", tfdml.losses.IntraPairVarianceLoss),
             ("ranked_list", "ranked list", tfdml.losses.RankedListLoss),
             ("fastap", "FastAP", tfdml.losses.FastAPLoss), ("smooth_ap", "Smooth-AP", tfdml.losses.SmoothAPLoss),
             ("pnp", "PNP", tfdml.losses.PNPLoss),
             ("threshold_consistent_margin", "threshold-consistent margin", tfdml.losses.ThresholdConsistentMarginLoss),
             ("dynamic_soft_margin", "dynamic soft margin", tfdml.losses.DynamicSoftMarginLoss)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--losses", nargs="+", default=["multi_similarity", "lifted", "triplet", "npair"],
                        choices=sorted(_configurations()))
    parser.add_argument("--quick", action="store_true", help="one seed, 60 steps")
    args = parser.parse_args()
    seeds, steps = (1, 60) if args.quick else (args.seeds, args.steps)
    start = time.perf_counter()
    data = glyph_dataset()
    print(f"glyph dataset: {len(data[1])} training images of {len(np.unique(data[1]))} classes, {len(data[3])} test "
          f"images of {len(np.unique(data[3]))} unseen classes ({time.perf_counter() - start:.1f} s); "
          f"{steps} steps, batch 16 classes × 4, seeds {list(range(seeds))}")
    rows = []
    for name in args.losses:
        for label, build in _configurations()[name]:
            recalls = []
            for seed in range(seeds):
                began = time.perf_counter()
                recalls.append(100 * train_and_evaluate(build(), data, seed, steps))
                print(f"  {label:<30} seed {seed}: R@1 {recalls[-1]:.2f} ({time.perf_counter() - began:.0f} s)",
                      flush=True)
            rows.append((label, recalls))
    print(f"\n| loss | R@1 unseen classes (mean ± std over {seeds} seeds) | per seed |\n|---|---|---|")
    for label, recalls in rows:
        print(f"| {label} | {np.mean(recalls):.2f} ± {np.std(recalls):.2f} | "
              f"{', '.join(f'{r:.1f}' for r in recalls)} |")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
