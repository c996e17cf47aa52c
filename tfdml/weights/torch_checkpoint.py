"""Reads PyTorch checkpoints (`torch.save` files) into numpy arrays, without torch.

Both of torch's file formats are read:

- the zip format (the default since torch 1.6): a zip archive with
  `<folder>/data.pkl`, one raw storage per `<folder>/data/<key>` and a
  `<folder>/byteorder` record;
- the legacy format (`torch.save(..., _use_new_zipfile_serialization=False)`,
  used by many older published files): a magic number, a protocol version and
  system information, the main pickle, a pickle of storage keys, then each
  storage as an int64 element count followed by its raw bytes.

The pickles are read by a restricted unpickler that only knows how to rebuild
tensors: it accepts the globals `torch._utils._rebuild_tensor_v2`,
`torch._utils._rebuild_tensor`, `torch._utils._rebuild_parameter`,
`torch._utils._rebuild_parameter_with_state`, the `torch.<Type>Storage` dtype
markers and `collections.OrderedDict`, and refuses every other global with an
`UnsafeCheckpointError` before anything from the file runs. Tensors are rebuilt
with numpy from their storage, offset, size and stride.
"""
import collections
import io
import os
import pickle
import zipfile

import numpy as np

__all__ = ["InvalidCheckpointError", "UnsafeCheckpointError", "read_torch_checkpoint"]

_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001
_ZIP_MAGIC = b"PK\x03\x04"
# Keys of a checkpoint that wraps its state dict as its only entry.
_WRAPPER_KEYS = ("state_dict", "model")


class InvalidCheckpointError(ValueError):
    """A file is not a readable PyTorch checkpoint: corrupt, truncated or of another kind."""


class UnsafeCheckpointError(ValueError):
    """A checkpoint's pickle refers to a global that is not needed to rebuild tensors."""


def _bfloat16():
    import ml_dtypes  # installed with TensorFlow

    return np.dtype(ml_dtypes.bfloat16)


# torch storage class name -> numpy dtype (a callable for lazily imported dtypes).
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": _bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Frozen:
    """Attributes fixed at construction: a pickle's BUILD opcode cannot change them."""

    __slots__ = ()

    def __init__(self, **fields):
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is read-only")


class _StorageType(_Frozen):
    """Stands for a `torch.<Type>Storage` class in a pickle: only carries its dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name):
        dtype = _STORAGE_DTYPES[name]
        super().__init__(name=name, dtype=dtype() if dtype is _bfloat16 else np.dtype(dtype))


class _Storage:
    """One storage of a checkpoint: its dtype, element count and (once read) its data."""

    __slots__ = ("key", "dtype", "numel", "data")

    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel, self.data = key, dtype, numel, None


class _StorageView(_Frozen):
    """A slice of a storage (legacy format's `view_metadata`), in elements."""

    __slots__ = ("storage", "offset", "numel")

    def __init__(self, storage, offset, numel):
        super().__init__(storage=storage, offset=offset, numel=numel)


class _TensorRef(_Frozen):
    """A tensor to rebuild once its storage has been read."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        super().__init__(storage=storage, offset=offset, size=size, stride=stride)


class _RebuildTensor(_Frozen):
    """Stands for `torch._utils._rebuild_tensor(_v2)`: records storage, offset, size and stride."""

    __slots__ = ()

    def __call__(self, storage, storage_offset, size, stride, *_unused):
        return _TensorRef(storage, storage_offset, size, stride)


class _RebuildParameter(_Frozen):
    """Stands for `torch._utils._rebuild_parameter(_with_state)`: a parameter is its tensor."""

    __slots__ = ()

    def __call__(self, data, *_unused):
        return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles the tensor containers of a torch checkpoint and nothing else."""

    def __init__(self, file, path, storages):
        super().__init__(file, encoding="utf-8")
        self._path = path
        self._storages = storages  # key -> _Storage, shared by the whole file

    def find_class(self, module, name):
        if module == "torch._utils":
            if name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
                return _RebuildTensor()
            if name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
                return _RebuildParameter()
        elif module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        elif module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        elif module == "torch" and name.endswith("Storage"):
            raise InvalidCheckpointError(
                f"{self._path}: tensors of storage type torch.{name} are not supported "
                f"(supported: {', '.join('torch.' + n for n in _STORAGE_DTYPES)})")
        raise UnsafeCheckpointError(
            f"{self._path}: refused to load the global {module}.{name}; only tensors, "
            "parameters and (ordered) dicts of them can be read from a checkpoint")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage" or len(pid) not in (5, 6):
            raise UnsafeCheckpointError(
                f"{self._path}: refused the persistent id {str(pid)[:80]!r}; only tensor "
                "storages can be read from a checkpoint")
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _StorageType) or not isinstance(numel, int) or numel < 0:
            raise InvalidCheckpointError(f"{self._path}: malformed storage record {str(pid)[:80]!r}")
        key = str(key)
        storage = self._storages.get(key)
        if storage is None:
            storage = self._storages[key] = _Storage(key, storage_type.dtype, numel)
        elif storage.dtype != storage_type.dtype:
            raise InvalidCheckpointError(
                f"{self._path}: storage {key} is used with two dtypes ({storage.dtype}, "
                f"{storage_type.dtype})")
        if view is not None:
            _view_key, offset, view_numel = view
            return _StorageView(storage, int(offset), int(view_numel))
        return storage


