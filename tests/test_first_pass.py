"""The tab's first pass by spawned processes gives the index and report that reading in TensorBoard's process gives,
takes in their parts without building them again, and reads here whatever a process did not send."""

from __future__ import annotations

import json
import os
import pickle
import threading

import numpy as np
import pytest
from damaged_checkpoints import colliding_run, copy_real
from eventlogs import histogram_event, layered_run, write_events
from test_read_processes import state

from tb_varscope_plugin import report as report_module
from tb_varscope_plugin.reading import logdir as logdir_module
from tb_varscope_plugin.reading.logdir import LogdirIndex
from tb_varscope_plugin.reading.run_index import Series
from tb_varscope_plugin.report import Reporter
from tb_varscope_plugin.server import first_pass
from tb_varscope_plugin.server import live as live_module
from tb_varscope_plugin.server.live import LiveReport

pytestmark = pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="spawned readers need posix_spawn")


@pytest.fixture
def logdir(tmp_path):
    """Runs with collisions, two beside real checkpoints, one with a file of two tags."""
    for name, checkpoint in [("keras", "model.weights.h5"), ("torch", "model.safetensors")]:
        copy_real(checkpoint, colliding_run(tmp_path / name, checkpoint, steps=3))
    for run, sizes in [("a", [4, 8]), ("b", [16]), ("c", [3, 5, 7])]:
        layered_run(str(tmp_path / run / "events.out.tfevents.1.x"), "kernel", sizes, steps=5)
    values = np.linspace(0, 1, 10)
    events = [histogram_event(s, tag, values) for s in range(3) for tag in ("k", "bias")]
    write_events(str(tmp_path / "a" / "events.out.tfevents.2.x"), events)
    return tmp_path


@pytest.fixture
def spawned(monkeypatch):
    """Every first pass spawned, by two processes; the pids spawned."""
    monkeypatch.setattr(first_pass, "SPAWN_MIN_BYTES", 0)
    monkeypatch.setattr(report_module, "FORK_MIN_BYTES", 0)  # shared out by runs however small
    monkeypatch.setattr(report_module, "H5_WORK_BYTES", 0)  # by their events alone: the h5 run would hold most
    monkeypatch.setattr(first_pass, "processes", lambda: 2)
    pids = []
    spawn = os.posix_spawn

    def counted(*args, **kwargs):
        pids.append(spawn(*args, **kwargs))
        return pids[-1]

    monkeypatch.setattr(os, "posix_spawn", counted)
    return pids


def first_pass_of(logdir):
    index = LogdirIndex(str(logdir), contain_errors=True)
    live = LiveReport(index, Reporter(index), reload_interval=0)
    live.reload()
    return index, live.report()


