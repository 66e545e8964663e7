"""TensorBoard's filesystem layer as every stage uses it: reading bytes, listing, and the errors it raises.

Everything goes through `tensorboard.compat.tensorflow_stub.io.gfile` (what `tensorboard.compat.tf.io.gfile` resolves
to without TensorFlow), so local, S3 and fsspec logdirs behave as in TensorBoard. A path with no `scheme://` is
one the layer hands to its `LocalFileSystem`, which makes plain `os` calls: this module makes those very calls
itself, so the layer, whose package brings absl, TensorBoard's config protos and more (87 modules, 10-15 ms of
start-up), is imported only once a path needs it (a remote one) or an error is caught (`READ_ERRORS`).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import time
import types
from collections.abc import Callable
from dataclasses import dataclass

from tensorboard import lazy


@lazy.lazy_load("tensorboard.compat.tensorflow_stub.io.gfile")
def gfile() -> types.ModuleType:
    from tensorboard.compat.tensorflow_stub.io import gfile as layer

    return layer


def _errors() -> types.ModuleType:
    """The error types of the filesystem layer (their module comes with the whole layer)."""
    from tensorboard.compat.tensorflow_stub import errors

    return errors


def __getattr__(name: str) -> tuple[type[OSError], type[Exception]]:
    """`READ_ERRORS`, what the filesystem layer raises for a file or directory that vanished or cannot be read:
    OSError and the layer's OpError, looked up when an `except filesystem.READ_ERRORS` first catches something."""
    if name == "READ_ERRORS":
        return (OSError, _errors().OpError)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_event_file(name: str) -> bool:
    """The test TensorBoard applies to a file name."""
    return "tfevents" in name


def is_local(path: str) -> bool:
    """Whether the filesystem layer reads `path` with its LocalFileSystem: always where it names no scheme."""
    if "://" not in path or isinstance(gfile.get_filesystem(path), gfile.LocalFileSystem):
        return True
    global _remote_seen
    _remote_seen = True
    return False


# Whether this process has asked about a remote path: every remote read here asks `is_local` first.
_remote_seen = False


def remote_seen() -> bool:
    """Whether this process has met a remote path, and so may hold what a remote back end keeps open (fsspec's
    cached filesystems and their sessions)."""
    return _remote_seen


def error_reason(error: Exception) -> str:
    """What a filesystem error says, without the class name TensorBoard's stub errors print."""
    return getattr(error, "message", None) or str(error) or error.__class__.__name__


def read_at(path: str, offset: int, size: int | None) -> bytes:
    """Up to `size` bytes at `offset` (all the rest when None); raises what the filesystem layer raises."""
    if is_local(path):
        if not os.path.exists(path.encode("utf-8")):  # as LocalFileSystem.read says it
            raise _errors().NotFoundError(None, None, "Not Found: " + path)
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(size)
    fs = gfile.get_filesystem(path)
    # The position is the filesystem's own continuation token: S3's names a byte offset, the others an opaque one.
    where = {"byte_offset": offset} if isinstance(fs, gfile.S3FileSystem) else {"opaque_offset": offset}
    data, _ = fs.read(path, binary_mode=True, size=size, continue_from=where)
    # S3's ranged read asks for `bytes=offset-(offset+size)`, an inclusive range: one byte too many.
    return data if size is None else data[:size]


def exists(path: str) -> bool:
    """`gfile.exists`: whether a file or directory is there."""
    return os.path.exists(path.encode("utf-8")) if is_local(path) else gfile.exists(path)


def isdir(path: str) -> bool:
    """`gfile.isdir`."""
    return os.path.isdir(path.encode("utf-8")) if is_local(path) else gfile.isdir(path)


def listdir(path: str) -> list[str]:
    """`gfile.listdir`: a directory's entry names, in no order; NotFoundError where it is no directory."""
    if not is_local(path):
        return gfile.listdir(path)
    if not isdir(path):
        raise _errors().NotFoundError(None, None, "Could not find directory")
    return os.listdir(path)


def file_length(path: str) -> int:
    """`gfile.stat(path).length`: a file's size in bytes; NotFoundError where it cannot be examined."""
    if not is_local(path):
        return gfile.stat(path).length
    try:
        return os.stat(path.encode("utf-8")).st_size
    except OSError as error:
        raise _errors().NotFoundError(None, None, "Could not find file") from error


