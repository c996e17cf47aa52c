"""Re-initialising named layers of a (pretrained) model (Vo & Hays NetB)."""
import difflib

import keras


def find_layers(model, names, argument="reinitialize"):
    """The layers of `model` (searched recursively, nested models included) called `names`.

    Raises:
        ValueError: a name matches no layer (the message suggests close names and
            names `argument`).
    """
    layers = {layer.name: layer for layer in model._flatten_layers(include_self=False, recursive=True)}
    found = []
    for name in names:
        if name not in layers:
            close = difflib.get_close_matches(name, list(layers), n=5)
            hint = f" Close names: {close}." if close else ""
            raise ValueError(f"{argument}: no layer named {name!r} in model {model.name!r}.{hint} "
                             "All names: model.summary(expand_nested=True).")
        found.append(layers[name])
    return found


def reinitialize_layers(model, names, argument="reinitialize"):
    """Draws fresh initial values for every weight of the named layers, in place.

    Each layer is rebuilt from its own config (same initializers, same shapes) and
    its variables — trainable and non-trainable (BatchNorm statistics) — are
    assigned the new layer's values; all other layers are left untouched.

    Args:
        model: a built `keras.Model`.
        names: layer names (layers of nested models included).
        argument: name used in error messages.

    Raises:
        ValueError: unknown name, or a named layer has no weights.
    """
    names = list(names)
    if len(set(names)) != len(names):
        raise ValueError(f"{argument} names a layer twice: {names}.")
    for layer in find_layers(model, names, argument):
        if not layer.weights:
            raise ValueError(f"{argument}: layer {layer.name!r} ({type(layer).__name__}) has no weights to "
                             "re-initialise.")
        fresh = type(layer).from_config(layer.get_config())
        fresh.build_from_config(layer.get_build_config())
        if len(fresh.weights) != len(layer.weights):
            raise RuntimeError(f"Cannot re-initialise layer {layer.name!r}: its rebuilt copy has "
                               f"{len(fresh.weights)} weights, the layer {len(layer.weights)}.")
        for variable, value in zip(layer.weights, fresh.weights):
            variable.assign(keras.ops.convert_to_tensor(value))
