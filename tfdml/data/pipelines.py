"""tf.data pipelines: sampled training batches and ordered evaluation batches."""
import tensorflow as tf

from tfdml.data.augmentation import make_augmentation
from tfdml.data.samplers import batch_indices, check_sampler_arguments


def train_pipeline(split, batch_size=128, sampler="m_per_class", samples_per_class=32, augmentation="ee",
                   image_size=227, seed=0):
    """Infinite dataset of `(float32 images (B, S, S, C) in [0, 255], int32 labels (B,))`.

    Index batches come from `tfdml.data.samplers.batch_indices`; images are
    loaded and augmented per sample in parallel, then re-batched and prefetched.
    C is the split's channel count. Sample k is augmented with the stateless seed
    (seed, k), so a seed gives the same batches on every run.
    """
    check_sampler_arguments(sampler, batch_size, samples_per_class, split.num_classes)
    labels = tf.constant(split.labels)
    indices = tf.data.Dataset.from_generator(
        lambda: batch_indices(split.labels, sampler, batch_size, samples_per_class, seed),
        output_signature=tf.TensorSpec([batch_size], tf.int32))
    load = split.image_loader()
    augment = make_augmentation(augmentation, image_size, seed)
    return (indices.unbatch().enumerate()
            .map(lambda k, i: (augment(load(i), tf.stack([tf.cast(seed, tf.int64), k])), tf.gather(labels, i)),
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
