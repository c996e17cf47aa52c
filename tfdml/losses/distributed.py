"""Global-batch mining under `tf.distribute`.

When a loss is called in a replica context with more than one replica (e.g. inside
`model.fit` under `MirroredStrategy`), the embeddings and labels of all replicas
are all-gathered first, so a 4-replica run with global batch 128 mines exactly like
a single device with batch 128.

Gradient bookkeeping: every replica then computes the same global loss L. The
gradient of `ReplicaContext.all_gather` all-reduces (sums) the upstream gradients of
all replicas and returns the local slice, so replica r receives R · ∂ℓ/∂x_r for a
returned value ℓ. Following the Keras convention for per-replica losses
(`scale_loss_for_distribution`), the loss returns ℓ = L / R: each replica then gets
exactly ∂L/∂x_r, the optimizer's cross-replica sum gives ∂L/∂θ — identical to one
device with the global batch (tests/test_training.py) — and Keras' loss tracker,
which multiplies by R again, reports L.
"""
import tensorflow as tf


def replica_count():
    """Number of replicas in sync when called in a replica context, else 1."""
    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context: no gathering
        return 1
    return context.num_replicas_in_sync


def gather_across_replicas(labels, embeddings):
    """All-gathers `labels` and `embeddings` along the batch axis across replicas.

    Returns:
        (labels, embeddings, num_replicas): the global batch (replica order) and the
        number of replicas gathered (1 when nothing was done).
    """
    replicas = replica_count()
    if replicas <= 1:
        return labels, embeddings, 1
    context = tf.distribute.get_replica_context()
    # tf.identity places inputs that come straight from a distributed iterator: without it
    # MultiWorkerMirroredStrategy's all_gather fails with "destinations can not be empty".
    gathered_labels = context.all_gather(tf.identity(labels), axis=0)
    gathered = context.all_gather(tf.identity(embeddings), axis=0)
    # all_gather loses the static shape (None, None); the embedding width is known and
    # needed (e.g. by distance-weighted sampling).
    gathered = tf.ensure_shape(gathered, [None, *embeddings.shape[1:]])
    gathered_labels = tf.ensure_shape(gathered_labels, [None, *labels.shape[1:]])
    return gathered_labels, gathered, replicas


def scale_for_replicas(loss):
    """Divides `loss` by the number of replicas of the current strategy (Keras rule)."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas > 1:
        loss = loss / tf.cast(replicas, loss.dtype)
    return loss
