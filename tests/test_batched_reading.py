"""Small event files read in batches (`run_index.reload_files`, the numpy work done once per batch of files) leave
exactly the states reading them one by one leaves: series, tag order, kinds, plugins, warnings and their cap, the
reader's position, tail, pending bytes and damage, rewritten files read again, origin, errors.

The property test's default keeps the fast suite fast; `VARSCOPE_FUZZ_EXAMPLES=2000` runs a long search.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from eventlogs import histogram_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from test_file_segments import frame, mixed_events, state

from tb_varscope_plugin.reading import fast_path, records, run_index
from tb_varscope_plugin.reading.logdir import LogdirIndex
from tb_varscope_plugin.reading.records import BLOCK, HEADER, MAX_RECORD, masked_crc32c
from tb_varscope_plugin.reading.run_index import SKIPPED_SHOWN, EventFile, reload_files

FUZZ = settings(
    max_examples=int(os.environ.get("VARSCOPE_FUZZ_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
HEAD = frame(event_pb2.Event(wall_time=1.0, file_version="brain.Event:2").SerializeToString())
TORN_RECORD = frame(histogram_event(3, "torn", np.arange(6.0), legacy=True).SerializeToString())


def framed(events: list[event_pb2.Event]) -> bytes:
    return b"".join(frame(e.SerializeToString()) for e in events)


def full_state(f: EventFile) -> dict:
    """`state` and what it leaves out: each series' column widths, whether it keeps positions in summaries, the
    reader's every field."""
    found = state(f)
    found["layout"] = [(tag, s._rows.dtype, s._indices is None) for tag, s in f.series.items()]
    reader = f.reader
    found["reader"] = (reader.offset, reader.tail, reader.pending, reader.damage, reader.rewritten, reader._tail_before)
    found["staged"] = f._staged
    return found


def both_ways(paths: list[Path]) -> tuple[list[EventFile], list[EventFile]]:
    return [EventFile(str(p)) for p in paths], [EventFile(str(p)) for p in paths]


def assert_same(one_by_one: list[EventFile], batched: list[EventFile]) -> None:
    added = [f.reload() for f in one_by_one]
    assert reload_files(batched) == added
    for alone, together in zip(one_by_one, batched, strict=True):
        assert full_state(together) == full_state(alone), alone.path


def length_header(length: int) -> bytes:
    packed = struct.pack("<Q", length)
    return packed + struct.pack("<I", masked_crc32c(packed))


def not_an_event() -> bytes:
    """A record whose CRCs pass but whose payload is no event."""
    payload = b"\xff\xff\xff"
    return length_header(len(payload)) + payload + struct.pack("<I", masked_crc32c(payload))


