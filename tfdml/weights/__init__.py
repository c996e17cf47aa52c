"""Pretrained backbone weights: published checkpoints (PyTorch, safetensors, MXNet) read with numpy and the
standard library, and assigned to tfdml's backbones (users never need torch)."""
from tfdml.weights.convert import StateDictMismatchError, assign_state_dict, unassigned_variables
from tfdml.weights.load import CACHE_ENV, WeightsDownloadError, cache_dir
from tfdml.weights.readers import read_mxnet_params, read_safetensors, read_state_dict
from tfdml.weights.sources import (IMAGENET_DEFAULTS, SOURCES, WeightSource, imagenet_source, resolve_source,
                                   source_names)
from tfdml.weights.torch_checkpoint import InvalidCheckpointError, UnsafeCheckpointError, read_torch_checkpoint

__all__ = [
    "CACHE_ENV",
    "IMAGENET_DEFAULTS",
    "SOURCES",
    "InvalidCheckpointError",
    "StateDictMismatchError",
    "UnsafeCheckpointError",
    "WeightSource",
    "WeightsDownloadError",
    "assign_state_dict",
    "cache_dir",
    "imagenet_source",
    "read_mxnet_params",
    "read_safetensors",
    "read_state_dict",
    "read_torch_checkpoint",
    "resolve_source",
    "source_names",
    "unassigned_variables",
]
