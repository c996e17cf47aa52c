"""scikit-learn's bundled handwritten digits as an image-retrieval dataset."""
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits

from tfdml.data.split import Split

DEFAULT_TRAIN_CLASSES = (0, 1, 2, 3, 4)


def digits_split(split, image_size=32, train_classes=DEFAULT_TRAIN_CLASSES, channels=3):
    """The 1,797 8×8 digits as uint8 images (gray repeated to RGB by default), split by class.

    Args:
        split: "train" (classes in `train_classes`) or "test" (the others).
        image_size: side of the upsampled square images (bilinear).
        train_classes: digit classes of the training split.
        channels: 3 (gray repeated to RGB) or 1 (gray).

    Returns:
        A `Split` with in-memory uint8 images (N, image_size, image_size, channels).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}.")
    bunch = load_digits()
    images = (bunch.images / 16.0 * 255.0).astype(np.float32)[..., None]
    images = tf.image.resize(images, (image_size, image_size), method="bilinear").numpy()
    images = np.repeat(np.clip(np.round(images), 0, 255).astype(np.uint8), channels, axis=-1)
    in_train = np.isin(bunch.target, np.asarray(train_classes))
    keep = in_train if split == "train" else ~in_train
    return Split("digits", bunch.target[keep], images=images[keep],
                 class_names=[str(c) for c in np.unique(bunch.target[keep])])
