"""The run index: every histogram value of every event file, by run and tag, kept as references into the files.

Values are not decoded while indexing: each is remembered by file, record offset and position in its summary, so
any lane can be decoded later on demand without holding histograms in memory. Indexing is incremental: `reload()`
resumes each file where the previous call stopped and picks up new files and runs.
"""

from __future__ import annotations

import os
import pickle
import posixpath
import re
import select
import signal
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from tensorboard.compat.tensorflow_stub import errors as fs_errors
from tensorboard.compat.tensorflow_stub.io import gfile

from tb_varscope_plugin import events
from tb_varscope_plugin.records import HEADER, Block, Damage, RecordReader, read_record_at

FORK_MIN_BYTES = 32 << 20  # less to read than this, and a fork costs more than it saves
# A child reads about as many bytes as the parent; one still silent this long after the parent's share is stuck.
CHILD_GRACE_SECONDS = 30.0
CHILD_SLOWDOWN = 10
# What the filesystem layer raises for a file or directory that vanished or cannot be read.
READ_ERRORS = (OSError, fs_errors.OpError)


def is_event_file(name: str) -> bool:
    """The test TensorBoard applies to a file name."""
    return "tfevents" in name


class Series:
    """The values one event file holds for one tag, in the order they were written."""

    __slots__ = ("steps", "wall_times", "offsets", "indices", "encoding")

    def __init__(self, encoding: str) -> None:
        self.steps = array("q")
        self.wall_times = array("d")
        self.offsets = array("q")  # record offset in the file
        self.indices = array("I")  # position of the value in the record's summary
        self.encoding = encoding

    def step_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct steps and how many values each holds."""
        return np.unique(np.frombuffer(self.steps, dtype=np.int64), return_counts=True)

    def lane_positions(self, lane: int) -> np.ndarray:
        """Positions, in write order, of the values that were the `lane`-th written at their step."""
        steps = np.frombuffer(self.steps, dtype=np.int64)
        order = np.argsort(steps, kind="stable")  # stable: within a step, values stay in write order
        ordered = steps[order]
        rank = np.arange(len(steps)) - np.searchsorted(ordered, ordered, side="left")
        return np.sort(order[rank == lane])


@dataclass(frozen=True)
class ValueRef:
    """Where one histogram value lies: decode it with `RunIndex.decode`."""

    step: int
    wall_time: float
    file: str
    offset: int
    index: int


class EventFile:
    """One `*tfevents*` file: its reader's position and the histogram series read from it so far."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = posixpath.basename(path)
        self.reader = RecordReader(path)
        self.series: dict[str, Series] = {}
        self._plugins: dict[str, str] = {}
        self._tag_ids: dict[str, int] = {}  # tag -> its position in _tags
        self._tags: list[str] = []
        self._kinds: dict[bytes, int] = {}  # a single value's tag bytes and field key -> tag id, or -1: no histogram
        self.error: str | None = None  # why the last reload could not read the file (it vanished, say)

    def reload(self) -> bool:
        """Reads what was appended since the last call; True if any histogram value was added.

        A file that cannot be read (removed, unreadable) keeps what was read of it and is tried again next time.
        """
        added = False
        try:
            for block in self.reader.blocks():
                added = self._index(block) or added
                if self.reader.damage is not None:
                    break
        except READ_ERRORS as error:
            self.error = f"could not be read ({_reason(error)}); it is tried again at the next reload"
            return added
        self.error = None
        return added

    def _index(self, block: Block) -> bool:
        """Adds the histogram values of one block of records, and stops the file at a record that is no event."""
        # Every record is parsed, so one that does not parse is damage wherever its fields are read from.
        count = events.parsed_prefix(block.payloads)
        payloads = block.payloads[:count]
        starts = block.starts[:count] + HEADER
        fast = events.single_values(np.frombuffer(block.data, dtype=np.uint8), starts, starts + block.lengths[:count])
        raw = block.data
        keys = [
            raw[start : end + 1]
            for start, end in zip(
                fast.tag_start[fast.key_first].tolist(), fast.tag_end[fast.key_first].tolist(), strict=True
            )
        ]
        kinds = self._kinds
        # Read in full: records of other layouts, and the first single value of each tag-and-field key the file has
        # not shown before; from then on the key alone decides whether a value is a histogram, and of which tag.
        first_seen = [first for key, first in zip(keys, fast.key_first.tolist(), strict=True) if key not in kinds]
        slow: list[tuple[int, int, int, str, int, float]] = []  # (record, index, tag id, encoding, step, wall_time)
        for record in sorted(np.flatnonzero(~fast.simple[:count]).tolist() + first_seen):
            found = events.histogram_values(payloads[record], self._plugins)
            if fast.simple[record]:
                kinds[keys[fast.key_of[record]]] = -1 if found is None else self._tag_id(found[2][0][1])
            if found is not None:
                step, wall_time, values = found
                for index, tag, encoding in values:
                    slow.append((record, index, self._tag_id(tag), encoding, step, wall_time))
        key_tags = np.array([kinds[key] for key in keys] + [-1], dtype=np.int64)
        tag_ids = key_tags[fast.key_of]  # key_of -1 (not simple) picks the trailing -1
        tag_ids[first_seen] = -1
        fast_records = np.flatnonzero(tag_ids >= 0)
        if count < len(block.payloads):
            self.reader.mark_damaged(block.base + int(block.starts[count]), "record does not parse as an event")
        if not len(fast_records) and not slow:
            return False
        self._append(block, fast, fast_records, tag_ids[fast_records], slow)
        return True

    def _tag_id(self, tag: str) -> int:
        tag_id = self._tag_ids.get(tag)
        if tag_id is None:
            tag_id = self._tag_ids[tag] = len(self._tags)
            self._tags.append(tag)
        return tag_id

    def _append(
        self,
        block: Block,
        fast: events.SingleValues,
        fast_records: np.ndarray,
        fast_tags: np.ndarray,
        slow: list[tuple[int, int, int, str, int, float]],
    ) -> None:
        """Appends a block's values to their series in write order, creating series in order of first value."""
        records = np.concatenate([fast_records, np.array([v[0] for v in slow], dtype=np.int64)])
        indices = np.concatenate([np.zeros(len(fast_records), np.int64), np.array([v[1] for v in slow], np.int64)])
        tag_ids = np.concatenate([fast_tags, np.array([v[2] for v in slow], dtype=np.int64)])
        steps = np.concatenate([fast.step[fast_records], np.array([v[4] for v in slow], dtype=np.int64)])
        wall_times = np.concatenate([fast.wall_time[fast_records], np.array([v[5] for v in slow], dtype=np.float64)])
        offsets = block.base + block.starts[records]
        order = np.lexsort((indices, records, tag_ids))  # by tag, then in write order
        tag_ids = tag_ids[order]
        firsts = np.flatnonzero(np.diff(tag_ids, prepend=-1))
        bounds = np.append(firsts, len(order)).tolist()
        # New series are created in the order their first values were written, as value-by-value appends would.
        by_first = sorted(range(len(firsts)), key=lambda g: (records[order[firsts[g]]], indices[order[firsts[g]]]))
        series = self.series
        for g in by_first:
            first, last = bounds[g], bounds[g + 1]
            tag = self._tags[tag_ids[first]]
            s = series.get(tag)
            if s is None:
                row = int(order[first])
                if row < len(fast_records):
                    tag_end = int(fast.tag_end[records[row]])
                    encoding = events.LEGACY if block.data[tag_end] == events.LEGACY_FIELD else events.TENSOR
                else:
                    encoding = slow[row - len(fast_records)][3]
                s = series[tag] = Series(encoding)
            rows = order[first:last]
            s.steps.frombytes(steps[rows].tobytes())
            s.wall_times.frombytes(wall_times[rows].tobytes())
            s.offsets.frombytes(offsets[rows].tobytes())
            s.indices.frombytes(indices[rows].astype(np.uint32).tobytes())

    def warnings(self) -> list[dict]:
        """The file's damage, or a record cut short at its end, as report warnings."""
        if self.error is not None:
            return [{"file": self.path, "offset": self.reader.offset, "message": self.error}]
        damage: Damage | None = self.reader.damage
        if damage is not None:
            return [{"file": self.path, "offset": damage.offset, "message": f"{damage.message}; not read past it"}]
        if self.reader.pending:
            message = f"ends with an incomplete record ({self.reader.pending} bytes): still being written, or truncated"
            return [{"file": self.path, "offset": self.reader.offset, "message": message}]
        return []


