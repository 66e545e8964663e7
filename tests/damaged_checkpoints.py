"""Real checkpoints to damage (tests/data/checkpoints, written by make.py there with TensorFlow and both Kerases) and
the tools to damage them faithfully: a TF bundle table writer whose checksums are right, and a run to scan beside."""

from __future__ import annotations

import shutil
import struct
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import google_crc32c
import numpy as np
from eventlogs import histogram_event, write_events

from tb_varscope_plugin.checkpoints.formats import read_checkpoint
from tb_varscope_plugin.checkpoints.tf_bundle import OBJECT_GRAPH_KEY, _entry, read_table

REAL = Path(__file__).with_name("data") / "checkpoints"
# Each fixture, and the histogram tag under which two same-shaped kernels of it were logged.
TAGS = {
    "tf/ckpt-1": "kernel",
    "model.keras": "kernel",
    "model.weights.h5": "kernel",
    "legacy.h5": "kernel",
    "model.safetensors": "weight",
}
_TABLE_MAGIC = 0xDB4775248B80FB57
_RESTART_INTERVAL = 16  # tensor_bundle.cc writes with LevelDB's default options
T = TypeVar("T")


def copy_real(name: str, dest: Path) -> Path:
    """A copy of the fixture `name` in `dest` (all of a TF checkpoint's files); returns the path to read."""
    source = REAL / name
    if name.startswith("tf/"):
        for part in source.parent.glob(source.name + ".*"):
            shutil.copy(part, dest / part.name)
        return dest / source.name
    shutil.copy(source, dest / source.name)
    return dest / source.name


def kernels(name: str) -> list[np.ndarray]:
    """The values of the fixture's two 3x3 kernels, in layer order."""
    checkpoint = read_checkpoint(str(REAL / name))
    return [v.load() for v in checkpoint.variables if not v.slot and v.shape == (3, 3)]


def colliding_run(logdir: Path, name: str, steps: int = 2) -> Path:
    """A run under `logdir` whose tag (see TAGS) holds both kernels of fixture `name` at every step, as Keras 3
    logs `v.name`; attributing its two lanes loads both kernels from the checkpoint beside it."""
    run = logdir / "run"
    values = kernels(name)
    events = [histogram_event(step, TAGS[name], v) for step in range(steps) for v in values]
    write_events(str(run / "events.out.tfevents.1.host"), events)
    return run


def peak_memory(call: Callable[[], T]) -> tuple[T | BaseException, int]:
    """What `call` returned or raised, and the most memory it held at once (bytes, as tracemalloc counts)."""
    tracemalloc.start()
    try:
        try:
            result: T | BaseException = call()
        except Exception as error:
            result = error
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- the TF bundle table (`.index`): a LevelDB table, rebuilt with valid checksums ---


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def mask_crc(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _block(items: list[tuple[bytes, bytes]], restart_interval: int) -> bytes:
    out, restarts, last = bytearray(), [], b""
    for i, (key, value) in enumerate(items):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(key), len(last)) and key[shared] == last[shared]:
                shared += 1
        out += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        last = key
    for restart in restarts or [0]:
        out += struct.pack("<I", restart)
    return bytes(out + struct.pack("<I", len(restarts or [0])))


def _with_trailer(contents: bytes) -> bytes:
    crc = google_crc32c.extend(google_crc32c.value(contents), b"\x00")
    return contents + b"\x00" + struct.pack("<I", mask_crc(crc))


def _short_successor(key: bytes) -> bytes:
    for i, byte in enumerate(key):
        if byte != 0xFF:
            return key[:i] + bytes([byte + 1])
    return key


def write_table(path: Path, table: dict[str, bytes]) -> None:
    """Writes `table` (key -> value, as read_table returns it) as TensorFlow writes a small `.index`: one data
    block, an empty meta-index block, the index block, the footer."""
    items = sorted((k.encode("utf-8", "surrogateescape"), v) for k, v in table.items())
    data = _block(items, _RESTART_INTERVAL)
    meta = _block([], 1)
    meta_at = len(data) + 5
    index = _block([(_short_successor(items[-1][0]), varint(0) + varint(len(data)))], 1)
    index_at = meta_at + len(meta) + 5
    handles = varint(meta_at) + varint(len(meta)) + varint(index_at) + varint(len(index))
    footer = handles.ljust(40, b"\x00") + struct.pack("<Q", _TABLE_MAGIC)
    path.write_bytes(_with_trailer(data) + _with_trailer(meta) + _with_trailer(index) + footer)


# --- BundleEntryProto, by field number: dtype 1, shape 2, shard_id 3, offset 4, size 5, crc32c 6, slices 7 ---


def entry_bytes(dtype: int, shape: tuple[int, ...], offset: int, size: int, crc: int, shard: int = 0) -> bytes:
    dims = b"".join(b"\x12" + varint(len(d)) + d for d in (b"\x08" + varint(n & (2**64 - 1)) for n in shape))
    out = b"\x08" + varint(dtype) + b"\x12" + varint(len(dims)) + dims
    if shard:
        out += b"\x18" + varint(shard)
    if offset:
        out += b"\x20" + varint(offset)
    out += b"\x28" + varint(size) + b"\x35" + struct.pack("<I", crc)
    return out


