"""Report building grows linearly with runs, tags and groups: the work is counted (calls, comparisons), never timed."""

from __future__ import annotations

import os
import shutil
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from eventlogs import histogram_event, write_events
from hypothesis import given
from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub.io import gfile
from tensorboard.plugins.histogram.summary_v2 import histogram_pb

from tb_varscope_plugin import filesystem as filesystem_module
from tb_varscope_plugin import report as report_module
from tb_varscope_plugin.analysis import groups
from tb_varscope_plugin.checkpoints import discovery as discovery_module
from tb_varscope_plugin.reading import logdir as logdir_module
from tb_varscope_plugin.reading import records as records_module
from tb_varscope_plugin.reading.logdir import LogdirIndex
from tb_varscope_plugin.reading.run_index import Series
from tb_varscope_plugin.report import Reporter
from tb_varscope_plugin.schema import CROSS_FILE, SAME_STEP
from tb_varscope_plugin.server.live import LiveReport


def _merged_into_all_pairs(path: str, paths: set[str]) -> str:
    """The definition merge_targets implements, compared pair by pair."""
    longer = [p for p in paths if p != path and (p.endswith("/" + path) or p.endswith("." + path))]
    return longer[0] if path and len(longer) == 1 else path


_SEGMENT = st.sampled_from(["a", "b", "dense", "my_layer", "sequential", "fc"])


@given(
    st.sets(
        st.lists(_SEGMENT, max_size=4).flatmap(
            lambda parts: st.sampled_from(["/", "."]).map(lambda sep: sep.join(parts))
        ),
        max_size=12,
    )
)
def test_merge_targets_agrees_with_comparing_every_pair(paths):
    assert groups.merge_targets(paths) == {p: _merged_into_all_pairs(p, paths) for p in paths}


@given(st.text(alphabet="ab/._", max_size=12))
def test_path_tails_are_what_follows_each_separator(path):
    assert groups.path_tails(path) == [path[i + 1 :] for i, char in enumerate(path) if char in "/."]


def test_merge_targets_looks_at_each_path_once_among_ten_thousand(monkeypatch):
    paths = {f"sequential/block_{i // 10}/dense_{i}" for i in range(10_000)} | {"dense_7", "block_3/dense_31"}
    seen = []
    tails = groups.path_tails
    monkeypatch.setattr(groups, "path_tails", lambda path: seen.append(path) or tails(path))
    into = groups.merge_targets(paths)
    assert len(seen) == len(paths)  # each path's tails listed once: no pass over all pairs
    assert into["dense_7"] == "sequential/block_0/dense_7"
    assert into["block_3/dense_31"] == "sequential/block_3/dense_31"
    assert into["sequential/block_0/dense_7"] == "sequential/block_0/dense_7"


RUNS = 1_000


@pytest.fixture(scope="module")
def thousand_runs(tmp_path_factory) -> Path:
    """1,000 sibling runs of two steps each, one of them colliding, and one checkpoint directory they all share."""
    save_file = pytest.importorskip("safetensors.numpy").save_file
    logdir = tmp_path_factory.mktemp("thousand")
    values = np.arange(6, dtype=np.float64)
    for i in range(RUNS):
        writes = 2 if i == 7 else 1
        events = [histogram_event(step, "dense/kernel", values + k) for step in range(2) for k in range(writes)]
        write_events(str(logdir / f"run_{i:04d}" / "events.out.tfevents.1.host"), events)
    (logdir / "ckpt").mkdir()
    save_file({"dense/kernel": values}, str(logdir / "ckpt" / "model.safetensors"))
    return logdir


