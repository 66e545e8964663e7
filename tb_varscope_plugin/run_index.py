"""The run index: every histogram value of every event file, by run and tag, kept as references into the files.

Values are not decoded while indexing: each is remembered by file, record offset and position in its summary, so
any lane can be decoded later on demand without holding histograms in memory. Indexing is incremental: `reload()`
resumes each file where the previous call stopped and picks up new files and runs.
"""

from __future__ import annotations

import posixpath
import re
from array import array
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from google.protobuf.message import DecodeError
from tensorboard.compat.tensorflow_stub.io import gfile

from tb_varscope_plugin import events
from tb_varscope_plugin.records import Damage, RecordReader, read_record_at


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
        self.indices = array("H")  # position of the value in the record's summary
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

    def reload(self) -> bool:
        """Reads what was appended since the last call; True if any histogram value was added."""
        added = False
        series = self.series
        for offset, payload in self.reader.read():
            try:
                found = events.histogram_values(payload, self._plugins)
            except DecodeError:
                # A record whose checksum holds but which is no event is damage too.
                self.reader.mark_damaged(offset, "record does not parse as an event")
                break
            if found is None:
                continue
            step, wall_time, values = found
            for index, tag, encoding in values:
                s = series.get(tag)
                if s is None:
                    s = series[tag] = Series(encoding)
                s.steps.append(step)
                s.wall_times.append(wall_time)
                s.offsets.append(offset)
                s.indices.append(index)
            added = True
        return added

    def warnings(self) -> list[dict]:
        """The file's damage, or a record cut short at its end, as report warnings."""
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

    def reload(self, file_names: list[str] | None = None) -> None:
        """Adds new event files and reads what every file has gained."""
        if file_names is None:
            file_names = [n for n in gfile.listdir(self.path) if is_event_file(n)]
        known = {f.name for f in self.files}
        for name in sorted(file_names):
            if name not in known:
                self.files.append(EventFile(posixpath.join(self.path, name)))
        self.files.sort(key=lambda f: f.name)
        if any([f.reload() for f in self.files]):
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
        sharing = self._files_sharing(tag) if self.most_per_step(tag) == 1 else []
        files = [sharing[lane]] if sharing else self.files
        by_step: dict[int, ValueRef] = {}
        for f in files:
            s = f.series.get(tag)
            if s is None:
                continue
            positions = range(len(s.steps)) if sharing else s.lane_positions(lane).tolist()
            for i in positions:
                step = s.steps[i]
                by_step[step] = ValueRef(step, s.wall_times[i], f.path, s.offsets[i], s.indices[i])
        return [by_step[step] for step in sorted(by_step)]

    def _files_sharing(self, tag: str) -> list[EventFile]:
        names = {name for names in self.shared_steps(tag).values() for name in names}
        return [f for f in self.files if f.name in names]

    def decode(self, ref: ValueRef) -> np.ndarray:
        """The `(k, 3)` buckets of one value."""
        return events.decode_value(read_record_at(ref.file, ref.offset), ref.index)

    def lane_histograms(self, tag: str, lane: int) -> list[tuple[float, int, np.ndarray]]:
        """`(wall_time, step, buckets)` of a lane, one per step, sorted by step."""
        return [(ref.wall_time, ref.step, self.decode(ref)) for ref in self.lane_refs(tag, lane)]


def run_name(logdir: str, directory: str) -> str:
    """TensorBoard's name for the run in `directory`: its path relative to the logdir, `.` for the logdir itself."""
    relative = directory[len(logdir) :].replace("\\", "/").strip("/")
    return relative or "."


class LogdirIndex:
    """Every run under a logdir (or those whose name matches `run_filter`), discovered and read incrementally."""

    def __init__(self, logdir: str, run_filter: re.Pattern | None = None) -> None:
        self.logdir = logdir.rstrip("/") or "/"
        self.run_filter = run_filter
        self.runs: dict[str, RunIndex] = {}

    def reload(self, progress: Callable[[str], None] | None = None) -> None:
        """Finds new runs and event files, and reads what every file has gained since the last call.

        `progress` is told the name of each run before it is read.
        """
        for directory, _, file_names in gfile.walk(self.logdir):
            names = [n for n in file_names if is_event_file(n)]
            if not names:
                continue
            name = run_name(self.logdir, directory)
            if self.run_filter is not None and not self.run_filter.search(name):
                continue
            run = self.runs.get(name)
            if run is None:
                run = self.runs[name] = RunIndex(name, directory)
            if progress is not None:
                progress(name)
            run.reload(names)
