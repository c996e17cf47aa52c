"""Peak memory and time of each retrieval metric at N embeddings (default 20,000 × 64).

Each metric runs in a fresh subprocess, so its peak RSS (ru_maxrss) is its own;
the table shows wall time, peak RSS and the peak above the process's baseline
(data built, TensorFlow imported and warmed up). Memory should stay
O(chunk × block) — the same for every metric, whatever N.

Usage: python benchmarks/retrieval_memory.py [--n 20000] [--dim 64] [--classes 200]
       [--metrics recall map@r map@1000]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _child(n, dim, classes, metric):
    import numpy as np

    import tfdml

    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    points = centres[labels] + rng.normal(scale=0.7, size=(n, dim)).astype(np.float32)
    tfdml.metrics.retrieval_metrics(points[:64], labels[:64], metrics=(metric,))  # imports and traces
    base = _peak_mb()
    start = time.perf_counter()
    result = tfdml.metrics.retrieval_metrics(points, labels, metrics=(metric,))
    seconds = time.perf_counter() - start
    print(json.dumps({"metric": metric, "seconds": seconds, "peak_mb": _peak_mb(), "above_mb": _peak_mb() - base,
                      "value": result}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--metrics", nargs="+", default=["recall", "map@r", "map@1000"])
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args.n, args.dim, args.classes, args.child)
    print(f"N = {args.n:,} × {args.dim}, {args.classes} classes")
    print(f"{'metric':<10} {'wall s':>8} {'peak MB':>9} {'above MB':>9}  value")
    for metric in args.metrics:
        out = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--dim", str(args.dim), "--classes",
                              str(args.classes), "--child", metric], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        value = ", ".join(f"{k} {v:.4f}" for k, v in row["value"].items())
        print(f"{metric:<10} {row['seconds']:>8.1f} {row['peak_mb']:>9.0f} {row['above_mb']:>9.0f}  {value}")


if __name__ == "__main__":
    main()
