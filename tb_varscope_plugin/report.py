"""The report: one plain dict (schema `tb-varscope/1`) built from a logdir index; CLI and HTTP routes present it."""

from __future__ import annotations

import functools
import json
import logging
import os
import posixpath
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from tb_varscope_plugin import filesystem
from tb_varscope_plugin.analysis.attribution import LaneMatch, attribute_lanes, attribute_restart
from tb_varscope_plugin.analysis.collisions import FoundCollision, collision_entry, find_collisions
from tb_varscope_plugin.analysis.groups import group_tags
from tb_varscope_plugin.analysis.siblings import share_sibling_lanes
from tb_varscope_plugin.checkpoints import isolated
from tb_varscope_plugin.checkpoints.discovery import KERAS_SUFFIXES, WalkedDirectories, find_checkpoint, unread_models
from tb_varscope_plugin.checkpoints.formats import read_checkpoint
from tb_varscope_plugin.checkpoints.variables import Checkpoint, CheckpointError
from tb_varscope_plugin.filesystem import is_local, mtime
from tb_varscope_plugin.reading.events import BadValue
from tb_varscope_plugin.reading.logdir import LogdirIndex
from tb_varscope_plugin.reading.parallel import FORK_MIN_BYTES, forked, receive_all
from tb_varscope_plugin.reading.records import NoRecord
from tb_varscope_plugin.reading.run_index import BATCH_BYTES, RunIndex
from tb_varscope_plugin.schema import SAME_STEP, SCHEMA, Collision, Report, ReportWarning, RunReport

logger = logging.getLogger(__name__)

# Runs are shared out among processes only when no process gets more than this many times its even share of bytes.
UNEVEN = 1.25
# Shares of at most this many runs are evened out by moving and swapping runs (see `_even_out`); with more, the runs
# are small beside a share and largest-first leaves the shares within one run of even.
EVENED_RUNS = 64
# Read by several processes at once, the runs of a logdir that does not share out by runs are read up to this many
# bytes together (what is held meanwhile is their index: tens of bytes a value, a few percent of the files).
READ_AHEAD_BYTES = 256 << 20
# Until a first share's child has answered, one silent this long past the start of a scan is taken as stuck (a scan
# reads a few hundred MB a second per process): it is killed and its share done by the parent.
CHILD_SHARE_SECONDS = 3600.0
# Many runs are handed out in pieces of at least this many bytes (see `chunks`): a piece is read a batch at a time.
CHUNK_MIN_BYTES = BATCH_BYTES
# And in at most this many: their numbers, 4 bytes each, are written to a pipe before any child reads them.
MAX_PIECES = 1000
# What attributing a run beside an HDF5 checkpoint costs, as bytes read in that time: a 20 KB `.weights.h5` listed
# and two kernels loaded took 10 ms a run, in which a scan reads about 2 MB of events (180 MB/s on one core).
H5_WORK_BYTES = 2 << 20


@dataclass(frozen=True)
class RunPart:
    """A run's part of the report, and what another reporter needs to take it as its own (`Reporter.adopt`):
    `made` is `(checkpoint state, the run's report before warnings, the checkpoint's warnings)`, None for a part
    that only shows the last one again with a warning (see `_as_before`), which is not worth keeping."""

    published: RunReport
    made: tuple[tuple, RunReport, list[ReportWarning]] | None


