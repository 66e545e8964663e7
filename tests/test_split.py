"""`tb-varscope split` on logs written by TensorBoard's own writers: each lane its own tag, nothing else changed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from eventlogs import histogram_event, layered_run, write_events
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from tensorboard.summary.writer.record_writer import RecordWriter

from tb_varscope_plugin import scan
from tb_varscope_plugin.cli import main
from tb_varscope_plugin.reading.events import histogram_values, parse_event
from tb_varscope_plugin.reading.logdir import LogdirIndex
from tb_varscope_plugin.reading.records import RecordReader
from tb_varscope_plugin.rewrite.checkpoint_copy import checkpoint_files
from tb_varscope_plugin.rewrite.event_copy import FramedWriter
from tb_varscope_plugin.rewrite.plan import lane_tag
from tb_varscope_plugin.rewrite.split import split_logdir


def payloads(path: Path) -> list[bytes]:
    """Every record's payload, CRCs checked; the file must be readable to its end."""
    reader = RecordReader(str(path))
    found = [payload for block in reader.blocks() for payload in block.payloads]
    assert reader.damage is None and reader.pending == 0
    return found


def non_histogram_records(path: Path) -> list[bytes]:
    plugins: dict[str, str] = {}
    return [p for p in payloads(path) if histogram_values(parse_event(p), plugins) is None]


def lane_values(logdir: Path, run: str, tag: str, lane: int) -> list[tuple[int, float, list]]:
    index = LogdirIndex(str(logdir))
    index.reload()
    r = index.runs[run]
    return [(ref.step, ref.wall_time, r.decode(ref).tolist()) for ref in r.lane_refs(tag, lane)]


def test_lane_tags_keep_the_writers_style():
    assert lane_tag("my_variable1_0/histogram", "my_layer_1/my_variable1", 1) == "my_layer_1/my_variable1_0/histogram"
    assert lane_tag("kernel/histogram", "sequential/dense_1/kernel", 1) == "sequential/dense_1/kernel/histogram"
    assert lane_tag("kernel", "sequential/dense_1/kernel", 1) == "sequential/dense_1/kernel"
    assert lane_tag("weight", "1.0.weight", 0) == "1.0.weight"
    assert lane_tag("train/kernel", "dense/kernel", 0) == "train/dense/kernel"  # the tag's own scope stays
    assert lane_tag("weight", None, 2) == "weight/lane_2"


def test_each_lane_becomes_a_tag_and_every_other_record_is_copied(tmp_path):
    logdir, out = tmp_path / "logs", tmp_path / "out"
    layered_run(str(logdir / "train" / "events.out.tfevents.1.a"), "kernel", [3, 12, 48], steps=4)
    layered_run(str(logdir / "torch" / "events.out.tfevents.1.b"), "weight", [5, 7], steps=3, legacy=True)
    clean = logdir / "clean" / "events.out.tfevents.1.c"
    write_events(str(clean), [histogram_event(s, "dense/kernel", np.arange(5.0)) for s in range(3)])

    assert main(["split", str(logdir), str(out)]) == 0

    report = scan(str(out))
    assert report["summary"]["collisions"] == 0
    assert sorted(r["run"] for r in report["runs"]) == ["clean", "torch", "train"]
    assert (out / "clean" / clean.name).read_bytes() == clean.read_bytes()
    for run, tag, lanes in (("train", "kernel", 3), ("torch", "weight", 2)):
        (name,) = os.listdir(logdir / run)
        assert os.listdir(out / run) == [name]
        assert non_histogram_records(out / run / name) == non_histogram_records(logdir / run / name)
        for lane in range(lanes):
            assert lane_values(out, run, f"{tag}/lane_{lane}", 0) == lane_values(logdir, run, tag, lane)
    assert report["summary"]["histogram_tags"] == 1 + 3 + 2


def test_new_tags_carry_the_metadata_tf2_writers_put_on_a_first_value_only(tmp_path):
    logdir, out = tmp_path / "logs", tmp_path / "out"
    events = []
    for step in range(3):
        for layer in range(2):
            event = histogram_event(step, "kernel", np.arange(4.0) + layer)
            if step or layer:
                event.summary.value[0].ClearField("metadata")
            events.append(event)
    write_events(str(logdir / "events.out.tfevents.1.a"), events)

    split_logdir(str(logdir), str(out))

    firsts: dict[str, summary_pb2.SummaryMetadata] = {}
    for payload in payloads(out / "events.out.tfevents.1.a")[1:]:
        value = event_pb2.Event.FromString(payload).summary.value[0]
        firsts.setdefault(value.tag, value.metadata)
    assert sorted(firsts) == ["kernel/lane_0", "kernel/lane_1"]
    assert all(m.plugin_data.plugin_name == "histograms" for m in firsts.values())


