"""The published PyTorch reference networks (torchvision, pretrainedmodels) for tests; never imported by tfdml.

torch, torchvision and pretrainedmodels are the `test` extra. The CPU torch wheel
(`torch==2.13.0+cpu`) and PyPI's `torchvision==0.28.0` (built against CUDA torch)
disagree about torchvision's compiled operators: `import torchvision` fails in
`torchvision/_meta_registrations.py`, which registers fake implementations of
`torchvision::nms` and `torchvision::roi_align` that the CPU build does not have.
The model definitions use none of those operators, so that one module is
replaced by an empty one before torchvision is imported; every model definition
is torchvision's / pretrainedmodels' own code.
"""
import sys
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
torchvision = pytest.importorskip("torchvision")
pretrainedmodels = pytest.importorskip("pretrainedmodels")


def randomize(model, seed=0):
    """Random weights *and* random BatchNorm statistics (a fresh BN has mean 0 / var 1, which hides mistakes)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.dtype.is_floating_point:
                if name.endswith("running_var"):
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
                elif name.endswith(("running_mean", "bias")):
                    tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
                elif name.endswith("weight") and tensor.ndim == 1:  # BN gamma
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
                else:  # He-scaled so activations neither vanish nor explode through deep stacks
                    fan_in = int(np.prod(tensor.shape[1:])) if tensor.ndim > 1 else 1
                    tensor.copy_(torch.randn(tensor.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
    return model.eval()


def state_dict_numpy(model):
    """{name: numpy array} of a module's state dict (what a published checkpoint holds)."""
    return {name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()}


def to_nchw(images_nhwc):
    """NHWC numpy images → an NCHW float32 torch tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.transpose(images_nhwc, (0, 3, 1, 2)), dtype=np.float32))
