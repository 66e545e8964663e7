"""Where a run keeps its checkpoint: the files that count as one, and the walk from a run directory up to the logdir."""

from __future__ import annotations

import codecs
import os
import posixpath
import re
import stat
from collections.abc import Mapping

from tb_varscope_plugin import filesystem
from tb_varscope_plugin.filesystem import (
    Listing,
    is_event_file,
    is_local,
    mtime,
    natural_key,
    read_at,
)

STATE_FILE = "checkpoint"
KERAS_SUFFIXES = (".weights.h5", ".h5", ".hdf5", ".keras")
SAFETENSORS_SUFFIX = ".safetensors"
TORCH_SUFFIXES = (".pt", ".pth", ".bin")
# Training state saved beside a model (Hugging Face Trainer writes these next to model.safetensors, often later):
# never the model's variables, so never the newest checkpoint.
_TRAINING_STATE = re.compile(r"^(optimizer|optim|scheduler|lr_scheduler|scaler|training_args|rng_state(_\d+)?)\.")
# A SavedModel directory: `saved_model.pb` beside `variables/variables.index` (a tensor bundle).
SAVED_MODEL_FILE = "saved_model.pb"
SAVED_MODEL_VARIABLES = "variables/variables"
# Model files of formats no reader here reads: named in a run's warnings when they are all it has.
UNREAD_FORMATS = {
    ".onnx": "ONNX",
    ".tflite": "TensorFlow Lite",
    ".pb": "TensorFlow protobuf (a frozen graph, or a SavedModel without its variables/)",
    ".ckpt": "`.ckpt` (PyTorch Lightning or another framework's)",
    ".torchscript": "TorchScript",
    ".ptl": "PyTorch Lite",
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".joblib": "joblib",
    ".npz": "NumPy",
    ".msgpack": "Flax msgpack",
    ".gguf": "GGUF",
    ".mlmodel": "Core ML",
}
# TF writes `model_checkpoint_path` first and a path is at most a few KiB, so a prefix this long holds it; anything
# past it (a huge file that happens to be called `checkpoint`) is never read.
_STATE_PREFIX = 64 * 1024
# The quoted string as an unrolled loop: an alternation under `*` makes `re` keep state per character (10 MB for a
# 64 KiB path with no closing quote).
_STATE_PATH = re.compile(r'^model_checkpoint_path:\s*"([^"\\]*(?:\\.[^"\\]*)*)"', re.MULTILINE)


