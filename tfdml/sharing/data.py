"""Training data of Sharing Matters: pairs of class-sampled batches (B, B*) per iteration."""
import tensorflow as tf


def paired_batches(batches, shared_batches):
    """Zips two datasets of `(images, labels)` into `((images, labels), (shared_images, shared_labels))`.

    The element layout that `tfdml.sharing.SharingObjective` trains on
    (Algorithm 1: B and B* per iteration).
    """
    return tf.data.Dataset.zip((batches, shared_batches))


def paired_train_pipeline(split, batch_size=112, sampler="m_per_class", samples_per_class=4, augmentation="roth",
                          image_size=224, seed=0, shared_labels=None):
    """Two independent class-sampled `tfdml.data.train_pipeline`s as pairs (B, B*).

    B uses `seed`, B* uses `seed + 1` (different classes, images and
    augmentations). Both sample by class.

    Args:
        split: as `tfdml.data.train_pipeline`.
        batch_size: as `tfdml.data.train_pipeline`.
        sampler: as `tfdml.data.train_pipeline`.
        samples_per_class: as `tfdml.data.train_pipeline`.
        augmentation: as `tfdml.data.train_pipeline`.
        image_size: as `tfdml.data.train_pipeline`.
        seed: seed of B (B* uses `seed + 1`).
        shared_labels: None (B* carries class labels: shared triplets T*) or a
            callable returning the (N,) labels B* carries instead, read for
            every batch (the grouping variant's `GroupAssignment`).

    Returns:
        An infinite dataset of `((images, labels), (shared_images, shared_labels))`.
    """
    from tfdml.data.pipelines import train_pipeline

    arguments = dict(batch_size=batch_size, sampler=sampler, samples_per_class=samples_per_class,
                     augmentation=augmentation, image_size=image_size)
    return paired_batches(train_pipeline(split, seed=seed, **arguments),
                          train_pipeline(split, seed=seed + 1, relabel=shared_labels, **arguments))