def _check_int_tuple(values, path):
    if not isinstance(values, (tuple, list)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise InvalidCheckpointError(f"{path}: malformed tensor size or stride {values!r}")
    return tuple(values)


def _rebuild(ref, path):
    """A contiguous numpy copy of the tensor `ref` (views and shared storages honoured)."""
    storage, base = ref.storage, 0
    limit = None
    if isinstance(storage, _StorageView):
        base, limit = storage.offset, storage.numel
        storage = storage.storage
    if not isinstance(storage, _Storage) or storage.data is None:
        raise InvalidCheckpointError(f"{path}: a tensor refers to a storage that is not in the file")
    data = storage.data
    if limit is None:
        limit = data.size - base
    size = _check_int_tuple(ref.size, path)
    stride = _check_int_tuple(ref.stride, path)
    offset = ref.offset
    if (len(size) != len(stride) or not isinstance(offset, int) or offset < 0
            or any(n < 0 for n in size) or any(s < 0 for s in stride)):
        raise InvalidCheckpointError(
            f"{path}: malformed tensor (offset {offset!r}, size {size}, stride {stride})")
    if 0 in size:
        return np.empty(size, dtype=data.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= limit or base + limit > data.size:
        raise InvalidCheckpointError(
            f"{path}: a tensor (offset {offset}, size {size}, stride {stride}) reaches past "
            f"the end of its storage ({limit} elements)")
    flat = data[base + offset:base + last + 1]
    view = np.lib.stride_tricks.as_strided(
        flat, shape=size, strides=[s * data.itemsize for s in stride], writeable=False)
    return np.array(view, order="C", copy=True)


def _storage_array(buffer, dtype, numel, little_endian, path, key):
    """`numel` elements of `dtype` from `buffer`, in native (little-endian) byte order."""
    nbytes = numel * dtype.itemsize
    if len(buffer) < nbytes:
        raise InvalidCheckpointError(
            f"{path}: storage {key} is truncated ({len(buffer)} of {nbytes} bytes)")
    if little_endian or dtype.itemsize == 1:
        return np.frombuffer(buffer, dtype=dtype, count=numel)
    raw = np.frombuffer(buffer, dtype=np.dtype(f">u{dtype.itemsize}"), count=numel)
    return raw.astype(f"<u{dtype.itemsize}").view(dtype)


def _read_zip(path, data):
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise InvalidCheckpointError(f"{path}: corrupt or truncated zip checkpoint ({error})") from error
    pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise InvalidCheckpointError(
            f"{path}: a zip file but not a torch.save checkpoint (no single <folder>/data.pkl)")
    prefix = pickles[0][:-len("data.pkl")]
    if f"{prefix}constants.pkl" in names or any(n.startswith(f"{prefix}code/") for n in names):
        raise InvalidCheckpointError(
            f"{path}: a TorchScript archive (torch.jit.save), not a state dict checkpoint")
    little_endian = True
    if f"{prefix}byteorder" in names:
        order = archive.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
        if order not in ("little", "big"):
            raise InvalidCheckpointError(f"{path}: unknown byte order record {order!r}")
        little_endian = order == "little"
    storages = {}
    result = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), path, storages).load()
    for key, storage in storages.items():
        member = f"{prefix}data/{key}"
        if member not in names:
            raise InvalidCheckpointError(f"{path}: storage {key} is missing from the archive")
        storage.data = _storage_array(
            archive.read(member), storage.dtype, storage.numel, little_endian, path, key)
    return result


