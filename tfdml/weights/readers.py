"""Reads published weight files into dicts of numpy arrays, without their frameworks.

`read_state_dict` picks the reader from the file: PyTorch checkpoints (either
`torch.save` format, see `tfdml.weights.torch_checkpoint`), safetensors files
and MXNet `.params` files.
"""
import json
import os
import struct

import numpy as np

from tfdml.weights.torch_checkpoint import InvalidCheckpointError, read_torch_checkpoint

__all__ = ["read_mxnet_params", "read_safetensors", "read_state_dict"]

_ZIP_MAGIC = b"PK\x03\x04"
_TORCH_EXTENSIONS = (".pth", ".pt", ".bin", ".ckpt")
_MXNET_LIST_MAGIC = 0x112
_MXNET_NDARRAY_V1 = 0xF993FAC8
_MXNET_NDARRAY_V2 = 0xF993FAC9
_MXNET_NDARRAY_V3 = 0xF993FACA
# mshadow type flags -> numpy dtypes (12, bfloat16, is resolved lazily).
_MXNET_DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32,
                 5: np.int8, 6: np.int64, 7: np.bool_, 8: np.int16, 9: np.uint16,
                 10: np.uint32, 11: np.uint64}
_MXNET_BFLOAT16 = 12


def _bfloat16():
    import ml_dtypes  # installed with TensorFlow

    return np.dtype(ml_dtypes.bfloat16)


def _safetensors_header(path):
    with open(path, "rb") as file:
        head = file.read(8)
        if len(head) < 8:
            raise InvalidCheckpointError(f"{path}: not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", head)
        if length > os.path.getsize(path) - 8:
            raise InvalidCheckpointError(f"{path}: not a safetensors file (bad header length)")
        try:
            header = json.loads(file.read(length))
        except ValueError as error:
            raise InvalidCheckpointError(f"{path}: not a safetensors file (bad header)") from error
    if not isinstance(header, dict):
        raise InvalidCheckpointError(f"{path}: not a safetensors file (bad header)")
    return 8 + length, header


def _read_safetensors_numpy(path, start, header):
    """Reads a safetensors file with numpy alone (for bfloat16, which safetensors.numpy lacks)."""
    dtypes = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
              "I32": np.int32, "I16": np.int16, "I8": np.int8, "U64": np.uint64,
              "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_}
    with open(path, "rb") as file:
        data = file.read()
    arrays = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _bfloat16() if info["dtype"] == "BF16" else np.dtype(dtypes[info["dtype"]])
            begin, end = info["data_offsets"]
            shape = tuple(info["shape"])
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidCheckpointError(f"{path}: unsupported or malformed tensor {name!r}") from error
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * dtype.itemsize or start + end > len(data):
            raise InvalidCheckpointError(f"{path}: tensor {name!r} does not fit the file")
        arrays[name] = np.frombuffer(data, dtype=dtype, count=count, offset=start + begin).reshape(shape).copy()
    return arrays


