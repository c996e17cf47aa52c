"""`RunDirectory`: one run at a time per run directory; finished runs are kept; failed starts leave nothing.

`run` (the chief worker only) takes the directory before it writes anything:

- A lock: `<run>/.lock` is held with `fcntl.flock` while the run lives and holds
  the holder's pid and host. A second run into the same directory fails with a
  `RunDirectoryError` naming that process. The kernel drops the lock when its
  process dies, so the lock file of a killed run is taken over (with a warning
  naming the dead process).
- A finished run (`metrics.json` present) is not trained again: `RunDirectoryError`
  unless `overwrite=True` (`train.py --overwrite`), which empties the directory first.
- A killed run (checkpoints, no `metrics.json`) resumes (`TrainingLoop.fit` says so)
  with the config it started with: a resume whose config differs from the
  directory's `config.yaml` is refused with the differing keys listed, unless
  `allow_config_change=True` (`train.py --allow-config-change`); then the earlier
  config is kept as `config.before_epoch<E>.yaml` and `config_changes.json`
  records the epoch E (and step) where the change happened and the changed keys.
- If the start fails before anything was trained (no checkpoint, no `log.csv`), a
  directory this run created is removed again.
"""
import json
import os
import shutil
import socket
import time
import warnings

LOCK_NAME = ".lock"
# Files that show a run got past its start (kept when a later step fails).
_PROGRESS = ("log.csv", "best.keras", "final.keras", "metrics.json", os.path.join("checkpoints", "checkpoint"))


def config_differences(old, new, prefix="", ignore=("output_dir",)):
    """{dotted key: (old value, new value)} of the keys where two config dicts differ (`ignore`d keys left out)."""
    changed = {}
    for key in list(old) + [k for k in new if k not in old]:
        dotted = f"{prefix}{key}"
        if dotted in ignore:
            continue
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict) and not dotted.endswith("params"):
            changed.update(config_differences(a, b, dotted + ".", ignore))
        elif a != b:
            changed[dotted] = (a, b)
    return changed