class Reporter:
    """Builds the report of an index, redoing a run's part only when that run has read new values or its checkpoint
    changed. Checkpoints are found in the directories as the index's last reload walked them.

    `checkpoints`: none to find each run's own, one for every run, or several, each run taking the one nearest it.
    """

    def __init__(self, index: LogdirIndex, checkpoints: list[str] | None = None) -> None:
        self.index = index
        self.checkpoints = list(checkpoints or [])
        # path -> (its modification time when read, what reading gave): one entry per path, the current one, so a
        # job that re-saves its checkpoint every epoch does not pile up old ones and their open files.
        self._read: dict[str, tuple[float | None, Checkpoint | CheckpointError]] = {}
        # run -> (cache key, its report, its checkpoint's warnings, the part published: report and all warnings)
        self._runs: dict[str, tuple[tuple, RunReport, list[ReportWarning], RunReport]] = {}
        self._states: dict[tuple, str | None] = {}  # what each unchanged `checkpoint` state file named
        self._directories = WalkedDirectories({}, self._states)  # the index's tree, as of this pass
        self._stamps: dict[str, float | None] = {}  # checkpoint path -> modification time, as of this pass
        self._pass_tree: object = None  # the walk this pass answers from
        self._last: Report | None = None
        self._last_version = -1  # the index's version the last report was made of

    def report(self) -> Report:
        """The whole document for what the index has read so far: the very same object as last time when nothing
        in it changed, so a presenter can keep what it made of it (serialised bytes, an ETag)."""
        if self._last is not None and self.index.version == self._last_version and self._checkpoints_unchanged():
            # Nothing read, nothing walked differently, no checkpoint touched: one stat per file consulted.
            return self._last
        self._last_version = self.index.version
        self._new_pass()
        runs = [self._run_report(run) for _, run in sorted(self.index.runs.items())]
        self._forget_unused_checkpoints()
        # Directories that could not be listed, entries passed over, and runs gone since they were read.
        warnings = self.index.warnings()
        last = self._last
        if (
            last is not None
            and last["warnings"] == warnings
            and len(last["runs"]) == len(runs)
            and all(a is b for a, b in zip(last["runs"], runs, strict=True))
        ):
            return last
        self._last = document(self.index.logdir, warnings, runs)
        return self._last

    def part(self, run: RunIndex) -> RunPart:
        """`run`'s part of the report, as `report()` would give it, without keeping it: for a one-off scan that
        reads a run, reports it and forgets it. Runs of one walk share one pass (a checkpoint is stamped once)."""
        self._walk_pass()
        published = self._run_report(run)
        made = self._runs.pop(run.name, None)
        if made is None or made[3] is not published:  # the last part shown again, with a warning
            return RunPart(published, None)
        key, report, extra, _ = made
        return RunPart(published, (key[2], report, extra))

    def adopt(self, run: RunIndex, part: RunPart) -> None:
        """Keeps `part`, made by another process's reporter from the same values of `run`, as if made here: the
        next report uses it unless the checkpoint it was made with is no longer the one this reporter finds."""
        if part.made is not None:
            stamp, report, extra = part.made
            self._runs[run.name] = ((run.generation, len(run.files), stamp), report, extra, part.published)

    def release(self, path: str) -> None:
        """Closes and forgets the checkpoint at `path`, which no run still to be reported uses."""
        _, found = self._read.pop(path, (None, None))
        if isinstance(found, Checkpoint):
            found.close()

    def _walk_pass(self) -> None:
        """Starts a pass unless the one under way answers from the index's last walk."""
        if self._pass_tree is not self.index.tree:
            self._new_pass()

    def _new_pass(self) -> None:
        # Discovery answers from the walk the index made, and each checkpoint is stamped once per pass.
        self._directories = WalkedDirectories(self.index.tree, self._states)
        self._pass_tree = self.index.tree
        self._stamps = {}

    def _checkpoints_unchanged(self) -> bool:
        """Whether every file the last pass weighed for checkpoints (state files, candidates, the checkpoints
        read) still has the modification time it had: a checkpoint re-saved under its old name changes nothing
        the walk sees."""
        return all(mtime(path) == when for path, when in self._directories.mtimes()) and all(
            _mtime(path) == when for path, when in self._stamps.items()
        )

    def checkpoint_path(self, run: RunIndex) -> str | None:
        """The checkpoint that names `run`'s variables, if any."""
        self._walk_pass()
        if not self.checkpoints:
            return find_checkpoint(run.path, self.index.run_roots.get(run.name, self.index.logdir), self._directories)
        return max(self.checkpoints, key=lambda p: _shared_depth(p, run.path))  # max keeps the first of equals

    def close(self) -> None:
        """Closes every checkpoint held open (h5 files: in the worker process, or here for `memory://` ones), for a
        process about to exit: an h5py file left open over a Python file object crashes the interpreter's final
        teardown. The report can be built again after, reading checkpoints anew."""
        for _, found in self._read.values():
            if isinstance(found, Checkpoint):
                found.close()
        self._read.clear()
        self._runs.clear()

    def _forget_unused_checkpoints(self) -> None:
        """Closes and drops the checkpoints no run took in the pass just made (a run deleted, a file renamed)."""
        self._runs = {name: cached for name, cached in self._runs.items() if name in self.index.runs}
        used = {key[-1][0] for key, *_ in self._runs.values() if key[-1][0] is not None}
        for path in [p for p in self._read if p not in used]:
            _, found = self._read.pop(path)
            if isinstance(found, Checkpoint):
                found.close()

    def _stamp(self, path: str) -> tuple[str, float | None]:
        """The checkpoint at `path` as a run's part depends on it: its path and modification time, taken once a
        pass."""
        if path not in self._stamps:
            self._stamps[path] = _mtime(path)
        return (path, self._stamps[path])

    def _checkpoint(self, stamp: tuple[str, float | None]) -> tuple[Checkpoint | None, list[ReportWarning]]:
        """The checkpoint of `stamp`, read unless it was read at that modification time, or the warning saying why
        it could not be."""
        path = stamp[0]
        cached = self._read.get(path)
        if cached is None or cached[0] != stamp[1]:
            if cached is not None and isinstance(cached[1], Checkpoint):
                cached[1].close()
            try:
                found: Checkpoint | CheckpointError = read_checkpoint(path)
            # read_checkpoint and its variables' loads raise nothing else: it turns what a reader did not foresee
            # into a CheckpointError naming the file, so one damaged checkpoint is a warning, never a crash.
            except CheckpointError as error:
                found = error
            self._read[path] = (stamp[1], found)
        else:
            found = cached[1]
        if isinstance(found, CheckpointError):
            return None, [_checkpoint_warning(path, found)]
        return found, []

    def _run_report(self, run: RunIndex) -> RunReport:
        path = self.checkpoint_path(run)
        stamp: tuple
        if path is None:
            # No checkpoint, but perhaps a model in a format not read: say so, rather than only "none found".
            unread = unread_models(run.path, self._directories)
            stamp, extra = (None, *unread), [_unread_model_warning(file, kind) for file, kind in unread]
        else:
            # Only the stamp, for now: a part made with it (here, or adopted from a reader) needs no checkpoint.
            stamp, extra = self._stamp(path), []
        key = (run.generation, len(run.files), stamp)
        cached = self._runs.get(run.name)
        if cached is not None and cached[0] == key:
            report, extra, published = cached[1], cached[2], cached[3]
            # Damage and torn tails can change without new values arriving, so warnings are always fresh.
            warnings = [*run.warnings(), *extra]
            if warnings == published["warnings"]:
                return published
        else:
            checkpoint = None
            if path is not None:
                checkpoint, extra = self._checkpoint(stamp)
            try:
                try:
                    report = build_run_report(run, checkpoint)
                except CheckpointError as error:
                    # The index read but a variable's data did not: report the run as if it had no checkpoint.
                    report = build_run_report(run, None)
                    extra = [_checkpoint_warning(checkpoint.path if checkpoint else "", error)]
            except (BadValue, NoRecord, *filesystem.READ_ERRORS) as error:
                # An event file changed between the reload and this report: the next reload reads it again, and
                # until then the run shows what it showed before. Nothing is cached, so the next pass retries.
                message = f"values could not be read back ({error}); the run is reported again after the next reload"
                return _as_before(run, cached, message)
            except Exception as error:
                if not self.index.contain_errors:
                    raise
                # As the index does in TensorBoard: one run's failure is its warning, the other runs go on.
                logger.exception("VarScope: reporting run %s failed", run.name)
                message = f"could not be reported ({error.__class__.__name__}: {error}); tried again at the next pass"
                return _as_before(run, cached, message)
            warnings = [*run.warnings(), *extra]
        published = {**report, "warnings": warnings}
        self._runs[run.name] = (key, report, extra, published)
        return published


