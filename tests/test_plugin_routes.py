"""The `varscope` plugin's routes, served by TensorBoard's own WSGI app over logs from real writers."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from eventlogs import histogram_event, layered_run, write_events
from tensorboard.backend import application
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins import base_plugin
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from werkzeug.test import Client

from tb_varscope_plugin.server import plugin as plugin_module
from tb_varscope_plugin.server.plugin import VarScopeLoader, VarScopePlugin

ROUTES = "/data/plugin/varscope"
LAYERS = ["my_layer", "my_layer_1", "my_layer_2"]
REPO = Path(__file__).resolve().parents[1]


def load_plugin(logdir: Path, *argv: str, sampling_hints: dict | None = None) -> VarScopePlugin:
    """The plugin as TensorBoard makes it: the loader's flags parsed, then `load` with a context."""
    loader = VarScopeLoader()
    parser = argparse.ArgumentParser()
    parser.add_argument("--reload_interval", type=float, default=0.0)
    loader.define_flags(parser)
    flags = parser.parse_args(list(argv))
    return loader.load(base_plugin.TBContext(logdir=str(logdir), flags=flags, sampling_hints=sampling_hints))


def client(plugin: VarScopePlugin, provider=None) -> Client:
    return Client(application.TensorBoardWSGI([plugin], data_provider=provider))


def histograms(http: Client, run: str, tag: str, lane: str | int):
    return http.get(f"{ROUTES}/histograms", query_string={"run": run, "tag": tag, "lane": str(lane)})


def write_clean_run(run_dir: Path, steps: range, tags: list[str]) -> None:
    """Each tag once per step, as a correctly named `tf.summary.histogram` per layer writes it."""
    rng = np.random.default_rng(1)
    events = [
        histogram_event(step, tag, rng.normal(loc=10 * k, size=8)) for step in steps for k, tag in enumerate(tags)
    ]
    write_events(str(run_dir / "events.out.tfevents.1.b"), events)


def test_report_route_serves_the_report_of_the_logdir(tmp_path):
    layered_run(str(tmp_path / "train" / "events.out.tfevents.1.a"), "kernel", [3, 12, 48], steps=4)
    write_clean_run(tmp_path / "eval", range(3), ["dense/kernel", "dense_1/kernel"])
    plugin = load_plugin(tmp_path)
    plugin.reload_impl()

    response = client(plugin).get(f"{ROUTES}/report")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    report = response.get_json()
    assert report["schema"] == "tb-varscope/1"
    assert report["summary"] == {"runs": 2, "histogram_tags": 3, "collisions": 1, "warnings": 0}
    assert [run["run"] for run in report["runs"]] == ["eval", "train"]
    (collision,) = report["runs"][1]["collisions"]
    assert (collision["tag"], collision["kind"], collision["writers"]) == ("kernel", "same-step", 3)
    assert [lane["elements"] for lane in collision["lanes"]] == [3, 12, 48]
    assert report["runs"][0]["collisions"] == []


def test_reading_starts_at_the_first_request_not_when_tensorboard_starts(tmp_path):
    layered_run(str(tmp_path / "train" / "events.out.tfevents.1.a"), "kernel", [3, 5], steps=2)
    plugin = load_plugin(tmp_path, "--reload_interval", "0")
    assert not plugin.live.started
    assert plugin.report_impl()["runs"] == []
    assert plugin.report_impl()["complete"] is False  # the tab says it is reading, not that nothing collides

    assert client(plugin).get(f"{ROUTES}/report").status_code == 200

    # With --reload_interval 0 the reader reads once and stops, as TensorBoard's own reloader does.
    assert plugin.live.wait(timeout=30)
    assert plugin.report_impl()["summary"]["collisions"] == 1
    assert plugin.report_impl()["complete"] is True


