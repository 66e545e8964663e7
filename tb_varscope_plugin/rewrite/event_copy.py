"""Copying one event file into OUTDIR: every record as it lies in the file, except the events whose values change tag.

Records are framed as TensorBoard's `RecordWriter` frames them; unchanged records keep their original bytes, which
are that same framing of the same payload. Only the readable part of a file is copied: a damaged file ends where
reading stopped.
"""

from __future__ import annotations

import struct

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.compat.tensorflow_stub.io import gfile
from tensorboard.summary.writer.record_writer import RecordWriter

from tb_varscope_plugin.filesystem import READ_ERRORS, error_reason, read_at
from tb_varscope_plugin.reading.records import FOOTER, HEADER, masked_crc32c, read_record_at
from tb_varscope_plugin.rewrite.plan import FilePlan

CHUNK = 4 << 20  # bytes per read and per write: the local filesystem layer opens the file for every write call
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")


class SourceError(Exception):
    """The event file could not be read to where the index had read it: what was copied of it stays."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset


class FramedWriter(RecordWriter):
    """TensorBoard's record writer, with the C CRC32C: the stub's pure-Python one does ~12 MB/s, slower than reading.

    It also takes records that are framed already (copied bytes), and batches writes into `CHUNK`-sized ones.
    """

    def __init__(self, path: str) -> None:
        super().__init__(gfile.GFile(path, "wb"))
        self._pending: list[bytes] = []
        self._size = 0
        self.written = 0

    def write(self, data: bytes) -> None:
        length = _LENGTH.pack(len(data))
        self.write_framed(length + _CRC.pack(masked_crc32c(length)) + data + _CRC.pack(masked_crc32c(data)))

    def write_framed(self, framed: bytes) -> None:
        self._pending.append(framed)
        self._size += len(framed)
        if self._size >= CHUNK:
            self._drain()

    def _drain(self) -> None:
        if self._pending:
            self._writer.write(b"".join(self._pending))
            self.written += self._size
            self._pending, self._size = [], 0

    def flush(self) -> None:
        self._drain()
        super().flush()

    def close(self) -> None:
        self._drain()
        super().close()


def copy_event_file(plan: FilePlan, out_path: str) -> int:
    """Writes the readable records of `plan.file` to `out_path`, retagging the values the plan names; returns the
    bytes written. Raises SourceError where LOGDIR's file cannot be read, and what the filesystem layer raises
    where OUTDIR cannot be written."""
    source = plan.file
    end = source.readable_end()
    metadata = _first_metadata(plan)
    started: set[str] = set()  # tags whose first value in the new file was written
    window = _Window(source.path, end)
    writer = FramedWriter(out_path)
    try:
        at = 0
        for offset in sorted(o for o in plan.retag if o < end):
            window.copy(at, offset, writer)
            data, start = window.span(offset, offset + HEADER)
            length = _LENGTH.unpack_from(data, start)[0]
            at = offset + HEADER + length + FOOTER
            data, start = window.span(offset, at)
            payload = data[start + HEADER : start + HEADER + length]
            if _CRC.unpack_from(data, start + HEADER + length)[0] != masked_crc32c(payload):
                raise SourceError(offset, "record changed since it was read; copied up to it")
            writer.write(_retagged(payload, plan.retag[offset], metadata, started))
        window.copy(at, end, writer)
        writer.flush()
    finally:
        writer.close()
    return writer.written


class _Window:
    """Sequential reads of a file a `CHUNK` at a time: the records around each rewritten one are copied from it."""

    def __init__(self, path: str, end: int) -> None:
        self.path = path
        self.end = end
        self.base = 0
        self.data = b""

    def span(self, start: int, stop: int) -> tuple[bytes, int]:
        """A buffer holding the bytes `[start, stop)` (never before an earlier span's start), and where they begin."""
        if not (self.base <= start and stop <= self.base + len(self.data)):
            try:
                data = read_at(self.path, start, max(CHUNK, stop - start))
            except READ_ERRORS as error:
                raise SourceError(start, f"could not be read ({error_reason(error)}); copied up to here") from error
            if len(data) < stop - start:
                raise SourceError(start, "ended before the records read from it; copied up to here")
            self.base, self.data = start, data
        return self.data, start - self.base

    def copy(self, start: int, stop: int, writer: FramedWriter) -> None:
        """Writes the bytes `[start, stop)` as they are."""
        while start < stop:
            size = min(stop - start, CHUNK)
            data, at = self.span(start, start + size)
            writer.write_framed(data[at : at + size])
            start += size


def _first_metadata(plan: FilePlan) -> dict[str, summary_pb2.SummaryMetadata]:
    """The metadata each retagged LOGDIR tag has on its first value in the file (TF2 writers put it there only)."""
    found = {}
    for tag in sorted({old for entries in plan.retag.values() for _, old, _ in entries}):
        series = plan.file.series[tag]
        try:
            first = event_pb2.Event.FromString(read_record_at(plan.file.path, int(series.offsets[0])))
        except (ValueError, *READ_ERRORS) as error:
            raise SourceError(int(series.offsets[0]), f"could not be read again ({error}); not copied") from error
        value = first.summary.value[int(series.indices[0])]
        if value.HasField("metadata"):
            found[tag] = value.metadata
    return found


def _retagged(
    payload: bytes,
    entries: list[tuple[int, str, str]],
    metadata: dict[str, summary_pb2.SummaryMetadata],
    started: set[str],
) -> bytes:
    """The event with the named values under their new tags, each new tag's first value carrying the metadata."""
    event = event_pb2.Event.FromString(payload)
    for index, old, new in entries:
        value = event.summary.value[index]
        value.tag = new
        if new not in started:
            started.add(new)
            if not value.HasField("metadata") and old in metadata:
                value.metadata.CopyFrom(metadata[old])
    return event.SerializeToString()
