"""One entry point for all metrics, and embedding a dataset with a model."""
import numpy as np

from tfdml.metrics.clustering import clustering_metrics
from tfdml.metrics.retrieval import RETRIEVAL_METRICS, retrieval_metrics
from tfdml.metrics.structure import class_separation, spectral_decay
from tfdml.metrics.validation import check_embeddings_and_labels

METRIC_NAMES = ("recall", "nmi", "f1", "map@r", "r_precision", "map@1000", "map_c", "rho", "pi")


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
                        reference_labels=None, chunk_size=1024, seed=0):
    """Retrieval, clustering and structure metrics of embeddings.

    Args:
        embeddings: (N, D) query embeddings (used as they are; normalise first if
            your model does).
        labels: (N,) integer labels.
        ks: K values of Recall@K.
        metrics: names from `METRIC_NAMES` ("recall" gives every `recall@K`, "pi"
            gives `pi_intra`, `pi_inter`, `pi_ratio`); None = all.
        reference_embeddings, reference_labels: evaluate the queries against a
            separate reference set (retrieval metrics only; clustering and
            structure use the queries).
        chunk_size: queries per nearest-neighbour chunk.
        seed: k-means seed.

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
        result.update(retrieval_metrics(embeddings, labels, ks, retrieval, reference_embeddings,
                                        reference_labels, chunk_size))
    clustering = [m for m in metrics if m in ("nmi", "f1")]
    if clustering:
        result.update(clustering_metrics(embeddings, labels, clustering, seed))
    if "rho" in metrics:
        result["rho"] = spectral_decay(embeddings)
    if "pi" in metrics:
        result.update(class_separation(embeddings, labels))
    return result


def embed(embedder, dataset, steps=None):
    """Runs `embedder` over a dataset of `(images, labels)` batches.

    Args:
        embedder: a callable model mapping images to embeddings.
        dataset: finite iterable of `(images, labels)`.
        steps: optional maximum number of batches.

    Returns:
        (embeddings float32 (N, D), labels int64 (N,)).
    """
    outputs, targets = [], []
    for step, (images, labels) in enumerate(dataset):
        if steps is not None and step >= steps:
            break
        outputs.append(np.asarray(embedder(images, training=False)))
        targets.append(np.asarray(labels).reshape(-1))
    if not outputs:
        raise ValueError("dataset yielded no batches.")
    return np.concatenate(outputs).astype(np.float32), np.concatenate(targets).astype(np.int64)