def test_appended_events_and_new_runs_appear_after_the_next_reload(tmp_path):
    events_file = tmp_path / "train" / "events.out.tfevents.1.a"
    write_events(str(events_file), [histogram_event(s, "kernel", np.arange(4.0)) for s in range(3)])
    plugin = load_plugin(tmp_path)
    plugin.reload_impl()
    assert plugin.report_impl()["summary"] == {"runs": 1, "histogram_tags": 1, "collisions": 0, "warnings": 0}
    assert [step for _, step, _ in plugin.histograms_impl("train", "kernel", "0")] == [0, 1, 2]

    # The run keeps training: step 3 is written by two layers under one tag, and a second run starts.
    write_events(str(events_file), [histogram_event(3, "kernel", np.arange(4.0))] * 2, append=True)
    layered_run(str(tmp_path / "eval" / "events.out.tfevents.2.a"), "bias", [2, 2], steps=1)
    assert plugin.report_impl()["summary"]["collisions"] == 0  # nothing changes before the reader's next pass

    plugin.reload_impl()

    report = plugin.report_impl()
    assert report["summary"] == {"runs": 2, "histogram_tags": 2, "collisions": 2, "warnings": 0}
    train = next(run for run in report["runs"] if run["run"] == "train")
    (collision,) = train["collisions"]
    assert (collision["tag"], collision["first_step"], collision["last_step"]) == ("kernel", 3, 3)
    assert [step for _, step, _ in plugin.histograms_impl("train", "kernel", "0")] == [0, 1, 2, 3]
    assert [step for _, step, _ in plugin.histograms_impl("train", "kernel", "1")] == [3]


def test_histograms_route_serves_each_lane_sorted_by_step(tmp_path):
    sizes = [3, 12, 48]
    run_dir = tmp_path / "train"
    rng = np.random.default_rng(0)
    # Steps arrive out of order (a restarted loop): the route still answers in step order.
    events = [
        histogram_event(step, "kernel", rng.normal(size=size) + 10 * lane)
        for step in (2, 0, 1)
        for lane, size in enumerate(sizes)
    ]
    write_events(str(run_dir / "events.out.tfevents.1.a"), events)
    plugin = load_plugin(tmp_path)
    plugin.reload_impl()
    http = client(plugin)

    for lane, size in enumerate(sizes):
        response = histograms(http, "train", "kernel", lane)
        assert response.status_code == 200
        assert response.mimetype == "application/json"
        series = response.get_json()
        assert [step for _, step, _ in series] == [0, 1, 2]
        for wall_time, _, buckets in series:
            assert wall_time > 0
            assert all(len(bucket) == 3 for bucket in buckets)
            assert sum(count for _, _, count in buckets) == size
            # Lane k's values were drawn around 10 * k: each lane is its own layer, not a mix.
            assert 10 * lane - 6 < buckets[0][0] <= buckets[-1][1] < 10 * lane + 6