def _lengths_crc(values: list[bytes]) -> int:
    crc = 0
    for v in values:
        crc = google_crc32c.extend(crc, struct.pack("<I", len(v)))
    return crc


def string_tensor(values: list[bytes]) -> bytes:
    """A DT_STRING tensor's bytes in a data shard: varint lengths, the masked crc of the lengths, the bytes."""
    lengths = b"".join(varint(len(v)) for v in values)
    return lengths + struct.pack("<I", mask_crc(_lengths_crc(values))) + b"".join(values)


def string_crc(values: list[bytes]) -> int:
    """The entry crc32c of a string tensor: over the lengths (as uint32), their masked crc, then the bytes."""
    crc = _lengths_crc(values)
    crc = google_crc32c.extend(crc, struct.pack("<I", mask_crc(crc)))
    return mask_crc(google_crc32c.extend(crc, b"".join(values)))


def object_graph_blob(prefix: Path) -> bytes:
    """The serialized TrackableObjectGraph of a checkpoint: one string tensor, past its length and length crc."""
    entry = _entry(read_table(f"{prefix}.index")[OBJECT_GRAPH_KEY], OBJECT_GRAPH_KEY)
    raw = Path(f"{prefix}.data-00000-of-00001").read_bytes()[entry.offset : entry.offset + entry.size]
    length, pos = 0, 0
    while True:
        length |= (raw[pos] & 0x7F) << (7 * pos)
        pos += 1
        if not raw[pos - 1] & 0x80:
            return raw[pos + 4 : pos + 4 + length]


def append_to_shard(prefix: Path, payload: bytes) -> int:
    """Appends `payload` to the checkpoint's only data shard; returns where it starts."""
    shard = Path(f"{prefix}.data-00000-of-00001")
    offset = shard.stat().st_size
    with open(shard, "ab") as f:
        f.write(payload)
    return offset


def rewrite_entry(prefix: Path, key: str, value: bytes) -> None:
    """Replaces one entry of the `.index` (the object graph: OBJECT_GRAPH_KEY), keeping every checksum valid."""
    index = Path(f"{prefix}.index")
    table = read_table(str(index))
    assert key in table, key
    table[key] = value
    write_table(index, table)


# --- zip archives (`.keras`), built member by member so that flags, methods and sizes can be anything ---


def zip_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_zip(path: Path, members: list[tuple[str, bytes, dict]]) -> None:
    """Writes a zip archive by the spec (APPNOTE: local headers, data, central directory, end record).

    Each member is (name, the bytes to store, overrides): by default the bytes are deflated when `method` is 8
    and stored when 0, with their true CRC and sizes; `method`, `flags`, `crc`, `file_size` and `raw` (bytes to
    put in place of the compressed data) override that, as a damaged or hostile archive would. `sparse` leaves
    that many zero bytes as a hole after the data, so a declared gigabyte costs no disk."""
    central = bytearray()
    with open(path, "wb") as out:
        for name, data, overrides in members:
            method = overrides.get("method", zipfile.ZIP_DEFLATED)
            if "raw" in overrides:
                raw = overrides["raw"]
            elif method == zipfile.ZIP_DEFLATED:
                packer = zlib.compressobj(6, zlib.DEFLATED, -15)
                raw = packer.compress(data) + packer.flush()
            else:
                raw = data
            crc = overrides.get("crc", zlib.crc32(data))
            size = overrides.get("file_size", len(data))
            compressed = len(raw) + overrides.get("sparse", 0)
            flags = overrides.get("flags", 0)
            encoded = name.encode()
            offset = out.tell()
            out.write(
                struct.pack(
                    "<4s5H3L2H", b"PK\x03\x04", 20, flags, method, 0, 0x21, crc, compressed, size, len(encoded), 0
                )
                + encoded
                + raw
            )
            if overrides.get("sparse"):
                out.seek(overrides["sparse"], 1)
            central += (
                struct.pack(
                    "<4s6H3L5H2L",
                    b"PK\x01\x02",
                    20,
                    20,
                    flags,
                    method,
                    0,
                    0x21,
                    crc,
                    compressed,
                    size,
                    len(encoded),
                    0,
                    0,
                    0,
                    0,
                    0,
                    offset,
                )
                + encoded
            )
        start = out.tell()
        out.write(bytes(central))
        out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), start, 0))


def deflate_bomb(size: int) -> bytes:
    """A raw deflate stream of `size` zero bytes (a multiple of 1 MiB) that is about size/1000 long: 1 MiB chunks
    each ending in a full flush compress to the same bytes, so the stream is one chunk repeated."""
    chunk = bytes(1 << 20)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)
    repeated = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)
    return first + repeated * (size // len(chunk) - 1) + packer.flush()
