"""Standard DML datasets with the zero-shot class splits (EE paper §5.1).

The first half of the classes is the training split, the second half the test
split. Each dataset loads from a local folder in its original layout (download
links rot), and CUB-200-2011 / CARS196 also through tensorflow-datasets:

- cub200: `<data_dir>/CUB_200_2011/` (or `<data_dir>` itself) with `images.txt`,
  `image_class_labels.txt` and `images/`; classes 1–100 train, 101–200 test;
  5,864 / 5,924 images. tfds: `caltech_birds2011`.
- cars196: `<data_dir>/cars_annos.txt`, one line per image:
  `relative/path.jpg class_id` (1-based class ids; a text export of the devkit's
  `cars_annos.mat`, which needs scipy to read and is therefore not parsed here),
  or one sub-folder per class; classes 1–98 train, 99–196 test; 8,054 / 8,131
  images. tfds: `cars196`.
- sop (Stanford Online Products): `<data_dir>/Ebay_train.txt` and
  `Ebay_test.txt` (its own split files: `image_id class_id super_class_id path`);
  11,318 / 11,316 classes, 59,551 / 60,502 images. Not in tensorflow-datasets.
- folder: any `<data_dir>/<class_name>/<image>` tree; sorted class names, the
  first half train; `channels=1` loads gray images. Every format TensorFlow
  decodes is loaded (JPEG, PNG, GIF, BMP, WebP, JPEG XL); other files and empty
  class folders are left out with a warning and listed in `Split.skipped`.

Before training, `load_split` checks every image file's header and end
(`tfdml.data.split.image_file_problem`: a few kilobytes per file), so a
missing, empty, truncated or non-image file is found at the start: an error
naming it, or with `skip_corrupt=True` (config `dataset.skip_corrupt`) the
file is left out, counted in a warning and listed in `Split.skipped`. A file
that passes the check but still fails to decode stops training with an error
naming it (nothing is skipped silently).
"""
import os
import warnings

import numpy as np

from tfdml.data.digits import digits_split
from tfdml.data.split import Split, find_unreadable_images

EXPECTED_COUNTS = {  # (classes, images) per split
    "cub200": {"train": (100, 5864), "test": (100, 5924)},
    "cars196": {"train": (98, 8054), "test": (98, 8131)},
    "sop": {"train": (11318, 59551), "test": (11316, 60502)},
}
"""Standard zero-shot splits: `(classes, images)` per dataset and split, checked by `check_counts`."""
TFDS_NAMES = {"cub200": "caltech_birds2011", "cars196": "cars196"}
DATASETS = ("digits", "cub200", "cars196", "sop", "folder")
"""Dataset names accepted by `load_split`."""
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".jxl")
"""File name endings the folder loader reads (the formats `tf.io.decode_image` decodes)."""


def _require(path, what):
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} not found: {path!r}.")
    return path


def _read_rows(path):
    with open(_require(path, "annotation file")) as handle:
        return [line.split() for line in handle if line.strip()]


