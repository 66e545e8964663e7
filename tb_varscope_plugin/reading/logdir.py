"""The logdir index: every run under a logdir, found the way TensorBoard finds runs, and read incrementally."""

from __future__ import annotations

import logging
import posixpath
import re
import threading
from collections.abc import Callable, Iterator

from tb_varscope_plugin import filesystem
from tb_varscope_plugin.filesystem import (
    KeptListings,
    Listing,
    entry,
    error_reason,
    is_event_file,
    is_utf8,
    shown_name,
)
from tb_varscope_plugin.reading.parallel import read_files
from tb_varscope_plugin.reading.run_index import BATCH_BYTES, EventFile, RunIndex, reload_files
from tb_varscope_plugin.schema import ReportWarning

logger = logging.getLogger(__name__)

GONE_SHOWN = 20  # runs no longer found are each a warning, the latest this many

NOT_UTF8 = "its name is not valid UTF-8, which TensorBoard's filesystem layer cannot open"


def run_name(logdir: str, directory: str) -> str:
    """TensorBoard's name for the run in `directory`: its path relative to the logdir, `.` for the logdir itself."""
    relative = directory[len(logdir) :].replace("\\", "/").strip("/")
    return relative or "."


def run_names(logdir: str) -> list[str]:
    """The name of every run under `logdir`, found as `LogdirIndex` finds them, without reading any file."""
    return [name for name, *_ in LogdirIndex(logdir)._event_directories()]


