"""TFRecord framing for event files: resumable, block-buffered reading with masked CRC32C checked on every record.

Reading goes through TensorBoard's filesystem layer, so local, S3 and fsspec logdirs behave as in TensorBoard.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain

import google_crc32c
import numpy as np

from tb_varscope_plugin.filesystem import PositionedReader, is_local

HEADER = 12  # uint64 length + uint32 masked CRC of the length
FOOTER = 4  # uint32 masked CRC of the payload
BLOCK = 2 << 20  # a read buffer: half the per-buffer numpy passes of 1 MB (10,000 tags read 15 % faster)
# No record can be longer: an event is a protocol buffer, and protobuf refuses messages of 2 GiB or more (RustBoard's
# reader reasons the same way). A longer length, even one that passes its checksum, is damage. Below the cap a
# record is read only once the file holds all of it, so memory never follows a length the file does not back.
MAX_RECORD = (1 << 31) - 1
# What one read at a record's offset fetches: a histogram's whole record mostly, so one read, not two, per value.
RECORD_GUESS = 16 << 10
BOUNDARY_WINDOW = 1 << 16  # bytes searched per read for a record boundary: records are mostly far shorter

_LENGTH = struct.Struct("<QI")
_U64 = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    """The CRC TFRecord stores: CRC32C rotated right by 15 bits plus a constant, so CRCs of CRCs stay distinct."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


@dataclass(frozen=True)
class Damage:
    """Where a file stopped being readable, and why."""

    offset: int
    message: str


@dataclass(frozen=True)
class Block:
    """Consecutive records of one file that passed their checks, as they lie in one read buffer."""

    base: int  # file offset of data[0]
    data: bytes
    starts: np.ndarray  # int64: where each record's header starts in data
    lengths: np.ndarray  # int64: each record's payload length
    payloads: list[bytes]


