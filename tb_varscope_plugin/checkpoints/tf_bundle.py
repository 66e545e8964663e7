"""Reads TensorFlow checkpoints (a tensor bundle: `<prefix>.index` table + `<prefix>.data-*` shards)
without TensorFlow, naming each variable from the object graph saved alongside."""

from __future__ import annotations

import math
import posixpath
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import google_crc32c
import numpy as np
from google.protobuf.message import DecodeError
from tensorboard.compat.proto import tensor_shape_pb2, trackable_object_graph_pb2, types_pb2

from tb_varscope_plugin.checkpoints.variables import (
    Checkpoint,
    CheckpointError,
    Variable,
    file_size,
    layer_scope,
    read_bytes,
    scoped_path,
    widen_bfloat16,
)
from tb_varscope_plugin.filesystem import mtime

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER_SIZE = 5
_CRC_MASK_DELTA = 0xA282EAD8
# An index holds ~100 bytes per tensor; a million tensors fit well within this, garbage past it is not read.
_MAX_INDEX = 256 * 1024 * 1024
_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
# Objects whose variables are optimizer state, not layer weights: found by the edge that reaches them
# (tf.train.Checkpoint(optimizer=...), a Keras model's `optimizer`), by their step counter child, or by the
# slot variables they own (TF1 and Keras 2 legacy optimizers).
_OPTIMIZER_EDGES = frozenset({"optimizer", "_optimizer"})
_OPTIMIZER_COUNTERS = frozenset({"_iterations", "iter"})
_BOOKKEEPING = frozenset({"save_counter"})
# TF1 optimizers keep slots as `<var>/<Optimizer>` and `<var>/<Optimizer>_1`, plus a few global scalars.
_TF1_SLOT = re.compile(
    r"/(Adam|AdamW|Adagrad|AdagradDA|Adadelta|Adamax|Ftrl|Momentum|RMSProp|ProximalAdagrad|"
    r"ProximalGradientDescent|Nadam|ExponentialMovingAverage)(_\d+)?$"
)
_TF1_BOOKKEEPING = frozenset({"global_step", "beta1_power", "beta2_power"})

_SerializedTensor = trackable_object_graph_pb2.TrackableObjectGraph.TrackableObject.SerializedTensor

_NUMPY_DTYPES = {
    types_pb2.DT_FLOAT: np.float32,
    types_pb2.DT_DOUBLE: np.float64,
    types_pb2.DT_HALF: np.float16,
    types_pb2.DT_INT8: np.int8,
    types_pb2.DT_INT16: np.int16,
    types_pb2.DT_INT32: np.int32,
    types_pb2.DT_INT64: np.int64,
    types_pb2.DT_UINT8: np.uint8,
    types_pb2.DT_UINT16: np.uint16,
    types_pb2.DT_UINT32: np.uint32,
    types_pb2.DT_UINT64: np.uint64,
    types_pb2.DT_BOOL: np.bool_,
    types_pb2.DT_COMPLEX64: np.complex64,
    types_pb2.DT_COMPLEX128: np.complex128,
    # numpy has no bfloat16: read as 2-byte words and widened on load.
    types_pb2.DT_BFLOAT16: np.uint16,
}


@dataclass(frozen=True)
class _Entry:
    """One BundleEntryProto: where a tensor's bytes live and their checksum."""

    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int
    sliced: bool


def read_bundle(prefix: str) -> Checkpoint:
    """Reads the variable records of the TensorFlow checkpoint `prefix` (e.g. `.../ckpt-3`)."""
    index = prefix + ".index"
    table = read_table(index)
    if "" not in table:
        raise CheckpointError(f"{index}: no bundle header entry")
    where = f"{index}: bundle header"
    header = _fields(table.pop(""), where)
    num_shards = _int(header, 1, where, 1)
    big_endian = _int(header, 2, where, 0) == 1
    entries = {}
    for key, value in table.items():
        # Keys of partitioned-variable slices are OrderedCode-encoded and start with a NUL byte.
        if key.startswith("\x00"):
            continue
        entries[key] = _entry(value, f"{index}: entry {key!r}")
    _check_shards(prefix, num_shards, entries)

    def loader(key: str) -> Callable[[], np.ndarray]:
        return lambda: _load(prefix, num_shards, big_endian, key, entries[key])

    if OBJECT_GRAPH_KEY in entries:
        blob = _object_graph_blob(prefix, num_shards, entries[OBJECT_GRAPH_KEY])
        variables = _object_variables(_object_graph(blob, index), entries, loader)
    else:
        variables = _name_variables(entries, loader)
    return Checkpoint(path=prefix, format="tf-checkpoint", variables=tuple(variables), mtime=mtime(index))


