"""Reads PyTorch `torch.save` files (`.pt`, `.pth`, `.bin`) without torch and without running pickled code: the zip
format (`<name>/data.pkl` + `<name>/data/<key>` storages) and the legacy format (pickles, then the storages).

The pickle is unpickled with every global replaced by an inert stand-in from a fixed table (tensor rebuilders,
storage and dtype names, `OrderedDict`); any other global is refused before anything is built, so no code a file
names is ever imported or called. Tensors become offset/size/stride views into storages, read only when loaded.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import pickletools
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeGuard

import numpy as np

from tb_varscope_plugin.checkpoints.variables import (
    Checkpoint,
    CheckpointError,
    RemoteFile,
    Variable,
    file_size,
    read_bytes,
    widen_bfloat16,
)
from tb_varscope_plugin.filesystem import mtime

# Where `torch.save` (or a training script's own dict) keeps the model's state_dict.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
# A state_dict's pickle is a few bytes per tensor; anything near this is not one (and would be unpickled in memory).
_MAX_PICKLE = 64 * 1024 * 1024
# Zip records read whole besides data.pkl (`byteorder`); a central directory holds ~80 bytes per storage.
_MAX_SMALL_RECORD = 64
_MAX_DIRECTORY = 16 * 1024 * 1024
_MAX_DIMS = 64
_MAX_ELEMENTS = 1 << 40
# torch writes storages uncompressed; a re-zipped file may inflate each by at most this much (so a small file
# cannot ask for gigabytes).
_MAX_INFLATION = 64
# torch/serialization.py: the legacy format opens with these two pickled numbers.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    RuntimeError,
    ValueError,
    OSError,
    EOFError,
    zlib.error,
)
_LOCAL_HEADER = struct.Struct("<4s22xHH")


@dataclass(frozen=True, slots=True)
class _DType:
    """A torch dtype: its numpy equivalent (None where numpy has none and the values are not read) and its size."""

    name: str
    numpy: str | None
    itemsize: int

    @property
    def reported(self) -> str:
        """The dtype of the loaded values: bfloat16 is widened to float32, as the other readers do."""
        if self.name == "bfloat16":
            return "float32"
        return self.name if self.numpy is None else np.dtype(self.numpy).name


_DTYPES = {
    d.name: d
    for d in (
        _DType("float64", "f8", 8),
        _DType("float32", "f4", 4),
        _DType("float16", "f2", 2),
        _DType("bfloat16", "u2", 2),
        _DType("int64", "i8", 8),
        _DType("int32", "i4", 4),
        _DType("int16", "i2", 2),
        _DType("int8", "i1", 1),
        _DType("uint8", "u1", 1),
        _DType("uint16", "u2", 2),
        _DType("uint32", "u4", 4),
        _DType("uint64", "u8", 8),
        _DType("bool", "?", 1),
        _DType("complex128", "c16", 16),
        _DType("complex64", "c8", 8),
        _DType("complex32", None, 4),
        _DType("float8_e4m3fn", None, 1),
        _DType("float8_e5m2", None, 1),
        _DType("float8_e4m3fnuz", None, 1),
        _DType("float8_e5m2fnuz", None, 1),
        _DType("qint8", None, 1),
        _DType("quint8", None, 1),
        _DType("qint32", None, 4),
        _DType("quint4x2", None, 1),
        _DType("quint2x4", None, 1),
    )
}
# The legacy storage classes a pickle names its storages by (torch.storage._dtype_to_storage_type_map).
_STORAGE_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64",
    "QInt8Storage": "qint8",
    "QUInt8Storage": "quint8",
    "QInt32Storage": "qint32",
    "QUInt4x2Storage": "quint4x2",
    "QUInt2x4Storage": "quint2x4",
    # Dtypes newer than the legacy classes are saved as bytes, the dtype given to _rebuild_tensor_v3.
    "UntypedStorage": "uint8",
}


@dataclass(frozen=True, slots=True)
class _StorageType:
    dtype: _DType
    untyped: bool


@dataclass(frozen=True, slots=True)
class _TensorType:
    """`torch.Tensor` or `torch.nn.Parameter` as `_rebuild_from_type_v2` names them."""

    name: str


@dataclass(frozen=True, slots=True)
class _Storage:
    key: str
    dtype: _DType
    untyped: bool
    offset: int  # bytes into the saved storage `key` (legacy storage views)
    nbytes: int


@dataclass(frozen=True, slots=True)
class _Tensor:
    storage: _Storage
    dtype: _DType
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


class _Malformed(Exception):
    """Pickled values that do not have the shape torch gives them."""


class _Refused(Exception):
    """A global outside the table."""


@dataclass(frozen=True, slots=True)
class _Call:
    """A callable global: frozen and without `__dict__`, so a pickle's BUILD cannot change it."""

    name: str
    function: Callable[..., object]

    def __call__(self, *args: object) -> object:
        return self.function(*args)


