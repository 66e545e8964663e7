"""HDF5 files are read by a worker process under a time limit (checkpoints/isolated.py), never by the process that
reports them: a file on which libhdf5 never returns, or which ends the reading process, is a warning on its run,
never a scan or a tab frozen.

The damaged file is a real one: the Keras 3 fixture with the objects of its global heap (where variable-length
strings such as the layers' `name` attributes live) zeroed, on which libhdf5 loops forever reading an attribute."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from damaged_checkpoints import REAL, colliding_run

from tb_varscope_plugin import filesystem, scan
from tb_varscope_plugin.checkpoints import isolated, keras_h5
from tb_varscope_plugin.checkpoints.formats import read_checkpoint
from tb_varscope_plugin.checkpoints.variables import CheckpointError

FIXTURE = REAL / "model.weights.h5"


def never_finishing(path: Path) -> Path:
    """The fixture with its global heap's objects zeroed, from the first name stored there to the last: libhdf5
    asked for a layer's `name` attribute then never returns."""
    data = bytearray(FIXTURE.read_bytes())
    start, end = data.index(b"dense_1\x00") - 8, data.index(b"adam\x00") + 5
    data[start:end] = bytes(end - start)
    path.write_bytes(data)
    return path


@pytest.fixture
def short_limit(monkeypatch):
    """A limit of 2 s for every file, in place of tens of seconds: the fixtures are read in milliseconds."""
    monkeypatch.setattr(isolated, "BASE_SECONDS", 2.0)
    monkeypatch.setattr(isolated, "SECONDS_PER_GB", 0.0)


def started_workers(monkeypatch) -> list:
    """The workers started from here on, forked or spawned."""
    started: list = []
    real = isolated._running

    def tracked(path: str):
        worker = real(path)
        if all(known is not worker for known in started):
            started.append(worker)
        return worker

    monkeypatch.setattr(isolated, "_running", tracked)
    return started


@pytest.fixture(params=["forked", "spawned"])
def how(request, monkeypatch):
    """Forked where this process runs one thread and met no remote path (a scan), spawned beside threads
    (TensorBoard): a thread kept alive makes it spawn. Earlier tests of this process may have met remote paths."""
    monkeypatch.setattr(filesystem, "_remote_seen", False)
    if request.param == "forked":
        yield request.param
        return
    done = threading.Event()
    thread = threading.Thread(target=done.wait)
    thread.start()
    yield request.param
    done.set()
    thread.join()


def test_a_file_libhdf5_never_finishes_is_a_warning_and_its_worker_is_ended(tmp_path, short_limit, monkeypatch, how):
    started = started_workers(monkeypatch)
    damaged = never_finishing(tmp_path / "model.weights.h5")
    with pytest.raises(CheckpointError, match=r"did not finish reading this file within 2 s; it is most likely"):
        read_checkpoint(str(damaged))
    (worker,) = started
    assert isinstance(worker, isolated.Forked) == (how == "forked")
    assert worker.returncode == -signal.SIGKILL  # killed, not left spinning a core
    # The next file gets a new worker and is read as before.
    sound = shutil.copy(FIXTURE, tmp_path / "sound.weights.h5")
    assert len(read_checkpoint(str(sound)).variables) == len(read_checkpoint(str(FIXTURE)).variables) > 0
    assert len(started) == 2


def test_a_run_beside_such_a_file_is_reported_with_a_warning_naming_it(tmp_path, short_limit):
    logdir = tmp_path / "logs"
    run = colliding_run(logdir, "model.weights.h5")
    damaged = never_finishing(run / "model.weights.h5")
    (reported,) = scan(str(logdir))["runs"]
    assert reported["collisions"] and reported["checkpoint"] is None
    assert [w["file"] for w in reported["warnings"] if "did not finish reading" in w["message"]] == [str(damaged)]


