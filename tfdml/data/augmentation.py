"""Image augmentation presets with stateless `tf.image` ops (deterministic for a seed).

Output images are float32 (S, S, C) in [0, 255] with the input's channel count C
(1 or 3); pixel normalisation happens inside the model. S is `image_size`.

Training presets (each also as `<name>_noflip` without the horizontal flip, for
characters, digits and other classes that a mirror image changes: b ↔ d):

- "ee" (EE paper text, §4): resize to R×R, R = round(S·256/227), random
  crop S×S, horizontal flip.
- "ee_code" (EE official code): with probability ½ a plain resize to S×S,
  otherwise resize to R'×R', R' = round(S·255/227), and random crop S×S;
  then horizontal flip. Its test preset is "none" (plain resize to S×S).
- "roth" (Roth et al., "base"): random resized crop to S×S (area [0.08, 1],
  aspect ratio [3/4, 4/3]), horizontal flip.
- "roth_red" (Roth et al., Fig. 2 "Red."): resize the shorter side to
  round(S·256/224) (aspect ratio kept), random crop S×S, horizontal flip.
- "sharing" (Milbich et al., "Sharing Matters"): resize to R×R,
  R = round(S·256/224) (256 for S = 224), random crop S×S, horizontal flip.
- "roth_adv" (Roth et al., "adv"): random resized crop, random grayscale
  (p = 0.2), colour jitter (brightness, contrast, saturation factors in
  [0.8, 1.2], hue shift in [−0.2, 0.2] of the colour circle, in random order,
  as torchvision's `ColorJitter(0.2, 0.2, 0.2, 0.2)`), horizontal flip. On
  1-channel images grayscale, saturation and hue are identities.
- "xuan" (Xuan et al. code): resize the shorter side to round(1.1·S), random
  crop S×S, horizontal flip.
- "pad_crop": resize to S×S, zero-pad max(1, round(S/8)) pixels on every side,
  random crop S×S, horizontal flip (pad-and-random-crop).

Test presets (deterministic):

- "test" (EE): resize to R×R, centre crop S×S.
- "roth_test" (Roth et al.): resize the shorter side to round(S·256/224)
  (aspect ratio kept), centre crop S×S.
- "xuan_test" (Xuan et al.): resize the shorter side to S, centre crop S×S.
- "sharing_test": resize to R×R, R = round(S·256/224), centre crop S×S (the
  deterministic counterpart of "sharing").
- "none": resize to S×S.

Randomness: `make_augmentation(...)(image, seed)` with a shape-(2,) integer seed
is a pure function of (image, seed); the pipelines pass (seed, element
position), so a pipeline gives the same images on every run, however many
parallel calls. Without `seed`, draws come from a generator seeded by
`make_augmentation`'s `seed`.
"""
import numbers

import tensorflow as tf

_FLIPPING = ("ee", "ee_code", "roth", "roth_adv", "roth_red", "sharing", "xuan", "pad_crop")
_TEST = ("test", "roth_test", "xuan_test", "sharing_test", "none")
AUGMENTATIONS = _FLIPPING + tuple(f"{name}_noflip" for name in _FLIPPING) + _TEST
"""Names accepted by `make_augmentation` and the pipelines' `augmentation=`: training augmentations (`ee`, `roth`, `roth_adv`, `xuan`, `pad_crop`), their `<name>_noflip` variants and the test-time ones (`test`, `roth_test`, `xuan_test`, `none`)."""
JITTER = 0.2  # Roth et al.'s ColorJitter strength (brightness, contrast, saturation, hue)
GRAYSCALE_PROBABILITY = 0.2


def resize_side(image_size):
    """EE protocol: side R of the square resize before cropping S (256 for S = 227)."""
    return int(round(image_size * 256 / 227))


def make_augmentation(kind, image_size, seed=0):
    """A function `(image, seed=None)` → float32 (S, S, C) in [0, 255] for a uint8/float image (H, W, C).

    Args:
        kind: a name from `AUGMENTATIONS`.
        image_size: output side S.
        seed: seed of the generator used when the function is called without
            a per-image `seed`.
    """
    if kind not in AUGMENTATIONS:
        raise ValueError(f"Unknown augmentation={kind!r}; expected one of {AUGMENTATIONS}.")
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}.")
    image_size = int(image_size)
    flip = kind in _FLIPPING
    transform = _PRESETS[kind.removesuffix("_noflip")]
    generator = tf.random.Generator.from_seed(seed)

    def apply(image, seed=None):
        if seed is None:
            seed = generator.make_seeds(1)[:, 0]
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
        x = transform(tf.cast(image, tf.float32), image_size, seeds[0])
        if flip:
            x = tf.image.stateless_random_flip_left_right(x, seeds[1])
        return x

    return apply


def _random_crop(image, size, seed):
    channels = _channels(image)
    return tf.image.stateless_random_crop(image, [size, size, channels], seed)


def _channels(image):
    return image.shape[-1] if image.shape[-1] is not None else tf.shape(image)[-1]


def _resize(image, size):
    return tf.image.resize(image, (size, size))


