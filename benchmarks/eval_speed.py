"""Evaluation at Stanford-Online-Products scale: time, peak memory and exactness.

Builds random-but-clustered embeddings shaped like the SOP test set (60,502 × 512,
11,316 classes of at least 2 images) and runs, each in a fresh subprocess so peak
memory (ru_maxrss) is its own:

- retrieval, Recall@{1,10,100,1000} + MAP@R:
  - tfdml: `tfdml.metrics.evaluate_embeddings` (exact rank statistics: float32
    block matmuls, exact re-ranking only where the estimate cannot decide);
  - faiss: `faiss.IndexFlatL2.search` for 1,001 neighbours (chunks of 4,096
    queries) + the metrics from the neighbour lists in numpy (written here);
  - optionally (`--sklearn`) scikit-learn's brute-force `NearestNeighbors`;
  - an exactness check: the tfdml ranks and relevance lists of 500 random
    queries against a float64 brute force written here;
- clustering, NMI with k = 11,316: tfdml's k-means (`tfdml.metrics.kmeans`)
  and faiss' `Kmeans(niter=20)` (skip with `--skip-nmi`).

Prints a table of wall time, CPU time (user + system of all threads: less
sensitive to other processes on a shared machine), peak RSS and the peak above
the process's baseline (data loaded, libraries imported), and the largest
metric difference.

Usage: python benchmarks/eval_speed.py [--n 60502] [--dim 512] [--classes 11316]
       [--chunk-size 1024] [--sklearn] [--skip-nmi]
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
METRICS = [f"recall@{k}" for k in KS] + ["map@r"]


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


class NeighbourMetrics:
    """Recall@K and MAP@R (Musgrave et al.) accumulated from (n, k) neighbour lists without the query."""

    def __init__(self, labels):
        self.labels = labels
        self.r = np.bincount(labels)[labels] - 1
        self.sums = dict.fromkeys(METRICS, 0.0)

    def add(self, rows, neighbours):
        relevant = self.labels[neighbours] == self.labels[rows][:, None]
        for k in KS:
            self.sums[f"recall@{k}"] += float(relevant[:, :k].any(axis=1).sum())
        ranks = np.arange(1, neighbours.shape[1] + 1)
        r = self.r[rows]
        within = relevant & (ranks[None, :] <= r[:, None])
        precision = np.cumsum(within, axis=1) / ranks
        self.sums["map@r"] += float(np.sum(np.sum(precision * within, axis=1) / r))

    def result(self):
        return {name: total / len(self.labels) for name, total in self.sums.items()}


def drop_self(found, rows, k):
    """(n, k+1) neighbour lists → (n, k) without the query itself (not always first when points coincide)."""
    keep = found != rows[:, None]
    keep[keep.sum(axis=1) > k, -1] = False
    return found[keep].reshape(len(rows), k)


def run_tfdml(points, labels, args):
    import tfdml

    return tfdml.metrics.evaluate_embeddings(points, labels, ks=KS, metrics=("recall", "map@r"),
                                             chunk_size=args.chunk_size, verbose=False)


def run_faiss(points, labels, args):
    import faiss

    index = faiss.IndexFlatL2(points.shape[1])
    index.add(points)
    k = min(max(KS), len(labels) - 1)
    metrics = NeighbourMetrics(labels)
    for start in range(0, len(points), 4096):
        rows = np.arange(start, min(start + 4096, len(points)))
        _, found = index.search(points[rows], k + 1)
        metrics.add(rows, drop_self(found, rows, k))
    return metrics.result()


def run_sklearn(points, labels, args):
    from sklearn.neighbors import NearestNeighbors

    k = min(max(KS), len(labels) - 1)
    index = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(points)
    metrics = NeighbourMetrics(labels)
    for start in range(0, len(points), 4096):
        rows = np.arange(start, min(start + 4096, len(points)))
        found = index.kneighbors(points[rows], return_distance=False)
        metrics.add(rows, drop_self(found, rows, k))
    return metrics.result()


def run_exactness(points, labels, args):
    """tfdml's rank statistics of 500 random queries against an explicit float64 brute force."""
    from tfdml.retrieval.ranking import rank_relevance

    r = np.bincount(labels)[labels] - 1
    ranked = rank_relevance(points, labels, list_lengths=r, chunk_size=args.chunk_size)
    x = points.astype(np.float64)
    mismatches = 0
    for q in np.random.default_rng(1).choice(len(points), 500, replace=False):
        d = np.sum((x - x[q]) ** 2, axis=1)
        d[q] = np.inf
        order = np.lexsort((np.arange(len(d)), d))[:-1]
        relevant = labels[order] == labels[q]
        first = int(np.argmax(relevant))
        same = first == ranked.first_positive_rank[q] and np.array_equal(relevant[:r[q]],
                                                                           ranked.relevance[q, :r[q]])
        mismatches += not same
    return {"checked": 500, "mismatches": mismatches}