def read_here(logdir):
    """The first pass as TensorBoard's process reads it itself."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(first_pass, "SPAWN_MIN_BYTES", 1 << 62)
        return first_pass_of(logdir)


def test_a_spawned_first_pass_gives_the_index_and_report_of_one_read_here(logdir, spawned, monkeypatch):
    expected_index, expected = read_here(logdir)
    assert spawned == []
    built = []
    build = report_module.build_run_report
    monkeypatch.setattr(report_module, "build_run_report", lambda *a: built.append(a) or build(*a))
    files_read = []
    reload_files = logdir_module.reload_files
    monkeypatch.setattr(logdir_module, "reload_files", lambda files: files_read.extend(files) or reload_files(files))

    index, report = first_pass_of(logdir)

    assert len(spawned) == 2
    assert json.dumps(report, sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert report["complete"] and report["summary"]["collisions"] >= 4
    assert state(index) == state(expected_index)
    # What the processes sent was taken in: this process read no event file and built no run's part.
    assert files_read == [] and built == []
    # The index is this process's own from here: a lane's values decode from it.
    run = index.runs["a"]
    assert run.decode_all(run.lane_refs("kernel", 1))[0].tolist() == (
        expected_index.runs["a"].decode_all(expected_index.runs["a"].lane_refs("kernel", 1))[0].tolist()
    )


def test_a_spawned_pass_collects_garbage_once_its_readers_are_started(logdir, spawned, monkeypatch):
    """While its readers start, TensorBoard's process runs the full collection that taking in their messages would
    set off later (see `FirstPass.run`): once per spawned pass, after every reader was spawned; never for a pass
    read here."""
    collected = []
    monkeypatch.setattr(first_pass.gc, "collect", lambda: collected.append(len(spawned)))
    first_pass_of(logdir)
    assert collected == [2]
    collected.clear()
    read_here(logdir)
    assert collected == []


def test_a_logdir_spec_is_shared_out_under_its_names(logdir, spawned):
    """`--logdir_spec name1:dir1,name2:dir2`: the spawned processes find the runs under the names the index gives."""
    roots = {str(logdir / "a"): "first", str(logdir / "keras"): "second"}

    def first_pass_of_spec():
        index = LogdirIndex("spec", None, roots, contain_errors=True)
        live = LiveReport(index, Reporter(index), reload_interval=0)
        live.reload()
        return live.report()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(first_pass, "SPAWN_MIN_BYTES", 1 << 62)
        expected = first_pass_of_spec()
    report = first_pass_of_spec()
    assert len(spawned) == 1  # two runs of unequal size: one share, read by its process with every core
    assert [run["run"] for run in report["runs"]] == ["first/.", "second/run"]  # as TensorBoard names them
    assert json.dumps(report, sort_keys=True) == json.dumps(expected, sort_keys=True)


@pytest.mark.parametrize(
    "entry",
    [
        "import sys; sys.exit(3)",  # fails before it reads its job
        "import sys; sys.stdin.buffer.read(); sys.exit(3)",  # fails having read it
        # sends a message cut short
        "import sys; sys.stdin.buffer.read(); sys.stdout.buffer.write((100).to_bytes(8, 'little') + b'xx')",
    ],
)
def test_runs_a_spawned_process_did_not_send_are_read_here(logdir, spawned, monkeypatch, entry):
    _, expected = read_here(logdir)
    monkeypatch.setattr(first_pass, "ENTRY", entry)
    _, report = first_pass_of(logdir)
    assert len(spawned) == 2
    assert json.dumps(report, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_a_process_that_cannot_be_started_leaves_the_pass_to_this_process(logdir, spawned, monkeypatch):
    _, expected = read_here(logdir)
    spawn = os.posix_spawn
    calls = []

    def second_fails(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise OSError(11, "Resource temporarily unavailable")
        return spawn(*args, **kwargs)

    monkeypatch.setattr(os, "posix_spawn", second_fails)
    descriptors = len(os.listdir("/proc/self/fd"))
    _, report = first_pass_of(logdir)
    assert len(calls) == 2
    assert json.dumps(report, sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert len(os.listdir("/proc/self/fd")) == descriptors  # every pipe of both closed
    assert len(spawned) == 1
    with pytest.raises(ChildProcessError):  # the one started was killed and reaped
        os.waitpid(spawned[0], os.WNOHANG)


def test_partial_reports_of_a_spawned_pass_show_only_runs_taken_in(logdir, spawned, monkeypatch):
    monkeypatch.setattr(live_module, "PUBLISH_INTERVAL", 0)
    index = LogdirIndex(str(logdir), contain_errors=True)
    live = LiveReport(index, Reporter(index), reload_interval=0)
    shown = []
    restore = LogdirIndex.restore_run

    def watched(self, run, states, gained):
        report = live.report()  # what the tab shows before this run is taken in
        shown.append((report["complete"], sorted(r["run"] for r in report["runs"]), sorted(taken)))
        restore(self, run, states, gained)
        taken.add(run.name)

    taken: set[str] = set()
    monkeypatch.setattr(LogdirIndex, "restore_run", watched)
    live.reload()
    assert len(shown) == 5
    # A run's files are taken in before its part (which only then is shown): a report shows fewer runs than were
    # taken in while their parts are on their way, never more.
    assert all(not complete and set(runs) <= set(before) for complete, runs, before in shown)
    assert live.report()["complete"] and len(live.report()["runs"]) == 5


def test_a_runs_files_are_taken_in_before_its_part_and_a_part_not_sent_is_built_here(logdir, spawned, monkeypatch):
    _, expected = read_here(logdir)
    order = []
    restore, adopt = LogdirIndex.restore_run, Reporter.adopt
    monkeypatch.setattr(
        LogdirIndex, "restore_run", lambda self, run, *a: order.append(("read", run.name)) or restore(self, run, *a)
    )
    monkeypatch.setattr(
        Reporter, "adopt", lambda self, run, part: order.append(("part", run.name)) or adopt(self, run, part)
    )
    _, report = first_pass_of(logdir)
    assert json.dumps(report, sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert sorted(order) == sorted([(kind, run["run"]) for run in expected["runs"] for kind in ("read", "part")])
    assert all(order.index(("read", name)) < order.index(("part", name)) for _, name in order)
    # Processes that end once they have sent what they read, before any part: every run is reported here.
    monkeypatch.setattr(
        first_pass,
        "ENTRY",
        "import os, pickle; dumps = pickle.dumps; "
        "pickle.dumps = lambda message, **k: os._exit(0) if message[0] == 'part' else dumps(message, **k); "
        + first_pass.ENTRY,
    )
    order.clear()
    built = []
    build = report_module.build_run_report
    monkeypatch.setattr(report_module, "build_run_report", lambda *a: built.append(a) or build(*a))
    _, report = first_pass_of(logdir)
    assert json.dumps(report, sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert {kind for kind, _ in order} == {"read"} and len(built) == len(expected["runs"])


def test_closing_ends_a_spawned_pass_under_way(logdir, spawned, monkeypatch):
    monkeypatch.setattr(first_pass, "ENTRY", "import time; time.sleep(600)")
    index = LogdirIndex(str(logdir), contain_errors=True)
    live = LiveReport(index, Reporter(index), reload_interval=0)
    reader = threading.Thread(target=live.reload)
    reader.start()
    for _ in range(6000):
        if len(spawned) == 2 or not reader.is_alive():
            break
        reader.join(0.01)
    live.close()  # as at TensorBoard's exit
    reader.join(60)
    assert not reader.is_alive()
    for pid in spawned:  # killed and reaped
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_no_more_processes_are_spawned_than_have_enough_to_read(logdir, spawned, monkeypatch):
    monkeypatch.setattr(first_pass, "processes", lambda: 8)
    first_pass_of(logdir)  # a few kilobytes: far less than SHARE_MIN_BYTES for each of 8
    assert len(spawned) == 2


def test_no_process_is_spawned_for_little_to_read_or_a_remote_logdir(logdir, monkeypatch):
    spawns = []
    monkeypatch.setattr(os, "posix_spawn", lambda *a, **k: spawns.append(a))
    monkeypatch.setattr(first_pass, "processes", lambda: 2)
    first_pass_of(logdir)  # a few kilobytes: below SPAWN_MIN_BYTES
    monkeypatch.setattr(first_pass, "SPAWN_MIN_BYTES", 0)
    monkeypatch.setattr(first_pass, "is_local", lambda path: False)
    first_pass_of(logdir)
    monkeypatch.setattr(first_pass, "is_local", lambda path: True)
    monkeypatch.setattr(first_pass, "processes", lambda: 1)
    first_pass_of(logdir)
    assert spawns == []


def test_a_series_pickles_to_its_values_and_the_shared_layout():
    series = Series("tensor")
    steps = np.array([0, 1, 1, 2**40], dtype=np.int64)  # a step past int32: the wide layout
    series.append(steps, np.arange(4.0), np.array([8, 9, 10, 11]), np.array([0, 0, 1, 0], dtype=np.uint32))
    series.lanes()
    back = pickle.loads(pickle.dumps(series))
    for field in ("steps", "wall_times", "offsets", "indices"):
        assert getattr(back, field).tolist() == getattr(series, field).tolist()
    assert back._rows.dtype is series._rows.dtype  # one dtype object per layout, as in the process that read it
    assert back._lanes is None and back.lanes().most == 2
    back.append(np.array([7]), np.array([1.0]), np.array([12]), np.array([0], dtype=np.uint32))  # grows on here
    assert back.steps.tolist() == [0, 1, 1, 2**40, 7]


@pytest.mark.slow
def test_a_real_tensorboard_spawns_its_first_pass_and_serves_the_scans_report(logdir, tmp_path_factory):
    """In TensorBoard's own threaded process (the threshold lowered there so a small logdir is shared out), the
    first pass is read by spawned processes, and the tab's report and a lane's histograms are the scan's."""
    from tensorboard_process import get_json, tensorboard_process

    from tb_varscope_plugin import scan

    # Each spawn noted as it happens: a reader of a few kilobytes is gone before a look at the processes finds it.
    spawned = tmp_path_factory.mktemp("spawned") / "commands"
    setup = (
        "from tb_varscope_plugin import report; from tb_varscope_plugin.server import first_pass\n"
        "first_pass.SPAWN_MIN_BYTES = report.FORK_MIN_BYTES = report.H5_WORK_BYTES = 0\n"
        "first_pass.processes = lambda: 2\n"
        "import os; spawn = os.posix_spawn\n"
        f"os.posix_spawn = lambda path, argv, *a, **k: open({str(spawned)!r}, 'a').write(repr(argv) + '\\n') "
        "and spawn(path, argv, *a, **k)"
    )
    with tensorboard_process(logdir, setup=setup) as (base, process):
        for _ in range(6000):
            tab = get_json(base, "data/plugin/varscope/report")
            if tab["complete"]:
                break
        lane = get_json(base, "data/plugin/varscope/histograms", run="c", tag="kernel", lane="2")
    readers = [line for line in spawned.read_text().splitlines() if first_pass.ENTRY in line]
    assert len(readers) == 2, "the first pass was not read by two spawned readers"
    expected = scan(str(logdir))
    assert json.dumps({**tab, "complete": None}, sort_keys=True) == json.dumps(
        {**expected, "complete": None}, sort_keys=True
    )
    index = LogdirIndex(str(logdir))
    index.reload()
    run = index.runs["c"]
    refs = run.lane_refs("kernel", 2)
    assert [[step, buckets] for _, step, buckets in lane] == [
        [ref.step, b.tolist()] for ref, b in zip(refs, run.decode_all(refs), strict=True)
    ]


