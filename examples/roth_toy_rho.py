"""Roth et al. (ICML 2020), Figs. 6 and 11: a 2-D toy example of ρ-regularisation.

Synthetic 2-D data: each class is a ring of `modes` small Gaussian blobs (intra-class
structure); half of the classes train, the other half test. A small MLP maps the
points to a 2-D embedding trained with the triplet loss (random triplets,
Euclidean, not normalised), once without and once with ρ-regularisation (with
probability ρ a triplet's negative is replaced by another sample of the anchor's
class, Roth et al. §5). The figure shows the training and test embeddings of both
runs, with their spectral decay ρ(Φ) and test Recall@1: the regularised embedding
keeps more of the intra-class structure.

    python examples/roth_toy_rho.py --output runs/roth_toy --steps 400 --rho 0.3

Writes `toy_embeddings.png` and `toy_metrics.json` into `--output`.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfdml  # noqa: E402
from tfdml.analysis.plotting import figure, save  # noqa: E402
from tfdml.metrics import evaluate_embeddings, spectral_decay  # noqa: E402


def toy_data(classes=8, modes=4, per_mode=8, seed=0):
    """(points (N, 2), labels (N,)): class c is `modes` blobs on a small ring around a random centre."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-4, 4, size=(classes, 2))
    points, labels = [], []
    for c in range(classes):
        angles = 2 * np.pi * (np.arange(modes) / modes + rng.uniform())
        for angle in angles:
            mode = centres[c] + 0.8 * np.array([np.cos(angle), np.sin(angle)])
            points.append(mode + 0.1 * rng.normal(size=(per_mode, 2)))
            labels += [c] * per_mode
    return np.concatenate(points).astype("float32"), np.array(labels)


def train_embedding(x, y, rho, steps, seed=0, batch_size=32):
    """A 2-D MLP embedding trained with random-triplet loss (margin 0.5) and ρ-regularisation `rho`."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(2)])
    loss = tfdml.losses.TripletLoss(margin=0.5, mining="random", normalize=False, rho=rho, seed=seed)
    optimizer = keras.optimizers.Adam(3e-3)
    rng = np.random.default_rng(seed)
    classes = np.unique(y)

    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            value = loss(labels, model(images, training=True))
        optimizer.apply_gradients(zip(tape.gradient(value, model.trainable_variables), model.trainable_variables))
        return value

    for _ in range(steps):
        per_class = max(2, batch_size // len(classes))  # every training class, `per_class` samples each
        index = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in classes])
        step(tf.constant(x[index]), tf.constant(y[index]))
    return model


def run_toy(output, rho=0.3, steps=400, seed=0):
    """Trains without and with ρ-regularisation; writes the figure and metrics; returns the metrics."""
    x, y = toy_data(seed=seed)
    train = y < 4
    results, embeddings = {}, {}
    for name, value in (("baseline", 0.0), (f"rho={rho}", rho)):
        model = train_embedding(x[train], y[train], value, steps, seed)
        e_train, e_test = model.predict(x[train], verbose=0), model.predict(x[~train], verbose=0)
        embeddings[name] = (e_train, e_test)
        test = evaluate_embeddings(e_test, y[~train], ks=(1,), metrics=("recall",))
        results[name] = {"rho": float(spectral_decay(e_train, drop_largest=False)),
                         "test_recall@1": float(test["recall@1"])}
    fig, axes = figure(ncols=4, width=3.6, height=3.6)
    panels = [(name, split, e) for name, pair in embeddings.items() for split, e in zip(("train", "test"), pair)]
    for ax, (name, split, e) in zip(axes, panels):
        labels = y[train] if split == "train" else y[~train]
        ax.scatter(e[:, 0], e[:, 1], c=labels, cmap="tab10", s=8)
        ax.set_title(f"{name}, {split}\nρ = {results[name]['rho']:.3f}, "
                     f"test R@1 = {100 * results[name]['test_recall@1']:.1f}", fontsize=8)
    os.makedirs(output, exist_ok=True)
    save(fig, os.path.join(output, "toy_embeddings.png"))
    with open(os.path.join(output, "toy_metrics.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="runs/roth_toy")
    parser.add_argument("--rho", type=float, default=0.3)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results = run_toy(args.output, args.rho, args.steps, args.seed)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
