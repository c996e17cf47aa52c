"""Reading published weights (PyTorch, safetensors, MXNet files) and assigning them to Keras backbones."""
from tfdml.weights.readers import read_mxnet_params, read_safetensors, read_state_dict
from tfdml.weights.torch_checkpoint import (
    InvalidCheckpointError,
    UnsafeCheckpointError,
    read_torch_checkpoint,
)

__all__ = [
    "InvalidCheckpointError",
    "UnsafeCheckpointError",
    "read_mxnet_params",
    "read_safetensors",
    "read_state_dict",
    "read_torch_checkpoint",
]
