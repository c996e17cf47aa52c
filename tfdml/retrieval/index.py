"""`Index`: exact nearest-neighbour retrieval over embeddings, with labels and ids, saved beside a model."""
import json
import os
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfdml import distances
from tfdml.retrieval import search

BACKENDS = ("tf", "faiss")
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


class Index:
    """Exact k-nearest-neighbour search over a fixed set of embeddings.

    Results equal an exact float64 brute force on the stored float32 embeddings
    (ties by the lower row), also for embeddings squeezed close together:
    float32 matmul candidates are re-ranked with exact distances and certified
    (`tfdml.retrieval.search`). Queries can be embeddings or, when the index has
    an `embedder`, raw images.

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
        class_names: optional {label: class name} (`names` reads it).
    """

    def __init__(self, embeddings, labels=None, ids=None, embedder=None, normalize=False, backend="tf",
                 block_size=8192, margin=16, class_names=None):
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] == 0:
            raise ValueError(f"embeddings must be a non-empty (n, d) array, got shape {embeddings.shape}.")
        if not np.isfinite(embeddings).all():
            raise ValueError("embeddings contain NaN or infinite values.")
        n = embeddings.shape[0]
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            if labels.shape[0] != n or not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(f"labels must be {n} integers, got {labels.shape[0]} of dtype {labels.dtype}.")
            labels = labels.astype(np.int64)
        ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids).reshape(-1)
        if ids.shape[0] != n:
            raise ValueError(f"ids must have {n} entries, got {ids.shape[0]}.")
        ids = ids.astype(np.int64) if np.issubdtype(ids.dtype, np.integer) else ids.astype(str)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
        if backend == "faiss":
            _faiss()
        self.embeddings, self.labels, self.ids = embeddings, labels, ids
        self.embedder, self.normalize, self.backend = embedder, bool(normalize), backend
        self.block_size, self.margin = int(block_size), int(margin)
        self.searcher = search.Searcher(embeddings, self.block_size, self.margin)
        self._faiss_index = None
        self.class_names = {int(label): str(name) for label, name in dict(class_names or {}).items()}

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

    def search(self, queries, k=5, batch_size=1024):
        """Exact k nearest entries of each query.

        Args:
            queries: (Q, D) embeddings, (Q, H, W, C) raw images or a dataset of
                image batches (images need an embedder).
            k: results per query (clipped to the index size).
            batch_size: queries per search call.

        Returns:
            `SearchResults` of (Q, k) arrays.
        """
        queries = self.embed_queries(queries)
        if self.backend == "faiss":
            squared, idx = self._faiss_search(queries, k, batch_size)
        else:
            squared, idx = self.searcher(queries, k, chunk_size=batch_size)
        return SearchResults(self.ids[idx], None if self.labels is None else self.labels[idx],
                             np.sqrt(squared).astype(np.float32), idx)

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
        """Writes `index.npz`, `index.json` and (with an embedder) `embedder.keras` into `directory`."""
        os.makedirs(directory, exist_ok=True)
        arrays = {"embeddings": self.embeddings, "ids": self.ids}
        if self.labels is not None:
            arrays["labels"] = self.labels
        np.savez(os.path.join(directory, "index.npz"), **arrays)
        config = {"format": _FORMAT, "size": len(self), "dim": self.dim, "normalize": self.normalize,
                  "backend": self.backend, "block_size": self.block_size, "margin": self.margin,
                  "embedder": self.embedder is not None,
                  "class_names": [[label, name] for label, name in sorted(self.class_names.items())]}
        with open(os.path.join(directory, "index.json"), "w") as handle:
            json.dump(config, handle, indent=2)
        if self.embedder is not None:
            self.embedder.save(os.path.join(directory, "embedder.keras"))
        return directory

    @classmethod
    def load(cls, directory, embedder=None, backend=None):
        """Loads an index written by `save` (its embedder too, unless one is given)."""
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
        return cls(arrays["embeddings"], arrays.get("labels"), arrays["ids"], embedder=embedder,
                   normalize=config["normalize"], backend=backend or config["backend"],
                   block_size=config["block_size"], margin=config["margin"],
                   class_names={label: name for label, name in config.get("class_names", [])})
