"""The tab's first pass over a large local logdir, read and reported by processes spawned for it.

TensorBoard's process serves requests from threads, so it must not fork, and its reader thread has one core and
the GIL it shares with them. A first pass over hundreds of megabytes is the one-off scan's work, so it is done the
scan's way: the runs are shared out by bytes, each share goes to a new Python process (`posix_spawn`, which runs
no Python in between, so it is safe beside threads), which reads and reports its runs (forking readers of its own
when one share holds everything) and sends back, run by run, what it read (as soon as it is read) and the run's
part of the report. This process takes both as if it had made them (`LogdirIndex.restore_run`, `Reporter.adopt`),
so later passes go on from there in-process, as for a logdir read here. A process that fails leaves its remaining
runs to be read (or reported) here.
"""

from __future__ import annotations

import copy
import gc
import os
import pickle
import selectors
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import BinaryIO

from tb_varscope_plugin.filesystem import is_local
from tb_varscope_plugin.reading.logdir import LogdirIndex
from tb_varscope_plugin.reading.run_index import RunIndex
from tb_varscope_plugin.report import Reporter, RunPart, processes, report_runs, shares, with_checkpoints

# Less to read than this, and starting the processes (0.3 s before they read) costs what sharing the work saves.
# Measured on 2 cores: 177 MB in 1,000 runs gained nothing; 443 MB in one run 14%, 1.6 GB in five 30%.
SPAWN_MIN_BYTES = 256 << 20
# And no more processes than give each this much to read: each costs its start and about 40 MB while it lives.
SHARE_MIN_BYTES = 64 << 20
# What a spawned process runs: its remote back ends deferred, then `serve` on its standard streams.
ENTRY = "from tb_varscope_plugin.command import read_share; read_share()"
_LENGTH = 8  # each message: its length (little-endian), then its pickle
# What a message holds: a run's files as read, `(READ, name, states, gained)`, or its part, `(PART, name, part)`. A
# run's files come first, as soon as they are read: this process takes them in while that one reports the run.
READ, PART = "read", "part"

Job = tuple[LogdirIndex, list[str], list[str], int]  # (index of the share's runs, their names, checkpoints, processes)


