"""The run index: every histogram value of one run's event files, by tag, kept as references into the files.

Values are not decoded while indexing: each is remembered by file, record offset and position in its summary, so
any lane can be decoded later on demand without holding histograms in memory. Indexing is incremental: each file's
`reload()` resumes where the previous call stopped.
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2

from tb_varscope_plugin import filesystem
from tb_varscope_plugin.filesystem import PositionedReader, error_reason
from tb_varscope_plugin.reading import events, fast_path
from tb_varscope_plugin.reading.records import HEADER, Block, Damage, RecordReader, Walked, read_record_at, verify_all
from tb_varscope_plugin.schema import ReportWarning

_T = TypeVar("_T")

# Values a reload stages before appending them to their series (about 40 bytes each while staged).
STAGED_VALUES = 1 << 18
# What one batch of files read together (`reload_files`) holds, about: their buffers are joined into one, and held
# three times over meanwhile (buffers, payloads, joined). A dozen 177 KB files share the numpy work well enough, and
# batches that stay in the CPU's caches read faster than larger ones (1,000 such files: 0.6 s at 2 MB, 0.75 at 8).
BATCH_BYTES = 2 << 20
# A file's values that do not decode are each a warning up to this many; past it they are counted, not listed.
SKIPPED_SHOWN = 10
TENSOR_FIELD = 0x42  # the key opening Summary.Value.tensor: field 8, length-delimited
# Event files gone from a run's directory are each a warning, the latest this many.
GONE_SHOWN = 20
# Summary metadata that parsed, by its bytes, with the plugin it names: a value whose metadata holds the very same
# bytes is read in full without a parse (see `_read_fast`). TF2 writers give each tag's first value in a file the
# same few bytes of metadata, so that a run of 20 tags had 20 records parsed a file for them. Kept for at most
# METADATA_KEPT metadata of at most METADATA_BYTES each.
_METADATA: dict[bytes, str] = {}
METADATA_KEPT = 256
METADATA_BYTES = 1024
# A block holding at least this many tag-and-field keys looks them up a block at a time (`fast_path.KnownKeys`);
# fewer are looked up one by one, which costs less than the index's numpy calls.
LOOKUP_KEYS = 64


class Series:
    """The values one event file holds for one tag, in the order they were written.

    Kept compactly, since a logdir holds millions: one numpy record array per series (step, wall time, record
    offset), its step and offset columns 4 bytes wide until a value needs 8, grown by an eighth at a time; the
    position of a value in its record's summary is stored only once one is not the first (TF1 merged summaries).
    16 bytes per value for most logs, 24 at most, besides a few hundred bytes per series.
    """

    __slots__ = ("_rows", "_size", "_indices", "encoding", "_lanes")

    def __init__(self, encoding: str) -> None:
        self._rows = _NO_ROWS  # shared: the first append allocates
        self._size = 0
        self._indices: np.ndarray | None = None  # uint32, while every value was the first of its record: None
        self.encoding = encoding
        self._lanes: _Lanes | None = None

    def __len__(self) -> int:
        return self._size

    def __getstate__(self) -> tuple:
        # As forked and spawned readers send a series back: its values as bytes with their layout, so the far side
        # makes no dtype per series (unpickling one costs more than the values) and shares one per layout, as
        # here. Lanes are worked out again there when asked for, but that the steps rise goes with the values: a
        # series read on, or joined to the next segment's values, goes on knowing it (see `append`).
        rows = self._rows[: self._size]
        indices = None if self._indices is None else self._indices[: self._size].tobytes()
        return rows.tobytes(), rows.dtype["step"].char, rows.dtype["offset"].char, indices, self.encoding, self._rises()

    def __setstate__(self, state: tuple) -> None:
        rows, step, offset, indices, self.encoding, rising = state
        # Copied into writable memory: a series read on goes on growing here.
        self._rows = np.frombuffer(bytearray(rows), dtype=_row_type(step, offset))
        self._size = len(self._rows)
        self._indices = None if indices is None else np.frombuffer(bytearray(indices), dtype=np.uint32)
        self._lanes = _Lanes.rising(self._size) if rising else None

    @property
    def steps(self) -> np.ndarray:
        return self._rows["step"][: self._size]

    @property
    def wall_times(self) -> np.ndarray:
        return self._rows["wall_time"][: self._size]

    @property
    def offsets(self) -> np.ndarray:
        """Each value's record offset in the file."""
        return self._rows["offset"][: self._size]

    @property
    def indices(self) -> np.ndarray:
        """Each value's position in its record's summary."""
        if self._indices is None:
            return np.zeros(self._size, dtype=np.uint32)
        return self._indices[: self._size]

    def append(
        self,
        steps: np.ndarray,
        wall_times: np.ndarray,
        offsets: np.ndarray,
        indices: np.ndarray,
        bounds: tuple[int, int, int, bool, bool] | None = None,
    ) -> None:
        """Adds values at the end, in write order. `bounds`, where the caller worked them out for many series at
        once: the least and the greatest step, the greatest offset, whether any index is not 0, and whether the
        steps rise from each value to the next."""
        n, size = len(steps), self._size
        # A series whose steps kept rising has one lane; told here from what the caller knows, it needs no
        # look at its steps when the report asks (see `lanes`).
        rising = False
        if bounds is not None and bounds[4]:
            rising = not size or (self._rises() and int(self._rows["step"][size - 1]) < bounds[0])
        steps_span, offsets_span = (None, None) if bounds is None else ((bounds[0], bounds[1]), (0, bounds[2]))
        rows = self._rows
        steps_now, offsets_now = rows.dtype["step"], rows.dtype["offset"]
        step_type = _widest(steps_now, steps, np.int32, steps_span)
        offset_type = _widest(offsets_now, offsets, np.uint32, offsets_span)
        # `_widest` hands back the very type it was given when the values fit it: the layout stands.
        same = step_type is steps_now and offset_type is offsets_now
        layout = rows.dtype if same else _row_type(step_type, offset_type)
        if size + n > len(rows) or rows.dtype != layout:
            grown = np.empty(max(size + n, len(rows) + len(rows) // 8 + 4), dtype=layout)
            if size:
                for name in ("step", "wall_time", "offset"):
                    grown[name][:size] = rows[name][:size]
            rows = self._rows = grown
        rows["step"][size : size + n] = steps
        rows["wall_time"][size : size + n] = wall_times
        rows["offset"][size : size + n] = offsets
        if self._indices is not None or (indices.any() if bounds is None else bounds[3]):
            if self._indices is None or len(self._indices) < len(rows):
                kept = self.indices
                self._indices = np.zeros(len(rows), dtype=np.uint32)
                self._indices[:size] = kept
            self._indices[size : size + n] = indices
        self._size = size + n
        self._lanes = _Lanes.rising(self._size) if rising else None

    def _rises(self) -> bool:
        """Whether the series is known, without a look at its steps, to have steps that rise throughout."""
        lanes = self._lanes
        return lanes is not None and lanes.length == self._size and lanes.steps is None

    def step_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct steps and how many values each holds."""
        lanes = self.lanes()
        if lanes.steps is None or lanes.counts is None:
            return self.steps.copy(), np.ones(self._size, dtype=np.int32)
        return lanes.steps, lanes.counts

    def lane_positions(self, lane: int) -> np.ndarray:
        """Positions, in write order, of the values that were the `lane`-th written at their step."""
        lanes = self.lanes()
        if lanes.positions is None or lanes.bounds is None:
            return np.arange(self._size if lane == 0 else 0)
        if lane + 1 >= len(lanes.bounds):
            return lanes.positions[:0]
        return lanes.positions[lanes.bounds[lane] : lanes.bounds[lane + 1]]

    def lanes(self) -> _Lanes:
        """The series sorted into lanes, worked out once for each length the series reaches: the report and
        `/histograms` ask for every lane in turn, and sorting for each would cost lanes x values."""
        if self._lanes is None or self._lanes.length != self._size:
            self._lanes = _Lanes.of(self.steps)
        return self._lanes


@dataclass(frozen=True)
class _Lanes:
    """A series sorted into lanes. Kept for every series once the report is built, so kept small: nothing beyond
    `most` for a series with one value per step written in step order (what most are), 4-byte integers else."""

    length: int
    steps: np.ndarray | None  # distinct steps, sorted
    counts: np.ndarray | None  # how many values each step holds
    most: int  # the largest of counts
    positions: np.ndarray | None  # every position, lane by lane, each lane in write order; None: in write order
    bounds: np.ndarray | None  # lane k is positions[bounds[k]:bounds[k + 1]]

    @staticmethod
    @functools.lru_cache(maxsize=1 << 12)
    def rising(length: int) -> _Lanes:
        """The lanes of `length` values whose steps rise: one object for every such series of that length, as
        they are the most and nothing in them depends on the steps."""
        return _Lanes(length, None, None, 1, None, None)

    @staticmethod
    def of(steps: np.ndarray) -> _Lanes:
        if len(steps) and bool((steps[1:] > steps[:-1]).all()):
            return _Lanes.rising(len(steps))
        order = np.argsort(steps, kind="stable")  # stable: within a step, values stay in write order
        ordered = steps[order]
        # Where each distinct step starts in `ordered` (np.unique would sort again, and costs 10x on short series).
        first = np.ones(len(ordered), dtype=bool)
        np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        distinct, counts = ordered[starts], np.diff(np.append(starts, len(ordered)))
        rank = np.arange(len(steps)) - np.repeat(starts, counts)  # each value's place among its step's values
        by_lane = np.lexsort((order, rank))
        most = int(counts.max()) if len(counts) else 0
        bounds = np.searchsorted(rank[by_lane], np.arange(most + 1), side="left")
        narrow = np.int32 if len(steps) < 2**31 else np.int64
        return _Lanes(len(steps), distinct, counts.astype(np.int32), most, order[by_lane].astype(narrow), bounds)


def _row_type(step: type | np.dtype, offset: type | np.dtype) -> np.dtype:
    # One dtype object per layout, shared by every series: each structured dtype costs hundreds of bytes.
    key = (np.dtype(step).char, np.dtype(offset).char)
    found = _ROW_TYPES.get(key)
    if found is None:
        found = _ROW_TYPES[key] = np.dtype([("step", step), ("wall_time", np.float64), ("offset", offset)])
    return found


_ROW_TYPES: dict[tuple[str, str], np.dtype] = {}
_COLUMNS = ("steps", "wall_times", "offsets", "indices")  # what `Series.append` takes, as a series gives it
_NO_ROWS = np.empty(0, dtype=_row_type(np.int32, np.uint32))
_NO_ROWS.flags.writeable = False


def _widest(current: np.dtype, values: np.ndarray, narrow: type, span: tuple[int, int] | None) -> np.dtype:
    """`current`, or int64 once `values` (the least and greatest of which are `span`, if known) do not fit the
    narrow type."""
    if current == np.int64 or not len(values):
        return current
    low, high = _LIMITS[narrow]
    least, most = (values.min(), values.max()) if span is None else span
    if least < low or most > high:
        return np.dtype(np.int64)
    return current


_LIMITS: dict[type, tuple[int, int]] = {np.int32: (-(1 << 31), (1 << 31) - 1), np.uint32: (0, (1 << 32) - 1)}
# The layouts by whether steps (2) and offsets (1) need 8 bytes.
_LAYOUTS = [_row_type(step, offset) for step in (np.int32, np.int64) for offset in (np.uint32, np.int64)]


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
        self._staged: list[tuple[np.ndarray, ...]] = []  # blocks' values not yet in their series (see _flush)
        self._plugins: dict[str, str] = {}
        self._tag_ids: dict[str, int] = {}  # tag -> its position in _tags
        self._tags: list[str] = []
        self._kinds: dict[bytes, int] = {}  # a single value's tag bytes and field key -> tag id, or -1: no histogram
        self._known: fast_path.KnownKeys | None = None  # _kinds indexed for lookups by block (see `known_keys`)
        self.error: str | None = None  # why the last reload could not read the file (it vanished, say)
        self.skipped: list[ReportWarning] = []  # the first values left out because they do not decode
        self.skipped_more = 0  # how many more were left out
        self.restarted: ReportWarning | None = None  # why the file was last read again from the start
        self.origin: events.Origin | None = None  # what the file's first event says of its writer, once read
        # The file's version (see `filesystem.Entry`) as found before it was last read to its end, None if unknown.
        self.read_version: tuple | None = None
        # Read as a segment on its own (`read_range`): the tags whose plugin was guessed, else None.
        self._guessed: set[str] | None = None

    # What reading changes: a forked reader sends exactly this back, and the parent restores it.
    STATE = (
        "reader",
        "series",
        "_plugins",
        "_tag_ids",
        "_tags",
        "_kinds",
        "error",
        "skipped",
        "skipped_more",
        "restarted",
        "origin",
        "_guessed",
        "_staged",  # empty whenever a reload has ended
    )

    def snapshot(self) -> tuple:
        """The state reading built, picklable, for `restore` in another process."""
        return tuple(getattr(self, name) for name in self.STATE)

    def restore(self, state: tuple) -> None:
        for name, value in zip(self.STATE, state, strict=True):
            setattr(self, name, value)

    def reload(self) -> bool:
        """Reads what was appended since the last call; True if its values changed (some were added, or the file
        was read again from the start because it shrank or was overwritten).

        A file that cannot be read (removed, unreadable) keeps what was read of it and is tried again next time.
        """
        added = False
        try:
            added = self._read()
            rewritten = self.reader.rewritten
            if rewritten is not None:
                # As TensorBoard does with a file that shrank: start over, and say so.
                fresh = EventFile(self.path)
                self.restore(fresh.snapshot())
                message = f"{rewritten.message}; read again from the start"
                self.restarted = {"file": self.path, "offset": rewritten.offset, "message": message}
                added = self._read() or True
        except filesystem.READ_ERRORS as error:
            self.error = f"could not be read ({error_reason(error)}); it is tried again at the next reload"
            return added
        self.error = None
        return added

    def read_range(self, start: int, end: int | None, alone: bool = False) -> bool:
        """Reads the records from `start`, a record boundary, up to `end` (None: as far as the file goes), on top of
        what was read so far; True if values were added. Without `reload()`'s check that the file was not
        rewritten: for a file read in segments at once (reading/parallel.py), each into a fresh EventFile, the
        segments then joined in file order with `extend`.

        `alone`: this EventFile holds nothing of what precedes `start`. A TF2 writer names a value's plugin only
        with the first value of its tag in the file, so a tensor value naming none, of a tag not seen yet, is
        guessed to be a histogram by its `[k, 3]` shape; `plugins_agree` later checks each guess.
        """
        if alone and start:
            self._guessed = set()
        added = False
        try:
            added = self._read(self.reader.range_blocks(start, end))
        except filesystem.READ_ERRORS as error:
            self.error = f"could not be read ({error_reason(error)}); it is tried again at the next reload"
            return added
        self.error = None
        return added

    def extend(self, later: EventFile) -> None:
        """Takes in what `later`, a fresh EventFile of the same file, read from where this one's reading ended: the
        state one reading of both in turn leaves. The caller sees to it that `later` starts where this one ended
        and that `plugins_agree(later)`.
        """
        ids = [self._tag_id(tag) for tag in later._tags]  # new tags in the order they first appear, as read in turn
        for key, kind in later._kinds.items():
            self._kinds.setdefault(key, -1 if kind < 0 else ids[kind])
        guessed = later._guessed or set()
        for tag, plugin in later._plugins.items():
            self._plugins.setdefault(tag, "" if tag in guessed else plugin)  # a guess was of a value naming none
        targets, sources = [], []
        for tag, s in later.series.items():
            mine = self.series.get(tag)
            if mine is None:
                self.series[tag] = s
            else:
                targets.append(mine)
                sources.append(s)
        if sources:
            _join_series(targets, sources)
        for skipped in later.skipped:
            self._note_skipped(skipped)
        self.skipped_more += later.skipped_more
        if self.origin is None:
            self.origin = later.origin
        self.reader = later.reader

    def plugins_agree(self, later: EventFile) -> bool:
        """Whether `later` (see `extend`) took every tag this one knows for a histogram or not as this one did.

        A TF2 writer names a value's plugin only at the first value of its tag in a file: a segment read on its
        own does not know what the file said before, and one reading of both in turn would have sorted it otherwise.
        """
        mine = self._plugins
        guessed = later._guessed or set()
        for tag, plugin in later._plugins.items():
            known = mine.get(tag, "" if tag in guessed else plugin)  # what reading in turn would have taken
            if (known == events.HISTOGRAMS_PLUGIN) != (plugin == events.HISTOGRAMS_PLUGIN):
                return False
        return True

    def _guess_plugins(self, event: event_pb2.Event, guessed: set[str]) -> None:
        """Guesses the plugin of each tensor value of `event` that names none, of a tag not seen yet (see
        `read_range`): histograms for a `[k, 3]` tensor, none else."""
        for value in event.summary.value:
            tag = value.tag
            if (
                value.HasField(events.TENSOR)
                and tag not in self._plugins
                and not value.metadata.plugin_data.plugin_name
            ):
                dims = value.tensor.tensor_shape.dim
                histogram = len(dims) == 2 and dims[1].size == 3
                self._plugins[tag] = events.HISTOGRAMS_PLUGIN if histogram else ""
                guessed.add(tag)

    def _read(self, blocks: Iterator[Block] | None = None) -> bool:
        added = False
        try:
            for block in self.reader.blocks() if blocks is None else blocks:
                added = self._index(block) or added
                if self.reader.damage is not None:
                    break
                if sum(len(staged[0]) for staged in self._staged) >= STAGED_VALUES:
                    self._flush()
        finally:
            self._flush()
        return added

    def _index(self, block: Block) -> bool:
        """Adds the histogram values of one block of records, and stops the file at a record that is no event."""
        return _index_blocks([(self, block, 0)], stage=True)[0]

    def _skip(self, offset: int, tag: str, step: int, problem: str) -> None:
        """Notes a value left out of the index: a warning for each of the first few of a file, then a count."""
        message = f"histogram of tag {tag!r} at step {step} skipped: {problem}"
        self._note_skipped({"file": self.path, "offset": offset, "message": message})

    def _note_skipped(self, skipped: ReportWarning) -> None:
        if len(self.skipped) < SKIPPED_SHOWN:
            self.skipped.append(skipped)
        else:
            self.skipped_more += 1

    def known_keys(self) -> fast_path.KnownKeys:
        """`_kinds` indexed for lookups a block at a time, indexed anew once it has grown enough to pay."""
        known = self._known
        if known is None or not known.serves(self._kinds):
            known = self._known = fast_path.KnownKeys(self._kinds)
        return known

    def _tag_id(self, tag: str) -> int:
        tag_id = self._tag_ids.get(tag)
        if tag_id is None:
            tag_id = self._tag_ids[tag] = len(self._tags)
            self._tags.append(tag)
        return tag_id

    def _flush(self) -> None:
        """Appends the staged values to their series, each series once, in write order."""
        if not self._staged:
            return
        columns = zip(*self._staged, strict=True)
        tag_ids, steps, wall_times, offsets, indices = (np.concatenate(column) for column in columns)
        self._staged = []
        order = np.argsort(tag_ids, kind="stable")  # stable: each tag's values stay in write order
        tag_ids = tag_ids[order]
        firsts = np.flatnonzero(np.diff(tag_ids, prepend=-1))
        targets = [self.series[self._tags[tag]] for tag in tag_ids[firsts].tolist()]
        _append_groups(targets, steps[order], wall_times[order], offsets[order], indices[order], firsts)

    def tags(self) -> set[str]:
        """Every summary tag the file was seen to hold: its histograms', every tensor summary's, and the tag of
        every single-value event of any kind (a legacy non-histogram value inside a multi-value event is missed)."""
        single = {key[:-1].decode("utf-8", "replace") for key in self._kinds}
        return {*self.series, *self._plugins, *single}

    def readable_end(self) -> int:
        """Where the records read so far end: before damage, a cut-short last record or what was not read yet."""
        damage = self.reader.damage
        return self.reader.offset if damage is None else min(self.reader.offset, damage.offset)

    def warnings(self) -> list[ReportWarning]:
        """The file's damage, or a record cut short at its end, and the values left out, as report warnings."""
        skipped = list(self.skipped)
        if self.skipped_more:
            message = f"{self.skipped_more} more histogram values after this one skipped, for reasons as above"
            skipped.append({"file": self.path, "offset": self.skipped[-1]["offset"], "message": message})
        restarted = [] if self.restarted is None else [self.restarted]
        return restarted + skipped + self._reading_warnings()

    def _reading_warnings(self) -> list[ReportWarning]:
        if self.error is not None:
            return [{"file": self.path, "offset": self.reader.offset, "message": self.error}]
        damage: Damage | None = self.reader.damage
        if damage is not None:
            return [{"file": self.path, "offset": damage.offset, "message": f"{damage.message}; not read past it"}]
        if self.reader.pending:
            message = f"ends with an incomplete record ({self.reader.pending} bytes): still being written, or truncated"
            return [{"file": self.path, "offset": self.reader.offset, "message": message}]
        return []


def reload_files(files: list[EventFile]) -> list[bool]:
    """`[f.reload() for f in files]`, leaving exactly the same states, with the numpy work of files whose unread
    records fit one read buffer (small files, small increments) done once per batch of them, not once per file:
    a file of a few hundred records costs more in numpy calls than in reading. The rest are reloaded one by one."""
    added = [False] * len(files)
    batch: list[tuple[int, Walked]] = []
    held = 0
    batched: set[int] = set()  # id() of the files in batch
    for i, f in enumerate(files):
        if id(f) in batched:  # a file given twice reads on from where the first read ends
            _read_walked(files, batch, added)
            batch, held, batched = [], 0, set()
        try:
            walked = f.reader.read_small()
        except filesystem.READ_ERRORS:
            walked = None  # its reload says why
        if walked is None:
            added[i] = f.reload()
            continue
        batch.append((i, walked))
        batched.add(id(f))
        held += len(walked.buf)
        if held >= BATCH_BYTES:
            _read_walked(files, batch, added)
            batch, held, batched = [], 0, set()
    if batch:
        _read_walked(files, batch, added)
    return added


def _read_walked(files: list[EventFile], batch: list[tuple[int, Walked]], added: list[bool]) -> None:
    """Each `(i, walked)` of `batch`: what `files[i].reload()` does with the one buffer `walked` it reads, all at once;
    whether each file gained values goes to `added[i]`."""
    holding = [walked for _, walked in batch if walked.payloads]
    # The buffers joined once, for the checks and the indexing both.
    joined = b"".join(walked.buf for walked in holding)
    at = dict(zip(map(id, holding), np.cumsum([0, *(len(walked.buf) for walked in holding)]).tolist(), strict=False))
    checks = iter(verify_all(holding, joined) if holding else [])
    checked = [next(checks) if walked.payloads else None for _, walked in batch]
    items = []
    where = []
    for (i, walked), check in zip(batch, checked, strict=True):
        block = files[i].reader.take(walked, check)
        if block is not None:
            items.append((files[i], block, at[id(walked)]))
            where.append(i)
    for i, gained in zip(where, _index_blocks(items, stage=False, joined=joined) if items else [], strict=True):
        added[i] = gained
    for (i, walked), check in zip(batch, checked, strict=True):
        f = files[i]
        if f.reader.damage is None:  # indexing found none: the reading goes on as `blocks()` would
            f.reader.finish(walked, check)
        f.error = None


def _index_blocks(items: list[tuple[EventFile, Block, int]], stage: bool, joined: bytes | None = None) -> list[bool]:
    """For each `(f, block, at)` (a file at most once), adds the histogram values of the block of records to `f`,
    and stops the file at a record that is no event; True where values were added. As indexing block after block
    does, with the numpy work done once for all. `stage`: the values wait in `f._staged` for `_flush` (a file read
    block by block), else they go to their series at once. `joined`: the blocks' buffers in one, each block's at
    `at` (None: the one block's buffer, at 0)."""
    # Every block's buffer in one, every record numbered in it, file after file.
    raw = items[0][1].data if joined is None else joined
    held = [len(block.payloads) for _, block, _ in items]
    read = _read_fast(items, raw, held)
    # Every record parses, or the file stops at the first that does not: damage wherever its fields are read from.
    # The fast path read most in full (see `_read_fast`); the protobuf parser checks the rest.
    unchecked = np.flatnonzero(~read.whole)
    bounds = np.searchsorted(unchecked, read.firsts).tolist()
    counts = []
    # Each block's parsed events by record (numbered in the block), kept for what is read of them below: every
    # record read in full there was parsed here, as a record read in full by the fast path is never among them.
    parsed: list[dict[int, event_pb2.Event]] = []
    for k, (f, block, _) in enumerate(items):
        mine = (unchecked[bounds[k] : bounds[k + 1]] - read.firsts[k]).tolist()
        prefix = events.parsed_prefix([block.payloads[i] for i in mine])
        count = held[k] if len(prefix) == len(mine) else mine[len(prefix)]
        parsed.append(dict(zip(mine, prefix, strict=False)))
        if count and f.origin is None and block.base + int(block.starts[0]) == 0:
            # A file's first record is the first of its key if it holds a single value, else of no key: parsed.
            f.origin = events.origin(parsed[k][0])
        counts.append(count)
    if counts != held:
        read = _read_fast(items, raw, counts)
    firsts, file_of, offsets, fast, plain = read.firsts, read.file_of, read.offsets, read.fast, read.plain
    pair_of, pair_first, new_keys, told = read.pair_of, read.pair_first, read.new_keys, read.told
    key_first = pair_first.tolist() if new_keys else []
    key_tags = [*read.kinds, -1]  # the trailing -1 is picked by records not simple
    others = np.flatnonzero(fast.key_of < 0)
    other_bounds = np.searchsorted(others, firsts).tolist()
    others_list = others.tolist()
    first_seen: list[int] = []
    # (record, index, tag id, encoding, step, wall_time) of each file; records numbered as above
    slows: list[list[tuple[int, int, int, str, int, float]]] = []
    # Values left out, noted in file order once all are known: the warnings then do not depend on where reads
    # fell, so a file read in segments warns as one read in one go.
    skips: list[list[tuple[int, int, str, int, str]]] = []  # (record, index, tag, step, problem) of each file
    for k, (f, _, _) in enumerate(items):
        kinds = f._kinds
        # Parsed: records of other layouts, and the first single value of each tag-and-field key the file has not
        # shown before, unless its bytes told what it is (`told`); from then on the key alone decides whether a
        # value is a histogram, and of which tag.
        unseen = [key_first[p] for p in read.unseen[k]]
        slow: list[tuple[int, int, int, str, int, float]] = []
        skipped: list[tuple[int, int, str, int, str]] = []
        for record in sorted(others_list[other_bounds[k] : other_bounds[k + 1]] + unseen):
            pair = int(pair_of[record])
            if pair in told:  # what `histogram_values` would find, known from the bytes: the value stays fast
                tag, plugin = told[pair]
                if plugin is not None:
                    plugin = f._plugins.setdefault(tag, plugin)
                histogram = plugin is None or plugin == events.HISTOGRAMS_PLUGIN
                kinds[new_keys[pair]] = key_tags[pair] = f._tag_id(tag) if histogram else -1
                continue
            event = parsed[k][record - firsts[k]]
            if f._guessed is not None:
                f._guess_plugins(event, f._guessed)
            found = events.histogram_values(event, f._plugins)
            if pair >= 0:
                _learn_metadata(event, raw, int(fast.metadata_start[record]), int(read.ends[record]))
                kinds[new_keys[pair]] = key_tags[pair] = -1 if found is None else f._tag_id(found[2][0][1])
            if found is not None:
                step, wall_time, values = found
                summary = event.summary.value
                for index, tag, encoding in values:
                    # A single value's check from its bytes stands, as it does for its key's later values.
                    problem = None if pair >= 0 and plain[record] else events.value_problem(summary[index])
                    if problem is None:
                        slow.append((record, index, f._tag_id(tag), encoding, step, wall_time))
                    else:
                        skipped.append((record, index, tag, step, problem))
        first_seen += [record for record in unseen if int(pair_of[record]) not in told]
        slows.append(slow)
        skips.append(skipped)
    tag_ids = np.array(key_tags, dtype=np.int64)[pair_of]
    tag_ids[first_seen] = -1
    fast_records = np.flatnonzero(tag_ids >= 0)
    keep = plain[fast_records]
    for row in np.flatnonzero(~keep).tolist():
        record = int(fast_records[row])
        k = int(file_of[record])
        f, block, _ = items[k]
        problem = events.value_problem(parsed[k][record - firsts[k]].summary.value[0])  # not plain: parsed
        if problem is None:
            keep[row] = True
        else:
            skips[k].append((record, 0, f._tags[tag_ids[record]], int(fast.step[record]), problem))
    fast_records = fast_records[keep]
    for k, (f, block, _) in enumerate(items):
        for record, _, tag, step, problem in sorted(skips[k], key=lambda skip: skip[:2]):
            f._skip(int(offsets[record]), tag, step, problem)
        if counts[k] < len(block.payloads):
            offset = block.base + int(block.starts[counts[k]])
            f.reader.mark_damaged(offset, "record does not parse as an event", block)
    fast_bounds = np.searchsorted(fast_records, firsts).tolist()
    added = [fast_bounds[k + 1] > fast_bounds[k] or bool(slows[k]) for k in range(len(items))]
    if any(added):
        _add_values(items, raw, fast, fast_records, tag_ids, file_of, offsets, slows, stage)
    return added


def _learn_metadata(event: event_pb2.Event, raw: bytes, start: int, end: int) -> None:
    """Keeps the metadata of the one value of `event`, a parsed single-value event whose metadata body lies at
    `raw[start:end]` (`start == end`: it has none), in `_METADATA`."""
    if start < end and end - start <= METADATA_BYTES and len(_METADATA) < METADATA_KEPT:
        _METADATA.setdefault(raw[start:end], event.summary.value[0].metadata.plugin_data.plugin_name)


@dataclass(frozen=True)
class _FastRead:
    """What the fast path reads of the first `counts[k]` records of each block of a batch (see `_read_fast`)."""

    firsts: list[int]  # each block's first record, records numbered file after file
    file_of: np.ndarray  # each record's block
    offsets: np.ndarray  # each record's offset in its file
    ends: np.ndarray  # where each record's event ends in the joined buffers
    fast: fast_path.SingleValues
    plain: np.ndarray  # bool: a single histogram value checked from its bytes (`fast_path.plain_histograms`)
    pair_of: np.ndarray  # each record's tag-and-field key in its file, -1 where not simple
    pair_first: np.ndarray  # each key's first record
    pair_bounds: list[int]  # block k's keys are pair_first[pair_bounds[k]:pair_bounds[k + 1]]
    kinds: list[int]  # what each key is in its file (see `EventFile._kinds`), fast_path.UNKNOWN where not shown yet
    new_keys: dict[int, bytes]  # the bytes of each key not shown yet: the tag's, and the byte opening the value's field
    unseen: list[list[int]]  # for each block, its keys that its file has not shown before
    told: dict[int, tuple[str, str | None]]  # keys not shown yet whose first record is read without a parse
    whole: np.ndarray  # bool: the record certainly parses as an event (see below)


def _read_fast(items: list[tuple[EventFile, Block, int]], raw: bytes, counts: list[int]) -> _FastRead:
    """What the fast path reads of the first `counts[k]` records of each of `items` (blocks whose buffers are
    `raw`, joined, as `_index_blocks` takes them)."""
    data = np.frombuffer(raw, dtype=np.uint8)
    firsts = np.cumsum([0, *counts]).tolist()
    file_of = np.repeat(np.arange(len(items)), counts)
    local = np.concatenate([block.starts[:count] for (_, block, _), count in zip(items, counts, strict=True)])
    lengths = np.concatenate([block.lengths[:count] for (_, block, _), count in zip(items, counts, strict=True)])
    starts = local + np.array([at + HEADER for _, _, at in items], dtype=np.int64)[file_of]
    offsets = local + np.array([block.base for _, block, _ in items], dtype=np.int64)[file_of]  # in their files
    ends = starts + lengths
    fast = fast_path.single_values(data, starts, ends)
    simple = np.flatnonzero(fast.key_of >= 0)
    # Every value is checked here, so what the index holds decodes: the report, attribution and /histograms
    # all see the same values, and a bad one is a warning of its file from the moment it is read. Values laid
    # out as writers write them are checked from their bytes at once, the rest one at a time.
    field = data.take(fast.tag_end[simple], mode="clip")
    legacy = field == events.LEGACY_FIELD
    plain = np.zeros(len(starts), dtype=bool)
    plain[simple] = fast_path.plain_histograms(data, fast.value_start[simple], fast.value_end[simple], legacy)
    # A tag-and-field key is told apart per file: `pair_of[i]`, record i's key in its file (-1 where not simple).
    if len(items) == 1:
        pair_of, pair_first, pair_bounds = fast.key_of, fast.key_first, [0, len(fast.key_first)]
    else:
        width = max(1, len(fast.key_first))
        codes, first, group = np.unique(
            file_of[simple] * width + fast.key_of[simple], return_index=True, return_inverse=True
        )
        pair_of = np.full(len(starts), -1, dtype=np.int64)
        pair_of[simple] = group
        pair_first = simple[first]
        pair_bounds = np.searchsorted(codes // width, np.arange(len(items) + 1)).tolist()
    kinds, new_keys, unseen = _key_kinds(items, raw, fast, pair_first, pair_bounds)
    # Read in full, so certain to parse: a histogram (field histo or tensor) whose every byte the fast path
    # checked, with no metadata or metadata whose very bytes parsed before (`_METADATA`), and a tag whose bytes
    # an earlier record of the file has. The first record of a key in its file is read in full only where its tag
    # decodes as UTF-8 (as protobuf requires of a string) and what the value is can be told without a parse: a
    # legacy histogram, or a tensor whose metadata names its plugin; the others are parsed.
    whole = np.zeros(len(starts), dtype=bool)
    checked = simple[plain[simple] & (legacy | (field == TENSOR_FIELD))]
    bare = fast.value_end[checked] == ends[checked]
    whole[checked[bare]] = True
    named: dict[int, str] = {}  # record -> the plugin its value's metadata names, where those bytes parsed before
    if _METADATA:
        dressed = checked[~bare]
        for r, a, b in zip(
            dressed.tolist(), fast.metadata_start[dressed].tolist(), ends[dressed].tolist(), strict=True
        ):
            plugin = _METADATA.get(raw[a:b])
            if plugin is not None:
                named[r] = plugin
                whole[r] = True
    told: dict[int, tuple[str, str | None]] = {}  # key -> its tag and the plugin named, None for a legacy histogram
    for p in (p for block in unseen for p in block):
        r = int(pair_first[p])
        legacy_value = raw[int(fast.tag_end[r])] == events.LEGACY_FIELD
        plugin = None if legacy_value else named.get(r)
        if whole[r] and offsets[r] and (legacy_value or plugin):  # a file's first record is parsed: its origin
            try:
                told[p] = (new_keys[p][:-1].decode(), plugin)
                continue
            except UnicodeDecodeError:
                pass
        whole[r] = False
    return _FastRead(
        firsts,
        file_of,
        offsets,
        ends,
        fast,
        plain,
        pair_of,
        pair_first,
        pair_bounds,
        kinds,
        new_keys,
        unseen,
        told,
        whole,
    )


def _key_kinds(
    items: list[tuple[EventFile, Block, int]],
    raw: bytes,
    fast: fast_path.SingleValues,
    pair_first: np.ndarray,
    pair_bounds: list[int],
) -> tuple[list[int], dict[int, bytes], list[list[int]]]:
    """What each key of each block is in its file (`EventFile._kinds`, fast_path.UNKNOWN where not shown yet),
    the bytes of those not shown yet, and which those are, block by block.

    A block of many keys has them looked up a block at a time (a file of 10,000 tags holds thousands in every
    read buffer); the rest, and any that lookup leaves unknown, by their bytes."""
    kinds = np.full(len(pair_first), fast_path.UNKNOWN, dtype=np.int64)
    looked_up = False
    for k, (f, _, _) in enumerate(items):
        a, b = pair_bounds[k], pair_bounds[k + 1]
        if b - a >= LOOKUP_KEYS:
            kinds[a:b] = f.known_keys().lookup(fast.keys.take(fast.key_of[pair_first[a:b]]))
            looked_up = True
    missing = np.flatnonzero(kinds == fast_path.UNKNOWN) if looked_up else np.arange(len(pair_first))
    records = pair_first[missing]
    bounds = np.searchsorted(missing, pair_bounds).tolist()
    missing_list, starts, ends = missing.tolist(), fast.tag_start[records].tolist(), fast.tag_end[records].tolist()
    found = kinds.tolist()
    new_keys: dict[int, bytes] = {}
    unseen: list[list[int]] = []
    for k, (f, _, _) in enumerate(items):
        known, mine = f._kinds, []
        a, b = bounds[k], bounds[k + 1]
        for p, start, end in zip(missing_list[a:b], starts[a:b], ends[a:b], strict=True):
            key = raw[start : end + 1]
            kind = known.get(key)
            if kind is None:
                new_keys[p] = key
                mine.append(p)
            else:
                found[p] = kind
        unseen.append(mine)
    return found, new_keys, unseen


def _add_values(
    items: list[tuple[EventFile, Block, int]],
    raw: bytes,
    fast: fast_path.SingleValues,
    fast_records: np.ndarray,
    tag_ids: np.ndarray,
    file_of: np.ndarray,
    offsets: np.ndarray,
    slows: list[list[tuple[int, int, int, str, int, float]]],
    stage: bool,
) -> None:
    """Adds the values `_index_blocks` found to their series in write order, creating series in order of first
    value, as value-by-value appends would."""
    slow = [(k, *value) for k, values in enumerate(slows) for value in values]
    files = np.concatenate([file_of[fast_records], np.array([v[0] for v in slow], dtype=np.int64)])
    records = np.concatenate([fast_records, np.array([v[1] for v in slow], dtype=np.int64)])
    indices = np.concatenate([np.zeros(len(fast_records), np.int64), np.array([v[2] for v in slow], np.int64)])
    tags = np.concatenate([tag_ids[fast_records], np.array([v[3] for v in slow], dtype=np.int64)])
    steps = np.concatenate([fast.step[fast_records], np.array([v[5] for v in slow], dtype=np.int64)])
    wall_times = np.concatenate([fast.wall_time[fast_records], np.array([v[6] for v in slow], dtype=np.float64)])
    order = np.lexsort((indices, records, tags, files))  # by file, then tag, then in write order
    files, tags = files[order], tags[order]
    firsts = np.flatnonzero((np.diff(files, prepend=-1) != 0) | (np.diff(tags, prepend=-1) != 0))
    first_rows = order[firsts]
    group_files, group_tags = files[firsts].tolist(), tags[firsts].tolist()
    # New series are created in the order their first values were written (records are numbered file by file).
    # A series' tag always has an id, so a file with a series for every id has none to create: the file of
    # 10,000 tags, from its second buffer on, is not looked at tag by tag here.
    creating = any(len(f.series) < len(f._tags) for f, _, _ in items)
    by_first = np.lexsort((indices[first_rows], records[first_rows])).tolist() if creating else []
    first_rows_list = first_rows.tolist() if creating else []
    for g in by_first:
        f = items[group_files[g]][0]
        tag = f._tags[group_tags[g]]
        if tag not in f.series:
            row = first_rows_list[g]
            if row < len(fast_records):
                legacy = raw[int(fast.tag_end[records[row]])] == events.LEGACY_FIELD
                f.series[tag] = Series(events.LEGACY if legacy else events.TENSOR)
            else:
                f.series[tag] = Series(slow[row - len(fast_records)][4])
    steps, wall_times, offsets, indices = steps[order], wall_times[order], offsets[records[order]], indices[order]
    if stage:
        # Staged, not appended: a block of a file with thousands of tags holds a value or two of each, and one
        # append per tag and block would cost more than reading the block.
        ends = np.searchsorted(files, np.arange(len(items) + 1)).tolist()
        for k, (f, _, _) in enumerate(items):
            a, b = ends[k], ends[k + 1]
            if b > a:
                f._staged.append((tags[a:b], steps[a:b], wall_times[a:b], offsets[a:b], indices[a:b]))
        return
    targets = [items[k][0].series[items[k][0]._tags[tag]] for k, tag in zip(group_files, group_tags, strict=True)]
    _append_groups(targets, steps, wall_times, offsets, indices, firsts)


def _append_groups(
    targets: list[Series],
    steps: np.ndarray,
    wall_times: np.ndarray,
    offsets: np.ndarray,
    indices: np.ndarray,
    firsts: np.ndarray,
) -> None:
    """Appends to each of `targets` its values: the g-th series' start at `firsts[g]` in the columns, grouped series
    by series, each in write order. What `Series.append` takes besides is worked out at once, a few numpy calls
    for all series and not for each: step and offset bounds, and whether indices are set and steps rise."""
    low, high = np.minimum.reduceat(steps, firsts), np.maximum.reduceat(steps, firsts)
    far = np.maximum.reduceat(offsets, firsts)
    lows, highs, fars = low.tolist(), high.tolist(), far.tolist()
    indexed = np.logical_or.reduceat(indices != 0, firsts).tolist()
    # Whether each series' steps rise throughout: no fall or repeat from one value to the next within it.
    falls = np.ones(len(steps), dtype=bool)
    np.less_equal(steps[1:], steps[:-1], out=falls[1:])
    falls[firsts] = False
    rising = np.logical_not(np.logical_or.reduceat(falls, firsts)).tolist()
    # The layout a series holding nothing yet takes for its values (as `Series.append` would choose it).
    wide = ((low < _LIMITS[np.int32][0]) | (high > _LIMITS[np.int32][1])) * 2 + (far > _LIMITS[np.uint32][1])
    layouts = wide.tolist()
    bounds = [*firsts.tolist(), len(steps)]
    fresh: dict[int, list[int]] = {}  # series that hold nothing yet and get no indices, by their layouts
    for g, s in enumerate(targets):
        if not s._size and not indexed[g]:
            fresh.setdefault(layouts[g], []).append(g)
            continue
        a, b = bounds[g], bounds[g + 1]
        s.append(
            steps[a:b],
            wall_times[a:b],
            offsets[a:b],
            indices[a:b],
            (lows[g], highs[g], fars[g], indexed[g], rising[g]),
        )
    for layout, groups in fresh.items():
        _create_rows(
            _LAYOUTS[layout],
            [targets[g] for g in groups],
            [(bounds[g], bounds[g + 1]) for g in groups],
            [rising[g] for g in groups],
            steps,
            wall_times,
            offsets,
        )


def _create_rows(
    layout: np.dtype,
    targets: list[Series],
    spans: list[tuple[int, int]],
    rising: list[bool],
    steps: np.ndarray,
    wall_times: np.ndarray,
    offsets: np.ndarray,
) -> None:
    """Gives each of `targets` (series holding nothing yet, and no indices) the values `spans` of the columns, in
    one array of `layout` for all: each series' rows are its part of it, as `_join_series` leaves them. Appended
    one by one, each series would cost a dozen numpy calls, and a batch of small files creates 20 series a file."""
    sizes = np.array([b - a for a, b in spans], dtype=np.int64)
    ends = np.cumsum(sizes)
    total = int(ends[-1])
    rows = np.empty(total, dtype=layout)
    if total == len(steps):  # every value of the batch: the spans cover the columns in order
        rows["step"], rows["wall_time"], rows["offset"] = steps, wall_times, offsets
    else:
        at = np.arange(total) + np.repeat(np.array([a for a, _ in spans], dtype=np.int64) - (ends - sizes), sizes)
        rows["step"], rows["wall_time"], rows["offset"] = steps[at], wall_times[at], offsets[at]
    for s, end, size, rises in zip(targets, ends.tolist(), sizes.tolist(), rising, strict=True):
        s._rows = rows[end - size : end]
        s._size = size
        s._lanes = _Lanes.rising(size) if rises else None


def _join_series(targets: list[Series], sources: list[Series]) -> None:
    """Appends each source's values to its target, as a batch: each series learns that its steps still rise, and
    none works out bounds of its own (10,000 appends of their own cost a tenth of a second, and left every series'
    lanes for the report to sort).

    Where every series has one layout and none holds indices (a file's series mostly do), the joined rows are
    made for all at once, each target's rows becoming its part of that one array; otherwise they are appended
    through `_append_groups`."""
    layout = targets[0]._rows.dtype
    if any(s._rows.dtype is not layout or s._indices is not None for s in (*targets, *sources)):
        steps, wall_times, offsets, indices = (np.concatenate([getattr(s, c) for s in sources]) for c in _COLUMNS)
        _append_groups(targets, steps, wall_times, offsets, indices, np.cumsum([0, *map(len, sources[:-1])]))
        return
    rising = [t._rises() and s._rises() for t, s in zip(targets, sources, strict=True)]
    # Joined as bytes: numpy promotes structured dtypes pair by pair in Python, 3 us for each of 20,000 parts.
    parts = [rows for t, s in zip(targets, sources, strict=True) for rows in (t._rows[: t._size], s._rows[: s._size])]
    joined = np.concatenate([rows.view(np.uint8) for rows in parts]).view(layout)
    before = np.array([t._size for t in targets])
    sizes = before + [s._size for s in sources]
    ends = np.cumsum(sizes)
    starts = ends - sizes
    steps = joined["step"]
    meet = (steps[starts + before - 1] < steps[starts + before]).tolist()  # each target's last step, its source's first
    for t, start, end, rises, meets in zip(targets, starts.tolist(), ends.tolist(), rising, meet, strict=True):
        t._rows = joined[start:end]
        t._size = end - start
        t._lanes = _Lanes.rising(t._size) if rises and meets else None


class RunIndex:
    """The histogram values of one run: a directory holding event files, named as TensorBoard names runs."""

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path
        self.files: list[EventFile] = []
        self.generation = 0  # bumped whenever new values arrive, so derived results know they are stale
        self.gone: dict[str, ReportWarning] = {}  # event file name -> the warning that it vanished

    def set_files(self, file_names: list[str]) -> None:
        """Takes the event files the directory now holds: new ones are added unread, and ones no longer there are
        dropped with their values, a warning saying so (kept until a file of that name is back)."""
        present = set(file_names)
        gone = [f for f in self.files if f.name not in present]
        for f in gone:
            message = "is gone from the run's directory (deleted or renamed): its values are no longer shown"
            self.gone[f.name] = {"file": f.path, "offset": 0, "message": message}
        for name in list(self.gone)[:-GONE_SHOWN]:  # the latest only: a writer rotating files would pile them up
            del self.gone[name]
        if gone:
            self.files = [f for f in self.files if f.name in present]
            self.generation += 1
        known = {f.name for f in self.files}
        for name in sorted(present - known):
            self.gone.pop(name, None)
            self.files.append(EventFile(posixpath.join(self.path, name)))
        self.files.sort(key=lambda f: f.name)

    def read_done(self, added: list[bool]) -> None:
        """Takes note that the files were read, and whether each gained values."""
        if any(added):
            self.generation += 1

    def histogram_tags(self) -> list[str]:
        """Every histogram tag of the run, sorted."""
        return sorted({tag for f in self.files for tag in f.series})

    def warnings(self) -> list[ReportWarning]:
        return [*self.gone.values(), *(w for f in self.files for w in f.warnings())]

    def most_per_step(self, tag: str) -> int:
        """How many values of `tag` one file holds at one step at most: above 1 the tag collides within a file."""
        return max((f.series[tag].lanes().most for f in self.files if tag in f.series), default=0)

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
            columns = (s.steps[positions], s.wall_times[positions], s.offsets[positions], s.indices[positions])
            for step, wall_time, offset, index in zip(*(c.tolist() for c in columns), strict=True):
                by_step[step] = ValueRef(step, wall_time, f.path, offset, index)
        return [by_step[step] for step in sorted(by_step)]

    def last_ref(self, tag: str, lane: int) -> ValueRef | None:
        """`lane_refs(tag, lane)[-1]` (None for an empty lane), without making a reference for every step."""
        last = None
        for f, s, positions in self._lane_positions(tag, lane):
            if not len(positions):
                continue
            steps = s.steps[positions]
            step = int(steps.max())
            # As in lane_refs: at the highest step, a later file's value replaces an earlier one's, and a later
            # position's an earlier one's.
            if last is None or step >= last[0]:
                last = (step, f, s, int(positions[np.flatnonzero(steps == step)[-1]]))
        if last is None:
            return None
        step, f, s, i = last
        return ValueRef(step, float(s.wall_times[i]), f.path, int(s.offsets[i]), int(s.indices[i]))

    def _lane_positions(self, tag: str, lane: int) -> list[tuple[EventFile, Series, np.ndarray]]:
        """The files whose values make lane `lane` of `tag`, in the order they override one another, with the
        positions of those values in each file's series."""
        sharing = self._files_sharing(tag) if self.most_per_step(tag) == 1 else []
        files = [sharing[lane]] if sharing else self.files
        found = []
        for f in files:
            s = f.series.get(tag)
            if s is not None:
                found.append((f, s, np.arange(len(s)) if sharing else s.lane_positions(lane)))
        return found

    def _files_sharing(self, tag: str) -> list[EventFile]:
        names = {name for names in self.shared_steps(tag).values() for name in names}
        return [f for f in self.files if f.name in names]

    def decode(self, ref: ValueRef) -> np.ndarray:
        """The `(k, 3)` buckets of one value."""
        return self.decode_all([ref])[0]

    def decode_all(self, refs: list[ValueRef]) -> list[np.ndarray]:
        """The `(k, 3)` buckets of each value, every file opened once for all of its values, and a record holding
        several of them in a row read and parsed once."""
        return self._each_value(refs, events.decode_histogram)

    def element_counts(self, refs: list[ValueRef]) -> list[int]:
        """How many elements each value counts (`events.counted_elements`), read as `decode_all` reads them."""
        return self._each_value(refs, events.counted_elements)

    def _each_value(self, refs: list[ValueRef], make: Callable[[summary_pb2.Summary.Value], _T]) -> list[_T]:
        sources: dict[str, PositionedReader] = {}
        try:
            found = []
            record: tuple[str, int] | None = None
            values: list[summary_pb2.Summary.Value] = []  # the summary values of `record`
            for ref in refs:
                if record != (ref.file, ref.offset):
                    source = sources.get(ref.file)
                    if source is None:
                        source = sources[ref.file] = PositionedReader(ref.file)
                    values = events.summary_values(read_record_at(ref.file, ref.offset, source))
                    record = (ref.file, ref.offset)
                if ref.index >= len(values):  # the file was replaced since it was read
                    raise events.BadValue(f"{ref.file}: the record at offset {ref.offset} has no value {ref.index}")
                found.append(make(values[ref.index]))
            return found
        finally:
            for source in sources.values():
                source.close()
