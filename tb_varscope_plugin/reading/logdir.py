"""The logdir index: every run under a logdir, found the way TensorBoard finds runs, and read incrementally."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator

from tensorboard.compat.tensorflow_stub.io import gfile

from tb_varscope_plugin.filesystem import READ_ERRORS, Listing, error_reason, is_event_file
from tb_varscope_plugin.reading.parallel import read_files
from tb_varscope_plugin.reading.run_index import RunIndex


def run_name(logdir: str, directory: str) -> str:
    """TensorBoard's name for the run in `directory`: its path relative to the logdir, `.` for the logdir itself."""
    relative = directory[len(logdir) :].replace("\\", "/").strip("/")
    return relative or "."


def run_names(logdir: str) -> list[str]:
    """The name of every run under `logdir`, found as `LogdirIndex` finds them, without reading any file."""
    index = LogdirIndex(logdir)
    return [run_name(index.logdir, directory) for directory, _ in index._event_directories()]


class LogdirIndex:
    """Every run under a logdir (or those whose name matches `run_filter`), discovered and read incrementally.

    `lock` is held while the index changes, one event file at a time: a thread that queries the index while
    another reloads it takes the lock around each query.
    """

    def __init__(self, logdir: str, run_filter: re.Pattern | None = None) -> None:
        self.logdir = logdir.rstrip("/") or "/"
        self.run_filter = run_filter
        self.runs: dict[str, RunIndex] = {}
        self.unlisted: dict[str, str] = {}  # directory -> why it could not be listed at the last reload
        # Every directory the last reload's walk listed, for whatever else needs to know the tree (checkpoint
        # discovery): one walk per reload, however many runs ask.
        self.tree: dict[str, Listing] = {}
        self.lock = threading.Lock()

    def reload(self, progress: Callable[[str], None] | None = None, processes: int = 1) -> None:
        """Finds new runs and event files, and reads what every file has gained since the last call.

        `progress` is told the name of each run before it is read. With `processes` > 1, files are read by that
        many forked processes where that is safe (see `read_files`), and `progress` hears of every run first.
        """
        runs = []
        for directory, names in self._event_directories():
            name = run_name(self.logdir, directory)
            if self.run_filter is not None and not self.run_filter.search(name):
                continue
            with self.lock:
                run = self.runs.get(name)
                if run is None:
                    run = self.runs[name] = RunIndex(name, directory)
                run.add_files(names)
            if progress is not None:
                progress(name)
            if processes > 1:
                runs.append(run)
                continue
            added = []
            for f in run.files:
                with self.lock:
                    added.append(f.reload())
            with self.lock:
                run.read_done(added)
        if runs:
            added = read_files([f for run in runs for f in run.files], processes)
            with self.lock:
                for run in runs:
                    run.read_done(added[: len(run.files)])
                    del added[: len(run.files)]

    def _event_directories(self) -> Iterator[tuple[str, list[str]]]:
        """`(directory, event file names)` for every directory under the logdir that holds event files, in
        TensorBoard's walk order. A directory that cannot be listed is noted in `unlisted` and skipped."""
        self.unlisted.clear()
        self.tree = {}
        pending = [self.logdir]
        while pending:
            directory = pending.pop()
            fs = gfile.get_filesystem(directory)
            try:
                entries = [(name, fs.join(directory, name)) for name in sorted(gfile.listdir(directory))]
                subdirectories = {name: path for name, path in entries if gfile.isdir(path)}
            except READ_ERRORS as error:
                self.unlisted[directory] = error_reason(error)
                continue
            listing = self.tree[directory] = Listing(
                tuple(name for name, _ in entries),
                frozenset(subdirectories),
            )
            names = [name for name in listing.names if is_event_file(name) and name not in listing.subdirectories]
            if names:
                yield directory, names
            pending.extend(reversed(subdirectories.values()))
