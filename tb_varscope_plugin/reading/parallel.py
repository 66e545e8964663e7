"""Parallel reading: event files shared out among forked processes, each sending back the state it read."""

from __future__ import annotations

import os
import pickle
import select
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from tb_varscope_plugin import filesystem
from tb_varscope_plugin.filesystem import PositionedReader, is_local
from tb_varscope_plugin.reading.records import record_boundary
from tb_varscope_plugin.reading.run_index import EventFile, reload_files

FORK_MIN_BYTES = 32 << 20  # less to read than this, and a fork costs more than it saves
# A child reads about as many bytes as the parent; one still silent this long after the parent's share is stuck.
CHILD_GRACE_SECONDS = 30.0
CHILD_SLOWDOWN = 10


# A file with less left to read than this is read whole by one process. Cutting one in segments costs a search for
# record boundaries, a fresh index per segment sent back through a pipe and joined: worth it only where one file
# would otherwise keep the other processes waiting for seconds (a 64 MB file reads in about a third of a second).
SEGMENT_MIN_BYTES = 64 << 20

# What one process reads: `(file, start, end)`, a segment of the file's records from `start` up to `end` (None: to
# the end of the file), or `(file, None, None)`: the file's `reload()`.
Unit = tuple[int, int | None, int | None]


def read_files(files: list[EventFile], processes: int) -> list[bool]:
    """`[f.reload() for f in files]` (as `reload_files` does it, small files in batches), the reading shared out
    among `processes` processes forked for the purpose.

    Whole files are shared out, and a large file not read before is cut into segments at record boundaries, read at
    once and joined in file order, when there are fewer such files than processes (see `_units`). Each child reads
    its share and sends back the state it read; the parent reads its own share meanwhile. Forking is done only where
    it is safe and pays: local files, more than one share, and no other thread running (a fork copies locks another
    thread may hold). A child that fails, or is stuck long after the parent finished its own share, leaves its share
    to be read here.
    """
    local = all(is_local(f.path) for f in files)
    if processes < 2 or not files or not local or threading.active_count() > 1 or not hasattr(os, "fork"):
        return reload_files(files)
    unread = [_unread_bytes(f) for f in files]
    if sum(unread) < FORK_MIN_BYTES:
        return reload_files(files)
    units = _units(files, unread, processes)
    if len(units) < 2:
        return reload_files(files)
    # Largest first, each to the least loaded process: a balance of bytes to read.
    shares: list[list[Unit]] = [[] for _ in range(min(processes, len(units)))]
    loads = [0] * len(shares)
    for unit, size in sorted(units.items(), key=lambda item: -item[1]):
        least = loads.index(min(loads))
        shares[least].append(unit)
        loads[least] += size
    children = [(_fork_reader(files, share), share) for share in shares[1:]]
    started = time.monotonic()
    try:
        results = _read_share(files, shares[0])
    except BaseException:
        for (pid, pipe), _ in children:
            os.close(pipe)  # a child still writing gets EPIPE and exits
            os.waitpid(pid, 0)
        raise
    deadline = time.monotonic() + CHILD_GRACE_SECONDS + CHILD_SLOWDOWN * (time.monotonic() - started)
    missing: list[Unit] = []
    for (pid, pipe), share in children:
        states = receive(pid, pipe, deadline)
        if states is None:
            missing += share
            continue
        for (i, start, end), (added, state) in zip(share, states, strict=True):
            read = files[i] if start is None else EventFile(files[i].path)
            read.restore(state)
            results[i, start, end] = (added, read)
    whole = [i for i, start, _ in missing if start is None]
    for i, added in zip(whole, reload_files([files[i] for i in whole]), strict=True):
        results[i, None, None] = (added, files[i])
    return [
        results[i, None, None][0] if (i, None, None) in results else _join(f, units, results, i)
        for i, f in enumerate(files)
    ]