class RecordReader:
    """Reads the records of one file from a saved offset onwards, and can be asked again as the file grows.

    Like RustBoard's reader: a record cut short at the end of the file is left for the next call (the writer may
    still be flushing it), while a checksum failure is damage: the file is not read past it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0  # end of the last complete, valid record
        self.pending = 0  # bytes after `offset` that do not yet form a complete record
        self.damage: Damage | None = None
        self.tail = b""  # the last 4 bytes before `offset` (the last record's CRC): still there if the file is
        self.rewritten: Damage | None = None  # set by `blocks()` if the file no longer holds what was read of it
        self._tail_before = b""  # `tail` before the block last handed out, for `mark_damaged` to go back to

    def blocks(self) -> Iterator[Block]:
        """Yields the complete records after `self.offset` a buffer at a time, advancing it past each block.

        Every record's length and payload CRC is checked before its block is handed out; a block ends before the
        first record that fails, and the file is marked damaged there.
        """
        # One handle for every block of this call: gfile would open the file again for each buffer.
        with PositionedReader(self.path) as source:
            self.rewritten = self._rewritten(source)
            if self.rewritten is None and self.damage is None:
                yield from self._blocks(source)

    def range_blocks(self, start: int, end: int | None) -> Iterator[Block]:
        """Like `blocks()`, but from `start` (a record boundary: the caller vouches for it) and only up to `end`
        (None: as far as the file goes), without `blocks()`'s check that the file still holds what was read.

        For one file read in segments at once (reading/parallel.py). A record crossing `end` is left pending, as
        one cut short at the end of the file: the reader then stops short of `end`, which tells the caller that
        `end` was no record boundary.
        """
        with PositionedReader(self.path) as source:
            self.offset, self.pending, self.rewritten = start, 0, None
            self.tail = source.read(start - FOOTER, FOOTER) if start else b""
            if self.damage is None:
                yield from self._blocks(source, end)

    def _rewritten(self, source: PositionedReader) -> Damage | None:
        """Whether the file still holds what was read of it: not if it is shorter than that, or if the last record
        read no longer ends where it did (another file moved in under the name, or the writer started over)."""
        if not self.offset:
            return None
        size = source.size()
        if size < self.offset:
            return Damage(self.offset, f"shrank to {size} bytes, below the {self.offset} already read")
        if source.read(self.offset - FOOTER, FOOTER) != self.tail:
            return Damage(self.offset, "was overwritten: the last record read no longer ends where it did")
        return None

    def _blocks(self, source: PositionedReader, limit: int | None = None) -> Iterator[Block]:
        buf = b""
        pos = 0  # position of the next record in buf
        base = self.offset  # file offset of buf[0]
        eof = False
        need = HEADER
        local = is_local(self.path)
        while True:
            first = pos
            payloads, pos = _walk(buf, pos)
            if payloads:
                block, bad = verify_all([Walked(buf, base, first, payloads, pos)])[0]
                if self._take(block) is not None:
                    yield block
                if bad is not None:
                    self.mark_damaged(*bad)
                    return
            length = self._unfinished_length(buf, pos, base)
            if length is None:
                return
            need = HEADER + length + FOOTER if length >= 0 else HEADER
            if eof or (need > BLOCK and base + pos + need > source.size()):
                break  # a record the file does not hold all of yet: left for a later call
            # The next read starts at the unfinished record: reading its few bytes again is cheaper than copying
            # the new buffer behind them.
            base += pos
            pos = 0
            want = max(BLOCK, need) if limit is None else max(0, min(max(BLOCK, need), limit - base))
            if local:
                want = _clamped(want, source, base)
            buf = source.read(base, want)
            eof = len(buf) < want or (limit is not None and base + len(buf) >= limit)
        self.pending = base + len(buf) - self.offset

    def read_small(self) -> Walked | None:
        """What `blocks()` reads, where that is a single read buffer holding all the file has past `offset` (a
        small file, or a small increment): its records walked, to be checked (with other files' at once, see
        `verify_all`), then handed to `take` and `finish`. None, with nothing changed, where `blocks()` would do
        otherwise: the file is damaged or was rewritten, or holds more than a buffer. Raises what reading raises.
        """
        with PositionedReader(self.path) as source:
            if self.damage is not None or self._rewritten(source) is not None:
                return None
            want = _clamped(BLOCK, source, self.offset) if is_local(self.path) else BLOCK
            buf = source.read(self.offset, want)
        if len(buf) >= want:
            return None
        self.rewritten = None
        payloads, pos = _walk(buf, 0)
        return Walked(buf, self.offset, 0, payloads, pos)

    def take(self, walked: Walked, checked: tuple[Block, tuple[int, str] | None] | None) -> Block | None:
        """Moves past the sound records of `walked` (`read_small`), `checked` by `verify_all` (None: it held no
        whole record), as `blocks()` does before handing out its block; that block, or None if it holds none."""
        return None if checked is None else self._take(checked[0])

    def finish(self, walked: Walked, checked: tuple[Block, tuple[int, str] | None] | None) -> None:
        """What `blocks()` does once its block of `walked` was taken in: notes damage, or what is left pending.
        Not called where indexing the block found damage, as `blocks()` is not resumed then."""
        if checked is not None and checked[1] is not None:
            self.mark_damaged(*checked[1])
            return
        if self._unfinished_length(walked.buf, walked.pos, walked.base) is not None:
            self.pending = walked.base + len(walked.buf) - self.offset

    def _take(self, block: Block) -> Block | None:
        if not len(block.starts):
            return None
        self._tail_before = self.tail
        self.offset = block.base + int(block.starts[-1] + block.lengths[-1]) + HEADER + FOOTER
        self.tail = block.data[self.offset - block.base - FOOTER : self.offset - block.base]
        return block

    def _unfinished_length(self, buf: bytes, pos: int, base: int) -> int | None:
        """The length of the record at `pos` whose header is in `buf` but whose body is not (yet), -1 if not even
        its header is; None where that length fails its checks: the file is marked damaged there."""
        if len(buf) - pos < HEADER:
            return -1
        length = _U64.unpack_from(buf, pos)[0]
        if _length_crc(length) != _CRC.unpack_from(buf, pos + 8)[0]:
            self.mark_damaged(base + pos, "record length fails its checksum")
            return None
        if length > MAX_RECORD:
            self.mark_damaged(base + pos, f"record length {length} is past the {MAX_RECORD}-byte limit")
            return None
        return length

    def mark_damaged(self, offset: int, message: str, block: Block | None = None) -> None:
        """Stops the file at `offset`: nothing past damage is trusted.

        Damage inside `block`, the block last handed out (a record that frames but is no event), moves the reader
        back to it: `offset` then is where the last sound record ends, wherever the reads happened to fall.
        """
        self.damage = Damage(offset, message)
        self.pending = 0
        if block is not None and offset < self.offset:
            at = offset - block.base
            self.tail = block.data[at - FOOTER : at] if at >= FOOTER else self._tail_before
            self.offset = offset


@dataclass(frozen=True)
class Walked:
    """Records of one read buffer walked from record to record by their lengths, not yet checked."""

    buf: bytes
    base: int  # file offset of buf[0]
    first: int  # where the first record starts in buf
    payloads: list[bytes]
    pos: int  # where the walk stopped: the first record not whole in buf


def _walk(buf: bytes, pos: int) -> tuple[list[bytes], int]:
    """The payloads of the records from `pos` that `buf` holds whole, and where the first one it does not starts.

    The walk from record to record is sequential, so it does no more per record than a Python loop must; CRCs are
    computed and compared, and offsets derived, for whole buffers at once afterwards (`verify_all`)."""
    unpack_length = _U64.unpack_from
    payloads: list[bytes] = []
    add_payload = payloads.append
    last_header = len(buf) - HEADER
    last_stop = len(buf) - FOOTER
    while pos <= last_header:
        stop = pos + HEADER + unpack_length(buf, pos)[0]
        if stop > last_stop:
            break
        add_payload(buf[pos + HEADER : stop])
        pos = stop + FOOTER
    return payloads, pos


def _clamped(want: int, source: PositionedReader, offset: int) -> int:
    """`want` bytes to read at `offset`, or one more than the local file holds past it, if that is fewer: the one
    byte past the end still tells the end apart (a read shorter than asked), and asking a read for a whole buffer
    costs a fresh megabyte even for a file of a few kilobytes (0.1 ms a file)."""
    return min(want, max(0, source.size() - offset) + 1)


@functools.lru_cache(maxsize=1 << 12)
def _length_crc(length: int) -> int:
    # The length CRC depends on the length alone, and records of one tag mostly share a length: each computed once.
    return masked_crc32c(_U64.pack(length))


def verify_all(walks: list[Walked], joined: bytes | None = None) -> list[tuple[Block, tuple[int, str] | None]]:
    """For each of `walks` (each holding records), its records up to the first that fails a check, as a Block, and
    that one's damage `(offset, message)`: the numpy work done once for all, so many small files cost about what
    one buffer of the same records does. `joined`: the walks' buffers joined, if the caller has them so."""
    counts = [len(walk.payloads) for walk in walks]
    total = sum(counts)
    payloads = walks[0].payloads if len(walks) == 1 else list(chain.from_iterable(w.payloads for w in walks))
    lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=total)
    crc = np.fromiter(map(google_crc32c.value, payloads), dtype=np.uint32, count=total)
    buffers = [walk.buf for walk in walks]
    if joined is None:
        joined = buffers[0] if len(walks) == 1 else b"".join(buffers)
    data = np.frombuffer(joined, dtype=np.uint8)
    firsts = np.cumsum([0, *counts[:-1]])  # each walk's first record
    bases = np.cumsum([0, *map(len, buffers[:-1])])  # where each walk's buffer starts in data
    # Where each record's header starts in its own buffer, then in data.
    headers = np.empty(total, dtype=np.int64)
    headers[0] = 0
    np.cumsum(lengths[:-1] + (HEADER + FOOTER), out=headers[1:])
    headers += np.repeat(np.array([walk.first for walk in walks]) - headers[firsts], counts)
    at = headers + np.repeat(bases, counts)
    distinct, which = np.unique(lengths, return_inverse=True)
    length_crcs = np.array([_length_crc(n) for n in distinct.tolist()], dtype=np.uint32)[which]
    masked = ((crc >> 15) | (crc << 17)) + np.uint32(_MASK_DELTA)  # uint32 wraps as the & 0xFFFFFFFF did
    length_bad = length_crcs != _uint32_at(data, at + 8)
    bad = np.flatnonzero(length_bad | (masked != _uint32_at(data, at + HEADER + lengths)))
    first_bad = np.append(bad, total)[np.searchsorted(bad, firsts)].tolist()
    checked: list[tuple[Block, tuple[int, str] | None]] = []
    for walk, start, count, stop in zip(walks, firsts.tolist(), counts, first_bad, strict=True):
        if stop >= start + count:
            stop = start + count
            checked.append((Block(walk.base, walk.buf, headers[start:stop], lengths[start:stop], walk.payloads), None))
            continue
        offset = walk.base + int(headers[stop])
        if length_bad[stop]:
            damage = (offset, "record length fails its checksum")
        else:
            damage = (offset, f"record of {int(lengths[stop])} bytes fails its checksum")
        block = Block(walk.base, walk.buf, headers[start:stop], lengths[start:stop], walk.payloads[: stop - start])
        checked.append((block, damage))
    return checked


