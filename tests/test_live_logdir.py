"""A logdir that changes under a real TensorBoard: runs renamed and deleted, files truncated and deleted while it
reads, then a new run, and a value TensorBoard would choke on. /report keeps updating and says what happened."""

from __future__ import annotations

import shutil
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from eventlogs import histogram_event, layered_run, write_events
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard_process import get_json, tensorboard
from test_bad_values import BAD_TENSORS

pytestmark = pytest.mark.slow

REPORT = "data/plugin/varscope/report"


def wait_for(base: str, done, what: str) -> dict:
    """Polls /report until `done(report)`; the bound is a safety net for a report that stopped updating."""
    deadline = time.monotonic() + 120
    report: dict = {}
    while time.monotonic() < deadline:
        report = get_json(base, REPORT)  # type: ignore[assignment]
        if report.get("complete") and done(report):
            return report
        time.sleep(0.5)
    pytest.fail(f"/report never showed {what}; last: {report}", pytrace=False)


def get(base: str, route: str, **params: str) -> tuple[int, str, str]:
    url = base + route + "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.headers.get_content_type(), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get_content_type(), error.read().decode()


def runs(report: dict) -> list[str]:
    return [run["run"] for run in report["runs"]]


def all_warnings(report: dict) -> dict[str, str]:
    found = {w["file"]: w["message"] for w in report["warnings"]}
    found.update({w["file"]: w["message"] for run in report["runs"] for w in run["warnings"]})
    return found


def test_the_report_follows_runs_renamed_deleted_truncated_and_added(tmp_path):
    logdir = tmp_path / "logs"
    layered_run(str(logdir / "a" / "events.out.tfevents.1.x"), "kernel", [3, 4], steps=3)
    layered_run(str(logdir / "b" / "events.out.tfevents.1.x"), "kernel", [3, 4], steps=3)
    shrinking = logdir / "c" / "events.out.tfevents.1.x"
    layered_run(str(shrinking), "kernel", [3, 4], steps=40)
    deleted = logdir / "c" / "events.out.tfevents.2.x"
    write_events(str(deleted), [histogram_event(0, "bias", np.arange(3.0))])

    with tensorboard(logdir, "--reload_interval", "1") as base:
        report = wait_for(base, lambda r: runs(r) == ["a", "b", "c"], "the three runs")
        assert report["summary"]["collisions"] == 3

        (logdir / "a").rename(logdir / "renamed")
        shutil.rmtree(logdir / "b")
        write_events(str(shrinking), [histogram_event(0, "kernel", np.arange(3.0))])
        deleted.unlink()
        report = wait_for(base, lambda r: runs(r) == ["c", "renamed"], "the renamed run, without the deleted one")
        warnings = all_warnings(report)
        assert warnings[str(logdir / "a")].startswith("run 'a' is no longer found")
        assert warnings[str(logdir / "b")].startswith("run 'b' is no longer found")
        assert warnings[str(shrinking)].endswith("; read again from the start")
        assert warnings[str(deleted)].startswith("is gone from the run's directory")
        c = report["runs"][0]
        assert (c["event_files"], c["histogram_tags"], c["collisions"]) == (1, 1, [])
        status, mime_type, body = get(base, "data/plugin/varscope/histograms", run="b", tag="kernel", lane="0")
        assert (status, mime_type, body) == (404, "text/plain", "Not found: no run 'b'")

        # A NaN count made TensorBoard's reader fail on every pass: the report must go on updating after it.
        nan = BAD_TENSORS["NaN count"][0]
        write_events(
            str(logdir / "nan" / "events.out.tfevents.1.x"),
            [
                histogram_event(0, "kernel", np.arange(3.0)),
                event_pb2.Event(step=1, summary=summary_pb2.Summary(value=[nan])),
            ],
        )
        layered_run(str(logdir / "new" / "events.out.tfevents.1.x"), "kernel", [3, 4], steps=3)
        report = wait_for(base, lambda r: runs(r) == ["c", "nan", "new", "renamed"], "the runs added afterwards")
        assert "NaN" in report["runs"][1]["warnings"][0]["message"]
        assert report["runs"][2]["collisions"][0]["writers"] == 2

        status, mime_type, body = get(base, "data/plugin/varscope/histograms", run="new", tag="kernel", lane="9" * 5000)
        assert (status, mime_type) == (400, "text/plain")
        assert "(5000 characters)" in body