def test_long_series_are_downsampled_like_tensorboard_keeping_the_last_step(tmp_path):
    values = np.linspace(0.0, 1.0, 6)
    write_events(str(tmp_path / "events.out.tfevents.1.a"), [histogram_event(step, "w", values) for step in range(620)])

    default = load_plugin(tmp_path)
    default.reload_impl()
    steps = [step for _, step, _ in default.histograms_impl(".", "w", "0")]
    assert len(steps) == 500
    assert steps == sorted(steps)
    assert steps[0] >= 0 and steps[-1] == 619

    hinted = load_plugin(tmp_path, sampling_hints={"histograms": 20})
    hinted.reload_impl()
    steps = [step for _, step, _ in hinted.histograms_impl(".", "w", "0")]
    assert len(steps) == 20 and steps[-1] == 619


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"tag": "kernel", "lane": "0"}, "`run`"),
        ({"run": "train", "lane": "0"}, "`tag`"),
        ({"run": "train", "tag": "kernel"}, "`lane`"),
        ({"run": "train", "tag": "kernel", "lane": "-1"}, "'-1'"),
        ({"run": "train", "tag": "kernel", "lane": "1.5"}, "'1.5'"),
        ({"run": "train", "tag": "kernel", "lane": "one"}, "'one'"),
        ({"run": "train", "tag": "kernel", "lane": ""}, "''"),
        ({"run": "train", "tag": "kernel", "lane": "٣"}, "'٣'"),  # a digit, but not an ASCII one
        ({"run": "train", "tag": "kernel", "lane": "9" * 5000}, "(5000 characters)"),  # past int()'s digit limit
        ({"run": "train", "tag": "kernel", "lane": str(10**18)}, "below 10^18"),
    ],
)
def test_malformed_histograms_queries_are_400_with_a_plain_message(tmp_path, query, message):
    layered_run(str(tmp_path / "train" / "events.out.tfevents.1.a"), "kernel", [3, 4], steps=2)
    plugin = load_plugin(tmp_path)
    plugin.reload_impl()

    response = client(plugin).get(f"{ROUTES}/histograms", query_string=query)

    assert response.status_code == 400
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True).startswith("Invalid argument: ")
    assert message in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("run", "tag", "lane", "message"),
    [
        ("test", "kernel", 0, "no run 'test'"),
        ("train", "bias", 0, "no histogram tag 'bias' in run 'train'"),
        ("train", "kernel", 2, "tag 'kernel' of run 'train' has 2 lane(s), no lane 2"),
        ("train", "kernel", 10**17, f"tag 'kernel' of run 'train' has 2 lane(s), no lane {10**17}"),
    ],
)
def test_unknown_run_tag_or_lane_is_404_with_a_plain_message(tmp_path, run, tag, lane, message):
    layered_run(str(tmp_path / "train" / "events.out.tfevents.1.a"), "kernel", [3, 4], steps=2)
    plugin = load_plugin(tmp_path)
    plugin.reload_impl()

    response = histograms(client(plugin), run, tag, lane)

    assert response.status_code == 404
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == f"Not found: {message}"


def test_run_and_tag_names_with_markup_and_url_characters_round_trip(tmp_path):
    run = "a&b=c #1 <img src=x onerror=window.__xss=1>"
    tag = "<img src=x onerror=window.__xss=1>/100%?"
    layered_run(str(tmp_path / run / "events.out.tfevents.1.a"), tag, [2, 3], steps=2)
    plugin = load_plugin(tmp_path)
    plugin.reload_impl()
    http = client(plugin)

    report = http.get(f"{ROUTES}/report").get_json()
    assert report["runs"][0]["run"] == run
    assert report["runs"][0]["collisions"][0]["tag"] == tag
    counts = [sum(b[2] for b in histograms(http, run, tag, lane).get_json()[0][2]) for lane in (0, 1)]
    assert counts == [2, 3]


def test_frontend_files_are_served_with_their_types(tmp_path):
    plugin = load_plugin(tmp_path)
    http = client(plugin)
    folder = plugin_module.FRONTEND
    served = sorted(item.name for item in folder.iterdir() if item.name.endswith((".js", ".css")))
    assert "index.js" in served

    for name in served:
        response = http.get(f"{ROUTES}/{name}")
        assert response.status_code == 200, name
        assert response.mimetype == ("text/javascript" if name.endswith(".js") else "text/css")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.get_data() == folder.joinpath(name).read_bytes()


def test_only_js_and_css_files_directly_in_the_frontend_folder_are_served(tmp_path, monkeypatch):
    folder = tmp_path / "frontend"
    (folder / "nested").mkdir(parents=True)
    (folder / "index.js").write_text("export function render() {}\n")
    (folder / "style.css").write_text("body {}\n")
    (folder / "notes.txt").write_text("private")
    (folder / "page.html").write_text("<script>alert(1)</script>")
    (folder / "nested" / "deep.js").write_text("private")
    (tmp_path / "secret.js").write_text("private")
    monkeypatch.setattr(plugin_module, "FRONTEND", folder)
    plugin = load_plugin(tmp_path / "logs")
    http = client(plugin)

    # Every route is an exact path: no pattern a request could steer outside the folder.
    assert set(plugin.get_plugin_apps()) == {"/index.js", "/style.css", "/report", "/histograms"}
    traversals = ["/../secret.js", "/%2e%2e/secret.js", "/index.js/../../secret.js", "/..\\secret.js"]
    for path in ["/notes.txt", "/page.html", "/nested/deep.js", "/nested%2fdeep.js", *traversals]:
        response = http.get(ROUTES + path)
        assert response.status_code == 404, path
        assert b"private" not in response.get_data()