def record_boundary(source: PositionedReader, cut: int, stop: int, size: int) -> int | None:
    """The first offset in `[cut, stop)` where a record starts, by the look of it, in a file of `size` bytes: its
    length and payload pass their CRCs, and so does the record after it, unless it ends the file. None if none does.

    Where a file is cut in segments to be read at once (reading/parallel.py). Two records passing four CRCs by
    chance is about 2^-128 a position, yet a boundary found so is still only believed once the sequential reading of
    what precedes it ends exactly there.
    """
    at = cut
    while at < stop:
        window = source.read(at, min(BOUNDARY_WINDOW, stop - at) + HEADER - 1)
        count = len(window) - HEADER + 1
        if count <= 0:
            return None
        # The uint64 at every byte: only a length the rest of the file could hold is worth a CRC.
        lengths = np.ndarray((count,), dtype="<u8", buffer=window, strides=(1,))
        room = size - at - np.arange(count, dtype=np.int64) - (HEADER + FOOTER)
        for p in np.flatnonzero((lengths <= MAX_RECORD) & (lengths.astype(np.int64) <= room)).tolist():
            if masked_crc32c(window[p : p + 8]) != _CRC.unpack_from(window, p + 8)[0]:
                continue
            end = _record_end(source, at + p, size)
            if end is not None and (end == size or _record_end(source, end, size) is not None):
                return at + p
        at += count
    return None


