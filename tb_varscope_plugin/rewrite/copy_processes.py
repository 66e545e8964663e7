"""Copying event files in two processes: a forked child copies its share of the files while the parent copies the rest.

Only for the CLI (the plugin never splits), and only where it is safe and pays, as for reading (`reading/parallel.py`).
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time

from tb_varscope_plugin.filesystem import is_local
from tb_varscope_plugin.reading.parallel import FORK_MIN_BYTES, receive
from tb_varscope_plugin.rewrite.event_copy import SourceError, copy_event_file
from tb_varscope_plugin.rewrite.plan import FilePlan
from tb_varscope_plugin.schema import ReportWarning

# A child copies about as many bytes as the parent; one still silent this long after the parent's share is stuck.
CHILD_GRACE_SECONDS = 30.0
CHILD_SLOWDOWN = 10

Copied = tuple[int, ReportWarning | None]  # bytes written, and why the file was copied only in part


def copy_files(jobs: list[tuple[FilePlan, str]], processes: int) -> list[Copied]:
    """`copy_event_file(plan, target)` for every job, shared out among `processes` processes.

    Forks only for local files, more than one of them and enough bytes, with no other thread running (a fork copies
    locks another thread may hold). A child that fails or is stuck leaves its share to be copied here, which then
    raises what the child met, if it was no damage of LOGDIR's.
    """
    sizes = [plan.file.readable_end() for plan, _ in jobs]
    local = all(is_local(plan.file.path) and is_local(target) for plan, target in jobs)
    if processes < 2 or len(jobs) < 2 or not local or threading.active_count() > 1 or not hasattr(os, "fork"):
        return [_copy(job) for job in jobs]
    if sum(sizes) < FORK_MIN_BYTES:
        return [_copy(job) for job in jobs]
    # Largest first, each to the less loaded process.
    shares: list[list[int]] = [[], []]
    loads = [0, 0]
    for i in sorted(range(len(jobs)), key=lambda i: -sizes[i]):
        least = loads.index(min(loads))
        shares[least].append(i)
        loads[least] += sizes[i]
    pid, pipe = _fork_copier(jobs, shares[1])
    started = time.monotonic()
    try:
        done = {i: _copy(jobs[i]) for i in shares[0]}
    except BaseException:
        os.close(pipe)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    deadline = time.monotonic() + CHILD_GRACE_SECONDS + CHILD_SLOWDOWN * (time.monotonic() - started)
    theirs = receive(pid, pipe, deadline)
    for i in shares[1]:
        done[i] = _copy(jobs[i]) if theirs is None else theirs.pop(0)
    return [done[i] for i in range(len(jobs))]


def _copy(job: tuple[FilePlan, str]) -> Copied:
    plan, target = job
    try:
        return copy_event_file(plan, target), None
    except SourceError as error:
        return 0, {"file": plan.file.path, "offset": error.offset, "message": str(error)}


def _fork_copier(jobs: list[tuple[FilePlan, str]], share: list[int]) -> tuple[int, int]:
    """Forks a process that copies `share` of `jobs` and writes `[Copied, ...]` to the pipe returned."""
    source, sink = os.pipe()
    pid = os.fork()
    if pid:
        os.close(sink)
        return pid, source
    status = 1
    try:
        os.close(source)
        copied = [_copy(jobs[i]) for i in share]
        with os.fdopen(sink, "wb") as out:
            out.write(pickle.dumps(copied, protocol=pickle.HIGHEST_PROTOCOL))
        status = 0
    finally:
        os._exit(status)  # no cleanup of the parent's copies (buffers, atexit) in the child