def test_small_runs_beside_h5_checkpoints_are_spawned_for_their_checkpoints(tmp_path, monkeypatch):
    """A sweep of Keras trainings: few bytes of events, but each run's checkpoint is HDF5 work (see
    `report.with_checkpoints`), so the pass is spawned; the same runs without their checkpoints are read here."""
    for threshold in (first_pass, "SPAWN_MIN_BYTES"), (report_module, "FORK_MIN_BYTES"):  # for 5 runs, not 129
        monkeypatch.setattr(*threshold, 4 * report_module.H5_WORK_BYTES)
    monkeypatch.setattr(first_pass, "processes", lambda: 2)
    for i in range(5):
        copy_real("model.weights.h5", colliding_run(tmp_path / "logs" / f"r{i}", "model.weights.h5"))
    expected_index, expected = read_here(tmp_path / "logs")
    spawns = []
    spawn = os.posix_spawn
    monkeypatch.setattr(os, "posix_spawn", lambda *a, **k: spawns.append(a) or spawn(*a, **k))
    read = []
    read_checkpoint = report_module.read_checkpoint
    monkeypatch.setattr(report_module, "read_checkpoint", lambda path: read.append(path) or read_checkpoint(path))
    index, report = first_pass_of(tmp_path / "logs")
    assert len(spawns) == 2
    assert json.dumps(report, sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert [run["checkpoint"]["format"] for run in report["runs"]] == ["keras-weights-h5"] * 5
    assert read == []  # the parts were taken in as made, with their checkpoints' stamps: none is read again here
    for checkpoint in (tmp_path / "logs").rglob("*.h5"):
        checkpoint.unlink()
    first_pass_of(tmp_path / "logs")
    assert len(spawns) == 2
