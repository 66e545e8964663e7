"""Where a run keeps its checkpoint: the files that count as one, and the walk from a run directory up to the logdir."""

from __future__ import annotations

import codecs
import os
import posixpath
import re
import stat

from tensorboard.compat.tensorflow_stub.io import gfile

from tb_varscope_plugin.filesystem import READ_ERRORS, is_event_file, is_local, mtime, natural_key, read_at

STATE_FILE = "checkpoint"
KERAS_SUFFIXES = (".weights.h5", ".h5", ".hdf5", ".keras")
SAFETENSORS_SUFFIX = ".safetensors"
# TF writes `model_checkpoint_path` first and a path is at most a few KiB, so a prefix this long holds it; anything
# past it (a huge file that happens to be called `checkpoint`) is never read.
_STATE_PREFIX = 64 * 1024
# The quoted string as an unrolled loop: an alternation under `*` makes `re` keep state per character (10 MB for a
# 64 KiB path with no closing quote).
_STATE_PATH = re.compile(r'^model_checkpoint_path:\s*"([^"\\]*(?:\\.[^"\\]*)*)"', re.MULTILINE)


def find_checkpoint(run_dir: str, logdir: str) -> str | None:
    """The checkpoint that belongs to a run: the newest in `run_dir` itself; else, walking up from `run_dir` to
    `logdir`, the newest at the first level that has one in the directory itself (from the parent up) or in a
    subdirectory of it with no event file anywhere below (`ckpt/`, `checkpoints/`)."""
    run_dir = run_dir.rstrip("/") or run_dir
    logdir = logdir.rstrip("/") or logdir
    found = newest(candidates(run_dir))
    directory = run_dir
    while found is None:
        level = candidates(directory) if directory != run_dir else []
        found = newest(level + _candidates_below(directory))
        parent = posixpath.dirname(directory)
        if directory == logdir or parent == directory or not _is_within(parent, logdir):
            break
        directory = parent
    return found


def candidates(directory: str) -> list[tuple[str, float]]:
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
        elif entry.endswith((*KERAS_SUFFIXES, SAFETENSORS_SUFFIX)) and not gfile.isdir(full):
            found.append((full, mtime(full) or 0.0))
    return found


def newest(found: list[tuple[str, float]]) -> str | None:
    if not found:
        return None
    # Equal or unknown times: the naturally last name wins, so ckpt-10 beats ckpt-9.
    return max(found, key=lambda c: (c[1], natural_key(c[0])))[0]


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _candidates_below(directory: str) -> list[tuple[str, float]]:
    """Checkpoints directly in the subdirectories of `directory` that neither are runs nor hold runs: a checkpoint
    directory beside one experiment's runs must not hand its checkpoint to another experiment."""
    found = []
    for entry in _listdir(directory):
        sub = posixpath.join(directory, entry)
        if gfile.isdir(sub) and not _holds_event_files(sub):
            found.extend(candidates(sub))
    return found


def _holds_event_files(directory: str) -> bool:
    pending, seen = [directory], set()
    while pending:
        current = pending.pop()
        # Symlinked directories are followed (runs are often linked in), but a link loop is walked once.
        key = os.path.realpath(current) if is_local(current) else current
        if key in seen:
            continue
        seen.add(key)
        entries = _listdir(current)
        if any(is_event_file(entry) for entry in entries):
            return True
        pending.extend(sub for entry in entries if gfile.isdir(sub := posixpath.join(current, entry)))
    return False


def _state_file_prefix(directory: str) -> str | None:
    """The latest checkpoint named by TF's `checkpoint` state file, if it still exists."""
    text = _state_file_text(posixpath.join(directory, STATE_FILE))
    match = _STATE_PATH.search(text)
    if match is None:
        return None
    try:
        # Text-format protos C-escape the path; escape_decode undoes that and leaves UTF-8 bytes intact.
        named = codecs.escape_decode(match.group(1).encode("utf-8"))[0].decode("utf-8", "replace")
    except ValueError:  # an escape TF never writes (`\x` without hex digits): no usable path
        return None
    # A run copied from another machine keeps absolute paths of the old place; the file sits beside us.
    for prefix in (posixpath.join(directory, named), posixpath.join(directory, posixpath.basename(named))):
        if gfile.exists(prefix + ".index"):
            return prefix
    return None


def _state_file_text(path: str) -> str:
    """The start of a state file, or "" when it cannot be read or is not a regular file (a FIFO would block)."""
    try:
        if is_local(path) and not stat.S_ISREG(os.stat(path).st_mode):
            return ""
        return read_at(path, 0, _STATE_PREFIX).decode("utf-8", "replace")
    except READ_ERRORS:
        return ""


def _listdir(directory: str) -> list[str]:
    try:
        return sorted(gfile.listdir(directory))
    except Exception:  # a directory that vanished or cannot be listed simply holds no checkpoint
        return []
