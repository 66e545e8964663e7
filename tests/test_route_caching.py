"""The routes at scale: `/report` serialised once per published report with an ETag, `/histograms` reading each file
through one kept handle, and `--samples_per_plugin histograms=0` meaning every step, as in TensorBoard."""

from __future__ import annotations

import gzip
import json

import numpy as np
from eventlogs import histogram_event, layered_run, write_events
from test_plugin_routes import ROUTES, client, histograms, load_plugin

from tb_varscope_plugin.reading import run_index as run_index_module
from tb_varscope_plugin.server import plugin as plugin_module


def test_report_is_served_gzipped_with_an_etag_and_polls_get_304(tmp_path, monkeypatch):
    layered_run(str(tmp_path / "train" / "events.out.tfevents.1.a"), "kernel", [3, 12], steps=3)
    plugin = load_plugin(tmp_path)
    plugin.reload_impl()
    serialised = []
    real = plugin_module._gzip
    monkeypatch.setattr(plugin_module, "_gzip", lambda data: serialised.append(data) or real(data))
    http = client(plugin)

    zipped = http.get(f"{ROUTES}/report", headers={"Accept-Encoding": "gzip"})
    assert zipped.status_code == 200 and zipped.headers["Content-Encoding"] == "gzip"
    document = json.loads(gzip.decompress(zipped.get_data()))
    assert document == plugin.report_impl()
    etag = zipped.headers["ETag"]
    # A client that does not take gzip gets the same bytes unzipped, by TensorBoard's Respond.
    plain = http.get(f"{ROUTES}/report")
    assert "Content-Encoding" not in plain.headers and plain.get_json() == document
    assert plain.headers["ETag"] == etag

    for _ in range(3):  # the tab's polls while nothing changes
        poll = http.get(f"{ROUTES}/report", headers={"If-None-Match": etag, "Accept-Encoding": "gzip"})
        assert poll.status_code == 304 and poll.get_data() == b""
    plugin.reload_impl()  # nothing new: the same report, so the same ETag
    assert http.get(f"{ROUTES}/report", headers={"If-None-Match": etag}).status_code == 304
    assert len(serialised) == 1  # serialised once for six requests

    layered_run(str(tmp_path / "eval" / "events.out.tfevents.1.b"), "bias", [2, 2], steps=2)
    plugin.reload_impl()
    fresh = http.get(f"{ROUTES}/report", headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and fresh.headers["ETag"] != etag
    assert fresh.get_json()["summary"]["collisions"] == 2
    assert len(serialised) == 2


def test_a_report_published_again_serialises_only_the_parts_that_changed(tmp_path, monkeypatch):
    """The first pass publishes a partial report a second: each serialises the runs new since the last one, so a
    run's part is serialised once, however many reports show it (counted, not timed)."""
    for name in ("a", "b", "c"):
        layered_run(str(tmp_path / name / "events.out.tfevents.1.x"), "kernel", [3, 12], steps=3)
    plugin = load_plugin(tmp_path)
    plugin.reload_impl()
    parts = []
    real = plugin_module._json

    def counted(value: dict) -> bytes:
        if "run" in value:
            parts.append(value)
        return real(value)

    monkeypatch.setattr(plugin_module, "_json", counted)
    http = client(plugin)
    first = http.get(f"{ROUTES}/report")
    assert sorted(part["run"] for part in parts) == ["a", "b", "c"]
    layered_run(str(tmp_path / "d" / "events.out.tfevents.1.x"), "bias", [2, 2], steps=2)
    plugin.reload_impl()
    parts.clear()
    second = http.get(f"{ROUTES}/report")
    assert [part["run"] for part in parts] == ["d"]
    assert second.get_json() == plugin.report_impl() and second.headers["ETag"] != first.headers["ETag"]
    assert [run["run"] for run in second.get_json()["runs"]] == ["a", "b", "c", "d"]


def test_samples_per_plugin_histograms_0_serves_every_step(tmp_path):
    values = np.linspace(0.0, 1.0, 6)
    write_events(str(tmp_path / "events.out.tfevents.1.a"), [histogram_event(step, "w", values) for step in range(620)])
    plugin = load_plugin(tmp_path, sampling_hints={"histograms": 0})
    plugin.reload_impl()
    assert [step for _, step, _ in plugin.histograms_impl(".", "w", "0")] == list(range(620))
    served = histograms(client(plugin), ".", "w", 0).get_json()
    assert [step for _, step, _ in served] == list(range(620))


def test_histograms_open_each_event_file_once_and_serve_what_respond_would(tmp_path, monkeypatch):
    layered_run(str(tmp_path / "train" / "events.out.tfevents.1.a"), "kernel", [3, 12], steps=40)
    plugin = load_plugin(tmp_path)
    plugin.reload_impl()
    opened = []
    real = run_index_module.PositionedReader

    class Counted(real):  # type: ignore[misc, valid-type]
        def __init__(self, path: str) -> None:
            opened.append(path)
            super().__init__(path)

    monkeypatch.setattr(run_index_module, "PositionedReader", Counted)
    response = histograms(client(plugin), "train", "kernel", 1)
    assert len(opened) == 1  # forty values, one handle
    assert response.get_json() == plugin.histograms_impl("train", "kernel", "1")
    assert len(response.get_json()) == 40


def test_json_is_what_respond_would_send_with_and_without_non_finite_numbers(monkeypatch):
    """Cleanse is skipped where every number is finite, and the bytes stay Respond's in both cases."""
    from tensorboard.backend import json_util

    walked = []
    real = json_util.Cleanse
    monkeypatch.setattr(json_util, "Cleanse", lambda value, *a: walked.append(value) or real(value, *a))
    finite = {"runs": [{"confidence": 0.5, "tag": "dénse"}], "n": [1, 2.5]}
    assert plugin_module._json(finite) == json.dumps(finite).encode("ascii") and walked == []
    broken = [[1.0, 2, [[0.0, 1.0, float("nan")], [1.0, float("inf"), 2.0]]]]
    assert json.loads(plugin_module._json(broken)) == [[1.0, 2, [[0.0, 1.0, "NaN"], [1.0, "Infinity", 2.0]]]]
    assert walked[0] is broken  # (Cleanse recurses through its module name: each level is counted)
