"""`SharingObjective`: eq. 3 of "Sharing Matters" and one iteration of its Algorithm 1."""
import keras
import tensorflow as tf

from tfdml.checks import check_choice, check_number
from tfdml.losses import distributed
from tfdml.losses.base import MetricLoss, validate_inputs
from tfdml.losses.margin import MarginLoss
from tfdml.losses.shared_triplets import SharedTripletLoss
from tfdml.sharing.decorrelation import DecorrelationRegressor, decorrelation, reverse_gradient

#: Keys of the logs of one iteration (`train_iteration`, `train_step`, `test_step`).
LOG_KEYS = ("loss", "class_loss", "shared_loss", "class_decorrelation", "shared_decorrelation")
"""Keys of the logs of one iteration (`train_iteration`, `train_step`, `test_step`)."""
MODES = ("sharing", "shared_only", "both")
"""Training modes. "sharing": eq. 3 and Algorithm 1. Table 7's ablations, both without the decorrelation r:
"shared_only" trains φ* on T* alone (one update per iteration, on B*); "both" trains one embedding, the class
head φ, on both tasks alternately (L(T; φ) on B, then L(T*; φ) on B*)."""


def _deserialize_loss(loss, default):
    if loss is None:
        return default()
    if isinstance(loss, dict):
        return keras.saving.deserialize_keras_object(loss)
    if not isinstance(loss, keras.losses.Loss):
        raise ValueError(f"Expected a keras.losses.Loss (a tfdml loss), got {loss!r}.")
    return loss


def _gather(x):
    """All-gathers `x` along the batch axis across replicas (no-op with one replica), keeping the static
    width (`ReplicaContext.all_gather` returns an unknown static shape)."""
    if distributed.replica_count() <= 1:
        return x
    return tf.ensure_shape(tf.distribute.get_replica_context().all_gather(x, axis=0), [None, *x.shape[1:]])


def _ranking_loss(loss, labels, embeddings):
    """`loss(labels, embeddings)` — the loss mines the global batch under a strategy.

    With several replicas a tfdml loss is evaluated here on the all-gathered
    batch with its static width kept (exactly what `MetricLoss.__call__` does,
    whose gather loses the width that distance-weighted sampling needs).
    """
    if distributed.replica_count() <= 1 or not isinstance(loss, MetricLoss) or not loss.gather_replicas:
        return loss(labels, embeddings)
    labels, embeddings = validate_inputs(labels, embeddings)
    labels = tf.ensure_shape(tf.distribute.get_replica_context().all_gather(labels, axis=0), [None])
    embeddings = tf.cast(_gather(embeddings), loss.compute_dtype)
    return distributed.scale_for_replicas(loss.compute_mined(labels, embeddings))