def test_one_worker_reads_every_file_of_a_process(tmp_path, monkeypatch, how):
    started = started_workers(monkeypatch)
    for i in range(4):
        copy = shutil.copy(FIXTURE, tmp_path / f"m{i}.weights.h5")
        assert read_checkpoint(str(copy)).variables
    for name in ("model.keras", "legacy.h5"):
        assert read_checkpoint(str(REAL / name)).variables
    assert len(started) == 1


def test_a_worker_gone_between_files_is_replaced(tmp_path, monkeypatch, how):
    started = started_workers(monkeypatch)
    assert read_checkpoint(str(FIXTURE)).variables
    os.kill(started[0].pid, signal.SIGTERM)
    started[0].wait()
    assert read_checkpoint(str(FIXTURE)).variables
    assert len(started) == 2


def test_a_worker_ended_while_reading_is_a_warning_naming_how_it_ended(tmp_path, monkeypatch):
    """As libhdf5 crashing on a file would end it: a signal while it reads (here while it loops)."""
    monkeypatch.setattr(isolated, "BASE_SECONDS", 60.0)
    started = started_workers(monkeypatch)
    damaged = never_finishing(tmp_path / "model.weights.h5")

    def crash() -> None:
        while not started:
            time.sleep(0.01)
        time.sleep(1.0)  # started, and by now inside the file
        os.kill(started[0].pid, signal.SIGSEGV)

    threading.Thread(target=crash, daemon=True).start()
    with pytest.raises(CheckpointError, match=r"ended the HDF5 reader \(killed by SIGSEGV\); it is not read"):
        read_checkpoint(str(damaged))