def _kind(value: object) -> str:
    # Never the repr of a pickled value: objects shared through the memo can make it astronomically long.
    return f"{type(value).__name__} of {len(value)}" if isinstance(value, tuple) else type(value).__name__


def _count(value: object) -> TypeGuard[int]:
    """A size, offset or stride as torch writes them: a plain int in int64's range (no million-digit integers)."""
    return type(value) is int and 0 <= value < 1 << 62


def _ints(value: object, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or len(value) > _MAX_DIMS or not all(_count(v) for v in value):
        raise _Malformed(f"tensor {what} is a {_kind(value)}, not a tuple of sizes")
    return value


def _tensor(storage: object, offset: object, size: object, stride: object, dtype: object = None) -> _Tensor:
    if not isinstance(storage, _Storage):
        raise _Malformed(f"a tensor is rebuilt from {type(storage).__name__}, not a storage")
    shape, strides = _ints(size, "size"), _ints(stride, "stride")
    if not _count(offset) or len(shape) != len(strides):
        raise _Malformed(f"tensor offset ({_kind(offset)}) or stride {strides} does not fit its size {shape}")
    if dtype is None:
        dtype = storage.dtype
    elif not (isinstance(dtype, _DType) and storage.untyped):
        raise _Malformed("a typed tensor rebuilt from a storage that is not untyped")
    elements = math.prod(shape)
    if elements > _MAX_ELEMENTS:
        raise _Malformed(f"a tensor of {elements} elements")
    if elements and (offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) + 1) * dtype.itemsize > (
        storage.nbytes
    ):
        raise _Malformed(f"a tensor of size {shape} and stride {strides} at {offset} runs past its storage")
    return _Tensor(storage, dtype, offset, shape, strides)


def _rebuild_tensor_v2(storage: object, offset: object, size: object, stride: object, *_: object) -> _Tensor:
    return _tensor(storage, offset, size, stride)


def _rebuild_tensor_v3(storage: object, offset: object, size: object, stride: object, *rest: object) -> _Tensor:
    # (requires_grad, backward_hooks, dtype[, metadata]): the dtype of a storage saved as bytes.
    if len(rest) < 3:
        raise _Malformed("_rebuild_tensor_v3 without a dtype")
    return _tensor(storage, offset, size, stride, rest[2])


def _rebuild_parameter(data: object, *_: object) -> _Tensor:
    if not isinstance(data, _Tensor):
        raise _Malformed(f"a parameter is rebuilt from {type(data).__name__}, not a tensor")
    return data


def _rebuild_from_type(function: object, kind: object, args: object, _state: object) -> object:
    """`torch._tensor._rebuild_from_type_v2`: a tensor (or Parameter) with Python attributes, which are dropped."""
    if not (isinstance(function, _Call) and isinstance(kind, _TensorType) and isinstance(args, tuple)):
        raise _Malformed("_rebuild_from_type_v2 of something other than a tensor")
    return _rebuild_parameter(function(*args))


def _size(dims: object) -> tuple[int, ...]:
    return _ints(dims, "torch.Size")


def _encode(text: object, encoding: object) -> bytes:
    # Protocol 2 pickles bytes as `_codecs.encode(<latin-1 text>, "latin1")`.
    if type(text) is not str or encoding not in ("latin1", "latin-1"):
        raise _Malformed("_codecs.encode of something other than latin-1 text")
    return text.encode("latin1")