def _unscaled(value):
    """A per-replica loss (scaled by 1/replicas, Keras' rule) back to the global value, for logging."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return value * replicas if replicas > 1 else value


@keras.saving.register_keras_serializable(package="tfdml")
class SharingObjective(keras.layers.Layer):
    """Milbich et al.'s objective (eq. 3) and training step (Algorithm 1).

        L = L(T; φ) + L(T*; φ*) − γ · r(R(φ), R(φ*))

    φ, φ* are the L2-normalised "class" and "shared" heads of a two-head
    `tfdml.models.EmbeddingModel(heads={"class": D, "shared": D*})`, R is the
    gradient reversal (`reverse_gradient`), r the decorrelation of eq. 2
    with regressor p (`DecorrelationRegressor`): p maximises r while heads and
    backbone minimise it. Use it as the model's loss:

        model.compile(optimizer=keras.optimizers.Adam(1e-5),
                      loss=tfdml.sharing.SharingObjective(gamma=500.0))
        model.fit(tfdml.sharing.paired_batches(batches, shared_batches))

    Each training element is a pair of class-sampled batches
    `((images, labels), (shared_images, shared_labels))` = (B, B*); one step
    (`train_iteration`) runs Algorithm 1: on B, L(T(B); φ) − γ r(B) and an
    optimizer update; on B*, L(T*(B*); φ*) − γ r(B*) and a second update
    (so `optimizer.iterations` advances by 2). Each update covers every
    trainable variable with a gradient (backbone, both heads, p, the step's
    loss state such as β or β*). For the grouping variant T^G the B* labels are
    group ids (`tfdml.sharing.grouping`) and `shared_loss` an ordinary loss.

    Under a `tf.distribute` strategy the losses mine the global batch (they
    all-gather), and r is computed on the all-gathered φ, φ* and scaled by
    1/replicas, so a step equals one device with the global batch.

    `attach(model)` (called by `EmbeddingModel.compile`) builds p and the loss
    state and assigns this layer to `model.tfdml_sharing`, so `model.fit`
    trains them and checkpoints / `.keras` files save them; embedders and
    exports never contain them.

    Logs: "loss" (the sum of both updates' objectives), "class_loss" L(T; φ),
    "shared_loss" L(T*; φ*), "class_decorrelation" / "shared_decorrelation"
    (r on B / B*), averaged over the epoch.

    Args:
        class_loss: tfdml loss on φ (default `MarginLoss()`: α = 0.2, β = 1.2
            learnable, distance-weighted sampling).
        shared_loss: loss on φ* (default `SharedTripletLoss()`: margin form
            with its own β*, distance-weighted T*).
        gamma: γ ≥ 0, weight of the decorrelation (the paper's range over
            datasets: 500–2000).
        regressor_units: hidden width of p (tfdml's choice: 512; the paper
            does not give it).
        regressor_normalize: L2-normalise p's output (tfdml's choice, default
            True; False is eq. 2 with p's raw output).
        class_head: head name of φ in the model.
        shared_head: head name of φ* in the model.
        mode: one of `MODES` ("sharing" by default; the others are Table 7's
            ablations and ignore `gamma`).
    """

    def __init__(self, class_loss=None, shared_loss=None, gamma=500.0, regressor_units=512, regressor_normalize=True,
                 class_head="class", shared_head="shared", mode="sharing", **kwargs):
        super().__init__(**kwargs)
        self.class_loss = _deserialize_loss(class_loss, MarginLoss)
        self.shared_loss = _deserialize_loss(shared_loss, SharedTripletLoss)
        self.gamma = check_number(gamma, "gamma", 0.0)
        self.regressor_units = int(regressor_units)
        self.regressor_normalize = bool(regressor_normalize)
        self.class_head, self.shared_head = str(class_head), str(shared_head)
        self.mode = check_choice(mode, "mode", MODES)
        self.regressor = None
        self.class_loss_state = self.class_loss.state_layer
        self.shared_loss_state = self.shared_loss.state_layer
        self.trackers = [keras.metrics.Mean(name=key) for key in LOG_KEYS]

    # ------------------------------------------------------------------ set-up
    def attach(self, model):
        """Builds p (D* → D) and the losses' state for `model`'s heads and makes `model` track them.

        Raises:
            ValueError: `model` lacks the two heads, or is already attached to
                another objective, or does not track attributes.
        """
        heads = getattr(model, "heads", None) or {}
        missing = [h for h in (self.class_head, self.shared_head) if h not in heads]
        if missing:
            raise ValueError(f"SharingObjective needs a model with heads {self.class_head!r} and {self.shared_head!r} "
                             f"(EmbeddingModel(heads={{...}})); the model's heads are {heads or None}.")
        self.build_for(heads[self.class_head], heads[self.shared_head])
        attached = getattr(model, "tfdml_sharing", None)
        if attached is not None and attached is not self:
            raise ValueError("This model is already attached to another SharingObjective; build a new model to "
                             "train with a different objective.")
        model.tfdml_sharing = self
        tracked = {id(v) for v in model.trainable_variables}
        if not all(id(v) in tracked for v in self.trainable_variables):
            raise ValueError(f"{type(model).__name__} does not track the objective's variables.")
        return self

    def build_for(self, dim, shared_dim):
        """Builds p (`shared_dim` → `dim`) and the losses' state (idempotent; `attach` calls it)."""
        if self.regressor is None:
            self.regressor = DecorrelationRegressor(dim, self.regressor_units, self.regressor_normalize,
                                                    name="regressor", dtype=self.dtype_policy)
            self.regressor.build((None, shared_dim))
        elif self.regressor.output_dim != dim:
            raise ValueError(f"This SharingObjective was built for D = {self.regressor.output_dim}, the model's "
                             f"{self.class_head!r} head has {dim}.")
        self.class_loss.build_state(dim)
        self.shared_loss.build_state(shared_dim)
        for state in (self.class_loss_state, self.shared_loss_state):
            if state is not None:
                state.built = True
        self.built = True
        return self

    # -------------------------------------------------------------- the terms
    def decorrelation(self, class_embeddings, shared_embeddings):
        """r(R(φ), R(φ*)) of eq. 2 on the global batch, scaled by 1/replicas (see the class docstring)."""
        phi = reverse_gradient(_gather(class_embeddings))
        prediction = self.regressor(reverse_gradient(_gather(shared_embeddings)))
        return distributed.scale_for_replicas(decorrelation(phi, prediction))

    def terms(self, labels, class_embeddings, shared_embeddings, head):
        """(ranking loss, r) of one step of Algorithm 1 on a batch's embeddings.

        Args:
            labels: (B,) labels of the batch.
            class_embeddings: (B, D) φ.
            shared_embeddings: (B, D*) φ*.
            head: `class_head` (step 1: L(T; φ)) or `shared_head` (step 2:
                L(T*; φ*)).

        Returns:
            (ranking loss, r), both scaled by 1/replicas under a strategy; the
            step's objective is `ranking − gamma · r`.
        """
        loss = self.class_loss if head == self.class_head else self.shared_loss
        ranking = _ranking_loss(loss, labels, class_embeddings if head == self.class_head else shared_embeddings)
        return ranking, self.decorrelation(class_embeddings, shared_embeddings)

    @property
    def updates_per_iteration(self):
        """Optimizer updates per iteration: 2 (1 for "shared_only")."""
        return 1 if self.mode == "shared_only" else 2

    def _step_terms(self, model, images, labels, head, training):
        outputs = model(images, training=training)
        if self.mode == "sharing":
            return self.terms(labels, outputs[self.class_head], outputs[self.shared_head], head)
        loss = self.class_loss if head == self.class_head else self.shared_loss
        embedding = outputs[self.shared_head if self.mode == "shared_only" else self.class_head]
        ranking = _ranking_loss(loss, labels, embedding)
        return ranking, tf.zeros([], ranking.dtype)  # the ablations have no decorrelation

    def _update(self, model, optimizer, images, labels, head):
        variables = model.trainable_variables
        with tf.GradientTape() as tape:
            ranking, r = self._step_terms(model, images, labels, head, training=True)
            objective = ranking - self.gamma * tf.cast(r, ranking.dtype) if self.mode == "sharing" else ranking
            scaled = optimizer.scale_loss(objective) if hasattr(optimizer, "scale_loss") else objective
        gradients = tape.gradient(scaled, variables)
        optimizer.apply_gradients([(g, v) for g, v in zip(gradients, variables) if g is not None])
        return ranking, r, objective

    # ------------------------------------------------------------ Algorithm 1
    def train_iteration(self, model, optimizer, batch, shared_batch):
        """One iteration of Algorithm 1, per replica: two optimizer updates.

        Call it inside `strategy.run` (or directly without a strategy), after
        `optimizer.build(model.trainable_variables)` under the strategy scope
        (`model.fit` does that).

        Args:
            model: the two-head model this objective is attached to.
            optimizer: a `keras.optimizers.Optimizer`.
            batch: (images, labels) of B (class labels).
            shared_batch: (images, labels) of B* (class labels for T*, group
                ids for T^G).

        Returns:
            dict of scalar tensors with the `LOG_KEYS` (global values, not
            scaled by 1/replicas).
        """
        if not optimizer.built:
            if tf.distribute.has_strategy() and tf.distribute.in_cross_replica_context() is False:
                raise ValueError("Build the optimizer under the strategy scope before the first iteration: "
                                 "optimizer.build(model.trainable_variables).")
            optimizer.build(model.trainable_variables)
        if self.mode == "shared_only":
            shared_loss, shared_r, total = self._update(model, optimizer, *shared_batch, head=self.shared_head)
            zero = tf.zeros_like(shared_loss)
            return self._logs(total, zero, shared_loss, zero, shared_r)
        class_loss, class_r, first = self._update(model, optimizer, *batch, head=self.class_head)
        shared_loss, shared_r, second = self._update(model, optimizer, *shared_batch, head=self.shared_head)
        return self._logs(first + second, class_loss, shared_loss, class_r, shared_r)

    def evaluate_iteration(self, model, batch, shared_batch):
        """The terms of one iteration without updates (inference mode), as `train_iteration` logs them."""
        class_loss, class_r = self._step_terms(model, *batch, head=self.class_head, training=False)
        shared_loss, shared_r = self._step_terms(model, *shared_batch, head=self.shared_head, training=False)
        if self.mode == "shared_only":
            class_loss, class_r = tf.zeros_like(class_loss), tf.zeros_like(class_r)
        gamma = self.gamma if self.mode == "sharing" else 0.0
        total = class_loss + shared_loss - gamma * (tf.cast(class_r, class_loss.dtype)
                                                    + tf.cast(shared_r, class_loss.dtype))
        return self._logs(total, class_loss, shared_loss, class_r, shared_r)

    @staticmethod
    def _logs(total, class_loss, shared_loss, class_r, shared_r):
        values = (total, class_loss, shared_loss, class_r, shared_r)
        return {key: _unscaled(tf.cast(value, tf.float32)) for key, value in zip(LOG_KEYS, values)}

    # --------------------------------------------------------- model.fit hooks
    def train_step(self, model, data):
        """`model.train_step` of a model compiled with this objective."""
        return self._track(self.train_iteration(model, model.optimizer, *_unpack(data)))

    def test_step(self, model, data):
        """`model.test_step`: the same logs on a pair of batches, without updates."""
        return self._track(self.evaluate_iteration(model, *_unpack(data)))

    def _track(self, logs):
        for tracker in self.trackers:
            tracker.update_state(logs[tracker.name])
        return {tracker.name: tracker.result() for tracker in self.trackers}

    def call(self, inputs):
        """Returns `inputs`: never called as a layer of the model, present for Keras' `Layer` contract."""
        return inputs

    def get_config(self):
        """Config of this objective: both losses (serialised), `gamma`, the regressor, heads and `mode` (Keras
        serialisation)."""
        return {**super().get_config(),
                "class_loss": keras.saving.serialize_keras_object(self.class_loss),
                "shared_loss": keras.saving.serialize_keras_object(self.shared_loss),
                "gamma": self.gamma, "regressor_units": self.regressor_units,
                "regressor_normalize": self.regressor_normalize,
                "class_head": self.class_head, "shared_head": self.shared_head, "mode": self.mode}


def _unpack(data):
    """((images, labels), (shared_images, shared_labels)) from a training element."""
    try:
        (images, labels), (shared_images, shared_labels) = data
    except (TypeError, ValueError):
        raise ValueError("A Sharing Matters training element must be a pair of batches ((images, labels), "
                         "(shared_images, shared_labels)); build the dataset with "
                         "tfdml.sharing.paired_batches(batches, shared_batches).") from None
    return (images, labels), (shared_images, shared_labels)
