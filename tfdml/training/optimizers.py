"""Optimizer and learning-rate schedule from a config."""
import keras

OPTIMIZERS = ("adam", "sgd")


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


def make_optimizer(config, steps_per_epoch):
    """Adam or SGD (momentum) with Keras 3's decoupled weight decay.

    Note: the EE official code (MXNet) adds weight decay to the gradient (L2);
    Keras 3 applies it decoupled from the adaptive step (as AdamW).
    """
    opt = config["optimizer"]
    schedule = step_decay(opt["learning_rate"], config["schedule"]["decay_epochs"], config["schedule"]["factor"],
                          steps_per_epoch)
    weight_decay = opt["weight_decay"] or None
    if opt["name"] == "adam":
        return keras.optimizers.Adam(schedule, weight_decay=weight_decay)
    return keras.optimizers.SGD(schedule, momentum=opt["momentum"], weight_decay=weight_decay)
