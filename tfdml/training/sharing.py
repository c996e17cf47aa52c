"""Sharing Matters in training: config glue (the `sharing` section), its input and its loop."""
import collections

from tfdml import losses
from tfdml.data.pipelines import eval_pipeline
from tfdml.losses.shared_triplets import SharedTripletLoss
from tfdml.sharing.data import paired_batches
from tfdml.sharing.grouping import GroupAssignment, RegroupingCallback
from tfdml.sharing.objective import SharingObjective
from tfdml.training.inputs import train_input
from tfdml.training.loop import TrainingLoop

#: What the training job needs: the objective to compile with, the (B, B*) `TrainingLoop` input, extra callbacks
#: and the number of optimizer updates per step (2: learning-rate schedules count updates).
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
    cls = losses.get_class(section["name"])
    if num_labels is not None and "num_classes" in cls.config_args:
        params.setdefault("num_classes", int(num_labels))
    return losses.get(section["name"], **params)


def paired_train_input(split, batch_size=112, seed=0, shared_labels=None, **pipeline_kwargs):
    """`paired_train_pipeline` as a `tfdml.training.TrainingLoop` input under any strategy.

    Each replica reads its share of both global batches (`tfdml.training.train_input`):
    B with `seed`, B* with `seed + 1` and `shared_labels`.

    Returns:
        A function `(tf.distribute.InputContext, skip_batches) → dataset of
        ((images, labels), (shared_images, shared_labels))` per-replica pairs.
    """
    batches = train_input(split, batch_size, seed=seed, **pipeline_kwargs)
    shared = train_input(split, batch_size, seed=seed + 1, relabel=shared_labels, **pipeline_kwargs)
    return lambda context, skip_batches=0: paired_batches(batches(context, skip_batches), shared(context, skip_batches))


def sharing_training(config, class_loss, train_split):
    """Objective, paired training data and callbacks for a validated config with a `sharing` section.

    Call under the strategy scope (the objective creates variables).

    Args:
        config: validated config (`config["sharing"]` not None).
        class_loss: the loss on φ (`tfdml.training.build_loss`).
        train_split: the training `tfdml.data.Split`.

    Returns:
        `SharingTraining(objective, train_data, callbacks, updates_per_step)` (2; 1 in mode "shared_only"); `train_data` is a
        `TrainingLoop.fit` input function of (B, B*) pairs.
    """
    sharing, sampler, data = config["sharing"], config["sampler"], config["dataset"]
    groups = sharing["groups"]
    shared_loss = build_shared_loss(sharing["shared_loss"], groups or train_split.num_classes)
    objective = SharingObjective(class_loss, shared_loss, gamma=sharing["gamma"],
                                 regressor_units=sharing["regressor_units"],
                                 regressor_normalize=sharing["regressor_normalize"], mode=sharing["mode"])
    assignment = GroupAssignment(len(train_split.labels)) if groups else None
    train_data = paired_train_input(
        train_split, batch_size=sampler["batch_size"], sampler=sampler["name"],
        samples_per_class=sampler["samples_per_class"], augmentation=config["augmentation"]["train"],
        image_size=data["image_size"], seed=config["seed"], shared_labels=assignment)
    callbacks = []
    if groups:
        ordered = eval_pipeline(train_split, config["training"]["eval_batch_size"], data["image_size"],
                                           config["augmentation"]["test"])
        callbacks.append(RegroupingCallback(ordered, assignment, groups, sharing["regroup_every"], config["seed"],
                                            sharing["standardize_groups"]))
    return SharingTraining(objective, train_data, callbacks, objective.updates_per_iteration)


class SharingTrainingLoop(TrainingLoop):
    """`tfdml.training.TrainingLoop` running Algorithm 1: each step is
    `SharingObjective.train_iteration` on a (B, B*) pair (two optimizer updates).

    The model must be compiled with a `SharingObjective` (`model.tfdml_sharing`);
    the input yields `((images, labels), (shared_images, shared_labels))`
    (`tfdml.sharing.paired_train_input`).
    """

    def __init__(self, model, **kwargs):
        objective = getattr(model, "tfdml_sharing", None)
        if objective is None:
            raise ValueError("SharingTrainingLoop needs a model compiled with a tfdml.sharing.SharingObjective.")
        kwargs.setdefault("loss", objective)
        super().__init__(model, **kwargs)

    def train_step(self, data):
        """One iteration of Algorithm 1 on `data = (batch, shared_batch)`:
        `SharingObjective.train_iteration` (two optimizer updates)."""
        return self.loss.train_iteration(self.model, self.optimizer, data[0], data[1])
