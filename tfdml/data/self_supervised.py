"""Self-supervised (SimCLR-style) training input: two augmented views of each image, no class labels.

`self_supervised_pipeline(split, batch_size)` yields batches of `batch_size`
images holding `batch_size / views` distinct images of the split, each
`views` times in a row and augmented independently (every view has its own
stateless augmentation seed), labelled by the image's index in the split —
its instance id. The class labels are ignored, so the pair-based losses
(`tfdml.losses.NTXentLoss`, `SupConLoss`, `VICRegLoss`, …) see `views`
samples per label: the views of one image are the positives, every other
image is a negative.

`unlabeled_folder(data_dir)` loads a folder of images without classes (images
directly in the folder, and/or in sub-folders whose names are ignored).
"""
import os
import warnings

import numpy as np

from tfdml.checks import check_int
from tfdml.data.datasets import IMAGE_EXTENSIONS
from tfdml.data.pipelines import train_pipeline
from tfdml.data.split import Split


class ViewsSampler:
    """Index batches of `batch_size / views` distinct images, each repeated `views` times in a row.

    Images are drawn in passes over the split (a new random permutation each
    pass, from `seed`), so every image is used once per pass; an image never
    appears as two instances of one batch (also across a pass boundary).
    A sampler object for `tfdml.data.train_pipeline` (`check` / `batches`).

    Args:
        views: views per image (≥ 2).
    """

    def __init__(self, views=2):
        self.views = check_int(views, "views", minimum=2)

    def check(self, labels, batch_size, samples_per_class=None):
        """Raises `ValueError` unless `batch_size` is a multiple of `views` holding at least two images,
        and the split (`labels`) has `batch_size / views` images."""
        if batch_size % self.views or batch_size // self.views < 2:
            raise ValueError(f"batch_size ({batch_size}) must be a multiple of views ({self.views}) holding at "
                             f"least two images (self-supervised batches: batch_size / views images, each "
                             f"{self.views} times).")
        if batch_size // self.views > len(labels):
            raise ValueError(f"batch_size / views = {batch_size // self.views} distinct images per batch, but the "
                             f"split has only {len(labels)} images.")

    def batches(self, labels, batch_size, samples_per_class=None, seed=0):
        """Infinite generator of int (batch_size,) index batches."""
        self.check(labels, batch_size)
        count, images = len(labels), batch_size // self.views
        rng = np.random.default_rng(seed)
        order, position = rng.permutation(count), 0
        while True:
            chosen = []
            while len(chosen) < images:
                if position == count:
                    order, position = rng.permutation(count), 0
                index = int(order[position])
                position += 1
                if index not in chosen:  # only possible right after a new pass started
                    chosen.append(index)
            yield np.repeat(np.asarray(chosen, np.int32), self.views)


def self_supervised_pipeline(split, batch_size=128, views=2, augmentation="roth_adv", image_size=227, seed=0,
                             skip_batches=0, replicas=None):
    """Infinite dataset of `(float32 images (B, S, S, C) in [0, 255], int32 instance ids (B,))` for
    self-supervised training, usable with `model.fit` and any pair-based loss.

    Each batch holds B / `views` distinct images of `split`, each `views` times
    in a row (rows k·views … k·views + views − 1 are one image), every view
    augmented with its own random draw; the labels are the images' indices in
    the split, so the views of one image share a label. The split's class
    labels are not used.

    Args:
        split: a `tfdml.data.Split` (e.g. `tfdml.data.unlabeled_folder(...)` or
            a labelled split whose labels are then ignored).
        batch_size: B, rows per batch (all views), a multiple of `views`.
        views: augmented views per image (2 for SimCLR, VICReg).
        augmentation: a training preset of `tfdml.data.AUGMENTATIONS`; the
            default "roth_adv" (random resized crop, colour jitter, random
            grayscale, flip) is the closest to SimCLR's.
        image_size: output side S.
        seed: seed of the image draws and of the augmentations.
        skip_batches: as in `tfdml.data.train_pipeline` (a resumed run
            continues the same batches).
        replicas: as in `tfdml.data.train_pipeline` (one worker's share under
            `tf.distribute`; instance ids are unique within the global batch).

    Returns:
        A `tf.data.Dataset`.

    Example (a notebook):

        split = tfdml.data.unlabeled_folder("photos")
        data = tfdml.data.self_supervised_pipeline(split, 64, image_size=96)
        model.compile(optimizer="adam", loss=tfdml.losses.NTXentLoss(temperature=0.5))
        model.fit(data, epochs=10, steps_per_epoch=split.num_images // 32)
    """
    ids = np.arange(split.num_images, dtype=np.int32)
    return train_pipeline(split, batch_size, sampler=ViewsSampler(views), samples_per_class=views,
                          augmentation=augmentation, image_size=image_size, seed=seed, skip_batches=skip_batches,
                          replicas=replicas, relabel=lambda: ids)


def is_unlabeled_folder(data_dir):
    """Whether `data_dir` is not a `<class>/<image>` tree: fewer than two sub-folders holding images."""
    with_images = 0
    for entry in sorted(os.listdir(data_dir)):
        path = os.path.join(data_dir, entry)
        if os.path.isdir(path) and any(name.lower().endswith(IMAGE_EXTENSIONS) for name in os.listdir(path)):
            with_images += 1
    return with_images < 2


def unlabeled_folder(data_dir, channels=3, name="unlabeled"):
    """A `Split` of every image in `data_dir` and its sub-folders (any depth), without classes.

    All images get label 0 (one class): the split is for self-supervised
    training (`self_supervised_pipeline`), not for retrieval evaluation. Files
    not ending in an image extension are left out with a warning and listed in
    the split's `skipped`.

    Raises:
        FileNotFoundError: `data_dir` is not a folder or holds no image.
    """
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"unlabeled image folder {data_dir!r} does not exist.")
    paths, skipped = [], []
    for root, folders, files in os.walk(data_dir):
        folders.sort()
        for file in sorted(files):
            path = os.path.join(root, file)
            (paths if file.lower().endswith(IMAGE_EXTENSIONS) else skipped).append(path)
    if not paths:
        raise FileNotFoundError(f"{data_dir!r} holds no image files (ending in {', '.join(IMAGE_EXTENSIONS)}).")
    if skipped:
        warnings.warn(f"{name} {data_dir!r}: left out {len(skipped)} files that are not images (e.g. "
                      f"{skipped[0]!r}).", stacklevel=2)
    split = Split(name, np.zeros(len(paths), np.int64), paths=paths, class_names=["(unlabeled)"],
                  channels=channels)
    split.skipped = [(path, "not an image file (name ending)") for path in skipped]
    return split
