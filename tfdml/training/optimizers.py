"""Optimizers and the learning-rate schedule of a config, with coupled or decoupled weight decay.

Weight decay λ comes in two forms (`optimizer.weight_decay_mode`):

- "coupled" (L2, the papers' codes): λ·w is added to the gradient before the
  optimizer's update, g ← g + λ·w, so it passes through Adam's moments or SGD's
  momentum. This is MXNet's `wd` (the EE code, Adam), PyTorch's
  `weight_decay` of `torch.optim.Adam` / `SGD` (Roth et al.; Vo & Hays, SGD) —
  `AdamL2` and `SGDL2` below.
- "decoupled" (Keras' `weight_decay`, AdamW style): w ← w − lr·λ·w before the
  update, independent of the gradient (Loshchilov & Hutter).

At Adam's small learning rates the two differ hugely: decoupled decay shrinks w
by lr·λ per step (1e-4 · 5e-4 = 5e-8), coupled decay pulls each weight with a
step of about lr per update wherever λ·w dominates its gradient.

Which variables decay: every trainable variable the optimizer updates — kernels,
biases and BatchNorm γ/β alike, as PyTorch's and MXNet's `weight_decay` on
`model.parameters()` do — except the trainable state of a tfdml loss (the margin
loss's β, proxies), which Roth et al.'s code optimises in a parameter group of its
own without weight decay. `exclude_loss_state_from_decay` sets that up;
`optimizer.exclude_from_weight_decay` excludes more (both modes).

Update rules (checked against explicit numpy updates in tests/test_weight_decay.py):
`AdamL2` is MXNet's Adam with `wd` exactly — m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g²,
w ← w − lr·√(1−β₂ᵗ)/(1−β₁ᵗ) · m/(√v + ε) on g = ∇ + λw; PyTorch's Adam puts ε after
the bias correction (ε·√(1−β₂ᵗ) here), a difference of order ε. `SGDL2` is
PyTorch's SGD with momentum: with a constant rate Keras' velocity equals −lr times
PyTorch's buffer, so the steps are identical; when the rate changes, Keras' velocity
keeps the old rate's steps (PyTorch applies the new rate to the whole buffer).

The decay is added in `update_step`, which Keras calls once per variable with
the gradient already summed over replicas, so it is applied once per step under
any `tf.distribute` strategy, in `model.fit` and in `tfdml.training.TrainingLoop`,
after loss-scale unscaling (mixed precision) and gradient clipping.
"""
import keras
import tensorflow as tf

from tfdml.checks import check_choice, check_number

OPTIMIZERS = ("adam", "sgd")
WEIGHT_DECAY_MODES = ("coupled", "decoupled")


class _CoupledWeightDecay:
    """Mixin: adds `l2 · variable` to each gradient in `update_step` (see module docstring)."""

    def __init__(self, *args, l2=0.0, **kwargs):
        if kwargs.get("weight_decay"):
            raise ValueError(f"{type(self).__name__} applies coupled weight decay `l2`; weight_decay (decoupled) "
                             "must be None.")
        super().__init__(*args, **kwargs)
        self.l2 = check_number(l2, "l2", minimum=0.0)

    def update_step(self, gradient, variable, learning_rate):
        if self.l2 and self._use_weight_decay(variable):
            if isinstance(gradient, tf.IndexedSlices):  # decay touches every row, as PyTorch's dense decay
                gradient = tf.convert_to_tensor(gradient)
            gradient = keras.ops.cast(gradient, variable.dtype) + keras.ops.cast(self.l2, variable.dtype) * variable
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


@keras.saving.register_keras_serializable(package="tfdml")
class AdamL2(_CoupledWeightDecay, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with coupled weight decay (L2 added to the gradient).

    The EE code's optimizer (MXNet Adam with `wd`) and Roth et al.'s
    (`torch.optim.Adam(weight_decay=…)`); see `tfdml.training.optimizers`.

    Args:
        l2: coefficient λ ≥ 0 of the decay term λ·w added to the gradient.
        **kwargs: other `keras.optimizers.Adam` arguments (`learning_rate`: a
            float or a schedule; not `weight_decay`).
    """


@keras.saving.register_keras_serializable(package="tfdml")
class SGDL2(_CoupledWeightDecay, keras.optimizers.SGD):
    """`keras.optimizers.SGD` with coupled weight decay (L2 added to the gradient).

    `torch.optim.SGD(momentum=…, weight_decay=…)` as used by Vo & Hays; see
    `tfdml.training.optimizers`.

    Args:
        l2: coefficient λ ≥ 0 of the decay term λ·w added to the gradient.
        **kwargs: other `keras.optimizers.SGD` arguments (`learning_rate`: a
            float or a schedule; not `weight_decay`).
    """


def step_decay(learning_rate, decay_epochs, factor, steps_per_epoch):
    """The official EE step decay: the rate is multiplied by `factor` at each epoch in `decay_epochs`.

    Returns a float (no decay epochs) or a serialisable
    `keras.optimizers.schedules.PiecewiseConstantDecay` over optimizer steps.
    """
    epochs = sorted(int(e) for e in decay_epochs)
    if not epochs:
        return float(learning_rate)
    boundaries = [e * steps_per_epoch for e in epochs]
    values = [float(learning_rate) * factor ** i for i in range(len(epochs) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def build_optimizer(name, learning_rate, weight_decay=0.0, mode="decoupled", momentum=0.9):
    """Adam or SGD (with momentum) with coupled or decoupled weight decay.

    Args:
        name: "adam" or "sgd".
        learning_rate: float or schedule.
        weight_decay: λ ≥ 0 (0: none).
        mode: "coupled" (`AdamL2` / `SGDL2`) or "decoupled" (Keras' `weight_decay`).
        momentum: SGD momentum.
    """
    check_choice(name, "name", OPTIMIZERS)
    check_choice(mode, "mode", WEIGHT_DECAY_MODES)
    weight_decay = check_number(weight_decay, "weight_decay", minimum=0.0)
    sgd = {"momentum": momentum} if name == "sgd" else {}
    if mode == "coupled":
        return (AdamL2 if name == "adam" else SGDL2)(learning_rate, l2=weight_decay, **sgd)
    cls = keras.optimizers.Adam if name == "adam" else keras.optimizers.SGD
    return cls(learning_rate, weight_decay=weight_decay or None, **sgd)


def make_optimizer(config, steps_per_epoch):
    """The optimizer of a config: `optimizer.name`, `learning_rate` (with `schedule`), `weight_decay`
    in `weight_decay_mode` and SGD's `momentum` (see `build_optimizer`)."""
    opt = config["optimizer"]
    schedule = step_decay(opt["learning_rate"], config["schedule"]["decay_epochs"], config["schedule"]["factor"],
                          steps_per_epoch)
    return build_optimizer(opt["name"], schedule, opt["weight_decay"], opt["weight_decay_mode"], opt["momentum"])


def exclude_loss_state_from_decay(optimizer, model):
    """Excludes the trainable loss state attached to `model` (`tfdml.losses.LossVariable` layers: β,
    proxies) from `optimizer`'s weight decay, as Roth et al.'s code does. Call after the state is attached
    (`EmbeddingModel.compile`, or `tfdml.losses.attach_loss_state`) and before the optimizer is built.
    Returns the excluded variables."""
    from tfdml.losses.state import LossVariable

    variables = [v for layer in model._flatten_layers(include_self=False, recursive=True)
                 if isinstance(layer, LossVariable) for v in layer.trainable_variables]
    if variables:
        optimizer.exclude_from_weight_decay(var_list=variables)
    return variables
