"""Evaluation at Stanford-Online-Products scale: time and peak memory.

Builds random-but-clustered embeddings shaped like the SOP test set (60,502 × 512,
11,316 classes of at least 2 images), then computes Recall@{1,10,100,1000} and
MAP@R twice, each in a fresh subprocess so peak memory (ru_maxrss) is its own:

- tfdml: `tfdml.metrics.evaluate_embeddings` (chunked TF matmul + top-k; memory
  O(chunk × N), never N × N);
- scikit-learn: `NearestNeighbors(algorithm="brute").kneighbors` for 1,000
  neighbours (its own chunking), with the metrics computed from the neighbour
  lists by plain numpy written here.

Both must give the same numbers (up to distance ties). Prints a table of wall
time, peak RSS and the peak above the process's baseline (data loaded).

Usage: python benchmarks/eval_speed.py [--n 60502] [--dim 512] [--classes 11316]
       [--chunk-size 1024] [--skip-sklearn]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

KS = (1, 10, 100, 1000)


def clustered_embeddings(n, dim, classes, noise=0.1, seed=0):
    """L2-normalised points around random class centres; every class has >= 2 points."""
    if n < 2 * classes:
        raise ValueError(f"--n ({n}) must be at least 2 × --classes ({classes}).")
    rng = np.random.default_rng(seed)
    sizes = 2 + rng.multinomial(n - 2 * classes, np.full(classes, 1.0 / classes))
    labels = rng.permutation(np.repeat(np.arange(classes), sizes))
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    points = centres[labels] + rng.normal(scale=noise, size=(n, dim)).astype(np.float32)
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32), labels


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def metrics_from_neighbours(neighbours, labels):
    """Recall@K and MAP@R (Musgrave et al.) from (N, k) neighbour lists without the query."""
    counts = np.bincount(labels)
    r = counts[labels] - 1
    relevant = labels[neighbours] == labels[:, None]
    result = {f"recall@{k}": float(relevant[:, :k].any(axis=1).mean()) for k in KS}
    ranks = np.arange(1, neighbours.shape[1] + 1)
    precision = np.cumsum(relevant, axis=1) / ranks
    within = ranks[None, :] <= r[:, None]
    result["map@r"] = float(np.mean(np.sum(precision * relevant * within, axis=1) / r))
    return result


def run_tfdml(points, labels, chunk_size):
    import tfdml

    return tfdml.metrics.evaluate_embeddings(points, labels, ks=KS, metrics=("recall", "map@r"),
                                             chunk_size=chunk_size)


def run_sklearn(points, labels):
    from sklearn.neighbors import NearestNeighbors

    k = min(max(KS), len(labels) - 1)
    index = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(points)
    found = index.kneighbors(points, return_distance=False)
    # Drop each query from its own list (it is not always first when points coincide).
    keep = found != np.arange(len(labels))[:, None]
    keep[keep.sum(axis=1) > k, -1] = False
    neighbours = found[keep].reshape(len(labels), k)
    return metrics_from_neighbours(neighbours, labels)


def worker(args):
    data = np.load(args.data)
    points, labels = data["points"], data["labels"]
    if args.worker == "tfdml":
        import tfdml  # noqa: F401  (import TF before measuring the baseline)
    else:
        import sklearn.neighbors  # noqa: F401
    baseline = peak_rss_mb()
    start = time.perf_counter()
    values = run_tfdml(points, labels, args.chunk_size) if args.worker == "tfdml" else run_sklearn(points, labels)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_mb": peak_rss_mb(), "baseline_mb": baseline, "metrics": values}))


def launch(name, data_path, args):
    command = [sys.executable, __file__, "--worker", name, "--data", data_path, "--chunk-size", str(args.chunk_size)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=60502)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=11316)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--skip-sklearn", action="store_true")
    parser.add_argument("--worker", choices=("tfdml", "sklearn"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    points, labels = clustered_embeddings(args.n, args.dim, args.classes)
    print(f"{args.n} × {args.dim} embeddings, {args.classes} classes; Recall@{list(KS)} + MAP@R")
    with tempfile.TemporaryDirectory() as tmp:
        data_path = os.path.join(tmp, "data.npz")
        np.savez(data_path, points=points, labels=labels)
        results = {"tfdml (chunked TF)": launch("tfdml", data_path, args)}
        if not args.skip_sklearn:
            results["sklearn brute"] = launch("sklearn", data_path, args)
    names = [f"recall@{k}" for k in KS] + ["map@r"]
    print(f"{'method':<20}{'time s':>9}{'peak MB':>10}{'+ above data':>14}" + "".join(f"{n:>12}" for n in names))
    for method, r in results.items():
        values = "".join(f"{r['metrics'][n]:>12.4f}" for n in names)
        print(f"{method:<20}{r['seconds']:>9.1f}{r['peak_mb']:>10.0f}{r['peak_mb'] - r['baseline_mb']:>14.0f}{values}")
    if len(results) == 2:
        a, b = (r["metrics"] for r in results.values())
        gap = max(abs(a[n] - b[n]) for n in names)
        print(f"largest metric difference: {gap:.2e} (distance ties may order neighbours differently)")


if __name__ == "__main__":
    main()