def _half_split(paths, labels, split, name, channels=3):
    """Keeps the first (train) or second (test) half of the sorted classes."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    half = classes[: len(classes) // 2] if split == "train" else classes[len(classes) // 2:]
    keep = np.isin(labels, half)
    return Split(name, labels[keep], paths=[p for p, k in zip(paths, keep) if k], channels=channels)


def check_counts(split_obj, name, split, strict=False):
    """Compares a split's class/image counts with the standard ones.

    Warns (or raises `ValueError` when `strict`) on a mismatch, naming both counts.
    """
    expected = EXPECTED_COUNTS.get(name, {}).get(split)
    if expected is None:
        return
    got = (split_obj.num_classes, split_obj.num_images)
    if got != expected:
        message = (f"{name} {split}: loaded {got[0]} classes / {got[1]} images, the standard split has "
                   f"{expected[0]} / {expected[1]}.")
        if strict:
            raise ValueError(message)
        warnings.warn(message)


def cub200_folder(data_dir, split, channels=3):
    """The `split` of a CUB-200-2011 folder: the first half of the sorted classes ("train") or the
    second ("test"), read from `images.txt` and `image_class_labels.txt` (in `data_dir` or its
    `CUB_200_2011`)."""
    root = os.path.join(data_dir, "CUB_200_2011")
    root = root if os.path.isdir(root) else data_dir
    images = {row[0]: row[1] for row in _read_rows(os.path.join(root, "images.txt"))}
    labels = {row[0]: int(row[1]) for row in _read_rows(os.path.join(root, "image_class_labels.txt"))}
    ids = sorted(images, key=int)
    paths = [os.path.join(root, "images", images[i]) for i in ids]
    return _half_split(paths, [labels[i] for i in ids], split, "cub200", channels)


def cars196_folder(data_dir, split, channels=3):
    """The `split` of a Cars196 folder: the first half of the sorted classes ("train") or the second ("test").

    Reads `cars_annos.txt` ("path class_id" lines) when present, else an image folder with one
    sub-folder per class."""
    annotations = os.path.join(data_dir, "cars_annos.txt")
    if os.path.exists(annotations):
        rows = _read_rows(annotations)
        return _half_split([os.path.join(data_dir, r[0]) for r in rows], [int(r[1]) for r in rows], split,
                           "cars196", channels)
    if os.path.exists(os.path.join(data_dir, "cars_annos.mat")):
        raise FileNotFoundError(
            f"{data_dir!r} has cars_annos.mat but no cars_annos.txt: export it to 'path class_id' lines "
            "(reading .mat files needs scipy, which tfdml does not depend on) or use tensorflow-datasets.")
    return image_folder(data_dir, split, name="cars196", channels=channels)


def sop_folder(data_dir, split, channels=3):
    """The `split` of a Stanford Online Products folder, read from `Ebay_train.txt` or `Ebay_test.txt`."""
    name = "Ebay_train.txt" if split == "train" else "Ebay_test.txt"
    rows = _read_rows(os.path.join(data_dir, name))[1:]  # header line
    return Split("sop", [int(r[1]) for r in rows], paths=[os.path.join(data_dir, r[3]) for r in rows],
                 channels=channels)


def image_folder(data_dir, split, name="folder", channels=3):
    """A `<data_dir>/<class>/<image>` tree, split by sorted class name (first half train).

    Files ending in one of `IMAGE_EXTENSIONS` are loaded; other files and
    class folders without images are left out with a warning and listed in the
    split's `skipped` as (path, reason). Images are decoded to `channels`
    (3: RGB, 1: gray) when loaded.
    """
    _require(data_dir, "dataset folder")
    folders = sorted(d for d in os.listdir(data_dir) if os.path.isdir(os.path.join(data_dir, d)))
    paths, labels, classes, skipped, empty = [], [], [], [], []
    for folder in folders:
        images = []
        for file in sorted(os.listdir(os.path.join(data_dir, folder))):
            path = os.path.join(data_dir, folder, file)
            if file.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(path):
                images.append(path)
            else:
                skipped.append((path, "not an image file (name ending)" if os.path.isfile(path) else "a folder"))
        if not images:
            empty.append(folder)
            skipped.append((os.path.join(data_dir, folder), "class folder without images"))
            continue
        paths += images
        labels += [len(classes)] * len(images)
        classes.append(folder)
    if len(classes) < 2:
        raise FileNotFoundError(f"{data_dir!r} must contain at least two class sub-folders with images, found "
                                f"{classes}" + (f" (without images: {empty})." if empty else "."))
    result = _half_split(paths, labels, split, name, channels)
    half = len(classes) // 2
    result.class_names = classes[:half] if split == "train" else classes[half:]
    if skipped and split == "train":  # said once per folder, with the train split
        files = len(skipped) - len(empty)
        parts = ([f"{files} files that are not images (e.g. {skipped[0][0]!r})"] if files else []) + \
            ([f"{len(empty)} class folders without images ({', '.join(empty[:5])}{', ...' if len(empty) > 5 else ''})"]
             if empty else [])
        warnings.warn(f"{name} {data_dir!r}: left out {' and '.join(parts)}; loaded files end in "
                      f"{', '.join(IMAGE_EXTENSIONS)}.", stacklevel=2)
    result.skipped = list(skipped) if split == "train" else []
    return result


class MissingDependencyError(ImportError):
    """An optional dependency (an extra of the tfdml package) is needed but not installed."""


def tfds_split(name, split, data_dir=None, download=False, channels=3):
    """CUB-200-2011 / CARS196 through tensorflow-datasets (train+test pooled, split by class).

    Images stay encoded in memory and are decoded on the fly.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise MissingDependencyError(
            f"Dataset {name!r} without a local copy in its original layout (data_dir=) loads through "
            'tensorflow-datasets, which is not installed: pip install "tfdml[datasets]".') from None
    try:
        dataset = tfds.load(TFDS_NAMES[name], split="train+test", data_dir=data_dir, download=download,
                            decoders={"image": tfds.decode.SkipDecoding()})
    except Exception as error:
        raise RuntimeError(
            f"tensorflow-datasets could not load {TFDS_NAMES[name]!r} ({type(error).__name__}: {error}). "
            f"Prepare it once with network access, or pass data_dir= a local copy in the original layout."
        ) from error
    encoded, labels = [], []
    for example in dataset.as_numpy_iterator():
        encoded.append(example["image"])
        labels.append(int(example["label"]))
    labels = np.asarray(labels)
    classes = np.unique(labels)
    half = classes[: len(classes) // 2] if split == "train" else classes[len(classes) // 2:]
    keep = np.isin(labels, half)
    return Split(name, labels[keep], images=[e for e, k in zip(encoded, keep) if k], channels=channels)


def load_split(name, split, data_dir=None, strict=False, image_size=32, download=False, channels=3,
               skip_corrupt=False):
    """Loads one split of a dataset.

    Args:
        name: one of `DATASETS`.
        split: "train" or "test".
        data_dir: folder with the dataset in its original layout (for "folder"
            and "sop" required); for cub200/cars196 without a local layout the
            tensorflow-datasets data_dir.
        strict: raise instead of warn when class/image counts differ from the
            standard split.
        image_size: image side for "digits".
        download: allow tensorflow-datasets to download.
        channels: 3 (RGB) or 1 (gray: decoded as gray, digits not repeated).
        skip_corrupt: leave out image files that fail the header check (see
            the module docstring) instead of raising; they are counted in a
            warning and listed in the split's `skipped`.

    Returns:
        A `Split`.

    Raises:
        ValueError: an image file fails the header check (without `skip_corrupt`).
    """
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset={name!r}; expected one of {DATASETS}.")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (gray) or 3 (RGB), got {channels!r}.")
    if name == "digits":
        return digits_split(split, image_size, channels=channels)
    if name in ("folder", "sop") and data_dir is None:
        raise ValueError(f"dataset {name!r} needs data_dir.")
    if name == "folder":
        return check_files(image_folder(data_dir, split, channels=channels), split, skip_corrupt)
    if name == "sop":
        result = sop_folder(data_dir, split, channels)
    elif data_dir is not None and _has_original_layout(name, data_dir):
        loader = cub200_folder if name == "cub200" else cars196_folder
        result = loader(data_dir, split, channels)
    else:
        result = tfds_split(name, split, data_dir, download, channels)
    result = check_files(result, split, skip_corrupt)
    check_counts(result, name, split, strict)
    return result


