"""tf.data pipelines: sampled training batches and ordered evaluation batches."""
import numpy as np
import tensorflow as tf

from tfdml.data.augmentation import make_augmentation
from tfdml.data.samplers import batch_indices, check_sampler_arguments


def train_pipeline(split, batch_size=128, sampler="m_per_class", samples_per_class=32, augmentation="ee",
                   image_size=227, seed=0, relabel=None):
    """Infinite dataset of `(float32 images (B, S, S, C) in [0, 255], int32 labels (B,))`.

    Index batches come from `tfdml.data.samplers.batch_indices`; images are
    loaded and augmented per sample in parallel, then re-batched and prefetched.
    C is the split's channel count. Sample k is augmented with the stateless seed
    (seed, k), so a seed gives the same batches on every run.

    `relabel`: optional callable returning (N,) int labels that the batches
    carry instead of the class labels (sampling stays by class). It is called
    for every batch, so a callback may change the labels during training
    (Sharing Matters' group ids); batches already prefetched keep the old ones.
    """
    check_sampler_arguments(sampler, batch_size, samples_per_class, split.num_classes)

    def labelled_batches():
        for batch in batch_indices(split.labels, sampler, batch_size, samples_per_class, seed):
            labels = split.labels if relabel is None else np.asarray(relabel(), np.int32)
            yield batch, labels[batch]

    samples = tf.data.Dataset.from_generator(
        labelled_batches, output_signature=(tf.TensorSpec([batch_size], tf.int32),
                                            tf.TensorSpec([batch_size], tf.int32)))
    load = split.image_loader()
    augment = make_augmentation(augmentation, image_size, seed)
    return (samples.unbatch().enumerate()
            .map(lambda k, pair: (augment(load(pair[0]), tf.stack([tf.cast(seed, tf.int64), k])), pair[1]),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE))


def eval_pipeline(split, batch_size=128, image_size=227, augmentation="test"):
    """Finite dataset of `(images, labels)` batches in index order."""
    augment = make_augmentation(augmentation, image_size)
    return (split.image_dataset().enumerate()
            .map(lambda k, sample: (augment(sample[0], tf.stack([tf.constant(0, tf.int64), k])), sample[1]),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE))
