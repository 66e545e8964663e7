"""`tb-varscope scan` exits like a linter, so a CI gate cannot pass by mistake: every case of the contract's table."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from eventlogs import histogram_event, layered_run, write_events

from tb_varscope_plugin import cli, scan
from tb_varscope_plugin.cli import main


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a failed scan writes, checked to be alone on stderr with nothing on stdout."""
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("tb-varscope: error: ")
    return lines[0]


def test_clean_logs_exit_0_and_collisions_exit_1(tmp_path, capsys):
    layered_run(str(tmp_path / "clean" / "events.out.tfevents.1.x"), "dense/kernel", [4], steps=2)
    assert main(["scan", str(tmp_path / "clean")]) == cli.CLEAN
    layered_run(str(tmp_path / "dirty" / "events.out.tfevents.1.x"), "kernel", [4, 4], steps=2)
    assert main(["scan", str(tmp_path / "dirty")]) == cli.COLLISIONS


def test_an_empty_logdir_exits_2(tmp_path, capsys):
    assert main(["scan", str(tmp_path), "--json"]) == 2
    assert error_line(capsys) == (
        f"tb-varscope: error: LOGDIR {str(tmp_path)!r} holds no event file (no file named *tfevents* in it or below it)"
    )


def test_a_logdir_with_no_event_file_exits_2(tmp_path, capsys):
    (tmp_path / "run" / "plugins").mkdir(parents=True)
    (tmp_path / "run" / "notes.txt").write_text("no events here")
    (tmp_path / "model.weights.h5").write_bytes(b"")
    assert main(["scan", str(tmp_path)]) == 2
    assert "holds no event file" in error_line(capsys)


def test_a_run_filter_that_matches_no_run_exits_2_and_names_the_runs(tmp_path, capsys):
    for name in ["train", "validation"]:
        layered_run(str(tmp_path / name / "events.out.tfevents.1.x"), "kernel", [3, 3], steps=1)
    assert main(["scan", str(tmp_path), "--run", "^trian$"]) == 2
    assert error_line(capsys) == (
        f"tb-varscope: error: --run '^trian$' matches none of the runs under {str(tmp_path)!r}"
        " (2 runs: train, validation)"
    )


def test_a_missing_checkpoint_exits_2_before_anything_is_read(tmp_path, capsys, monkeypatch):
    layered_run(str(tmp_path / "run" / "events.out.tfevents.1.x"), "kernel", [3, 3], steps=1)
    scans = []
    monkeypatch.setattr(cli, "scan", lambda *args, **kwargs: scans.append(args))
    missing = str(tmp_path / "ckpt" / "ckpt-9")
    assert main(["scan", str(tmp_path), "--checkpoint", missing]) == 2
    assert error_line(capsys) == (
        f"tb-varscope: error: --checkpoint {missing!r} does not exist"
        f" (no such file or directory, and no {missing}.index)"
    )
    assert scans == []


def test_a_tf_checkpoint_prefix_is_a_checkpoint_that_exists(tmp_path, capsys):
    layered_run(str(tmp_path / "run" / "events.out.tfevents.1.x"), "kernel", [3, 3], steps=1)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "ckpt-1.index").write_bytes(b"not really an index")
    # The prefix names no file, but its `.index` exists: the scan goes ahead, and the damage is a warning.
    assert main(["scan", str(tmp_path), "--checkpoint", str(tmp_path / "ckpt" / "ckpt-1")]) == 1
    assert "checkpoint not read" in capsys.readouterr().out


def _refusing(lister, refused: str):
    def refuse(path):
        if os.fspath(path) == refused:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return lister(path)

    return refuse


def test_a_logdir_that_cannot_be_listed_exits_2(tmp_path, capsys, monkeypatch):
    layered_run(str(tmp_path / "run" / "events.out.tfevents.1.x"), "kernel", [3, 3], steps=1)
    # chmod 000 does not stop root, who may run the tests: both ways of listing it are refused instead.
    for name in ("listdir", "scandir"):
        monkeypatch.setattr(os, name, _refusing(getattr(os, name), str(tmp_path)))
    assert main(["scan", str(tmp_path)]) == 2
    line = error_line(capsys)
    assert line.startswith(f"tb-varscope: error: LOGDIR {str(tmp_path)!r} cannot be listed: ")
    assert "Permission denied" in line


