"""Tensor-name translations from other frameworks' published files to the PyTorch names tfdml's backbones map.

gluoncv's GoogLeNet (`gluoncv.model_zoo.googlenet`) has torchvision's layout
(conv without bias → BatchNorm ε 1e-3 → ReLU; 3×3 convolutions in the "5×5"
branch); Gluon's `save_parameters` names tensors by their block path:
`conv1.0.weight` (convolution), `conv1.1.gamma` / `beta` / `running_mean` /
`running_var` (BatchNorm), `inception3a.<branch>.<…>` (each branch a
sequence of basic convolutions, the pool branch's pooling first), `output.*`
(the classifier, also saved as `head.2.*`). The names here follow gluoncv's
definition; they were not checked against the published file offline.
"""
import re

_GLUON_BN = {"gamma": "weight", "beta": "bias", "running_mean": "running_mean", "running_var": "running_var"}
_GLUON_LAYER = {"0": "conv", "1": "bn"}
# gluoncv branch index → (torchvision branch, index of the branch's first convolution in gluoncv's sequence)
_GLUON_BRANCHES = {"0": "branch1", "1": "branch2", "2": "branch3", "3": "branch4"}


def _gluon_tensor(layer, tensor):
    kind = _GLUON_LAYER.get(layer)
    if kind == "conv" and tensor == "weight":
        return "conv.weight"
    if kind == "bn" and tensor in _GLUON_BN:
        return f"bn.{_GLUON_BN[tensor]}"
    return None


def gluoncv_googlenet_to_torchvision(state_dict):
    """Renames a gluoncv GoogLeNet `.params` state dict to torchvision's `googlenet` names.

    BatchNorm `gamma`/`beta` become `weight`/`bias`; the classifier `output.*`
    becomes `fc.*` (ignored by the backbone) and its duplicate `head.*` is
    dropped. Names that fit neither pattern are kept, so the backbone's check
    reports them.

    Args:
        state_dict: {gluon name: array}.

    Returns:
        {torchvision name: array}.
    """
    renamed = {}
    for name, value in state_dict.items():
        renamed_name = _rename_gluon(name)
        if renamed_name != "":
            renamed[renamed_name] = value
    return renamed


def _rename_gluon(name):
    if name.startswith("head."):
        return ""
    if name.startswith("output."):
        return "fc." + name[len("output."):]
    stem = re.fullmatch(r"(conv[123])\.([01])\.(\w+)", name)
    if stem:
        tensor = _gluon_tensor(stem.group(2), stem.group(3))
        return f"{stem.group(1)}.{tensor}" if tensor else name
    block = re.fullmatch(r"(inception\d[a-e])\.([0-3])\.(\d)\.([01])\.(\w+)", name)
    if block:
        module, branch, step, layer, tensor_name = block.groups()
        tensor = _gluon_tensor(layer, tensor_name)
        if tensor is None:
            return name
        torch_branch = _GLUON_BRANCHES[branch]
        if branch == "0":
            return f"{module}.{torch_branch}.{tensor}" if step == "0" else name
        return f"{module}.{torch_branch}.{step}.{tensor}"
    return name


#: Translations by name (a `WeightSource.rename`).
RENAMES = {"gluoncv_googlenet": gluoncv_googlenet_to_torchvision}
