"""Approximate retrieval against exact search: recall@10, queries per second, memory, build time.

Builds N synthetic clustered embeddings (Gaussian clusters around random centres,
128-d by default) and a separate set of queries from the same clusters, then for
each kind of `tfdml.retrieval.Index` — "exact" (TensorFlow blocks, the exported
SavedModel's search), "ivf_flat", "ivf_pq", "hnsw" (faiss) with their default
parameters unless given — measures:

- build time (exact: preparing the references; IVF/PQ: training on the default sample;
  adding every embedding);
- search throughput in queries per second (all queries, `--batch-size` per call);
- recall@k: the fraction of the exact k nearest that the kind returns;
- memory: bytes of the search structure (`Index.memory_bytes`: the float32
  embeddings for exact search, the faiss index for the others).

Prints a Markdown table. On a real machine use the default N = 1,000,000.
`--embeddings FILE.npy` replaces the synthetic data by stored (N, D) embeddings (e.g. a
trained model's, see `benchmarks/ann_trained.py`): `--queries` rows drawn at random (seed 0)
are the queries, the rest the gallery.

Usage: python benchmarks/ann.py [--n 1000000] [--dim 128] [--clusters 1000] [--queries 1000]
       [--k 10] [--kinds exact,ivf_flat,ivf_pq,hnsw] [--threads T] [--set kind.param=value ...]
       [--embeddings FILE.npy]
"""
import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfdml.retrieval import Index  # noqa: E402


def clustered(n, dim, clusters, seed, spread=0.5):
    """`n` points around `clusters` random unit-scale centres (chunked generation: 1 M × 128 is 0.5 GB)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(12345).normal(size=(clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        size = min(100_000, n - start)
        out[start:start + size] = centres[rng.integers(0, clusters, size)] + spread * rng.normal(size=(size, dim))
    return out


def split_stored(path, num_queries):
    """(gallery, queries) from an (N, D) .npy file: `num_queries` random rows (seed 0) are the queries."""
    if not os.path.isfile(path):
        raise SystemExit(f"error: --embeddings {path!r}: no such file.")
    embeddings = np.load(path).astype(np.float32)
    if embeddings.ndim != 2 or len(embeddings) <= num_queries:
        raise SystemExit(f"error: --embeddings {path!r}: expected an (N, D) array with N > --queries "
                         f"({num_queries}), got shape {embeddings.shape}.")
    order = np.random.default_rng(0).permutation(len(embeddings))
    return embeddings[order[num_queries:]], embeddings[order[:num_queries]]


def parse_params(texts, kinds):
    params = {kind: {} for kind in kinds}
    for text in texts:
        key, _, value = text.partition("=")
        kind, _, name = key.partition(".")
        if kind not in params or not name or not value:
            raise SystemExit(f"error: --set {text!r}: expected kind.param=value with kind in {kinds}.")
        params[kind][name] = int(value)
    return params


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="gallery size")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--kinds", default="exact,ivf_flat,ivf_pq,hnsw")
    parser.add_argument("--threads", type=int, default=None, help="faiss OpenMP threads (default: faiss')")
    parser.add_argument("--set", action="append", default=[], help="kind.param=value, e.g. ivf_pq.nprobe=32")
    parser.add_argument("--embeddings", default=None, help="(N, D) .npy file of embeddings instead of synthetic data")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    params = parse_params(args.set, kinds)
    if args.threads:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    if args.embeddings:
        gallery, queries = split_stored(args.embeddings, args.queries)
        source = f"{args.embeddings}: N = {len(gallery):,} × {gallery.shape[1]}-d"
    else:
        gallery = clustered(args.n, args.dim, args.clusters, seed=0)
        queries = clustered(args.queries, args.dim, args.clusters, seed=1)
        source = f"N = {args.n:,} × {args.dim}-d, {args.clusters} clusters"
    print(f"{source}, {len(queries)} queries, k = {args.k}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs", flush=True)
    truth = None
    rows = []
    for kind in ["exact"] + [kind for kind in kinds if kind != "exact"]:
        start = time.perf_counter()
        index = Index(gallery, kind=kind, verbose=True, **params.get(kind, {}))
        if kind == "exact":
            index.searcher  # noqa: B018  (prepares the references: the exact index's build)
        build = time.perf_counter() - start
        index.search(queries[:10], k=args.k, batch_size=args.batch_size)  # compile / warm up
        start = time.perf_counter()
        found = index.search(queries, k=args.k, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        if truth is None:
            truth = found.indices
        recall = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(found.indices, truth)])
        if kind in kinds:
            rows.append((kind, index.params, recall, args.queries / seconds, index.memory_bytes(), build))
            print(f"{kind}: recall@{args.k} {recall:.4f}, {args.queries / seconds:,.0f} q/s, "
                  f"{index.memory_bytes() / 2 ** 20:.1f} MiB, build {build:.1f} s", flush=True)
        del index
    print(f"\n| kind | parameters | recall@{args.k} | queries/s | memory (MiB) | build (s) |")
    print("|---|---|---|---|---|---|")
    for kind, used, recall, qps, memory, build in rows:
        text = ", ".join(f"{key}={value}" for key, value in used.items()) or "–"
        print(f"| {kind} | {text} | {recall:.4f} | {qps:,.0f} | {memory / 2 ** 20:.1f} | {build:.1f} |")


if __name__ == "__main__":
    main()