def _units(files: list[EventFile], unread: list[int], processes: int) -> dict[Unit, int]:
    """What each process may be given to read, with how many bytes each holds.

    A file gets a share of the processes as large as its share of the bytes to read; one of at least
    SEGMENT_MIN_BYTES not read before (a file read in part goes on as `reload()` goes on) is cut into that many
    segments at record boundaries. One such file alone is read by every process; many files of similar size are
    read whole, as cutting them would gain nothing.
    """
    total = sum(unread)
    units: dict[Unit, int] = {}
    for i, f in enumerate(files):
        pieces = min(processes, -(-unread[i] * processes // total)) if total else 1
        if pieces > 1 and unread[i] >= SEGMENT_MIN_BYTES and f.reader.offset == 0 and f.reader.damage is None:
            starts = _segment_starts(f.path, unread[i], pieces)
            for start, end in zip(starts, [*starts[1:], None], strict=True):
                units[i, start, end] = (unread[i] if end is None else end) - start
        else:
            units[i, None, None] = unread[i]
    return units


def _segment_starts(path: str, size: int, pieces: int) -> list[int]:
    """Where `pieces` segments of about equal size of a file of `size` bytes start: at 0, and else at the first
    record boundary from each cut (fewer segments where none is found before the next cut)."""
    starts = [0]
    try:
        with PositionedReader(path) as source:
            for k in range(1, pieces):
                found = record_boundary(source, max(size * k // pieces, starts[-1] + 1), size * (k + 1) // pieces, size)
                if found is not None:
                    starts.append(found)
    except filesystem.READ_ERRORS:
        return [0]  # the reading proper will say what is wrong
    return starts


def _read_share(files: list[EventFile], share: list[Unit]) -> dict[Unit, tuple[bool, EventFile]]:
    """Reads each unit of `share`: whole files as `reload_files` does, each segment into an EventFile of its own;
    for each, whether values were added and the EventFile read."""
    whole = [unit for unit in share if unit[1] is None]
    results = {
        unit: (added, files[unit[0]])
        for unit, added in zip(whole, reload_files([files[i] for i, _, _ in whole]), strict=True)
    }
    for unit in share:
        i, start, end = unit
        if start is not None:
            segment = EventFile(files[i].path)
            results[unit] = (segment.read_range(start, end, alone=True), segment)
    return results


def _join(f: EventFile, units: dict[Unit, int], results: dict[Unit, tuple[bool, EventFile]], i: int) -> bool:
    """Joins the segments read of `f` (file `i`) in file order into `f`: the state `f.reload()` leaves.

    A segment is taken in only where the one before it ended exactly where it starts: then its start is a record
    boundary for certain, and reading it on its own met what reading on from there meets. Where the one before
    ended elsewhere (the boundary found was none), the rest of the file is read here from where it did end; where
    a segment is missing (its process failed) or sorted a tag otherwise than what precedes it said (see
    `EventFile.plugins_agree`), that segment is read here; nothing is taken past damage.
    """
    added = False
    for _, start, end in sorted((unit for unit in units if unit[0] == i), key=lambda unit: unit[1] or 0):
        assert start is not None
        if f.error is not None or f.reader.damage is not None:
            break
        if f.reader.offset != start:
            return f.read_range(f.reader.offset, None) or added
        result = results.get((i, start, end))
        if result is None or result[1].error is not None or not f.plugins_agree(result[1]):
            added = f.read_range(start, end) or added
        else:
            f.extend(result[1])
            added = result[0] or added
    return added


def _unread_bytes(f: EventFile) -> int:
    try:
        return max(0, filesystem.file_length(f.path) - f.reader.offset)
    except filesystem.READ_ERRORS:
        return 0  # gone: its reload will say so


def receive(pid: int, pipe: int, deadline: float) -> Any:
    """What a forked child pickled into `pipe`, or None if it failed, died before it had said everything, or was
    still silent at `deadline` (then it is killed). The child is reaped either way."""
    return receive_all([(pid, pipe)], deadline - time.monotonic())[0]


def receive_all(children: list[tuple[int, int]], timeout: float) -> list[Any]:
    """What each of `children` (`(pid, pipe)` from `forked`) pickled, listening to all at once, None for each that
    failed or was stuck. Children given equal work finish close together: one still silent long after the first
    answered (see CHILD_GRACE_SECONDS), or `timeout` seconds after the start, is killed. All are reaped, whatever
    happens here (an error, Ctrl-C)."""
    started = time.monotonic()
    deadline = started + timeout
    chunks: dict[int, list[bytes]] = {pipe: [] for _, pipe in children}
    pids = {pipe: pid for pid, pipe in children}
    found: dict[int, Any] = {}
    try:
        while len(found) < len(children):
            waiting = [pipe for pipe in chunks if pipe not in found]
            ready, _, _ = select.select(waiting, [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            for pipe in ready:
                chunk = os.read(pipe, 1 << 20)
                if chunk:
                    chunks[pipe].append(chunk)
                    continue
                os.close(pipe)
                _, status = os.waitpid(pids[pipe], 0)
                found[pipe] = _unpickled(status, chunks.pop(pipe))
                if len(found) == 1:
                    now = time.monotonic()
                    deadline = min(deadline, now + CHILD_GRACE_SECONDS + CHILD_SLOWDOWN * (now - started))
    finally:
        for pipe in [pipe for pipe in chunks if pipe not in found]:
            os.close(pipe)
            os.kill(pids[pipe], signal.SIGKILL)
            os.waitpid(pids[pipe], 0)
    return [found.get(pipe) for _, pipe in children]


def _unpickled(status: int, chunks: list[bytes]) -> Any:
    if status != 0:
        return None
    try:
        return pickle.loads(b"".join(chunks))  # our own child's state, not bytes from a file
    except (pickle.UnpicklingError, EOFError):
        return None


def _fork_reader(files: list[EventFile], share: list[Unit]) -> tuple[int, int]:
    """Forks a process that reads `share` of `files` and writes `[(added, snapshot), ...]` to the pipe returned."""

    def work() -> list[tuple[bool, tuple]]:
        results = _read_share(files, share)
        return [(added, read.snapshot()) for added, read in (results[unit] for unit in share)]

    return forked(work)


def forked(work: Callable[[], Any]) -> tuple[int, int]:
    """Forks a process that runs `work()` and pickles what it returns into a pipe: `(pid, pipe)`, for `receive`.
    A child that fails writes nothing, which `receive` reads as a failure."""
    source, sink = os.pipe()
    pid = os.fork()
    if pid:
        os.close(sink)
        return pid, source
    try:
        os.close(source)
        result = work()
        with os.fdopen(sink, "wb") as out:
            out.write(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        os._exit(0)  # no cleanup of the parent's copies (buffers, atexit) in the child