class Calls:
    """Counts the filesystem layer's listings and stats, and report building, by what they were asked about."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.listed: Counter[str] = Counter()
        self.stated: Counter[str] = Counter()  # entries stat'ed by the walk
        self.isdir: Counter[str] = Counter()
        self.mtime: Counter[str] = Counter()
        self.built: Counter[str] = Counter()
        self.opened: Counter[str] = Counter()  # event files opened for reading
        self.found: Counter[str] = Counter()  # runs whose checkpoint was looked for
        self.wrap(monkeypatch, filesystem_module, "listing", self.listed)  # a directory's names read, local or remote
        self.wrap(monkeypatch, filesystem_module, "entry", self.stated)
        self.wrap(monkeypatch, logdir_module, "entry", self.stated)
        self.wrap(monkeypatch, records_module, "PositionedReader", self.opened)
        self.wrap(monkeypatch, report_module, "find_checkpoint", self.found)
        self.wrap(monkeypatch, gfile, "isdir", self.isdir)
        self.wrap(monkeypatch, filesystem_module, "mtime", self.mtime)
        self.wrap(monkeypatch, discovery_module, "mtime", self.mtime)
        self.wrap(monkeypatch, report_module, "mtime", self.mtime)
        real = report_module.build_run_report
        monkeypatch.setattr(
            report_module, "build_run_report", lambda run, *a: self.built.update([run.name]) or real(run, *a)
        )

    @staticmethod
    def wrap(monkeypatch: pytest.MonkeyPatch, module, name: str, counter: Counter) -> None:
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda path, *a: counter.update([str(path)]) or real(path, *a))

    def clear(self) -> None:
        for counter in (self.listed, self.stated, self.isdir, self.mtime, self.built, self.opened, self.found):
            counter.clear()


def _live(logdir: Path) -> LiveReport:
    index = LogdirIndex(str(logdir))
    return LiveReport(index, Reporter(index), reload_interval=0)


def _settled(index: LogdirIndex) -> None:
    """Lists as if every directory had last changed long before, on a local disk: its listing is kept (see
    `KeptListings`), whatever filesystem holds the test's temporary files."""
    device = os.stat(index.logdir).st_dev
    index.listings.filesystems = lambda: {device: "ext4"}
    index.listings.clock = lambda: time.time_ns() + 10 * filesystem_module.SETTLED_NS


def test_a_reload_lists_each_directory_once_however_many_runs_share_it(thousand_runs, monkeypatch):
    # The checkpoint's reader is imported on first use, binding `mtime` then: imported before anything is counted,
    # and counted itself, its stats count alike whichever test ran first.
    from tb_varscope_plugin.checkpoints import safetensors_file

    calls = Calls(monkeypatch)
    calls.wrap(monkeypatch, safetensors_file, "mtime", calls.mtime)
    index = LogdirIndex(str(thousand_runs))
    index.reload()
    report = Reporter(index).report()  # one pass: LiveReport also publishes while reading
    assert report["summary"] == {"runs": RUNS, "histogram_tags": RUNS, "collisions": 1, "warnings": 0}
    shared = str(thousand_runs / "ckpt" / "model.safetensors")
    assert {r["checkpoint"]["path"] for r in report["runs"]} == {shared}
    # One walk: every directory listed once, each entry asked once whether it is a directory. Discovery for a
    # thousand runs lists nothing itself (it was a listing of every sibling for every run: a million).
    assert set(calls.listed.values()) == {1} and len(calls.listed) == RUNS + 2
    assert sum(calls.isdir.values()) <= 2 * RUNS + 3  # reading the checkpoint asks once more
    # The shared checkpoint is weighed once per pass, not once per run: by discovery, by the report's stamp and by
    # its reader.
    assert calls.mtime[shared] <= 3 and sum(calls.mtime.values()) <= 3 * RUNS
    assert len(calls.built) == RUNS


def test_a_reload_with_no_new_bytes_builds_nothing_and_publishes_the_same_report(thousand_runs, monkeypatch):
    live = _live(thousand_runs)
    _settled(live.index)
    live.reload()
    before = live.report()
    calls = Calls(monkeypatch)
    live.reload()
    assert not calls.built  # no report building at all
    assert not calls.found  # nor any look at the runs: the index says nothing changed
    assert not calls.opened  # no event file opened: the walk's stat shows each as it was read
    assert live.report() is before  # the published report, and so its bytes and ETag, stay as they were
    # The one walk per reload reads no directory's names again (their times stand): it stats each run's directory
    # and event file, the checkpoint's directory and file, and the logdir.
    assert not calls.listed
    assert set(calls.stated.values()) == {1} and len(calls.stated) == 2 * RUNS + 3
    assert sum(calls.isdir.values()) + sum(calls.mtime.values()) <= 3 * RUNS  # and the checkpoints' stats


