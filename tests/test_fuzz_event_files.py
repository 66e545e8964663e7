"""Property tests of the event-file readers: a real event file mutated as a disk, a crash or a buggy writer would
mutate it. Whatever the mutation, scan() returns, in bounded memory; every collision before the damage is still
found; and the damage is a warning naming the file and the offset of the first record it spoiled.

The default keeps the fast suite fast; `VARSCOPE_FUZZ_EXAMPLES=2000` runs a long search (e.g. in CI).
"""

from __future__ import annotations

import os
import struct
import tempfile
import threading
import tracemalloc
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from eventlogs import layered_run, read_records
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
from test_bad_values import BAD_LEGACY, BAD_TENSORS, Dim

from tb_varscope_plugin import scan
from tb_varscope_plugin.reading.events import BadValue, counted_elements, decode_histogram, value_problem
from tb_varscope_plugin.reading.records import FOOTER, HEADER, MAX_RECORD, masked_crc32c
from tb_varscope_plugin.reading.run_index import EventFile

FUZZ = settings(
    max_examples=int(os.environ.get("VARSCOPE_FUZZ_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
STEPS = 6  # `kernel` is written twice at each, records 1..12; then `bias`, legacy, the same way
NAME = "events.out.tfevents.1.host"


@cache
def base() -> tuple[bytes, tuple[tuple[int, int], ...]]:
    """The clean file's bytes and each record's `(start, end)`."""
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, NAME)
        layered_run(path, "kernel", [3, 4], steps=STEPS)
        clean = Path(path).read_bytes()
        layered_run(path, "bias", [2, 5], steps=STEPS, legacy=True)
        data = clean + Path(path).read_bytes()[len(read_records(path)[0][1]) + HEADER + FOOTER :]
        Path(path).write_bytes(data)
        spans = tuple((offset, offset + HEADER + len(payload) + FOOTER) for offset, payload in read_records(path))
    return data, spans


def frame(payload: bytes) -> bytes:
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", masked_crc32c(length)) + payload + struct.pack("<I", masked_crc32c(payload))


def scan_bytes(data: bytes) -> tuple[dict, str]:
    """scan() of a logdir holding `data` as one run's event file: the report and the file's path. Memory is bounded
    (tracemalloc); time only by a generous safety net, so a hang fails instead of stalling the suite."""
    with tempfile.TemporaryDirectory() as logdir:
        path = os.path.join(logdir, "run", NAME)
        os.makedirs(os.path.dirname(path))
        Path(path).write_bytes(data)
        found: list = []
        tracemalloc.start()
        try:
            worker = threading.Thread(target=lambda: found.append(scan(logdir)), daemon=True)
            worker.start()
            worker.join(60)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert found, "scan() did not return"
        assert peak < 32 << 20, f"peak {peak} bytes for a {len(data)}-byte file"
        return found[0], path


def complete_steps_before(offset: int) -> int:
    """How many of `kernel`'s steps lie wholly before `offset`: their collision must still be found."""
    _, spans = base()
    return sum(1 for step in range(STEPS) if spans[2 + 2 * step][1] <= offset)


def check(data: bytes, damage_at: int, warned_at: int | None, message: str | None = None) -> dict:
    """Scans `data`; the collisions wholly before `damage_at` are found, and if `warned_at` is given the first
    warning of the file is at that offset (and says `message`)."""
    report, path = scan_bytes(data)
    (run,) = report["runs"] if report["runs"] else [{"collisions": [], "warnings": []}]
    steps = complete_steps_before(damage_at)
    if steps:
        kernel = [c for c in run["collisions"] if c["tag"] == "kernel" and c["kind"] == "same-step"]
        assert kernel and kernel[0]["steps"] >= steps and kernel[0]["first_step"] == 0, run["collisions"]
    if warned_at is not None:
        assert run["warnings"], "the damage was not reported"
        first = run["warnings"][0]
        assert (first["file"], first["offset"]) == (path, warned_at), first
        if message is not None:
            assert message in first["message"], first
    return run


def record_at(position: int) -> tuple[int, int]:
    """The `(start, end)` of the clean file's record holding byte `position`."""
    _, spans = base()
    return next(span for span in spans if span[0] <= position < span[1])


@FUZZ
@given(st.data())
def test_truncated_anywhere(data):
    clean, spans = base()
    cut = data.draw(st.integers(0, len(clean) - 1))
    start, _ = record_at(cut)
    # A cut at a record boundary leaves a sound, shorter file; anywhere else the last record is torn.
    run = check(clean[:cut], cut, None if cut == start else start, "incomplete record")
    if cut == start:
        assert run["warnings"] == []


@FUZZ
@given(st.data())
def test_bits_flipped(data):
    clean, _ = base()
    positions = data.draw(st.lists(st.integers(0, len(clean) - 1), min_size=1, max_size=3, unique=True))
    spoiled = bytearray(clean)
    for position in positions:
        spoiled[position] ^= 1 << data.draw(st.integers(0, 7))
    first = min(positions)
    check(bytes(spoiled), first, record_at(first)[0], "checksum")


@FUZZ
@given(st.data())
def test_huge_lengths_with_valid_checksums(data):
    clean, spans = base()
    start, _ = spans[data.draw(st.integers(1, len(spans) - 1))]
    length = data.draw(st.one_of(st.integers(len(clean), MAX_RECORD), st.integers(MAX_RECORD + 1, 2**64 - 1)))
    field = struct.pack("<Q", length)
    spoiled = clean[:start] + field + struct.pack("<I", masked_crc32c(field)) + clean[start + HEADER :]
    message = "past the" if length > MAX_RECORD else "incomplete record"  # past the end of the file: a torn tail
    check(spoiled, start, start, message)


@FUZZ
@given(st.data())
def test_duplicated_and_empty_records_are_read_as_records(data):
    clean, spans = base()
    at = data.draw(st.integers(1, len(spans) - 1))
    start, end = spans[at]
    extra = data.draw(st.sampled_from(["duplicate", "empty"]))
    inserted = clean[start:end] if extra == "duplicate" else frame(b"")
    run = check(clean[:end] + inserted + clean[end:], end, None)
    assert run["warnings"] == []  # both are sound records: an empty payload is an empty event


MALFORMED = [value for value, _ in [*BAD_TENSORS.values(), *BAD_LEGACY.values()]]


@FUZZ
@given(st.data())
def test_malformed_values_under_valid_checksums(data):
    clean, spans = base()
    _, end = spans[data.draw(st.integers(0, len(spans) - 1))]
    value = data.draw(st.sampled_from(MALFORMED))
    record = frame(event_pb2.Event(step=1, summary=summary_pb2.Summary(value=[value])).SerializeToString())
    run = check(clean[:end] + record + clean[end:], len(clean), end, "skipped")
    assert len(run["warnings"]) == 1  # the value alone is left out: the rest of the file is read


@FUZZ
@given(st.data())
def test_arbitrary_payloads_under_valid_checksums(data):
    clean, spans = base()
    _, end = spans[data.draw(st.integers(0, len(spans) - 1))]
    payload = data.draw(st.binary(max_size=200))
    run = check(clean[:end] + frame(payload) + clean[end:], end, None)
    assert all(warning["offset"] >= end for warning in run["warnings"])


DIMS = st.lists(st.one_of(st.integers(-2, 40), st.integers(-(2**63), 2**63 - 1)), max_size=3)
NUMBERS = st.floats(allow_nan=True, allow_infinity=True, width=32)


@st.composite
def histogram_values(draw) -> summary_pb2.Summary.Value:
    """Histogram values as any writer, buggy or hostile, could frame them: tensors of any dtype, shape and content
    (raw bytes or any repeated field), legacy histograms of any counts."""
    metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="histograms"))
    if draw(st.booleans()):
        histo = summary_pb2.HistogramProto(
            min=draw(NUMBERS),
            max=draw(NUMBERS),
            bucket_limit=draw(st.lists(NUMBERS, max_size=8)),
            bucket=draw(st.lists(st.one_of(NUMBERS, st.floats(0, 1e308)), max_size=8)),
        )
        return summary_pb2.Summary.Value(tag="kernel", histo=histo)
    shape = tensor_shape_pb2.TensorShapeProto(dim=[Dim(size=n) for n in draw(DIMS)])
    fields: dict = {}
    kind = draw(st.sampled_from(["content", "float_val", "double_val", "half_val", "int_val", "int64_val", "none"]))
    if kind == "content":
        fields["tensor_content"] = draw(st.binary(max_size=200))
    elif kind in ("float_val", "double_val"):
        fields[kind] = draw(st.lists(NUMBERS, max_size=12))
    elif kind == "half_val" or kind == "int_val":
        fields[kind] = draw(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=12))
    elif kind == "int64_val":
        fields[kind] = draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=12))
    dtype = draw(st.one_of(st.sampled_from([1, 2, 3, 9, 19]), st.integers(0, 2**31 - 1)))
    tensor = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, **fields)
    return summary_pb2.Summary.Value(tag="kernel", metadata=metadata, tensor=tensor)