def document(
    logdir: str, warnings: list[ReportWarning], runs: list[RunReport], counts: list[tuple[int, int, int]] | None = None
) -> Report:
    """The report of `runs` (parts in the report's order) and the logdir's own `warnings`. `counts`: each run's
    `run_counts`, where the parts are held elsewhere (serialised) and `runs` is left empty."""
    counts = [run_counts(run) for run in runs] if counts is None else counts
    return {
        "schema": SCHEMA,
        "logdir": logdir,
        "warnings": warnings,
        "summary": {
            "runs": len(counts),
            "histogram_tags": sum(tags for tags, _, _ in counts),
            "collisions": sum(collisions for _, collisions, _ in counts),
            "warnings": len(warnings) + sum(run_warnings for _, _, run_warnings in counts),
        },
        "runs": runs,
    }


def run_counts(part: RunReport) -> tuple[int, int, int]:
    """What a run's part adds to the summary: (histogram tags, collisions, warnings)."""
    return part["histogram_tags"], len(part["collisions"]), len(part["warnings"])


def _as_before(run: RunIndex, cached: tuple | None, message: str) -> RunReport:
    """The run's part as last published (or as nothing read yet), with a warning saying why it is not new."""
    before = cached[3] if cached is not None else _unread(run)
    return {**before, "warnings": [*run.warnings(), {"file": run.path, "offset": 0, "message": message}]}


