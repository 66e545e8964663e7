"""TensorBoard's filesystem layer as every stage uses it: reading bytes, listing, and the errors it raises.

Everything goes through `tensorboard.compat.tensorflow_stub.io.gfile` (what `tensorboard.compat.tf.io.gfile` resolves
to without TensorFlow), so local, S3 and fsspec logdirs behave as in TensorBoard.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from tensorboard.compat.tensorflow_stub import errors as fs_errors
from tensorboard.compat.tensorflow_stub.io import gfile

# What the filesystem layer raises for a file or directory that vanished or cannot be read.
READ_ERRORS = (OSError, fs_errors.OpError)


def is_event_file(name: str) -> bool:
    """The test TensorBoard applies to a file name."""
    return "tfevents" in name


def is_local(path: str) -> bool:
    return isinstance(gfile.get_filesystem(path), gfile.LocalFileSystem)


def error_reason(error: Exception) -> str:
    """What a filesystem error says, without the class name TensorBoard's stub errors print."""
    return getattr(error, "message", None) or str(error) or error.__class__.__name__


def read_at(path: str, offset: int, size: int | None) -> bytes:
    """Up to `size` bytes at `offset` (all the rest when None); raises what the filesystem layer raises."""
    data, _ = gfile.get_filesystem(path).read(
        path, binary_mode=True, size=size, continue_from={"opaque_offset": offset}
    )
    return data


def mtime(path: str) -> float | None:
    """Modification time of a local file; TensorBoard's filesystem layer reports none for remote ones."""
    if is_local(path):
        try:
            return os.path.getmtime(path)
        except OSError:
            return None
    return None


def natural_key(text: str) -> list[tuple[int, int | str]]:
    """Sorts names as people count: `ckpt-9` before `ckpt-10`, `dense_2` before `dense_10`."""
    return [(1, int(part)) if part.isdigit() else (0, part) for part in re.split(r"(\d+)", text)]


@dataclass(frozen=True)
class Listing:
    """One directory as a walk saw it: its entry names, sorted, and which of them are directories."""

    names: tuple[str, ...]
    subdirectories: frozenset[str]