def _global_table() -> dict[str, object]:
    table: dict[str, object] = {
        "collections.OrderedDict": collections.OrderedDict,
        "torch.Tensor": _TensorType("Tensor"),
        "torch.nn.parameter.Parameter": _TensorType("Parameter"),
        "torch.Size": _Call("torch.Size", _size),
        "_codecs.encode": _Call("_codecs.encode", _encode),
    }
    rebuilders: dict[str, Callable[..., object]] = {
        "torch._utils._rebuild_tensor": _tensor,
        "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
        "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
        "torch._utils._rebuild_parameter": _rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
        "torch._tensor._rebuild_from_type_v2": _rebuild_from_type,
        # Pickles from before torch 1.8 name the module `torch.tensor` (serialization.py's load_module_mapping).
        "torch.tensor._rebuild_from_type_v2": _rebuild_from_type,
    }
    table.update({name: _Call(name, function) for name, function in rebuilders.items()})
    for storage, dtype in _STORAGE_DTYPES.items():
        for module in ("torch", "torch.cuda"):
            table[f"{module}.{storage}"] = _StorageType(_DTYPES[dtype], storage == "UntypedStorage")
    table["torch.storage.UntypedStorage"] = table["torch.UntypedStorage"]
    table.update({f"torch.{name}": dtype for name, dtype in _DTYPES.items()})
    return table


_GLOBALS = _global_table()


class _Unpickler(pickle.Unpickler):
    """Builds only what `_GLOBALS` holds; storages come from `storage(persistent id)`."""

    def __init__(self, data: bytes, storage: Callable[[tuple], _Storage] | None) -> None:
        super().__init__(io.BytesIO(data))
        self._storage = storage

    def find_class(self, module: str, name: str) -> object:
        found = _GLOBALS.get(f"{module}.{name}")
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found

    def persistent_load(self, pid: object) -> object:
        if self._storage is None or not isinstance(pid, tuple) or not pid or pid[0] not in ("storage", b"storage"):
            raise _Malformed(f"persistent id ({_kind(pid)}) is not a storage")
        return self._storage(pid)


def _refusal(path: str, where: str, refused: list[str]) -> CheckpointError:
    names = ", ".join(f"`{n}`" for n in refused[:4]) + (f" and {len(refused) - 4} more" if len(refused) > 4 else "")
    hint = "only tensors, storages and plain containers are rebuilt"
    if any(n.startswith(("__main__.", "torch.nn.modules.")) for n in refused):
        hint = "it pickles a whole model (torch.save(model)); save model.state_dict() to have its variables read"
    return CheckpointError(f"{path}: the pickle {where} needs {names}, which tb-varscope does not rebuild ({hint})")


def _next_pickle(
    stream: io.BytesIO, path: str, where: str, storage: Callable[[tuple], _Storage] | None = None
) -> object:
    """Unpickles the pickle that starts at `stream`'s position, leaving the stream after it. Its opcodes are read
    first (`_check_opcodes`), so nothing is built from a pickle that names a refused global or would blow up."""
    start = stream.tell()
    refused = _check_opcodes(stream, path, where, start)
    if refused:
        raise _refusal(path, where, refused)
    data = stream.getbuffer()[start : stream.tell()].tobytes()
    try:
        return _Unpickler(data, storage).load()
    except CheckpointError:
        raise
    except _Refused as e:
        raise _refusal(path, where, [str(e)]) from e
    except Exception as e:  # the C unpickler reports damage with whatever type its failing step raised
        raise CheckpointError(f"{path}: damaged pickle {where} at offset {start} ({type(e).__name__}: {e})") from e


def _check_opcodes(stream: io.BytesIO, path: str, where: str, start: int) -> list[str]:
    """Walks a pickle's opcodes up to its STOP and returns the globals outside the table it names.

    Every length is checked against the bytes there (so unpickling allocates no more than the pickle holds), memo
    indices must be the ones a pickler writes (C unpickle allocates its memo up to the largest index given), and the
    stack is followed with each object's size as a tree: objects shared through the memo could otherwise nest into
    a tuple that takes 2**60 steps to hash from a few hundred bytes."""
    refused: list[str] = []
    limit = (1 << 20) + 16 * (len(stream.getbuffer()) - start)
    sizes: list[int] = []  # the stack: each object's size as a tree
    marks: list[int] = []
    memo: dict[int, int] = {}
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            name = opcode.name
            if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                index = len(memo) if name == "MEMOIZE" else arg
                if not isinstance(index, int) or index > len(memo) or not sizes:
                    raise ValueError(f"memo index {index} out of order")
                memo[index] = sizes[-1]
                continue
            if name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise ValueError(f"memo index {arg} was never stored")
                sizes.append(memo[arg])
                continue
            if name in ("GLOBAL", "INST") and isinstance(arg, str):
                named = arg.replace(" ", ".", 1)
                if named not in _GLOBALS and named not in refused:
                    refused.append(named)
            before = opcode.stack_before
            popped = 0
            if pickletools.markobject in before:
                if not marks:
                    raise ValueError(f"{name} without a MARK")
                position = marks.pop()
                popped += sum(sizes[position:])
                del sizes[position:]
                before = before[: before.index(pickletools.markobject)]
            if len(before) > len(sizes):
                raise ValueError(f"{name} on a stack of {len(sizes)}")
            for _ in before:
                popped += sizes.pop()
            for pushed in opcode.stack_after:
                if pushed is pickletools.markobject:
                    marks.append(len(sizes))
                else:
                    sizes.append(popped + 1)
            if popped > limit:
                raise ValueError("it nests shared objects into one far larger than the pickle")
    except (ValueError, struct.error) as e:
        raise CheckpointError(f"{path}: damaged or truncated pickle {where} at offset {start} ({e})") from e
    return refused


