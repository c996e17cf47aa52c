"""Assigns a PyTorch state dict (numpy arrays by tensor name) to the layers of a Keras backbone.

Layouts: a PyTorch `Conv2d` weight is (out, in, kh, kw) and a Keras `Conv2D`
kernel (kh, kw, in, out); a `Linear` weight is (out, in) and a `Dense` kernel
(in, out); `BatchNorm2d`'s weight / bias / running_mean / running_var are
Keras' gamma / beta / moving_mean / moving_variance (its `num_batches_tracked`
counter has no Keras counterpart and is consumed without being used).
"""
import numpy as np

import keras


class StateDictMismatchError(ValueError):
    """A state dict does not fit a backbone: a tensor is missing, extra or of the wrong shape."""


def _conv_tensors(layer, prefix):
    tensors = [(layer.kernel, f"{prefix}.weight", lambda w: np.transpose(w, (2, 3, 1, 0)))]
    if layer.use_bias:
        tensors.append((layer.bias, f"{prefix}.bias", None))
    return tensors


def _dense_tensors(layer, prefix):
    tensors = [(layer.kernel, f"{prefix}.weight", np.transpose)]
    if layer.use_bias:
        tensors.append((layer.bias, f"{prefix}.bias", None))
    return tensors


def _batchnorm_tensors(layer, prefix):
    tensors = []
    if layer.scale:
        tensors.append((layer.gamma, f"{prefix}.weight", None))
    if layer.center:
        tensors.append((layer.beta, f"{prefix}.bias", None))
    tensors += [(layer.moving_mean, f"{prefix}.running_mean", None),
                (layer.moving_variance, f"{prefix}.running_var", None)]
    return tensors


_TENSORS = (
    (keras.layers.Conv2D, _conv_tensors),
    (keras.layers.Dense, _dense_tensors),
    (keras.layers.BatchNormalization, _batchnorm_tensors),
)
# Buffers a PyTorch module saves that have no Keras variable; consumed, not assigned.
_UNUSED_SUFFIXES = (".num_batches_tracked",)


def _layer_tensors(layer, prefix):
    for kind, tensors in _TENSORS:
        if isinstance(layer, kind):
            return tensors(layer, prefix)
    raise TypeError(f"Layer {layer.name!r} ({type(layer).__name__}) has no PyTorch counterpart.")


def _find_layers(model):
    return {layer.name: layer for layer in model._flatten_layers(include_self=False)}


def assign_state_dict(model, state_dict, layer_map, ignored_prefixes=(), source="state dict"):
    """Copies PyTorch tensors into `model`'s layers, checking that every tensor is used exactly once.

    Args:
        model: the Keras backbone (nested layers are found by name).
        state_dict: {tensor name: numpy array}, as the PyTorch module's `state_dict()`.
        layer_map: {Keras layer name: PyTorch module prefix}, e.g. {"conv1_conv": "conv1"}.
        ignored_prefixes: tensor-name prefixes that are not part of the backbone
            (classifier, auxiliary heads), e.g. ("fc.", "aux1.").
        source: how to name the state dict in errors (a file name).

    Raises:
        StateDictMismatchError: a tensor the backbone needs is missing, has the
            wrong shape, or a tensor outside `ignored_prefixes` is left unused.
    """
    layers = _find_layers(model)
    unknown = sorted(set(layer_map) - set(layers))
    if unknown:
        raise ValueError(f"layer_map names layers that {model.name!r} does not have: {unknown[:5]}.")
    assignments, missing = [], []
    for layer_name, prefix in layer_map.items():
        for variable, tensor_name, transform in _layer_tensors(layers[layer_name], prefix):
            if tensor_name not in state_dict:
                missing.append(tensor_name)
                continue
            value = np.asarray(state_dict[tensor_name])
            value = transform(value) if transform is not None else value
            if tuple(value.shape) != tuple(variable.shape):
                raise StateDictMismatchError(
                    f"{source}: tensor {tensor_name!r} has shape {tuple(state_dict[tensor_name].shape)}, which does "
                    f"not fit layer {layer_name!r} (expects {tuple(variable.shape)} in Keras' layout).")
            assignments.append((variable, value, tensor_name))
    if missing:
        raise StateDictMismatchError(f"{source}: {len(missing)} tensor(s) needed by {model.name!r} are missing: "
                                     f"{', '.join(missing[:8])}{' …' if len(missing) > 8 else ''}.")
    used = {name for _, _, name in assignments}
    extra = sorted(name for name in state_dict if name not in used and not name.startswith(tuple(ignored_prefixes))
                   and not (name.endswith(_UNUSED_SUFFIXES) and name.rsplit(".", 1)[0] in layer_map.values()))
    if extra:
        raise StateDictMismatchError(f"{source}: {len(extra)} tensor(s) have no place in {model.name!r}: "
                                     f"{', '.join(extra[:8])}{' …' if len(extra) > 8 else ''}.")
    for variable, value, _ in assignments:
        variable.assign(value.astype(variable.dtype))


def unassigned_variables(model, layer_map):
    """Names of `model`'s weights that `layer_map` does not cover (a layer map's completeness check)."""
    covered = set()
    layers = _find_layers(model)
    for layer_name, prefix in layer_map.items():
        covered.update(id(variable) for variable, _, _ in _layer_tensors(layers[layer_name], prefix))
    return [variable.path for variable in model.weights if id(variable) not in covered]
