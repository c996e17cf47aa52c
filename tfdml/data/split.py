"""`Split`: one split (train or test) of an image-retrieval dataset."""
import os
import re

import numpy as np
import tensorflow as tf

_DECODE_HINT = ("it is corrupt, truncated or not a JPEG/PNG/GIF/BMP/WebP image. Delete or replace it (or drop it "
                "from the dataset's listing) and run again")


class Split:
    """Images and labels of one split.

    Images live either in memory (`images`: an array, or a list of encoded image
    bytes) or on disk (`paths`). Labels are remapped to 0-based contiguous class
    ids within the split.

    In-memory arrays are stored as uint8 (N, H, W, C) with any channel count C:

    - (N, H, W) arrays (no channel axis) get one: (N, H, W, 1).
    - uint8 arrays are kept; other integer arrays must lie in [0, 255].
    - float (or other) arrays need `value_range`: (0, 1) or (0, 255) (any
      (low, high)), mapped linearly to [0, 255] and rounded. Values outside the
      range or non-finite values are an error — nothing is clipped silently.

    Encoded bytes and files are decoded to `channels` channels (3: RGB,
    1: gray); a file that cannot be decoded stops the pipeline with an error
    naming it.

    Args:
        name: dataset name, e.g. "digits".
        labels: (N,) original integer class ids.
        images: array (N, H, W[, C]) or list of encoded PNG/JPEG/GIF/BMP bytes.
        paths: list of image file paths (alternative to `images`).
        class_names: optional names of the classes, in 0-based id order.
        value_range: (low, high) pixel range of a non-uint8 `images` array.
        channels: channels to decode encoded images / files to (1 or 3).
    """

    def __init__(self, name, labels, images=None, paths=None, class_names=None, value_range=None, channels=3):
        if (images is None) == (paths is None):
            raise ValueError("Split needs exactly one of images or paths.")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (gray) or 3 (RGB), got {channels!r}.")
        labels = np.asarray(labels)
        classes, remapped = np.unique(labels, return_inverse=True)
        self.name = name
        self.labels = remapped.astype(np.int32)
        self.original_labels = classes
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in classes]
        self.skipped = []  # [(path, reason)] of files the loader left out (see `tfdml.data.load_split`)
        if isinstance(images, np.ndarray):
            images = to_uint8_images(images, value_range)
        elif value_range is not None:
            raise ValueError("value_range applies to an images array only.")
        self._images = images
        self._paths = list(paths) if paths is not None else None
        self._channels = int(images.shape[-1]) if isinstance(images, np.ndarray) else channels
        n = len(images) if images is not None else len(self._paths)
        if n != len(self.labels):
            raise ValueError(f"{n} images but {len(self.labels)} labels in split {name!r}.")

    @property
    def num_images(self):
        """Number of images."""
        return int(len(self.labels))

    @property
    def num_classes(self):
        """Number of classes."""
        return int(len(self.original_labels))

    @property
    def channels(self):
        """Channels of the loaded images."""
        return self._channels

    @property
    def image_shape(self):
        """(H, W, C) for in-memory arrays, None for variable-size images."""
        if isinstance(self._images, np.ndarray):
            return tuple(self._images.shape[1:])
        return None

    def image_loader(self):
        """A function index (int tensor) → uint8 image (H, W, C), usable in `tf.data.map`.

        Encoded images and files are decoded in a `tf.py_function` so that a file
        that cannot be read or decoded raises an error naming it (TensorFlow's
        own decode error names no file).
        """
        if isinstance(self._images, np.ndarray):
            table = tf.constant(self._images, dtype=tf.uint8)
            return lambda index: tf.gather(table, index)
        channels = self._channels
        if self._images is not None:
            encoded = tf.constant(list(self._images), dtype=tf.string)
            name = self.name

            def decode_encoded(index, data):
                return decode_or_explain(data, channels, f"#{int(index)} (encoded) of split {name!r}")

            return lambda index: _in_graph(decode_encoded, [index, tf.gather(encoded, index)], channels)
        paths = tf.constant(self._paths, dtype=tf.string)
        return lambda index: _in_graph(read_and_decode, [tf.gather(paths, index), channels], channels)

    def image_dataset(self):
        """Unbatched dataset of `(uint8 image, int32 label)` in index order."""
        load = self.image_loader()
        labels = tf.constant(self.labels)
        return tf.data.Dataset.range(self.num_images).map(
            lambda i: (load(i), tf.gather(labels, i)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    @property
    def paths(self):
        """The image file paths (None for in-memory images)."""
        return list(self._paths) if self._paths is not None else None

    def subset(self, indices, name=None):
        """A `Split` of the images at `indices` (their original labels and class names kept).

        Args:
            indices: int positions (or a boolean mask) of the images to keep.
            name: the new split's name (default: this split's).

        Returns:
            A `Split`; its labels are remapped to 0-based ids of the kept classes.
        """
        indices = np.asarray(indices)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        kept_classes = np.unique(self.labels[indices])
        images = None
        if isinstance(self._images, np.ndarray):
            images = self._images[indices]
        elif self._images is not None:
            images = [self._images[i] for i in indices]
        paths = [self._paths[i] for i in indices] if self._paths is not None else None
        return Split(name or self.name, self.original_labels[self.labels[indices]], images=images, paths=paths,
                     class_names=[self.class_names[c] for c in kept_classes], channels=self._channels)

    def __repr__(self):
        return f"Split({self.name!r}, images={self.num_images}, classes={self.num_classes})"


def to_uint8_images(images, value_range=None):
    """An image array as uint8 (N, H, W, C) — see `Split` for the rules."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"images must be an array (N, H, W) or (N, H, W, C), got shape {images.shape}.")
    if images.dtype == np.uint8 and value_range is None:
        return images
    if value_range is None:
        if np.issubdtype(images.dtype, np.integer) and images.size and images.min() >= 0 and images.max() <= 255:
            return images.astype(np.uint8)
        raise ValueError(
            f"images has dtype {images.dtype} (values {_value_summary(images)}); give value_range=(0, 1) or "
            "(0, 255) (the range the pixel values lie in) to map them to uint8 [0, 255], or pass uint8 images.")
    low, high = (float(v) for v in value_range)
    if not high > low:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range!r}.")
    values = images.astype(np.float64)
    if not np.all(np.isfinite(values)) or values.min() < low or values.max() > high:
        raise ValueError(f"images has values {_value_summary(images)} outside value_range={tuple(value_range)} "
                         "(or non-finite values).")
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _value_summary(images):
    if not images.size:
        return "(empty)"
    values = images.astype(np.float64)
    return f"in [{np.nanmin(values):g}, {np.nanmax(values):g}]"


_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
               (b"BM", "BMP"), (b"RIFF", "WebP"), (b"\xff\x0a", "JPEG XL"), (b"\x00\x00\x00\x0cJXL ", "JPEG XL"))
_TAIL_BYTES = 4096


def image_file_problem(path):
    """Why the image file at `path` cannot be decoded, from its header and its end, or None when it looks whole.

    Reads at most a few kilobytes: the format signature (JPEG, PNG, GIF, BMP,
    WebP, JPEG XL) and the end marker or declared size (a truncated file misses
    it). A file that passes can still hold corrupt data in between.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            head = handle.read(32)
            handle.seek(max(size - _TAIL_BYTES, 0))
            tail = handle.read()
    except FileNotFoundError:
        return "file not found"
    except OSError as error:
        return f"cannot read ({error.strerror or error})"
    if size == 0:
        return "empty file"
    kind = next((name for signature, name in _SIGNATURES if head.startswith(signature)), None)
    if kind is None:
        return "not a JPEG/PNG/GIF/BMP/WebP image (unknown header)"
    if kind == "JPEG" and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if kind == "PNG" and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk)"
    if kind == "GIF" and b";" not in tail[-64:]:
        return "truncated GIF (no trailer)"
    if kind == "BMP" and (len(head) < 6 or int.from_bytes(head[2:6], "little") > size):
        return "truncated BMP (shorter than its declared size)"
    if kind == "WebP":
        if head[8:12] != b"WEBP":
            return "not a JPEG/PNG/GIF/BMP/WebP image (RIFF, not WebP)"
        if int.from_bytes(head[4:8], "little") + 8 > size:
            return "truncated WebP (shorter than its declared size)"
    return None


def find_unreadable_images(paths, workers=8):
    """[(path, problem)] of the files among `paths` that `image_file_problem` rejects, in `paths` order."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = list(pool.map(image_file_problem, paths, chunksize=256))
    return [(path, problem) for path, problem in zip(paths, problems) if problem is not None]


def decode_or_explain(data, channels, source):
    """Eagerly decodes encoded image bytes to uint8 (H, W, channels).

    Raises:
        ValueError: naming `source` and what to do, when the data is not a
            decodable JPEG/PNG/GIF/BMP image.
    """
    try:
        return tf.io.decode_image(data, channels=channels, expand_animations=False)
    except tf.errors.InvalidArgumentError as error:
        reason = re.sub(r"\{\{.*?\}\}|\[Op:.*", "", error.message).strip()
        raise ValueError(f"Cannot decode image {source}: {_DECODE_HINT}. (TensorFlow: {reason})") from None


def read_and_decode(path, channels):
    """Eagerly reads and decodes one image file; errors name the file (see `decode_or_explain`)."""
    path = path.numpy().decode() if hasattr(path, "numpy") else str(path)
    try:
        data = tf.io.read_file(path)
    except tf.errors.NotFoundError:
        raise FileNotFoundError(f"Image file not found: {path!r} (listed in the dataset but missing).") from None
    return decode_or_explain(data, int(channels), repr(path))


def _in_graph(function, args, channels):
    image = tf.py_function(function, args, tf.uint8)
    image.set_shape([None, None, channels])
    return image
