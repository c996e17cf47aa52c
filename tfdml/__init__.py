"""tfdml: deep metric learning for TensorFlow 2.16+ / Keras 3.

Core objects are imported eagerly (`tfdml.losses`, `tfdml.distances`,
`tfdml.EmbeddingExpansion`, `tfdml.models`, so that every registered Keras class
can be deserialised after `import tfdml`); the heavier sub-packages (`data`,
`training`, `metrics`, `analysis`, `retrieval`) load on first attribute access so that
`import tfdml` does not pull in scikit-learn, matplotlib or tensorflow-datasets.
"""
import importlib

from tfdml import _startup

# The command-line tools hide TensorFlow's C++ start-up lines; library users when they set
# TF_CPP_MIN_LOG_LEVEL >= 2 before the import (see tfdml._startup).
_library_quiet = _startup.quiet_requested()
with _startup.filtered_stderr(_startup.prepare_cli() or _library_quiet):
    if _library_quiet:
        import tensorflow as _tf

        _tf.config.list_physical_devices()  # the CUDA probe inside the filter; devices stay configurable
    from tfdml import distances
    from tfdml.expansion import EmbeddingExpansion, expand
    from tfdml import losses
    from tfdml import models
    from tfdml.models.export import export

__version__ = "0.1.0"

_LAZY_SUBMODULES = ("data", "training", "metrics", "analysis", "retrieval")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        module = importlib.import_module(f"tfdml.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'tfdml' has no attribute {name!r}")


__all__ = [
    "EmbeddingExpansion",
    "expand",
    "distances",
    "losses",
    "models",
    "export",
    *_LAZY_SUBMODULES,
]
