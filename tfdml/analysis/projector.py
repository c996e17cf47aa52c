"""TensorBoard Embedding Projector files: embeddings per tap, metadata, sprite of thumbnails.

`write_projector` writes into a log directory what TensorBoard's projector plugin
reads (`tensorboard --logdir DIR`, "Projector" tab):

- `embeddings.ckpt-1.*` + `checkpoint`: a `tf.train.Checkpoint` with one variable
  per tap (tensor name `<tap>/.ATTRIBUTES/VARIABLE_VALUE`);
- `metadata.tsv`: one row per point — label, class name, split, file;
- `sprite.png`: the points' thumbnails, row by row (at most 8192 px a side);
- `projector_config.pbtxt`, written with `tensorboard.plugins.projector`.

`write_split_projector` samples a bounded set of images of a `tfdml.data.Split`,
embeds them with each tap and writes the files; `EmbeddingProjector` does that
every k epochs during `model.fit` (one sub-directory per epoch).
"""
import math
import os
import re

import keras
import numpy as np
import tensorflow as tf

MAX_SPRITE_SIDE = 8192
CHECKPOINT_PREFIX = "embeddings.ckpt"


def sample_indices(n, max_points, seed=0):
    """Sorted indices of at most `max_points` of `n` items, drawn uniformly without replacement."""
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}.")
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def sprite_thumbnail_size(count, thumbnail_size=64):
    """Side of the square thumbnails so that a sprite of `count` of them fits 8192 × 8192 px."""
    per_row = max(1, math.ceil(math.sqrt(count)))
    return max(1, min(int(thumbnail_size), MAX_SPRITE_SIDE // per_row))


def thumbnail(image, size):
    """uint8 (size, size, 3) thumbnail of a uint8 (H, W, C) image (area resize; gray becomes RGB)."""
    image = tf.convert_to_tensor(image)
    if image.shape[-1] == 1:
        image = tf.repeat(image, 3, axis=-1)
    resized = tf.image.resize(tf.cast(image, tf.float32), (size, size), method="area")
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8).numpy()


def make_sprite(thumbnails):
    """Tiles (N, s, s, 3) uint8 thumbnails row by row into one (rows·s, cols·s, 3) image (black padding)."""
    count, side = len(thumbnails), thumbnails.shape[1]
    per_row = max(1, math.ceil(math.sqrt(count)))
    rows = math.ceil(count / per_row)
    sprite = np.zeros((rows * side, per_row * side, 3), np.uint8)
    for i, tile in enumerate(thumbnails):
        r, c = divmod(i, per_row)
        sprite[r * side:(r + 1) * side, c * side:(c + 1) * side] = tile
    return sprite


def _variable_name(tap):
    return re.sub(r"[^A-Za-z0-9_]", "_", tap)


def _cell(value):
    return str(value).replace("\t", " ").replace("\n", " ")


def write_projector(log_dir, embeddings, labels, class_names=None, split="test", files=None, thumbnails=None):
    """Writes the projector files for already-chosen points.

    Args:
        log_dir: directory (created); TensorBoard shows it as a run of the projector.
        embeddings: {tap: (N, D) array} — the same N points for every tap.
        labels: (N,) integer labels (0-based class ids when `class_names` is given).
        class_names: optional class names indexed by label.
        split: split name written in the metadata.
        files: optional (N,) file names (or other identifiers) of the points.
        thumbnails: optional (N, s, s, 3) uint8 thumbnails for the sprite.

    Returns:
        path of `projector_config.pbtxt`.
    """
    from tensorboard.plugins import projector

    if not embeddings:
        raise ValueError("embeddings must hold at least one tap.")
    labels = np.asarray(labels).reshape(-1)
    n = len(labels)
    for tap, values in embeddings.items():
        if np.ndim(values) != 2 or len(values) != n:
            raise ValueError(f"embeddings[{tap!r}] must have shape ({n}, D) like labels, got {np.shape(values)}.")
    names = {_variable_name(tap): tap for tap in embeddings}
    if len(names) != len(embeddings):
        raise ValueError(f"Tap names {list(embeddings)} collide as checkpoint variable names.")
    for name, count in (("files", None if files is None else len(files)),
                        ("thumbnails", None if thumbnails is None else len(thumbnails))):
        if count is not None and count != n:
            raise ValueError(f"{name} must have {n} entries like labels, got {count}.")
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, "metadata.tsv"), "w") as handle:
        handle.write("label\tclass\tsplit\tfile\n")
        for i, label in enumerate(labels):
            name = class_names[int(label)] if class_names is not None else label
            handle.write("\t".join(_cell(v) for v in (label, name, split, "" if files is None else files[i])) + "\n")
    variables = {name: tf.Variable(np.asarray(embeddings[tap], np.float32), trainable=False)
                 for name, tap in names.items()}
    tf.train.Checkpoint(**variables).write(os.path.join(log_dir, f"{CHECKPOINT_PREFIX}-1"))
    with open(os.path.join(log_dir, "checkpoint"), "w") as handle:
        handle.write(f'model_checkpoint_path: "{CHECKPOINT_PREFIX}-1"\n'
                     f'all_model_checkpoint_paths: "{CHECKPOINT_PREFIX}-1"\n')
    config = projector.ProjectorConfig()
    config.model_checkpoint_path = f"{CHECKPOINT_PREFIX}-1"
    if thumbnails is not None:
        thumbnails = np.asarray(thumbnails, np.uint8)
        keras.utils.save_img(os.path.join(log_dir, "sprite.png"), make_sprite(thumbnails), scale=False)
    for name, tap in names.items():
        embedding = config.embeddings.add()
        embedding.tensor_name = f"{name}/.ATTRIBUTES/VARIABLE_VALUE"
        embedding.metadata_path = "metadata.tsv"
        if thumbnails is not None:
            embedding.sprite.image_path = "sprite.png"
            embedding.sprite.single_image_dim.extend([thumbnails.shape[2], thumbnails.shape[1]])
    projector.visualize_embeddings(log_dir, config)
    return os.path.join(log_dir, "projector_config.pbtxt")


