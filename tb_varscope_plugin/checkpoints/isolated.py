"""HDF5 checkpoints read by a worker process, never by this one.

libhdf5, under h5py, loops forever on some damaged files (a global heap object of size 0: reading an attribute
never returns) and may crash on others, in C code that Python cannot interrupt. In TensorBoard that would freeze
the tab's reader for good, or end TensorBoard. So every `.h5` and `.keras` file is read by a worker process: asked
to open one, it lists its variables (names, shapes, dtypes); asked to load one of them, it sends its values. Each
request has a time limit; one the worker does not answer in time, or that ends it, is a CheckpointError (the run's
warning, as for any other damage), and the worker is ended. This process never runs libhdf5 itself, so each file is
read once, and what the values sent come from is the file as it is when they are loaded.

One worker serves each process that reads checkpoints, started on the first `.h5` read and ending with a scan
(`stop`), after a minute with nothing to do, or with the process that started it: a logdir of many Keras runs costs
one start per process. A file the worker no longer holds open (it was replaced, or closed it to hold no more than
OPEN_FILES) is opened again when one of its variables is loaded.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import BinaryIO, cast

import numpy as np

from tb_varscope_plugin import filesystem
from tb_varscope_plugin.checkpoints.variables import (
    Checkpoint,
    CheckpointError,
    UnexpectedCheckpointError,
    Variable,
    unexpected,
)

# The time a worker gets for a request: this, plus the time to read the file's bytes at a slow disk's pace.
BASE_SECONDS = 30.0
SECONDS_PER_GB = 20.0
# A worker with nothing to do this long ends; the next request starts another.
IDLE_SECONDS = 60.0
# Files a worker keeps open at most (each an h5py file and its buffer); the least recently used is closed first.
OPEN_FILES = 32
ENTRY = "from tb_varscope_plugin.command import read_h5_files; read_h5_files()"
# Filesystems whose files exist only inside this process: a worker cannot open them, so they are read here only.
IN_PROCESS_SCHEMES = ("memory://",)
_NUMERIC_KINDS = "biuf"

_lock = threading.Lock()
_worker: Worker | None = None
_handles = itertools.count()  # names each file opened for the worker, so its loads and its close say which


def read_h5(path: str) -> Checkpoint:
    """The checkpoint of a `.h5`/`.weights.h5` or `.keras` file, listed by the worker; its variables' loads ask the
    worker for their values. Raises CheckpointError, with the worker's message, where reading fails."""
    if path.startswith(IN_PROCESS_SCHEMES):
        from tb_varscope_plugin.checkpoints import keras_h5

        return keras_h5.read_keras_file(path)
    file = _File(path, next(_handles), _limit(path))
    listed, _ = _request({"open": path, "id": file.handle}, path, file.limit)
    variables = []
    for where, key, name, listed_shape, dtype, layer, slot in listed["variables"]:
        shape = tuple(listed_shape)
        load = functools.partial(file.load, key, shape)
        variables.append(Variable(where, key, name, shape, dtype, layer, slot, load))
    return Checkpoint(
        path=path,
        format=listed["format"],
        variables=tuple(variables),
        mtime=filesystem.mtime(path),
        close=file.close,
    )


def stop() -> None:
    """Ends this process's worker, if one runs: a one-off scan leaves no process of its own behind it (the next
    `.h5` read starts another)."""
    with _lock:
        if _worker is not None:
            _stop(_worker)


def _limit(path: str) -> float:
    try:
        size = filesystem.file_length(path)
    except Exception:  # the worker's read says why, as for any file it cannot open
        size = 0
    return BASE_SECONDS + SECONDS_PER_GB * size / (1 << 30)


class _File:
    """A file the worker was asked to open, as `handle`: its variables load through it until it is closed."""

    def __init__(self, path: str, handle: int, limit: float) -> None:
        self.path, self.handle, self.limit = path, handle, limit
        self.closed = False

    def load(self, key: str, listed: tuple[int, ...]) -> np.ndarray:
        path = self.path
        if self.closed:
            raise CheckpointError(f"{path}: closed, so {key} is no longer loaded from it")
        answer, payload = _request({"load": key, "id": self.handle, "path": path}, path, self.limit)
        dtype, shape = np.dtype(answer["dtype"]), tuple(answer["shape"])
        if shape != listed:
            raise CheckpointError(f"{path}: {key} holds {shape} values now, not the {listed} listed: saved again since")
        if dtype.kind not in _NUMERIC_KINDS or len(payload) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise CheckpointError(f"{path}: {key}: the HDF5 reader sent {len(payload)} bytes for {dtype} {shape}")
        return np.frombuffer(payload, dtype=dtype).reshape(shape)

    def close(self) -> None:
        """Tells the worker to close the file; nothing to wait for, and no worker started for it."""
        self.closed = True
        with _lock:
            if _worker is not None and _worker.poll() is None:
                try:
                    ask, _ = _streams(_worker)
                    ask.write(json.dumps({"close": self.handle}).encode() + b"\n")
                    ask.flush()
                except BrokenPipeError:
                    pass  # it has just ended: it holds nothing open