# TensorBoard's plugin listing over its Python data provider (the `--load_fast=false` reader), run where
# TensorFlow is blocked so it reads through TensorBoard's TF-free stub and the test process stays free of it.
LISTING = """
import json, sys
sys.modules["tensorflow"] = None
import argparse
from werkzeug.test import Client
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tb_varscope_plugin.server.plugin import VarScopeLoader
listings = []
for logdir in sys.argv[1:]:
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, logdir)
    plugin = VarScopeLoader().load(base_plugin.TBContext(logdir=logdir, flags=argparse.Namespace()))
    app = application.TensorBoardWSGI([plugin], data_provider=provider)
    listings.append(Client(app).get("/data/plugins_listing").get_json()["varscope"])
print(json.dumps(listings))
"""


def run_python(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_tab_is_enabled_when_the_logdir_has_histograms(tmp_path):
    layered_run(str(tmp_path / "hist" / "train" / "events.out.tfevents.1.a"), "kernel", [3, 4], steps=2)
    loss = [event_pb2.Event(step=s, wall_time=1.0, summary=scalar_pb("loss", 1.0 / (s + 1))) for s in range(3)]
    write_events(str(tmp_path / "scalars" / "events.out.tfevents.1.a"), loss)

    with_histograms, scalars_only = json.loads(run_python(LISTING, str(tmp_path / "hist"), str(tmp_path / "scalars")))

    assert with_histograms["enabled"] is True
    assert with_histograms["tab_name"] == "VarScope"
    assert with_histograms["loading_mechanism"] == {"type": "IFRAME", "module_path": f"{ROUTES}/index.js"}
    assert scalars_only["enabled"] is False


def test_varscope_checkpoint_flag_names_the_lanes_from_that_checkpoint(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(0)
    weights = {"0.weight": rng.normal(size=(4, 5)), "2.weight": rng.normal(loc=5.0, size=(3, 4))}
    weights = {key: value.astype("float32") for key, value in weights.items()}
    # PyTorch-style leaf names: both layers log under `weight`.
    events = [histogram_event(step, "weight", weights[key], legacy=True) for step in range(2) for key in weights]
    write_events(str(tmp_path / "logs" / "train" / "events.out.tfevents.1.a"), events)
    checkpoint = tmp_path / "exported" / "model.safetensors"  # not beside the run: only the flag finds it
    checkpoint.parent.mkdir()
    safetensors_numpy.save_file(weights, str(checkpoint))
    plugin = load_plugin(tmp_path / "logs", "--varscope_checkpoint", str(checkpoint))
    plugin.reload_impl()

    (run,) = client(plugin).get(f"{ROUTES}/report").get_json()["runs"]

    assert run["checkpoint"] == {"path": str(checkpoint), "format": "safetensors", "variables": 2}
    assert [lane["variable"] for lane in run["collisions"][0]["lanes"]] == ["0.weight", "2.weight"]


def test_loader_makes_the_plugin_only_for_a_single_logdir(tmp_path):
    plugin = load_plugin(tmp_path)
    assert isinstance(plugin, VarScopePlugin)
    assert plugin.frontend_metadata().es_module_path in plugin.get_plugin_apps()
    assert plugin.data_plugin_names() == ("histograms",)
    # Without a logdir or a logdir spec (a remote data server) there is nothing for VarScope to read.
    assert VarScopeLoader().load(base_plugin.TBContext(logdir="", flags=argparse.Namespace())) is None


# Imports the plugin with every ML framework blocked, then serves a report: TensorBoard often runs without them.
WITHOUT_FRAMEWORKS = """
import sys
for name in ("tensorflow", "tf_keras", "keras", "torch"):
    sys.modules[name] = None
import argparse
from tensorboard.plugins import base_plugin
from tb_varscope_plugin.server.plugin import VarScopeLoader
plugin = VarScopeLoader().load(
    base_plugin.TBContext(logdir=sys.argv[1], flags=argparse.Namespace(reload_interval=0)))
plugin.reload_impl()
print(plugin.report_impl()["summary"]["collisions"], len(plugin.histograms_impl("train", "kernel", "1")))
"""


def test_plugin_works_with_tensorflow_keras_and_torch_blocked(tmp_path):
    layered_run(str(tmp_path / "train" / "events.out.tfevents.1.a"), "kernel", [3, 4], steps=5)

    assert run_python(WITHOUT_FRAMEWORKS, str(tmp_path)).split() == ["1", "5"]


@pytest.mark.slow
def test_tf_keras_callback_collision_lanes_are_served(scenario):
    plugin = load_plugin(scenario("tfkeras_seed"))
    plugin.reload_impl()
    http = client(plugin)

    report = http.get(f"{ROUTES}/report").get_json()
    (run,) = report["runs"]
    assert run["run"] == "train"
    (collision,) = run["collisions"]
    assert (collision["tag"], collision["writers"]) == ("my_variable1_0/histogram", 3)
    assert [lane["variable"] for lane in collision["lanes"]] == [f"{layer}/my_variable1" for layer in LAYERS]
    lanes = [histograms(http, "train", collision["tag"], lane).get_json() for lane in range(3)]
    assert all([step for _, step, _ in series] == [0, 1, 2] for series in lanes)
    assert all(sum(b[2] for b in series[-1][2]) == 3 for series in lanes)
    # Three layers' biases trained apart: the lanes' last histograms are not one series drawn three times.
    assert len({json.dumps(series[-1][2]) for series in lanes}) == 3
    assert histograms(http, "train", collision["tag"], 3).status_code == 404


@pytest.mark.slow
def test_keras_kernel_lanes_carry_each_layers_element_count(scenario):
    plugin = load_plugin(scenario("keras313_kernel"))
    plugin.reload_impl()
    http = client(plugin)

    counts = [sum(b[2] for b in histograms(http, "train", "kernel/histogram", k).get_json()[-1][2]) for k in range(3)]

    assert counts == [20, 16, 12]
    assert [c["tag"] for c in http.get(f"{ROUTES}/report").get_json()["runs"][0]["collisions"]] == [
        "bias/histogram",
        "kernel/histogram",
    ]


def test_a_deleted_event_file_is_a_plain_404_not_a_server_error(tmp_path):
    path = tmp_path / "train" / "events.out.tfevents.1.a"
    layered_run(str(path), "kernel", [3, 4], steps=2)
    plugin = load_plugin(tmp_path)
    # The reader's one pass (reload interval 0) ends before the file goes, so no pass can drop the run meanwhile.
    plugin.live.start()
    assert plugin.live.wait(timeout=30)
    path.unlink()

    response = histograms(client(plugin), "train", "kernel", 0)

    assert response.status_code == 404
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True).startswith("Not found: values of tag 'kernel' in run 'train' can no longer")


def test_an_unexpected_failure_is_a_plain_500_that_says_where_to_look(tmp_path, monkeypatch, caplog):
    layered_run(str(tmp_path / "train" / "events.out.tfevents.1.a"), "kernel", [3, 4], steps=2)
    plugin = load_plugin(tmp_path)
    plugin.reload_impl()

    def fail(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(plugin, "histograms_impl", fail)
    monkeypatch.setattr(plugin, "report_impl", fail)
    http = client(plugin)
    for response in (histograms(http, "train", "kernel", 0), http.get(f"{ROUTES}/report")):
        assert response.status_code == 500
        assert response.mimetype == "text/plain"
        assert response.get_data(as_text=True) == "VarScope failed on this request; TensorBoard's log says why"
    assert "a bug" in caplog.text