def test_an_event_with_several_values_keeps_those_that_do_not_collide(tmp_path):
    logdir, out = tmp_path / "logs", tmp_path / "out"
    events = []
    for step in range(2):
        first = histogram_event(step, "w", np.arange(3.0), legacy=True)
        first.summary.value.append(scalar_pb("loss", 0.5).value[0])
        events += [first, histogram_event(step, "w", np.arange(6.0), legacy=True)]
    write_events(str(logdir / "events.out.tfevents.1.a"), events)

    split_logdir(str(logdir), str(out))

    written = [event_pb2.Event.FromString(p) for p in payloads(out / "events.out.tfevents.1.a")[1:]]
    assert [[v.tag for v in e.summary.value] for e in written] == [["w/lane_0", "loss"], ["w/lane_1"]] * 2
    assert written[0].summary.value[1] == events[0].summary.value[1]


def test_a_lane_name_the_run_already_uses_is_not_reused(tmp_path):
    logdir, out = tmp_path / "logs", tmp_path / "out"
    layered_run(str(logdir / "events.out.tfevents.1.a"), "w", [3, 4], steps=2, legacy=True)
    write_events(str(logdir / "events.out.tfevents.2.a"), [histogram_event(0, "w/lane_1", np.arange(2.0), legacy=True)])

    result = split_logdir(str(logdir), str(out))

    assert {m.new_tag for r in result.runs for m in r.moves} == {"w/lane_0", "w/lane_1/lane_1"}
    assert scan(str(out))["summary"]["collisions"] == 0


def test_a_resumed_run_moves_the_older_files_overlapped_steps_aside(tmp_path, capsys):
    logdir, out = tmp_path / "logs", tmp_path / "out"
    older, newer = logdir / "events.out.tfevents.100.a", logdir / "events.out.tfevents.200.a"
    write_events(str(older), [histogram_event(s, "dense/kernel", np.arange(4.0) + s) for s in range(6)])
    write_events(str(newer), [histogram_event(s, "dense/kernel", np.arange(4.0) - s) for s in range(4, 9)])

    assert main(["split", str(logdir), str(out)]) == 0

    printed = capsys.readouterr().out
    assert f"dense/kernel  {older.name} at steps 4..5  ->  dense/kernel/superseded" in printed
    assert f"{newer.name} holds these steps" in printed
    assert scan(str(out))["summary"]["collisions"] == 0
    # In LOGDIR a tag colliding across files has a lane per file: lane 0 the older, lane 1 the newer.
    older_values, newer_values = (lane_values(logdir, ".", "dense/kernel", lane) for lane in (0, 1))
    main_tag = lane_values(out, ".", "dense/kernel", 0)
    assert main_tag == older_values[:4] + newer_values
    assert lane_values(out, ".", "dense/kernel/superseded", 0) == older_values[4:]
    assert (out / newer.name).read_bytes() == newer.read_bytes()


def test_a_damaged_file_is_copied_up_to_the_damage_with_scans_warning(tmp_path, capsys):
    logdir, out = tmp_path / "logs", tmp_path / "out"
    path = logdir / "events.out.tfevents.1.a"
    layered_run(str(path), "kernel", [3, 5], steps=6)
    data = bytearray(path.read_bytes())
    records = payloads(path)
    damaged_at = sum(12 + len(p) + 4 for p in records[:7])
    data[damaged_at + 20] ^= 0xFF  # inside the 8th record's payload: its CRC fails
    path.write_bytes(bytes(data))
    (warning,) = scan(str(logdir))["runs"][0]["warnings"]

    assert main(["split", str(logdir), str(out)]) == 0

    assert f"warning: {path} at offset {damaged_at}: {warning['message']}" in capsys.readouterr().out
    copied = payloads(out / path.name)
    assert len(copied) == 7
    values = [len(lane_values(out, ".", f"kernel/lane_{k}", 0)) for k in range(2)]
    assert values == [3, 3]  # 1 file_version record, then steps 0-2 of both lanes (record 7 is step 3's lane 0)


