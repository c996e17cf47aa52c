"""Name → loss-class registry behind `tfdml.losses.get`."""
import keras

_REGISTRY = {}


def register(name):
    """Class decorator: registers a loss under `name` (also set as the class's `registered_name`) and as
    Keras-serialisable."""

    def decorator(cls):
        if name in _REGISTRY:
            raise ValueError(f"A loss named {name!r} is already registered.")
        _REGISTRY[name] = cls
        cls.registered_name = name
        return keras.saving.register_keras_serializable(package="tfdml")(cls)

    return decorator


def names():
    """Sorted names of all registered losses."""
    return sorted(_REGISTRY)


def get(name, **kwargs):
    """Builds the loss registered as `name` with `kwargs`.

    Args:
        name: registered name (see `names()`), e.g. "triplet" or "margin".
        **kwargs: constructor arguments of that loss.

    Returns:
        A `keras.losses.Loss` instance.

    Raises:
        ValueError: unknown name (the message lists the valid names) or unknown
            keyword arguments (the message lists the loss's parameters).
    """
    cls = get_class(name)
    valid = tuple(getattr(cls, "config_args", ()) or ())
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ValueError(f"Bad arguments for loss {name!r}: {error}; its parameters are: "
                         f"{', '.join(valid) or 'see its docstring'}.") from error


def get_class(name):
    """The class registered as `name`."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown loss {name!r}; valid names: {', '.join(names())}.")
    return _REGISTRY[name]
