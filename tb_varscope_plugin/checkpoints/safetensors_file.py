"""Reads `.safetensors` files (a little-endian u64 header length, a JSON header, then raw tensors)."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable

import numpy as np

from tb_varscope_plugin.checkpoints.variables import (
    Checkpoint,
    CheckpointError,
    Variable,
    file_size,
    read_bytes,
    widen_bfloat16,
)
from tb_varscope_plugin.filesystem import mtime

# Refuse absurd headers from a damaged file instead of reading gigabytes of garbage.
_MAX_HEADER = 100 * 1024 * 1024
_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    # numpy has no bfloat16: read as 2-byte words and widened on load.
    "BF16": np.uint16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U64": np.uint64,
    "U32": np.uint32,
    "U16": np.uint16,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def read_safetensors(path: str) -> Checkpoint:
    """Reads the variable records of a safetensors file; PyTorch names like `encoder.0.bias` keep their
    module (`encoder.0`) as the layer."""
    size = file_size(path)
    if size < 8:
        raise CheckpointError(f"{path}: too short to be a safetensors file ({size} bytes)")
    (header_size,) = struct.unpack("<Q", read_bytes(path, 0, 8))
    if header_size > min(_MAX_HEADER, size - 8):
        raise CheckpointError(f"{path}: not a safetensors file (header of {header_size} bytes)")
    try:
        header = json.loads(read_bytes(path, 8, header_size))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: damaged safetensors header ({e})") from e
    except RecursionError as e:  # json's parser recurses once per nesting level; a real header nests two deep
        raise CheckpointError(f"{path}: damaged safetensors header (nested too deeply)") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: damaged safetensors header (not a JSON object)")
    base = 8 + header_size
    variables = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _DTYPES[info["dtype"]]
            shape = _naturals(info["shape"])
            begin, end = _naturals(info["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: tensor {name!r} has an unsupported or damaged header entry") from e
        count = math.prod(shape)
        if not begin <= end or end - begin != count * np.dtype(dtype).itemsize or base + end > size:
            raise CheckpointError(f"{path}: tensor {name!r} lies outside the file or has the wrong size")
        layer = name.rsplit(".", 1)[0] if "." in name else None
        dtype_name = "float32" if info["dtype"] == "BF16" else np.dtype(dtype).name
        load = _loader(path, base + begin, end - begin, dtype, shape, info["dtype"] == "BF16")
        variables.append(Variable(name, name, name, shape, dtype_name, layer, False, load))
    return Checkpoint(path=path, format="safetensors", variables=tuple(variables), mtime=mtime(path))


def _naturals(values: object) -> tuple[int, ...]:
    """A JSON list of whole numbers >= 0, as the safetensors format requires: `9.5`, `-1` or `true` is damage."""
    if not isinstance(values, list) or not all(type(v) is int and v >= 0 for v in values):
        raise ValueError(f"not a list of natural numbers: {values!r}"[:200])
    return tuple(values)


def _loader(
    path: str, offset: int, size: int, dtype: type, shape: tuple[int, ...], bfloat16: bool
) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        values = np.frombuffer(read_bytes(path, offset, size), dtype=np.dtype(dtype).newbyteorder("<"))
        if bfloat16:
            return widen_bfloat16(values).reshape(shape)
        return values.astype(np.dtype(dtype)).reshape(shape)

    return load