def check_files(split_obj, split, skip_corrupt=False):
    """`split_obj` after the header check of its image files (in-memory splits pass unchanged).

    Raises:
        ValueError: one line naming the first bad file and the count, unless
            `skip_corrupt` (then the split without them, a warning, and the
            files added to `skipped`).
    """
    paths = split_obj.paths
    if not paths:
        return split_obj
    bad = find_unreadable_images(paths)
    if not bad:
        return split_obj
    first, reason = bad[0]
    if not skip_corrupt:
        raise ValueError(f"Cannot decode image {first!r}: {reason}" +
                         (f" and {len(bad) - 1} more image files of the {split} split" if len(bad) > 1 else "") +
                         ". Replace or delete them, or set dataset.skip_corrupt: true "
                         "(--set dataset.skip_corrupt=true) to leave them out.")
    bad_paths = {path for path, _ in bad}
    kept = split_obj.subset([i for i, path in enumerate(paths) if path not in bad_paths])
    kept.skipped = list(split_obj.skipped) + bad
    warnings.warn(f"{split_obj.name} {split}: skipped {len(bad)} image files that cannot be decoded (e.g. {first!r}: "
                  f"{reason}).", stacklevel=2)
    return kept


def _has_original_layout(name, data_dir):
    if name == "cub200":
        return any(os.path.exists(os.path.join(d, "images.txt"))
                   for d in (data_dir, os.path.join(data_dir, "CUB_200_2011")))
    return (os.path.exists(os.path.join(data_dir, "cars_annos.txt"))
            or os.path.exists(os.path.join(data_dir, "cars_annos.mat")))
