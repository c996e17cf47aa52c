"""tf.data pipelines: sampled training batches and ordered evaluation batches."""
import itertools

import numpy as np
import tensorflow as tf

from tfdml.data.augmentation import make_augmentation
from tfdml.data.samplers import index_batch_source


def train_pipeline(split, batch_size=128, sampler="m_per_class", samples_per_class=32, augmentation="ee",
                   image_size=227, seed=0, skip_batches=0, replicas=None, with_indices=False, relabel=None):
    """Infinite dataset of `(float32 images (B, S, S, C) in [0, 255], int32 labels (B,))`.

    Index batches come from `tfdml.data.samplers.batch_indices` (`sampler` a name)
    or from a sampler object such as `tfdml.data.EmbeddedSampler`; images are
    loaded and augmented per sample in parallel, then re-batched and prefetched.
    C is the split's channel count. Each sample is augmented with the stateless
    seed (seed, position), `position` being its place in the stream one
    uninterrupted process reads: a seed gives the same batches on every run, for
    any number of workers and after a resume.

    Args:
        skip_batches: start after this many index batches of the sampler (a
            resumed run continues the same sequence of batches).
        replicas: None, or `(first, count, total)`: of every global index
            batch (`batch_size` = total · b), yield only the per-replica batches
            of replicas `first … first + count − 1`, each of b images, in
            replica order; replica r gets positions [r·b, (r+1)·b). This is one
            worker's share under `tf.distribute` (the all-gathered replica
            batches are exactly the one-process batch).
        with_indices: batches are `(images, labels, int32 indices (B,))`, each
            image's index in the split (for `tfdml.data.MemoryBank`; plain
            `model.fit` would take the third element for sample weights).
        relabel: optional callable returning (N,) int labels that the batches
            carry instead of the class labels (sampling stays by class). It is
            called for every batch, so a callback may change the labels during
            training (Sharing Matters' group ids); batches already prefetched
            keep the old ones.
    """
    source = index_batch_source(split.labels, sampler, batch_size, samples_per_class, seed)  # validates now
    first, count, total = _check_replicas(replicas, batch_size)
    per_replica = batch_size // total
    start, stop = first * per_replica, (first + count) * per_replica

    def samples():
        """(indices, positions, labels) of this share of each batch; positions count samples in the
        one-process stream."""
        for n, batch in enumerate(itertools.islice(source(), int(skip_batches), None), start=int(skip_batches)):
            labels = split.labels if relabel is None else np.asarray(relabel(), np.int32)
            share = batch[start:stop]
            yield share, np.arange(n * batch_size + start, n * batch_size + stop, dtype=np.int64), labels[share]

    spec = tf.TensorSpec([stop - start], tf.int32)
    indices = tf.data.Dataset.from_generator(
        samples, output_signature=(spec, tf.TensorSpec([stop - start], tf.int64), spec))
    load = split.image_loader()
    augment = make_augmentation(augmentation, image_size, seed)
    return (indices.unbatch()
            .map(lambda i, position, label: (augment(load(i), tf.stack([tf.cast(seed, tf.int64), position])),
                                             label) + ((i,) if with_indices else ()),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(per_replica, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE))


def _check_replicas(replicas, batch_size):
    """(first, count, total) from the `replicas` argument (None: the whole batch)."""
    if replicas is None:
        return 0, 1, 1
    first, count, total = (int(v) for v in replicas)
    if total < 1 or count < 1 or first < 0 or first + count > total:
        raise ValueError(f"replicas must be (first, count, total) with 0 <= first < first + count <= total, "
                         f"got {tuple(replicas)}.")
    if batch_size % total:
        raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of replicas ({total}).")
    return first, count, total


def eval_pipeline(split, batch_size=128, image_size=None, augmentation="test", model=None):
    """Finite dataset of `(images, labels)` batches in index order.

    Args:
        split: a `tfdml.data.Split`.
        batch_size: images per batch.
        image_size: output side S of the images; default: the input size of
            `model`.
        augmentation: a name from `tfdml.data.AUGMENTATIONS` ("test": resize
            and centre crop).
        model: a Keras model with square inputs, whose input size is the default
            `image_size`.

    Returns:
        `tf.data.Dataset` of (float32 images (B, S, S, C) in [0, 255], labels).

    Raises:
        ValueError: neither `image_size` nor a `model` with a fixed square
            input size is given.
    """
    if image_size is None:
        image_size = _model_image_size(model)
    augment = make_augmentation(augmentation, image_size)
    return (split.image_dataset().enumerate()
            .map(lambda k, sample: (augment(sample[0], tf.stack([tf.constant(0, tf.int64), k])), sample[1]),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE))


def _model_image_size(model):
    """The side of a model's square input images; a ValueError when there is none to follow."""
    shape = None if model is None else tuple(model.inputs[0].shape)
    if shape is None or len(shape) != 4 or shape[1] is None or shape[1] != shape[2]:
        found = "no model" if model is None else f"a model with input shape {shape}"
        raise ValueError(f"eval_pipeline needs image_size= (the model's input size) or model= with a fixed square "
                         f"input size; got {found}.")
    return int(shape[1])
