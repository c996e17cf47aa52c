"""Migration of the `backup/` directory that older tfdml runs left (Keras `BackupAndRestore`)."""
import csv
import json
import os
import shutil

import tensorflow as tf

from tfdml.training.checkpoints import Checkpointer


def migrate_backup(run_dir, loop, steps_per_epoch, monitor):
    """Moves `run_dir/backup/` (weights + optimizer state, epoch) into `run_dir/checkpoints/`.

    The backup becomes a checkpoint at the start of the backed-up epoch, and the
    best `monitor` value of the epochs in `log.csv` becomes the best-model
    record, so the resumed run neither retrains those epochs nor replaces
    `best.keras` with a worse model. The backup directory is then removed.

    Args:
        run_dir: the run directory.
        loop: the `TrainingLoop` (model and optimizer built).
        steps_per_epoch: steps per epoch of the run.
        monitor: the metric `best.keras` is chosen by.

    Returns:
        True when a backup was migrated.
    """
    backup, checkpoint_dir = os.path.join(run_dir, "backup"), os.path.join(run_dir, "checkpoints")
    weights = os.path.join(backup, "latest.weights.h5")
    if not os.path.exists(weights) or tf.train.latest_checkpoint(checkpoint_dir) is not None:
        return False
    if isinstance(loop.strategy, tf.distribute.MultiWorkerMirroredStrategy):
        raise ValueError(f"{backup} is a backup of an older tfdml (BackupAndRestore). Resume it once on one machine "
                         "(training.strategy=default) to migrate it to checkpoints/, then restart the workers.")
    loop.model.load_weights(weights)
    with open(os.path.join(backup, "training_metadata.json")) as handle:
        epoch = int(json.load(handle)["epoch"])
    _record_best_from_log(run_dir, epoch, monitor, os.path.join(checkpoint_dir, "best.json"))
    Checkpointer(checkpoint_dir, loop.strategy, model=loop.model, optimizer=loop.optimizer).save(
        epoch * steps_per_epoch, {})
    shutil.rmtree(backup)
    print(f"Migrated the BackupAndRestore backup of {run_dir} (epoch {epoch}) to {checkpoint_dir}; removed {backup}.")
    return True


def _record_best_from_log(run_dir, epochs_done, monitor, record):
    """Writes `record` (`BestModelCheckpoint`'s JSON) from the best `monitor` value in `log.csv`."""
    path = os.path.join(run_dir, "log.csv")
    if not os.path.exists(path) or not os.path.exists(os.path.join(run_dir, "best.keras")):
        return
    with open(path, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if int(row["epoch"]) < epochs_done and row.get(monitor)]
    if rows:
        best = max(rows, key=lambda row: float(row[monitor]))
        os.makedirs(os.path.dirname(record), exist_ok=True)
        with open(record, "w") as handle:
            json.dump({"monitor": monitor, "best": float(best[monitor]), "best_epoch": int(best["epoch"])}, handle)
