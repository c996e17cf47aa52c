"""Evaluation metrics for embeddings: retrieval, clustering, space structure.

Retrieval metrics and nearest neighbours are exact (equal to a float64 brute
force on the embeddings) and computed in blocks with `tfdml.retrieval`; memory
is O(chunk × block) plus the candidates, never N×N.
"""
from tfdml.metrics.callbacks import MeasuredCSVLogger, MeasuredProgbarLogger, RetrievalEvaluation
from tfdml.metrics.clustering import clustering_metrics, nmi, pairwise_f1
from tfdml.metrics.evaluate import METRIC_NAMES, embed, evaluate_embeddings
from tfdml.metrics.neighbors import iter_nearest_neighbors, nearest_neighbors
from tfdml.metrics.retrieval import recall_at_k, retrieval_metrics
from tfdml.metrics.structure import class_separation, singular_values, spectral_decay
from tfdml.metrics.table import format_table

__all__ = [
    "MeasuredCSVLogger",
    "MeasuredProgbarLogger",
    "RetrievalEvaluation",
    "METRIC_NAMES",
    "class_separation",
    "clustering_metrics",
    "embed",
    "evaluate_embeddings",
    "format_table",
    "iter_nearest_neighbors",
    "nearest_neighbors",
    "nmi",
    "pairwise_f1",
    "recall_at_k",
    "retrieval_metrics",
    "singular_values",
    "spectral_decay",
]