class _ZipSource:
    """Where the storages of a zip-format file are: one record each."""

    def __init__(self, path: str, prefix: str, infos: Mapping[str, zipfile.ZipInfo], size: int) -> None:
        self.path, self.prefix, self.infos, self.size = path, prefix, infos, size
        self.found: dict[str, _Storage] = {}

    def storage(self, pid: tuple) -> _Storage:
        """`("storage", storage type, key, location, numel)`, as torch/serialization.py's `_save` writes it."""
        if len(pid) != 5 or not isinstance(pid[1], _StorageType) or type(pid[2]) is not str or not _count(pid[4]):
            raise _Malformed(f"storage id ({_kind(pid)}) is not (storage, type, key, location, numel)")
        kind, key, numel = pid[1], pid[2], pid[4]
        storage = _Storage(key, kind.dtype, kind.untyped, 0, numel * kind.dtype.itemsize)
        info = self.infos.get(f"{self.prefix}/data/{key}")
        if info is None:
            raise _Malformed(f"storage {key[:40]!r} has no data/{key} record")
        if info.file_size != storage.nbytes:
            raise _Malformed(f"storage {key[:40]!r} holds {info.file_size} bytes, not {numel} {kind.dtype.name} values")
        if self.found.setdefault(key, storage).nbytes != storage.nbytes:
            raise _Malformed(f"storage {key[:40]!r} is named with two sizes")
        return storage

    def read(self, storage: _Storage, start: int, size: int) -> bytes:
        info = self.infos[f"{self.prefix}/data/{storage.key}"]
        if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 1:
            # torch writes storages uncompressed (and aligned), so a view reads only its own bytes.
            signature, name_size, extra_size = _LOCAL_HEADER.unpack(read_bytes(self.path, info.header_offset, 30))
            begin = info.header_offset + 30 + name_size + extra_size
            if signature != b"PK\x03\x04" or begin + info.file_size > self.size:
                raise CheckpointError(f"{self.path}: damaged zip record {info.filename}")
            return read_bytes(self.path, begin + start, size)
        if info.file_size > _MAX_INFLATION * max(info.compress_size, 1):
            raise CheckpointError(
                f"{self.path}: zip record {info.filename} inflates {info.file_size} bytes from "
                f"{info.compress_size}, more than a storage compresses"
            )
        try:  # a file re-zipped with compression: inflate the record, no larger than the storage it must be
            with zipfile.ZipFile(RemoteFile(self.path)) as archive, archive.open(info) as record:
                data = record.read(info.file_size)
        except _ZIP_ERRORS as e:
            raise CheckpointError(f"{self.path}: cannot read zip record {info.filename} ({e})") from e
        return data[start : start + size]