def test_a_checkpoint_saved_again_under_its_name_is_read_again_though_nothing_else_changed(thousand_runs, tmp_path):
    logdir = tmp_path / "logs"
    shutil.copytree(thousand_runs, logdir)
    live = _live(logdir)
    live.reload()
    before = live.report()
    shared = logdir / "ckpt" / "model.safetensors"
    save_file = pytest.importorskip("safetensors.numpy").save_file
    save_file({"dense/kernel": np.arange(6, dtype=np.float64), "dense/bias": np.zeros(2)}, str(shared))
    stamp = shared.stat().st_mtime + 10
    os.utime(shared, (stamp, stamp))  # a later save, however coarse the filesystem's clock
    live.reload()
    after = live.report()
    assert after is not before
    assert {r["checkpoint"]["variables"] for r in after["runs"]} == {2}


def test_a_run_whose_file_grew_is_the_only_one_rebuilt(thousand_runs, tmp_path, monkeypatch):
    logdir = tmp_path / "logs"
    shutil.copytree(thousand_runs, logdir)
    live = _live(logdir)
    live.reload()
    before = live.report()
    events = [histogram_event(2, "dense/kernel", np.ones(6)), histogram_event(2, "dense/kernel", np.zeros(6))]
    write_events(str(logdir / "run_0042" / "events.out.tfevents.1.host"), events, append=True)
    calls = Calls(monkeypatch)
    live.reload()
    after = live.report()
    assert calls.built == Counter({"run_0042": 1})
    assert after["summary"]["collisions"] == 2
    kept = [a is b for a, b in zip(before["runs"], after["runs"], strict=True)]
    assert kept.count(False) == 1 and not kept[42]


def _small_histograms(path: Path, tags: int, steps: int) -> None:
    """`tags` histogram tags logged at each of `steps` steps, with one bucket each to keep the file small."""
    values = np.arange(3.0)
    events = [
        event_pb2.Event(step=step, wall_time=1.7e9 + step, summary=histogram_pb(f"layer_{t}/kernel", values, buckets=1))
        for step in range(steps)
        for t in range(tags)
    ]
    write_events(str(path / "events.out.tfevents.1.host"), events)


@pytest.mark.parametrize(
    ("tags", "steps", "per_value", "per_series"),
    [
        (20, 2_500, 24, 0),  # long series: 24 bytes a value at most, all included (16.5 measured)
        (2_000, 25, 20, 1_000),  # short ones: each series' array and its tag's entries add up to 1 KB (650 measured)
    ],
)
def test_memory_per_indexed_value(tmp_path, tags, steps, per_value, per_series):
    _small_histograms(tmp_path, tags, steps)
    tracemalloc.start()
    try:
        index = LogdirIndex(str(tmp_path))
        index.reload()
        run = index.runs["."]
        assert all(run.most_per_step(tag) == 1 for tag in run.histogram_tags())  # lanes, as the report sorts them
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(len(s) for s in run.files[0].series.values()) == tags * steps
    # A size, measured, not a time: 16 bytes a value (step, wall time and offset, 4-byte wide where they fit) and
    # an eighth of slack at most, besides what each series costs whatever its length.
    assert kept <= per_value * tags * steps + per_series * tags


