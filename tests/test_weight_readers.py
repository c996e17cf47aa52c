"""tfdml.weights readers: PyTorch checkpoints (both torch.save formats), safetensors, MXNet .params.

torch is the oracle: every array read without torch is compared bit for bit
with `tensor.numpy()` of the tensor that was saved.
"""
import collections
import io
import os
import struct
import zipfile

import numpy as np
import pytest

from tfdml.weights import (
    InvalidCheckpointError,
    UnsafeCheckpointError,
    read_mxnet_params,
    read_safetensors,
    read_state_dict,
    read_torch_checkpoint,
)

torch = pytest.importorskip("torch")

FORMATS = {"zip": True, "legacy": False}


@pytest.fixture(params=sorted(FORMATS))
def save(request):
    """torch.save in the zip or the legacy format."""
    def _save(obj, path):
        torch.save(obj, path, _use_new_zipfile_serialization=FORMATS[request.param])
        return path
    return _save


def assert_same(arrays, state_dict):
    """`arrays` holds exactly the tensors of `state_dict`, bit for bit, as contiguous arrays."""
    assert list(arrays) == list(state_dict)
    for name, tensor in state_dict.items():
        tensor = tensor.detach()
        array = arrays[name]
        assert array.shape == tuple(tensor.shape), name
        assert array.flags.c_contiguous, name
        if tensor.dtype == torch.bfloat16:
            assert array.dtype.name == "bfloat16", name
            np.testing.assert_array_equal(array.view(np.int16), tensor.view(torch.int16).numpy())
        else:
            expected = tensor.contiguous().numpy()
            assert array.dtype == expected.dtype, name
            # compare raw bytes: bit-exact, NaN payloads and -0.0 included
            assert array.tobytes() == expected.tobytes(), name


def small_net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 5))
    net(torch.randn(4, 3, 8, 8))  # training step: running stats and num_batches_tracked move
    return net


def test_module_state_dict(save, tmp_path):
    state_dict = small_net().state_dict()
    assert state_dict["1.num_batches_tracked"].item() == 1
    arrays = read_torch_checkpoint(save(state_dict, tmp_path / "net.pth"))
    assert_same(arrays, state_dict)
    assert arrays["1.num_batches_tracked"].dtype == np.int64


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16", "int64",
                                   "int32", "int16", "int8", "uint8", "bool"])
def test_dtypes(save, tmp_path, dtype):
    torch.manual_seed(1)
    values = torch.randn(3, 5) * 100
    if dtype == "bool":
        tensor = values > 0
    else:
        tensor = values.to(getattr(torch, dtype))
    if dtype.startswith("float"):
        tensor[0, :3] = torch.tensor([float("nan"), float("inf"), -0.0])
    state_dict = {"x": tensor, "scalar": tensor[1, 2].clone()}
    assert_same(read_torch_checkpoint(save(state_dict, tmp_path / "x.pt")), state_dict)


def test_views_and_shared_storages(save, tmp_path):
    base = torch.arange(24.0).reshape(4, 6)
    state_dict = {
        "a": base,
        "b": base[1:3, 2:5],
        "c": base.t(),
        "d": base[::2, ::3],
        "e": base[2],
        "f": base[3, 4],  # 0-d view with an offset
        "g": base.reshape(2, 12)[:, 5:].unsqueeze(0),
        "empty": base[:, 6:],
        "empty_alone": torch.empty(0, 3),
        "scalar": torch.tensor(2.5),
        "expanded": torch.arange(3.0).expand(4, 3),  # stride 0
    }
    arrays = read_torch_checkpoint(save(state_dict, tmp_path / "views.pth"))
    assert_same(arrays, state_dict)
    arrays["b"][0, 0] = -1  # copies: writing one does not change another
    assert arrays["a"][1, 2] == 8


def test_parameters_and_ordered_dict(save, tmp_path):
    torch.manual_seed(2)
    state_dict = collections.OrderedDict(
        [("w", torch.nn.Parameter(torch.randn(4, 3))),
         ("b", torch.nn.Parameter(torch.randn(4), requires_grad=False)),
         ("buffer", torch.arange(5))])
    arrays = read_torch_checkpoint(save(state_dict, tmp_path / "params.pth"))
    assert_same(arrays, state_dict)


@pytest.mark.parametrize("key", ["state_dict", "model"])
def test_wrapped_state_dict(save, tmp_path, key):
    state_dict = small_net().state_dict()
    arrays = read_torch_checkpoint(save({key: state_dict}, tmp_path / "wrapped.ckpt"))
    assert_same(arrays, state_dict)