@FUZZ
@given(histogram_values())
def test_any_value_is_either_decoded_in_bounds_or_refused_with_a_reason(value):
    problem = value_problem(value)
    if problem is not None:
        assert isinstance(problem, str)
        with pytest.raises(BadValue):
            decode_histogram(value)
        with pytest.raises(BadValue):
            counted_elements(value)
        return
    buckets = decode_histogram(value)
    assert buckets.ndim == 2 and buckets.shape[1] == 3 and buckets.size <= 3 * 12 + 200
    counts = buckets[:, 2]
    assert np.isfinite(counts).all() and (counts >= 0).all() and counts.sum() <= 2**53
    # The count read without making the buckets is theirs, rounded (summed in another order: equal to the last bit).
    assert abs(counted_elements(value) - counts.sum()) <= 0.5 + 1e-12 * counts.sum()


@FUZZ
@given(st.lists(histogram_values(), min_size=1, max_size=6))
def test_the_index_keeps_exactly_the_values_that_decode(values):
    """The index checks most values from their bytes at once: it must keep what `value_problem` accepts, no more."""
    events_ = [event_pb2.Event(step=step, summary=summary_pb2.Summary(value=[v])) for step, v in enumerate(values)]
    with tempfile.TemporaryDirectory() as logdir:
        path = os.path.join(logdir, NAME)
        Path(path).write_bytes(b"".join(frame(e.SerializeToString()) for e in events_))
        event_file = EventFile(path)
        event_file.reload()
    series = event_file.series.get("kernel")
    kept = [] if series is None else np.asarray(series.steps).tolist()
    assert kept == [step for step, v in enumerate(values) if value_problem(v) is None]
    assert len(event_file.skipped) == len(values) - len(kept)
