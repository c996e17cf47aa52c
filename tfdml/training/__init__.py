"""Training: configs, strategies, optimizers, the `run` job and SavedModel export."""
from tfdml.training.config import DEFAULT_CONFIG, load_config, parse_override, save_config, validate
from tfdml.models.export import export
from tfdml.training.optimizers import make_optimizer, step_decay
from tfdml.training.runner import build_loss, build_model, evaluate_taps, run
from tfdml.training.strategy import make_strategy

__all__ = [
    "DEFAULT_CONFIG",
    "build_loss",
    "build_model",
    "evaluate_taps",
    "export",
    "load_config",
    "make_optimizer",
    "make_strategy",
    "parse_override",
    "run",
    "save_config",
    "step_decay",
    "validate",
]