def test_training_checkpoint_is_not_unwrapped(save, tmp_path):
    path = save({"state_dict": small_net().state_dict(), "epoch": 3}, tmp_path / "train.ckpt")
    with pytest.raises(InvalidCheckpointError, match="train.ckpt.*not a state dict"):
        read_torch_checkpoint(path)


@pytest.mark.parametrize("obj", [[torch.ones(2)], torch.ones(2), {"a": {"b": torch.ones(2)}}],
                         ids=["list", "tensor", "nested"])
def test_not_a_state_dict(save, tmp_path, obj):
    path = save(obj, tmp_path / "other.pth")
    with pytest.raises(InvalidCheckpointError, match="other.pth"):
        read_torch_checkpoint(path)


def test_unsupported_dtype(save, tmp_path):
    path = save({"z": torch.ones(2, dtype=torch.complex64)}, tmp_path / "complex.pth")
    with pytest.raises(ValueError, match="complex.pth.*ComplexFloatStorage"):
        read_torch_checkpoint(path)


class _System:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return os.system, (f"touch {self.sentinel}",)


class _Open:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        import builtins
        return builtins.open, (str(self.sentinel), "w")


@pytest.mark.parametrize("payload", [_System, _Open], ids=["os.system", "builtins.open"])
def test_malicious_pickle_is_refused(save, tmp_path, payload):
    sentinel = tmp_path / "SENTINEL"
    path = save({"w": torch.ones(2), "evil": payload(sentinel)}, tmp_path / "evil.pth")
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pth.*(system|open)"):
        read_torch_checkpoint(path)
    with pytest.raises(UnsafeCheckpointError):
        read_state_dict(path)
    assert not sentinel.exists()
    # the payload is live: an unrestricted load runs it
    torch.load(path, weights_only=False)
    assert sentinel.exists()


def test_malicious_top_level_object(save, tmp_path):
    sentinel = tmp_path / "SENTINEL"
    path = save(_System(sentinel), tmp_path / "evil.pt")
    with pytest.raises(UnsafeCheckpointError, match="evil.pt"):
        read_torch_checkpoint(path)
    assert not sentinel.exists()


@pytest.mark.parametrize("fraction", [0.5, 0.97])
def test_truncated_file(save, tmp_path, fraction):
    torch.manual_seed(3)
    path = save({"w": torch.randn(64, 64), "b": torch.randn(64)}, tmp_path / "full.pth")
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(ValueError, match="truncated.pth"):
        read_torch_checkpoint(truncated)


