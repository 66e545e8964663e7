"""Reading a logdir's files in forked processes gives the index that reading them in turn gives."""

import os
import time

import numpy as np
import pytest
from eventlogs import histogram_event, layered_run, write_events

from tb_varscope_plugin.reading import logdir as logdir_module
from tb_varscope_plugin.reading import parallel
from tb_varscope_plugin.reading.logdir import LogdirIndex
from tb_varscope_plugin.reading.run_index import EventFile
from tb_varscope_plugin.report import Reporter
from tb_varscope_plugin.server import live as live_module
from tb_varscope_plugin.server.live import LiveReport


def state(index):
    return {
        f.path: (
            f.reader.offset,
            f.reader.pending,
            f.reader.damage,
            {
                t: (s.encoding, *(c.tolist() for c in (s.steps, s.wall_times, s.offsets, s.indices)))
                for t, s in f.series.items()
            },
            run.generation,
        )
        for run in index.runs.values()
        for f in run.files
    }


@pytest.fixture
def logdir(tmp_path, monkeypatch):
    monkeypatch.setattr(parallel, "FORK_MIN_BYTES", 0)
    for run, sizes in [("a", [4, 8]), ("b", [16]), ("c", [3, 5, 7])]:
        layered_run(str(tmp_path / run / "events.out.tfevents.1.x"), "kernel", sizes, steps=5)
    values = np.linspace(0, 1, 10)
    write_events(str(tmp_path / "a" / "events.out.tfevents.2.x"), [histogram_event(s, "k", values) for s in range(3)])
    torn = tmp_path / "c" / "events.out.tfevents.2.x"
    write_events(str(torn), [histogram_event(s, "k", values) for s in range(3)])
    torn.write_bytes(torn.read_bytes()[:-9])
    return tmp_path


def read(logdir, processes):
    index = LogdirIndex(str(logdir))
    index.reload(processes=processes)
    return index


@pytest.fixture
def forks(monkeypatch):
    """How many reading processes were forked."""
    made = []
    fork_reader = parallel._fork_reader

    def counted(*args):
        made.append(args)
        return fork_reader(*args)

    monkeypatch.setattr(parallel, "_fork_reader", counted)
    return made


def test_forked_reading_gives_the_same_index(logdir, forks):
    alone = read(logdir, 1)
    forked = read(logdir, 2)
    assert len(forks) == 1
    assert state(forked) == state(alone)
    assert any(f.reader.pending for f in forked.runs["c"].files)
    # Both go on reading from where they stopped.
    layered_run(str(logdir / "d" / "events.out.tfevents.1.x"), "bias", [2], steps=3)
    alone.reload(processes=1)
    forked.reload(processes=2)
    assert state(forked) == state(alone)


def test_a_child_that_fails_leaves_its_share_to_the_parent(logdir, forks, failing_children):
    assert state(read(logdir, 2)) == state(read(logdir, 1))
    assert len(forks) == 1


def test_a_stuck_child_is_stopped_and_its_share_read_here(logdir, monkeypatch, forks):
    parent = os.getpid()
    dumps = parallel.pickle.dumps

    def hang_in_child(*args, **kwargs):
        if os.getpid() != parent:
            time.sleep(3600)
        return dumps(*args, **kwargs)

    monkeypatch.setattr(parallel.pickle, "dumps", hang_in_child)
    monkeypatch.setattr(parallel, "CHILD_GRACE_SECONDS", 0.5)
    started = time.monotonic()
    assert state(read(logdir, 2)) == state(read(logdir, 1))
    assert len(forks) == 1
    assert time.monotonic() - started < 30


def test_a_snapshot_carries_every_attribute_reading_sets(tmp_path):
    """A forked reader sends back `EventFile.snapshot()`: an attribute added to EventFile but left out of STATE
    would be lost silently on every forked read, so it fails here."""
    path = str(tmp_path / "events.out.tfevents.1.x")
    layered_run(path, "kernel", [3, 5], steps=2)
    f = EventFile(path)
    f.reload()
    # read_version is the index's note of what it had read, set in the parent after any read; _known is _kinds
    # indexed, made again from it wherever it is missing or no longer _kinds'.
    assert set(vars(f)) == set(EventFile.STATE) | {"path", "name", "read_version", "_known"}
    copy = EventFile(path)
    copy.restore(f.snapshot())
    assert copy.reader.offset == f.reader.offset > 0
    assert {t: list(s.steps) for t, s in copy.series.items()} == {"kernel": [0, 0, 1, 1]}


def test_progress_hears_of_each_run_once_every_run_found_is_read(logdir, monkeypatch):
    """The tab publishes partial reports from `progress`: none may show a run found but not read (as clean)."""
    monkeypatch.setattr(logdir_module, "BATCH_BYTES", 1)  # small runs are read in batches; one run a batch here
    index = LogdirIndex(str(logdir))
    heard = []

    def progress(name):
        heard.append((name, all(f.read_version is not None for run in index.runs.values() for f in run.files)))

    index.reload(progress)
    assert sorted(name for name, _ in heard) == sorted(index.runs) == ["a", "b", "c"]
    assert all(read for _, read in heard)


def test_the_tab_fills_in_run_by_run_while_the_first_pass_reads(logdir, monkeypatch):
    """Partial reports are published while the logdir is read, each showing the runs read so far."""
    monkeypatch.setattr(logdir_module, "BATCH_BYTES", 1)  # one run a batch
    monkeypatch.setattr(live_module, "PUBLISH_INTERVAL", 0)  # publish at every run read
    index = LogdirIndex(str(logdir))
    live = LiveReport(index, Reporter(index), reload_interval=0)
    shown = []
    publish = live._publish

    def watched():
        publish()
        report = live.report()
        shown.append((report["complete"], [run["run"] for run in report["runs"]]))  # an unread run shows too

    monkeypatch.setattr(live, "_publish", watched)
    live.reload()
    assert shown == [(False, ["a"]), (False, ["a", "b"]), (False, ["a", "b", "c"]), (True, ["a", "b", "c"])]