class _LegacySource:
    """Storages after the pickles, each an int64 element count then its values, always little-endian
    (THPStorage_writeFileRaw), in the order of the pickled key list."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.roots: dict[str, tuple[_DType, int]] = {}
        self.offsets: dict[str, int] = {}
        self._checked: set[str] = set()

    def storage(self, pid: tuple) -> _Storage:
        """`("storage", storage type, key, location, numel, view)`, as torch/serialization.py's `_legacy_save`
        writes it; a view is `(view key, offset, size)` in elements of the root storage."""
        if len(pid) != 6 or not isinstance(pid[1], _StorageType) or type(pid[2]) is not str or not _count(pid[4]):
            raise _Malformed(f"storage id ({_kind(pid)}) is not (storage, type, key, location, numel, view)")
        kind, key, numel, view = pid[1], pid[2], pid[4], pid[5]
        if self.roots.setdefault(key, (kind.dtype, numel)) != (kind.dtype, numel):
            raise _Malformed(f"storage {key[:40]!r} is named with two sizes or types")
        itemsize = kind.dtype.itemsize
        if view is None:
            return _Storage(key, kind.dtype, kind.untyped, 0, numel * itemsize)
        if not (isinstance(view, tuple) and len(view) == 3 and all(_count(v) for v in view[1:])):
            raise _Malformed(f"storage view ({_kind(view)}) is not (key, offset, size)")
        _, offset, size = view
        if offset + size > numel:
            raise _Malformed(f"a view of storage {key[:40]!r} runs past it")
        return _Storage(key, kind.dtype, kind.untyped, offset * itemsize, size * itemsize)

    def place(self, keys: object, start: int, size: int) -> None:
        if not isinstance(keys, list) or not all(type(k) is str and k in self.roots for k in keys):
            raise CheckpointError(f"{self.path}: damaged storage key list")
        for key in keys:
            dtype, numel = self.roots[key]
            self.offsets[key] = start + 8
            start += 8 + numel * dtype.itemsize
        if start > size or set(self.offsets) != set(self.roots):
            raise CheckpointError(f"{self.path}: truncated, its storages need {start} bytes, the file has {size}")

    def read(self, storage: _Storage, start: int, size: int) -> bytes:
        begin = self.offsets[storage.key]
        if storage.key not in self._checked:
            (count,) = struct.unpack("<q", read_bytes(self.path, begin - 8, 8))
            if count != self.roots[storage.key][1]:
                raise CheckpointError(f"{self.path}: storage {storage.key} holds {count} values, not the pickle's")
            self._checked.add(storage.key)
        return read_bytes(self.path, begin + storage.offset + start, size)


_Source = _ZipSource | _LegacySource


def read_torch(path: str) -> Checkpoint:
    """Reads the variable records of a `torch.save` file holding a state_dict, or a dict holding one under one of
    `STATE_DICT_KEYS`; each is named as the state_dict names it (`encoder.0.weight`, layer `encoder.0`)."""
    size = file_size(path)
    head = read_bytes(path, 0, min(size, 512))
    if head.startswith(b"PK\x03\x04"):
        source, order, saved = _read_zip(path, size)
    elif head[257:262] == b"ustar":
        raise CheckpointError(f"{path}: a tar archive, the format of PyTorch before 0.4; it is not read")
    elif head[:1] == pickle.PROTO:
        source, order, saved = _read_legacy(path, size)
    else:
        raise CheckpointError(f"{path}: not a torch.save file (neither a zip archive nor a pickle)")
    variables = []
    for key, tensor in _state_dict(saved, path):
        layer = key.rsplit(".", 1)[0] if "." in key else None
        load = _loader(source, tensor, order, path, key)
        variables.append(Variable(key, key, key, tensor.shape, tensor.dtype.reported, layer, False, load))
    return Checkpoint(path=path, format="pytorch", variables=tuple(variables), mtime=mtime(path))


_Order = Literal["<", ">"]


def _read_zip(path: str, size: int) -> tuple[_Source, _Order, object]:
    _check_directory_size(path, size)
    try:
        with zipfile.ZipFile(RemoteFile(path)) as archive:
            infos = {info.filename: info for info in archive.infolist()}
            # PyTorchStreamReader: every record sits under the first record's top directory.
            prefix = archive.infolist()[0].filename.split("/", 1)[0] if infos else ""
            if f"{prefix}/constants.pkl" in infos:
                raise CheckpointError(f"{path}: a TorchScript archive (torch.jit.save); its weights are not read")
            pickled = infos.get(f"{prefix}/data.pkl")
            if pickled is None:
                raise CheckpointError(f"{path}: a zip archive without {prefix}/data.pkl: not a torch.save file")
            if pickled.file_size > _MAX_PICKLE:
                raise CheckpointError(f"{path}: a data.pkl of {pickled.file_size} bytes is larger than any state_dict")
            data = archive.read(pickled)
            marker = infos.get(f"{prefix}/byteorder")
            order = b"little"
            if marker is not None:
                order = archive.read(marker) if marker.file_size <= _MAX_SMALL_RECORD else b""
    except _ZIP_ERRORS as e:
        raise CheckpointError(f"{path}: not a readable zip archive ({e})") from e
    if order not in (b"little", b"big"):
        raise CheckpointError(f"{path}: unknown byte order {order[:_MAX_SMALL_RECORD]!r}")
    source = _ZipSource(path, prefix, infos, size)
    saved = _next_pickle(io.BytesIO(data), path, "data.pkl", source.storage)
    return source, "<" if order == b"little" else ">", saved


def _check_directory_size(path: str, size: int) -> None:
    """Refuses a central directory larger than a state_dict's before zipfile reads it into memory, object by object."""
    tail_start = max(0, size - 22 - 0xFFFF)
    tail = read_bytes(path, tail_start, size - tail_start)
    end = tail.rfind(b"PK\x05\x06")
    if end < 0 or end + 22 > len(tail):
        return  # not a zip after all: zipfile says so
    directory = struct.unpack_from("<I", tail, end + 12)[0]
    if directory == 0xFFFFFFFF and end >= 20 and tail[end - 20 : end - 16] == b"PK\x06\x07":
        (record,) = struct.unpack_from("<Q", tail, end - 12)
        if record + 56 <= size:
            directory = struct.unpack("<Q", read_bytes(path, record + 40, 8))[0]
    if directory > _MAX_DIRECTORY:
        raise CheckpointError(f"{path}: a zip directory of {directory} bytes is larger than any state_dict's")


