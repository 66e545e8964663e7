"""A one-off scan reads and reports runs one at a time, shared out among processes by run, and gives the report a
long-lived index gives: the same document, from forked shares or not, whole or in serialised pieces."""

import json
import os
import shutil
import time

import numpy as np
import pytest
from damaged_checkpoints import REAL, colliding_run
from eventlogs import histogram_event, layered_run, write_events
from hypothesis import given, settings
from hypothesis import strategies as st

from tb_varscope_plugin import report as report_module
from tb_varscope_plugin.reading import parallel
from tb_varscope_plugin.reading.logdir import LogdirIndex
from tb_varscope_plugin.reading.run_index import RunIndex
from tb_varscope_plugin.report import Reporter, scan, scan_json

save_file = pytest.importorskip("safetensors.numpy").save_file


@pytest.fixture
def logdir(tmp_path, monkeypatch):
    """Six runs: colliding ones, one with a checkpoint of its own, the others sharing one; a torn file."""
    monkeypatch.setattr(report_module, "FORK_MIN_BYTES", 0)
    for i, sizes in enumerate([[4, 8], [16], [3, 5, 7], [6, 6], [2, 9], [5]]):
        layered_run(str(tmp_path / "exp" / f"run_{i}" / "events.out.tfevents.1.x"), "kernel", sizes, steps=4)
    save_file({"a/kernel": np.zeros(4), "b/kernel": np.ones(8)}, str(tmp_path / "exp" / "run_0" / "model.safetensors"))
    save_file({"dense/kernel": np.zeros(16)}, str(tmp_path / "exp" / "shared.safetensors"))
    torn = tmp_path / "exp" / "run_2" / "events.out.tfevents.2.x"
    write_events(str(torn), [histogram_event(s, "k", np.linspace(0, 1, 10)) for s in range(3)])
    torn.write_bytes(torn.read_bytes()[:-9])
    return tmp_path


def reference(logdir) -> dict:
    """The report as TensorBoard's long-lived reader builds it: the whole index read, then reported."""
    index = LogdirIndex(str(logdir))
    index.reload()
    reporter = Reporter(index)
    try:
        return reporter.report()
    finally:
        reporter.close()


@pytest.fixture
def shares(monkeypatch):
    """The children forked, each as the pieces it was given to take from (the same for all), as lists of run
    names."""
    made = []
    fork = report_module.forked

    def counted(work):
        made.append([[run.name for run in piece] for piece in work.args[1]])
        return fork(work)

    monkeypatch.setattr(report_module, "forked", counted)
    return made


def test_shared_out_among_processes_the_report_is_the_one_of_the_whole_index(logdir, monkeypatch, shares):
    monkeypatch.setattr(report_module, "processes", lambda: 2)
    expected = reference(logdir)
    assert expected["summary"]["collisions"] == 4 and expected["summary"]["warnings"] == 1
    assert {r["checkpoint"]["path"].rsplit("/", 1)[-1] for r in expected["runs"]} == {
        "model.safetensors",
        "shared.safetensors",
    }
    assert scan(str(logdir)) == json.loads(json.dumps(expected))
    # Six runs: two evened-out shares, one a child, each child free to take the other's if it is done first.
    assert len(shares) == 2 and len(shares[0]) == 2
    assert sorted(sum(shares[0], [])) == [f"exp/run_{i}" for i in range(6)]


def test_the_serialised_pieces_are_the_document_json_writes(logdir, monkeypatch, shares):
    monkeypatch.setattr(report_module, "processes", lambda: 2)
    pieces, head = scan_json(str(logdir))
    assert "".join(pieces) == json.dumps(scan(str(logdir)))
    assert head["runs"] == [] and head["summary"]["runs"] == 6
    assert len(shares) == 4  # two scans, two shares each