class Directories:
    """What discovery asks of the filesystem during one pass, each question asked once: a directory's entries,
    whether a path is a directory, a file's modification time, whether a subtree holds event files.

    Listed live through the filesystem layer; `WalkedDirectories` answers from a walk already made. `states`
    (kept by the caller between passes) remembers what each `checkpoint` state file named, so an unchanged one is
    not read again.
    """

    def __init__(self, states: dict[tuple, str | None] | None = None) -> None:
        self.states = {} if states is None else states
        self._listings: dict[str, Listing] = {}
        self._mtimes: dict[str, float | None] = {}
        self._held: dict[str, bool] = {}
        self._candidates: dict[str, list[tuple[str, float]]] = {}
        self._below: dict[str, list[tuple[str, float]]] = {}

    def listing(self, directory: str) -> Listing:
        found = self._listings.get(directory)
        if found is None:
            names = _listdir(directory)
            subdirectories = frozenset(n for n in names if _isdir(posixpath.join(directory, n)))
            found = self._listings[directory] = Listing(tuple(names), subdirectories)
        return found

    def entries(self, directory: str) -> tuple[str, ...]:
        return self.listing(directory).names

    def is_dir(self, path: str) -> bool:
        directory, name = posixpath.split(path)
        return name in self.listing(directory).subdirectories

    def subdirectories(self, directory: str) -> list[str]:
        listing = self.listing(directory)
        return [posixpath.join(directory, n) for n in listing.names if n in listing.subdirectories]

    def mtime(self, path: str) -> float | None:
        if path not in self._mtimes:
            self._mtimes[path] = mtime(path)
        return self._mtimes[path]

    def mtimes(self) -> list[tuple[str, float | None]]:
        """Every modification time this pass asked for, as it was: what its answers depend on besides listings."""
        return list(self._mtimes.items())

    def holds_event_files(self, directory: str) -> bool:
        """Whether `directory` or any directory below it holds an event file. Symlinked directories are followed
        (runs are often linked in), but a link loop is walked once."""
        pending, seen, walked = [directory], set(), []
        while pending:
            current = pending.pop()
            if current in self._held:
                if self._held[current]:
                    break
                continue
            # The real path of a local directory, so a link loop is walked once.
            key = os.path.realpath(current) if is_local(current) else current
            if key in seen:
                continue
            seen.add(key)
            walked.append(current)
            if any(is_event_file(entry) for entry in self.entries(current)):
                break
            pending.extend(self.subdirectories(current))
        else:
            self._held.update(dict.fromkeys(walked, False))
            return False
        # Only the directory asked about is known to hold one; the others walked may not.
        self._held[directory] = True
        return True

    def candidates(self, directory: str) -> list[tuple[str, float]]:
        if directory not in self._candidates:
            self._candidates[directory] = candidates(directory, self)
        return self._candidates[directory]

    def candidates_below(self, directory: str) -> list[tuple[str, float]]:
        if directory not in self._below:
            self._below[directory] = _candidates_below(directory, self)
        return self._below[directory]

    def state_prefix(self, directory: str) -> str | None:
        """The checkpoint the state file in `directory` names, read again only when the file or the directory
        changed (always, where the filesystem layer gives no modification times)."""
        when = self.mtime(posixpath.join(directory, STATE_FILE))
        if when is None:
            return _state_file_prefix(directory)
        key = (directory, when, self.entries(directory))
        if key not in self.states:
            self.states[key] = _state_file_prefix(directory)
        return self.states[key]


class WalkedDirectories(Directories):
    """Directories as one walk of the logdir listed them (`tree`: directory -> its listing): discovery lists
    nothing again, so a pass over a thousand runs costs the walk the logdir index made anyway."""

    def __init__(self, tree: Mapping[str, Listing], states: dict[tuple, str | None] | None = None) -> None:
        super().__init__(states)
        self._listings = dict(tree)

    def listing(self, directory: str) -> Listing:
        # Not walked (outside the logdir, unlistable, or gone): it holds nothing.
        return self._listings.get(directory, _EMPTY)

    def holds_event_files(self, directory: str) -> bool:
        # The walk reached every directory below the logdir once, link loops included, so a subtree is the
        # directories the walk listed under it, and each answer is kept for the subtrees around it.
        found = self._held.get(directory)
        if found is None:
            self._held[directory] = False  # a loop back to a directory being weighed adds nothing to it
            found = any(is_event_file(n) for n in self.entries(directory)) or any(
                self.holds_event_files(sub) for sub in self.subdirectories(directory)
            )
            self._held[directory] = found
        return found


_EMPTY = Listing((), frozenset())


def find_checkpoint(run_dir: str, logdir: str, directories: Directories | None = None) -> str | None:
    """The checkpoint that belongs to a run: the newest in `run_dir` itself; else, walking up from `run_dir` to
    `logdir`, the newest at the first level that has one in the directory itself (from the parent up) or in a
    subdirectory of it with no event file anywhere below (`ckpt/`, `checkpoints/`).

    `directories` answers the questions about the filesystem; sharing one across the runs of a pass means each
    directory is weighed once however many runs look at it."""
    directories = Directories() if directories is None else directories
    run_dir = run_dir.rstrip("/") or run_dir
    logdir = logdir.rstrip("/") or logdir
    found = newest(directories.candidates(run_dir))
    directory = run_dir
    while found is None:
        level = directories.candidates(directory) if directory != run_dir else []
        found = newest(level + directories.candidates_below(directory))
        parent = posixpath.dirname(directory)
        if directory == logdir or parent == directory or not _is_within(parent, logdir):
            break
        directory = parent
    return found