class LogdirIndex:
    """Every run under a logdir (or those whose name matches `run_filter`), discovered and read incrementally.

    `roots`, for TensorBoard's `--logdir_spec`: the directories to walk instead of `logdir` (which then only names
    the whole), each with the name its runs are put under or None, as TensorBoard parses the flag. Runs under a
    name are named as TensorBoard's multiplexer names them: `name/` and the path below (`name/.` for the
    directory itself).

    `lock` is held while the index changes, a batch of small event files or one large one at a time: a thread
    that queries the index while another reloads it takes the lock around each query.
    """

    def __init__(
        self,
        logdir: str,
        run_filter: re.Pattern | None = None,
        roots: dict[str, str | None] | None = None,
        *,
        contain_errors: bool = False,
    ) -> None:
        self.logdir = logdir.rstrip("/") or "/"
        self.roots = {(root.rstrip("/") or "/"): name for root, name in (roots or {self.logdir: None}).items()}
        self.run_filter = run_filter
        # Where one reader serves for hours (TensorBoard), an unexpected failure in one file becomes that file's
        # warning and the pass goes on; a one-off scan lets it out, to be reported as the internal error it is.
        self.contain_errors = contain_errors
        self.runs: dict[str, RunIndex] = {}
        self.unlisted: dict[str, str] = {}  # directory -> why it could not be listed at the last reload
        self.passed_over: dict[str, str] = {}  # path (printable) -> why the last reload's walk did not read it
        self.gone: dict[str, ReportWarning] = {}  # run name -> the warning that the walk no longer finds it
        # run name -> the root it was found under: checkpoint discovery looks no higher
        self.run_roots: dict[str, str] = {}
        # Every directory the last reload's walk listed, for whatever else needs to know the tree (checkpoint
        # discovery): one walk per reload, however many runs ask.
        self.tree: dict[str, Listing] = {}
        self.listings = KeptListings()  # the walk's listings of local directories, kept while they stand
        # Bumped as soon as a file is read (so a report made while a reload goes on shows the runs read so far), and
        # by a reload that found runs, files, directories or warnings changed; a reload that found nothing new
        # leaves it, so the report is not even looked at again.
        self.version = 0
        self._signature: tuple = ()  # what the last reload found, beyond the files' values (see `_note_changes`)
        self._versions: dict[str, tuple | None] = {}  # event file path -> its version as the last walk saw it
        self.lock = threading.Lock()

    def __getstate__(self) -> dict:
        # Pickled for a process that reads some of its runs (the tab's first pass), which walks nothing: everything
        # but the lock and the kept listings.
        return {name: value for name, value in self.__dict__.items() if name not in ("lock", "listings")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.lock = threading.Lock()
        self.listings = KeptListings()

    def reload(self, progress: Callable[[str], None] | None = None, processes: int = 1) -> None:
        """Finds new runs and event files, and reads what every file has gained since the last call.

        `progress` is told the name of each run once it is read, every run found so far being read then (runs are
        read a few megabytes at a time). With `processes` > 1, files are read by that many forked processes where
        that is safe (see `read_files`), and `progress` hears of every run as it is found, before any is read.
        """
        runs = []
        held = 0  # what the runs found and not read yet have to read, as the walk found them
        for run in self._discovered(progress if processes > 1 else None):
            runs.append(run)
            if processes > 1:
                continue
            held += self.unread_bytes(run)
            if held >= BATCH_BYTES:
                self._read_together(runs, progress)
                runs, held = [], 0
        if processes > 1:
            self.read_runs(runs, processes)
        elif runs:
            self._read_together(runs, progress)
        self._note_changes()

    def discover(self, progress: Callable[[str], None] | None = None) -> list[RunIndex]:
        """Finds runs and event files as `reload` does, reading none of them: for a caller that reads runs in its
        own order with `read_runs`. `progress` is told each run's name as it is found."""
        runs = list(self._discovered(progress))
        self._note_changes()
        return runs

    def read_runs(self, runs: list[RunIndex], processes: int = 1) -> None:
        """Reads what the files of `runs` gained since they were last read, by up to `processes` forked processes
        (see `read_files`)."""
        changed = [f for run in runs for f in run.files if not self._unchanged(f)]
        read = dict(zip(map(id, changed), read_files(changed, processes), strict=True))
        with self.lock:
            for f in changed:
                self._read_as_of(f)
            for run in runs:
                run.read_done([read.get(id(f), False) for f in run.files])

    def restore_run(self, run: RunIndex, states: list[tuple], gained: bool) -> None:
        """Takes what another process read of `run`'s files, from this index pickled as it stands (each file's
        `EventFile.snapshot()`, in `run.files` order, and whether any values arrived), as if read here."""
        with self.lock:
            for f, state in zip(run.files, states, strict=True):
                f.restore(state)
                self._read_as_of(f)
            run.read_done([gained])

    def _discovered(self, progress: Callable[[str], None] | None) -> Iterator[RunIndex]:
        """Each run the walk finds, its event files taken (new ones unread); then runs not found are dropped."""
        found = set()
        for name, root, directory, names in self._event_directories():
            if self.run_filter is not None and not self.run_filter.search(name):
                continue
            found.add(name)
            with self.lock:
                self.gone.pop(name, None)
                run = self.runs.get(name)
                if run is None or run.path != directory:  # a spec's runs may swap names between reloads
                    run = self.runs[name] = RunIndex(name, directory)
                self.run_roots[name] = root
                run.set_files(names)
            if progress is not None:
                progress(name)
            yield run
        self._forget_runs_not_found(found)

    def _unchanged(self, f: EventFile) -> bool:
        """Whether the walk found `f` as it was when last read to its end: then there is nothing to read."""
        version = self._versions.get(f.path)
        return version is not None and version == f.read_version

    def _read_as_of(self, f: EventFile) -> None:
        # The version the walk saw, from before the read: bytes written during it make the next walk differ. A
        # file that could not be read is read again however it looks.
        self.version += 1
        f.read_version = self._versions.get(f.path) if f.error is None else None

    def _note_changes(self) -> None:
        """Bumps `version` if this reload found runs, files, directories or warnings changed."""
        runs = tuple((name, run.generation, len(run.files)) for name, run in self.runs.items())
        signature = (runs, self.tree, tuple(self.unlisted.items()), tuple(self.passed_over.items()), tuple(self.gone))
        if signature != self._signature:
            self.version += 1
        self._signature = signature

    def unread_bytes(self, run: RunIndex) -> int:
        """What `run`'s files hold past what was read of them, as the last walk found them."""
        found = [(self._versions.get(f.path), f.reader.offset) for f in run.files]
        return sum(max(0, version[0] - offset) for version, offset in found if version is not None)

    def _read_together(self, runs: list[RunIndex], progress: Callable[[str], None] | None = None) -> None:
        """Reads what the files of `runs` gained, small files in one batch (see `reload_files`), holding the lock
        meanwhile: for a few megabytes of small files, or one large file, at a time; then tells `progress`."""
        with self.lock:
            files = [f for run in runs for f in run.files if not self._unchanged(f)]
            try:
                read = dict(zip(map(id, files), self._reload_contained(files), strict=True))
            finally:
                for f in files:
                    self._read_as_of(f)
            for run in runs:
                run.read_done([read.get(id(f), False) for f in run.files])
        if progress is not None:
            for run in runs:
                progress(run.name)

    def _reload_contained(self, files: list[EventFile]) -> list[bool]:
        if not self.contain_errors:
            return reload_files(files)
        try:
            return reload_files(files)
        except Exception:
            # A bug met in one file must not stop every later run from updating, pass after pass. Which file of the
            # batch met it is not known: each is read again on its own, from the start (the batch may have left it
            # half read), and the one that meets it again says so.
            return [self._reload_afresh(f) for f in files]

    def _reload_afresh(self, f: EventFile) -> bool:
        f.restore(EventFile(f.path).snapshot())
        try:
            f.reload()
        except Exception as error:
            logger.exception("VarScope: indexing %s failed", f.path)
            f.restore(EventFile(f.path).snapshot())  # the reader had moved past what was not indexed: start over
            f.error = (
                f"could not be indexed ({error.__class__.__name__}: {error}); it is tried again at the next reload"
            )
        return True  # its values changed: all were dropped, and read again if they could be

    def _forget_runs_not_found(self, found: set[str]) -> None:
        """Drops the runs the walk no longer finds, as TensorBoard does, each with a warning until it is back."""
        with self.lock:
            for name in [name for name in self.runs if name not in found]:
                path = self.runs.pop(name).path
                self.run_roots.pop(name, None)
                message = (
                    f"run {name!r} is no longer found (its directory was renamed or deleted, or holds no event "
                    "file now): its values are no longer shown"
                )
                self.gone[name] = {"file": path, "offset": 0, "message": message}
            for name in list(self.gone)[:-GONE_SHOWN]:  # the latest only: a job rotating runs would pile them up
                del self.gone[name]

    def warnings(self) -> list[ReportWarning]:
        """What the last reload could not read or walk, and the runs it no longer found."""
        found: list[ReportWarning] = [
            {"file": directory, "offset": 0, "message": f"could not be listed ({why}); runs in it are not read"}
            for directory, why in sorted(self.unlisted.items())
        ]
        found += [{"file": path, "offset": 0, "message": why} for path, why in sorted(self.passed_over.items())]
        return found + [self.gone[name] for name in sorted(self.gone)]

    def _event_directories(self) -> Iterator[tuple[str, str, str, list[str]]]:
        """`(run name, root, directory, event file names)` for every directory under each root that holds event files,
        in TensorBoard's walk order. What is passed over is noted in `passed_over`, a directory that cannot be
        listed in `unlisted`."""
        self.unlisted.clear()
        self.passed_over = {}
        self.tree = {}
        self._versions = {}
        for root, group in self.roots.items():
            for directory, names in self._walk(root):
                name = run_name(root, directory)
                yield (name if group is None else posixpath.join(group, name)), root, directory, names
        self.listings.walked()

    def _walk(self, root: str) -> Iterator[tuple[str, list[str]]]:
        """`(directory, event file names)` for every directory under `root` holding event files. Links are
        followed, as RustBoard follows them, but no directory is walked twice (a link to `..` would walk
        forever)."""
        top = entry(root)
        seen = {top.identity}
        pending = [(root, top)]
        while pending:
            directory, as_found = pending.pop()
            try:
                entries = self.listings.listing(directory, as_found)
            except filesystem.READ_ERRORS as error:
                self.unlisted[directory] = error_reason(error)
                continue
            readable, names, walked = [], [], []
            subdirectories = set()
            for name, path, found in entries:
                if not is_utf8(name):
                    # RustBoard would list it with U+FFFD for the bytes, but no gfile call can open it.
                    if found.kind == "directory" or is_event_file(name):
                        self.passed_over[shown_name(path)] = f"{NOT_UTF8}; not read"
                    continue
                readable.append(name)
                if found.kind == "directory":
                    subdirectories.add(name)
                    if found.identity in seen:
                        self.passed_over[path] = "a link to a directory already walked; not walked again"
                    else:
                        seen.add(found.identity)
                        walked.append((path, found))
                elif is_event_file(name):
                    if found.kind == "file":
                        names.append(name)
                        self._versions[path] = found.version
                    else:
                        self.passed_over[path] = f"is {found.kind}, not a regular file; not read"
            self.tree[directory] = Listing(tuple(readable), frozenset(subdirectories))
            if names:
                yield directory, names
            pending.extend(reversed(walked))
