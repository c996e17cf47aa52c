"""`Split`: one split (train or test) of an image-retrieval dataset."""
import numpy as np
import tensorflow as tf


class Split:
    """Images and labels of one split.

    Images live either in memory (`images`: uint8 array (N, H, W, 3), or a list of
    encoded image bytes) or on disk (`paths`). Labels are remapped to 0-based
    contiguous class ids within the split.

    Args:
        name: dataset name, e.g. "digits".
        labels: (N,) original integer class ids.
        images: uint8 array (N, H, W, 3) or list of encoded PNG/JPEG bytes.
        paths: list of image file paths (alternative to `images`).
        class_names: optional names of the classes, in 0-based id order.
    """

    def __init__(self, name, labels, images=None, paths=None, class_names=None):
        if (images is None) == (paths is None):
            raise ValueError("Split needs exactly one of images or paths.")
        labels = np.asarray(labels)
        classes, remapped = np.unique(labels, return_inverse=True)
        self.name = name
        self.labels = remapped.astype(np.int32)
        self.original_labels = classes
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in classes]
        self._images = images
        self._paths = list(paths) if paths is not None else None
        n = len(images) if images is not None else len(self._paths)
        if n != len(self.labels):
            raise ValueError(f"{n} images but {len(self.labels)} labels in split {name!r}.")

    @property
    def num_images(self):
        return int(len(self.labels))

    @property
    def num_classes(self):
        return int(len(self.original_labels))

    @property
    def image_shape(self):
        """(H, W, 3) for in-memory arrays, None for variable-size images."""
        if isinstance(self._images, np.ndarray):
            return tuple(self._images.shape[1:])
        return None

    def image_loader(self):
        """A function index (int tensor) → uint8 image (H, W, 3), usable in `tf.data.map`."""
        if isinstance(self._images, np.ndarray):
            table = tf.constant(self._images, dtype=tf.uint8)
            return lambda index: tf.gather(table, index)
        if self._images is not None:
            encoded = tf.constant(list(self._images), dtype=tf.string)
            return lambda index: _decode(tf.gather(encoded, index))
        paths = tf.constant(self._paths, dtype=tf.string)
        return lambda index: _decode(tf.io.read_file(tf.gather(paths, index)))

    def image_dataset(self):
        """Unbatched dataset of `(uint8 image, int32 label)` in index order."""
        load = self.image_loader()
        labels = tf.constant(self.labels)
        return tf.data.Dataset.range(self.num_images).map(
            lambda i: (load(i), tf.gather(labels, i)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def __repr__(self):
        return f"Split({self.name!r}, images={self.num_images}, classes={self.num_classes})"


def _decode(data):
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image