def read_table(path: str) -> dict[str, bytes]:
    """All key/value pairs of a LevelDB-style table file (TensorFlow's `.index`), in key order."""
    size = file_size(path)
    if size > _MAX_INDEX:
        raise CheckpointError(f"{path}: {size} bytes is too large for a checkpoint index")
    data = read_bytes(path, 0, size)
    if len(data) < _FOOTER_SIZE:
        raise CheckpointError(f"{path}: too short to be a checkpoint index ({len(data)} bytes)")
    footer = data[-_FOOTER_SIZE:]
    if struct.unpack("<Q", footer[-8:])[0] != _TABLE_MAGIC:
        raise CheckpointError(f"{path}: not a checkpoint index (bad table magic)")
    try:
        _, pos = _varint(footer, 0)
        _, pos = _varint(footer, pos)
        index_offset, pos = _varint(footer, pos)
        index_size, _ = _varint(footer, pos)
    except IndexError as e:
        raise CheckpointError(f"{path}: damaged table footer") from e
    table = {}
    for _, handle in _block_entries(_block(data, index_offset, index_size, path), path):
        try:
            offset, pos = _varint(handle, 0)
            block_size, _ = _varint(handle, pos)
        except IndexError as e:
            raise CheckpointError(f"{path}: damaged block handle in the table index") from e
        for key, value in _block_entries(_block(data, offset, block_size, path), path):
            table[key.decode("utf-8", "surrogateescape")] = value
    return table


def _block(data: bytes, offset: int, size: int, path: str) -> bytes:
    end = offset + size
    if end + _BLOCK_TRAILER_SIZE > len(data) - _FOOTER_SIZE:
        raise CheckpointError(f"{path}: table block at offset {offset} runs past the end of the file")
    contents = data[offset:end]
    kind = data[end]
    (stored,) = struct.unpack("<I", data[end + 1 : end + 5])
    if unmask_crc(stored) != google_crc32c.extend(google_crc32c.value(contents), data[end : end + 1]):
        raise CheckpointError(f"{path}: checksum mismatch in table block at offset {offset}")
    # TensorFlow writes bundle tables with kNoCompression; snappy (1) would need a decoder we do not ship.
    if kind != 0:
        raise CheckpointError(f"{path}: compressed table block (type {kind}) is not supported")
    return contents


def _block_entries(block: bytes, path: str) -> Iterator[tuple[bytes, bytes]]:
    try:
        (num_restarts,) = struct.unpack("<I", block[-4:])
        limit = len(block) - 4 - 4 * num_restarts
        pos, key = 0, b""
        while pos < limit:
            shared, pos = _varint(block, pos)
            unshared, pos = _varint(block, pos)
            value_size, pos = _varint(block, pos)
            key = key[:shared] + block[pos : pos + unshared]
            pos += unshared
            value = block[pos : pos + value_size]
            pos += value_size
            if pos > limit:
                raise IndexError(pos)
            yield key, value
    except (IndexError, struct.error) as e:
        raise CheckpointError(f"{path}: damaged table block") from e