def _request(message: dict, path: str, limit: float) -> tuple[dict, bytearray]:
    """The worker's answer to `message` about the file at `path`, and the bytes that follow it."""
    with _lock:
        worker = _running(path)
        answer = _ask(worker, message, limit)
        if answer == b"" and worker.wait() == 0:
            # It ended, idle, at the very moment it was asked (a worker ends with 0 only so): ask a new one.
            _stop(worker)
            worker = _running(path)
            answer = _ask(worker, message, limit)
        if not isinstance(answer, tuple):
            _stop(worker)
    if answer is None:
        raise CheckpointError(
            f"{path}: HDF5 did not finish reading this file within {limit:.0f} s; it is most likely damaged "
            "(libhdf5 loops forever on some damage), so it is not read"
        )
    if not isinstance(answer, tuple):
        raise CheckpointError(f"{path}: reading this file ended the HDF5 reader ({_ending(worker)}); it is not read")
    header, payload = answer
    if "error" in header:
        raise (UnexpectedCheckpointError if header.get("unexpected") else CheckpointError)(header["error"])
    return header, payload


def _running(path: str) -> Worker:
    global _worker
    if _worker is None or _worker.poll() is not None:
        # Forked where that is safe (a scan: the worker starts with what is imported, 0.2 s sooner); else started
        # anew, with fork-and-exec in C, which is safe beside TensorBoard's threads.
        if _can_fork(path):
            _worker = Forked()
        else:
            _worker = subprocess.Popen([sys.executable, "-c", ENTRY], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    return _worker


def _can_fork(path: str) -> bool:
    """Whether a worker may be forked from this process for `path`: only one thread runs (another might hold a lock
    the fork copies held forever), and no remote path was met, whose back end may hold connections open (fsspec
    caches its filesystems) that the worker would share: it closes what it inherits, under objects that still
    think them open. A worker forked for a local file reads remote ones later with back ends of its own."""
    single = threading.active_count() == 1
    return hasattr(os, "fork") and single and filesystem.is_local(path) and not filesystem.remote_seen()


class Forked:
    """A worker forked from this process, with the members of `subprocess.Popen` used here."""

    def __init__(self) -> None:
        job_read, job_write = os.pipe()
        out_read, out_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                # Only its own pipes and standard streams stay open: a pipe of this process's own readers held
                # here would keep whoever waits for its end waiting for this worker's.
                os.close(job_write)
                os.close(out_read)
                low = 3
                for fd in sorted((job_read, out_write)):
                    os.closerange(low, fd)
                    low = fd + 1
                os.closerange(low, os.sysconf("SC_OPEN_MAX"))
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                with os.fdopen(job_read, "rb") as source, os.fdopen(out_write, "wb") as sink:
                    serve(source, sink)
                code = 0
            finally:
                os._exit(code)
        os.close(job_read)
        os.close(out_write)
        self.pid = pid
        self.stdin = os.fdopen(job_write, "wb")
        self.stdout = os.fdopen(out_read, "rb")
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self.returncode

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)


Worker = subprocess.Popen | Forked


def _ask(worker: Worker, message: dict, limit: float) -> tuple[dict, bytearray] | bytes | None:
    """The worker's answer to `message` (a line of JSON, then the number of bytes it gives as `bytes`); b"" if its
    output ended first, None if the whole answer did not come within `limit` seconds."""
    ask, answer = _streams(worker)
    try:
        ask.write(json.dumps(message).encode() + b"\n")
        ask.flush()
    except BrokenPipeError:
        pass  # it has ended: its output has too, which tells why
    deadline = time.monotonic() + limit
    out = answer.fileno()
    received = bytearray()
    searched = 0  # a listing of 20,000 variables is a line of megabytes: each chunk is searched once
    while (end := received.find(b"\n", searched)) < 0:
        searched = len(received)
        if not _readable(out, deadline):
            return None
        chunk = os.read(out, 1 << 16)
        if not chunk:
            return b""
        received += chunk
    header = json.loads(received[:end])
    payload = bytearray(header.get("bytes", 0))  # no more than the values of one variable the file stores
    have = len(received) - end - 1
    payload[:have] = received[end + 1 :]
    view = memoryview(payload)
    while have < len(payload):
        if not _readable(out, deadline):
            return None
        got = os.readv(out, [view[have:]])
        if not got:
            return b""
        have += got
    return header, payload


