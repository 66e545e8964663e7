"""The logdir as it really is and as it changes: links, names that are not UTF-8, FIFOs, and runs and files that
are renamed, deleted, truncated or overwritten between reloads. Each is said in a warning, and the rest is read."""

from __future__ import annotations

import os
import shutil
import socket
import threading

import numpy as np
import pytest
from eventlogs import histogram_event, layered_run, write_events
from test_plugin_routes import load_plugin

from tb_varscope_plugin import report as report_module
from tb_varscope_plugin import scan
from tb_varscope_plugin.filesystem import PositionedReader
from tb_varscope_plugin.reading import run_index
from tb_varscope_plugin.reading.logdir import NOT_UTF8, LogdirIndex
from tb_varscope_plugin.report import Reporter


def two_runs(logdir) -> None:
    layered_run(str(logdir / "a" / "events.out.tfevents.1.x"), "kernel", [3, 4], steps=2)
    layered_run(str(logdir / "b" / "events.out.tfevents.1.x"), "bias", [2, 5], steps=2)


def scan_within(logdir, seconds: float = 60.0) -> dict:
    """scan(), with a generous bound as a safety net only: a walk that never ends fails here instead of hanging."""
    found: list = []
    worker = threading.Thread(target=lambda: found.append(scan(str(logdir))), daemon=True)
    worker.start()
    worker.join(seconds)
    assert found, "scan() did not return"
    return found[0]


def messages(warnings) -> dict[str, str]:
    return {w["file"]: w["message"] for w in warnings}


def test_a_link_back_up_the_tree_is_walked_once(tmp_path):
    two_runs(tmp_path)
    os.symlink("..", tmp_path / "a" / "up")
    os.symlink("..", tmp_path / "b" / "up")  # two such links made the walk exponential

    report = scan_within(tmp_path)

    assert [run["run"] for run in report["runs"]] == ["a", "b"]  # as TensorBoard lists them
    assert messages(report["warnings"]) == {
        str(tmp_path / "a" / "up"): "a link to a directory already walked; not walked again",
        str(tmp_path / "b" / "up"): "a link to a directory already walked; not walked again",
    }
    assert report["summary"]["collisions"] == 2


def test_a_linked_directory_is_a_run_of_its_own_once(tmp_path):
    layered_run(str(tmp_path / "elsewhere" / "run" / "events.out.tfevents.1.x"), "kernel", [3, 4], steps=2)
    logdir = tmp_path / "logs"
    logdir.mkdir()
    os.symlink(tmp_path / "elsewhere" / "run", logdir / "linked")

    report = scan_within(logdir)

    assert [run["run"] for run in report["runs"]] == ["linked"]
    assert report["warnings"] == []


def test_names_that_are_not_utf8_are_passed_over_with_a_warning_that_shows_them_escaped(tmp_path):
    two_runs(tmp_path)
    odd_run = os.path.join(os.fsencode(tmp_path), b"run_\xff")
    os.makedirs(odd_run)
    shutil.copy(tmp_path / "a" / "events.out.tfevents.1.x", os.path.join(odd_run, b"events.out.tfevents.1.x"))
    shutil.copy(tmp_path / "a" / "events.out.tfevents.1.x", os.fsencode(tmp_path / "b") + b"/events.out.tfevents.\xfe")

    report = scan_within(tmp_path)

    assert [run["run"] for run in report["runs"]] == ["a", "b"]
    assert messages(report["warnings"]) == {
        f"{tmp_path}/run_\\xff": f"{NOT_UTF8}; not read",
        f"{tmp_path}/b/events.out.tfevents.\\xfe": f"{NOT_UTF8}; not read",
    }
    assert report["runs"][1]["event_files"] == 1


def test_a_fifo_or_socket_named_like_an_event_file_is_a_warning_and_never_read(tmp_path):
    two_runs(tmp_path)
    fifo = tmp_path / "a" / "events.out.tfevents.2.fifo"
    os.mkfifo(fifo)
    sock = tmp_path / "b" / "events.out.tfevents.2.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    try:
        report = scan_within(tmp_path)
    finally:
        server.close()

    assert messages(report["warnings"]) == {
        str(fifo): "is a FIFO, not a regular file; not read",
        str(sock): "is a socket, not a regular file; not read",
    }
    assert [run["event_files"] for run in report["runs"]] == [1, 1]
    assert report["summary"]["collisions"] == 2
    with pytest.raises(OSError, match="not a regular file"):
        PositionedReader(str(fifo))  # opening it would wait for a writer, under the index's lock


def live(logdir) -> tuple[LogdirIndex, Reporter]:
    index = LogdirIndex(str(logdir))
    index.reload()
    return index, Reporter(index)


def reread(index: LogdirIndex, reporter: Reporter) -> dict:
    index.reload()
    return reporter.report()


def test_a_renamed_run_disappears_under_its_old_name_and_appears_under_the_new(tmp_path):
    two_runs(tmp_path)
    index, reporter = live(tmp_path)
    reporter.report()
    (tmp_path / "a").rename(tmp_path / "c")
    shutil.rmtree(tmp_path / "b")

    report = reread(index, reporter)

    assert [run["run"] for run in report["runs"]] == ["c"]
    assert report["runs"][0]["collisions"][0]["tag"] == "kernel"
    gone = messages(report["warnings"])
    assert set(gone) == {str(tmp_path / "a"), str(tmp_path / "b")}
    assert gone[str(tmp_path / "a")].startswith("run 'a' is no longer found")
    two_runs(tmp_path)  # both names back: their warnings go
    report = reread(index, reporter)
    assert [run["run"] for run in report["runs"]] == ["a", "b", "c"]
    assert report["warnings"] == []