def _record_end(source: PositionedReader, offset: int, size: int) -> int | None:
    """Where the record at `offset` ends, if one is there whose length and payload pass their CRCs."""
    header = source.read(offset, HEADER)
    if len(header) < HEADER:
        return None
    length, length_crc = _LENGTH.unpack(header)
    end = offset + HEADER + length + FOOTER
    if masked_crc32c(header[:8]) != length_crc or length > MAX_RECORD or end > size:
        return None
    body = source.read(offset + HEADER, length + FOOTER)
    if len(body) < length + FOOTER or masked_crc32c(body[:length]) != _CRC.unpack_from(body, length)[0]:
        return None
    return end


def _uint32_at(data: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The little-endian uint32 at each of `positions` in a byte array."""
    return data[positions[:, None] + np.arange(4)].view("<u4").ravel()


class NoRecord(ValueError):
    """There is no sound record at the offset asked for: the file was truncated or replaced since it was read."""


def read_record_at(path: str, offset: int, source: PositionedReader | None = None) -> bytes:
    """The payload of the record starting at `offset`, checked against its CRCs; raises NoRecord if there is none.

    One read fetches a histogram's record whole, header and all; `source`, when given, is a reader kept open over
    `path` for many such calls.
    """
    if source is None:
        with PositionedReader(path) as source:
            return read_record_at(path, offset, source)
    first = source.read(offset, RECORD_GUESS)
    if len(first) < HEADER:
        raise NoRecord(f"{path}: no record at offset {offset}")
    length, length_crc = _LENGTH.unpack_from(first)
    if masked_crc32c(first[:8]) != length_crc:
        raise NoRecord(f"{path}: record length at offset {offset} fails its checksum")
    end = HEADER + length + FOOTER
    if len(first) < end:
        if length > MAX_RECORD or offset + end > source.size():
            raise NoRecord(f"{path}: record at offset {offset} claims {length} bytes, which the file does not hold")
        first += source.read(offset + len(first), end - len(first))
    payload = first[HEADER : HEADER + length]
    if len(first) < end or masked_crc32c(payload) != _CRC.unpack_from(first, HEADER + length)[0]:
        raise NoRecord(f"{path}: record at offset {offset} is incomplete or fails its checksum")
    return payload
