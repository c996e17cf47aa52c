"""Image augmentation with Keras 3 core preprocessing layers and tf.image.

Output images are float32 in [0, 255]; pixel normalisation happens inside the
model. Sizes scale with `image_size` S (the papers use S = 227 or 224): the
resize side is R = round(S · 256 / 227) for the EE and test protocols.

- "ee" (EE official code): resize to R×R, random crop S×S, horizontal flip.
- "roth" (Roth et al.): random resized crop to S×S (scale [0.08, 1], aspect
  ratio [3/4, 4/3]), horizontal flip.
- "test": resize to R×R, centre crop S×S.
- "none": resize to S×S.
"""
import keras
import tensorflow as tf

AUGMENTATIONS = ("ee", "roth", "test", "none")


def resize_side(image_size):
    return int(round(image_size * 256 / 227))


class RandomResizedCrop:
    """Random-area, random-aspect crop resized to `size` (Inception-style), per image."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), seed=0):
        self.size, self.scale, self.ratio = size, scale, ratio
        self.generator = tf.random.Generator.from_seed(seed)

    def __call__(self, image):
        seed = self.generator.make_seeds(1)[:, 0]
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image), tf.zeros([1, 0, 4]), seed=seed, area_range=self.scale,
            aspect_ratio_range=self.ratio, min_object_covered=0.0, max_attempts=10,
            use_image_if_no_bounding_boxes=True)
        crop = tf.slice(image, begin, size)
        return tf.image.resize(crop, (self.size, self.size))


def make_augmentation(kind, image_size, seed=0):
    """A function uint8/float image (H, W, 3) → float32 (S, S, 3) in [0, 255]."""
    if kind not in AUGMENTATIONS:
        raise ValueError(f"Unknown augmentation={kind!r}; expected one of {AUGMENTATIONS}.")
    side = resize_side(image_size)
    if kind == "ee":
        layers = [keras.layers.Resizing(side, side), keras.layers.RandomCrop(image_size, image_size, seed=seed),
                  keras.layers.RandomFlip("horizontal", seed=seed)]
    elif kind == "test":
        layers = [keras.layers.Resizing(side, side), keras.layers.CenterCrop(image_size, image_size)]
    elif kind == "none":
        layers = [keras.layers.Resizing(image_size, image_size)]
    else:
        crop = RandomResizedCrop(image_size, seed=seed)
        flip = keras.layers.RandomFlip("horizontal", seed=seed)
        return lambda image: flip(crop(tf.cast(image, tf.float32)), training=True)

    def apply(image):
        x = tf.cast(image, tf.float32)
        for layer in layers:
            x = layer(x, training=True) if _is_random(layer) else layer(x)
        return x

    return apply


def _is_random(layer):
    return isinstance(layer, (keras.layers.RandomCrop, keras.layers.RandomFlip))
