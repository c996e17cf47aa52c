"""Approximate nearest-neighbour indexes from faiss behind `tfdml.retrieval.Index(kind=...)`.

- "ivf_flat": `faiss.IndexIVFFlat` (inverted lists over a k-means coarse quantizer, full vectors);
- "ivf_pq": `faiss.IndexIVFPQ` (the same lists, vectors compressed by product quantization to
  `m` codes of `nbits` bits; candidates are re-ranked with exact distances);
- "hnsw": `faiss.IndexHNSWFlat` (a hierarchical navigable small-world graph, full vectors).

IVF quantizers (and PQ codebooks) are trained by k-means on a random sample of the embeddings.
"""
import math

import numpy as np

from tfdml.metrics.progress import Progress

KINDS = ("exact", "ivf_flat", "ivf_pq", "hnsw")
"""Index kinds: exact search, and faiss's IVF-Flat, IVF-PQ and HNSW approximate indexes."""
ANN_KINDS = KINDS[1:]
# parameter: (kinds it applies to, check, meaning) — validated in `resolve_params`
_PARAMS = {
    "nlist": (("ivf_flat", "ivf_pq"), "an integer >= 1 and <= the number of training embeddings"),
    "nprobe": (("ivf_flat", "ivf_pq"), "an integer >= 1 and <= nlist"),
    "m": (("ivf_pq",), "an integer >= 1 dividing the embedding dimension"),
    "nbits": (("ivf_pq",), "an integer in 1..16"),
    "refine": (("ivf_pq",), "an integer >= 1 (candidates re-ranked exactly per result)"),
    "train_size": (("ivf_flat", "ivf_pq"), "an integer >= 1 (embeddings sampled to train the quantizers)"),
    "hnsw_m": (("hnsw",), "an integer >= 2 (graph neighbours per node)"),
    "ef_construction": (("hnsw",), "an integer >= 1"),
    "ef_search": (("hnsw",), "an integer >= 1"),
}


def faiss_module(what="backend='faiss'"):
    """The faiss module, or an ImportError saying how to install it."""
    try:
        import faiss
    except ImportError as error:
        raise ImportError(f"{what} needs the faiss package: pip install 'tfdml[faiss]'.") from error
    return faiss


