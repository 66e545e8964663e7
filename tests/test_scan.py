"""Collisions found by scan() and shown by `tb-varscope scan`, on logs written by TensorBoard's own writers."""

import json
import os
import subprocess
import sys

import numpy as np
from eventlogs import histogram_event, layered_run, write_events

from tb_varscope_plugin import scan
from tb_varscope_plugin.cli import main
from tb_varscope_plugin.reading.logdir import LogdirIndex


def test_same_step_collision_has_one_lane_per_writer(tmp_path):
    layered_run(str(tmp_path / "train" / "events.out.tfevents.1.a"), "kernel", [3, 12, 48], steps=4)
    report = scan(str(tmp_path))
    assert report["schema"] == "tb-varscope/1"
    assert report["summary"] == {"runs": 1, "histogram_tags": 1, "collisions": 1, "warnings": 0}
    (run,) = report["runs"]
    assert run["run"] == "train"
    (collision,) = run["collisions"]
    assert collision["kind"] == "same-step"
    assert (collision["writers"], collision["steps"]) == (3, 4)
    assert (collision["first_step"], collision["last_step"]) == (0, 3)
    assert collision["files"] == ["events.out.tfevents.1.a"]
    assert [lane["elements"] for lane in collision["lanes"]] == [3, 12, 48]
    assert "v.path" in collision["fix"]


def test_lanes_keep_write_order_across_steps(tmp_path):
    layered_run(str(tmp_path / "events.out.tfevents.1.a"), "weight", [5, 7], steps=3, legacy=True)
    index = LogdirIndex(str(tmp_path))
    index.reload()
    run = index.runs["."]
    assert run.lane_count("weight") == 2
    for lane, size in enumerate([5, 7]):
        series = [(ref.wall_time, ref.step, run.decode(ref)) for ref in run.lane_refs("weight", lane)]
        assert [step for _, step, _ in series] == [0, 1, 2]
        assert all(buckets[:, 2].sum() == size for _, _, buckets in series)
        # Layer k's values were drawn around 10 * k: the lanes are not mixed up.
        assert all(10 * lane - 5 < buckets[0, 0] < buckets[-1, 1] < 10 * lane + 5 for _, _, buckets in series)
    (collision,) = scan(str(tmp_path))["runs"][0]["collisions"]
    assert "PyTorch" in collision["explanation"]


def test_resumed_writer_collides_across_files(tmp_path):
    run = tmp_path / "run"
    values = np.linspace(0, 1, 10)
    write_events(str(run / "events.out.tfevents.100.a"), [histogram_event(s, "dense/kernel", values) for s in range(6)])
    write_events(
        str(run / "events.out.tfevents.200.a"), [histogram_event(s, "dense/kernel", values) for s in range(4, 9)]
    )
    (collision,) = scan(str(tmp_path))["runs"][0]["collisions"]
    assert collision["kind"] == "cross-file"
    assert (collision["writers"], collision["steps"], collision["first_step"], collision["last_step"]) == (2, 2, 4, 5)
    assert collision["files"] == ["events.out.tfevents.100.a", "events.out.tfevents.200.a"]
    assert collision["lanes"] == []

    # Each file involved is a lane of its own, so the values one writer hid can be seen.
    index = LogdirIndex(str(tmp_path))
    index.reload()
    resumed = index.runs["run"]
    assert resumed.lane_count("dense/kernel") == 2
    assert [ref.step for ref in resumed.lane_refs("dense/kernel", 0)] == [0, 1, 2, 3, 4, 5]
    assert [ref.step for ref in resumed.lane_refs("dense/kernel", 1)] == [4, 5, 6, 7, 8]
    assert {ref.file for ref in resumed.lane_refs("dense/kernel", 1)} == {str(run / "events.out.tfevents.200.a")}


def test_a_tag_shared_by_several_runs_is_not_a_collision(tmp_path):
    for name in ["a", "b", "c"]:
        layered_run(str(tmp_path / name / "events.out.tfevents.1.x"), "dense/kernel", [6], steps=5)
    report = scan(str(tmp_path))
    assert report["summary"] == {"runs": 3, "histogram_tags": 3, "collisions": 0, "warnings": 0}
    assert [run["run"] for run in report["runs"]] == ["a", "b", "c"]


def test_runs_are_named_as_tensorboard_names_them(tmp_path):
    layered_run(str(tmp_path / "events.out.tfevents.1.x"), "w", [2], steps=1)
    layered_run(str(tmp_path / "exp" / "seed-1" / "train" / "events.out.tfevents.1.x"), "w", [2], steps=1)
    assert [run["run"] for run in scan(str(tmp_path))["runs"]] == [".", "exp/seed-1/train"]


def test_cli_exit_status_is_a_linters(tmp_path, capsys):
    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    layered_run(str(clean / "run" / "events.out.tfevents.1.x"), "a/kernel", [4], steps=2)
    layered_run(str(dirty / "run" / "events.out.tfevents.1.x"), "my_variable1_0/histogram", [3, 3, 3], steps=2)

    assert main(["scan", str(clean)]) == 0
    assert "No colliding histogram tags: 1 run, 1 histogram tag read, no warnings." in capsys.readouterr().out

    assert main(["scan", str(dirty)]) == 1
    out = capsys.readouterr().out
    assert "run: my_variable1_0/histogram  3 writers per step at steps 0..1" in out
    assert "build()" in out
    assert out.rstrip().endswith("1 collision (1 cause) in 1 of 1 run, 1 histogram tag read, no warnings.")


def test_cli_json_is_the_report_alone_on_stdout(tmp_path, capsys):
    layered_run(str(tmp_path / "a" / "events.out.tfevents.1.x"), "kernel", [2, 2], steps=2)
    layered_run(str(tmp_path / "b" / "events.out.tfevents.1.x"), "kernel", [2, 2], steps=2)
    assert main(["scan", str(tmp_path), "--json", "--run", "^b$"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["schema"] == "tb-varscope/1"
    assert [run["run"] for run in document["runs"]] == ["b"]


def test_cli_usage_errors_are_one_line_and_status_2(tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "tb_varscope_plugin", *args], capture_output=True, text=True, env=os.environ
        )

    missing = run("scan", str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert (
        missing.stderr.strip()
        == f"tb-varscope: error: LOGDIR {str(tmp_path / 'nowhere')!r} is not a readable directory"
    )
    bad_regex = run("scan", str(tmp_path), "--run", "(")
    assert bad_regex.returncode == 2 and "--run is not a valid regular expression" in bad_regex.stderr
    no_command = run()
    assert no_command.returncode == 2 and "Traceback" not in no_command.stderr
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("tb-varscope 0.")
