"""Loads backbone weights: a PyTorch / safetensors checkpoint, a Keras `.weights.h5` file, or a published source.

`weights=` accepts None (random initialisation), a file path (`.pth`, `.pt`,
`.bin`, `.ckpt`, `.safetensors`, `.params`: a state dict as torchvision /
pretrainedmodels publish it (MXNet files with PyTorch-style names), converted
on load; `.weights.h5`: Keras weights of the same
backbone), "imagenet" (the checkpoint the backbone's paper used) or a source
name from `tfdml.weights.source_names()`.

Published checkpoints are downloaded once, their hash prefix checked,
converted, and cached as `.weights.h5` in `~/.keras/tfdml/weights` (or the
directory the environment variable `TFDML_WEIGHTS_DIR` names). Without
network access, put the published file into that directory (or pass its path).
"""
import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile

from tfdml.weights.convert import assign_state_dict
from tfdml.weights.readers import read_state_dict
from tfdml.weights.renames import RENAMES
from tfdml.weights.sources import SOURCES, resolve_source

CACHE_ENV = "TFDML_WEIGHTS_DIR"
"""Environment variable naming the weights cache directory (default `~/.keras/tfdml/weights`)."""
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".params")
KERAS_SUFFIX = ".weights.h5"


class WeightsDownloadError(RuntimeError):
    """A published checkpoint could not be fetched (no network) or failed its checksum."""


def cache_dir():
    """The directory of downloaded and converted checkpoints (`$TFDML_WEIGHTS_DIR` or ~/.keras/tfdml/weights)."""
    path = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".keras", "tfdml", "weights")
    return os.path.abspath(path)


def is_checkpoint_path(weights):
    """Whether `weights` is a path to a PyTorch / safetensors checkpoint (by its suffix)."""
    return isinstance(weights, (str, os.PathLike)) and str(weights).lower().endswith(CHECKPOINT_SUFFIXES)


def names_a_source(weights):
    """Whether `weights` names published weights: "imagenet" or a key of `SOURCES`."""
    return weights == "imagenet" or weights in SOURCES


def load_checkpoint(model, spec, path, backbone, rename=None):
    """Converts a PyTorch / safetensors / MXNet state dict file into `model` (a tfdml backbone built from `spec`).

    Args:
        model: the backbone.
        spec: its `BackboneSpec`.
        path: the checkpoint file.
        backbone: the backbone's name (for messages).
        rename: a `tfdml.weights.renames.RENAMES` key for files with another
            framework's tensor names, or None.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the backbone has no PyTorch layout, or the file is not a checkpoint.
        tfdml.weights.StateDictMismatchError: a missing, extra or mis-shaped tensor (named).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"weights file not found: {path!r}.")
    if spec is None or spec.torch_layers is None:
        raise ValueError(f"weights={path!r}: backbone {backbone!r} has no PyTorch counterpart to convert from; "
                         "pass a Keras .weights.h5 file.")
    state_dict = read_state_dict(path)
    if rename is not None:
        state_dict = RENAMES[rename](state_dict)
    assign_state_dict(model, state_dict, spec.torch_layers(model), spec.torch_ignored,
                      source=os.path.basename(path))


def load_keras_weights(model, path):
    """Loads a Keras weights file into `model`; raises `FileNotFoundError` if `path` does not exist."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"weights file not found: {path!r} (expected a Keras .weights.h5 file or a "
                                f"PyTorch checkpoint {', '.join(CHECKPOINT_SUFFIXES)}).")
    model.load_weights(path)


def load_source(model, spec, backbone, weights, announce=print):
    """Loads the published checkpoint `weights` ("imagenet" or a source name) into `model`, fetching it once.

    Args:
        model: the backbone built from `spec`.
        spec: its `BackboneSpec`.
        backbone: its name.
        weights: "imagenet" or a name from `source_names()`.
        announce: called with the one line saying which file is used (None: silent).
    """
    source = resolve_source(backbone, weights)
    directory = cache_dir()
    converted = os.path.join(directory, f"{source.name.replace('/', '__')}{KERAS_SUFFIX}")
    if os.path.exists(converted):
        model.load_weights(converted)
        _announce(announce, backbone, source, converted)
        return
    original = os.path.join(directory, source.weights_file_name)
    if not os.path.exists(original):
        download = os.path.join(directory, source.file_name)
        if not os.path.exists(download):
            _download(source, download)
        if source.archive_member:
            _extract(download, source.archive_member, original)
    _verify_checksum(source, original)
    load_checkpoint(model, spec, original, backbone, rename=source.rename)
    _save_atomically(model, converted)
    _announce(announce, backbone, source, original)


def _announce(announce, backbone, source, path):
    if announce is not None:
        announce(f"tfdml: backbone {backbone}: ImageNet weights {source.name} ({source.file_name}, top-1 "
                 f"{source.top1:.2f}%) from {path}")


def _download(source, destination):
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=os.path.dirname(destination), suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(source.url, timeout=60) as response:
            shutil.copyfileobj(response, out, length=1 << 20)
        os.replace(partial, destination)
    except OSError as error:
        raise WeightsDownloadError(
            f"could not download the {source.name} checkpoint from {source.url} ({type(error).__name__}: "
            f"{error}). Without network access, fetch that file elsewhere and put it into {os.path.dirname(destination)} "
            f"(or set {CACHE_ENV}), or pass its path: model.weights=/path/to/{source.weights_file_name}.") from error
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _extract(archive, member, destination):
    try:
        with zipfile.ZipFile(archive) as zipped, zipped.open(member) as packed, \
                open(destination + ".part", "wb") as out:
            shutil.copyfileobj(packed, out, length=1 << 20)
    except (zipfile.BadZipFile, KeyError) as error:
        raise WeightsDownloadError(f"{archive}: not the published archive ({error}); delete it and fetch it again."
                                   ) from error
    os.replace(destination + ".part", destination)


def _verify_checksum(source, path):
    prefix = source.hash_prefix
    if prefix is None:
        return
    digest = hashlib.new(source.hash_algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(prefix):
        algorithm = {"sha256": "SHA-256", "sha1": "SHA-1"}.get(source.hash_algorithm, source.hash_algorithm)
        raise WeightsDownloadError(f"{path}: {algorithm} {digest.hexdigest()[:12]}… does not "
                                   f"start with {prefix} (the hash in the published name {source.file_name}); "
                                   f"delete the file and fetch it again from {source.url}.")


def _save_atomically(model, path):
    handle, partial = tempfile.mkstemp(dir=os.path.dirname(path), suffix=KERAS_SUFFIX)
    os.close(handle)
    try:
        model.save_weights(partial, overwrite=True)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