def _unread(run: RunIndex) -> RunReport:
    """A run's part before anything of it could be reported."""
    return {
        "run": run.name,
        "event_files": len(run.files),
        "histogram_tags": len(run.histogram_tags()),
        "checkpoint": None,
        "warnings": [],
        "collisions": [],
        "groups": [],
    }


def _unread_model_warning(path: str, kind: str) -> ReportWarning:
    return {
        "file": path,
        "offset": 0,
        "message": f"{kind} model file: a format tb-varscope does not read, so no checkpoint names this run's lanes; "
        "save a state_dict (torch.save), a .safetensors file or a TF/Keras checkpoint beside the run, or name one "
        "with --checkpoint",
    }


def _checkpoint_warning(path: str, error: CheckpointError) -> ReportWarning:
    return {"file": path, "offset": 0, "message": f"checkpoint not read: {error}"}


def _shared_depth(path: str, directory: str) -> int:
    """How many leading directories a checkpoint path shares with a run directory."""
    a = _comparable(posixpath.dirname(path.rstrip("/"))).split("/")
    b = _comparable(directory.rstrip("/")).split("/")
    depth = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        depth += 1
    return depth


def _comparable(path: str) -> str:
    # A relative logdir and absolute checkpoint paths (or the reverse) name the same places only once both are
    # absolute and free of `.`/`..`; a URL (gs://, s3://) has no working directory and is compared as written.
    return path if "://" in path else os.path.abspath(path)


def _mtime(path: str) -> float | None:
    # A TF checkpoint is named by its prefix; its `.index` file changes with every save.
    stamps = [mtime(path), mtime(path + ".index")]
    return max((t for t in stamps if t is not None), default=None)


def build_run_report(run: RunIndex, checkpoint: Checkpoint | None = None) -> RunReport:
    """One run's part of the report, its lanes and groups attributed from `checkpoint` when there is one."""
    values: dict[str, np.ndarray] = {}  # variables loaded once, shared by attribution and grouping
    found = find_collisions(run)
    matches = [_attribute(run, f, checkpoint, values) for f in found]
    matches = share_sibling_lanes(run, found, matches)
    collisions: list[Collision] = [collision_entry(f, m) for f, m in zip(found, matches, strict=True)]
    return {
        "run": run.name,
        "event_files": len(run.files),
        "histogram_tags": len(run.histogram_tags()),
        "checkpoint": None
        if checkpoint is None
        else {
            "path": checkpoint.path,
            "format": checkpoint.format,  # type: ignore[typeddict-item]  # each reader names one of the formats
            "variables": sum(1 for v in checkpoint.variables if not v.slot),
        },
        "warnings": run.warnings(),
        "collisions": collisions,
        "groups": group_tags(run, collisions, checkpoint, values),
    }


def _attribute(
    run: RunIndex, found: FoundCollision, checkpoint: Checkpoint | None, values: dict[str, np.ndarray]
) -> list[LaneMatch]:
    if found.kind != SAME_STEP:
        return []
    if found.restarts:
        steps = (found.first_step, found.last_step)
        return attribute_restart(run, found.tag, found.writers, found.restarts, steps, checkpoint, values)
    return attribute_lanes(run, found.tag, found.writers, checkpoint, values)