def test_a_child_that_fails_leaves_its_share_to_the_parent(logdir, monkeypatch, shares, failing_children):
    monkeypatch.setattr(report_module, "processes", lambda: 2)
    assert scan(str(logdir)) == json.loads(json.dumps(reference(logdir)))
    assert len(shares) == 2


def test_one_run_holding_most_bytes_is_read_by_every_process_rather_than_shared(logdir, monkeypatch, shares):
    monkeypatch.setattr(report_module, "processes", lambda: 2)
    big = logdir / "exp" / "run_5" / "events.out.tfevents.3.x"
    write_events(str(big), [histogram_event(s, "big", np.linspace(0, 1, 2000)) for s in range(200)])
    asked = []
    read_runs = LogdirIndex.read_runs
    monkeypatch.setattr(
        LogdirIndex, "read_runs", lambda self, runs, n=1: asked.append((len(runs), n)) or read_runs(self, runs, n)
    )
    assert scan(str(logdir)) == json.loads(json.dumps(reference(logdir)))
    assert shares == []  # no share forked: runs do not share out evenly
    # The runs read together, so both processes have files to share out (see read_files), not run by run.
    assert asked == [(6, 2)]
    asked.clear()
    monkeypatch.setattr(report_module, "READ_AHEAD_BYTES", 1)
    assert scan(str(logdir)) == json.loads(json.dumps(reference(logdir)))
    assert asked == [(1, 2)] * 6


def test_small_runs_are_read_a_batch_at_a_time_and_forgotten_once_reported(logdir, monkeypatch):
    monkeypatch.setattr(report_module, "processes", lambda: 1)
    read, held = [], []
    read_runs = LogdirIndex.read_runs

    def counted(self, runs, n=1):
        read.append(len(runs))
        return read_runs(self, runs, n)

    monkeypatch.setattr(LogdirIndex, "read_runs", counted)
    part = Reporter.part

    def watched(self, run):
        held.append(sum(1 for r in self.index.runs.values() if any(f.series for f in r.files)))
        return part(self, run)

    monkeypatch.setattr(Reporter, "part", watched)
    assert scan(str(logdir)) == json.loads(json.dumps(reference(logdir)))
    assert read == [6]  # six small runs: one batch
    assert held == [6, 5, 4, 3, 2, 1]  # each run's values dropped once its part is made


def test_runs_are_held_one_at_a_time_and_each_checkpoint_until_its_last_run(logdir, monkeypatch):
    monkeypatch.setattr(report_module, "processes", lambda: 1)
    monkeypatch.setattr(report_module, "BATCH_BYTES", 0)  # as for runs of a few megabytes each: one at a time
    held = []
    part = Reporter.part

    def watched(self, run):
        # While a run is reported: the runs whose values are still in memory, and the checkpoints open.
        held.append(({r.name for r in self.index.runs.values() if any(f.series for f in r.files)}, set(self._read)))
        return part(self, run)

    monkeypatch.setattr(Reporter, "part", watched)
    scan(str(logdir))
    assert [len(runs) for runs, _ in held] == [1] * 6
    own, shared = str(logdir / "exp" / "run_0" / "model.safetensors"), str(logdir / "exp" / "shared.safetensors")
    # As each run is about to be reported: run_0's own checkpoint is closed once it was, the shared one opened
    # for run_1 stays open for the runs after it.
    assert [sorted(open_) for _, open_ in held] == [[], []] + [[shared]] * 4
    assert own not in set().union(*(open_ for _, open_ in held))


def test_an_error_while_gathering_stops_and_reaps_the_children_left(logdir, monkeypatch, shares):
    monkeypatch.setattr(report_module, "processes", lambda: 3)

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(parallel.select, "select", interrupted)
    with pytest.raises(KeyboardInterrupt):
        scan(str(logdir))
    assert len(shares) == 3
    with pytest.raises(ChildProcessError):  # every child reaped: none left to wait for
        os.wait()