def _resize_shorter_side(image, side):
    """Resizes so that the shorter side is `side` (longer side floor(side · long / short), as torchvision)."""
    shape = tf.cast(tf.shape(image)[:2], tf.float64)
    short = tf.reduce_min(shape)
    new = tf.where(shape == short, tf.constant(side, tf.float64), tf.floor(side * shape / short))
    return tf.image.resize(image, tf.cast(new, tf.int32))


def _center_crop(image, size):
    shape = tf.shape(image)
    top, left = (shape[0] - size) // 2, (shape[1] - size) // 2
    crop = image[top:top + size, left:left + size]
    crop.set_shape([size, size, image.shape[-1]])
    return crop


def _random_resized_crop(image, size, seed, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Random-area, random-aspect crop resized to size×size (Inception-style)."""
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), tf.zeros([1, 0, 4]), seed=seed, area_range=scale, aspect_ratio_range=ratio,
        min_object_covered=0.0, max_attempts=10, use_image_if_no_bounding_boxes=True)
    crop = _resize(tf.slice(image, begin, crop_size), size)
    crop.set_shape([size, size, image.shape[-1]])  # tf.slice loses the static channel count
    return crop


def _gray(image):
    return tf.image.rgb_to_grayscale(image)


def _color_jitter(image, seed):
    """torchvision-style ColorJitter(0.2, 0.2, 0.2, 0.2) and RandomGrayscale(0.2) on [0, 255] floats."""
    if image.shape[-1] is None:
        raise ValueError("roth_adv needs images with a static channel count (1 or 3); got shape "
                         f"{image.shape}: set_shape([None, None, channels]) on the images first.")
    seeds = tf.random.experimental.stateless_split(seed, num=4)
    rgb = image.shape[-1] == 3
    if rgb:
        to_gray = tf.random.stateless_uniform([], seeds[0]) < GRAYSCALE_PROBABILITY
        image = tf.cond(to_gray, lambda: tf.repeat(_gray(image), 3, axis=-1), lambda: image)
    factors = tf.random.stateless_uniform([3], seeds[1], 1.0 - JITTER, 1.0 + JITTER)
    hue = tf.random.stateless_uniform([], seeds[2], -JITTER, JITTER)
    luminance = _gray if rgb else tf.identity

    def brightness(x):
        return x * factors[0]

    def contrast(x):
        return factors[1] * x + (1.0 - factors[1]) * tf.reduce_mean(luminance(x))

    def saturation(x):
        return factors[2] * x + (1.0 - factors[2]) * _gray(x) if rgb else x

    def hue_shift(x):
        return tf.image.adjust_hue(x / 255.0, hue) * 255.0 if rgb else x

    operations = [brightness, contrast, saturation, hue_shift]
    order = tf.argsort(tf.random.stateless_uniform([4], seeds[3]))
    for step in range(4):
        image = tf.switch_case(order[step], [lambda op=op: tf.clip_by_value(op(image), 0.0, 255.0)
                                             for op in operations])
    return image


def _ee(image, size, seed):
    side = resize_side(size)
    return _random_crop(_resize(image, side), size, seed)


def _ee_code(image, size, seed):
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    cropped = _random_crop(_resize(image, int(round(size * 255 / 227))), size, seeds[0])
    plain = tf.random.stateless_uniform([], seeds[1]) < 0.5
    return tf.where(plain, _resize(image, size), cropped)


def _roth(image, size, seed):
    return _random_resized_crop(image, size, seed)


def _roth_adv(image, size, seed):
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    return _color_jitter(_random_resized_crop(image, size, seeds[0]), seeds[1])


def _roth_side(size):
    """Roth et al.'s and Milbich et al.'s resize side before a crop of S: 256 for S = 224."""
    return int(round(size * 256 / 224))


def _roth_red(image, size, seed):
    return _random_crop(_resize_shorter_side(image, _roth_side(size)), size, seed)


def _sharing(image, size, seed):
    return _random_crop(_resize(image, _roth_side(size)), size, seed)


def _sharing_test(image, size, seed):
    return _center_crop(_resize(image, _roth_side(size)), size)


def _xuan(image, size, seed):
    return _random_crop(_resize_shorter_side(image, int(round(1.1 * size))), size, seed)


def _pad_crop(image, size, seed):
    pad = max(1, int(round(size / 8)))
    padded = tf.pad(_resize(image, size), [[pad, pad], [pad, pad], [0, 0]])
    return _random_crop(padded, size, seed)


def _test(image, size, seed):
    return _center_crop(_resize(image, resize_side(size)), size)


def _roth_test(image, size, seed):
    return _center_crop(_resize_shorter_side(image, _roth_side(size)), size)


def _xuan_test(image, size, seed):
    return _center_crop(_resize_shorter_side(image, size), size)


def _none(image, size, seed):
    return _resize(image, size)


_PRESETS = {"ee": _ee, "ee_code": _ee_code, "roth": _roth, "roth_adv": _roth_adv, "roth_red": _roth_red,
            "sharing": _sharing, "xuan": _xuan, "pad_crop": _pad_crop, "test": _test, "roth_test": _roth_test,
            "xuan_test": _xuan_test, "sharing_test": _sharing_test, "none": _none}