def _read_legacy(path: str, size: int) -> tuple[_Source, _Order, object]:
    # The pickles come first and are small: the first MiB holds them unless the file is all pickle.
    try:
        return _read_legacy_pickles(path, size, min(size, 1 << 20))
    except CheckpointError:
        if size <= 1 << 20:
            raise
    return _read_legacy_pickles(path, size, min(size, _MAX_PICKLE))


def _read_legacy_pickles(path: str, size: int, head_size: int) -> tuple[_Source, _Order, object]:
    head = io.BytesIO(read_bytes(path, 0, head_size))
    if _next_pickle(head, path, "magic number") != _LEGACY_MAGIC:
        raise CheckpointError(f"{path}: a pickle, but not a torch.save file (no PyTorch magic number)")
    if _next_pickle(head, path, "protocol version") != _LEGACY_PROTOCOL:
        raise CheckpointError(f"{path}: unknown legacy PyTorch protocol version")
    _next_pickle(head, path, "system information")
    source = _LegacySource(path)
    saved = _next_pickle(head, path, "of the saved object", source.storage)
    keys = _next_pickle(head, path, "of storage keys")
    source.place(keys, head.tell(), size)
    return source, "<", saved


def _state_dict(saved: object, path: str) -> list[tuple[str, _Tensor]]:
    """The tensors of the state_dict `saved` is or holds, by name. Dict methods are called on the type: a pickle's
    BUILD can give a dict instance attributes that shadow its own `get` or `items`."""

    def tensors(value: object) -> list[tuple[str, _Tensor]]:
        if not isinstance(value, dict):
            return []
        return [(k, v) for k, v in dict.items(value) if type(k) is str and isinstance(v, _Tensor)]

    found = tensors(saved)
    if found:
        return found
    if isinstance(saved, dict):
        for key in STATE_DICT_KEYS:
            found = tensors(dict.get(saved, key))
            if found:
                return found
        keys = ", ".join(f"`{k[:40]}`" for k in list(saved)[:8] if type(k) is str)
        raise CheckpointError(
            f"{path}: holds a dict ({keys}) with no state_dict in it (tensors, or tensors under "
            + ", ".join(f"`{k}`" for k in STATE_DICT_KEYS)
            + ")"
        )
    raise CheckpointError(f"{path}: holds a {type(saved).__name__}, not a state_dict")


def _loader(source: _Source, tensor: _Tensor, order: _Order, path: str, key: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        dtype = tensor.dtype
        if dtype.numpy is None:
            raise CheckpointError(f"{path}: {key} has dtype {dtype.name}, whose values are not read")
        shape, strides = tensor.shape, tensor.stride
        if math.prod(shape) == 0:
            return np.zeros(shape, dtype=dtype.reported)
        span = sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) + 1
        raw = source.read(tensor.storage, tensor.offset * dtype.itemsize, span * dtype.itemsize)
        flat = np.frombuffer(raw, dtype=np.dtype(dtype.numpy).newbyteorder(order)).astype(dtype.numpy)
        if dtype.name == "bfloat16":
            flat = widen_bfloat16(flat)
        view = np.lib.stride_tricks.as_strided(flat, shape, [s * flat.itemsize for s in strides], writeable=False)
        # An expanded tensor (stride 0) stays a view of its storage rather than growing in memory.
        return view.copy() if view.size <= flat.size else view

    return load