def mtime(path: str) -> float | None:
    """Modification time of a local file; TensorBoard's filesystem layer reports none for remote ones."""
    if is_local(path):
        try:
            return os.path.getmtime(path)
        except OSError:
            return None
    return None


@dataclass(frozen=True)
class Entry:
    """What a directory entry is, links followed: `kind` "directory", "file", or what else it is ("a FIFO"...);
    `identity` tells directories apart however they are reached (device and inode where local, else the path);
    `version` of a local regular file changes whenever its content may have (size, modification time, inode), so
    a reader can pass over a file whose version it has read; that of a local directory whenever its entries or
    its permissions may have (modification and change times); None where the filesystem layer gives no such
    stat."""

    kind: str
    identity: tuple
    version: tuple | None = None


_SPECIAL = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


def entry(path: str, local: bool | None = None) -> Entry:
    """What `path` is (`local`: whether it is on the local filesystem, if the caller knows). A local entry that
    cannot be examined (a dangling link) counts as a file, so reading it says what is wrong; remote filesystems
    hold only files and directories."""
    if not (is_local(path) if local is None else local):
        return Entry("directory" if gfile.isdir(path) else "file", (path,))
    try:
        found = os.stat(path)
    except OSError:
        return Entry("file", (path,))
    if stat.S_ISDIR(found.st_mode):
        return Entry("directory", (found.st_dev, found.st_ino), (found.st_mtime_ns, found.st_ctime_ns))
    kind = next((name for test, name in _SPECIAL if test(found.st_mode)), "file")
    version = (found.st_size, found.st_mtime_ns, found.st_ino) if kind == "file" else None
    return Entry(kind, (found.st_dev, found.st_ino), version)


def listing(directory: str) -> list[tuple[str, str, Entry]]:
    """`(name, path, what it is)` for each entry of a directory, sorted by name; raises what the filesystem layer's
    `listdir` raises (NotFoundError for a directory that is not there).

    A local directory is listed with one `scandir`, each entry then stat'ed once: the filesystem layer's `listdir`
    stats the directory first and paths are joined again for each entry, which an idle reload of 1,000 runs
    repeats for each of them. Remote directories go through the filesystem layer.
    """
    if not is_local(directory):
        fs = gfile.get_filesystem(directory)
        paths = [(name, fs.join(directory, name)) for name in sorted(gfile.listdir(directory))]
        return [(name, path, entry(path, False)) for name, path in paths]
    try:
        with os.scandir(directory) as found:
            paths = sorted((e.name, e.path) for e in found)
    except (FileNotFoundError, NotADirectoryError) as error:
        raise _errors().NotFoundError(None, None, "Could not find directory") from error  # as listdir says it
    return [(name, path, entry(path, True)) for name, path in paths]


# A local directory's names are taken again unless its times are what they were when it was listed, and it was
# listed this long after them: an entry made in the same tick of the filesystem's clock as the listing (or as a
# change just before it) leaves the times as they were. (2 s: the coarsest clock of a filesystem below, FAT's.)
SETTLED_NS = 2_000_000_000

# Filesystems on local storage, whose directories' modification times move whenever an entry is made, removed or
# renamed in them, and whose stat sees that at once. Not FUSE mounts of object stores (gcsfuse, s3fs, goofys show
# a directory's time of mounting, or 1970, whatever it holds), and not NFS or SMB: their clients cache a
# directory's times for up to a minute, where opening the directory to list it asks the server afresh.
TIMED_FILESYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "jfs", "reiserfs", "bcachefs", "tmpfs", "ramfs", "overlay"}
)


def filesystem_types(mountinfo: str) -> dict[int, str]:
    """Each mounted filesystem's device number (as `st_dev` gives it) and type, from the text of Linux's
    `/proc/self/mountinfo`: `ID PARENT MAJOR:MINOR ROOT MOUNT OPTIONS [OPTIONAL...] - TYPE SOURCE OPTIONS`."""
    types = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        try:
            major, minor = fields[2].split(":")
            types[os.makedev(int(major), int(minor))] = fields[fields.index("-", 6) + 1]
        except (IndexError, ValueError):
            continue  # a line not laid out as documented tells nothing
    return types