def unmask_crc(masked: int) -> int:
    rot = (masked - _CRC_MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")


def _fields(message: bytes, where: str) -> dict[int, list[int | bytes]]:
    """Protobuf wire-format fields of one message (field number -> values); tensorboard ships no
    tensor_bundle_pb2, and BundleEntryProto is small enough to decode by hand."""
    fields: dict[int, list[int | bytes]] = {}
    pos = 0
    try:
        while pos < len(message):
            tag, pos = _varint(message, pos)
            number, wire = tag >> 3, tag & 7
            value: int | bytes
            if wire == 0:
                value, pos = _varint(message, pos)
            elif wire == 1:
                value, pos = struct.unpack("<Q", message[pos : pos + 8])[0], pos + 8
            elif wire == 5:
                value, pos = struct.unpack("<I", message[pos : pos + 4])[0], pos + 4
            elif wire == 2:
                length, pos = _varint(message, pos)
                value, pos = message[pos : pos + length], pos + length
            else:
                raise IndexError(f"wire type {wire}")
            fields.setdefault(number, []).append(value)
    except (IndexError, struct.error) as e:
        raise CheckpointError(f"{where}: damaged protobuf ({e})") from e
    if pos != len(message):
        raise CheckpointError(f"{where}: damaged protobuf (truncated)")
    return fields


def _int(fields: dict[int, list[int | bytes]], number: int, where: str, default: int = 0) -> int:
    """The last value of a varint or fixed field (protobuf's rule for repeated scalars), or `default`."""
    values = fields.get(number)
    value = values[-1] if values else default
    if not isinstance(value, int):
        raise CheckpointError(f"{where}: field {number} is length-delimited where a number was expected")
    return value


def _bytes(fields: dict[int, list[int | bytes]], number: int, where: str) -> bytes:
    values = fields.get(number)
    value = values[-1] if values else b""
    if not isinstance(value, bytes):
        raise CheckpointError(f"{where}: field {number} is a number where a message was expected")
    return value


def _entry(value: bytes, where: str) -> _Entry:
    fields = _fields(value, where)
    shape_proto = tensor_shape_pb2.TensorShapeProto()
    try:
        shape_proto.ParseFromString(_bytes(fields, 2, where))
    except DecodeError as e:
        raise CheckpointError(f"{where}: damaged shape") from e
    shape = tuple(d.size for d in shape_proto.dim)
    if shape_proto.unknown_rank or any(d < 0 for d in shape):
        raise CheckpointError(f"{where}: shape {list(shape)} is not the shape of a saved tensor")
    entry = _Entry(
        dtype=_int(fields, 1, where),
        shape=shape,
        shard=_int(fields, 3, where),
        offset=_int(fields, 4, where),
        size=_int(fields, 5, where),
        crc32c=_int(fields, 6, where),
        sliced=7 in fields,
    )
    # Numbers take exactly their shape's bytes; checked now so that no shape is ever trusted to allocate.
    if not entry.sliced and entry.dtype in _NUMPY_DTYPES:
        expected = math.prod(shape) * np.dtype(_NUMPY_DTYPES[entry.dtype]).itemsize
        if expected != entry.size:
            raise CheckpointError(
                f"{where}: a {list(shape)} tensor of {_dtype_label(entry.dtype)} takes "
                f"{expected} bytes, but the entry holds {entry.size}"
            )
    return entry


def _data_file(prefix: str, shard: int, num_shards: int) -> str:
    return f"{prefix}.data-{shard:05d}-of-{num_shards:05d}"


def _check_shards(prefix: str, num_shards: int, entries: dict[str, _Entry]) -> None:
    """Fails now, not on first load, when a data shard is missing or shorter than the index says."""
    needed: dict[int, int] = {}
    for entry in entries.values():
        if not entry.sliced:
            needed[entry.shard] = max(needed.get(entry.shard, 0), entry.offset + entry.size)
    for shard, end in needed.items():
        path = _data_file(prefix, shard, num_shards)
        size = file_size(path)
        if size < end:
            raise CheckpointError(f"{path}: truncated, {size} bytes but the index needs {end}")


def _raw(prefix: str, num_shards: int, key: str, entry: _Entry) -> tuple[str, bytes]:
    """The data file of `key` and its bytes, which `_check_shards` has bounded by that file's size."""
    path = _data_file(prefix, entry.shard, num_shards)
    if entry.sliced:
        raise CheckpointError(f"{prefix}: {key} is a partitioned variable; reading its slices is not supported")
    return path, read_bytes(path, entry.offset, entry.size)


def _load(prefix: str, num_shards: int, big_endian: bool, key: str, entry: _Entry) -> np.ndarray:
    """The numbers of one tensor; a variable's values are compared with histograms, so strings are refused."""
    path = _data_file(prefix, entry.shard, num_shards)
    if entry.dtype == types_pb2.DT_STRING:
        raise CheckpointError(f"{path}: {key} holds strings, not numbers")
    if entry.dtype not in _NUMPY_DTYPES:
        raise CheckpointError(f"{path}: {key} has unsupported dtype {_dtype_label(entry.dtype)}")
    path, raw = _raw(prefix, num_shards, key, entry)
    if google_crc32c.value(raw) != unmask_crc(entry.crc32c):
        raise CheckpointError(f"{path}: checksum mismatch in the values of {key}")
    dtype = np.dtype(_NUMPY_DTYPES[entry.dtype]).newbyteorder(">" if big_endian else "<")
    # `_entry` checked that the bytes are exactly the shape's.
    values = np.frombuffer(raw, dtype=dtype).reshape(entry.shape)
    if entry.dtype == types_pb2.DT_BFLOAT16:
        return widen_bfloat16(values.astype(np.uint16))
    return values.astype(dtype.newbyteorder("="))


def _object_graph_blob(prefix: str, num_shards: int, entry: _Entry) -> bytes:
    """The serialized object graph, which TensorFlow saves as one scalar string."""
    if entry.dtype != types_pb2.DT_STRING or entry.shape != ():
        raise CheckpointError(
            f"{prefix}.index: the object graph is a {list(entry.shape)} tensor of {_dtype_label(entry.dtype)}, "
            "not one string"
        )
    path, raw = _raw(prefix, num_shards, OBJECT_GRAPH_KEY, entry)
    return _strings(raw, entry, path, OBJECT_GRAPH_KEY)[0]


def _strings(raw: bytes, entry: _Entry, path: str, key: str) -> list[bytes]:
    """A DT_STRING tensor, flat: varint lengths, a masked crc of the lengths, then the bytes (tensor_bundle.cc)."""
    count = math.prod(entry.shape)
    if count > len(raw):  # each string takes at least the byte of its length
        raise CheckpointError(f"{path}: damaged string tensor {key} ({count} strings in {len(raw)} bytes)")
    try:
        lengths, pos = [], 0
        for _ in range(count):
            length, pos = _varint(raw, pos)
            lengths.append(length)
        crc = 0
        for length in lengths:
            crc = google_crc32c.extend(crc, struct.pack("<I" if length <= 0xFFFFFFFF else "<Q", length))
        (length_crc,) = struct.unpack("<I", raw[pos : pos + 4])
    except (IndexError, struct.error) as e:
        raise CheckpointError(f"{path}: damaged string tensor {key}") from e
    if unmask_crc(length_crc) != crc:
        raise CheckpointError(f"{path}: checksum mismatch in the string lengths of {key}")
    crc = google_crc32c.extend(crc, raw[pos : pos + 4])
    pos += 4
    values = []
    for length in lengths:
        values.append(raw[pos : pos + length])
        pos += length
    crc = google_crc32c.extend(crc, raw[pos - sum(lengths) : pos])
    if pos != len(raw) or crc != unmask_crc(entry.crc32c):
        raise CheckpointError(f"{path}: checksum mismatch in the values of {key}")
    return values


def _object_graph(blob: bytes, where: str) -> trackable_object_graph_pb2.TrackableObjectGraph:
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    try:
        graph.ParseFromString(blob)
    except DecodeError as e:
        raise CheckpointError(f"{where}: damaged object graph") from e
    if not graph.nodes:
        raise CheckpointError(f"{where}: the object graph has no root object")
    return graph


def _object_variables(
    graph: trackable_object_graph_pb2.TrackableObjectGraph,
    entries: dict[str, _Entry],
    loader: Callable[[str], Callable[[], np.ndarray]],
) -> list[Variable]:
    nodes = graph.nodes
    optimizers = {c.node_id for n in nodes for c in n.children if c.local_name in _OPTIMIZER_EDGES}
    for node_id, node in enumerate(nodes):
        if node.slot_variables or any(c.local_name in _OPTIMIZER_COUNTERS for c in node.children):
            optimizers.add(node_id)
    # Breadth-first from the root in child order, as TensorFlow names checkpoint keys, but never through an
    # optimizer: Keras 3 models are reachable through `optimizer/_trainable_variables` first, and what is
    # reachable only that way is optimizer state.
    paths: dict[int, tuple[str, ...]] = {0: ()}
    parents: dict[int, int] = {}
    queue = [0]
    for node_id in queue:
        for child in nodes[node_id].children:
            if child.node_id in paths or child.node_id in optimizers or not 0 <= child.node_id < len(nodes):
                continue
            paths[child.node_id] = (*paths[node_id], child.local_name)
            parents[child.node_id] = node_id
            queue.append(child.node_id)

    def value_attribute(node_id: int) -> _SerializedTensor | None:  # type: ignore[valid-type]
        for attribute in nodes[node_id].attributes:
            if attribute.name == "VARIABLE_VALUE" and attribute.checkpoint_key in entries:
                return attribute
        return None

    variables: list[Variable] = []
    for node_id in range(len(nodes)):
        attribute = value_attribute(node_id)
        if attribute is None:
            continue
        key, name = attribute.checkpoint_key, attribute.full_name
        entry = entries[key]
        dtype = _dtype_name(entry.dtype)
        if node_id not in paths or (len(paths[node_id]) == 1 and paths[node_id][0] in _BOOKKEEPING):
            path = key[: -len(_VALUE_SUFFIX)] if key.endswith(_VALUE_SUFFIX) else key
            variables.append(Variable(path, key, name or None, entry.shape, dtype, None, True, loader(key)))
            continue
        parent = parents[node_id]
        siblings = {c.node_id for c in nodes[parent].children if parents.get(c.node_id) == parent}
        sibling_names = [a.full_name for a in map(value_attribute, sorted(siblings)) if a is not None and a.full_name]
        scope = layer_scope(sibling_names)
        path = scoped_path(scope, name) if scope and name else None
        if path is not None:
            layer = scope
        elif scope and name:
            # A variable this layer holds but did not create: it keeps the scope it was made in.
            path, layer = name, posixpath.dirname(name) or None
        else:
            path, layer = "/".join(paths[node_id]), "/".join(paths[parent]) or None
        variables.append(Variable(path, key, name or None, entry.shape, dtype, layer, False, loader(key)))
    return variables


def _name_variables(entries: dict[str, _Entry], loader: Callable[[str], Callable[[], np.ndarray]]) -> list[Variable]:
    """TF1 name-based checkpoints: each key is the variable's own name."""
    variables: list[Variable] = []
    for key, entry in entries.items():
        slot = key in _TF1_BOOKKEEPING or _TF1_SLOT.search(key) is not None
        layer = posixpath.dirname(key) or None
        variables.append(Variable(key, key, key, entry.shape, _dtype_name(entry.dtype), layer, slot, loader(key)))
    return variables


def _dtype_label(dtype: int) -> str:
    """TensorFlow's name of a dtype enum (`DT_FLOAT`), or its number when it has none."""
    return types_pb2.DataType.Name(dtype) if dtype in types_pb2.DataType.values() else str(dtype)


def _dtype_name(dtype: int) -> str:
    if dtype == types_pb2.DT_STRING:
        return "object"
    if dtype == types_pb2.DT_BFLOAT16:
        return "float32"
    if dtype in _NUMPY_DTYPES:
        return np.dtype(_NUMPY_DTYPES[dtype]).name
    return types_pb2.DataType.Name(dtype) if dtype in types_pb2.DataType.values() else f"dtype {dtype}"