class RunIndex:
    """The histogram values of one run: a directory holding event files, named as TensorBoard names runs."""

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path
        self.files: list[EventFile] = []
        self.generation = 0  # bumped whenever new values arrive, so derived results know they are stale

    def add_files(self, file_names: list[str]) -> None:
        """Adds the event files not known yet, unread."""
        known = {f.name for f in self.files}
        for name in sorted(file_names):
            if name not in known:
                self.files.append(EventFile(posixpath.join(self.path, name)))
        self.files.sort(key=lambda f: f.name)

    def read_done(self, added: list[bool]) -> None:
        """Takes note that the files were read, and whether each gained values."""
        if any(added):
            self.generation += 1

    def histogram_tags(self) -> list[str]:
        """Every histogram tag of the run, sorted."""
        return sorted({tag for f in self.files for tag in f.series})

    def warnings(self) -> list[dict]:
        return [w for f in self.files for w in f.warnings()]

    def most_per_step(self, tag: str) -> int:
        """How many values of `tag` one file holds at one step at most: above 1 the tag collides within a file."""
        return max((int(f.series[tag].step_counts()[1].max()) for f in self.files if tag in f.series), default=0)

    def shared_steps(self, tag: str) -> dict[int, list[str]]:
        """Steps at which several event files hold `tag` (a resumed or doubled writer), with those files' names."""
        holders = [f for f in self.files if tag in f.series]
        if len(holders) < 2:
            return {}
        by_step: dict[int, list[str]] = {}
        for f in holders:
            for step in f.series[tag].step_counts()[0].tolist():
                by_step.setdefault(step, []).append(f.name)
        return {step: names for step, names in by_step.items() if len(names) > 1}

    def lane_count(self, tag: str) -> int:
        """How many lanes `/histograms` serves for `tag`: 0 for an unknown tag, 1 for a clean one.

        A tag written several times at one step has a lane per write; one whose only collision is across files
        has a lane per file involved, so each writer's values can be seen apart.
        """
        most = self.most_per_step(tag)
        if most == 1:
            return max(1, len(self._files_sharing(tag)))
        return most

    def lane_refs(self, tag: str, lane: int) -> list[ValueRef]:
        """The values of lane `lane` of `tag`, one per step, sorted by step (see `lane_count`).

        For writes within a step, lane k is the k-th write at each step; where several files hold that lane at
        one step (a resumed run), the later file's value wins, as the later writer superseded the earlier one.
        """
        by_step: dict[int, ValueRef] = {}
        for f, s, positions in self._lane_positions(tag, lane):
            for i in positions.tolist():
                step = s.steps[i]
                by_step[step] = ValueRef(step, s.wall_times[i], f.path, s.offsets[i], s.indices[i])
        return [by_step[step] for step in sorted(by_step)]

    def last_ref(self, tag: str, lane: int) -> ValueRef | None:
        """`lane_refs(tag, lane)[-1]` (None for an empty lane), without making a reference for every step."""
        last = None
        for f, s, positions in self._lane_positions(tag, lane):
            if not len(positions):
                continue
            steps = np.frombuffer(s.steps, dtype=np.int64)[positions]
            step = int(steps.max())
            # As in lane_refs: at the highest step, a later file's value replaces an earlier one's, and a later
            # position's an earlier one's.
            if last is None or step >= last[0]:
                last = (step, f, s, int(positions[np.flatnonzero(steps == step)[-1]]))
        if last is None:
            return None
        step, f, s, i = last
        return ValueRef(step, s.wall_times[i], f.path, s.offsets[i], s.indices[i])

    def _lane_positions(self, tag: str, lane: int) -> list[tuple[EventFile, Series, np.ndarray]]:
        """The files whose values make lane `lane` of `tag`, in the order they override one another, with the
        positions of those values in each file's series."""
        sharing = self._files_sharing(tag) if self.most_per_step(tag) == 1 else []
        files = [sharing[lane]] if sharing else self.files
        found = []
        for f in files:
            s = f.series.get(tag)
            if s is not None:
                found.append((f, s, np.arange(len(s.steps)) if sharing else s.lane_positions(lane)))
        return found

    def _files_sharing(self, tag: str) -> list[EventFile]:
        names = {name for names in self.shared_steps(tag).values() for name in names}
        return [f for f in self.files if f.name in names]

    def decode(self, ref: ValueRef) -> np.ndarray:
        """The `(k, 3)` buckets of one value."""
        return events.decode_value(read_record_at(ref.file, ref.offset), ref.index)


