"""Clustering quality of embeddings: NMI and pairwise F1 of k-means (k = #classes).

k-means is `tfdml.metrics.kmeans.kmeans` (TensorFlow Lloyd iterations; its
docstring states the initialisation and stopping rule and how they differ from
scikit-learn's `KMeans`). NMI is scikit-learn's `normalized_mutual_info_score`
(arithmetic normalisation).
"""
import numpy as np
from sklearn.metrics import normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from tfdml.metrics.kmeans import kmeans
from tfdml.metrics.validation import check_embeddings_and_labels


def kmeans_assignments(embeddings, num_clusters, seed=0, progress=None):
    """Cluster ids (N,) from `tfdml.metrics.kmeans.kmeans`."""
    return kmeans(embeddings, num_clusters, seed=seed, progress=progress)[0]


def pairwise_f1(labels, clusters):
    """F1 of pairwise clustering decisions (Song et al. 2017; Sohn 2016).

    A pair of samples is a true positive when it shares both class and cluster;
    precision = TP / (#pairs in the same cluster), recall = TP / (#pairs of the
    same class). Counted from the contingency table, O(#classes × #clusters).
    """
    def pairs(n):
        return n * (n - 1) / 2.0

    table = contingency_matrix(labels, clusters, sparse=True)
    tp = pairs(table.data.astype(np.float64)).sum()
    same_cluster = pairs(np.asarray(table.sum(axis=0)).ravel().astype(np.float64)).sum()
    same_class = pairs(np.asarray(table.sum(axis=1)).ravel().astype(np.float64)).sum()
    precision = tp / same_cluster if same_cluster else 0.0
    recall = tp / same_class if same_class else 0.0
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def clustering_metrics(embeddings, labels, metrics=("nmi", "f1"), seed=0, progress=None):
    """NMI and/or F1 of k-means with k = number of classes.

    Returns:
        dict with the requested keys among "nmi", "f1". With a single class both
        are 1.0 by convention of scikit-learn's NMI (and F1 of one cluster).
    """
    embeddings, labels = check_embeddings_and_labels(embeddings, labels)
    num_classes = len(np.unique(labels))
    clusters = kmeans_assignments(embeddings, min(num_classes, embeddings.shape[0]), seed, progress)
    result = {}
    if "nmi" in metrics:
        result["nmi"] = float(normalized_mutual_info_score(labels, clusters))
    if "f1" in metrics:
        result["f1"] = float(pairwise_f1(labels, clusters))
    return result


def nmi(embeddings, labels, seed=0):
    """NMI between labels and k-means clusters (k = number of classes)."""
    return clustering_metrics(embeddings, labels, ("nmi",), seed)["nmi"]