def scan(
    logdir: str,
    checkpoints: list[str] | None = None,
    *,
    run_filter: re.Pattern | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Reads every run under `logdir` and returns the report document (see the contract).

    `run_filter` keeps only runs whose name it matches; `progress` is told each run's name before it is read.
    Work is shared by one process per core this process may run on (see `scan_parts`).
    """
    report, parts = scan_parts(logdir, checkpoints, run_filter=run_filter, progress=progress)
    report["runs"] = [json.loads(part) for part, _ in parts]
    return report


def scan_json(
    logdir: str,
    checkpoints: list[str] | None = None,
    *,
    run_filter: re.Pattern | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[str], Report]:
    """`json.dumps(scan(...))` in pieces to write in turn, made without ever holding the whole document as objects
    (each run's part arrives serialised from the process that read it), and the report without its runs."""
    report, parts = scan_parts(logdir, checkpoints, run_filter=run_filter, progress=progress)
    opening = json.dumps(report)[: -len("[]}")] + "["
    pieces = [opening]
    for i, (part, _) in enumerate(parts):
        pieces += [", ", part] if i else [part]
    pieces.append("]}")
    return pieces, report


def scan_parts(
    logdir: str,
    checkpoints: list[str] | None = None,
    *,
    run_filter: re.Pattern | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[Report, list[tuple[str, tuple[int, int, int]]]]:
    """The report with its `runs` left empty, and each run's part serialised, in the report's order, with its
    counts (histogram tags, collisions, warnings).

    Runs are read and reported one at a time, each forgotten once its part is serialised, so memory holds one run
    at a time however large the logdir. Where the runs share out evenly among the usable cores (and forking is
    safe and pays, as for `read_files`), each process reads and reports its own share; otherwise one process
    reports them in turn, reading each run's files with every core.
    """
    index = LogdirIndex(logdir, run_filter)
    runs = sorted(index.discover(progress), key=lambda run: run.name)
    count = processes()
    forkable = hasattr(os, "fork") and threading.active_count() == 1 and all(is_local(run.path) for run in runs)
    work: Callable[[RunIndex], int] = index.unread_bytes
    if forkable and sum(map(work, runs)) < FORK_MIN_BYTES:
        work = with_checkpoints(index, runs, checkpoints)  # little to read: is there much to attribute?
    groups = shares(work, runs, count) if forkable else [runs]
    try:
        if len(groups) < 2:
            parts = _report_share(index, runs, checkpoints, count)
        else:
            pieces = groups if len(runs) <= EVENED_RUNS else chunks(work, runs, len(groups))
            parts = _report_forked(index, pieces, len(groups), checkpoints)
    finally:
        # The HDF5 worker ends with the scan, not a minute later: `scan()` called from a program leaves it no
        # child process. (Forked children's workers end as their children exit.)
        isolated.stop()
    warnings = index.warnings()  # directories that could not be listed, entries passed over
    report = document(index.logdir, warnings, [], [counts for _, _, counts in parts])
    return report, [(part, counts) for _, part, counts in parts]


def _report_forked(
    index: LogdirIndex, pieces: list[list[RunIndex]], count: int, checkpoints: list[str] | None
) -> list[tuple[str, str, tuple[int, int, int]]]:
    """`_report_share` of every piece of runs, by `count` forked children, sorted by run name. Each child takes the
    next piece not taken yet (a number read from one pipe they all read) as soon as it is done with its last, so
    one that runs slower (a core shared with another machine) takes fewer pieces and none waits for it long.

    This process only gathers: it holds no values of its own, so the largest process of the scan is the largest
    piece's, not the whole document's plus a piece. A piece that no child answered for (one failed, or was stuck
    and stopped) is done here."""
    tickets, issue = os.pipe()
    try:
        with os.fdopen(issue, "wb") as out:  # at most MAX_PIECES numbers: they fit any pipe's buffer (a page)
            out.write(b"".join(i.to_bytes(4, "little") for i in range(len(pieces))))
        children = [forked(functools.partial(_take_pieces, index, pieces, tickets, checkpoints)) for _ in range(count)]
    finally:
        os.close(tickets)
    done: dict[int, list[tuple[str, str, tuple[int, int, int]]]] = {}
    for found in receive_all(children, CHILD_SHARE_SECONDS):
        done.update(found or {})
    parts = []
    for i, piece in enumerate(pieces):
        parts += done[i] if i in done else _report_share(index, piece, checkpoints, 1)
    return sorted(parts, key=lambda part: part[0])


def _take_pieces(
    index: LogdirIndex, pieces: list[list[RunIndex]], tickets: int, checkpoints: list[str] | None
) -> dict[int, list[tuple[str, str, tuple[int, int, int]]]]:
    """A forked child's work: the pieces whose numbers it reads from `tickets` until none is left, each reported."""
    done = {}
    while number := os.read(tickets, 4):  # 4 bytes or none: every number was written before any child read
        i = int.from_bytes(number, "little")
        done[i] = _report_share(index, pieces[i], checkpoints, 1)
    return done


def with_checkpoints(
    index: LogdirIndex, runs: list[RunIndex], checkpoints: list[str] | None
) -> Callable[[RunIndex], int]:
    """`index.unread_bytes`, plus H5_WORK_BYTES for each run whose checkpoint is an HDF5 file: a logdir of small
    Keras runs, each beside its `.weights.h5`, holds few bytes of events but is mostly checkpoint work, which
    processes share out as they do reading (each with its own HDF5 worker, see checkpoints/isolated.py). Where the
    walk (or `checkpoints`) holds no HDF5 file at all, no run's checkpoint is looked for."""
    names = checkpoints or (name for listing in index.tree.values() for name in listing.names)
    if not any(name.endswith(KERAS_SUFFIXES) for name in names):
        return index.unread_bytes
    reporter = Reporter(index, checkpoints)
    heavy = {run.name for run in runs if (reporter.checkpoint_path(run) or "").endswith(KERAS_SUFFIXES)}
    return lambda run: index.unread_bytes(run) + (H5_WORK_BYTES if run.name in heavy else 0)


def chunks(work: Callable[[RunIndex], int], runs: list[RunIndex], count: int) -> list[list[RunIndex]]:
    """`runs` cut, in order, into pieces for `count` processes to take in turn, each half an even share of what is
    left to read as it starts (at least CHUNK_MIN_BYTES, and a MAX_PIECES-th of all): the first pieces keep every
    process busy a while, the last are small enough that the processes end close together. About 2 x `count` x
    log(runs) pieces; runs next to each other by name (those that share a checkpoint, mostly) are in one piece,
    reported by one reporter. `work`: how much there is to do for a run, in bytes read."""
    sizes = list(map(work, runs))
    left = sum(sizes)
    least = max(CHUNK_MIN_BYTES, left // MAX_PIECES)  # so every piece but the last holds at least this much
    pieces: list[list[RunIndex]] = []
    piece: list[RunIndex] = []
    held = 0
    for run, size in zip(runs, sizes, strict=True):
        piece.append(run)
        held += size
        if held >= max(least, left // (2 * count)):
            pieces.append(piece)
            left -= held
            piece, held = [], 0
    return pieces + [piece] if piece else pieces


def shares(work: Callable[[RunIndex], int], runs: list[RunIndex], count: int) -> list[list[RunIndex]]:
    """`runs` shared out among `count` processes by bytes to read, largest first to the least loaded; a single
    share where another process would not pay, or where the runs do not share out evenly (one run holding most of
    the bytes is better read by every process at once, file by file)."""
    sizes = {run.name: work(run) for run in runs}
    total = sum(sizes.values())
    if count < 2 or len(runs) < 2 or total < FORK_MIN_BYTES:
        return [runs]
    groups: list[list[RunIndex]] = [[] for _ in range(min(count, len(runs)))]
    loads = [0] * len(groups)
    for run in sorted(runs, key=lambda run: -sizes[run.name]):
        least = loads.index(min(loads))
        groups[least].append(run)
        loads[least] += sizes[run.name]
    if len(runs) <= EVENED_RUNS:
        _even_out(groups, loads, sizes)
    if max(loads) > UNEVEN * total / len(groups):
        return [runs]
    return groups


def _even_out(groups: list[list[RunIndex]], loads: list[int], sizes: dict[str, int]) -> None:
    """Moves a run, or swaps two, between the fullest share and the emptiest while that lowers the fuller of the
    two: largest-first alone leaves five runs of 29-35 MB at 93 / 64 MB, where 87 / 70 is possible."""
    for _ in range(sum(map(len, groups))):
        full, empty = loads.index(max(loads)), loads.index(min(loads))
        gap = loads[full] - loads[empty]
        best: tuple[int, int, int] | None = None  # (the pair's fuller load after, run from full, run from empty)
        for i, a in enumerate(groups[full]):
            for j, b in enumerate([None, *groups[empty]]):
                moved = sizes[a.name] - (sizes[b.name] if b is not None else 0)
                after = max(loads[full] - moved, loads[empty] + moved)
                if 0 < moved < gap and (best is None or after < best[0]):
                    best = (after, i, j)
        if best is None:
            return
        _, i, j = best
        a = groups[full].pop(i)
        groups[empty].append(a)
        moved = sizes[a.name]
        if j:
            b = groups[empty].pop(j - 1)
            groups[full].append(b)
            moved -= sizes[b.name]
        loads[full] -= moved
        loads[empty] += moved


def _read_ahead(index: LogdirIndex, runs: list[RunIndex], start: int, count: int) -> int:
    """Reads `runs[start]` and the runs after it while they add up to less than BATCH_BYTES (small files' work is
    done a batch at a time, see `reload_files`), or, for `count` processes, to less than READ_AHEAD_BYTES: they
    need files enough to share out, and runs of single files too small to cut would each be read by one.
    Returns where the runs read end."""
    limit = BATCH_BYTES if count < 2 else READ_AHEAD_BYTES
    end, held = start + 1, index.unread_bytes(runs[start])
    while end < len(runs) and held < limit:
        held += index.unread_bytes(runs[end])
        end += 1
    index.read_runs(runs[start:end], count)
    return end


def report_runs(
    index: LogdirIndex,
    runs: list[RunIndex],
    checkpoints: list[str] | None,
    count: int,
    read: Callable[[list[RunIndex]], None] | None = None,
) -> Iterator[tuple[RunIndex, RunPart]]:
    """Each of `runs` with its part, read (by up to `count` processes; small runs a few megabytes at a time) and
    reported in turn; once the caller has taken what it wants of a run, its values are forgotten (what the part
    says of them is all that is kept) and a checkpoint is closed once no run left to report uses it. `read` is
    told of the runs of each read before any of them is reported."""
    reporter = Reporter(index, checkpoints)
    try:
        paths = [reporter.checkpoint_path(run) for run in runs]
        uses = Counter(paths)
        unread = 0  # the first run not read yet
        for i, (run, path) in enumerate(zip(runs, paths, strict=True)):
            if i == unread:
                unread = _read_ahead(index, runs, i, count)
                if read is not None:
                    read(runs[i:unread])
            yield run, reporter.part(run)
            run.files = []
            uses[path] -= 1
            if path is not None and not uses[path]:
                reporter.release(path)
    finally:
        reporter.close()


def _report_share(
    index: LogdirIndex, runs: list[RunIndex], checkpoints: list[str] | None, count: int
) -> list[tuple[str, str, tuple[int, int, int]]]:
    """`(run name, its part serialised, (histogram tags, collisions, warnings))` for each of `runs` (see
    `report_runs`)."""
    return [
        (run.name, json.dumps(part.published), run_counts(part.published))
        for run, part in report_runs(index, runs, checkpoints, count)
    ]


def read_logdir(
    logdir: str, *, run_filter: re.Pattern | None = None, progress: Callable[[str], None] | None = None
) -> LogdirIndex:
    """The index of every run under `logdir`, read once, by one process per usable core."""
    index = LogdirIndex(logdir, run_filter)
    index.reload(progress, processes=processes())
    return index


def processes() -> int:
    """How many processes a one-off command reads (or writes) with: one per usable core."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