def split_sample(split, max_points=1000, seed=0, thumbnail_size=64):
    """(indices, thumbnails, files) of a bounded uniform sample of a `tfdml.data.Split`."""
    indices = sample_indices(split.num_images, max_points, seed)
    load = split.image_loader()
    size = sprite_thumbnail_size(len(indices), thumbnail_size)
    thumbnails = np.stack([thumbnail(load(tf.constant(int(i), tf.int64)), size) for i in indices])
    paths = getattr(split, "_paths", None)
    files = [os.path.basename(paths[i]) if paths is not None else f"#{i}" for i in indices]
    return indices, thumbnails, files


def sample_pipeline(split, indices, image_size, batch_size=256, augmentation="test"):
    """Dataset of `(images, labels)` batches of `split`'s images `indices`, preprocessed as in evaluation."""
    from tfdml.data.augmentation import make_augmentation

    augment = make_augmentation(augmentation, image_size)
    load, labels = split.image_loader(), tf.constant(split.labels)
    return (tf.data.Dataset.from_tensor_slices(np.asarray(indices, np.int64))
            .map(lambda k: (augment(load(k), tf.stack([tf.constant(0, tf.int64), k])), tf.gather(labels, k)))
            .batch(batch_size))


def write_split_projector(log_dir, embedders, split, image_size, max_points=1000, seed=0, batch_size=256,
                          thumbnail_size=64, augmentation="test", sample=None, verbose=False):
    """Embeds a bounded sample of `split` with each embedder and writes the projector files.

    Args:
        log_dir: output directory.
        embedders: {tap: Keras model mapping images to embeddings}.
        split: `tfdml.data.Split`.
        image_size: evaluation input size.
        max_points: at most this many images (uniform sample, `seed`).
        batch_size: images per embedding batch.
        thumbnail_size: largest sprite tile side (smaller when needed to fit 8192 px).
        augmentation: test-time preprocessing name.
        sample: optional `split_sample` result to reuse.
        verbose: progress lines while embedding.

    Returns:
        path of `projector_config.pbtxt`.
    """
    from tfdml.metrics.evaluate import embed

    indices, thumbnails, files = sample or split_sample(split, max_points, seed, thumbnail_size)
    data = sample_pipeline(split, indices, image_size, batch_size, augmentation)
    embeddings = {}
    for tap, embedder in embedders.items():
        embeddings[tap], labels = embed(embedder, data, verbose=verbose)
    return write_projector(log_dir, embeddings, labels, split.class_names, split.name, files, thumbnails)


class EmbeddingProjector(keras.callbacks.Callback):
    """Writes Embedding Projector files every `every` epochs (and after the last) during `model.fit`.

    Each time into `<log_dir>/epoch_<NNNN>` (a run of TensorBoard's projector),
    for the same fixed sample of at most `max_points` images of `split`.

    Args:
        split: `tfdml.data.Split` (usually the test split).
        log_dir: parent directory, e.g. `<run>/tensorboard/projector`.
        image_size: evaluation input size.
        every: epochs between writes.
        taps: tap names of a `tfdml.models.EmbeddingModel` (None: the model itself, as "embedding").
        max_points: sample size bound.
        seed: sample seed.
        augmentation: test-time preprocessing name.
    """

    def __init__(self, split, log_dir, image_size, every=1, taps=None, max_points=1000, seed=0,
                 augmentation="test", batch_size=256):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}.")
        self.split, self.log_dir, self.image_size = split, log_dir, int(image_size)
        self.every, self.taps, self.max_points, self.seed = int(every), taps, int(max_points), seed
        self.augmentation, self.batch_size = augmentation, batch_size
        self._sample = None
        sample_indices(1, self.max_points)  # validates max_points

    def write(self, epoch):
        """Writes the files for `epoch` (0-based) now; returns the config path."""
        from tfdml.metrics.evaluate import tap_embedder

        if self._sample is None:
            self._sample = split_sample(self.split, self.max_points, self.seed)
        embedders = ({tap: tap_embedder(self.model, tap) for tap in self.taps} if self.taps
                     else {"embedding": self.model})
        return write_split_projector(os.path.join(self.log_dir, f"epoch_{epoch + 1:04d}"), embedders, self.split,
                                     self.image_size, batch_size=self.batch_size, augmentation=self.augmentation,
                                     sample=self._sample)

    def on_epoch_end(self, epoch, logs=None):
        """Writes the projector files every `every` epochs and after the last (Keras callback)."""
        last = (self.params or {}).get("epochs")
        if (epoch + 1) % self.every == 0 or (last is not None and epoch + 1 == last):
            self.write(epoch)
