"""`tb-varscope scan` exits like a linter, so a CI gate cannot pass by mistake: every case of the contract's table."""

from __future__ import annotations

import os

import pytest
from eventlogs import layered_run

from tb_varscope_plugin import cli
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


def test_a_logdir_that_cannot_be_listed_exits_2(tmp_path, capsys, monkeypatch):
    layered_run(str(tmp_path / "run" / "events.out.tfevents.1.x"), "kernel", [3, 3], steps=1)
    listdir = os.listdir

    def refuse(path):
        if os.fspath(path) == str(tmp_path):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return listdir(path)

    monkeypatch.setattr(os, "listdir", refuse)  # chmod 000 does not stop root, who may run the tests
    assert main(["scan", str(tmp_path)]) == 2
    line = error_line(capsys)
    assert line.startswith(f"tb-varscope: error: LOGDIR {str(tmp_path)!r} cannot be listed: ")
    assert "Permission denied" in line


def test_a_logdir_whose_only_runs_cannot_be_listed_says_so(tmp_path, capsys, monkeypatch):
    layered_run(str(tmp_path / "locked" / "events.out.tfevents.1.x"), "kernel", [3, 3], steps=1)
    listdir = os.listdir

    def refuse(path):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return listdir(path)

    monkeypatch.setattr(os, "listdir", refuse)
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

    def crash(report):
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