def test_a_logdir_whose_only_runs_cannot_be_listed_says_so(tmp_path, capsys, monkeypatch):
    layered_run(str(tmp_path / "locked" / "events.out.tfevents.1.x"), "kernel", [3, 3], steps=1)
    scandir = os.scandir

    def refuse(path):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    assert main(["scan", str(tmp_path)]) == 2
    line = error_line(capsys)
    assert "holds no event file" in line
    assert f"1 warning, the first: {tmp_path / 'locked'}: could not be listed" in line


def test_an_internal_error_exits_2_with_one_line_and_no_traceback(tmp_path, capsys, monkeypatch):
    layered_run(str(tmp_path / "run" / "events.out.tfevents.1.x"), "kernel", [3, 3], steps=1)

    def crash(*args, **kwargs):
        raise ValueError("a bug\nover two lines")

    monkeypatch.setattr(cli, "scan", crash)
    assert main(["scan", str(tmp_path)]) == 2  # never 1: a CI gate would read it as "collisions found"
    assert error_line(capsys) == (
        "tb-varscope: error: internal error (ValueError: a bug over two lines); please report it with the command line"
    )


def test_an_internal_error_while_formatting_exits_2(tmp_path, capsys, monkeypatch):
    layered_run(str(tmp_path / "run" / "events.out.tfevents.1.x"), "kernel", [3, 3], steps=1)

    def crash(*args, **kwargs):
        raise KeyError("lanes")

    monkeypatch.setattr(cli, "format_report", crash)
    assert main(["scan", str(tmp_path)]) == 2
    assert "internal error (KeyError: 'lanes')" in error_line(capsys)


