"""tf.data pipelines: sampled training batches and ordered evaluation batches."""
import tensorflow as tf

from tfdml.data.augmentation import make_augmentation
from tfdml.data.samplers import index_batch_source


def train_pipeline(split, batch_size=128, sampler="m_per_class", samples_per_class=32, augmentation="ee",
                   image_size=227, seed=0, with_indices=False):
    """Infinite dataset of `(float32 images (B, S, S, 3) in [0, 255], int32 labels (B,))`.

    Index batches come from `tfdml.data.samplers.batch_indices` (`sampler` a name)
    or from a sampler object such as `tfdml.data.EmbeddedSampler`; images are
    loaded and augmented per sample in parallel, then re-batched and prefetched.
    With `with_indices=True` batches are `(images, labels, int32 indices (B,))`,
    each image's index in the split (for `tfdml.data.MemoryBank`; plain
    `model.fit` would take the third element for sample weights).
    """
    batches = index_batch_source(split.labels, sampler, batch_size, samples_per_class, seed)
    labels = tf.constant(split.labels)
    indices = tf.data.Dataset.from_generator(batches, output_signature=tf.TensorSpec([batch_size], tf.int32))
    load = split.image_loader()
    augment = make_augmentation(augmentation, image_size, seed)
    return (indices.unbatch()
            .map(lambda i: (augment(load(i)), tf.gather(labels, i)) + ((i,) if with_indices else ()),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE))


def eval_pipeline(split, batch_size=128, image_size=227, augmentation="test"):
    """Finite dataset of `(images, labels)` batches in index order."""
    augment = make_augmentation(augmentation, image_size)
    return (split.image_dataset()
            .map(lambda image, label: (augment(image), label), num_parallel_calls=tf.data.AUTOTUNE,
                 deterministic=True)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE))
