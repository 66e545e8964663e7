"""The processes we start: the `tb-varscope` command, the tab's first-pass readers and the HDF5 reader. Each defers
the remote back ends before it imports anything that imports TensorBoard's filesystem layer."""

from __future__ import annotations

import gc
import os
import signal
import sys

from tb_varscope_plugin.startup import defer_remote_back_ends


def main() -> int:
    defer_remote_back_ends()  # before anything imports TensorBoard's filesystem layer (see startup.py)
    from tb_varscope_plugin.cli import main as cli_main

    code = cli_main()
    # The process ends here: the interpreter's last collections would walk every object still alive (0.05 s of a
    # 0.4 s scan) to free what the exit frees anyway. Everything the commands write is closed before they return.
    gc.freeze()
    return code


def read_share() -> None:
    """A process the VarScope tab spawned to read a share of its first pass (see `server/first_pass.py`): its job
    on standard input, what it read on standard output, which nothing else may write to."""
    defer_remote_back_ends()  # the tab spawns these for local logdirs only
    # Ctrl-C in TensorBoard's terminal reaches this process too: ending it is TensorBoard's part (at exit it kills
    # the readers it started), and a reader whose TensorBoard is gone ends at its next write.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from tb_varscope_plugin.server.first_pass import serve

    sink = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print goes to the log, not into the messages
    with sink:
        serve(sys.stdin.buffer, sink)
    # Everything is sent and closed. TensorBoard takes the end of the output for the end of the pass, and the
    # interpreter's teardown of what was read (70 ms for a run of 10,000 tags) would only keep it waiting.
    sys.stdout.flush()  # a stray print, which went to the log (fd 1 is the log's now)
    sys.stderr.flush()
    os._exit(0)


def read_h5_files() -> None:
    """The worker that reads `.h5` and `.keras` checkpoints for the process that started it (see
    `checkpoints/isolated.py`): requests on standard input, answers on standard output, which nothing else may write
    to."""
    defer_remote_back_ends()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the process that started it, which then ends it
    from tb_varscope_plugin.checkpoints.isolated import serve

    sink = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print goes to the log, not into the answers
    with sink:
        serve(sys.stdin.buffer, sink)
