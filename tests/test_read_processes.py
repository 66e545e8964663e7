"""Reading a logdir's files in forked processes gives the index that reading them in turn gives."""

import os
import time

import numpy as np
import pytest
from eventlogs import histogram_event, layered_run, write_events

from tb_varscope_plugin import run_index
from tb_varscope_plugin.run_index import LogdirIndex


def state(index):
    return {
        f.path: (
            f.reader.offset,
            f.reader.pending,
            f.reader.damage,
            {t: (s.encoding, s.steps, s.wall_times, s.offsets, s.indices) for t, s in f.series.items()},
            run.generation,
        )
        for run in index.runs.values()
        for f in run.files
    }


@pytest.fixture
def logdir(tmp_path, monkeypatch):
    monkeypatch.setattr(run_index, "FORK_MIN_BYTES", 0)
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
    fork_reader = run_index._fork_reader

    def counted(*args):
        made.append(args)
        return fork_reader(*args)

    monkeypatch.setattr(run_index, "_fork_reader", counted)
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


def test_a_child_that_fails_leaves_its_share_to_the_parent(logdir, monkeypatch, forks):
    parent = os.getpid()
    dumps = run_index.pickle.dumps

    def fail_in_child(*args, **kwargs):
        if os.getpid() != parent:
            raise RuntimeError("child fails")
        return dumps(*args, **kwargs)

    monkeypatch.setattr(run_index.pickle, "dumps", fail_in_child)
    assert state(read(logdir, 2)) == state(read(logdir, 1))
    assert len(forks) == 1


def test_a_stuck_child_is_stopped_and_its_share_read_here(logdir, monkeypatch, forks):
    parent = os.getpid()
    dumps = run_index.pickle.dumps

    def hang_in_child(*args, **kwargs):
        if os.getpid() != parent:
            time.sleep(3600)
        return dumps(*args, **kwargs)

    monkeypatch.setattr(run_index.pickle, "dumps", hang_in_child)
    monkeypatch.setattr(run_index, "CHILD_GRACE_SECONDS", 0.5)
    started = time.monotonic()
    assert state(read(logdir, 2)) == state(read(logdir, 1))
    assert len(forks) == 1
    assert time.monotonic() - started < 30
