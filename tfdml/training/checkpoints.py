"""`Checkpointer`: training checkpoints that every worker writes and restores the same way.

All workers save at the same steps (as `tf.distribute` requires); only the
chief's files are kept, in the shared checkpoint directory — the other
workers write to a temporary directory that is deleted right after each save
(the pattern of TensorFlow's multi-worker guide). Every worker restores from
the chief's directory, and the workers check that they resumed at the same
step (a directory that is not shared by all workers gives a clear error).
"""
import glob
import json
import os
import shutil
import tempfile

import tensorflow as tf

from tfdml.training.strategy import gather_over_replicas, is_chief


class Checkpointer:
    """Saves and restores `objects` plus the step and a JSON state.

    Args:
        directory: the chief's checkpoint directory.
        strategy: the `tf.distribute` strategy.
        max_to_keep: checkpoints kept.
        **objects: trackables to save (model, optimizer, …).
    """

    def __init__(self, directory, strategy, max_to_keep=2, **objects):
        self.directory = directory
        self.strategy = strategy
        self.chief = is_chief(strategy)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.state = tf.Variable("{}", dtype=tf.string, trainable=False, name="loop_state")
        self.checkpoint = tf.train.Checkpoint(step=self.step, loop_state=self.state, **objects)
        self.manager = None
        if self.chief:
            os.makedirs(directory, exist_ok=True)
            self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=max_to_keep,
                                                      step_counter=self.step)

    def restore(self):
        """Restores the latest checkpoint of the chief's directory, if any.

        Returns:
            (step, state dict): (0, {}) when there is no checkpoint.
        """
        latest = tf.train.latest_checkpoint(self.directory)
        if latest is not None:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        step = int(self.step.numpy())
        self._check_workers_agree(step)
        return step, json.loads(self.state.numpy().decode())

    def save(self, step, state):
        """Saves checkpoint number `step` with the JSON-serialisable `state` (call on every worker)."""
        self.step.assign(step)
        self.state.assign(json.dumps(state))
        if self.chief:
            try:
                self.manager.save(checkpoint_number=step)
            except BaseException:  # a full disk, or SIGTERM / Ctrl-C mid-save: leave no half-written checkpoint
                for partial in glob.glob(os.path.join(self.directory, f"ckpt-{step}_temp*")):
                    shutil.rmtree(partial, ignore_errors=True)
                raise
            return
        temporary = tempfile.mkdtemp(prefix="tfdml-worker-checkpoint-")
        try:
            self.checkpoint.write(os.path.join(temporary, "ckpt"))
        finally:
            shutil.rmtree(temporary, ignore_errors=True)

    def _check_workers_agree(self, step):
        if not isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return
        steps = gather_over_replicas(self.strategy, step)
        low, high = int(steps.min()), int(steps.max())
        if low != high:
            raise RuntimeError(
                f"Workers resumed at different steps ({low} vs {high}): the checkpoint directory {self.directory!r} "
                "must be on storage shared by all workers (every worker restores the chief's checkpoints).")
