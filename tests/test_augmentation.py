"""Augmentation presets: shapes, dtypes, value ranges, determinism, flips, resize protocols, jitter."""
import numpy as np
import pytest
import tensorflow as tf

import tfdml
from tfdml.data.augmentation import AUGMENTATIONS, make_augmentation

RNG = np.random.default_rng(0)
RANDOM = [name for name in AUGMENTATIONS if name not in ("test", "roth_test", "xuan_test", "sharing_test", "none")]


def _seed(k):
    return tf.constant([5, k], tf.int64)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kind", AUGMENTATIONS)
def test_presets_shape_dtype_range_and_determinism(kind, channels):
    image = RNG.integers(0, 256, (37, 53, channels)).astype(np.uint8)
    augment = make_augmentation(kind, 24)
    out = augment(image, _seed(1))
    assert out.shape == (24, 24, channels) and out.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255.0
    np.testing.assert_array_equal(out, augment(image, _seed(1)))  # a pure function of (image, seed)
    traced = tf.function(lambda x, s: augment(x, s))(tf.constant(image), _seed(1))
    np.testing.assert_allclose(traced, out, atol=1e-3)  # same result inside tf.function
    different = any(not np.array_equal(out, augment(image, _seed(k))) for k in range(2, 6))
    assert different == (kind in RANDOM)
    assert augment(image).shape == (24, 24, channels)  # generator-seeded calls


def test_unknown_preset_and_bad_size_are_named():
    with pytest.raises(ValueError, match="augmentation"):
        make_augmentation("ee_flip", 24)
    with pytest.raises(ValueError, match="image_size"):
        make_augmentation("ee", 0)


@pytest.mark.parametrize("kind", ["ee", "ee_code", "roth", "roth_adv", "roth_red", "sharing", "xuan", "pad_crop"])
def test_noflip_presets_never_flip(kind):
    # An image whose left half is dark and right half bright: a flip puts the bright half left.
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, 20:] = 200
    flipping, fixed = make_augmentation(kind, 32), make_augmentation(f"{kind}_noflip", 32)
    flips = 0
    for k in range(40):
        a, b = flipping(image, _seed(k)).numpy(), fixed(image, _seed(k)).numpy()
        flipped = np.array_equal(a, b[:, ::-1])
        assert flipped or np.array_equal(a, b)  # same crop (and colours), mirrored or not
        flips += flipped and not np.array_equal(b, b[:, ::-1])
        assert b[:, :4].mean() <= b[:, -4:].mean()  # never mirrored: dark stays left
    assert 5 < flips < 35


def test_shorter_side_resize_keeps_the_aspect_ratio():
    # Columns encode their horizontal position; a 40 × 80 image (and its transpose).
    image = np.tile(np.linspace(0, 255, 80, dtype=np.float32)[None, :, None], (40, 1, 3))
    squashed = make_augmentation("none", 16)(image).numpy()
    assert squashed[0, 0, 0] < 10 and squashed[0, -1, 0] > 245  # squashing keeps the full width
    # Xuan: shorter side → 16, longer → 32, centre 16 × 16 crop = columns 8..23.
    resized = tf.image.resize(image, (16, 32)).numpy()
    np.testing.assert_array_equal(make_augmentation("xuan_test", 16)(image).numpy(), resized[:, 8:24])
    # Roth: shorter side → round(14 · 256/224) = 16, centre 14 × 14 crop = rows 1..14, columns 9..22.
    np.testing.assert_array_equal(make_augmentation("roth_test", 14)(image).numpy(), resized[1:15, 9:23])
    tall = np.transpose(image, (1, 0, 2))
    np.testing.assert_array_equal(make_augmentation("xuan_test", 16)(tall).numpy(),
                                  tf.image.resize(tall, (32, 16)).numpy()[8:24])
    # Xuan training: shorter side → round(1.1 · 16) = 18, then a 16 × 16 crop of the 18 × 36 image.
    crop = make_augmentation("xuan_noflip", 16)(image, _seed(0)).numpy()
    big = tf.image.resize(image, (18, 36)).numpy()
    assert any(np.array_equal(crop, big[r:r + 16, c:c + 16]) for r in range(3) for c in range(21))


