"""Keras callbacks of `train.py` that survive an interrupted and resumed run."""
import csv
import json
import math
import os
import warnings

import keras

from tfdml.metrics.callbacks import MeasuredCSVLogger


def _write_atomically(path, write):
    """Calls `write(temporary_path)` then renames it to `path` (a kill never leaves half a file)."""
    root, extension = os.path.splitext(path)
    temporary = f"{root}.partial{extension}"
    write(temporary)
    os.replace(temporary, path)


class BestModelCheckpoint(keras.callbacks.Callback):
    """Saves the model to `filepath` whenever `monitor` reaches a new best.

    Unlike `keras.callbacks.ModelCheckpoint(save_best_only=True)`, the best
    score survives a resumed run: it is part of the training checkpoint
    (`get_loop_state`, see `TrainingLoop.fit`) and is also written to `record`
    right after each save, so a run killed at any point and resumed never
    replaces `filepath` with a worse model. The file is written atomically.

    Args:
        filepath: `.keras` path of the best model.
        monitor: key of the epoch logs, e.g. "val_fc_recall@1".
        mode: "max" or "min".
        record: JSON file with the best score and epoch (None: not written).
    """

    def __init__(self, filepath, monitor, mode="max", record=None):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}.")
        self.filepath, self.monitor, self.mode, self.record = filepath, monitor, mode, record
        self.best, self.best_epoch = None, None

    def _better(self, value, than):
        if value is None or math.isnan(value):
            return False
        return than is None or (value > than if self.mode == "max" else value < than)

    def get_loop_state(self):
        """The best score and its epoch, saved in the training checkpoint (`TrainingLoop.fit`)."""
        return {"best": self.best, "best_epoch": self.best_epoch}

    def set_loop_state(self, state):
        """Restores the best score and epoch from `get_loop_state`'s dict, if it beats the current one."""
        if self._better(state.get("best"), self.best):
            self.best, self.best_epoch = state["best"], state.get("best_epoch")

    def on_train_begin(self, logs=None):
        """Takes the best score from `record` when both it and the saved model exist and `record`
        monitors the same key (Keras callback)."""
        if self.record and os.path.exists(self.record) and os.path.exists(self.filepath):
            with open(self.record) as handle:
                saved = json.load(handle)
            if saved.get("monitor") == self.monitor:
                self.set_loop_state(saved)

    def on_epoch_end(self, epoch, logs=None):
        """Saves the model atomically (and writes `record`) when `monitor` reaches a new best; warns
        when `monitor` is not in the logs (Keras callback)."""
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(f"BestModelCheckpoint: {self.monitor!r} is not in the epoch logs "
                          f"({sorted(logs or {})}); {self.filepath} is not updated.")
            return
        value = float(value)
        if not self._better(value, self.best):
            return
        _write_atomically(self.filepath, self.model.save)
        self.best, self.best_epoch = value, int(epoch)
        if self.record:
            def dump(path):
                with open(path, "w") as handle:
                    json.dump({"monitor": self.monitor, **self.get_loop_state()}, handle)
            _write_atomically(self.record, dump)


class ResumableCSVLogger(MeasuredCSVLogger):
    """`keras.callbacks.CSVLogger(append=True)` that, when training starts at
    epoch E (a resumed run: `params["initial_epoch"]`), first drops the rows of
    epochs ≥ E, so each epoch appears once even if it was redone. NaN values
    (metrics not measured that epoch) are written as blank cells."""

    def __init__(self, filename, separator=","):
        super().__init__(filename, separator=separator, append=True)

    def on_train_begin(self, logs=None):
        """Drops the rows of epochs ≥ `params["initial_epoch"]` from an existing file (removing a file
        left without rows), then opens it for appending (Keras callback)."""
        if os.path.exists(self.filename):
            first = int((self.params or {}).get("initial_epoch", 0))
            with open(self.filename, newline="") as handle:
                reader = csv.DictReader(handle, delimiter=self.sep)
                fields = reader.fieldnames
                rows = [row for row in reader if int(row["epoch"]) < first]
            if rows:
                def rewrite(path):
                    with open(path, "w", newline="") as handle:
                        writer = csv.DictWriter(handle, fieldnames=fields, delimiter=self.sep)
                        writer.writeheader()
                        writer.writerows(rows)
                _write_atomically(self.filename, rewrite)
            else:
                os.remove(self.filename)
        super().on_train_begin(logs)
