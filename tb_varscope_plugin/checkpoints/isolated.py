"""HDF5 checkpoints read once in a worker process before they are read here.

libhdf5, under h5py, loops forever on some damaged files (a global heap object of size 0: reading an attribute
never returns) and may crash on others, in C code that Python cannot interrupt. In TensorBoard that would freeze
the tab's reader for good, or end TensorBoard. So a `.h5` or `.keras` file is first read whole (every variable and
every value) by a worker process, under a time limit; only once the worker has done so in time is it read here.
libhdf5 reads a file the same way each time, so what the worker finished will finish here too. A file it does not
finish, or that ends it, is a CheckpointError: the run's warning, as for any other damage.

One worker serves each process that reads checkpoints, started on the first `.h5` read and ending with a scan
(`stop`), after a minute with nothing to read, or with the process that started it: a logdir of many Keras runs
costs one start per process.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import BinaryIO, cast

from tb_varscope_plugin import filesystem
from tb_varscope_plugin.checkpoints.variables import CheckpointError

# The time a worker gets for a file: this, plus the time to read its bytes at a slow disk's pace.
BASE_SECONDS = 30.0
SECONDS_PER_GB = 20.0
# A worker with nothing to read this long ends; the next `.h5` read starts another.
IDLE_SECONDS = 60.0
ENTRY = "from tb_varscope_plugin.command import read_h5_files; read_h5_files()"
DONE = b"done\n"
# Filesystems whose files exist only inside this process: a worker cannot open them, so they are read here only.
IN_PROCESS_SCHEMES = ("memory://",)

_lock = threading.Lock()
_worker: Worker | None = None


def vet(path: str) -> None:
    """Returns once a worker process has read `path` whole within the time limit (whatever reading it raised
    there: the same is raised here next); raises CheckpointError where it did not end in time or ended the worker."""
    if path.startswith(IN_PROCESS_SCHEMES):
        return
    try:
        size = filesystem.file_length(path)
    except Exception:  # the read that follows says why, as for any file it cannot open
        size = 0
    limit = BASE_SECONDS + SECONDS_PER_GB * size / (1 << 30)
    with _lock:
        worker = _running(path)
        answer = _ask(worker, path, limit)
        if answer == b"" and worker.wait() == 0:
            # It ended, idle, at the very moment it was asked (a worker ends with 0 only so): ask a new one.
            _stop(worker)
            worker = _running(path)
            answer = _ask(worker, path, limit)
        if answer == DONE:
            return
        _stop(worker)
    if answer is None:
        raise CheckpointError(
            f"{path}: HDF5 did not finish reading this file within {limit:.0f} s; it is most likely damaged "
            "(libhdf5 loops forever on some damage), so it is not read"
        )
    raise CheckpointError(f"{path}: reading this file ended the HDF5 reader ({_ending(worker)}); it is not read")


def stop() -> None:
    """Ends this process's worker, if one runs: a one-off scan leaves no process of its own behind it (the next
    `.h5` read starts another)."""
    with _lock:
        if _worker is not None:
            _stop(_worker)


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


def _ask(worker: Worker, path: str, limit: float) -> bytes | None:
    """The worker's answer for `path`: its line, b"" if its output ended first, None if none came within `limit`
    seconds."""
    ask, answer = _streams(worker)
    try:
        ask.write(json.dumps(path).encode() + b"\n")
        ask.flush()
    except BrokenPipeError:
        pass  # it has ended: its output has too, which tells why
    deadline = time.monotonic() + limit
    out = answer.fileno()
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([out], [], [], left)[0]:
            return None
        chunk = os.read(out, 64)
        if not chunk:
            return b""
        line += chunk
    return line


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


def serve(source: BinaryIO, sink: BinaryIO) -> None:
    """The worker: reads each path named on `source` whole, answering `done` on `sink` once it has, and ends when
    its input ends or has been idle for IDLE_SECONDS. One path at a time: the next is sent once this one is done."""
    from tb_varscope_plugin.checkpoints import keras_h5

    while select.select([source], [], [], IDLE_SECONDS)[0]:
        line = source.readline()
        if not line:
            return
        path = json.loads(line)
        try:
            reader = keras_h5.read_keras_archive if path.endswith(".keras") else keras_h5.read_weights_h5
            checkpoint = reader(path)
        except Exception:
            checkpoint = None  # read here, the same error is raised in the process that asked, and reported there
        if checkpoint is not None:
            try:
                for variable in checkpoint.variables:
                    # As above: the process that asked meets what this raises if it loads this variable.
                    with contextlib.suppress(Exception):
                        variable.load()
            finally:
                checkpoint.close()
        sink.write(DONE)
        sink.flush()
