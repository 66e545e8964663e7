"""One event file read in segments at once (reading/parallel.py) leaves exactly the state one sequential `reload()`
leaves: the same series, tags, warnings, reader position, tail, pending bytes and damage. Cut points are checked the
hard way: records whose payload holds bytes framed like records, damage, a torn last record, TF2 values that name
their plugin only once.

The property test's default keeps the fast suite fast; `VARSCOPE_FUZZ_EXAMPLES=2000` runs a long search.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
from eventlogs import histogram_event, read_records, write_events
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from tensorboard.summary.writer.record_writer import RecordWriter
from test_bad_values import BAD_LEGACY, BAD_TENSORS, DT_DOUBLE, tensor

from tb_varscope_plugin.filesystem import PositionedReader
from tb_varscope_plugin.reading import parallel, run_index
from tb_varscope_plugin.reading.records import FOOTER, HEADER, record_boundary
from tb_varscope_plugin.reading.run_index import SKIPPED_SHOWN, EventFile, Series

FUZZ = settings(
    max_examples=int(os.environ.get("VARSCOPE_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
NAME = "events.out.tfevents.1.host"


def frame(payload: bytes) -> bytes:
    """`payload` as one TFRecord, framed as RecordWriter frames it."""
    with tempfile.TemporaryFile() as f:
        RecordWriter(f).write(payload)
        f.seek(0)
        return f.read()


def without_metadata(event: event_pb2.Event) -> event_pb2.Event:
    """As TF2's writer writes every value of a tag after the first: no plugin named."""
    for value in event.summary.value:
        value.ClearField("metadata")
    return event


def mixed_events(steps: int = 12, seed: int = 0) -> list[event_pb2.Event]:
    """What real runs hold, in one file: TF2 histograms (plugin named on the first value of each tag only), legacy
    ones, scalars, a merged multi-value summary, and values that do not decode (more than SKIPPED_SHOWN)."""
    rng = np.random.default_rng(seed)
    events = []
    for step in range(steps):
        for layer in range(3):
            event = histogram_event(step, f"dense_{layer}/kernel", rng.normal(size=20 + layer))
            events.append(event if step == 0 else without_metadata(event))
        events.append(histogram_event(step, "legacy/bias", rng.normal(size=8), legacy=True))
        events.append(event_pb2.Event(step=step, wall_time=1.0 + step, summary=scalar_pb("loss", 1.0 / (step + 1))))
        merged = summary_pb2.Summary(
            value=[*histogram_event(step, "merged/a", rng.normal(size=5), legacy=True).summary.value]
            + [*histogram_event(step, "merged/b", rng.normal(size=6), legacy=True).summary.value]
        )
        events.append(event_pb2.Event(step=step, wall_time=2.0 + step, summary=merged))
        bad = list(BAD_TENSORS.values())[step % len(BAD_TENSORS)][0]
        events.append(event_pb2.Event(step=step, summary=summary_pb2.Summary(value=[bad])))
        bad = list(BAD_LEGACY.values())[step % len(BAD_LEGACY)][0]
        events.append(event_pb2.Event(step=step, summary=summary_pb2.Summary(value=[bad])))
    return events


def write(path: Path, events: list[event_pb2.Event]) -> bytes:
    """Writes `events` after a file_version event, with TensorBoard's own record writer; returns the file."""
    head = event_pb2.Event(wall_time=1.0, file_version="brain.Event:2")
    data = b"".join(frame(e.SerializeToString()) for e in [head, *events])
    path.write_bytes(data)
    return data


def state(f: EventFile) -> dict:
    """Everything reading leaves in an EventFile, tag ids by name (they are internal), orders kept."""
    return {
        "series": [
            (tag, s.encoding, *(c.tolist() for c in (s.steps, s.wall_times, s.offsets, s.indices)))
            for tag, s in f.series.items()
        ],
        # As the report sees them: where appends knew a series' steps rise, its lanes were taken from that.
        "lanes": [(tag, *lanes_of(s)) for tag, s in f.series.items()],
        "tags": f._tags,
        "tags()": f.tags(),
        "kinds": [(key, None if kind < 0 else f._tags[kind]) for key, kind in f._kinds.items()],
        "plugins": list(f._plugins.items()),
        "warnings": f.warnings(),
        "skipped": (f.skipped, f.skipped_more),
        "readable_end": f.readable_end(),
        "reader": (f.reader.offset, f.reader.tail, f.reader.pending, f.reader.damage),
        "origin": f.origin,
        "error": f.error,
        "restarted": f.restarted,
    }