def run_name(logdir: str, directory: str) -> str:
    """TensorBoard's name for the run in `directory`: its path relative to the logdir, `.` for the logdir itself."""
    relative = directory[len(logdir) :].replace("\\", "/").strip("/")
    return relative or "."


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
        pending = [self.logdir]
        while pending:
            directory = pending.pop()
            fs = gfile.get_filesystem(directory)
            try:
                entries = [(name, fs.join(directory, name)) for name in sorted(gfile.listdir(directory))]
                subdirectories = [path for _, path in entries if gfile.isdir(path)]
            except READ_ERRORS as error:
                self.unlisted[directory] = _reason(error)
                continue
            names = [name for name, path in entries if is_event_file(name) and path not in subdirectories]
            if names:
                yield directory, names
            pending.extend(reversed(subdirectories))


def _reason(error: Exception) -> str:
    """What a filesystem error says, without the class name TensorBoard's stub errors print."""
    return getattr(error, "message", None) or str(error) or error.__class__.__name__


def read_files(files: list[EventFile], processes: int) -> list[bool]:
    """`[f.reload() for f in files]`, the files shared out among `processes` processes forked for the purpose.

    Each child reads its share and sends back the files' state; the parent reads its own share meanwhile. Forking
    is done only where it is safe and pays: local files, more than one of them, and no other thread running (a
    fork copies locks another thread may hold). A child that fails, or is stuck long after the parent finished its
    own share, leaves its share to be read here.
    """
    local = all(isinstance(gfile.get_filesystem(f.path), gfile.LocalFileSystem) for f in files)
    if processes < 2 or len(files) < 2 or not local or threading.active_count() > 1 or not hasattr(os, "fork"):
        return [f.reload() for f in files]
    unread = [_unread_bytes(f) for f in files]
    if sum(unread) < FORK_MIN_BYTES:
        return [f.reload() for f in files]
    # Largest first, each to the least loaded process: a balance of bytes to read.
    shares: list[list[int]] = [[] for _ in range(min(processes, len(files)))]
    loads = [0] * len(shares)
    for i in sorted(range(len(files)), key=lambda i: -unread[i]):
        least = loads.index(min(loads))
        shares[least].append(i)
        loads[least] += unread[i]
    children = [(_fork_reader(files, share), share) for share in shares[1:]]
    started = time.monotonic()
    try:
        added = {i: files[i].reload() for i in shares[0]}
    except BaseException:
        for (pid, pipe), _ in children:
            os.close(pipe)  # a child still writing gets EPIPE and exits
            os.waitpid(pid, 0)
        raise
    deadline = time.monotonic() + CHILD_GRACE_SECONDS + CHILD_SLOWDOWN * (time.monotonic() - started)
    for (pid, pipe), share in children:
        states = _receive(pid, pipe, deadline)
        for i in share:
            if states is None:
                added[i] = files[i].reload()
            else:
                added[i], files[i].__dict__ = states.pop(0)
    return [added[i] for i in range(len(files))]


def _unread_bytes(f: EventFile) -> int:
    try:
        return max(0, gfile.stat(f.path).length - f.reader.offset)
    except READ_ERRORS:
        return 0  # gone: its reload will say so


def _receive(pid: int, pipe: int, deadline: float) -> list | None:
    """What a child sent through `pipe`, or None if it died, or was still silent at `deadline` (then it is killed)."""
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                return None
            chunk = os.read(pipe, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(pipe)
        os.waitpid(pid, 0)
    try:
        return pickle.loads(b"".join(chunks))
    except (pickle.UnpicklingError, EOFError):  # the child died before it had said everything
        return None


def _fork_reader(files: list[EventFile], share: list[int]) -> tuple[int, int]:
    """Forks a process that reads `share` of `files` and writes `[(added, file state), ...]` to the pipe returned."""
    source, sink = os.pipe()
    pid = os.fork()
    if pid:
        os.close(sink)
        return pid, source
    try:
        os.close(source)
        states = [(files[i].reload(), files[i].__dict__) for i in share]
        with os.fdopen(sink, "wb") as out:
            out.write(pickle.dumps(states, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        os._exit(0)  # no cleanup of the parent's copies (buffers, atexit) in the child
