"""One entry point for all metrics, and embedding a dataset with a model."""
import weakref

import numpy as np
import tensorflow as tf

from tfdml.metrics.clustering import clustering_metrics
from tfdml.metrics.progress import Progress
from tfdml.metrics.retrieval import RETRIEVAL_METRICS, retrieval_metrics
from tfdml.metrics.structure import class_separation, spectral_decay
from tfdml.metrics.validation import check_embeddings_and_labels

METRIC_NAMES = ("recall", "nmi", "f1", "map@r", "r_precision", "map@1000", "map_c", "rho", "pi")
"""Metric names accepted by `evaluate_embeddings(metrics=)`."""


def _check_metric_names(metrics):
    if metrics is None:
        return METRIC_NAMES
    if isinstance(metrics, str):
        metrics = (metrics,)
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"Unknown metrics {unknown}; valid names: {', '.join(METRIC_NAMES)}.")
    return tuple(metrics)


def evaluate_embeddings(embeddings, labels, ks=(1, 2, 4, 8), metrics=None, reference_embeddings=None,
                        reference_labels=None, chunk_size=1024, seed=0, verbose=None):
    """Retrieval, clustering and structure metrics of embeddings.

    Args:
        embeddings: (N, D) query embeddings (used as they are; normalise first if
            your model does).
        labels: (N,) integer labels.
        ks: K values of Recall@K.
        metrics: names from `METRIC_NAMES` ("recall" gives every `recall@K`, "pi"
            gives `pi_intra`, `pi_inter`, `pi_ratio`); None = all.
        reference_embeddings: evaluate the queries against a separate
            reference set (retrieval metrics only; clustering and structure
            use the queries).
        reference_labels: labels of `reference_embeddings`.
        chunk_size: queries per nearest-neighbour block.
        seed: k-means seed.
        verbose: progress lines for the neighbour search and the clustering
            (None: only when stderr is a terminal).

    Returns:
        dict with keys `recall@K`, `nmi`, `f1`, `map@r`, `r_precision`,
        `map@1000`, `map_c`, `rho`, `pi_intra`, `pi_inter`, `pi_ratio` (those
        requested).
    """
    metrics = _check_metric_names(metrics)
    embeddings, labels = check_embeddings_and_labels(embeddings, labels)
    if (reference_embeddings is None) != (reference_labels is None):
        raise ValueError("reference_embeddings and reference_labels must be given together.")
    result = {}
    retrieval = [m for m in metrics if m in RETRIEVAL_METRICS]
    if retrieval:
        with Progress("neighbour search", verbose=verbose) as progress:
            result.update(retrieval_metrics(embeddings, labels, ks, retrieval, reference_embeddings,
                                            reference_labels, chunk_size, progress=progress))
    clustering = [m for m in metrics if m in ("nmi", "f1")]
    if clustering:
        with Progress("k-means iterations", verbose=verbose) as progress:
            result.update(clustering_metrics(embeddings, labels, clustering, seed, progress))
    if "rho" in metrics:
        result["rho"] = spectral_decay(embeddings)
    if "pi" in metrics:
        result.update(class_separation(embeddings, labels))
    return result


_COMPILED = weakref.WeakKeyDictionary()


_TAP_EMBEDDERS = weakref.WeakKeyDictionary()


def tap_embedder(model, tap):
    """`model.embedder(tap)` of a `tfdml.models.EmbeddingModel`, built once per model and tap, so every
    evaluation of that tap reuses one embedder (and its compiled function)."""
    embedders = _TAP_EMBEDDERS.setdefault(model, {})
    if tap not in embedders:
        embedders[tap] = model.embedder(tap)
    return embedders[tap]


def _compiled(embedder, images):
    """A `tf.function` of `embedder(images, training=False)` for batches like `images` (any batch size).

    Cached per Keras model and image spec (dtype, shape without the batch axis), so
    each embedder is traced once — not again for a smaller last batch, and not
    again at every evaluation (repeated tracing is slow and makes TensorFlow warn).
    """
    if not hasattr(embedder, "trainable_variables"):  # e.g. a SavedModel signature: already a graph
        return embedder
    spec = tf.TensorSpec((None,) + tuple(images.shape[1:]), images.dtype)
    functions = _COMPILED.setdefault(embedder, {})
    key = (spec.dtype.name, tuple(spec.shape.as_list()))
    if key not in functions:
        model = weakref.ref(embedder)  # the cache must not keep the model alive
        functions[key] = tf.function(lambda batch: model()(batch, training=False), input_signature=[spec])
    return functions[key]


def embed(embedder, dataset, steps=None, verbose=None):
    """Runs `embedder` over a dataset of `(images, labels)` batches, compiled with `tf.function`.

    Args:
        embedder: a Keras model (or any callable) mapping images to embeddings.
        dataset: finite iterable of `(images, labels)`.
        steps: optional maximum number of batches.
        verbose: progress line (None: only when stderr is a terminal).

    Returns:
        (embeddings float32 (N, D), labels int64 (N,)).
    """
    total = steps
    if total is None and isinstance(dataset, tf.data.Dataset):
        cardinality = int(dataset.cardinality())
        total = cardinality if cardinality >= 0 else None
    outputs, targets = [], []
    with Progress("embedding batches", total, verbose) as progress:
        for step, (images, labels) in enumerate(dataset):
            if steps is not None and step >= steps:
                break
            images = tf.convert_to_tensor(images)
            outputs.append(np.asarray(_compiled(embedder, images)(images)))
            targets.append(np.asarray(labels).reshape(-1))
            progress(step + 1)
    if not outputs:
        raise ValueError("dataset yielded no batches.")
    return np.concatenate(outputs).astype(np.float32), np.concatenate(targets).astype(np.int64)