@pytest.mark.parametrize("stuck", ["exp/run_0", "exp/run_1"])
def test_a_child_still_silent_long_after_the_first_answered_is_stopped_and_its_share_done_here(
    logdir, monkeypatch, shares, stuck
):
    monkeypatch.setattr(report_module, "processes", lambda: 2)
    monkeypatch.setattr(parallel, "CHILD_GRACE_SECONDS", 0.5)
    parent = os.getpid()
    real = report_module._report_share

    def stuck_on_one_run(index, runs, *args):
        if os.getpid() != parent and stuck in [run.name for run in runs]:
            time.sleep(3600)
        return real(index, runs, *args)

    monkeypatch.setattr(report_module, "_report_share", stuck_on_one_run)
    started = time.monotonic()
    assert scan(str(logdir)) == json.loads(json.dumps(reference(logdir)))
    assert len(shares) == 2 and time.monotonic() - started < 60  # whichever share is stuck, not an hour


class _Sized:
    """An index as `shares` sees it: bytes to read per run."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = sizes

    def unread_bytes(self, run: RunIndex) -> int:
        return self.sizes[run.name]


def _loads(sizes: dict[str, int], count: int) -> list[int]:
    runs = [RunIndex(name, f"/logs/{name}") for name in sizes]
    groups = report_module.shares(_Sized(sizes).unread_bytes, runs, count)
    assert sorted(run.name for group in groups for run in group) == sorted(sizes)  # each run in one share
    return sorted((sum(sizes[run.name] for run in group) for group in groups), reverse=True)


def test_runs_are_evened_out_beyond_largest_first(monkeypatch):
    monkeypatch.setattr(report_module, "FORK_MIN_BYTES", 0)
    # The shape of size150: largest-first gives 93 / 64, a swap gives 87 / 70.
    assert _loads({"keras2": 35, "tf": 35, "keras3": 29, "resumed": 29, "torch": 29}, 2) == [87, 70]


@settings(max_examples=int(os.environ.get("VARSCOPE_FUZZ_EXAMPLES", "100")), deadline=None)
@given(st.lists(st.integers(1, 1000), min_size=2, max_size=20), st.integers(2, 4))
def test_evening_out_never_leaves_a_share_fuller_than_largest_first(sizes, count):
    named = {f"run{i}": size for i, size in enumerate(sizes)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report_module, "FORK_MIN_BYTES", 0)
        patch.setattr(report_module, "UNEVEN", float("inf"))
        evened = _loads(named, count)
        patch.setattr(report_module, "EVENED_RUNS", 0)
        largest_first = _loads(named, count)
    assert evened[0] <= largest_first[0]


@settings(max_examples=int(os.environ.get("VARSCOPE_FUZZ_EXAMPLES", "100")), deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=1, max_size=300), st.integers(2, 8), st.integers(0, 50))
def test_many_runs_are_cut_in_order_into_pieces_that_shrink_to_the_least_allowed(sizes, count, least):
    """Every run in one piece, in order; a piece closes with the run that takes it to half an even share of what
    was left as it started (at least the least allowed), and not before (a piece holds a run at least); at most
    MAX_PIECES pieces and the last."""
    named = {f"run{i:03d}": size for i, size in enumerate(sizes)}
    runs = [RunIndex(name, f"/logs/{name}") for name in named]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report_module, "CHUNK_MIN_BYTES", least)
        patch.setattr(report_module, "MAX_PIECES", 20)
        pieces = report_module.chunks(_Sized(named).unread_bytes, runs, count)
    assert [run for piece in pieces for run in piece] == runs and all(pieces)
    floor = max(least, sum(sizes) // 20)
    left = sum(sizes)
    for piece in pieces[:-1]:
        held = [named[run.name] for run in piece]
        wanted = max(floor, left // (2 * count))
        assert sum(held) >= wanted and (len(held) == 1 or wanted > sum(held) - held[-1])
        left -= sum(held)
    assert len(pieces) <= 21


@pytest.fixture
def many_runs(tmp_path, monkeypatch):
    """70 small runs, some colliding, one with a checkpoint: more than are evened out, so they go in pieces."""
    monkeypatch.setattr(report_module, "FORK_MIN_BYTES", 0)
    monkeypatch.setattr(report_module, "CHUNK_MIN_BYTES", 0)
    monkeypatch.setattr(report_module, "processes", lambda: 2)
    for i in range(70):
        sizes = [4, 8] if i % 3 == 0 else [5]
        layered_run(str(tmp_path / f"run_{i:02d}" / "events.out.tfevents.1.x"), "kernel", sizes, steps=2)
    save_file({"a/kernel": np.zeros(4), "b/kernel": np.ones(8)}, str(tmp_path / "run_00" / "model.safetensors"))
    return tmp_path


def test_many_runs_are_taken_in_pieces_and_give_the_report_of_the_whole_index(many_runs, shares):
    assert scan(str(many_runs)) == json.loads(json.dumps(reference(many_runs)))
    assert len(shares) == 2 and len(shares[0]) > 4  # two children, taking pieces in turn
    assert sum(shares[0], []) == [f"run_{i:02d}" for i in range(70)]


def test_a_child_slowed_on_its_piece_leaves_every_other_piece_to_the_others(many_runs, monkeypatch, tmp_path):
    """The child that took the first piece is held on it until the other has found no piece left: the other took
    all the rest, and the report is whole."""
    parent = os.getpid()
    drained = tmp_path / "drained"
    real_share, real_take, real_receive = (
        report_module._report_share,
        report_module._take_pieces,
        report_module.receive_all,
    )

    def held_on_the_first(index, runs, *args):
        if os.getpid() != parent and runs[0].name == "run_00":
            deadline = time.monotonic() + 60
            while not drained.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        return real_share(index, runs, *args)

    def take(*args):
        done = real_take(*args)
        drained.touch()
        return done

    answers = []
    monkeypatch.setattr(report_module, "_report_share", held_on_the_first)
    monkeypatch.setattr(report_module, "_take_pieces", take)
    monkeypatch.setattr(report_module, "receive_all", lambda *args: answers.extend(real_receive(*args)) or answers)
    assert scan(str(many_runs)) == json.loads(json.dumps(reference(many_runs)))
    taken = sorted(sorted(found) for found in answers)
    assert len(taken) == 2 and taken[0] == [0] and len(taken[1]) > 3
    assert sorted(taken[0] + taken[1]) == list(range(len(taken[1]) + 1))


def test_a_piece_no_child_answered_for_is_reported_here(many_runs, shares, failing_children):
    assert scan(str(many_runs)) == json.loads(json.dumps(reference(many_runs)))
    assert len(shares) == 2


def test_small_runs_each_beside_an_h5_checkpoint_are_shared_out_for_their_checkpoints(tmp_path, monkeypatch, shares):
    """A sweep of Keras trainings: few bytes of events, but each run's `.weights.h5` listed and loaded by an HDF5
    worker (10 ms a run), so the runs are shared among forked processes, each with its own worker."""
    monkeypatch.setattr(report_module, "processes", lambda: 2)
    runs = report_module.FORK_MIN_BYTES // report_module.H5_WORK_BYTES + 1
    for i in range(runs):
        run = colliding_run(tmp_path / "logs" / f"r{i:02d}", "model.weights.h5")
        shutil.copy(REAL / "model.weights.h5", run / "model.weights.h5")
    assert scan(str(tmp_path / "logs")) == json.loads(json.dumps(reference(tmp_path / "logs")))
    assert len(shares) == 2
    (tmp_path / "fewer").mkdir()
    for i in range(runs - 2):  # short of the bytes forking pays for
        os.rename(tmp_path / "logs" / f"r{i:02d}", tmp_path / "fewer" / f"r{i:02d}")
    scan(str(tmp_path / "fewer"))
    assert len(shares) == 2