def kinds_of_files() -> dict[str, bytes]:
    """Small files of every kind a logdir holds, and the ways they go wrong."""
    mixed = framed(mixed_events(steps=12))
    rng = np.random.default_rng(1)
    legacy = framed(
        [histogram_event(s, f"legacy/{t}", rng.normal(size=9), legacy=True) for s in range(4) for t in "ab"]
    )
    scalars = framed(
        [event_pb2.Event(step=s, wall_time=1.0 + s, summary=scalar_pb("loss", 1.0 / (s + 1))) for s in range(5)]
    )
    big_steps = framed([histogram_event(2**40 + s, "far", rng.normal(size=5), legacy=True) for s in range(3)])
    damaged = bytearray(HEAD + mixed)
    damaged[len(damaged) // 2] ^= 0x40
    return {
        "mixed": HEAD + mixed,
        "mixed_again": HEAD + framed(mixed_events(steps=5, seed=3)),
        "legacy": HEAD + legacy,
        "scalars": HEAD + scalars,
        "big_steps": HEAD + big_steps,
        "head_only": HEAD,
        "empty": b"",
        "damaged": bytes(damaged),
        "damaged_first": bytes([HEAD[0] ^ 1]) + HEAD[1:] + mixed,
        "torn": HEAD + mixed[:-7],
        "torn_header": HEAD + scalars + TORN_RECORD[: HEADER + 2],  # its header whole, its body not
        "not_an_event": HEAD + legacy + not_an_event() + scalars,
        "bad_length": HEAD + scalars + length_header(7)[:8] + b"\x00\x00\x00\x00",
        "huge_length": HEAD + scalars + length_header(MAX_RECORD + 1),
        "large": HEAD + mixed * (BLOCK // len(mixed) + 2),  # more than a buffer: read the usual way
    }


def write_logdir(root: Path, files: dict[str, bytes]) -> list[Path]:
    paths = []
    for name, data in files.items():
        path = root / name / "events.out.tfevents.1.host"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    return paths


@pytest.mark.parametrize("batch_bytes", [run_index.BATCH_BYTES, 50_000, 1])
def test_small_files_of_every_kind_read_in_batches_are_read_as_one_by_one(tmp_path, monkeypatch, batch_bytes):
    monkeypatch.setattr(run_index, "BATCH_BYTES", batch_bytes)
    files = kinds_of_files()
    paths = write_logdir(tmp_path, files)
    paths.append(tmp_path / "vanished" / "events.out.tfevents.1.host")  # never there
    one_by_one, batched = both_ways(paths)
    assert_same(one_by_one, batched)
    by_name = {p.parent.name: f for p, f in zip(paths, batched, strict=True)}
    assert by_name["mixed"].skipped_more > 0 and len(by_name["mixed"].skipped) == SKIPPED_SHOWN
    assert by_name["damaged"].reader.damage is not None and by_name["damaged_first"].reader.damage is not None
    assert "does not parse" in by_name["not_an_event"].reader.damage.message
    assert "past the" in by_name["huge_length"].reader.damage.message
    assert "length fails" in by_name["bad_length"].reader.damage.message
    assert by_name["torn"].reader.pending and by_name["torn_header"].reader.pending
    assert by_name["vanished"].error is not None
    assert by_name["big_steps"].series["far"]._rows.dtype["step"] == np.int64
    assert len(by_name["large"].series["dense_0/kernel"]) > 12

    # Then an incremental read: some files grow (a torn record completed, new tags, values that do not decode),
    # one is rewritten shorter, one overwritten, one vanishes and one appears.
    more = framed(mixed_events(steps=4, seed=7))
    grown = {
        "mixed": files["mixed"] + more,
        "legacy": files["legacy"] + framed([histogram_event(9, "legacy/new", np.arange(4.0), legacy=True)]),
        "head_only": files["head_only"] + more,
        "empty": HEAD + more,
        "torn": files["mixed"] + more,
        "torn_header": files["torn_header"] + TORN_RECORD[HEADER + 2 :],
        "scalars": files["scalars"][: len(files["scalars"]) // 2],  # shrank
        # Longer, with other bytes where the last read ended: overwritten.
        "mixed_again": files["scalars"] + framed(mixed_events(steps=8, seed=4)),
        "large": files["large"] + more,
    }
    for name, data in grown.items():
        (tmp_path / name / "events.out.tfevents.1.host").write_bytes(data)
    (tmp_path / "legacy_gone").mkdir()
    os.replace(tmp_path / "big_steps" / "events.out.tfevents.1.host", tmp_path / "legacy_gone" / "moved")
    (tmp_path / "vanished").mkdir()
    (tmp_path / "vanished" / "events.out.tfevents.1.host").write_bytes(files["legacy"])
    assert_same(one_by_one, batched)
    by_name = {p.parent.name: f for p, f in zip(paths, batched, strict=True)}
    assert by_name["scalars"].restarted is not None and by_name["mixed_again"].restarted is not None
    assert by_name["big_steps"].error is not None and by_name["vanished"].error is None
    assert not by_name["torn"].reader.pending and "legacy/new" in by_name["legacy"].series
    # Nothing new: nothing changes.
    assert_same(one_by_one, batched)


def test_two_hundred_small_files_take_one_pass_of_the_numpy_work(tmp_path, monkeypatch):
    paths = write_logdir(tmp_path, {f"run{i:03}": HEAD + framed(mixed_events(steps=2, seed=i % 5)) for i in range(200)})
    calls = {"single_values": 0, "plain_histograms": 0, "verify_all": 0}
    for module, name in [(fast_path, "single_values"), (fast_path, "plain_histograms"), (records, "verify_all")]:
        original = getattr(module, name)

        def counted(*args, original=original, name=name, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
    monkeypatch.setattr(run_index, "verify_all", records.verify_all)
    one_by_one, batched = both_ways(paths)
    for f in one_by_one:
        f.reload()
    assert calls == {"single_values": 200, "plain_histograms": 200, "verify_all": 200}
    calls.update(dict.fromkeys(calls, 0))
    reload_files(batched)
    assert calls == {"single_values": 1, "plain_histograms": 1, "verify_all": 1}
    for alone, together in zip(one_by_one, batched, strict=True):
        assert full_state(together) == full_state(alone)

    # The logdir index of the tab (one process) reads its runs so, a batch at a time.
    calls.update(dict.fromkeys(calls, 0))
    index = LogdirIndex(str(tmp_path))
    index.reload()
    assert calls == {"single_values": 1, "plain_histograms": 1, "verify_all": 1}
    for alone in one_by_one:
        run = index.runs[Path(alone.path).parent.name]
        assert full_state(run.files[0]) == full_state(alone)


def event_kinds(seed: int) -> list[bytes]:
    """Framed records of every kind, to draw files from."""
    rng = np.random.default_rng(seed)
    tf2 = [histogram_event(s, "tf2", rng.normal(size=6)) for s in range(3)]
    for e in tf2[1:]:
        e.summary.value[0].ClearField("metadata")
    merged = summary_pb2.Summary(
        value=[
            *histogram_event(1, "m/a", rng.normal(size=5), legacy=True).summary.value,
            *histogram_event(1, "m/b", rng.normal(size=4), legacy=True).summary.value,
        ]
    )
    bad = summary_pb2.Summary.Value(tag="tf2", histo=summary_pb2.HistogramProto(bucket_limit=[1.0], bucket=[1.0, 2.0]))
    events = [
        *tf2,
        histogram_event(2, "legacy", rng.normal(size=7), legacy=True),
        event_pb2.Event(step=3, wall_time=3.0, summary=scalar_pb("loss", 0.5)),
        event_pb2.Event(step=4, wall_time=4.0, summary=merged),
        event_pb2.Event(step=5, wall_time=5.0, summary=summary_pb2.Summary(value=[bad])),
        event_pb2.Event(step=2**35, wall_time=6.0, summary=histogram_event(0, "legacy", np.ones(3), True).summary),
    ]
    return [frame(e.SerializeToString()) for e in events] + [not_an_event()]


RECORDS = event_kinds(0)
small_file = st.tuples(
    st.lists(st.integers(0, len(RECORDS) - 1), max_size=12),
    st.sampled_from(["intact", "torn", "flipped"]),
    st.integers(0, 1 << 16),
    st.lists(st.integers(0, len(RECORDS) - 1), max_size=6),  # appended before the second read
)


@FUZZ
@given(st.lists(small_file, min_size=1, max_size=8), st.sampled_from([run_index.BATCH_BYTES, 300]))
def test_random_small_files_read_in_batches_are_read_as_one_by_one(tmp_path_factory, drawn, batch_bytes):
    root = tmp_path_factory.mktemp("logdir")
    paths = []
    for k, (chosen, harm, where, _) in enumerate(drawn):
        data = bytearray(HEAD + b"".join(RECORDS[i] for i in chosen))
        if harm == "torn" and len(data) > HEADER:
            data = data[: where % len(data)]
        elif harm == "flipped":
            data[where % len(data)] ^= 1 << (where % 8)
        path = root / f"events.out.tfevents.{k}.host"
        path.write_bytes(bytes(data))
        paths.append(path)
    one_by_one, batched = both_ways(paths)
    original = run_index.BATCH_BYTES
    run_index.BATCH_BYTES = batch_bytes
    try:
        assert_same(one_by_one, batched)
        for path, (_, _, _, appended) in zip(paths, drawn, strict=True):
            with path.open("ab") as out:
                out.write(b"".join(RECORDS[i] for i in appended))
        assert_same(one_by_one, batched)
    finally:
        run_index.BATCH_BYTES = original


def test_a_small_local_file_is_read_with_a_read_no_larger_than_itself(tmp_path, monkeypatch):
    """Asking for a whole buffer costs a fresh megabyte even for a file of a few kilobytes."""
    (path,) = write_logdir(tmp_path, {"run": HEAD + framed(mixed_events(steps=2))})
    asked = []
    read = records.PositionedReader.read

    def recorded(self, offset, size):
        asked.append(size)
        return read(self, offset, size)

    monkeypatch.setattr(records.PositionedReader, "read", recorded)
    one_by_one, batched = both_ways([path])
    assert_same(one_by_one, batched)
    assert asked and max(asked) <= path.stat().st_size + 1


def test_a_file_given_twice_is_read_once_then_read_on(tmp_path):
    (path,) = write_logdir(tmp_path, {"run": HEAD + framed(mixed_events(steps=2))})
    alone, together = both_ways([path])
    assert reload_files([together[0], together[0]]) == [alone[0].reload(), alone[0].reload()] == [True, False]
    assert full_state(together[0]) == full_state(alone[0])
