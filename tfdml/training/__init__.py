"""Training: configs, strategies, optimizers, tfdml's training loop, the `run` job and SavedModel export."""
from tfdml.training.callbacks import BestModelCheckpoint, ResumableCSVLogger
from tfdml.training.checkpoints import Checkpointer
from tfdml.training.config import DEFAULT_CONFIG, find_config, load_config, load_yaml, parse_override, save_config, validate
from tfdml.models.export import export
from tfdml.training.hooks import MemoryBankHook
from tfdml.training.inputs import train_input
from tfdml.training.loop import TrainingLoop, fit_model
from tfdml.training.optimizers import (AdamL2, SGDL2, build_optimizer, exclude_loss_state_from_decay, make_optimizer,
                                       step_decay)
from tfdml.training.run_directory import RunDirectory, RunDirectoryError
from tfdml.training.runner import build_loss, build_model, evaluate_taps, run
from tfdml.training.strategy import cluster_resolver, is_chief, make_strategy, read_tf_config

__all__ = [
    "AdamL2",
    "BestModelCheckpoint",
    "Checkpointer",
    "DEFAULT_CONFIG",
    "MemoryBankHook",
    "ResumableCSVLogger",
    "RunDirectory",
    "RunDirectoryError",
    "SGDL2",
    "TrainingLoop",
    "build_loss",
    "build_model",
    "build_optimizer",
    "cluster_resolver",
    "evaluate_taps",
    "exclude_loss_state_from_decay",
    "export",
    "find_config",
    "fit_model",
    "is_chief",
    "load_config",
    "load_yaml",
    "make_optimizer",
    "make_strategy",
    "parse_override",
    "read_tf_config",
    "run",
    "save_config",
    "step_decay",
    "train_input",
    "validate",
]
