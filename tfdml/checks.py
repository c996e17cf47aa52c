"""Argument checks shared by all of tfdml.

Each check returns the (converted) value or raises a `ValueError` whose message
starts with the argument's name, so a bad constructor argument or config value is
reported by the name the user typed. This module imports nothing from tfdml, so
every subpackage can use it.
"""


def check_choice(value, argument, allowed):
    """`value` if it is one of `allowed`.

    Raises:
        ValueError: "Unknown {argument}={value!r}; expected one of [...]".
    """
    if value not in allowed:
        raise ValueError(f"Unknown {argument}={value!r}; expected one of {list(allowed)}.")
    return value


def check_number(value, argument, minimum=None, maximum=None, greater_than=None, less_than=None):
    """A real number (not a bool, not NaN) within the given bounds, as a float.

    Args:
        value: the value to check.
        argument: the argument's name, used in the error message.
        minimum, maximum: inclusive bounds (None: unbounded).
        greater_than, less_than: exclusive bounds (None: unbounded).

    Raises:
        ValueError: naming `argument` and the violated bounds.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"{argument} must be a number, got {value!r}.")
    bounds = [(">=", minimum, value >= minimum if minimum is not None else True),
              ("<=", maximum, value <= maximum if maximum is not None else True),
              (">", greater_than, value > greater_than if greater_than is not None else True),
              ("<", less_than, value < less_than if less_than is not None else True)]
    if not all(ok for _, _, ok in bounds):
        text = " and ".join(f"{op} {bound}" for op, bound, _ in bounds if bound is not None)
        raise ValueError(f"{argument} must be {text}, got {value!r}.")
    return float(value)


def check_int(value, argument, minimum=None):
    """An int (not a bool) that is at least `minimum`.

    Raises:
        ValueError: naming `argument` ("must be a positive int" for minimum 1,
            "a non-negative int" for 0).
    """
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        kind = {0: "a non-negative int", 1: "a positive int"}.get(minimum, "an int")
        if minimum is not None and minimum not in (0, 1):
            kind = f"an int >= {minimum}"
        raise ValueError(f"{argument} must be {kind}, got {value!r}.")
    return value


def check_seed(seed, argument="seed"):
    """An int seed or None.

    Raises:
        ValueError: naming `argument` for anything else (a seed must serialise
            into a config).
    """
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"{argument} must be an int or None, got {seed!r}.")
    return seed