def run_nmi_tfdml(points, labels, args):
    from tfdml.metrics.clustering import clustering_metrics

    return clustering_metrics(points, labels, ("nmi",))


def run_nmi_faiss(points, labels, args):
    import faiss
    from sklearn.metrics import normalized_mutual_info_score

    classes = len(np.unique(labels))
    kmeans = faiss.Kmeans(points.shape[1], classes, niter=20, seed=0, max_points_per_centroid=10 ** 7)
    kmeans.train(points)
    _, clusters = kmeans.index.search(points, 1)
    return {"nmi": float(normalized_mutual_info_score(labels, clusters[:, 0]))}


WORKERS = {"tfdml": run_tfdml, "faiss": run_faiss, "sklearn": run_sklearn, "exactness": run_exactness,
           "nmi_tfdml": run_nmi_tfdml, "nmi_faiss": run_nmi_faiss}


def worker(args):
    data = np.load(args.data)
    points, labels = data["points"], data["labels"]
    if args.worker in ("tfdml", "exactness", "nmi_tfdml"):
        import tfdml  # noqa: F401  (import TF before measuring the baseline)
    elif "faiss" in args.worker:
        import faiss  # noqa: F401
    else:
        import sklearn.neighbors  # noqa: F401
    baseline = peak_rss_mb()
    start, cpu = time.perf_counter(), time.process_time()
    values = WORKERS[args.worker](points, labels, args)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_mb": peak_rss_mb(), "baseline_mb": baseline,
                      "metrics": values}))


def launch(name, data_path, args):
    command = [sys.executable, __file__, "--worker", name, "--data", data_path, "--chunk-size", str(args.chunk_size)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise RuntimeError(f"worker {name} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {name}: {result['seconds']:.1f} s (CPU {result['cpu_seconds']:.1f} s)", flush=True)
    return result


def table(results, names):
    lines = [f"{'method':<26}{'time s':>8}{'CPU s':>8}{'peak MB':>9}{'+ above data':>14}"
             + "".join(f"{n:>12}" for n in names)]
    for method, r in results.items():
        values = "".join(f"{r['metrics'][n]:>12.5f}" for n in names)
        lines.append(f"{method:<26}{r['seconds']:>8.1f}{r['cpu_seconds']:>8.1f}{r['peak_mb']:>9.0f}"
                     f"{r['peak_mb'] - r['baseline_mb']:>14.0f}{values}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=60502)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=11316)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--sklearn", action="store_true", help="also time scikit-learn's brute force")
    parser.add_argument("--skip-nmi", action="store_true")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    points, labels = clustered_embeddings(args.n, args.dim, args.classes)
    print(f"{args.n} × {args.dim} embeddings, {args.classes} classes, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        data_path = os.path.join(tmp, "data.npz")
        np.savez(data_path, points=points, labels=labels)
        retrieval = {"tfdml (exact)": launch("tfdml", data_path, args),
                     "faiss IndexFlatL2 + numpy": launch("faiss", data_path, args)}
        if args.sklearn:
            retrieval["sklearn brute + numpy"] = launch("sklearn", data_path, args)
        exactness = launch("exactness", data_path, args)["metrics"]
        clustering = {}
        if not args.skip_nmi:
            clustering = {"tfdml k-means": launch("nmi_tfdml", data_path, args),
                          "faiss Kmeans(niter=20)": launch("nmi_faiss", data_path, args)}
    print(f"\nRetrieval: Recall@{list(KS)} + MAP@R (load average now {os.getloadavg()[0]:.1f})")
    print(table(retrieval, METRICS))
    tfdml_result, faiss_result = retrieval["tfdml (exact)"], retrieval["faiss IndexFlatL2 + numpy"]
    gap = max(abs(tfdml_result["metrics"][n] - faiss_result["metrics"][n]) for n in METRICS)
    print(f"tfdml / faiss: wall time {tfdml_result['seconds'] / faiss_result['seconds']:.2f}, CPU time "
          f"{tfdml_result['cpu_seconds'] / faiss_result['cpu_seconds']:.2f}; largest metric "
          f"difference {gap:.2e}; tfdml vs float64 brute force on {exactness['checked']} queries: "
          f"{exactness['mismatches']} mismatches")
    if clustering:
        print(f"\nClustering: NMI, k = {args.classes}")
        print(table(clustering, ["nmi"]))


if __name__ == "__main__":
    main()
