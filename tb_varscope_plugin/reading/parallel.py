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

from tensorboard.compat.tensorflow_stub.io import gfile

from tb_varscope_plugin.filesystem import READ_ERRORS, is_local
from tb_varscope_plugin.reading.run_index import EventFile

FORK_MIN_BYTES = 32 << 20  # less to read than this, and a fork costs more than it saves
# A child reads about as many bytes as the parent; one still silent this long after the parent's share is stuck.
CHILD_GRACE_SECONDS = 30.0
CHILD_SLOWDOWN = 10


def read_files(files: list[EventFile], processes: int) -> list[bool]:
    """`[f.reload() for f in files]`, the files shared out among `processes` processes forked for the purpose.

    Each child reads its share and sends back the files' state; the parent reads its own share meanwhile. Forking
    is done only where it is safe and pays: local files, more than one of them, and no other thread running (a
    fork copies locks another thread may hold). A child that fails, or is stuck long after the parent finished its
    own share, leaves its share to be read here.
    """
    local = all(is_local(f.path) for f in files)
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
        states = receive(pid, pipe, deadline)
        for i in share:
            if states is None:
                added[i] = files[i].reload()
            else:
                added[i], state = states.pop(0)
                files[i].restore(state)
    return [added[i] for i in range(len(files))]


def _unread_bytes(f: EventFile) -> int:
    try:
        return max(0, gfile.stat(f.path).length - f.reader.offset)
    except READ_ERRORS:
        return 0  # gone: its reload will say so


def receive(pid: int, pipe: int, deadline: float) -> Any:
    """What a forked child pickled into `pipe`, or None if it failed, died before it had said everything, or was
    still silent at `deadline` (then it is killed). The child is reaped either way."""
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
        _, status = os.waitpid(pid, 0)
    if status != 0:
        return None
    try:
        return pickle.loads(b"".join(chunks))  # our own child's state, not bytes from a file
    except (pickle.UnpicklingError, EOFError):
        return None


def _fork_reader(files: list[EventFile], share: list[int]) -> tuple[int, int]:
    """Forks a process that reads `share` of `files` and writes `[(added, snapshot), ...]` to the pipe returned."""
    return forked(lambda: [(files[i].reload(), files[i].snapshot()) for i in share])


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
