"""`Index`: exact nearest-neighbour retrieval over embeddings, with labels and ids, saved beside a model."""
import json
import os
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfdml import distances
from tfdml.retrieval import ann, search

BACKENDS = ("tf", "faiss")
"""Candidate-search backends of `Index`: TensorFlow blocks (`"tf"`) or faiss (`"faiss"`); both re-rank exactly."""
_FORMAT = 1


class SearchResults(NamedTuple):
    """Per query, nearest first: `ids`, `labels` (None without labels), Euclidean `distances` (float32)
    and `indices` (rows of the index)."""

    ids: np.ndarray
    labels: object
    distances: np.ndarray
    indices: np.ndarray


def _faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError("backend='faiss' needs the faiss package: pip install 'tfdml[faiss]' "
                          "(or use backend='tf').") from error
    return faiss


def _check_embeddings(embeddings, name, dim=None):
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] == 0 or (dim is not None and embeddings.shape[1] != dim):
        raise ValueError(f"{name} must be a non-empty (n, {dim or 'd'}) array, got shape {embeddings.shape}.")
    if not np.isfinite(embeddings).all():
        raise ValueError(f"{name} contain NaN or infinite values.")
    return embeddings


def _check_labels(labels, n):
    if labels is None:
        return None
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != n or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be {n} integers, got {labels.shape[0]} of dtype {labels.dtype}.")
    return labels.astype(np.int64)


def _check_ids(ids, n):
    ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids).reshape(-1)
    if ids.shape[0] != n:
        raise ValueError(f"ids must have {n} entries, got {ids.shape[0]}.")
    return ids.astype(np.int64) if np.issubdtype(ids.dtype, np.integer) else ids.astype(str)