def _readable(fd: int, deadline: float) -> bool:
    left = deadline - time.monotonic()
    return left > 0 and bool(select.select([fd], [], [], left)[0])


def _streams(worker: Worker) -> tuple[BinaryIO, BinaryIO]:
    """The worker's input and output: Popen types them optional, but it was started with both piped."""
    return cast(BinaryIO, worker.stdin), cast(BinaryIO, worker.stdout)


def _stop(worker: Worker) -> None:
    global _worker
    if worker.poll() is None:
        worker.kill()
    worker.wait()
    for stream in _streams(worker):
        stream.close()
    if _worker is worker:
        _worker = None


def _ending(worker: Worker) -> str:
    code = worker.returncode
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


def _forget_in_child() -> None:
    # A forked child (the scan's readers) must not talk to its parent's worker: it starts its own if it needs one.
    global _worker, _lock
    _worker, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)


# --- the worker ---

Stamp = tuple[int, float | None] | None  # a file's size and modification time; None where it cannot be had
Opened = OrderedDict[int, tuple[Stamp, Checkpoint, dict[str, Variable]]]  # handle: (stamp, checkpoint, by key)


def serve(source: BinaryIO, sink: BinaryIO) -> None:
    """The worker: answers each request read from `source` on `sink`, one at a time, and ends when its input ends
    or has been idle for IDLE_SECONDS. `{"open": path, "id": n}` reads the file's variables and keeps it open as
    `n`; `{"load": key, "id": n, "path": path}` sends a variable's values (opening the file again if it is not
    open, or changed since); `{"close": n}` closes it, with no answer. What reading raises is the answer `error`,
    which the process that asked raises as it is."""
    opened: Opened = OrderedDict()
    try:
        for line in _requests(source.fileno()):
            request = json.loads(line)
            if "close" in request:
                _close_file(opened, request["close"])
                continue
            payload: bytes | memoryview = b""
            path = request.get("open", request.get("path"))
            try:
                if "open" in request:
                    answer = _listing(_open_file(opened, request["id"], path))
                else:
                    values = _values(opened, request["id"], path, request["load"])
                    answer = {"dtype": values.dtype.str, "shape": list(values.shape), "bytes": values.nbytes}
                    payload = values.data
            except CheckpointError as error:
                answer = {"error": str(error), "unexpected": isinstance(error, UnexpectedCheckpointError)}
            except Exception as error:  # as read_checkpoint does: what a reader did not foresee, named
                answer = {"error": str(unexpected(path, error)), "unexpected": True}
            sink.write(json.dumps(answer).encode() + b"\n")
            sink.write(payload)
            sink.flush()
    finally:
        for handle in list(opened):
            _close_file(opened, handle)


def _requests(fd: int) -> Iterator[bytes]:
    """Each line read from `fd`, until it ends or is idle for IDLE_SECONDS. Read here, not by a buffered file: a
    close has no answer, so the next request may arrive with it, and a buffer holding it would leave `select`
    waiting for bytes already read."""
    pending = bytearray()
    while True:
        while (end := pending.find(b"\n")) < 0:
            if not select.select([fd], [], [], IDLE_SECONDS)[0]:
                return
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return
            pending += chunk
        yield bytes(pending[:end])
        del pending[: end + 1]


def _listing(checkpoint: Checkpoint) -> dict:
    return {
        "format": checkpoint.format,
        "variables": [[v.path, v.key, v.name, list(v.shape), v.dtype, v.layer, v.slot] for v in checkpoint.variables],
    }


def _open_file(opened: Opened, handle: int, path: str) -> Checkpoint:
    from tb_varscope_plugin.checkpoints import keras_h5

    _close_file(opened, handle)
    stamp = _stamp(path)  # before reading: a file rewritten meanwhile is opened again at its next load
    checkpoint = keras_h5.read_keras_file(path)
    opened[handle] = (stamp, checkpoint, {v.key: v for v in checkpoint.variables})
    while len(opened) > OPEN_FILES:
        _close_file(opened, next(iter(opened)))
    return checkpoint


def _values(opened: Opened, handle: int, path: str, key: str) -> np.ndarray:
    held = opened.get(handle)
    if held is None or held[0] != _stamp(path):
        _open_file(opened, handle, path)
    else:
        opened.move_to_end(handle)
    variable = opened[handle][2].get(key)
    if variable is None:
        raise CheckpointError(f"{path}: {key} is no longer in this file (it was saved again since it was listed)")
    return np.asarray(variable.load(), order="C")  # as its bytes are sent


def _close_file(opened: Opened, handle: int) -> None:
    held = opened.pop(handle, None)
    if held is not None:
        held[1].close()


def _stamp(path: str) -> Stamp:
    try:
        return filesystem.file_length(path), filesystem.mtime(path)
    except Exception:  # gone or unreadable: opening it again says why
        return None