def read_safetensors(path):
    """Reads a safetensors file as numpy arrays.

    Uses `safetensors.numpy.load_file`; files with bfloat16 tensors (which it
    cannot represent) are read with numpy, as `ml_dtypes.bfloat16` arrays.

    Args:
        path: path of a `.safetensors` file.

    Returns:
        A dict of numpy arrays by tensor name.

    Raises:
        FileNotFoundError: `path` does not exist.
        ImportError: the `safetensors` package is not installed.
        InvalidCheckpointError: a `ValueError`: the file is not a readable
            safetensors file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such safetensors file: {path}")
    start, header = _safetensors_header(path)
    if any(isinstance(info, dict) and info.get("dtype") == "BF16" for info in header.values()):
        return _read_safetensors_numpy(path, start, header)
    try:
        import safetensors.numpy
    except ImportError as error:
        raise ImportError(
            "Reading .safetensors files needs the safetensors package: pip install safetensors"
        ) from error
    try:
        return dict(safetensors.numpy.load_file(path))
    except Exception as error:  # safetensors raises its own SafetensorError
        raise InvalidCheckpointError(
            f"{path}: not a readable safetensors file ({type(error).__name__}: {error})") from error


class _Reader:
    """Little-endian reads from a bytes buffer, raising on truncation."""

    def __init__(self, data, path):
        self.data, self.path, self.position = memoryview(data), path, 0

    def take(self, nbytes):
        if nbytes < 0 or self.position + nbytes > len(self.data):
            raise InvalidCheckpointError(f"{self.path}: truncated MXNet .params file")
        chunk = self.data[self.position:self.position + nbytes]
        self.position += nbytes
        return chunk

    def unpack(self, fmt):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


def _read_mxnet_array(reader):
    path = reader.path
    (magic,) = reader.unpack("I")
    if magic not in (_MXNET_NDARRAY_V1, _MXNET_NDARRAY_V2, _MXNET_NDARRAY_V3):
        raise InvalidCheckpointError(
            f"{path}: unsupported NDArray record (magic {magic:#x}; only the V1, V2 and V3 "
            "record formats are read, not the one of MXNet < 0.9)")
    (storage_type,) = reader.unpack("i") if magic != _MXNET_NDARRAY_V1 else (0,)
    if storage_type != 0:
        raise InvalidCheckpointError(f"{path}: sparse NDArrays (storage type {storage_type}) are not supported")
    (ndim,) = reader.unpack("i")
    if ndim < 0 or (ndim == 0 and magic != _MXNET_NDARRAY_V3):
        raise InvalidCheckpointError(f"{path}: an NDArray without data (unknown shape)")
    shape = reader.unpack(f"{ndim}q")
    if any(n < 0 for n in shape):
        raise InvalidCheckpointError(f"{path}: an NDArray of unknown shape {shape}")
    reader.unpack("ii")  # context: device type, device id
    (flag,) = reader.unpack("i")
    if flag == _MXNET_BFLOAT16:
        dtype = native = _bfloat16()  # stored little-endian, as read on little-endian hosts
    elif flag in _MXNET_DTYPES:
        native = np.dtype(_MXNET_DTYPES[flag])
        dtype = native.newbyteorder("<")
    else:
        raise InvalidCheckpointError(f"{path}: unsupported NDArray dtype flag {flag}")
    count = int(np.prod(shape, dtype=np.int64))
    raw = reader.take(count * dtype.itemsize)
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape).astype(native)


def read_mxnet_params(path):
    """Reads an MXNet `.params` file (Gluon `save_parameters`, `mx.nd.save`) as numpy arrays.

    Reads the binary NDArray list format (dense NDArrays in the V1, V2 or V3
    record format: a record magic, the storage type from V2 on, the shape as
    an int32 rank and int64 dimensions, the context, the dtype flag and the
    raw little-endian data) without MXNet. Names are kept as saved
    (e.g. `features.0.weight`, or `arg:` / `aux:` prefixed names of
    `Module.save_checkpoint`); a list saved without names is keyed `"0"`,
    `"1"`, … The reader follows the published layout of the format and is
    tested on files written byte by byte from it, not on files written by
    MXNet itself.

    Args:
        path: path of a `.params` file.

    Returns:
        A dict of numpy arrays by parameter name, in the order of the file.

    Raises:
        FileNotFoundError: `path` does not exist.
        InvalidCheckpointError: a `ValueError`: the file is not an MXNet
            NDArray list, is truncated, or holds sparse or shapeless arrays.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such MXNet parameter file: {path}")
    with open(path, "rb") as file:
        reader = _Reader(file.read(), path)
    if len(reader.data) < 16:
        raise InvalidCheckpointError(f"{path}: not an MXNet .params file (too short)")
    magic, _reserved = reader.unpack("QQ")
    if magic != _MXNET_LIST_MAGIC:
        raise InvalidCheckpointError(f"{path}: not an MXNet .params file (magic {magic:#x})")
    (count,) = reader.unpack("Q")
    if count > len(reader.data):
        raise InvalidCheckpointError(f"{path}: corrupt MXNet .params file ({count} arrays)")
    arrays = [_read_mxnet_array(reader) for _ in range(count)]
    (name_count,) = reader.unpack("Q")
    if name_count == 0:
        names = [str(i) for i in range(count)]
    elif name_count != count:
        raise InvalidCheckpointError(f"{path}: {name_count} names for {count} arrays")
    else:
        names = []
        for _ in range(name_count):
            (length,) = reader.unpack("Q")
            try:
                names.append(bytes(reader.take(length)).decode("utf-8"))
            except UnicodeDecodeError as error:
                raise InvalidCheckpointError(f"{path}: an array name is not UTF-8") from error
    if len(set(names)) != len(names):
        raise InvalidCheckpointError(f"{path}: repeated array names")
    return dict(zip(names, arrays))


def read_state_dict(path):
    """Reads a published weight file as a dict of numpy arrays, picking the reader by content.

    - PyTorch checkpoints (`.pth`, `.pt`, `.bin`, `.ckpt`, or any file starting
      with the zip signature): `read_torch_checkpoint`, either `torch.save`
      format.
    - `.safetensors`: `read_safetensors`.
    - `.params` (or a file starting with MXNet's NDArray list magic):
      `read_mxnet_params`.

    Args:
        path: path of the weight file.

    Returns:
        A dict of numpy arrays by tensor name.

    Raises:
        FileNotFoundError: `path` does not exist.
        UnsafeCheckpointError: a PyTorch checkpoint refers to a global other
            than the tensor rebuilders.
        InvalidCheckpointError: a `ValueError`: the file is corrupt, truncated
            or of no known kind.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such weight file: {path}")
    with open(path, "rb") as file:
        head = file.read(8)
    extension = os.path.splitext(path)[1].lower()
    if head[:4] == _ZIP_MAGIC or extension in _TORCH_EXTENSIONS:
        return read_torch_checkpoint(path)
    if extension == ".safetensors":
        return read_safetensors(path)
    if extension == ".params" or (len(head) == 8 and struct.unpack("<Q", head)[0] == _MXNET_LIST_MAGIC):
        return read_mxnet_params(path)
    if head[:2] == b"\x80\x02":  # a pickle: the legacy torch.save format under another name
        return read_torch_checkpoint(path)
    raise InvalidCheckpointError(
        f"{path}: unknown weight file kind (expected a PyTorch checkpoint, a .safetensors "
        "or an MXNet .params file)")
