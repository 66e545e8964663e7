"""Checkpoint variables as one kind of record, whatever the format, and where a run keeps its checkpoint.

Each format has its own reader module (`tf_bundle`, `keras_h5`, `safetensors`); none needs TensorFlow.
"""

from __future__ import annotations

import codecs
import os
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tensorboard.compat.tensorflow_stub.io import gfile

STATE_FILE = "checkpoint"
_KERAS_SUFFIXES = (".weights.h5", ".h5", ".hdf5", ".keras")
_SAFETENSORS_SUFFIX = ".safetensors"
_DATA_FILE = re.compile(r"\.data-\d+-of-\d+$")
_STATE_PATH = re.compile(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"', re.MULTILINE)


class CheckpointError(Exception):
    """A checkpoint that cannot be read; the message names the file."""


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


@dataclass(frozen=True)
class Checkpoint:
    path: str
    format: str
    variables: tuple[Variable, ...]
    mtime: float | None


def read_bytes(path: str, offset: int = 0, size: int | None = None) -> bytes:
    """Reads `size` bytes at `offset` (all the rest when None) through TensorBoard's filesystem layer."""
    try:
        data, _ = gfile.get_filesystem(path).read(
            path, binary_mode=True, size=size, continue_from={"opaque_offset": offset}
        )
    except Exception as e:  # the filesystem layer raises its own error types per backend
        raise CheckpointError(f"{path}: cannot read: {e}") from e
    if size is not None and len(data) != size:
        raise CheckpointError(f"{path}: truncated, wanted {size} bytes at offset {offset}, got {len(data)}")
    return data


def file_size(path: str) -> int:
    try:
        return gfile.stat(path).length
    except Exception as e:  # see read_bytes
        raise CheckpointError(f"{path}: cannot read: {e}") from e


def mtime(path: str) -> float | None:
    """Modification time of a local file; TensorBoard's filesystem layer reports none for remote ones."""
    if isinstance(gfile.get_filesystem(path), gfile.LocalFileSystem):
        try:
            return os.path.getmtime(path)
        except OSError:
            return None
    return None


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


def read_checkpoint(path: str) -> Checkpoint:
    """Reads the variables of the checkpoint at `path` (a TF prefix, `.index`, state-file directory,
    `.weights.h5`/`.h5`, `.keras` or `.safetensors`)."""
    # The format readers build Variable records from this module, so they are imported here, not at the top.
    from tb_varscope_plugin import keras_h5, safetensors, tf_bundle

    path = path.rstrip("/") or path
    if gfile.isdir(path):
        found = _newest(_candidates(path))
        if found is None:
            raise CheckpointError(f"{path}: no checkpoint in this directory")
        path = found
    if path.endswith(".index"):
        path = path[: -len(".index")]
    elif _DATA_FILE.search(path):
        path = _DATA_FILE.sub("", path)
    if path.endswith(_SAFETENSORS_SUFFIX):
        return safetensors.read_safetensors(path)
    if path.endswith(".keras"):
        return keras_h5.read_keras_archive(path)
    if path.endswith(_KERAS_SUFFIXES):
        return keras_h5.read_weights_h5(path)
    if gfile.exists(path + ".index"):
        return tf_bundle.read_bundle(path)
    raise CheckpointError(f"{path}: not a checkpoint (no such file, and no {path}.index)")


def find_checkpoint(run_dir: str, logdir: str) -> str | None:
    """The checkpoint that belongs to a run: the newest in `run_dir` itself; else, walking up from `run_dir` to
    `logdir`, the newest at the first level that has one in the directory itself (from the parent up) or in a
    subdirectory of it with no event file anywhere below (`ckpt/`, `checkpoints/`)."""
    run_dir = run_dir.rstrip("/") or run_dir
    logdir = logdir.rstrip("/") or logdir
    found = _newest(_candidates(run_dir))
    directory = run_dir
    while found is None:
        level = _candidates(directory) if directory != run_dir else []
        found = _newest(level + _candidates_below(directory))
        parent = posixpath.dirname(directory)
        if directory == logdir or parent == directory or not _is_within(parent, logdir):
            break
        directory = parent
    return found


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _candidates_below(directory: str) -> list[tuple[str, float]]:
    """Checkpoints directly in the subdirectories of `directory` that neither are runs nor hold runs: a checkpoint
    directory beside one experiment's runs must not hand its checkpoint to another experiment."""
    found = []
    for entry in _listdir(directory):
        sub = posixpath.join(directory, entry)
        if gfile.isdir(sub) and not _holds_event_files(sub):
            found.extend(_candidates(sub))
    return found


def _holds_event_files(directory: str) -> bool:
    pending, seen = [directory], set()
    while pending:
        current = pending.pop()
        # Symlinked directories are followed (runs are often linked in), but a link loop is walked once.
        key = os.path.realpath(current) if isinstance(gfile.get_filesystem(current), gfile.LocalFileSystem) else current
        if key in seen:
            continue
        seen.add(key)
        entries = _listdir(current)
        if any("tfevents" in entry for entry in entries):
            return True
        pending.extend(sub for entry in entries if gfile.isdir(sub := posixpath.join(current, entry)))
    return False


def _candidates(directory: str) -> list[tuple[str, float]]:
    """Checkpoints directly in `directory`, each with its modification time (0 when unknown)."""
    entries = _listdir(directory)
    found = []
    state = _state_file_prefix(directory) if STATE_FILE in entries else None
    if state is not None:
        found.append((state, mtime(state + ".index") or 0.0))
    for entry in entries:
        full = posixpath.join(directory, entry)
        if entry.endswith(".index") and state is None:
            found.append((full[: -len(".index")], mtime(full) or 0.0))
        elif entry.endswith((*_KERAS_SUFFIXES, _SAFETENSORS_SUFFIX)) and not gfile.isdir(full):
            found.append((full, mtime(full) or 0.0))
    return found


def _state_file_prefix(directory: str) -> str | None:
    """The latest checkpoint named by TF's `checkpoint` state file, if it still exists."""
    try:
        text = read_bytes(posixpath.join(directory, STATE_FILE)).decode("utf-8", "replace")
    except CheckpointError:
        return None
    match = _STATE_PATH.search(text)
    if match is None:
        return None
    # Text-format protos C-escape the path; escape_decode undoes that and leaves UTF-8 bytes intact.
    named = codecs.escape_decode(match.group(1).encode("utf-8"))[0].decode("utf-8", "replace")
    # A run copied from another machine keeps absolute paths of the old place; the file sits beside us.
    for prefix in (posixpath.join(directory, named), posixpath.join(directory, posixpath.basename(named))):
        if gfile.exists(prefix + ".index"):
            return prefix
    return None


def _newest(candidates: list[tuple[str, float]]) -> str | None:
    if not candidates:
        return None
    # Equal or unknown times: the naturally last name wins, so ckpt-10 beats ckpt-9.
    return max(candidates, key=lambda c: (c[1], _natural_key(c[0])))[0]


def _natural_key(text: str) -> list[tuple[int, int | str]]:
    return [(1, int(part)) if part.isdigit() else (0, part) for part in re.split(r"(\d+)", text)]


def _listdir(directory: str) -> list[str]:
    try:
        return sorted(gfile.listdir(directory))
    except Exception:  # a directory that vanished or cannot be listed simply holds no checkpoint
        return []