def mounted_filesystems() -> dict[int, str]:
    """`filesystem_types` of this process's mounts; empty where there is no `/proc/self/mountinfo` (not Linux)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            return filesystem_types(f.read())
    except OSError:
        return {}


class KeptListings:
    """Listings of local directories kept from one walk to the next, each taken again only once the directory's
    times have moved (see SETTLED_NS): an idle walk of 1,000 runs then stats each directory and entry, as it
    must to see files grow, without reading a directory's names again. Only directories on TIMED_FILESYSTEMS are
    kept; the others are listed at every walk. Directories not listed in a walk are forgotten at the next
    (`walked`). `clock` gives the time a listing is taken at, in nanoseconds; `filesystems` the mounted
    filesystems' types by device (`mounted_filesystems`), asked once a walk, as mounts come and go."""

    def __init__(
        self,
        clock: Callable[[], int] = time.time_ns,
        filesystems: Callable[[], dict[int, str]] = mounted_filesystems,
    ) -> None:
        self.clock = clock
        self.filesystems = filesystems
        self._types: dict[int, str] | None = None  # this walk's `filesystems()`
        # directory -> (what it was when listed, its names): the names are the very strings the walk keeps in its
        # tree, so a kept listing costs a slot per entry; paths are joined again when it is used.
        self._kept: dict[str, tuple[Entry, tuple[str, ...]]] = {}
        self._walked: dict[str, tuple[Entry, tuple[str, ...]]] = {}

    def listing(self, directory: str, found: Entry) -> list[tuple[str, str, Entry]]:
        """As `listing(directory)`, `found` being what the directory was just before (`entry(directory)`): the
        names kept from an earlier listing if its times are still those that listing was taken under, each entry
        stat'ed anew."""
        # The directory's times, where they tell when its entries last changed.
        times = found.version if found.version is not None and self._timed(found.identity[0]) else None
        kept = self._kept.get(directory)
        if times is not None and kept is not None and kept[0] == found:
            self._walked[directory] = kept
            paths = [(name, os.path.join(directory, name)) for name in kept[1]]
            return [(name, path, entry(path, True)) for name, path in paths]
        listed_at = self.clock()
        entries = listing(directory)
        # Times stat'ed before the listing: a change made since moves them, and the next walk lists it again.
        if times is not None and listed_at - max(times) >= SETTLED_NS:
            self._walked[directory] = (found, tuple(name for name, _, _ in entries))
        return entries

    def walked(self) -> None:
        """Ends a walk: what it did not list is forgotten, and mounts are looked at again by the next."""
        self._kept, self._walked = self._walked, {}
        self._types = None

    def _timed(self, device: int) -> bool:
        if self._types is None:
            self._types = self.filesystems()
        return self._types.get(device) in TIMED_FILESYSTEMS


def shown_name(name: str) -> str:
    """A name as listed, printable: bytes that are not UTF-8 (kept by the listing as surrogates) as `\\xff`."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_utf8(name: str) -> bool:
    """Whether a listed name is valid UTF-8: TensorBoard's filesystem layer cannot open any other."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def natural_key(text: str) -> list[tuple[int, int | str]]:
    """Sorts names as people count: `ckpt-9` before `ckpt-10`, `dense_2` before `dense_10`."""
    return [(1, int(part)) if part.isdigit() else (0, part) for part in re.split(r"(\d+)", text)]


@dataclass(frozen=True)
class Listing:
    """One directory as a walk saw it: its entry names, sorted, and which of them are directories."""

    names: tuple[str, ...]
    subdirectories: frozenset[str]


class PositionedReader:
    """Reads one file at chosen offsets: through one handle kept open where the file is local (gfile reopens the
    file for every read), else through the filesystem layer, one ranged read per call (S3, fsspec).

    Use it as a context manager, or `close()` it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        # A bare descriptor: reads are positioned (pread), so a file object's buffering would only cost its making.
        self._fd = _open_regular(path) if is_local(path) else None

    def read(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes at `offset`; raises what the filesystem layer raises."""
        if self._fd is None:
            return read_at(self.path, offset, size)
        return os.pread(self._fd, size, offset)

    def size(self) -> int:
        if self._fd is None:
            return file_length(self.path)
        return os.fstat(self._fd).st_size

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> PositionedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_regular(path: str) -> int:
    """A descriptor open for reading on a regular file only: opening a FIFO would wait for a writer, holding
    whatever lock the reader holds, so the file is opened without waiting and refused unless it is a regular file."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        return fd
    except BaseException:
        os.close(fd)
        raise