def test_text_file(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n")
    with pytest.raises(ValueError, match="notes.pth"):
        read_torch_checkpoint(path)
    with pytest.raises(ValueError, match="notes.pth"):
        read_state_dict(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.pth"):
        read_torch_checkpoint(path)


def test_missing_file(tmp_path):
    for read in (read_torch_checkpoint, read_state_dict, read_safetensors, read_mxnet_params):
        with pytest.raises(FileNotFoundError, match="missing.pth"):
            read(tmp_path / "missing.pth")


def test_zip_folder_name_and_big_endian(tmp_path):
    """The top folder of the archive varies; a "big" byte order record is honoured."""
    torch.manual_seed(4)
    state_dict = {"w": torch.randn(3, 4), "n": torch.arange(5), "h": torch.randn(6).half(),
                  "bf": torch.randn(2).bfloat16(), "t": torch.randn(4, 2).t()}
    itemsizes = {}
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    for name, tensor in state_dict.items():  # storage key of each tensor, in order of saving
        itemsizes[name] = tensor.element_size()
    keys = sorted(n.rsplit("/", 1)[1] for n in source.namelist() if "/data/" in n)
    assert len(keys) == len(state_dict)
    for order in ("little", "big"):
        path = tmp_path / f"{order}.pth"
        with zipfile.ZipFile(path, "w") as target:
            for member in source.namelist():
                data = source.read(member)
                folder, rest = member.split("/", 1)
                if rest == "byteorder":
                    data = order.encode()
                elif rest.startswith("data/") and order == "big":
                    itemsize = list(itemsizes.values())[int(rest[5:])]
                    data = np.frombuffer(data, f"<u{itemsize}").astype(f">u{itemsize}").tobytes()
                target.writestr(f"renamed_{order}/{rest}", data)
        assert_same(read_torch_checkpoint(path), state_dict)


def test_read_state_dict_dispatch(save, tmp_path):
    state_dict = small_net().state_dict()
    for name in ("w.pth", "w.pt", "w.bin", "w.ckpt", "w.weights"):
        assert_same(read_state_dict(save(state_dict, tmp_path / name)), state_dict)


def test_large_checkpoint(save, tmp_path):
    """A checkpoint of about 40 MB (torchvision-like tensor sizes) is read."""
    torch.manual_seed(5)
    state_dict = {"conv1.weight": torch.randn(64, 3, 7, 7),
                  **{f"layer.{i}.weight": torch.randn(512, 512, 3, 3) for i in range(4)},
                  "layer.1.bn.running_var": torch.rand(512),
                  "layer.1.bn.num_batches_tracked": torch.tensor(100),
                  "fc.weight": torch.randn(1000, 1024), "fc.bias": torch.randn(1000)}
    path = save(state_dict, tmp_path / "large.pth")
    assert path.stat().st_size > 40e6  # 4 x 9.4 MB + fc
    assert_same(read_state_dict(path), state_dict)


# ------------------------------------------------------------------ safetensors
def test_safetensors_round_trip(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(6)
    arrays = {"f32": rng.normal(size=(3, 4)).astype(np.float32),
              "f16": rng.normal(size=5).astype(np.float16),
              "i64": rng.integers(-9, 9, size=(2, 2)),
              "u8": rng.integers(0, 255, size=7).astype(np.uint8),
              "scalar": np.array(1.5)}
    path = tmp_path / "w.safetensors"
    safetensors_numpy.save_file(arrays, str(path))
    for read in (read_safetensors, read_state_dict):
        out = read(path)
        assert sorted(out) == sorted(arrays)
        for name, array in arrays.items():
            assert out[name].dtype == array.dtype and out[name].tobytes() == array.tobytes(), name


def test_safetensors_bfloat16(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(7)
    state_dict = {"bf": torch.randn(3, 4).bfloat16(), "f": torch.randn(2)}
    path = tmp_path / "bf.safetensors"
    safetensors_torch.save_file(state_dict, str(path))
    out = read_state_dict(path)
    assert_same({name: out[name] for name in state_dict}, state_dict)


def test_safetensors_garbage(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ValueError, match="bad.safetensors"):
        read_state_dict(path)


# ------------------------------------------------------------------ MXNet .params
_MX_FLAGS = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.float16): 2,
             np.dtype(np.uint8): 3, np.dtype(np.int32): 4, np.dtype(np.int8): 5,
             np.dtype(np.int64): 6, np.dtype(np.bool_): 7}


def mxnet_params_bytes(arrays, names, version=2):
    """An MXNet NDArray list file written byte by byte from the format description."""
    magic = {1: 0xF993FAC8, 2: 0xF993FAC9, 3: 0xF993FACA}[version]
    out = [struct.pack("<QQ", 0x112, 0), struct.pack("<Q", len(arrays))]
    for array in arrays:
        out.append(struct.pack("<I", magic))
        if version > 1:
            out.append(struct.pack("<i", 0))  # dense storage
        out.append(struct.pack(f"<i{array.ndim}q", array.ndim, *array.shape))
        out.append(struct.pack("<ii", 1, 0))  # cpu(0)
        out.append(struct.pack("<i", _MX_FLAGS[array.dtype]))
        out.append(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
    out.append(struct.pack("<Q", len(names)))
    for name in names:
        encoded = name.encode()
        out.append(struct.pack("<Q", len(encoded)) + encoded)
    return b"".join(out)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_mxnet_params(tmp_path, version):
    rng = np.random.default_rng(8)
    arrays = {"conv0.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
              "batchnorm0.running_var": rng.random(4).astype(np.float64),
              "half": rng.normal(size=(2, 5)).astype(np.float16),
              "ids": rng.integers(-5, 5, size=6),
              "mask": rng.random(3) > 0.5,
              "bytes": rng.integers(0, 255, size=(2, 2)).astype(np.uint8)}
    if version == 3:
        arrays["scalar"] = np.array(3.25, dtype=np.float32)
    path = tmp_path / "googlenet.params"
    path.write_bytes(mxnet_params_bytes(list(arrays.values()), list(arrays), version))
    for read in (read_mxnet_params, read_state_dict):
        out = read(path)
        assert list(out) == list(arrays)
        for name, array in arrays.items():
            assert out[name].dtype == array.dtype and out[name].shape == array.shape, name
            assert out[name].tobytes() == array.tobytes(), name


def test_mxnet_params_without_names(tmp_path):
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(3, dtype=np.int32)]
    path = tmp_path / "list.params"
    path.write_bytes(mxnet_params_bytes(arrays, []))
    out = read_mxnet_params(path)
    assert list(out) == ["0", "1"]
    np.testing.assert_array_equal(out["1"], arrays[1])


def test_mxnet_params_truncated_and_garbage(tmp_path):
    data = mxnet_params_bytes([np.ones((8, 8), np.float32)], ["w"])
    truncated = tmp_path / "truncated.params"
    truncated.write_bytes(data[:-20])
    with pytest.raises(ValueError, match="truncated.params"):
        read_mxnet_params(truncated)
    garbage = tmp_path / "garbage.params"
    garbage.write_bytes(b"not an mxnet file at all")
    with pytest.raises(ValueError, match="garbage.params"):
        read_state_dict(garbage)


# ------------------------------------------- legacy files of old torch versions, written by hand
class _StorageRef:
    def __init__(self, key, numel, view=None):
        self.key, self.numel, self.view = key, numel, view


class _TensorSpec:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride)

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, self.args + (False, collections.OrderedDict())


class _LegacyPickler:
    """Writes the legacy torch.save layout, with the storage views old torch versions saved."""

    @staticmethod
    def dump(obj, storages, path):
        import pickle

        class Pickler(pickle.Pickler):
            def persistent_id(self, value):
                if isinstance(value, _StorageRef):
                    return ("storage", torch.FloatStorage, value.key, "cpu", value.numel, value.view)
                return None

        stream = io.BytesIO()
        for header in (0x1950A86A20F9469CFC6C, 1001,
                       {"protocol_version": 1001, "little_endian": True,
                        "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(header, stream, protocol=2)
        Pickler(stream, protocol=2).dump(obj)
        pickle.dump(sorted(storages), stream, protocol=2)
        for key in sorted(storages):
            data = np.asarray(storages[key], dtype="<f4")
            stream.write(struct.pack("<q", data.size) + data.tobytes())
        path.write_bytes(stream.getvalue())
        return path


def test_legacy_storage_views(tmp_path):
    """Old legacy files could refer to a slice of a storage (view_metadata); torch.load is the oracle."""
    root = _StorageRef("100", 12)
    view = _StorageRef("100", 12, view=("200", 4, 6))  # elements 4..9 of storage "100"
    obj = collections.OrderedDict([
        ("whole", _TensorSpec(root, 1, (2, 3), (3, 1))),
        ("in_view", _TensorSpec(view, 2, (2, 2), (1, 2))),
        ("other", _TensorSpec(_StorageRef("300", 3), 0, (3,), (1,))),
    ])
    storages = {"100": np.arange(12) * 1.5, "300": [7.0, 8.0, 9.0]}
    path = _LegacyPickler.dump(obj, storages, tmp_path / "old.pth")
    expected = torch.load(path, weights_only=True)
    assert expected["in_view"].tolist() == [[6.0 * 1.5, 8.0 * 1.5], [7.0 * 1.5, 9.0 * 1.5]]
    assert_same(read_torch_checkpoint(path), expected)


def test_legacy_view_out_of_bounds(tmp_path):
    view = _StorageRef("100", 12, view=("200", 4, 6))
    obj = {"bad": _TensorSpec(view, 4, (3,), (1,))}  # elements 8..10 of the view's 6
    path = _LegacyPickler.dump(obj, {"100": np.arange(12.0)}, tmp_path / "bad.pth")
    with pytest.raises(InvalidCheckpointError, match="bad.pth.*past the end"):
        read_torch_checkpoint(path)


def test_build_cannot_alter_a_tensor(tmp_path):
    """A pickle's BUILD opcode cannot rewrite the offset, size or stride of a rebuilt tensor."""

    class Tampered(_TensorSpec):
        def __reduce__(self):
            return super().__reduce__()[:2] + ((None, {"offset": 2}),)  # in bounds: honoured, it would pass

    obj = {"t": Tampered(_StorageRef("1", 4), 0, (2,), (1,))}
    path = _LegacyPickler.dump(obj, {"1": [1.0, 2.0, 3.0, 4.0]}, tmp_path / "tampered.pth")
    with pytest.raises(InvalidCheckpointError, match="tampered.pth"):
        read_torch_checkpoint(path)
