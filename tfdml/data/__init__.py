"""Datasets with zero-shot class splits, batch samplers, the memory bank, augmentation pipelines and
self-supervised (two-view) batches."""
from tfdml.data.augmentation import AUGMENTATIONS, make_augmentation
from tfdml.data.datasets import DATASETS, EXPECTED_COUNTS, MissingDependencyError, check_counts, image_folder, load_split
from tfdml.data.digits import digits_split
from tfdml.data.embedded_samplers import EmbeddedSampler
from tfdml.data.memory_bank import MemoryBank, MemoryBankUpdate, prepare_memory_bank
from tfdml.data.pipelines import eval_pipeline, train_pipeline
from tfdml.data.samplers import EMBEDDED_SAMPLERS, SAMPLERS, batch_indices
from tfdml.data.self_supervised import ViewsSampler, self_supervised_pipeline, unlabeled_folder
from tfdml.data.split import Split

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "EMBEDDED_SAMPLERS",
    "EXPECTED_COUNTS",
    "EmbeddedSampler",
    "MemoryBank",
    "MemoryBankUpdate",
    "MissingDependencyError",
    "SAMPLERS",
    "Split",
    "ViewsSampler",
    "batch_indices",
    "check_counts",
    "digits_split",
    "eval_pipeline",
    "image_folder",
    "load_split",
    "make_augmentation",
    "prepare_memory_bank",
    "self_supervised_pipeline",
    "train_pipeline",
    "unlabeled_folder",
]