def lanes_of(s: Series) -> tuple:
    """A series' lanes as the report reads them, and that they are what its steps make."""
    steps, counts = s.step_counts()
    lanes = [s.lane_positions(k).tolist() for k in range(s.lanes().most)]
    assert _fields(s.lanes()) == _fields(run_index._Lanes.of(s.steps)), "the lanes kept are not the steps' lanes"
    return steps.tolist(), counts.tolist(), lanes


def _fields(lanes: run_index._Lanes) -> list:
    return [value.tolist() if isinstance(value, np.ndarray) else value for value in vars(lanes).values()]


def sequential(path: Path) -> tuple[bool, dict]:
    f = EventFile(str(path))
    return f.reload(), state(f)


def in_segments(path: Path, starts: list[int]) -> tuple[bool, dict]:
    added, f = joined(path, starts)
    return added, state(f)


def joined(path: Path, starts: list[int]) -> tuple[bool, EventFile]:
    """The file read as segments from `starts` (0 first), each into an EventFile of its own and sent through
    pickle as a forked reader sends it, then joined as read_files joins them."""
    units: dict[parallel.Unit, int] = {}
    results = {}
    for start, end in zip(starts, [*starts[1:], None], strict=True):
        units[0, start, end] = 0
        segment = EventFile(str(path))
        added = segment.read_range(start, end, alone=True)
        received = EventFile(str(path))
        received.restore(pickle.loads(pickle.dumps(segment.snapshot())))
        results[0, start, end] = (added, received)
    f = EventFile(str(path))
    return parallel._join(f, units, results, 0), f


def boundaries(path: Path, cuts: list[int]) -> list[int]:
    """Segment starts as read_files finds them, from the cut points given."""
    size = path.stat().st_size
    starts = [0]
    with PositionedReader(str(path)) as source:
        for cut in sorted(cuts):
            found = record_boundary(source, max(cut, starts[-1] + 1), size, size)
            if found is not None and found > starts[-1]:
                starts.append(found)
    return starts


def record_spans(path: Path) -> list[tuple[int, int]]:
    return [(offset, offset + HEADER + len(payload) + FOOTER) for offset, payload in read_records(str(path))]