def _checkpoint_step(path):
    """The step of the latest checkpoint in `<path>/checkpoints` (0 without one)."""
    try:
        with open(os.path.join(path, "checkpoints", "checkpoint")) as handle:
            for line in handle:
                if line.startswith("model_checkpoint_path:"):
                    return int(line.split('"')[1].rsplit("-", 1)[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class RunDirectoryError(RuntimeError):
    """The run directory is in use or holds a finished run (the message says what to do)."""


def _holder_text(holder):
    if not holder:
        return "another process"
    started = holder.get("started")
    when = f", started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}" if started else ""
    return f"process {holder.get('pid')} on host {holder.get('host')}{when}"


def _read_holder(handle):
    try:
        handle.seek(0)
        return json.loads(handle.read() or "null")
    except (OSError, ValueError):
        return None


def _pid_alive(pid):
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return True
    return True


class RunDirectory:
    """The chief's hold on a run directory (see the module docstring).

    Args:
        path: the run directory (`output_dir`).
        overwrite: empty a finished (or any earlier) run's directory and train again.
        config: the resolved config of this run, compared with the directory's
            `config.yaml` when resuming (None: no comparison).
        allow_config_change: resume although the config differs (recorded, see
            the module docstring).
    """

    def __init__(self, path, overwrite=False, config=None, allow_config_change=False):
        self.path = path
        self.overwrite = bool(overwrite)
        self.config = config
        self.allow_config_change = bool(allow_config_change)
        self.created = False
        self._handle = None

    @property
    def lock_path(self):
        """Path of the run's lock file, `<run>/.lock`."""
        return os.path.join(self.path, LOCK_NAME)

    def acquire(self):
        """Creates the directory if needed, takes the lock, refuses a finished run (or empties it when
        `overwrite`).

        Raises:
            RunDirectoryError: the directory cannot be created or written, another live process holds the
                lock, the run finished and `overwrite` is off, or it holds a killed run of another config
                (see the module docstring).
        """
        self.created = not os.path.exists(self.path)
        try:
            os.makedirs(self.path, exist_ok=True)
            self._lock()
        except OSError as error:
            raise RunDirectoryError(f"Cannot create or write the run directory {self.path!r} "
                                    f"({error.strerror or error}); choose another --output.") from None
        try:
            finished = os.path.exists(os.path.join(self.path, "metrics.json"))
            if finished and not self.overwrite:
                raise RunDirectoryError(
                    f"Run directory {self.path!r} holds a finished run (metrics.json exists). Pass --overwrite "
                    "(in Python: run(config, overwrite=True)) to delete it and train again, or choose another "
                    "--output.")
            if self.overwrite and len(os.listdir(self.path)) > 1:
                self._empty()
            elif self.config is not None and self.has_progress():
                self._check_config()
        except BaseException:
            self.release()
            raise
        return self

    def _lock(self):
        import fcntl

        while True:
            handle = open(self.lock_path, "a+")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(handle)
                handle.close()
                raise RunDirectoryError(
                    f"Run directory {self.path!r} is in use by {_holder_text(holder)} (lock file {self.lock_path}). "
                    "Wait for that run to end or stop it, or choose another --output.") from None
            try:  # the holder may have removed the file between our open and flock: lock the current file
                same = os.fstat(handle.fileno()).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            handle.close()
        previous = _read_holder(handle)
        if previous and previous.get("pid") != os.getpid():
            here = previous.get("host") == socket.gethostname()
            state = "is no longer running" if here and not _pid_alive(previous["pid"]) else "ended without cleanup"
            warnings.warn(f"Run directory {self.path!r}: taking over the stale lock of {_holder_text(previous)}, "
                          f"which {state}.", stacklevel=3)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}))
        handle.flush()
        self._handle = handle

    def _empty(self):
        if not os.path.exists(os.path.join(self.path, "config.yaml")):
            raise RunDirectoryError(f"--overwrite: {self.path!r} has no config.yaml, so it does not look like a "
                                    "tfdml run directory; not deleting its files. Choose another --output.")
        for name in os.listdir(self.path):
            if name == LOCK_NAME:
                continue
            path = os.path.join(self.path, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        print(f"--overwrite: deleted the earlier run in {self.path}.")

    def _check_config(self):
        """Refuses (or records) a resume whose config differs from the directory's `config.yaml`."""
        import yaml

        from tfdml.training.config import validate

        path = os.path.join(self.path, "config.yaml")
        if not os.path.exists(path):
            return
        with open(path) as handle:
            previous = yaml.safe_load(handle) or {}
        try:
            previous = validate(previous)
        except ValueError:
            pass
        changed = config_differences(previous, self.config)
        if not changed:
            return
        listing = "; ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in changed.items())
        step = _checkpoint_step(self.path)
        steps_per_epoch = (previous.get("training") or {}).get("steps_per_epoch") or 1
        epoch = step // steps_per_epoch
        if not self.allow_config_change:
            raise RunDirectoryError(
                f"Run directory {self.path!r} holds a run started with another config (resuming at epoch "
                f"{epoch}); changed keys: {listing}. Resume with the same config, pass --allow-config-change (in "
                "Python: run(config, allow_config_change=True)) to continue with the new one (recorded in "
                "config_changes.json), or choose another --output.")
        kept = os.path.join(self.path, f"config.before_epoch{epoch}.yaml")
        shutil.copyfile(path, kept)
        record = os.path.join(self.path, "config_changes.json")
        changes = []
        if os.path.exists(record):
            with open(record) as handle:
                changes = json.load(handle)
        changes.append({"epoch": epoch, "step": step, "previous_config": os.path.basename(kept),
                        "changed": {key: {"from": old, "to": new} for key, (old, new) in changed.items()}})
        with open(record, "w") as handle:
            json.dump(changes, handle, indent=2)
        warnings.warn(f"Run directory {self.path!r}: resuming at epoch {epoch} with a changed config ({listing}); "
                      f"the earlier config is kept in {os.path.basename(kept)}, the change in config_changes.json.",
                      stacklevel=3)

    def has_progress(self):
        """Whether the directory holds anything trained (a checkpoint, log.csv, a model, metrics)."""
        return any(os.path.exists(os.path.join(self.path, name)) for name in _PROGRESS)

    def release(self, failed=False):
        """Drops the lock; after a failed start (`failed` and nothing trained) removes a directory this run
        created."""
        if self._handle is None:
            return
        remove = failed and self.created and not self.has_progress()
        try:
            os.remove(self.lock_path)  # while still holding the lock (see `_lock`)
        except FileNotFoundError:
            pass
        self._handle.close()
        self._handle = None
        if remove:
            shutil.rmtree(self.path, ignore_errors=True)