def test_a_truncated_file_is_read_again_from_the_start_with_a_warning(tmp_path):
    path = tmp_path / "run" / "events.out.tfevents.1.x"
    layered_run(str(path), "kernel", [3, 4], steps=5)
    index, reporter = live(tmp_path)
    assert reporter.report()["runs"][0]["collisions"][0]["steps"] == 5
    write_events(str(path), [histogram_event(0, "kernel", np.arange(3.0))])  # a new writer, under the same name

    (run,) = reread(index, reporter)["runs"]

    assert run["collisions"] == []
    assert run["histogram_tags"] == 1
    (warning,) = run["warnings"]
    assert warning["file"] == str(path)
    assert warning["message"].startswith("shrank to ")
    assert warning["message"].endswith("; read again from the start")


def test_a_file_overwritten_with_other_records_is_read_again_from_the_start(tmp_path):
    path = tmp_path / "run" / "events.out.tfevents.1.x"
    layered_run(str(path), "kernel", [3, 4], steps=3)
    index, reporter = live(tmp_path)
    reporter.report()
    layered_run(str(path), "bias", [2, 6, 7], steps=6)  # longer than before: it did not shrink

    (run,) = reread(index, reporter)["runs"]

    (collision,) = run["collisions"]
    assert (collision["tag"], collision["writers"], collision["steps"]) == ("bias", 3, 6)
    (warning,) = run["warnings"]
    assert warning["message"] == (
        "was overwritten: the last record read no longer ends where it did; read again from the start"
    )


def test_a_deleted_file_takes_its_values_with_it_and_says_so(tmp_path):
    run_dir = tmp_path / "run"
    layered_run(str(run_dir / "events.out.tfevents.1.x"), "kernel", [3, 4], steps=3)
    write_events(str(run_dir / "events.out.tfevents.2.x"), [histogram_event(0, "bias", np.arange(3.0))])
    index, reporter = live(tmp_path)
    assert reporter.report()["runs"][0]["histogram_tags"] == 2
    (run_dir / "events.out.tfevents.1.x").unlink()

    (run,) = reread(index, reporter)["runs"]

    assert (run["event_files"], run["histogram_tags"], run["collisions"]) == (1, 1, [])
    (warning,) = run["warnings"]
    assert warning["file"] == str(run_dir / "events.out.tfevents.1.x")
    assert warning["message"].startswith("is gone from the run's directory")


def test_a_file_changed_between_reload_and_report_keeps_the_report_going(tmp_path):
    path = tmp_path / "run" / "events.out.tfevents.1.x"
    layered_run(str(path), "kernel", [3, 4], steps=3)
    layered_run(str(tmp_path / "other" / "events.out.tfevents.1.x"), "bias", [3, 4], steps=3)
    index = LogdirIndex(str(tmp_path))
    index.reload()
    path.write_bytes(b"")  # after the reload, before the report decodes the lanes' last values

    report = Reporter(index).report()

    run, other = report["runs"][1], report["runs"][0]
    assert "values could not be read back" in run["warnings"][-1]["message"]
    assert other["collisions"][0]["tag"] == "bias"
    (run,) = [r for r in reread(index, Reporter(index))["runs"] if r["run"] == "run"]
    assert run["warnings"][0]["message"].startswith("shrank to 0 bytes")


def test_runs_no_longer_found_are_warnings_for_the_latest_twenty_only(tmp_path):
    for k in range(25):
        write_events(str(tmp_path / f"run{k:02d}" / "events.out.tfevents.1.x"), [histogram_event(0, "w", np.ones(3))])
    index, reporter = live(tmp_path)
    for k in range(24):
        shutil.rmtree(tmp_path / f"run{k:02d}")

    report = reread(index, reporter)

    assert [run["run"] for run in report["runs"]] == ["run24"]
    assert len(report["warnings"]) == 20
    assert report["warnings"][0]["message"].startswith("run 'run04' is no longer found")


def test_in_tensorboard_one_run_failing_never_stops_the_others_from_updating(tmp_path, monkeypatch):
    two_runs(tmp_path)
    plugin = load_plugin(tmp_path)
    index_blocks = run_index._index_blocks
    build = report_module.build_run_report

    def index_but_not_a(items, *args, **kwargs):
        if any("/a/" in f.path for f, _, _ in items):
            raise RuntimeError("a bug met in run a's file")
        return index_blocks(items, *args, **kwargs)

    def build_but_not_b(run, *args, **kwargs):
        if run.name == "b":
            raise RuntimeError("a bug met reporting run b")
        return build(run, *args, **kwargs)

    monkeypatch.setattr(run_index, "_index_blocks", index_but_not_a)
    monkeypatch.setattr(report_module, "build_run_report", build_but_not_b)
    plugin.reload_impl()
    layered_run(str(tmp_path / "c" / "events.out.tfevents.1.x"), "kernel", [3, 4], steps=2)
    plugin.reload_impl()

    report = plugin.report_impl()

    assert [run["run"] for run in report["runs"]] == ["a", "b", "c"]
    a, b, c = report["runs"]
    assert "could not be indexed (RuntimeError: a bug met in run a's file)" in a["warnings"][0]["message"]
    assert "could not be reported (RuntimeError: a bug met reporting run b)" in b["warnings"][-1]["message"]
    assert c["collisions"][0]["writers"] == 2
    with pytest.raises(RuntimeError):  # a one-off scan lets a bug out, for the CLI to report as an internal error
        scan(str(tmp_path))