class FirstPass:
    """Spawns the processes of a first pass and gathers what they send; `kill` ends them from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pids: set[int] = set()
        self._killed = False

    def run(self, index: LogdirIndex, reporter: Reporter, on_run: Callable[[RunIndex, RunPart], None]) -> bool:
        """Reads every run of `index` by spawned processes, where that pays, telling `on_run` of each run taken
        in. False (nothing done) where it does not: too little to read, one usable core, a remote logdir."""
        count = processes()
        if count < 2 or not _can_spawn() or not all(is_local(root) for root in index.roots):
            return False
        # Weighed on a walk of its own: a pass not spawned leaves `index` as it was, so the in-process pass finds
        # its runs as it reads them (a partial report must not show runs found but not read yet).
        # HDF5 checkpoints count as the bytes read in the time they take (see `with_checkpoints`).
        probe = LogdirIndex(index.logdir, index.run_filter, index.roots)
        found = probe.discover()
        work = with_checkpoints(probe, found, reporter.checkpoints)
        unread = sum(map(work, found))
        if unread < SPAWN_MIN_BYTES:
            return False
        count = max(2, min(count, unread // SHARE_MIN_BYTES))
        runs = sorted(index.discover(), key=lambda run: run.name)
        groups = shares(work, runs, count)  # the probe weighs these by name and path: the same files, none read
        # One share holding everything (a single large run) is read by its process with every core.
        each = count if len(groups) == 1 else 1
        children = self._spawn(
            [(_share_of(index, group), [r.name for r in group], reporter.checkpoints, each) for group in groups]
        )
        # Taking in what the readers send makes tens of thousands of objects here. In a TensorBoard that imported
        # TensorFlow, that sets off a full collection of its 300,000-400,000 objects (0.2 s), which then falls right
        # on the pass's last step. Run now, while the readers start (0.13 s importing), the same collection mostly
        # overlaps their imports; the collector's settings are left as they are.
        gc.collect()
        restored: set[str] = set()  # runs whose files were taken in: only their parts are
        for message in self._messages(children):
            run = index.runs.get(message[1])
            if message[0] == READ:
                _, name, states, gained = message
                if run is None or len(run.files) != len(states):
                    continue  # cannot happen while only this thread changes the index; read again here if it does
                index.restore_run(run, states, gained)
                restored.add(name)
            else:
                _, name, part = message
                if run is not None and name in restored:
                    reporter.adopt(run, part)
                    on_run(run, part)
        return True

    def kill(self) -> None:
        """Kills the processes of a pass under way (TensorBoard is exiting); none is started after."""
        with self._lock:
            self._killed = True
            for pid in self._pids:
                os.kill(pid, signal.SIGKILL)

    def _spawn(self, jobs: list[Job]) -> dict[int, int]:
        """Starts one process per job, then hands each its job: `{its output pipe: its pid}`. Where a process
        cannot be started, those started are killed and reaped, and the error is raised."""
        started: list[list[int]] = []  # [pid, the write end of its job pipe (-1 once handed over), its output]
        try:
            with self._lock:
                if self._killed:
                    return {}
                for _ in jobs:
                    started.append(list(_start()))
                    self._pids.add(started[-1][0])
            for child, job in zip(started, jobs, strict=True):
                sink = os.fdopen(child[1], "wb")
                child[1] = -1
                try:
                    with sink:
                        pickle.dump(job, sink, protocol=pickle.HIGHEST_PROTOCOL)
                except BrokenPipeError:
                    pass  # it failed before it read its job: its output ends at once, and its runs are read here
        except BaseException:
            for pid, job_write, out_read in started:
                if job_write >= 0:
                    os.close(job_write)
                os.kill(pid, signal.SIGKILL)
                self._reap(out_read, pid)
            raise
        return {out_read: pid for pid, _, out_read in started}

    def _messages(self, children: dict[int, int]) -> Iterator[tuple]:
        """Each message the children send, unpickled, as it arrives from any of them, until every one has ended
        (each is reaped as its output ends). A message cut short by a child's end is dropped."""
        buffers = {pipe: bytearray() for pipe in children}
        listening = selectors.DefaultSelector()  # not select(): TensorBoard may hold descriptors past 1024
        for pipe in children:
            listening.register(pipe, selectors.EVENT_READ)
        try:
            while buffers:
                for key, _ in listening.select():
                    pipe = key.fd
                    chunk = os.read(pipe, 1 << 20)
                    if not chunk:
                        listening.unregister(pipe)
                        del buffers[pipe]
                        self._reap(pipe, children[pipe])
                        continue
                    buffer = buffers[pipe]
                    buffer += chunk
                    while len(buffer) >= _LENGTH:
                        end = _LENGTH + int.from_bytes(buffer[:_LENGTH], "little")
                        if len(buffer) < end:
                            break
                        # Unpickled in place: a large run's message is not copied once more.
                        with memoryview(buffer) as view, view[_LENGTH:end] as body:
                            message = pickle.loads(body)  # our own child's, not bytes from a file
                        del buffer[:end]
                        yield message
        finally:
            listening.close()
            for pipe in buffers:  # left early (an error here): end the rest
                os.kill(children[pipe], signal.SIGKILL)
                self._reap(pipe, children[pipe])

    def _reap(self, pipe: int, pid: int) -> None:
        os.close(pipe)
        with self._lock:
            self._pids.discard(pid)  # before it is reaped: `kill` never signals a pid the system may give anew
        os.waitpid(pid, 0)


def serve(source: BinaryIO, sink: BinaryIO) -> None:
    """A spawned process's work: reads its job from `source`, then writes to `sink` what it read of each run's
    files as soon as they are read, and each run's part once reported, and forgets the run."""
    index, names, checkpoints, count = pickle.load(source)  # from the process that spawned this one
    runs = [index.runs[name] for name in names]
    generations = {run.name: run.generation for run in runs}

    def send(message: tuple) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        sink.write(len(data).to_bytes(_LENGTH, "little") + data)
        sink.flush()

    def read(batch: list[RunIndex]) -> None:
        for run in batch:
            send((READ, run.name, [f.snapshot() for f in run.files], run.generation != generations[run.name]))

    try:
        for run, part in report_runs(index, runs, checkpoints, count, read):
            send((PART, run.name, part))
    except BrokenPipeError:
        return  # TensorBoard has gone: nobody is left to tell


def _start() -> tuple[int, int, int]:
    """Spawns one reader: `(its pid, the write end of its job pipe, the read end of its output)`."""
    job_read, job_write = os.pipe()
    try:
        out_read, out_write = os.pipe()
    except BaseException:
        os.close(job_read)
        os.close(job_write)
        raise
    try:
        actions = [(os.POSIX_SPAWN_DUP2, job_read, 0), (os.POSIX_SPAWN_DUP2, out_write, 1)]
        pid = os.posix_spawn(sys.executable, [sys.executable, "-c", ENTRY], os.environ, file_actions=actions)
    except BaseException:
        os.close(job_write)
        os.close(out_read)
        raise
    finally:
        os.close(job_read)
        os.close(out_write)
    return pid, job_write, out_read


def _share_of(index: LogdirIndex, runs: list[RunIndex]) -> LogdirIndex:
    """`index` as pickled for the process reading `runs`: its walk whole (checkpoints are found from it), and of
    its runs only those."""
    share = copy.copy(index)
    share.runs = {run.name: run for run in runs}
    return share


def _can_spawn() -> bool:
    return hasattr(os, "posix_spawn") and bool(sys.executable) and os.path.isfile(sys.executable)
