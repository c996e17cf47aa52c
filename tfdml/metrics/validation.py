"""Input checks shared by the metrics."""
import numpy as np


def check_embeddings_and_labels(embeddings, labels, embeddings_name="embeddings", labels_name="labels"):
    """Converts to (float32 (N, D), int64 (N,)) arrays or raises a `ValueError` naming the argument."""
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2:
        raise ValueError(f"{embeddings_name} must have shape (n, d), got {embeddings.shape}.")
    if not np.issubdtype(embeddings.dtype, np.floating):
        embeddings = embeddings.astype(np.float32)
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"{labels_name} must have shape (n,), got {labels.shape}.")
    if labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"{labels_name} has {labels.shape[0]} entries but {embeddings_name} has "
            f"{embeddings.shape[0]} rows."
        )
    if not (np.issubdtype(labels.dtype, np.integer)
            or (np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels)))):
        raise ValueError(f"{labels_name} must be integer class ids, got dtype {labels.dtype}.")
    if embeddings.shape[0] == 0:
        raise ValueError(f"{embeddings_name} is empty.")
    finite = np.isfinite(embeddings).all(axis=1)
    if not finite.all():
        rows = np.flatnonzero(~finite)
        raise ValueError(f"{embeddings_name} contain NaN or infinite values in {len(rows)} rows "
                         f"(first: {rows[:5].tolist()}).")
    return embeddings.astype(np.float32, copy=False), labels.astype(np.int64)
