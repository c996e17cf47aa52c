"""Clustering quality of embeddings: NMI and pairwise F1 of k-means (k = #classes)."""
import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from tfdml.metrics.validation import check_embeddings_and_labels

# Above this many point×cluster products, k-means switches to MiniBatchKMeans.
_FULL_KMEANS_LIMIT = 2e8


def kmeans_assignments(embeddings, num_clusters, seed=0):
    """Cluster ids from k-means (scikit-learn; MiniBatchKMeans for very large N·k)."""
    if embeddings.shape[0] * num_clusters > _FULL_KMEANS_LIMIT:
        model = MiniBatchKMeans(n_clusters=num_clusters, random_state=seed, n_init=3, batch_size=4096)
    else:
        model = KMeans(n_clusters=num_clusters, random_state=seed, n_init=3)
    return model.fit_predict(embeddings)


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


def clustering_metrics(embeddings, labels, metrics=("nmi", "f1"), seed=0):
    """NMI and/or F1 of k-means with k = number of classes.

    Returns:
        dict with the requested keys among "nmi", "f1". With a single class both
        are 1.0 by convention of scikit-learn's NMI (and F1 of one cluster).
    """
    embeddings, labels = check_embeddings_and_labels(embeddings, labels)
    num_classes = len(np.unique(labels))
    clusters = kmeans_assignments(embeddings, min(num_classes, embeddings.shape[0]), seed)
    result = {}
    if "nmi" in metrics:
        result["nmi"] = float(normalized_mutual_info_score(labels, clusters))
    if "f1" in metrics:
        result["f1"] = float(pairwise_f1(labels, clusters))
    return result


def nmi(embeddings, labels, seed=0):
    """NMI between labels and k-means clusters (k = number of classes)."""
    return clustering_metrics(embeddings, labels, ("nmi",), seed)["nmi"]