def test_series_widen_to_8_bytes_for_steps_and_offsets_past_4_bytes():
    series = Series("tensor")
    one = np.ones(1, dtype=np.int64)
    series.append(one * 5, one * 1.5, one * 100, one * 0)
    series.append(one * (1 << 40), one * 2.5, one * (5 << 30), one * 3)  # a huge global step, a 5 GiB offset
    series.append(one * -1, one * 3.5, one * 7, one * 0)
    assert series.steps.tolist() == [5, 1 << 40, -1]
    assert series.offsets.tolist() == [100, 5 << 30, 7]
    assert series.wall_times.tolist() == [1.5, 2.5, 3.5]
    assert series.indices.tolist() == [0, 3, 0]


_COLUMN_VALUES = st.lists(
    st.tuples(
        st.sampled_from([0, 1, 7, -3, (1 << 31) - 1, 1 << 31, 1 << 40]),  # steps, some past 4 bytes
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([0, 40, 900, (1 << 32) - 1, 1 << 32, 5 << 30]),  # offsets, some past 4 bytes
        st.sampled_from([0, 0, 0, 2]),  # indices, mostly 0
    ),
    min_size=1,
    max_size=6,
)


@given(
    st.lists(st.tuples(_COLUMN_VALUES, st.lists(_COLUMN_VALUES, max_size=2)), min_size=1, max_size=8),
    st.lists(st.booleans(), min_size=8, max_size=8),
)
def test_series_given_values_in_one_batch_hold_what_appending_to_each_gives(series_values, held_before):
    """`_append_groups` gives a batch's values to series that held none at once, in one array for all: each then
    holds what appending its values to it alone gives (steps, times, offsets, indices, layout, whether its steps
    are known to rise), and goes on growing as such a series does, leaving the others as they were."""
    from tb_varscope_plugin.reading.run_index import _append_groups

    def columns(values):
        steps, wall_times, offsets, indices = zip(*values, strict=True)
        return (
            np.array(steps, dtype=np.int64),
            np.array(wall_times),
            np.array(offsets, dtype=np.int64),
            np.array(indices, dtype=np.int64),
        )

    def bounds(values):
        steps = [v[0] for v in values]
        rises = all(a < b for a, b in zip(steps, steps[1:], strict=False))
        return min(steps), max(steps), max(v[2] for v in values), any(v[3] for v in values), rises

    batched = [Series("tensor") for _ in series_values]
    alone = [Series("tensor") for _ in series_values]
    for (values, _), held, b, a in zip(series_values, held_before, batched, alone, strict=False):
        if held:  # a series that holds values already is appended to as before
            for s in (b, a):
                s.append(*columns(values[:1]), bounds(values[:1]))
    firsts = np.cumsum([0, *(len(values) for values, _ in series_values[:-1])])
    _append_groups(
        batched, *(np.concatenate(c) for c in zip(*(columns(v) for v, _ in series_values), strict=True)), firsts
    )
    for (values, _), s in zip(series_values, alone, strict=True):
        s.append(*columns(values), bounds(values))
    for (_, later), b, a in zip(series_values, batched, alone, strict=True):
        for values in later:
            for s in (b, a):
                s.append(*columns(values), bounds(values))
    for b, a in zip(batched, alone, strict=True):
        assert b.steps.tolist() == a.steps.tolist() and b.wall_times.tolist() == a.wall_times.tolist()
        assert b.offsets.tolist() == a.offsets.tolist() and b.indices.tolist() == a.indices.tolist()
        assert b._rows.dtype == a._rows.dtype and b._rises() == a._rises()


def test_a_file_with_many_tags_appends_to_each_series_once_per_reload(tmp_path, monkeypatch):
    from tb_varscope_plugin.reading import records

    _small_histograms(tmp_path, tags=2_000, steps=3)
    monkeypatch.setattr(records, "BLOCK", 4096)  # many blocks, each with a value or two of many tags
    from tb_varscope_plugin.reading import run_index

    appended = Counter()  # values given to a series, whether appended or given to a series that held none
    real, real_create = Series.append, run_index._create_rows
    monkeypatch.setattr(Series, "append", lambda s, *columns: appended.update([id(s)]) or real(s, *columns))

    def create(layout, targets, *rest):
        appended.update(map(id, targets))
        real_create(layout, targets, *rest)

    monkeypatch.setattr(run_index, "_create_rows", create)
    index = LogdirIndex(str(tmp_path))
    index.reload()
    series = index.runs["."].files[0].series
    assert len(series) == 2_000 and all(s.steps.tolist() == [0, 1, 2] for s in series.values())
    assert len(appended) == 2_000 and set(appended.values()) == {1}


