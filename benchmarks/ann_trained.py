"""Approximate retrieval on a trained model's embeddings (`benchmarks/ann.py` on real embeddings).

Trains the zero-shot benchmark's CNN (`benchmarks/zero_shot_ee.py`: 64-d, multi-similarity,
300 Adam steps on 60 procedurally generated glyph classes), renders a gallery of
`--classes` × `--per-class` new glyph images (the training classes and unseen ones, each
image with its own random rotation, scale, shear, shift, jitter, occlusion and noise),
embeds them with the trained model, L2-normalises, saves the array and runs
`benchmarks/ann.py --embeddings` on it (recall@10 of each index kind against exact search,
queries per second, memory, build time).

Usage: python benchmarks/ann_trained.py [--classes 1000] [--per-class 200] [--steps 300]
       [--output /tmp/glyph_embeddings.npy] [ann.py options, e.g. --threads 1]
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import ann  # noqa: E402
import zero_shot_ee as glyphs  # noqa: E402


def trained_embeddings(classes, per_class, steps, seed=0):
    """(classes · per_class, 64) unit embeddings of new glyph images from a model trained on 60 classes."""
    data = glyphs.glyph_dataset(num_classes=classes, per_class=per_class, train_classes=60, seed=1234)
    import tfdml

    model = glyphs.train(tfdml.losses.MultiSimilarityLoss(), data, seed, steps)
    images = np.concatenate([data[0], data[2]])
    embeddings = model.predict(images, batch_size=2000, verbose=0)
    return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--output", default="/tmp/glyph_embeddings.npy")
    args, rest = parser.parse_known_args(argv)
    if not os.path.isfile(args.output):
        np.save(args.output, trained_embeddings(args.classes, args.per_class, args.steps).astype(np.float32))
        print(f"saved {args.output}", flush=True)
    ann.main(["--embeddings", args.output, *rest])


if __name__ == "__main__":
    main()
