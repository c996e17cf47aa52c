"""Sharing Matters from a training config (the `sharing` section; used by `tfdml.training.runner`)."""
import collections

import tfdml
from tfdml.losses.shared_triplets import SharedTripletLoss
from tfdml.sharing.data import paired_train_pipeline
from tfdml.sharing.grouping import GroupAssignment, RegroupingCallback
from tfdml.sharing.objective import SharingObjective

#: What the training job needs: the objective to compile with, the (B, B*) dataset, extra callbacks and the
#: number of optimizer updates per step (2: learning-rate schedules count updates).
SharingTraining = collections.namedtuple("SharingTraining", ["objective", "train_data", "callbacks",
                                                             "updates_per_step"])

SHARED_TRIPLET = "shared_triplet"


def build_shared_loss(section, num_labels=None):
    """The loss on φ* from `sharing.shared_loss` ({name, params}).

    "shared_triplet" is `tfdml.losses.SharedTripletLoss` (T*); any registered
    tfdml loss name works too (the grouping variant's ordinary triplets on
    group ids); `num_labels` fills `num_classes` for losses that take it.
    """
    params = dict(section["params"])
    if section["name"] == SHARED_TRIPLET:
        try:
            return SharedTripletLoss(**params)
        except TypeError as error:
            raise ValueError(f"Config key 'sharing.shared_loss.params': {error}") from None
    cls = tfdml.losses.get_class(section["name"])
    if num_labels is not None and "num_classes" in cls.config_args:
        params.setdefault("num_classes", int(num_labels))
    return tfdml.losses.get(section["name"], **params)


def sharing_training(config, class_loss, train_split):
    """Objective, paired training data and callbacks for a validated config with a `sharing` section.

    Call under the strategy scope (the objective creates variables).

    Args:
        config: validated config (`config["sharing"]` not None).
        class_loss: the loss on φ (`tfdml.training.build_loss`).
        train_split: the training `tfdml.data.Split`.

    Returns:
        `SharingTraining(objective, train_data, callbacks, updates_per_step=2)`.
    """
    sharing, sampler, data = config["sharing"], config["sampler"], config["dataset"]
    groups = sharing["groups"]
    shared_loss = build_shared_loss(sharing["shared_loss"], groups or train_split.num_classes)
    objective = SharingObjective(class_loss, shared_loss, gamma=sharing["gamma"],
                                 regressor_units=sharing["regressor_units"])
    assignment = GroupAssignment(len(train_split.labels)) if groups else None
    train_data = paired_train_pipeline(
        train_split, batch_size=sampler["batch_size"], sampler=sampler["name"],
        samples_per_class=sampler["samples_per_class"], augmentation=config["augmentation"]["train"],
        image_size=data["image_size"], seed=config["seed"], shared_labels=assignment)
    callbacks = []
    if groups:
        ordered = tfdml.data.eval_pipeline(train_split, config["training"]["eval_batch_size"], data["image_size"],
                                           config["augmentation"]["test"])
        callbacks.append(RegroupingCallback(ordered, assignment, groups, sharing["regroup_every"], config["seed"]))
    return SharingTraining(objective, train_data, callbacks, 2)