def test_a_forked_child_starts_a_worker_of_its_own(tmp_path):
    assert read_checkpoint(str(FIXTURE)).variables
    parent_worker = isolated._worker
    pid = os.fork()
    if pid == 0:  # the child: its parent's worker is not its to talk to
        code = 0 if isolated._worker is None and read_checkpoint(str(FIXTURE)).variables else 1
        os._exit(code if isolated._worker is not parent_worker else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert isolated._worker is parent_worker and parent_worker.poll() is None  # still the parent's, still serving


@pytest.mark.parametrize("runs", [1, 4])
def test_a_scan_ends_when_it_is_done_not_when_its_workers_would(tmp_path, runs):
    """The worker ends with the process it serves: one that outlived it (idle for a minute), or held the scan's
    output or its readers' pipes open, would keep whoever reads the scan's output waiting. With 4 runs the scan's
    forked readers each fork a worker of their own."""
    logdir = tmp_path / "logs"
    for i in range(runs):
        run = colliding_run(logdir / f"r{i}", "model.weights.h5")
        shutil.copy(FIXTURE, run / "model.weights.h5")
    command = [sys.executable, "-m", "tb_varscope_plugin.cli", "scan", str(logdir), "--json"]
    done = subprocess.run(command, capture_output=True, timeout=isolated.IDLE_SECONDS / 2)
    assert done.returncode == 1, done.stderr  # collisions found
    report = json.loads(done.stdout)
    assert [run["checkpoint"]["format"] for run in report["runs"]] == ["keras-weights-h5"] * runs


def test_no_worker_is_forked_once_a_remote_path_was_met_or_for_a_remote_file(monkeypatch):
    monkeypatch.setattr(filesystem, "_remote_seen", False)
    assert isolated._can_fork(str(FIXTURE)) and not isolated._can_fork("s3://bucket/run/model.weights.h5")
    assert not isolated._can_fork(str(FIXTURE))  # the s3:// path above was met


def test_a_scan_in_this_process_leaves_no_worker_behind(tmp_path, monkeypatch, how):
    """`scan()` called from a user's program: its worker ends with it, so the program has no child it did not start
    (one waiting for its own children would wait for it)."""
    started = started_workers(monkeypatch)
    run = colliding_run(tmp_path / "logs", "model.weights.h5")
    shutil.copy(FIXTURE, run / "model.weights.h5")
    (reported,) = scan(str(tmp_path / "logs"))["runs"]
    assert reported["checkpoint"] is not None
    assert len(started) == 1 and started[0].returncode is not None and isolated._worker is None


FIXTURES = [REAL / "model.weights.h5", REAL / "model.keras", REAL / "legacy.h5"]


def test_the_worker_lists_and_loads_what_the_reader_reads_here_and_this_process_never_runs_h5py():
    for path in FIXTURES:
        expected = keras_h5.read_keras_file(str(path))
        found = read_checkpoint(str(path))
        assert found.format == expected.format and found.variables == expected.variables  # names, shapes, dtypes
        for ours, theirs in zip(found.variables, expected.variables, strict=True):
            loaded = ours.load()
            assert loaded.dtype == theirs.load().dtype and np.array_equal(loaded, theirs.load())
        expected.close()
    code = (
        "import sys; from tb_varscope_plugin.checkpoints.formats import read_checkpoint\n"
        f"for path in {[str(p) for p in FIXTURES]!r}:\n"
        "    [v.load() for v in read_checkpoint(path).variables]\n"
        "print('h5py' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_variable_loads_after_its_worker_was_replaced_or_closed_its_file(monkeypatch, how):
    started = started_workers(monkeypatch)
    checkpoint = read_checkpoint(str(FIXTURE))
    expected = [v.load() for v in checkpoint.variables]
    os.kill(started[0].pid, signal.SIGTERM)  # as one ended idle, or killed for another file
    started[0].wait()
    assert all(np.array_equal(v.load(), e) for v, e in zip(checkpoint.variables, expected, strict=True))
    assert len(started) == 2
    # A worker holds so many files open at most, the least recently used closed first: asked again, it reopens.
    monkeypatch.setattr(isolated, "OPEN_FILES", 1)  # in the forked worker too, forked after this
    isolated.stop()
    first, second = read_checkpoint(str(FIXTURE)), read_checkpoint(str(REAL / "legacy.h5"))
    assert np.array_equal(first.variables[0].load(), expected[0]) and second.variables[0].load().size


def test_a_file_saved_again_after_it_was_listed_loads_as_it_is_now_or_says_what_changed(tmp_path):
    path = shutil.copy(FIXTURE, tmp_path / "model.weights.h5")
    checkpoint = read_checkpoint(str(path))
    kernel = checkpoint.variables[0]
    with h5py.File(path, "r+") as h5:
        h5[kernel.key][...] = 7.0
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert (kernel.load() == 7.0).all()  # the values saved since, not those of the file the worker held open
    with h5py.File(path, "r+") as h5:
        del h5[kernel.key]
        h5[kernel.key] = np.zeros(5, "f4")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    with pytest.raises(CheckpointError, match=r"holds \(5,\) values now, not the \(3, 3\) listed: saved again"):
        kernel.load()
    with h5py.File(path, "r+") as h5:
        del h5[kernel.key]
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 3 * 10**9))
    with pytest.raises(CheckpointError, match=r"is no longer in this file"):
        kernel.load()


def test_a_load_that_never_finishes_is_an_error_and_its_worker_is_ended(short_limit, monkeypatch):
    """A dataset whose values libhdf5 never finishes reading: made so here by patching h5py in this process before
    the worker is forked from it."""
    monkeypatch.setattr(filesystem, "_remote_seen", False)
    started = started_workers(monkeypatch)
    monkeypatch.setattr(h5py.Dataset, "__getitem__", lambda *_: time.sleep(3600))
    checkpoint = read_checkpoint(str(FIXTURE))  # listing reads no values
    with pytest.raises(CheckpointError, match=r"did not finish reading this file within 2 s"):
        checkpoint.variables[0].load()
    assert isinstance(started[0], isolated.Forked) and started[0].returncode == -signal.SIGKILL
