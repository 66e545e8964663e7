"""Checkpoint variables as one kind of record, whatever the format, and the IO every format reader shares."""

from __future__ import annotations

import io
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tb_varscope_plugin import filesystem
from tb_varscope_plugin.filesystem import read_at

_OUTPUT_INDEX = re.compile(r":\d+$")


class CheckpointError(Exception):
    """A checkpoint that cannot be read; the message names the file."""


class UnexpectedCheckpointError(CheckpointError):
    """A failure a format reader did not turn into a CheckpointError itself; the message names the file and the
    exception. Tests hold readers to never raising one."""


def unexpected(path: str, error: Exception) -> UnexpectedCheckpointError:
    return UnexpectedCheckpointError(f"{path}: cannot be read ({type(error).__name__}: {error})"[:1000])


@dataclass(frozen=True)
class Variable:
    path: str
    key: str
    name: str | None
    shape: tuple[int, ...]
    dtype: str
    layer: str | None
    slot: bool
    load: Callable[[], np.ndarray] = field(compare=False, hash=False, repr=False)


def _nothing_to_close() -> None:
    return None


@dataclass(frozen=True)
class Checkpoint:
    path: str
    format: str
    variables: tuple[Variable, ...]
    mtime: float | None
    # Releases what the variables' loaders keep open (an h5py file); they cannot load afterwards.
    close: Callable[[], None] = field(default=_nothing_to_close, compare=False, repr=False)


def read_bytes(path: str, offset: int = 0, size: int | None = None) -> bytes:
    """Reads `size` bytes at `offset` (all the rest when None) through TensorBoard's filesystem layer."""
    try:
        data = read_at(path, offset, size)
    except Exception as e:  # the filesystem layer raises its own error types per backend
        raise CheckpointError(f"{path}: cannot read: {e}") from e
    if size is not None and len(data) != size:
        raise CheckpointError(f"{path}: truncated, wanted {size} bytes at offset {offset}, got {len(data)}")
    return data


def file_size(path: str) -> int:
    try:
        return filesystem.file_length(path)
    except Exception as e:  # see read_bytes
        raise CheckpointError(f"{path}: cannot read: {e}") from e


class RemoteFile(io.RawIOBase):
    """A seekable read-only file over TensorBoard's filesystem layer, so h5py and zipfile read only what
    they need, from local disk or any filesystem TensorBoard can read.

    `start` and `size` make it a window of the file: h5py reads an uncompressed member of a zip archive in place."""

    def __init__(self, path: str, start: int = 0, size: int | None = None) -> None:
        super().__init__()
        self._path = path
        self._start = start
        self._size = file_size(path) - start if size is None else size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        # RawIOBase.read allocates `size` bytes before reading: a size taken from a damaged header must not.
        count = self._size - self._pos if size is None or size < 0 else min(size, self._size - self._pos)
        if count <= 0:
            return b""
        data = read_bytes(self._path, self._start + self._pos, count)
        self._pos += count
        return data

    def readinto(self, buffer) -> int:  # noqa: ANN001  # a writable buffer: memoryview, bytearray
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_buffered(path: str, start: int = 0, size: int | None = None) -> io.BufferedReader:
    """`path` (or the window `start`, `size` of it) as a buffered file, for readers that make many small reads.

    h5py jumps between small metadata reads all over the file: a 64 KiB buffer serves neighbours, where a 1 MiB
    one re-read a megabyte on every jump (5 GB read to list a 50 MB file's 20k layers)."""
    return io.BufferedReader(RemoteFile(path, start, size), buffer_size=64 * 1024)


def strip_output_index(name: str) -> str:
    """A TF variable name without the `:0` of the op output it names."""
    return _OUTPUT_INDEX.sub("", name)


def widen_bfloat16(raw: np.ndarray) -> np.ndarray:
    """bfloat16 values stored as 2-byte words, widened to float32 (numpy has no bfloat16)."""
    return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def layer_scope(names: list[str]) -> str | None:
    """The name scope that sibling variables of one layer share, from their own names.

    Keras 2 names a weight made in `__init__` without its layer's scope (`my_variable1`) and one made in
    `build` with it (`sequential/my_layer_1/my_variable2`), so the longest scope among siblings is the
    layer's, provided every other scope is a tail of it.
    """
    scopes = [posixpath.dirname(n) for n in names if posixpath.dirname(n)]
    if not scopes:
        return None
    longest = max(scopes, key=lambda s: s.count("/"))
    if all(s == longest or longest.endswith("/" + s) for s in scopes):
        return longest
    return None


def scoped_path(scope: str, name: str) -> str | None:
    """`scope/<base of name>` when `name`'s own scope fits inside `scope`, else None."""
    own = posixpath.dirname(name)
    if not own or own == scope or scope.endswith("/" + own):
        return f"{scope}/{posixpath.basename(name)}"
    return None