def candidates(directory: str, directories: Directories | None = None) -> list[tuple[str, float]]:
    """Checkpoints directly in `directory` (or `directory` itself when it is a SavedModel, so an `export/` beside a
    run is found like a `ckpt/`), each with its modification time (0 when unknown)."""
    directories = Directories() if directories is None else directories
    entries = directories.entries(directory)
    found = []
    if SAVED_MODEL_FILE in entries and _is_saved_model(directory, directories):
        found.append((directory, directories.mtime(posixpath.join(directory, SAVED_MODEL_VARIABLES) + ".index") or 0.0))
    state = directories.state_prefix(directory) if STATE_FILE in entries else None
    if state is not None:
        found.append((state, directories.mtime(state + ".index") or 0.0))
    for entry in entries:
        full = posixpath.join(directory, entry)
        if entry.endswith(".index") and state is None:
            found.append((full[: -len(".index")], directories.mtime(full) or 0.0))
        elif _is_model_file(entry) and not directories.is_dir(full):
            found.append((full, directories.mtime(full) or 0.0))
    return found


def unread_models(run_dir: str, directories: Directories | None = None) -> list[tuple[str, str]]:
    """Model files in formats not read (path, format) in `run_dir` or a subdirectory of it holding no event file:
    what to tell a user whose run has no checkpoint that can be read."""
    directories = Directories() if directories is None else directories
    run_dir = run_dir.rstrip("/") or run_dir
    places = [run_dir, *(d for d in directories.subdirectories(run_dir) if not directories.holds_event_files(d))]
    found = []
    for directory in places:
        for entry in directories.entries(directory):
            kind = UNREAD_FORMATS.get(posixpath.splitext(entry)[1].lower())
            if kind is not None and not directories.is_dir(full := posixpath.join(directory, entry)):
                found.append((full, kind))
    return found


def newest(found: list[tuple[str, float]]) -> str | None:
    if not found:
        return None
    # Equal or unknown times: the naturally last name wins, so ckpt-10 beats ckpt-9.
    return max(found, key=lambda c: (c[1], natural_key(c[0])))[0]


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _candidates_below(directory: str, directories: Directories) -> list[tuple[str, float]]:
    """Checkpoints directly in the subdirectories of `directory` that neither are runs nor hold runs: a checkpoint
    directory beside one experiment's runs must not hand its checkpoint to another experiment."""
    found = []
    # A SavedModel's own `variables/` bundle is the SavedModel, found as `directory` itself.
    inner = posixpath.join(directory, posixpath.dirname(SAVED_MODEL_VARIABLES))
    saved_model = SAVED_MODEL_FILE in directories.entries(directory)
    for sub in directories.subdirectories(directory):
        if not (saved_model and sub == inner) and not directories.holds_event_files(sub):
            found.extend(directories.candidates(sub))
    return found


def _is_model_file(name: str) -> bool:
    if name.endswith(TORCH_SUFFIXES):
        return _TRAINING_STATE.match(name) is None
    return name.endswith((*KERAS_SUFFIXES, SAFETENSORS_SUFFIX))


def _is_saved_model(directory: str, directories: Directories) -> bool:
    variables, prefix = posixpath.split(SAVED_MODEL_VARIABLES)
    inner = posixpath.join(directory, variables)
    return directories.is_dir(inner) and prefix + ".index" in directories.entries(inner)


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
        if filesystem.exists(prefix + ".index"):
            return prefix
    return None


def _state_file_text(path: str) -> str:
    """The start of a state file, or "" when it cannot be read or is not a regular file (a FIFO would block)."""
    try:
        if is_local(path) and not stat.S_ISREG(os.stat(path).st_mode):
            return ""
        return read_at(path, 0, _STATE_PREFIX).decode("utf-8", "replace")
    except filesystem.READ_ERRORS:
        return ""


def _isdir(path: str) -> bool:
    try:
        return filesystem.isdir(path)
    except Exception:  # gone since it was listed
        return False


def _listdir(directory: str) -> list[str]:
    try:
        return sorted(filesystem.listdir(directory))
    except Exception:  # a directory that vanished or cannot be listed simply holds no checkpoint
        return []
