"""Pretrained backbone weights: published PyTorch checkpoints read with numpy, converted to tfdml's backbones."""
from tfdml.weights.convert import StateDictMismatchError, assign_state_dict, unassigned_variables
from tfdml.weights.load import CACHE_ENV, WeightsDownloadError, cache_dir
from tfdml.weights.sources import IMAGENET_DEFAULTS, SOURCES, WeightSource, imagenet_source, resolve_source, source_names

__all__ = [
    "CACHE_ENV",
    "IMAGENET_DEFAULTS",
    "SOURCES",
    "StateDictMismatchError",
    "WeightSource",
    "WeightsDownloadError",
    "assign_state_dict",
    "cache_dir",
    "imagenet_source",
    "resolve_source",
    "source_names",
    "unassigned_variables",
]