def test_ctrl_c_exits_130(tmp_path, capsys, monkeypatch):
    layered_run(str(tmp_path / "run" / "events.out.tfevents.1.x"), "kernel", [3, 3], steps=1)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "scan", interrupted)
    assert main(["scan", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "tb-varscope: interrupted\n"


# The report read at a glance: table, clean runs, one block per cause, warnings, closing line.


def tagged_run(path: Path, sizes: dict[str, list[int]], steps: int = 2) -> None:
    """One event file in which each tag is written once per layer per step, layer k's values around 10 * k."""
    rng = np.random.default_rng(0)
    events = [
        histogram_event(step, tag, rng.normal(size=size) + 10 * layer)
        for step in range(steps)
        for tag, layers in sizes.items()
        for layer, size in enumerate(layers)
    ]
    write_events(str(path), events)


def table(out: str) -> list[list[str]]:
    lines = out.splitlines()
    rows = lines[: lines.index(next(line for line in lines if "clean" in line or not line))]
    return [re.split(r"\s{2,}", row.strip()) for row in rows]


def test_the_report_opens_with_a_table_then_explains_each_cause_once(tmp_path, capsys):
    for run in ["a", "b"]:
        tagged_run(tmp_path / run / "events.out.tfevents.1.x", {"kernel": [1, 6, 6], "bias": [2, 3]})
    for run in ["c", "d"]:
        layered_run(str(tmp_path / run / "events.out.tfevents.1.x"), "dense/kernel", [4], steps=2)

    assert main(["scan", str(tmp_path)]) == 1
    out = capsys.readouterr().out

    assert table(out) == [
        ["run", "collisions", "worst tag", "writers", "warnings", "checkpoint"],
        ["a", "2", "kernel", "3", "0", "none"],
        ["b", "2", "kernel", "3", "0", "none"],
    ]
    assert "\n2 runs clean: c, d\n" in out
    # Four collisions of one cause: its explanation and fix are said once, then every tag and lane it covers.
    assert "cause 1 of 1 [same-step]: 4 tags in 2 runs" in out
    assert out.count("why") == 1 and out.count("fix: ") == 1
    assert "why (for `bias`, the others alike): 2 values of `bias` are written at each step" in out
    for run in ["a", "b"]:
        assert f"  {run}: kernel  3 writers per step at steps 0..1\n" in out
        assert f"  {run}: bias  2 writers per step at steps 0..1\n" in out
    kernel_lanes = out.split("  a: kernel")[1].splitlines()[1:4]
    assert [line.split()[:2] for line in kernel_lanes] == [["lane", "0"], ["lane", "1"], ["lane", "2"]]
    assert kernel_lanes[0].endswith("  1 element")  # never "1 elements"
    assert kernel_lanes[1].endswith("  6 elements")
    assert out.endswith("\n4 collisions (1 cause) in 2 of 4 runs, 6 histogram tags read, no warnings.\n")
    assert all(len(line) <= cli.WIDTH for line in out.splitlines())


def test_a_clean_logdir_is_two_lines(tmp_path, capsys):
    for run in ["a", "b"]:
        layered_run(str(tmp_path / run / "events.out.tfevents.1.x"), "dense/kernel", [4], steps=2)
    assert main(["scan", str(tmp_path)]) == 0
    assert capsys.readouterr().out == (
        "all 2 runs clean: a, b\n\nNo colliding histogram tags: 2 runs, 2 histogram tags read, no warnings.\n"
    )


def test_verbose_adds_each_lanes_evidence(tmp_path, capsys):
    layered_run(str(tmp_path / "run" / "events.out.tfevents.1.x"), "kernel", [3, 5], steps=2)
    (lane, _) = scan(str(tmp_path))["runs"][0]["collisions"][0]["lanes"]
    evidence_start = " ".join(lane["evidence"].split()[:4])

    assert main(["scan", str(tmp_path)]) == 1
    assert evidence_start not in capsys.readouterr().out
    assert main(["scan", str(tmp_path), "--verbose"]) == 1
    assert "      " + evidence_start in capsys.readouterr().out


def test_warnings_are_counted_in_the_table_the_closing_line_and_the_json(tmp_path, capsys):
    layered_run(str(tmp_path / "a" / "events.out.tfevents.1.x"), "kernel", [3, 4], steps=2)
    os.symlink(tmp_path / "nowhere", tmp_path / "a" / "events.out.tfevents.2.gone")

    assert main(["scan", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert table(out)[1] == ["a", "1", "kernel", "2", "1", "none"]
    assert "\n1 warning (what could not be read is left out, the rest is read):\n" in out
    assert "\n  run a: a/events.out.tfevents.2.gone: " in out
    assert out.endswith(" read, 1 warning.\n")

    assert main(["scan", str(tmp_path), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["summary"]["warnings"] == 1


def test_long_names_are_cut_from_the_left_to_keep_the_table_narrow(tmp_path, capsys):
    run = "experiment-" + "x" * 60 + "/seed-1/train"
    tag = "model/" + "block_" * 10 + "dense/kernel"
    layered_run(str(tmp_path / run / "events.out.tfevents.1.x"), tag, [3, 4], steps=1)
    assert main(["scan", str(tmp_path)]) == 1
    header, row = table(capsys.readouterr().out)
    assert len("  ".join(row)) <= cli.WIDTH
    assert row[0].startswith("...") and row[0].endswith("/seed-1/train")
    assert row[2].startswith("...") and row[2].endswith("dense/kernel")
    assert abs(len(row[0]) - len(row[2])) <= 1  # both gave way alike


def test_bidi_and_control_characters_are_shown_escaped(tmp_path, capsys):
    layered_run(str(tmp_path / "run" / "events.out.tfevents.1.x"), "\u202egnp.exe\u202c/kernel", [3, 4], steps=1)
    for output in ["text", "github"]:
        assert main(["scan", str(tmp_path), "--format", output]) == 1
        out = capsys.readouterr().out
        assert "\u202e" not in out and "\u202c" not in out
        assert "\\u202egnp.exe\\u202c/kernel" in out


# --format json and --format github


def test_format_json_is_the_long_form_of_json(tmp_path, capsys):
    layered_run(str(tmp_path / "run" / "events.out.tfevents.1.x"), "kernel", [3, 4], steps=2)
    assert main(["scan", str(tmp_path), "--json"]) == 1
    short = capsys.readouterr().out
    assert main(["scan", str(tmp_path), "--format", "json"]) == 1
    assert capsys.readouterr().out == short
    assert json.loads(short)["schema"] == "tb-varscope/1"


def test_json_and_another_format_together_are_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["scan", str(tmp_path), "--json", "--format", "github"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


# GitHub's documented workflow command: `::{command} {key}={value},{key}={value}::{message}`, where the message
# escapes `%` as %25, CR as %0D and LF as %0A, and a property value also `:` as %3A and `,` as %2C.
WORKFLOW_COMMAND = re.compile(r"^::(error|warning) ((?:[a-z]+=[^,:]*)(?:,[a-z]+=[^,:]*)*)::([^\r\n]*)$")


def unescape(text: str) -> str:
    for escaped, character in [("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")]:
        text = text.replace(escaped, character)
    return text


def workflow_commands(out: str) -> tuple[list[tuple[str, dict[str, str], str]], list[str]]:
    commands, other = [], []
    for line in out.splitlines():
        match = WORKFLOW_COMMAND.match(line)
        if match is None:
            assert not line.startswith("::"), f"malformed workflow command: {line!r}"
            other.append(line)
            continue
        properties = dict(pair.split("=", 1) for pair in match.group(2).split(","))
        commands.append((match.group(1), {k: unescape(v) for k, v in properties.items()}, unescape(match.group(3))))
    return commands, other


def test_github_format_is_one_error_per_collision_and_one_warning_per_damaged_file(tmp_path, capsys):
    awkward = "acc: 50%, top-1"  # a tag with every character GitHub wants escaped in a property
    tagged_run(tmp_path / "run" / "events.out.tfevents.1.x", {awkward: [3, 4], "kernel": [5, 5]})
    layered_run(str(tmp_path / "run2" / "events.out.tfevents.1.x"), "dense/kernel", [4], steps=1)
    os.symlink(tmp_path / "nowhere", tmp_path / "run2" / "events.out.tfevents.2.gone")

    assert main(["scan", str(tmp_path), "--format", "github"]) == 1
    commands, other = workflow_commands(capsys.readouterr().out)

    errors = [(properties, message) for command, properties, message in commands if command == "error"]
    assert [properties for properties, _ in errors] == [
        {
            "file": str(tmp_path / "run" / "events.out.tfevents.1.x"),
            "title": f"histogram tag {tag} collides (same-step)",
        }
        for tag in [awkward, "kernel"]
    ]
    first = errors[0][1].split("\n")
    assert first[0] == f"run run: {awkward} 2 writers per step at steps 0..1"
    assert first[1] == "lane 0  (not named)  3 elements"
    assert first[-2].startswith("why: 2 values of `acc: 50%, top-1` are written")
    assert first[-1].startswith("fix: ")

    (warning,) = [(properties, message) for command, properties, message in commands if command == "warning"]
    assert warning[0]["file"] == str(tmp_path / "run2" / "events.out.tfevents.2.gone")
    assert "could not be read" in warning[1]
    # Outside the commands, only the closing line, for the log.
    assert other == ["2 collisions (1 cause) in 1 of 2 runs, 3 histogram tags read, 1 warning."]


def test_github_format_annotates_a_scan_that_gives_no_answer(tmp_path, capsys):
    assert main(["scan", str(tmp_path), "--format", "github"]) == 2
    captured = capsys.readouterr()
    (command,), other = workflow_commands(captured.out)
    assert other == []
    assert command == (
        "error",
        {"title": "tb-varscope gave no answer"},
        captured.err.removeprefix("tb-varscope: error: ").rstrip("\n"),
    )
    assert "holds no event file" in command[2]
