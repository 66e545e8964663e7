"""What cannot be read is said, with its path, and everything else is still read and reported."""

import os

from eventlogs import layered_run

from tb_varscope_plugin import scan
from tb_varscope_plugin.cli import main
from tb_varscope_plugin.reading.logdir import LogdirIndex


def test_a_dangling_event_file_is_a_warning_and_the_rest_is_read(tmp_path, capsys):
    layered_run(str(tmp_path / "a" / "events.out.tfevents.1.x"), "kernel", [3, 4], steps=2)
    layered_run(str(tmp_path / "b" / "events.out.tfevents.1.x"), "kernel", [3, 4], steps=2)
    dangling = tmp_path / "a" / "events.out.tfevents.2.gone"
    os.symlink(tmp_path / "nowhere", dangling)

    report = scan(str(tmp_path))

    a = next(run for run in report["runs"] if run["run"] == "a")
    (warning,) = a["warnings"]
    assert warning["file"] == str(dangling)
    assert "could not be read" in warning["message"]
    assert report["summary"]["collisions"] == 2
    assert main(["scan", str(tmp_path)]) == 1
    assert "could not be read" in capsys.readouterr().out


def test_a_file_that_vanishes_is_read_again_when_it_is_back(tmp_path):
    path = tmp_path / "run" / "events.out.tfevents.1.x"
    layered_run(str(path), "kernel", [3, 4], steps=2)
    index = LogdirIndex(str(tmp_path))
    index.reload()
    moved = tmp_path / "moved"
    path.rename(moved)
    (event_file,) = index.runs["run"].files
    assert event_file.reload() is False
    assert "could not be read" in event_file.warnings()[0]["message"]
    moved.rename(path)
    event_file.reload()
    assert event_file.warnings() == []


def test_a_directory_that_cannot_be_listed_is_reported_and_the_rest_is_read(tmp_path, monkeypatch):
    layered_run(str(tmp_path / "open" / "events.out.tfevents.1.x"), "kernel", [3, 4], steps=2)
    layered_run(str(tmp_path / "locked" / "run" / "events.out.tfevents.1.x"), "kernel", [3, 4], steps=2)
    scandir = os.scandir  # how a local directory is listed (filesystem.listing); chmod binds no root user

    def refuse(path):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    report = scan(str(tmp_path))

    assert [run["run"] for run in report["runs"]] == ["open"]
    (warning,) = report["warnings"]
    assert warning["file"] == str(tmp_path / "locked")
    assert "could not be listed" in warning["message"] and "Permission denied" in warning["message"]


def test_control_characters_in_names_do_not_reach_the_terminal(tmp_path, capsys):
    layered_run(str(tmp_path / "red\x1b[31mrun" / "events.out.tfevents.1.x"), "k\x07", [3, 4], steps=2)
    assert main(["scan", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "red\\x1b[31mrun: k\\x07  2 writers per step" in out