def _read_legacy(path, data):
    stream = io.BytesIO(data)

    def plain_pickle():
        # Header pickles hold only ints, strings, lists and dicts: no global is allowed.
        return _RestrictedUnpickler(stream, path, {}).load()

    try:
        magic = plain_pickle()
    except UnsafeCheckpointError:
        raise
    except Exception as error:
        if data[257:262] == b"ustar":
            raise InvalidCheckpointError(
                f"{path}: a tar archive (the format of torch < 0.4 is not supported)") from error
        raise InvalidCheckpointError(
            f"{path}: not a PyTorch checkpoint (neither a zip archive nor a legacy "
            "torch.save file)") from error
    if magic != _LEGACY_MAGIC_NUMBER:
        raise InvalidCheckpointError(f"{path}: not a PyTorch checkpoint (wrong magic number)")
    version = plain_pickle()
    if version != _LEGACY_PROTOCOL_VERSION:
        raise InvalidCheckpointError(f"{path}: unsupported legacy protocol version {version!r}")
    sys_info = plain_pickle()
    little_endian = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
    storages = {}
    result = _RestrictedUnpickler(stream, path, storages).load()
    keys = plain_pickle()
    if not isinstance(keys, list):
        raise InvalidCheckpointError(f"{path}: malformed list of storage keys")
    position = stream.tell()
    view = memoryview(data)
    count_dtype = np.dtype("<i8" if little_endian else ">i8")
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise InvalidCheckpointError(f"{path}: storage {key} is not used by any tensor")
        if position + 8 > len(data):
            raise InvalidCheckpointError(f"{path}: truncated before storage {key}")
        numel = int(np.frombuffer(view[position:position + 8], dtype=count_dtype)[0])
        position += 8
        if numel < 0:
            raise InvalidCheckpointError(f"{path}: storage {key} has a negative size")
        nbytes = numel * storage.dtype.itemsize
        storage.data = _storage_array(
            view[position:position + nbytes], storage.dtype, numel, little_endian, path, key)
        position += nbytes
    return result


def _state_dict(result, path):
    if (isinstance(result, dict) and len(result) == 1
            and next(iter(result)) in _WRAPPER_KEYS and isinstance(next(iter(result.values())), dict)):
        result = next(iter(result.values()))
    if not isinstance(result, dict):
        raise InvalidCheckpointError(
            f"{path}: the checkpoint holds a {type(result).__name__}, not a state dict "
            "(a mapping of names to tensors)")
    bad = [key for key, value in result.items()
           if not isinstance(key, str) or not isinstance(value, _TensorRef)]
    if bad:
        raise InvalidCheckpointError(
            f"{path}: not a state dict: the entries {bad[:5]!r} are not tensors"
            + (" (a training checkpoint? keys: " + ", ".join(map(repr, list(result)[:8])) + ")"
               if len(bad) < len(result) or len(result) > 1 else ""))
    return {key: _rebuild(value, path) for key, value in result.items()}


def read_torch_checkpoint(path):
    """Reads the state dict of a PyTorch checkpoint as numpy arrays, without torch.

    Reads both the zip format of `torch.save` and its legacy format
    (`_use_new_zipfile_serialization=False`). The pickles of the file are read
    by a restricted unpickler that rebuilds tensors, parameters and (ordered)
    dicts and refuses any other global: nothing from the file is executed.

    A checkpoint whose only entry is `"state_dict"` or `"model"` holding a
    mapping (`{"state_dict": {...}}`) is unwrapped; a checkpoint with further
    entries (an epoch, an optimizer state) is refused.

    Arrays are C-contiguous copies in native byte order, with the dtype of the
    tensor: float32, float64, float16, int64, int32, int16, int8, uint8, bool,
    and `ml_dtypes.bfloat16` for bfloat16 tensors (cast with
    `array.astype(np.float32)` where numpy needs a standard dtype). Views and
    tensors that share a storage are rebuilt from their offset, size and stride.

    Args:
        path: path of a `.pth` / `.pt` / `.bin` / `.ckpt` file written by
            `torch.save`.

    Returns:
        A dict of numpy arrays by tensor name, in the order of the file.

    Raises:
        FileNotFoundError: `path` does not exist.
        UnsafeCheckpointError: the file's pickle refers to a global other than
            the tensor rebuilders listed above (e.g. `os.system`).
        InvalidCheckpointError: a `ValueError`: the file is corrupt, truncated,
            not a torch checkpoint, holds a tensor dtype that cannot be read, or
            holds something else than a mapping of names to tensors.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such PyTorch checkpoint: {path}")
    with open(path, "rb") as file:
        data = file.read()
    try:
        if data[:4] == _ZIP_MAGIC:
            result = _read_zip(path, data)
        else:
            result = _read_legacy(path, data)
        return _state_dict(result, path)
    except (UnsafeCheckpointError, InvalidCheckpointError):
        raise
    except Exception as error:  # garbage makes pickle raise anything
        raise InvalidCheckpointError(
            f"{path}: corrupt, truncated or not a PyTorch checkpoint "
            f"({type(error).__name__}: {error})") from error
