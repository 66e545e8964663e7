"""safetensors files written by `safetensors.numpy` and `safetensors.torch` read back as variable records."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from tb_varscope_plugin.checkpoints.formats import read_checkpoint
from tb_varscope_plugin.checkpoints.variables import CheckpointError

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def test_numpy_tensors_read_back(tmp_path):
    tensors = {
        "encoder.0.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
        "encoder.0.bias": np.array([1.5, -2.0, 0.25], dtype=np.float64),
        "steps": np.array(7, dtype=np.int64),
        "mask": np.array([True, False]),
        "half": np.array([0.5, 2.0], dtype=np.float16),
        "counts": np.array([1, 255], dtype=np.uint8),
    }
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(tensors, str(path), metadata={"format": "np"})
    checkpoint = read_checkpoint(str(path))
    assert checkpoint.format == "safetensors"
    records = {v.key: v for v in checkpoint.variables}
    assert set(records) == set(tensors)
    for name, values in tensors.items():
        record = records[name]
        assert (record.path, record.name, record.shape, record.dtype) == (name, name, values.shape, values.dtype.name)
        np.testing.assert_array_equal(record.load(), values)
    assert records["encoder.0.weight"].layer == "encoder.0"
    assert records["steps"].layer is None
    assert not any(v.slot for v in checkpoint.variables)


@pytest.mark.slow
def test_torch_state_dict_read_back(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    model = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.ReLU(), torch.nn.Linear(3, 3))
    state = model.state_dict()
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file(state, str(path))
    records = {v.key: v for v in read_checkpoint(str(path)).variables}
    assert set(records) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    for name, tensor in state.items():
        np.testing.assert_array_equal(records[name].load(), tensor.numpy())
    assert records["2.weight"].layer == "2"
    assert records["2.weight"].shape == (3, 3)

    bf16 = tmp_path / "bf16.safetensors"
    weight = torch.tensor([[1.5, -2.0], [3.25, 1e-3]], dtype=torch.bfloat16)
    safetensors_torch.save_file({"proj.weight": weight}, str(bf16))
    (record,) = read_checkpoint(str(bf16)).variables
    assert record.dtype == "float32"
    np.testing.assert_array_equal(record.load(), weight.float().numpy())


def _write(path, header: dict, payload: bytes) -> None:
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + payload)


@pytest.mark.parametrize(
    ("header", "payload", "message"),
    [
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, "outside the file"),
        ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "wrong size"),
        ({"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8, "unsupported or damaged"),
        ({"w": {"dtype": "F32"}}, b"", "unsupported or damaged"),
        ([1, 2], b"", "not a JSON object"),
    ],
)
def test_damaged_headers_are_checkpoint_errors(tmp_path, header, payload, message):
    path = tmp_path / "bad.safetensors"
    _write(path, header, payload)
    with pytest.raises(CheckpointError, match=f"bad.safetensors: .*{message}"):
        read_checkpoint(str(path))


def test_garbage_and_truncated_files_are_checkpoint_errors(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        read_checkpoint(str(path))
    path.write_bytes(b"abc")
    with pytest.raises(CheckpointError, match="too short"):
        read_checkpoint(str(path))
    path.write_bytes(struct.pack("<Q", 5) + b"{nope")
    with pytest.raises(CheckpointError, match="damaged safetensors header"):
        read_checkpoint(str(path))
    with pytest.raises(CheckpointError, match="missing.safetensors"):
        read_checkpoint(str(tmp_path / "missing.safetensors"))