@pytest.mark.parametrize("pieces", [2, 3, 4])
def test_a_file_read_in_segments_is_the_file_read_in_turn(tmp_path, pieces):
    path = tmp_path / NAME
    write(path, mixed_events())
    size = path.stat().st_size
    starts = boundaries(path, [size * k // pieces for k in range(1, pieces)])
    assert len(starts) == pieces
    alone = sequential(path)
    assert alone[1]["skipped"][1] > 0  # more bad values than are listed: the cap is joined across segments
    assert len(alone[1]["skipped"][0]) == SKIPPED_SHOWN
    assert in_segments(path, starts) == alone


def test_series_joined_from_segments_know_that_their_steps_rise(tmp_path):
    """The join appends every series' later values as one batch, which works out, as sequential reading does,
    that a series' steps still rise: the report then takes its lanes as they are, sorting none."""
    path = tmp_path / NAME
    write(path, [histogram_event(step, f"layer_{t}/kernel", np.arange(4.0)) for step in range(8) for t in range(5)])
    size = path.stat().st_size
    starts = boundaries(path, [size // 3, 2 * size // 3])
    assert len(starts) == 3
    _, f = joined(path, starts)
    # Before anything asks for lanes, which would work them out from the steps.
    assert len(f.series) == 5 and all(s._lanes is run_index._Lanes.rising(8) for s in f.series.values())
    assert state(f) == sequential(path)[1]


def test_a_file_joined_from_segments_reads_on_as_it_grows(tmp_path):
    """The joined series share one array, each its exact part: values appended later move each to its own."""
    path = tmp_path / NAME
    write(path, [histogram_event(step, f"layer_{t}/kernel", np.arange(4.0)) for step in range(8) for t in range(3)])
    size = path.stat().st_size
    _, f = joined(path, boundaries(path, [size // 2]))
    write_events(
        str(path),
        [histogram_event(s, f"layer_{t}/kernel", np.arange(4.0)) for s in range(8, 12) for t in range(3)],
        append=True,
    )
    assert f.reload()
    assert [len(s) for s in f.series.values()] == [12, 12, 12]
    assert state(f) == sequential(path)[1]


@pytest.mark.parametrize("wide_half", [0, 1])
def test_segments_whose_series_differ_in_layout_join_as_read_in_turn(tmp_path, wide_half):
    """A series whose steps pass int32 in one segment only is 8 bytes wide there and 4 in the other: the join widens
    it as reading in turn does, rather than copying rows of two layouts into one."""
    path = tmp_path / NAME
    steps = [s + (1 << 40 if (s >= 6) == bool(wide_half) else 0) for s in range(12)]
    write(path, [histogram_event(step, f"layer_{t}/kernel", np.arange(4.0)) for step in steps for t in range(3)])
    size = path.stat().st_size
    starts = boundaries(path, [size // 2])
    added, f = joined(path, starts)
    assert {s._rows.dtype["step"] for s in f.series.values()} == {np.dtype(np.int64)}
    assert (added, state(f)) == sequential(path)


def test_a_segment_start_found_inside_a_record_is_not_believed(tmp_path):
    """A histogram whose content bytes are two well-framed records: the boundary search, started inside it, finds
    the first of them (four CRCs pass), and the join must see that the segment before did not end there."""
    inner = frame(histogram_event(7, "fake", np.arange(5.0)).SerializeToString())
    content = inner + frame(event_pb2.Event(step=8).SerializeToString())
    content += bytes(-len(content) % 24)
    trap = tensor(DT_DOUBLE, [len(content) // 24, 3], tensor_content=content)
    trap.tag = "trap"
    trap.metadata.plugin_data.plugin_name = "histograms"
    events = mixed_events(steps=3)
    events.insert(10, event_pb2.Event(step=1, summary=summary_pb2.Summary(value=[trap])))
    path = tmp_path / NAME
    data = write(path, events)
    trap_start, trap_end = next(span for span in record_spans(path) if data.find(inner, *span) >= 0)
    false = data.find(inner, trap_start)
    starts = boundaries(path, [trap_start + HEADER])
    assert starts == [0, false]  # the search is fooled, as intended
    alone = sequential(path)
    assert in_segments(path, starts) == alone
    assert trap_start < false < trap_end
    # ... as it is when the cut lies in the trap and more segments follow.
    starts = boundaries(path, [trap_start + HEADER, trap_end + 100, path.stat().st_size * 3 // 4])
    assert len(starts) == 4 and starts[1] == false
    assert in_segments(path, starts) == alone


def test_damage_in_a_middle_segment_stops_the_file_there(tmp_path):
    path = tmp_path / NAME
    data = bytearray(write(path, mixed_events(steps=30)))
    size = len(data)
    starts = boundaries(path, [size // 3, 2 * size // 3])
    assert len(starts) == 3
    bad_start, bad_end = next(span for span in record_spans(path) if span[0] > starts[1] + 500)
    assert bad_end < starts[2]
    data[bad_end - FOOTER - 3] ^= 0x40  # a byte of the payload
    path.write_bytes(bytes(data))
    alone = sequential(path)
    assert alone[1]["reader"][3].offset == bad_start
    assert alone[1]["warnings"][-1]["offset"] == bad_start
    together = in_segments(path, starts)
    assert together == alone
    assert max(offset for _, _, _, _, offsets, _ in together[1]["series"] for offset in offsets) < bad_start


def test_a_torn_last_record_is_pending_as_when_read_in_turn(tmp_path):
    path = tmp_path / NAME
    data = write(path, mixed_events())
    path.write_bytes(data[:-7])
    size = path.stat().st_size
    starts = boundaries(path, [size // 2])
    assert len(starts) == 2
    alone = sequential(path)
    assert alone[1]["reader"][2] > 0
    assert in_segments(path, starts) == alone


def test_a_record_that_frames_but_is_no_event_stops_the_file_where_it_starts(tmp_path):
    """Damage that passes the CRCs: the reader goes back to the record, wherever its reads fell, so a segment
    that meets it leaves the reader where a sequential read does."""
    path = tmp_path / NAME
    events = mixed_events()
    data = write(path, events[:40]) + frame(b"\xff\xff\xff")
    path.write_bytes(data + b"".join(frame(e.SerializeToString()) for e in events[40:]))
    alone = sequential(path)
    assert alone[1]["reader"][0] == len(data) - len(frame(b"\xff\xff\xff"))
    assert alone[1]["reader"][3].message == "record does not parse as an event"
    size = path.stat().st_size
    assert in_segments(path, boundaries(path, [size // 4, size // 2])) == alone


@pytest.fixture
def forks(monkeypatch):
    """Units of reading given to forked processes, one list per fork."""
    shares = []
    fork_reader = parallel._fork_reader

    def counted(files, share):
        shares.append(share)
        return fork_reader(files, share)

    monkeypatch.setattr(parallel, "_fork_reader", counted)
    monkeypatch.setattr(parallel, "FORK_MIN_BYTES", 0)
    monkeypatch.setattr(parallel, "SEGMENT_MIN_BYTES", 0)
    return shares


@pytest.mark.parametrize("processes", [2, 3])
def test_read_files_reads_one_large_file_in_a_segment_per_process(tmp_path, forks, monkeypatch, processes):
    path = tmp_path / NAME
    write(path, mixed_events(steps=40))
    reads = []  # the parent's: its own segment (alone) and any read in turn after a segment was refused
    read_range = EventFile.read_range

    def counted(self, start, end, alone=False):
        reads.append(alone)
        return read_range(self, start, end, alone)

    monkeypatch.setattr(EventFile, "read_range", counted)
    f = EventFile(str(path))
    assert parallel.read_files([f], processes) == [sequential(path)[0]]
    assert state(f) == sequential(path)[1]
    assert len(forks) == processes - 1
    units = [unit for share in forks for unit in share]
    assert all(start is not None for _, start, _ in units)  # segments, not the whole file
    assert len(units) == processes - 1  # the parent read the remaining segment
    # Every segment was taken in: the plugins guessed for TF2 values that name none were right.
    assert reads == [True]


def test_a_failed_segment_reader_leaves_its_segment_to_the_parent(tmp_path, forks, failing_children):
    path = tmp_path / NAME
    write(path, mixed_events(steps=20))
    f = EventFile(str(path))
    parallel.read_files([f], 2)
    assert len(forks) == 1
    assert state(f) == sequential(path)[1]


def test_files_of_a_size_are_read_whole_and_a_file_read_before_goes_on_as_reload(tmp_path, forks):
    paths = [tmp_path / "a" / NAME, tmp_path / "b" / NAME]
    for path in paths:
        path.parent.mkdir()
        write(path, mixed_events(steps=10))
    files = [EventFile(str(path)) for path in paths]
    parallel.read_files(files, 2)
    assert forks == [[(1, None, None)]] or forks == [[(0, None, None)]]
    assert [state(f) for f in files] == [sequential(path)[1] for path in paths]
    # Grown after a first read: the file goes on from where it stopped, whole, as reload() goes on.
    grown = paths[0].read_bytes() + b"".join(frame(e.SerializeToString()) for e in mixed_events(steps=30, seed=1))
    paths[0].write_bytes(grown)
    forks.clear()
    parallel.read_files(files, 2)
    assert all(start is None for share in forks for _, start, _ in share)
    assert state(files[0]) == sequential(paths[0])[1]
    # Nothing left to read: nothing is added, nothing is cut.
    assert parallel.read_files(files, 2) == [False, False]


def test_the_live_reader_path_is_untouched_by_segments(tmp_path, forks):
    """One process (the plugin's live reader): never forks, whatever the sizes."""
    path = tmp_path / NAME
    write(path, mixed_events())
    f = EventFile(str(path))
    parallel.read_files([f], 1)
    assert forks == []
    assert state(f) == sequential(path)[1]


EVENT_KINDS = st.sampled_from(["tf2", "tf2-bare", "legacy", "scalar", "merged", "bad-tensor", "bad-legacy", "big"])


def make_event(kind: str, step: int, size: int) -> event_pb2.Event:
    rng = np.random.default_rng(step * 31 + size)
    tag = f"t{size % 5}"
    if kind in ("tf2", "tf2-bare", "big"):
        event = histogram_event(step, tag, rng.normal(size=size * (200 if kind == "big" else 1) + 1))
        return without_metadata(event) if kind == "tf2-bare" else event
    if kind == "legacy":
        return histogram_event(step, f"L{tag}", rng.normal(size=size + 1), legacy=True)
    if kind == "scalar":
        return event_pb2.Event(step=step, wall_time=1.0, summary=scalar_pb(tag, float(size)))
    if kind == "merged":
        values = [*histogram_event(step, "m1", rng.normal(size=size + 1), legacy=True).summary.value]
        values += [*histogram_event(step, tag, rng.normal(size=size + 2)).summary.value]
        return event_pb2.Event(step=step, wall_time=1.0, summary=summary_pb2.Summary(value=values))
    bad = list((BAD_TENSORS if kind == "bad-tensor" else BAD_LEGACY).values())[size % 4][0]
    return event_pb2.Event(step=step, summary=summary_pb2.Summary(value=[bad]))


@FUZZ
@given(
    stream=st.lists(st.tuples(EVENT_KINDS, st.integers(0, 60)), min_size=1, max_size=80),
    cuts=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4),
    flip=st.one_of(st.none(), st.tuples(st.floats(0.0, 1.0), st.integers(0, 7))),
    torn=st.integers(0, 30),
    lookup_keys=st.sampled_from([run_index.LOOKUP_KEYS, 1]),  # 1: every block looks its keys up at once
)
def test_any_stream_any_cuts_any_damage_read_in_segments_is_read_in_turn(
    tmp_path_factory, stream, cuts, flip, torn, lookup_keys
):
    path = tmp_path_factory.mktemp("seg") / NAME
    data = bytearray(write(path, [make_event(kind, step, size) for step, (kind, size) in enumerate(stream)]))
    if flip is not None:
        data[int(flip[0] * (len(data) - 1))] ^= 1 << flip[1]
    path.write_bytes(bytes(data[: max(0, len(data) - torn)]))
    size = path.stat().st_size
    starts = boundaries(path, [int(cut * size) for cut in cuts])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_index, "LOOKUP_KEYS", lookup_keys)
        assert in_segments(path, starts) == sequential(path)


def test_a_wrong_guess_of_a_plugin_sends_the_segment_back_to_be_read_in_turn(tmp_path):
    """A `[k, 3]` tensor naming no plugin, of a tag the file never named: read in turn it is no histogram (TF2 named
    none), read alone it is guessed one; the join must see that and read the segment in turn."""
    rng = np.random.default_rng(0)
    events = mixed_events(steps=6)
    events += [without_metadata(histogram_event(step, "never/named", rng.normal(size=9))) for step in range(6)]
    path = tmp_path / NAME
    data = write(path, events)
    starts = boundaries(path, [data.find(b"never/named") - 60])
    assert len(starts) == 2
    segment = EventFile(str(path))
    segment.read_range(starts[1], None, alone=True)
    assert "never/named" in segment.series  # guessed
    together = in_segments(path, starts)
    assert together == sequential(path)
    assert "never/named" not in dict((tag, s) for tag, *s in together[1]["series"])