def test_a_file_with_many_tags_looks_for_series_to_create_only_while_a_tag_has_none(tmp_path, monkeypatch):
    """Once every tag of a file has its series, a buffer's values go to them without a look at each tag: a file
    of 10,000 tags would otherwise look up thousands of tags in every buffer (a tenth of reading it)."""
    from tb_varscope_plugin.reading import records
    from tb_varscope_plugin.reading.run_index import EventFile

    _small_histograms(tmp_path, tags=2_000, steps=3)
    monkeypatch.setattr(records, "BLOCK", 4096)  # many buffers, each with a value or two of many tags
    looks = Counter()

    class Looked(dict):
        def __contains__(self, tag):
            looks[tag] += 1
            return super().__contains__(tag)

    event_file = EventFile(str(tmp_path / "events.out.tfevents.1.host"))
    event_file.series = Looked()
    event_file.reload()
    assert len(event_file.series) == 2_000 and all(len(s) == 3 for s in event_file.series.values())
    assert sum(looks.values()) < 2_100  # the first step's; 6,000 if every value's tag were looked up


def test_sizing_300_colliding_tags_opens_the_event_file_once(tmp_path, monkeypatch):
    """Each lane's size comes from its last value: those of every colliding tag are decoded in one pass over the
    file, not with an opening of the file for each tag."""
    from tb_varscope_plugin.reading import run_index

    values = np.arange(3.0)
    events = [
        event_pb2.Event(step=step, summary=histogram_pb(f"block_{t}/kernel", values + layer, buckets=1))
        for step in range(3)
        for t in range(300)
        for layer in range(2)  # two layers under one tag
    ]
    write_events(str(tmp_path / "events.out.tfevents.1.host"), events)
    index = LogdirIndex(str(tmp_path))
    index.reload()
    opened = []
    real = run_index.PositionedReader
    monkeypatch.setattr(run_index, "PositionedReader", lambda path: opened.append(path) or real(path))
    report = report_module.build_run_report(index.runs["."])
    assert len(report["collisions"]) == 300 and len(opened) == 1


def test_finding_collisions_looks_closer_only_at_tags_that_repeat_a_step_or_share_a_file(tmp_path, monkeypatch):
    """Of 2,000 tags, the 20 written twice at a step and the 10 a second file also holds are the only ones whose
    series are examined as candidates; the other 1,970 cost a set lookup each."""
    from tb_varscope_plugin.analysis import collisions

    values = np.arange(3.0)
    first = [
        event_pb2.Event(step=step, summary=histogram_pb(f"block_{t}/kernel", values, buckets=1))
        for step in range(2)
        for t in range(2_000)
        for _ in range(2 if t < 20 else 1)  # two layers under each of the first 20 tags
    ]
    resumed = [
        event_pb2.Event(step=1, summary=histogram_pb(f"block_{t}/kernel", values, buckets=1))
        for t in range(1_990, 2_000)
    ]
    write_events(str(tmp_path / "events.out.tfevents.1.host"), first)
    write_events(str(tmp_path / "events.out.tfevents.2.host"), resumed)
    index = LogdirIndex(str(tmp_path))
    index.reload()
    looked: Counter[str] = Counter()
    for name in ("_same_step", "_cross_file"):
        real = getattr(collisions, name)
        monkeypatch.setattr(
            collisions, name, lambda run, tag, real=real, name=name: looked.update([name]) or real(run, tag)
        )
    found = collisions.find_collisions(index.runs["."])
    kinds = Counter(f.kind for f in found)
    assert kinds == {SAME_STEP: 20, CROSS_FILE: 10}
    assert looked == {"_same_step": 20, "_cross_file": 10}