def test_roth_red_and_sharing_crop_from_their_resizes():
    # Columns and rows encode their position; a 40 × 80 image, S = 14: side round(14 · 256/224) = 16.
    image = (np.linspace(0, 255, 80, dtype=np.float32)[None, :, None]
             + np.linspace(0, 100, 40, dtype=np.float32)[:, None, None]) * np.ones((1, 1, 3), np.float32)
    image = np.clip(image, 0, 255)
    # Roth "Red.": shorter side → 16 (16 × 32, aspect kept), then a random 14 × 14 crop.
    shorter = tf.image.resize(image, (16, 32)).numpy()
    square = tf.image.resize(image, (16, 16)).numpy()  # Sharing Matters: 16 × 16, aspect not kept
    windows = {"roth_red_noflip": (shorter, 3, 19), "sharing_noflip": (square, 3, 3)}
    for kind, (resized, rows, cols) in windows.items():
        crops = [make_augmentation(kind, 14)(image, _seed(k)).numpy() for k in range(6)]
        for crop in crops:
            assert any(np.array_equal(crop, resized[r:r + 14, c:c + 14]) for r in range(rows) for c in range(cols))
        assert any(not np.array_equal(crops[0], crop) for crop in crops[1:])  # the crop position is random
    np.testing.assert_array_equal(make_augmentation("sharing_test", 14)(image).numpy(), square[1:15, 1:15])


def test_ee_code_resizes_plainly_or_crops_a_255_resize_half_the_time():
    # EE official code: p = 1/2 plain resize to S, else resize to round(S·255/227) and random crop S.
    image = RNG.integers(0, 256, (40, 50, 3)).astype(np.uint8)
    augment = make_augmentation("ee_code_noflip", 16)
    plain = tf.image.resize(image.astype(np.float32), (16, 16)).numpy()
    big = tf.image.resize(image.astype(np.float32), (18, 18)).numpy()  # round(16 · 255/227) = 18
    plain_count = crop_count = 0
    for k in range(60):
        out = augment(image, _seed(k)).numpy()
        if np.array_equal(out, plain):
            plain_count += 1
        else:
            assert any(np.array_equal(out, big[r:r + 16, c:c + 16]) for r in range(3) for c in range(3)), k
            crop_count += 1
    assert 15 <= plain_count <= 45 and 15 <= crop_count <= 45
    # Its test protocol: a plain resize to S.
    np.testing.assert_array_equal(make_augmentation("none", 16)(image).numpy(), plain)


def test_pad_crop_pads_with_zeros():
    image = np.full((16, 16, 1), 200, np.uint8)
    augment = make_augmentation("pad_crop_noflip", 16)  # pad round(16/8) = 2 pixels
    outputs = np.stack([augment(image, _seed(k)).numpy() for k in range(30)])
    assert outputs.min() == 0 and outputs.max() == 200
    zeros_per_image = (outputs == 0).reshape(30, -1).sum(axis=1)
    # r padding rows and c padding columns in view (0 ≤ r, c ≤ 2): 16·(r + c) − r·c zeros.
    allowed = {16 * (r + c) - r * c for r in range(3) for c in range(3)}
    assert set(zeros_per_image) <= allowed and len(set(zeros_per_image)) >= 3


def test_roth_adv_jitters_colours_and_sometimes_turns_gray():
    image = RNG.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    jittered, plain = make_augmentation("roth_adv_noflip", 32), make_augmentation("roth_noflip", 32)
    gray = 0
    for k in range(200):
        out = jittered(image, _seed(k)).numpy()
        gray += np.allclose(out[..., 0], out[..., 1], atol=1e-3) and np.allclose(out[..., 1], out[..., 2], atol=1e-3)
    assert 20 <= gray <= 60  # RandomGrayscale(p = 0.2): 40 expected of 200
    # Brightness/contrast change the mean intensity of an otherwise identical crop (full-image crop of a
    # constant image: the crop is the same whatever the seed).
    flat = np.full((32, 32, 1), 100, np.uint8)
    means = [float(jittered(flat, _seed(k)).numpy().mean()) for k in range(30)]
    assert np.allclose([plain(flat, _seed(k)).numpy().mean() for k in range(5)], 100.0)
    assert min(means) >= 80.0 - 1e-3 and max(means) <= 120.0 + 1e-3 and np.std(means) > 3.0


def test_train_pipeline_is_deterministic_for_a_seed():
    split = tfdml.data.load_split("digits", "train", image_size=16)

    def batches(seed, kind):
        data = tfdml.data.train_pipeline(split, batch_size=12, samples_per_class=4, augmentation=kind,
                                         image_size=16, seed=seed)
        return [images.numpy() for images, _ in data.take(3)]

    for kind in ("roth_adv", "ee"):
        first, again, other = batches(1, kind), batches(1, kind), batches(2, kind)
        for a, b in zip(first, again):
            np.testing.assert_array_equal(a, b)
        assert not all(np.array_equal(a, c) for a, c in zip(first, other))