class Index:
    """k-nearest-neighbour search over embeddings: exact, or approximate with faiss.

    With `kind="exact"` results equal an exact float64 brute force on the stored
    float32 embeddings (ties by the lower row), also for embeddings squeezed
    close together: float32 matmul candidates are re-ranked with exact distances
    and certified (`tfdml.retrieval.search`). The approximate kinds (faiss,
    `tfdml.retrieval.ann`) find candidates with "ivf_flat", "ivf_pq" or "hnsw"
    and return them by exact distance; they trade recall for speed and (IVF-PQ)
    memory. The float32 embeddings are kept in every kind: `search(exact=True)`
    and exported SavedModels search them exactly. Queries can be embeddings or,
    when the index has an `embedder`, raw images.

    Args:
        embeddings: (N, D) reference embeddings.
        labels: optional (N,) integer labels returned with the results (the
            dataset's own labels: `from_split` maps a split's 0-based ids back).
        ids: optional (N,) ids (integers or strings; default: row numbers).
        embedder: optional Keras model mapping raw images to embeddings.
        normalize: L2-normalise query embeddings (from images or given) before
            searching; set it when the stored embeddings were normalised after
            the embedder.
        backend: "tf" (chunked matmul + top-k in TensorFlow; GPU-ready, the
            code inside exported SavedModels) or "faiss" (candidates from a
            `faiss.IndexFlatL2`, then the same exact re-ranking; needs faiss).
        block_size: references per matmul block.
        margin: extra candidates re-ranked exactly per query.
        kind: "exact", "ivf_flat", "ivf_pq" or "hnsw" (the last three need faiss).
        nlist: IVF lists (default 4·√N, at most N / 39).
        nprobe: IVF lists searched per query (default max(8, nlist / 16), at most nlist).
        m: IVF-PQ sub-quantizers, dividing D (default: the largest divisor ≤ D / 4).
        nbits: IVF-PQ bits per code (default 8; fewer when N < 256).
        refine: IVF-PQ candidates per result re-ranked with exact distances (default 4).
        train_size: embeddings sampled to train IVF/PQ (default max(64·nlist, 256·2^nbits), at most N).
        hnsw_m: HNSW neighbours per node (default 32).
        ef_construction: HNSW build breadth (default 40).
        ef_search: HNSW search breadth (default 128).
        train_embeddings: optional sample to train IVF/PQ on instead of `train_size` random rows.
        seed: seed of the training sample and k-means.
        verbose: progress lines while training and adding (None: only on a terminal).
        class_names: optional {label: class name} (`names` reads it).
    """

    def __init__(self, embeddings, labels=None, ids=None, embedder=None, normalize=False, backend="tf",
                 block_size=8192, margin=16, kind="exact", nlist=None, nprobe=None, m=None, nbits=None,
                 refine=None, train_size=None, hnsw_m=None, ef_construction=None, ef_search=None,
                 train_embeddings=None, seed=0, verbose=None, class_names=None):
        embeddings = _check_embeddings(embeddings, "embeddings")
        n = embeddings.shape[0]
        labels = _check_labels(labels, n)
        ids = _check_ids(ids, n)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
        if kind not in ann.KINDS:
            raise ValueError(f"kind must be one of {ann.KINDS}, got {kind!r}.")
        if backend == "faiss":
            _faiss()
        self.embeddings, self.labels, self.ids = embeddings, labels, ids
        self.embedder, self.normalize, self.backend = embedder, bool(normalize), backend
        self.block_size, self.margin = int(block_size), int(margin)
        self._searcher = None
        self._faiss_index = None
        self.class_names = {int(label): str(name) for label, name in dict(class_names or {}).items()}
        self.kind, self.params, self._ann = "exact", {}, None
        params = dict(nlist=nlist, nprobe=nprobe, m=m, nbits=nbits, refine=refine, train_size=train_size,
                      hnsw_m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search)
        given = sorted(key for key, value in params.items() if value is not None)
        if kind == "exact":
            if given or train_embeddings is not None:
                raise ValueError(f"{given or ['train_embeddings']} apply to the approximate kinds "
                                 f"{ann.ANN_KINDS}, not to kind='exact'.")
        else:
            self._setup_ann(kind, ann.resolve_params(kind, n, self.dim, params), seed=seed, verbose=verbose,
                            train_embeddings=train_embeddings)

    def _setup_ann(self, kind, params, prebuilt=None, seed=0, verbose=None, train_embeddings=None):
        """Builds (or takes `prebuilt`) the faiss index of an approximate `kind`."""
        self.kind, self.params = kind, dict(params)
        if prebuilt is None:
            prebuilt = ann.build(kind, self.embeddings, self.params, seed=seed, verbose=verbose,
                                 train_embeddings=train_embeddings)
        elif prebuilt.ntotal != len(self) or prebuilt.d != self.dim:
            raise ValueError(f"The faiss index holds {prebuilt.ntotal} vectors of dimension {prebuilt.d}, the "
                             f"index {len(self)} of dimension {self.dim}: the saved index is corrupt.")
        ann.set_search_params(prebuilt, kind, self.params)
        self._ann = prebuilt

    @property
    def searcher(self):
        """The exact `tfdml.retrieval.Searcher` over the embeddings (built on first use; exported models use it)."""
        if self._searcher is None:
            self._searcher = search.Searcher(self.embeddings, self.block_size, self.margin)
        return self._searcher

    def set_search_params(self, nprobe=None, ef_search=None):
        """Changes the search-time parameters of an approximate index (`nprobe` for IVF, `ef_search` for HNSW)."""
        changes = {key: value for key, value in (("nprobe", nprobe), ("ef_search", ef_search)) if value is not None}
        if self._ann is None and changes:
            raise ValueError(f"{sorted(changes)} apply to the approximate kinds {ann.ANN_KINDS}, not to "
                             "kind='exact'.")
        params = ann.resolve_params(self.kind, len(self), self.dim, {**self.params, **changes})
        self.params.update({key: params[key] for key in changes})
        ann.set_search_params(self._ann, self.kind, self.params)

    def memory_bytes(self):
        """Bytes of the search structure: the float32 embeddings for "exact", the faiss index otherwise."""
        return self.embeddings.nbytes if self._ann is None else ann.index_bytes(self._ann)

    def add(self, embeddings, labels=None, ids=None, verbose=None):
        """Appends entries; approximate kinds add them to their trained index (no retraining).

        Args:
            embeddings: (n, D) embeddings.
            labels: (n,) integer labels; required when the index has labels, refused otherwise.
            ids: (n,) ids; default: continues the row numbers (required when the ids are strings).
            verbose: progress line while adding (None: only on a terminal).
        """
        embeddings = _check_embeddings(embeddings, "embeddings", self.dim)
        n = embeddings.shape[0]
        if (labels is None) != (self.labels is None):
            raise ValueError("labels must be given exactly when the index has labels "
                             f"(it has {'none' if self.labels is None else 'labels'}).")
        labels = _check_labels(labels, n)
        if ids is None:
            if not np.issubdtype(self.ids.dtype, np.integer):
                raise ValueError("ids must be given: the index has string ids.")
            ids = np.arange(len(self), len(self) + n, dtype=np.int64)
        ids = _check_ids(ids, n)
        if np.issubdtype(ids.dtype, np.integer) != np.issubdtype(self.ids.dtype, np.integer):
            raise ValueError(f"ids must be {'integers' if np.issubdtype(self.ids.dtype, np.integer) else 'strings'} "
                             f"like the index's, got {ids.dtype}.")
        self.embeddings = np.concatenate([self.embeddings, embeddings])
        self.ids = np.concatenate([self.ids, ids])
        if labels is not None:
            self.labels = np.concatenate([self.labels, labels])
        self._searcher, self._faiss_index = None, None
        if self._ann is not None:
            ann.add(self._ann, embeddings, verbose, self.kind)
        return self

    @classmethod
    def from_dataset(cls, embedder, dataset, ids=None, verbose=None, **kwargs):
        """Embeds a dataset of `(images, labels)` batches with `embedder` and indexes the result.

        The labels are stored as the dataset yields them; a `tfdml.data` pipeline
        of a split yields the split's 0-based class ids — `from_split` stores the
        dataset's own labels and class names instead.

        Args:
            embedder: Keras model mapping raw images to embeddings (kept for image queries).
            dataset: finite dataset of `(images, labels)` batches.
            ids: optional ids, one per image in dataset order.
            verbose: progress line while embedding (None: only on a terminal).
            **kwargs: other `Index` arguments.
        """
        from tfdml.metrics.evaluate import embed

        embeddings, labels = embed(embedder, dataset, verbose=verbose)
        return cls(embeddings, labels, ids, embedder=embedder, **kwargs)

    @classmethod
    def from_split(cls, embedder, split, batch_size=256, image_size=None, augmentation="test", ids=None,
                   verbose=None, **kwargs):
        """Embeds a `tfdml.data.Split` and indexes it with the dataset's own labels and class names.

        A split numbers its classes 0, 1, … internally; the index stores
        `split.original_labels` (e.g. digits 5–9, CUB classes 101–200) and
        `split.class_names`, so search results name the dataset's classes.

        Args:
            embedder: Keras model mapping raw images to embeddings.
            split: the gallery split.
            batch_size: images per embedding batch.
            image_size: side the images are resized to (default: the embedder's input size).
            augmentation: test-time preprocessing name (`tfdml.data.eval_pipeline`).
            ids: optional ids (default: the split's file paths, else row numbers).
            verbose: progress line while embedding (None: only on a terminal).
            **kwargs: other `Index` arguments.
        """
        from tfdml.data import eval_pipeline

        size = image_size or int(embedder.inputs[0].shape[1])
        index = cls.from_dataset(embedder, eval_pipeline(split, batch_size, size, augmentation),
                                 ids=ids if ids is not None else split.paths, verbose=verbose, **kwargs)
        index.labels = np.asarray(split.original_labels)[index.labels].astype(np.int64)
        index.class_names = {int(label): str(name) for label, name in zip(split.original_labels, split.class_names)}
        return index

    def names(self, labels):
        """The class names of `labels` (any shape; a label without a name gives its number as text)."""
        labels = np.asarray(labels)
        return np.vectorize(lambda label: self.class_names.get(int(label), str(int(label))), otypes=[object])(
            labels) if labels.size else labels.astype(object)

    def __len__(self):
        return self.embeddings.shape[0]

    @property
    def dim(self):
        """Embedding size (D)."""
        return self.embeddings.shape[1]

    def embed_queries(self, queries, batch_size=256):
        """Query embeddings (float32) from embeddings, raw images or a dataset of images."""
        if isinstance(queries, tf.data.Dataset) or np.ndim(queries) >= 3:
            if self.embedder is None:
                raise ValueError("This index has no embedder: pass query embeddings of shape (n, "
                                 f"{self.dim}), or build it with an embedder to search with images.")
            from tfdml.metrics.evaluate import embed

            if not isinstance(queries, tf.data.Dataset):
                queries = tf.data.Dataset.from_tensor_slices(np.asarray(queries)).batch(batch_size)
            queries = queries.map(lambda x, *_: (x, tf.zeros([tf.shape(x)[0]], tf.int64)))
            queries, _ = embed(self.embedder, queries, verbose=False)
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"query embeddings must have shape (n, {self.dim}), got {queries.shape}.")
        if not np.isfinite(queries).all():
            raise ValueError("query embeddings contain NaN or infinite values.")
        if self.normalize:
            queries = distances.l2_normalize(queries).numpy()
        return queries

    def search(self, queries, k=5, batch_size=1024, exact=False):
        """The k nearest entries of each query: exact, or approximate for the approximate kinds.

        Args:
            queries: (Q, D) embeddings, (Q, H, W, C) raw images or a dataset of
                image batches (images need an embedder).
            k: results per query (clipped to the index size).
            batch_size: queries per search call.
            exact: search exactly even when the index is approximate.

        Returns:
            `SearchResults` of (Q, k) arrays; distances are exact for the entries
            found. An approximate search that finds fewer than k entries for a
            query (e.g. too few IVF lists probed) fills the rest with index -1,
            id -1 (or ""), label -1 and distance +inf.
        """
        queries = self.embed_queries(queries)
        if self._ann is not None and not exact:
            k = max(0, min(int(k), len(self)))
            parts = [ann.search(self._ann, self.kind, self.params, self.embeddings,
                                queries[start:start + batch_size], k)
                     for start in range(0, len(queries), batch_size)] if k else []
            squared = np.concatenate([p[0] for p in parts]) if parts else np.zeros((len(queries), k))
            idx = np.concatenate([p[1] for p in parts]) if parts else np.zeros((len(queries), k), np.int64)
        elif self.backend == "faiss":
            squared, idx = self._faiss_search(queries, k, batch_size)
        else:
            squared, idx = self.searcher(queries, k, chunk_size=batch_size)
        found = idx >= 0
        safe = np.where(found, idx, 0)
        ids = np.where(found, self.ids[safe], np.array(-1 if np.issubdtype(self.ids.dtype, np.integer) else "",
                                                        self.ids.dtype))
        labels = None if self.labels is None else np.where(found, self.labels[safe], -1)
        return SearchResults(ids, labels, np.sqrt(squared).astype(np.float32), idx)

    def _faiss_search(self, queries, k, batch_size):
        references = self.searcher.references
        k, count = search.candidate_count(references, k, self.margin, False)
        if self._faiss_index is None:
            faiss = _faiss()
            self._faiss_index = faiss.IndexFlatL2(self.dim)
            self._faiss_index.add(references.centred.numpy()[:len(self)])
            self._rerank = {}
        if k not in self._rerank:
            spec = [tf.TensorSpec([None, self.dim], tf.float32), tf.TensorSpec([None, count], tf.float32),
                    tf.TensorSpec([None, count], tf.int64)]
            self._rerank[k] = tf.function(lambda q, est, idx: search.rerank(
                q, references, est, idx, k, search.query_bounds(q, references)[2], self.block_size),
                input_signature=spec)
        parts = []
        for start in range(0, len(queries), batch_size):
            chunk = queries[start:start + batch_size]
            centred = (chunk - references.mean.numpy()[None, :]).astype(np.float32)
            estimates, idx = self._faiss_index.search(centred, count)
            parts.append([t.numpy() for t in self._rerank[k](tf.constant(chunk), tf.constant(estimates),
                                                             tf.constant(idx))])
        if not parts:
            return np.zeros((0, k)), np.zeros((0, k), np.int64)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def save(self, directory):
        """Writes `index.npz`, `index.json`, (approximate kinds) `index.faiss` (readable with
        `faiss.read_index`) and (with an embedder) `embedder.keras` into `directory`; returns `directory`."""
        os.makedirs(directory, exist_ok=True)
        arrays = {"embeddings": self.embeddings, "ids": self.ids}
        if self.labels is not None:
            arrays["labels"] = self.labels
        np.savez(os.path.join(directory, "index.npz"), **arrays)
        config = {"format": _FORMAT, "size": len(self), "dim": self.dim, "normalize": self.normalize,
                  "backend": self.backend, "block_size": self.block_size, "margin": self.margin,
                  "embedder": self.embedder is not None, "kind": self.kind, "params": self.params,
                  "class_names": [[label, name] for label, name in sorted(self.class_names.items())]}
        if self._ann is not None:
            ann.faiss_module(f"kind={self.kind!r}").write_index(self._ann, os.path.join(directory, "index.faiss"))
        with open(os.path.join(directory, "index.json"), "w") as handle:
            json.dump(config, handle, indent=2)
        if self.embedder is not None:
            self.embedder.save(os.path.join(directory, "embedder.keras"))
        return directory

    @classmethod
    def load(cls, directory, embedder=None, backend=None):
        """Loads an index written by `save` (its embedder and approximate faiss index too; `embedder` replaces
        the saved one, `backend` the exact search's backend)."""
        config_path, arrays_path = os.path.join(directory, "index.json"), os.path.join(directory, "index.npz")
        for path in (config_path, arrays_path):
            if not os.path.exists(path):
                raise FileNotFoundError(f"{path!r} not found: {directory!r} is not a directory written by "
                                        "tfdml.retrieval.Index.save.")
        try:
            with open(config_path) as handle:
                config = json.load(handle)
            with np.load(arrays_path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except Exception as error:  # truncated or corrupt files
            raise ValueError(f"The index in {directory!r} is corrupt or truncated ({error}); rebuild it and "
                             "save it again with Index.save.") from error
        if arrays["embeddings"].shape != (config["size"], config["dim"]):
            raise ValueError(f"{arrays_path!r} holds embeddings of shape {arrays['embeddings'].shape}, "
                             f"index.json says ({config['size']}, {config['dim']}): the index is corrupt.")
        if embedder is None and config.get("embedder"):
            from tfdml.models.export import load_keras_model

            embedder = load_keras_model(os.path.join(directory, "embedder.keras"))
        index = cls(arrays["embeddings"], arrays.get("labels"), arrays["ids"], embedder=embedder,
                    normalize=config["normalize"], backend=backend or config["backend"],
                    block_size=config["block_size"], margin=config["margin"],
                    class_names={label: name for label, name in config.get("class_names", [])})
        kind = config.get("kind", "exact")
        if kind != "exact":
            faiss_path = os.path.join(directory, "index.faiss")
            if not os.path.exists(faiss_path):
                raise FileNotFoundError(f"{faiss_path!r} not found: index.json says kind={kind!r}; save the index "
                                        "again with Index.save.")
            try:
                prebuilt = ann.faiss_module(f"kind={kind!r}").read_index(faiss_path)
            except RuntimeError as error:
                raise ValueError(f"{faiss_path!r} is corrupt or truncated ({error}); save the index again.") from error
            index._setup_ann(kind, config["params"], prebuilt=prebuilt)
        return index
