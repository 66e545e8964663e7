"""The record reader: every record, checksums, resuming, and damage reported with file and offset."""

import os
import struct
import tracemalloc

import numpy as np
import pytest
from eventlogs import histogram_event, layered_run, read_records, write_events
from tensorboard.compat.proto import event_pb2

from tb_varscope_plugin import scan
from tb_varscope_plugin.reading.records import BLOCK, HEADER, MAX_RECORD, RecordReader, masked_crc32c, read_record_at


def record_offsets(path):
    return [offset for offset, _ in read_records(path)]


@pytest.mark.slow  # TensorBoard's loader imports TensorFlow when it is installed
def test_reads_the_same_records_as_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader

    path = str(tmp_path / "run" / "events.out.tfevents.1.host")
    layered_run(path, "kernel", [4, 8, 16], steps=20)
    ours = [payload for _, payload in read_records(path)]
    theirs = list(RawEventFileLoader(path).Load())
    assert ours == theirs
    assert len(ours) == 1 + 3 * 20


def test_record_at_an_offset_is_the_record_read_there(tmp_path):
    path = str(tmp_path / "events.out.tfevents.1.host")
    layered_run(path, "kernel", [4, 8], steps=3)
    for offset, payload in read_records(path):
        assert read_record_at(path, offset) == payload
    with pytest.raises(ValueError, match="offset 5"):
        read_record_at(path, 5)


def test_resumes_where_it_stopped_as_the_file_grows(tmp_path):
    path = str(tmp_path / "events.out.tfevents.1.host")
    write_events(path, [histogram_event(0, "w", np.arange(5.0))])
    reader = RecordReader(path)
    assert len(read_records(reader)) == 2
    assert read_records(reader) == []
    write_events(path, [histogram_event(1, "w", np.arange(5.0))], append=True)
    (_, *rest) = read_records(reader)
    assert rest == []
    assert reader.offset == os.path.getsize(path)
    assert reader.pending == 0 and reader.damage is None


def test_a_torn_last_record_waits_for_the_rest(tmp_path):
    path = tmp_path / "events.out.tfevents.1.host"
    write_events(str(path), [histogram_event(step, "w", np.arange(5.0)) for step in range(3)])
    whole = path.read_bytes()
    path.write_bytes(whole[:-7])
    reader = RecordReader(str(path))
    assert len(read_records(reader)) == 3
    assert reader.damage is None
    assert reader.pending > 0
    with open(path, "ab") as f:
        f.write(whole[-7:])
    assert len(read_records(reader)) == 1
    assert reader.pending == 0


def test_a_flipped_byte_stops_the_file_there_and_keeps_what_came_before(tmp_path):
    run = tmp_path / "logs" / "run"
    path = run / "events.out.tfevents.1.host"
    layered_run(str(path), "kernel", [4, 8, 16], steps=10)
    offsets = record_offsets(str(path))
    damaged_record = offsets[16]  # step 5, first layer
    data = bytearray(path.read_bytes())
    data[damaged_record + 20] ^= 0xFF
    path.write_bytes(bytes(data))

    report = scan(str(tmp_path / "logs"))
    (run_report,) = report["runs"]
    (warning,) = run_report["warnings"]
    assert warning["file"].endswith("events.out.tfevents.1.host")
    assert warning["offset"] == damaged_record
    assert "checksum" in warning["message"]
    (collision,) = run_report["collisions"]
    assert collision["tag"] == "kernel"
    assert collision["writers"] == 3
    assert (collision["first_step"], collision["last_step"]) == (0, 4)


def test_a_truncated_file_is_reported_and_what_came_before_is_kept(tmp_path):
    path = tmp_path / "logs" / "run" / "events.out.tfevents.1.host"
    layered_run(str(path), "kernel", [4, 8], steps=6)
    last_record = record_offsets(str(path))[-1]
    path.write_bytes(path.read_bytes()[:-10])

    (run_report,) = scan(str(tmp_path / "logs"))["runs"]
    (warning,) = run_report["warnings"]
    assert warning["offset"] == last_record
    assert "incomplete record" in warning["message"]
    (collision,) = run_report["collisions"]
    assert collision["steps"] == 5  # the torn record was step 5's second write


def with_huge_record(path, length: int) -> int:
    """Appends a record header claiming `length` bytes, with a valid length CRC, and a few bytes; returns its offset."""
    offset = os.path.getsize(path)
    field = struct.pack("<Q", length)
    with open(path, "ab") as f:
        f.write(field + struct.pack("<I", masked_crc32c(field)) + b"\x00" * 100)
    return offset


def run_with_filler(path) -> None:
    """A small collision, then an event longer than one read buffer, so a length that follows is acted on."""
    layered_run(str(path), "kernel", [3, 4], steps=3)
    write_events(str(path), [event_pb2.Event(file_version="x" * BLOCK)], append=True)


@pytest.mark.parametrize("length", [2**31, 2**40, 2**63, 2**64 - 1])
def test_a_length_past_any_event_is_damage_at_its_offset_and_nothing_is_allocated(tmp_path, length):
    path = tmp_path / "logs" / "run" / "events.out.tfevents.1.host"
    run_with_filler(path)
    offset = with_huge_record(str(path), length)

    tracemalloc.start()
    report = scan(str(tmp_path / "logs"))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    (run_report,) = report["runs"]
    (warning,) = run_report["warnings"]
    assert (warning["file"], warning["offset"]) == (str(path), offset)
    assert f"record length {length} is past the {MAX_RECORD}-byte limit" in warning["message"]
    assert run_report["collisions"][0]["steps"] == 3
    assert peak < 64 << 20
    with pytest.raises(ValueError, match=f"offset {offset}"):
        read_record_at(str(path), offset)


def test_a_length_within_the_limit_but_past_the_end_of_the_file_waits_for_the_rest(tmp_path):
    path = tmp_path / "events.out.tfevents.1.host"
    run_with_filler(path)
    offset = with_huge_record(str(path), MAX_RECORD - 1)
    reader = RecordReader(str(path))

    tracemalloc.start()
    assert len(read_records(reader)) == 1 + 2 * 3 + 1
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    assert reader.damage is None
    assert (reader.offset, reader.pending) == (offset, HEADER + 100)
    assert peak < 64 << 20
    with pytest.raises(ValueError, match="does not hold"):
        read_record_at(str(path), offset)
