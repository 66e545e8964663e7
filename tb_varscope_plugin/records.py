"""TFRecord framing for event files: resumable, block-buffered reading with masked CRC32C checked on every record.

Reading goes through TensorBoard's filesystem layer, so local, S3 and fsspec logdirs behave as in TensorBoard.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import google_crc32c
from tensorboard.compat.tensorflow_stub.io import gfile

HEADER = 12  # uint64 length + uint32 masked CRC of the length
FOOTER = 4  # uint32 masked CRC of the payload
BLOCK = 8 << 20

_LENGTH = struct.Struct("<QI")
_CRC = struct.Struct("<I")


def masked_crc32c(data: bytes) -> int:
    """The CRC TFRecord stores: CRC32C rotated right by 15 bits plus a constant, so CRCs of CRCs stay distinct."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@dataclass(frozen=True)
class Damage:
    """Where a file stopped being readable, and why."""

    offset: int
    message: str


class RecordReader:
    """Reads the records of one file from a saved offset onwards, and can be asked again as the file grows.

    Like RustBoard's reader: a record cut short at the end of the file is left for the next call (the writer may
    still be flushing it), while a checksum failure is damage: the file is not read past it.
    """

    def __init__(self, path: str, offset: int = 0) -> None:
        self.path = path
        self.offset = offset  # end of the last complete, valid record
        self.pending = 0  # bytes after `offset` that do not yet form a complete record
        self.damage: Damage | None = None

    def read(self) -> Iterator[tuple[int, bytes]]:
        """Yields `(offset, payload)` for each complete record after `self.offset`, advancing it as it goes."""
        if self.damage is not None:
            return
        fs = gfile.get_filesystem(self.path)
        # This loop runs once per record, so lookups are hoisted into locals and the CRC masking is inlined.
        crc32c = google_crc32c.value
        unpack_header = _LENGTH.unpack_from
        unpack_crc = _CRC.unpack_from
        # The length CRC depends on the length alone, and records of one tag mostly share a length: compute each once.
        length_crcs: dict[int, int] = {}
        buf = b""
        pos = 0  # position of the next record in buf
        base = self.offset  # file offset of buf[0]
        eof = False
        need = HEADER
        while True:
            end = len(buf)
            while end - pos >= HEADER:
                length, length_crc = unpack_header(buf, pos)
                expected = length_crcs.get(length)
                if expected is None:
                    expected = length_crcs[length] = masked_crc32c(buf[pos : pos + 8])
                if expected != length_crc:
                    self.mark_damaged(base + pos, "record length fails its checksum")
                    return
                start = pos + HEADER
                stop = start + length
                need = HEADER + length + FOOTER
                if stop + FOOTER > end:
                    break
                payload = buf[start:stop]
                crc = crc32c(payload)
                if (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF != unpack_crc(buf, stop)[0]:
                    self.mark_damaged(base + pos, f"record of {length} bytes fails its checksum")
                    return
                record_offset = base + pos
                pos = stop + FOOTER
                self.offset = base + pos
                need = HEADER
                yield record_offset, payload
            if eof:
                break
            buf, base = buf[pos:], base + pos
            pos = 0
            want = max(BLOCK, need - len(buf))
            chunk, _ = fs.read(self.path, binary_mode=True, size=want, continue_from={"opaque_offset": base + len(buf)})
            eof = len(chunk) < want
            buf += chunk
        self.pending = base + len(buf) - self.offset

    def mark_damaged(self, offset: int, message: str) -> None:
        """Stops the file at `offset`: nothing past damage is trusted."""
        self.damage = Damage(offset, message)
        self.pending = 0


def read_record_at(path: str, offset: int) -> bytes:
    """The payload of the record starting at `offset`, checked against its CRCs; raises ValueError if there is none."""
    fs = gfile.get_filesystem(path)
    header, _ = fs.read(path, binary_mode=True, size=HEADER, continue_from={"opaque_offset": offset})
    if len(header) < HEADER:
        raise ValueError(f"{path}: no record at offset {offset}")
    length, length_crc = _LENGTH.unpack(header)
    if masked_crc32c(header[:8]) != length_crc:
        raise ValueError(f"{path}: record length at offset {offset} fails its checksum")
    body, _ = fs.read(path, binary_mode=True, size=length + FOOTER, continue_from={"opaque_offset": offset + HEADER})
    payload = body[:length]
    if len(body) < length + FOOTER or masked_crc32c(payload) != _CRC.unpack_from(body, length)[0]:
        raise ValueError(f"{path}: record at offset {offset} is incomplete or fails its checksum")
    return payload