def _default_m(dim):
    """The largest divisor of `dim` that is at most dim / 4 (4 dimensions per code), at least 1."""
    return max([m for m in range(1, dim // 4 + 1) if dim % m == 0], default=1)


def resolve_params(kind, n, dim, params):
    """Validated parameters of `kind` with defaults filled in; errors name the argument.

    Args:
        kind: one of `ANN_KINDS`.
        n: number of embeddings the index is built from.
        dim: embedding dimension.
        params: dict of the given parameters (None values: default).

    Returns:
        dict of every parameter of `kind`.
    """
    given = {key: value for key, value in params.items() if value is not None}
    unknown = sorted(set(given) - set(_PARAMS))
    if unknown:
        raise ValueError(f"Unknown index parameters {unknown}; valid: {sorted(_PARAMS)}.")
    wrong = sorted(key for key in given if kind not in _PARAMS[key][0])
    if wrong:
        raise ValueError(f"Index parameters {wrong} do not apply to kind={kind!r} (they apply to "
                         f"{ {key: _PARAMS[key][0] for key in wrong} }).")
    for key, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{key} must be {_PARAMS[key][1]}, got {value!r}.")
    resolved = {}
    if kind in ("ivf_flat", "ivf_pq"):
        nlist = int(given.get("nlist", max(1, min(n // 39, int(4 * math.sqrt(n))))))
        if nlist < 1:
            raise ValueError(f"nlist must be {_PARAMS['nlist'][1]}, got {nlist}.")
        # 8-bit codes, fewer when N is too small to train 2**8 centroids per sub-quantizer
        default_nbits = max(1, min(8, int(math.log2(max(n, 2)))))
        given_nbits = given.get("nbits", default_nbits) if kind == "ivf_pq" else 0
        default_train = min(n, max(64 * nlist, 256 * 2 ** min(int(given_nbits), 12) if kind == "ivf_pq" else 0))
        resolved["train_size"] = int(given.get("train_size", default_train))
        if resolved["train_size"] < 1:
            raise ValueError(f"train_size must be {_PARAMS['train_size'][1]}, got {resolved['train_size']}.")
        resolved["train_size"] = min(resolved["train_size"], n)
        if not 1 <= nlist <= resolved["train_size"]:
            raise ValueError(f"nlist must be {_PARAMS['nlist'][1]} ({resolved['train_size']}), got {nlist}.")
        resolved["nlist"] = nlist
        nprobe = int(given.get("nprobe", min(nlist, max(8, nlist // 16))))
        if not 1 <= nprobe <= nlist:
            raise ValueError(f"nprobe must be {_PARAMS['nprobe'][1]} ({nlist}), got {nprobe}.")
        resolved["nprobe"] = nprobe
    if kind == "ivf_pq":
        m = int(given.get("m", _default_m(dim)))
        if m < 1 or dim % m:
            raise ValueError(f"m must be {_PARAMS['m'][1]} ({dim}), got {m}.")
        nbits = int(given.get("nbits", default_nbits))
        if not 1 <= nbits <= 16:
            raise ValueError(f"nbits must be {_PARAMS['nbits'][1]}, got {nbits}.")
        if resolved["train_size"] < 2 ** nbits:
            raise ValueError(f"nbits={nbits} needs at least {2 ** nbits} training embeddings (2**nbits "
                             f"centroids per sub-quantizer); train_size is {resolved['train_size']}: lower nbits.")
        refine = int(given.get("refine", 4))
        if refine < 1:
            raise ValueError(f"refine must be {_PARAMS['refine'][1]}, got {refine}.")
        resolved.update(m=m, nbits=nbits, refine=refine)
    if kind == "hnsw":
        for key, default, low in (("hnsw_m", 32, 2), ("ef_construction", 40, 1), ("ef_search", 128, 1)):
            value = int(given.get(key, default))
            if value < low:
                raise ValueError(f"{key} must be {_PARAMS[key][1]}, got {value}.")
            resolved[key] = value
    return resolved


def build(kind, embeddings, params, seed=0, verbose=None, train_embeddings=None, chunk=65536):
    """A trained faiss index of `kind` holding `embeddings` (rows in order), with progress lines.

    Args:
        kind: one of `ANN_KINDS`.
        embeddings: (N, D) float32 array.
        params: parameters from `resolve_params`.
        seed: seed of the training sample and of faiss' k-means.
        verbose: progress lines (None: only on a terminal).
        train_embeddings: optional (M, D) sample to train IVF/PQ on (default: `train_size` random rows).
        chunk: embeddings added per step.

    Returns:
        the faiss index.
    """
    faiss = faiss_module(f"kind={kind!r}")
    n, dim = embeddings.shape
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params["hnsw_m"])
        index.hnsw.efConstruction = params["ef_construction"]
    else:
        quantizer = faiss.IndexFlatL2(dim)
        if kind == "ivf_flat":
            index = faiss.IndexIVFFlat(quantizer, dim, params["nlist"])
        else:
            index = faiss.IndexIVFPQ(quantizer, dim, params["nlist"], params["m"], params["nbits"])
        index.cp.seed = seed
        if train_embeddings is None:
            rows = np.random.default_rng(seed).choice(n, size=params["train_size"], replace=False)
            train_embeddings = embeddings[np.sort(rows)]
        train_embeddings = np.ascontiguousarray(train_embeddings, dtype=np.float32)
        if train_embeddings.ndim != 2 or train_embeddings.shape[1] != dim:
            raise ValueError(f"train_embeddings must have shape (m, {dim}), got {train_embeddings.shape}.")
        if len(train_embeddings) < params["nlist"]:
            raise ValueError(f"train_embeddings has {len(train_embeddings)} rows, fewer than nlist="
                             f"{params['nlist']}.")
        with Progress(f"training {kind} on {len(train_embeddings)} embeddings", 1, verbose) as progress:
            index.train(train_embeddings)
            progress(1)
    set_search_params(index, kind, params)
    add(index, embeddings, verbose, kind, chunk)
    return index


def add(index, embeddings, verbose=None, kind="", chunk=65536):
    """Adds `embeddings` to the faiss `index` in chunks, with a progress line."""
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    with Progress(f"adding to {kind} index", len(embeddings), verbose) as progress:
        for start in range(0, len(embeddings), chunk):
            index.add(embeddings[start:start + chunk])
            progress(min(start + chunk, len(embeddings)))


def set_search_params(index, kind, params):
    """Applies the search-time parameters (nprobe, efSearch) to a faiss index."""
    if kind == "hnsw":
        index.hnsw.efSearch = params["ef_search"]
    else:
        index.nprobe = params["nprobe"]


def search(index, kind, params, embeddings, queries, k):
    """Approximate k nearest rows of each query, re-ranked by exact distance.

    Args:
        index: faiss index from `build`; kind, params: its kind and `resolve_params` parameters.
        embeddings: (N, D) float32 embeddings of the index rows (for the exact distances).
        queries: (Q, D) float32 queries; k: results per query (≤ N).

    Returns:
        (squared distances float64 (Q, k), indices int64 (Q, k)), nearest first, ties by the lower
        row; where the index found fewer than k rows (e.g. too few lists probed) the missing
        entries are index -1 with distance +inf.
    """
    count = k * params.get("refine", 1) if kind == "ivf_pq" else k
    _, idx = index.search(np.ascontiguousarray(queries, dtype=np.float32), count)
    idx = idx.astype(np.int64)
    missing = idx < 0
    rows = embeddings[np.where(missing, 0, idx)].astype(np.float64)
    squared = np.sum(np.square(rows - queries.astype(np.float64)[:, None, :]), axis=2)
    squared[missing] = np.inf
    order = np.lexsort((np.where(missing, np.iinfo(np.int64).max, idx), squared), axis=1)[:, :k]
    squared, idx = np.take_along_axis(squared, order, 1), np.take_along_axis(idx, order, 1)
    idx[~np.isfinite(squared)] = -1
    return squared, idx


def index_bytes(index):
    """Size of the faiss index when serialized (its memory footprint, up to small overheads)."""
    return int(faiss_module().serialize_index(index).size)