def test_dry_run_prints_the_mapping_and_writes_nothing(tmp_path, capsys):
    logdir, out = tmp_path / "logs", tmp_path / "out"
    layered_run(str(logdir / "train" / "events.out.tfevents.1.a"), "kernel", [3, 12], steps=2)

    assert main(["split", str(logdir), str(out), "--dry-run"]) == 0

    printed = capsys.readouterr().out
    assert "run train:\n  kernel  lane 0  ->  kernel/lane_0  (2 values)\n  kernel  lane 1  ->  kernel/lane_1" in printed
    assert "Nothing was written" in printed
    assert not out.exists()


def test_outdir_must_be_new_or_empty_and_outside_logdir(tmp_path, capsys):
    logdir = tmp_path / "logs"
    layered_run(str(logdir / "events.out.tfevents.1.a"), "kernel", [3, 12], steps=2)
    before = sorted(p.name for p in logdir.iterdir())
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("keep me")

    assert main(["split", str(logdir), str(full)]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert main(["split", str(logdir), str(logdir / "fixed")]) == 2
    assert "inside LOGDIR" in capsys.readouterr().err
    assert main(["split", str(logdir), str(logdir)]) == 2
    (tmp_path / "link").symlink_to(logdir)
    assert main(["split", str(logdir), str(tmp_path / "link" / "fixed")]) == 2
    assert main(["split", str(tmp_path / "nothing"), str(tmp_path / "out")]) == 2
    assert main(["split", str(logdir), str(tmp_path / "out"), "--run", "^nomatch$"]) == 2
    assert sorted(p.name for p in logdir.iterdir()) == before
    assert (full / "x").read_text() == "keep me" and not (tmp_path / "out").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["split", str(logdir), str(empty)]) == 0


def test_the_checkpoint_beside_a_run_is_copied_with_all_its_files(tmp_path):
    logdir, out = tmp_path / "logs", tmp_path / "out"
    layered_run(str(logdir / "train" / "events.out.tfevents.1.a"), "kernel", [3, 12], steps=2)
    ckpt = logdir / "ckpt"
    ckpt.mkdir()
    for name in ("ckpt-1.index", "ckpt-1.data-00000-of-00001", "ckpt-2.index", "ckpt-2.data-00000-of-00001"):
        (ckpt / name).write_bytes(name.encode())
    (ckpt / "checkpoint").write_text('model_checkpoint_path: "ckpt-2"\n')
    os.utime(ckpt / "ckpt-2.index", (1_700_000_000, 1_700_000_000))

    assert checkpoint_files(str(ckpt / "ckpt-2")) == [
        str(ckpt / n) for n in ("checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index")
    ]
    split_logdir(str(logdir), str(out))  # the bytes are no real checkpoint: a warning on the run, still copied

    assert sorted(os.listdir(out / "ckpt")) == ["checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index"]
    assert (out / "ckpt" / "ckpt-2.index").read_bytes() == b"ckpt-2.index"
    assert os.path.getmtime(out / "ckpt" / "ckpt-2.index") == 1_700_000_000


@pytest.mark.parametrize("payload", [b"", b"x", bytes(range(256)) * 40])
def test_records_are_framed_as_tensorboards_record_writer_frames_them(tmp_path, payload):
    class Buffer(list):
        def write(self, data):
            self.append(data)

    expected = Buffer()
    RecordWriter(expected).write(payload)
    writer = FramedWriter(str(tmp_path / "out"))
    writer.write(payload)
    writer.close()
    assert (tmp_path / "out").read_bytes() == b"".join(expected)


def _tf2_events(steps: range, layers: int, shift: float) -> list[event_pb2.Event]:
    """`kernel` written by `layers` layers per step, metadata on the file's first value only, as TF2 writers do."""
    events = []
    for step in steps:
        for layer in range(layers):
            event = histogram_event(step, "kernel", np.arange(4.0) + 10 * layer + shift)
            if events:
                event.summary.value[0].ClearField("metadata")
            events.append(event)
    return events


def _first_plugins(path: Path) -> dict[str, str]:
    """Each tag's plugin name as its first value in the file says it."""
    found: dict[str, str] = {}
    for payload in payloads(path):
        for value in event_pb2.Event.FromString(payload).summary.value:
            found.setdefault(value.tag, value.metadata.plugin_data.plugin_name)
    return found


def test_a_resumed_run_of_colliding_lanes_splits_lanes_then_supersedes_each(tmp_path):
    logdir, out = tmp_path / "logs", tmp_path / "out"
    write_events(str(logdir / "events.out.tfevents.100.a"), _tf2_events(range(0, 4), 2, 0.0))
    write_events(str(logdir / "events.out.tfevents.200.a"), _tf2_events(range(2, 6), 2, 0.5))

    result = split_logdir(str(logdir), str(out))

    superseded = sorted((m.new_tag, m.steps) for r in result.runs for m in r.moves if m.kind == "superseded")
    assert superseded == [("kernel/lane_0/superseded", (2, 3)), ("kernel/lane_1/superseded", (2, 3))]
    assert scan(str(out))["summary"]["collisions"] == 0
    for lane in range(2):
        assert [s for s, _, _ in lane_values(out, ".", f"kernel/lane_{lane}", 0)] == list(range(6))
    lanes = {"kernel/lane_0": "histograms", "kernel/lane_1": "histograms"}
    moved = {"kernel/lane_0/superseded": "histograms", "kernel/lane_1/superseded": "histograms"}
    assert _first_plugins(out / "events.out.tfevents.100.a") == lanes | moved
    assert _first_plugins(out / "events.out.tfevents.200.a") == lanes


def test_the_first_value_left_under_a_tag_gets_the_metadata_of_the_one_that_moved(tmp_path):
    logdir, out = tmp_path / "logs", tmp_path / "out"
    older = logdir / "events.out.tfevents.100.a"
    write_events(str(older), _tf2_events(range(0, 6), 1, 0.0))
    write_events(str(logdir / "events.out.tfevents.200.a"), _tf2_events(range(0, 3), 1, 0.5))

    split_logdir(str(logdir), str(out))

    # The older file's steps 0-2 moved to kernel/superseded, its metadata with them; step 3 now opens `kernel`.
    assert _first_plugins(out / older.name) == {"kernel/superseded": "histograms", "kernel": "histograms"}
    assert [s for s, _, _ in lane_values(out, ".", "kernel", 0)] == list(range(6))


def test_a_run_linked_in_from_outside_logdir_is_written_under_its_run_name(tmp_path):
    elsewhere, logdir, out = tmp_path / "elsewhere", tmp_path / "logs", tmp_path / "out"
    layered_run(str(elsewhere / "events.out.tfevents.1.a"), "kernel", [3, 12], steps=2)
    logdir.mkdir()
    (logdir / "linked").symlink_to(elsewhere)

    split_logdir(str(logdir), str(out))

    assert os.listdir(out / "linked") == ["events.out.tfevents.1.a"]
    assert not (out / "linked").is_symlink()
    assert scan(str(out))["summary"]["collisions"] == 0


def test_two_processes_copy_what_one_copies_and_say_what_they_could_not(tmp_path, monkeypatch):
    from tb_varscope_plugin.rewrite import copy_processes
    from tb_varscope_plugin.rewrite.plan import plan_run

    logdir = tmp_path / "logs"
    for k in range(4):
        layered_run(str(logdir / f"run{k}" / "events.out.tfevents.1.a"), "kernel", [3, 5 + k], steps=3 + k)
    index = LogdirIndex(str(logdir))
    index.reload()
    report = {r["run"]: r for r in scan(str(logdir))["runs"]}
    plans = [plan_run(index.runs[name], report[name]).files[0] for name in sorted(index.runs)]
    truncated = logdir / "run3" / "events.out.tfevents.1.a"
    truncated.write_bytes(truncated.read_bytes()[:200])  # after indexing: the copy meets the end early
    monkeypatch.setattr(copy_processes, "FORK_MIN_BYTES", 0)

    results = {}
    for processes in (1, 2):
        out = tmp_path / f"out{processes}"
        jobs = [(plan, str(out / f"{k}.tfevents")) for k, plan in enumerate(plans)]
        out.mkdir()
        results[processes] = copy_processes.copy_files(jobs, processes)
        results[processes, "files"] = {p.name: p.read_bytes() for p in out.iterdir()}

    assert results[1] == results[2]
    assert results[1, "files"] == results[2, "files"]
    assert [warning is None for _, warning in results[1]] == [True, True, True, False]
    assert results[1][3][1]["file"] == str(truncated)


def test_a_checkpoint_named_outside_logdir_stays_where_it_is(tmp_path, capsys):
    logdir, out = tmp_path / "logs", tmp_path / "out"
    layered_run(str(logdir / "events.out.tfevents.1.a"), "kernel", [3, 12], steps=2)
    outside = tmp_path / "model.safetensors"
    outside.write_bytes(b"not read here")

    assert main(["split", str(logdir), str(out), "--checkpoint", str(outside)]) == 0

    assert f"checkpoint {outside} left in place (outside LOGDIR)" in capsys.readouterr().out
    assert os.listdir(out) == ["events.out.tfevents.1.a"]
