"""Which variable is behind each lane of a colliding tag: matched by name, size and values against a checkpoint."""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from eventlogs import histogram_event, write_events
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tb_varscope_plugin import scan
from tb_varscope_plugin.analysis import attribution
from tb_varscope_plugin.analysis.attribution import assign, attribute_lanes, candidates, histogram_distance
from tb_varscope_plugin.analysis.collisions import collision_entry, find_collisions
from tb_varscope_plugin.checkpoints.variables import Checkpoint, Variable
from tb_varscope_plugin.reading.events import monotone_edges
from tb_varscope_plugin.reading.logdir import LogdirIndex
from tb_varscope_plugin.report import Reporter

# --- the assignment -------------------------------------------------------------------------------------------


def _pairings(rows: int, cols: int):
    """Every assignment of min(rows, cols) pairs, as lists of (row, column)."""
    if rows <= cols:
        return [list(enumerate(p)) for p in itertools.permutations(range(cols), rows)]
    return [[(i, j) for j, i in enumerate(p)] for p in itertools.permutations(range(rows), cols)]


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (5, 5), (2, 4), (4, 2), (6, 3)])
def test_assignment_and_its_margins_agree_with_trying_every_permutation(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(20):
        cost = rng.random(shape).round(2)
        chosen, margins = assign(cost)
        taken = [j for j in chosen if j is not None]
        assert len(taken) == len(set(taken)) == min(shape)
        totals = [(sum(cost[i, j] for i, j in p), set(p)) for p in _pairings(*shape)]
        best = min(t for t, _ in totals)
        assert sum(cost[i, j] for i, j in enumerate(chosen) if j is not None) == pytest.approx(best)
        for i, j in enumerate(chosen):
            if j is None:
                continue
            denied = [t for t, pairs in totals if (i, j) not in pairs]
            expected = min(denied) - best if denied else math.inf
            assert margins[i] == pytest.approx(expected, abs=1e-9)


def test_assignment_beats_taking_each_lane_its_nearest():
    # Greedy would give row 0 column 0 (cost 1) and leave row 1 with 100.
    chosen, margins = assign(np.array([[1.0, 2.0], [1.0, 100.0]]))
    assert chosen == [1, 0]
    assert margins == [pytest.approx(98.0), pytest.approx(98.0)]
    assert assign(np.array([[5.0], [1.0], [3.0]]))[0] == [None, 0, None]


# --- names ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "name"),
    [
        ("my_variable1_0/histogram", "my_variable1"),
        ("my_variable1_0/histogram", "my_variable1:0"),
        ("kernel", "dense_1/kernel"),
        ("kernel/histogram", "sequential/dense_1/kernel"),
        ("weight", "2.weight"),
        ("bias", "encoder.fc.bias"),
        ("dense/kernel", "sequential/dense/kernel"),
        ("my_layer/my_variable2_0/histogram", "my_layer/my_variable2"),
        ("dense_1/histogram", "dense_1"),
    ],
)
def test_tags_match_names_once_writer_decorations_are_removed(tag, name):
    assert [v.name for v in candidates(tag, _checkpoint({name: np.zeros(1)}))] == [name]


@pytest.mark.parametrize(
    ("tag", "name"),
    [
        ("kernel", "dense_1/bias"),
        ("dense/kernel", "sequential/dense_1/kernel"),
        ("my_layer/my_variable2_0/histogram", "my_layer_1/my_variable2"),
        ("weight", "0.weight_scale"),
    ],
)
def test_tags_do_not_match_other_variables(tag, name):
    assert candidates(tag, _checkpoint({name: np.zeros(1)})) == []


def test_more_scope_in_common_scores_higher():
    checkpoint = _checkpoint({"sequential/dense/kernel": np.zeros(1), "sequential/dense_1/kernel": np.zeros(1)})
    assert [v.name for v in candidates("dense/kernel", checkpoint)] == ["sequential/dense/kernel"]
    assert len(candidates("kernel", checkpoint)) == 2


def test_histogram_distance_is_zero_for_the_logged_values_and_grows_with_difference():
    rng = np.random.default_rng(1)
    values = rng.normal(size=40)
    counts, edges = np.histogram(values, bins=30)
    buckets = np.stack([edges[:-1], edges[1:], counts], axis=1)
    assert histogram_distance(buckets, values) == 0.0
    near = histogram_distance(buckets, values + 0.01)
    far = histogram_distance(buckets, values + 5)
    assert 0 < near < far <= 1


EDGES = st.lists(st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 3.0, math.inf, math.nan]), max_size=7)
VALUES = st.lists(
    st.sampled_from([-3.0, -1.0, -0.5, -0.0, 0.0, 0.1, 0.5, 1.0, 3.0, 9.0, math.inf, math.nan]), min_size=1
)


def distance_by_np_histogram(buckets, values):
    """The distance as `histogram_distance` defines it, one candidate at a time through `np.histogram`: the
    reference the batch form must equal float for float."""
    values = np.asarray(values, dtype=np.float64).ravel()
    finite = values[np.isfinite(values)]
    if not len(buckets) or not len(finite):
        return 1.0
    lo, hi = float(buckets[0, 0]), float(buckets[-1, 1])
    span = max(hi - lo, float(finite.max() - finite.min()))
    off = abs(float(finite.min()) - lo) + abs(float(finite.max()) - hi)
    range_error = 0.0 if off <= 1e-7 * max(span, abs(lo), abs(hi), 1e-30) else min(1.0, off / span if span else 1.0)
    counts, _ = np.histogram(finite, bins=monotone_edges(buckets))
    logged = buckets[:, 2]
    outside = len(values) - counts.sum()
    l1 = (float(np.abs(logged - counts).sum()) + outside) / (float(logged.sum()) + len(values))
    return 0.5 * range_error + 0.5 * l1


@settings(
    max_examples=int(os.environ.get("VARSCOPE_FUZZ_EXAMPLES", "30")) * 10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(EDGES, st.lists(VALUES, min_size=1, max_size=5), st.integers(0, 3), st.integers(1, 40))
def test_distances_to_many_candidates_are_np_histograms_to_each(edges, rows, shuffle, repeat):
    """The batch form gives exactly the floats `np.histogram` gives candidate by candidate: values on edges,
    repeated and falling edges, values outside, NaN and infinities, candidates with nothing finite, and many
    buckets (numpy sums long rows pairwise)."""
    width = len(rows[0])
    stacked = np.array([(row * width)[:width] for row in rows], dtype=np.float64)
    np.random.default_rng(shuffle).shuffle(stacked, axis=1)
    edges = (edges * repeat)[: 1 + 6 * repeat]
    left = np.array(edges[:-1] if len(edges) > 1 else [], dtype=np.float64)
    right = np.array(edges[1:] if len(edges) > 1 else [], dtype=np.float64)
    buckets = np.stack([left, right, np.arange(len(left), dtype=np.float64) * 0.3], axis=1).reshape(-1, 3)
    expected = [distance_by_np_histogram(buckets, row) for row in stacked]
    prepared = [attribution.Prepared.of(row) for row in stacked]
    assert np.array_equal(attribution.histogram_distances(buckets, prepared), expected, equal_nan=True)
    assert np.array_equal([histogram_distance(buckets, row) for row in stacked], expected, equal_nan=True)


def test_a_lane_is_compared_with_all_the_candidates_of_its_size_at_once(monkeypatch):
    """Lanes x candidates distances, but one numpy pass per lane and size: 60 same-shape lanes, 60 candidates."""
    rng = np.random.default_rng(3)
    found = [SimpleNamespace(shape=(4, 4), key=str(i)) for i in range(60)] + [SimpleNamespace(shape=(2,), key="b")]
    values = {v.key: rng.normal(size=v.shape) for v in found}
    buckets = []
    for i in range(60):
        counts, edges = np.histogram(values[str(i)], bins=5)
        buckets.append(np.stack([edges[:-1], edges[1:], counts], axis=1))
    passes, prepared = [], []
    batch = attribution.histogram_distances
    monkeypatch.setattr(attribution, "histogram_distances", lambda b, c: passes.append(len(c)) or batch(b, c))
    prepare = attribution.Prepared.of
    monkeypatch.setattr(attribution.Prepared, "of", lambda v: prepared.append(1) or prepare(v))
    loads = []
    distance = attribution._distances(buckets, [16] * 60, found, lambda v: loads.append(v.key) or values[v.key])
    assert passes == [60] * 60 and len(prepared) == 60  # each candidate sorted once, for all lanes
    assert "b" not in loads  # the 2-element candidate is never loaded for these lanes
    assert np.isinf(distance[:, 60]).all() and (np.diag(distance[:, :60]) == 0).all()
    expected = [[distance_by_np_histogram(buckets[i], values[str(j)]) for j in range(60)] for i in range(60)]
    assert distance[:, :60].tolist() == expected


# --- lanes of a synthetic run against a synthetic checkpoint --------------------------------------------------


def _checkpoint(weights: dict[str, np.ndarray], named: bool = True) -> Checkpoint:
    variables = tuple(
        Variable(
            path=path if named else f"{path.rsplit('/', 1)[0]}/vars/{i}",
            key=f"{path}/.ATTRIBUTES/VARIABLE_VALUE" if named else f"layers/{path.rsplit('/', 1)[0]}/vars/{i}",
            name=path if named else None,
            shape=value.shape,
            dtype="float32",
            layer=path.rsplit("/", 1)[0],
            slot=False,
            load=lambda value=value: value,
        )
        for i, (path, value) in enumerate(weights.items())
    )
    return Checkpoint(path="ckpt/ckpt-1", format="tf-checkpoint", variables=variables, mtime=None)


def _run(tmp_path: Path, tag: str, writes: list[np.ndarray], steps: int = 3):
    """One event file with `tag` written once per array at each step, in list order; values drift per step."""
    events = [
        histogram_event(step, tag, values + 0.1 * (step - steps + 1)) for step in range(steps) for values in writes
    ]
    write_events(str(tmp_path / "events.out.tfevents.1.host"), events)
    index = LogdirIndex(str(tmp_path))
    index.reload()
    run = index.runs["."]
    (found,) = find_collisions(run)
    return run, found


def _named(run, found, checkpoint):
    """The collision's lanes as the report shows them, named from `checkpoint`."""
    return collision_entry(found, attribute_lanes(run, found.tag, found.writers, checkpoint))["lanes"]


def test_lanes_are_named_by_their_values_not_by_checkpoint_order(tmp_path):
    rng = np.random.default_rng(2)
    layers = {f"sequential/dense_{k}/kernel": rng.normal(loc=k, size=(3, 4)) for k in range(3)}
    # Written in the order dense_2, dense_0, dense_1: lane 0 must be dense_2 although it is last in the checkpoint.
    order = ["sequential/dense_2/kernel", "sequential/dense_0/kernel", "sequential/dense_1/kernel"]
    run, collision = _run(tmp_path, "kernel", [layers[p] for p in order])
    lanes = _named(run, collision, _checkpoint(layers))
    assert [lane["variable"] for lane in lanes] == order
    assert [lane["shape"] for lane in lanes] == [[3, 4]] * 3
    assert all(lane["confidence"] >= 0.9 for lane in lanes)
    assert lanes[0]["evidence"].startswith(
        "values equal checkpoint `sequential/dense_2/kernel/.ATTRIBUTES/VARIABLE_VALUE` at step 2 (min, max and all "
        "30 bucket counts match)"
    )
    assert "closest of 3 candidates" in lanes[0]["evidence"]


def test_the_lane_nearest_the_checkpoint_in_time_is_compared(tmp_path):
    # The checkpoint holds the values of step 0, saved before later steps were logged.
    rng = np.random.default_rng(3)
    first = {f"d{k}/kernel": rng.normal(loc=k, size=8) for k in range(2)}
    run, collision = _run(tmp_path, "kernel", list(first.values()), steps=3)
    step0 = run.lane_refs("kernel", 0)[0]
    drifted = {p: v - 0.2 for p, v in first.items()}  # the values as logged at step 0
    checkpoint = _checkpoint(drifted)
    checkpoint = Checkpoint(checkpoint.path, checkpoint.format, checkpoint.variables, mtime=step0.wall_time - 1e-3)
    lanes = _named(run, collision, checkpoint)
    assert [lane["variable"] for lane in lanes] == ["d0/kernel", "d1/kernel"]
    assert "at step 0 (min, max" in lanes[0]["evidence"]


def test_values_that_drifted_since_the_checkpoint_still_pick_the_closest(tmp_path):
    rng = np.random.default_rng(4)
    layers = {f"l{k}/bias": rng.normal(loc=3 * k, size=50) for k in range(3)}
    run, collision = _run(tmp_path, "bias", list(layers.values()))
    stale = {p: v + rng.normal(scale=0.05, size=v.shape) for p, v in layers.items()}
    lanes = _named(run, collision, _checkpoint(stale))
    assert [lane["variable"] for lane in lanes] == list(layers)
    assert "closest of 3 candidates" in lanes[0]["evidence"]
    assert "histogram distance" in lanes[0]["evidence"]
    assert all(0.5 < lane["confidence"] < 1 for lane in lanes)


def test_identical_values_give_a_write_order_guess_that_says_so(tmp_path):
    zeros = np.zeros(4)
    run, collision = _run(tmp_path, "bias", [zeros, zeros])
    checkpoint = _checkpoint({"dense/bias": zeros, "dense_1/bias": zeros})
    lanes = _named(run, collision, checkpoint)
    assert [lane["variable"] for lane in lanes] == ["dense/bias", "dense_1/bias"]
    assert all(lane["confidence"] < 0.5 for lane in lanes)
    assert all("fit equally well, so this is a write-order guess" in lane["evidence"] for lane in lanes)


def test_without_a_checkpoint_lanes_stay_unnamed_and_say_why(tmp_path):
    rng = np.random.default_rng(5)
    run, collision = _run(tmp_path, "kernel", [rng.normal(size=5), rng.normal(size=6)])
    lanes = _named(run, collision, None)
    for lane in lanes:
        assert (lane["variable"], lane["checkpoint_key"], lane["confidence"]) == (None, None, 0.0)
        assert lane["evidence"].startswith("no checkpoint found beside this run")


def test_a_checkpoint_without_such_a_name_or_size_names_nothing(tmp_path):
    rng = np.random.default_rng(6)
    run, collision = _run(tmp_path, "kernel", [rng.normal(size=5), rng.normal(size=6)])
    lanes = _named(run, collision, _checkpoint({"dense/bias": rng.normal(size=5)}))
    assert all(lane["variable"] is None and lane["confidence"] == 0.0 for lane in lanes)
    assert "no variable in checkpoint `ckpt/ckpt-1` is named like `kernel`" in lanes[0]["evidence"]
    lanes = _named(run, collision, _checkpoint({"dense/kernel": rng.normal(size=7)}))
    assert "has 5 elements" in lanes[0]["evidence"]


def test_weights_stored_without_names_are_reported_as_layer_and_tag_leaf(tmp_path):
    rng = np.random.default_rng(7)
    layers = {"sequential/dense/kernel": rng.normal(size=6), "sequential/dense_1/kernel": rng.normal(size=6)}
    run, collision = _run(tmp_path, "kernel/histogram", list(layers.values()))
    lanes = _named(run, collision, _checkpoint({**layers, "sequential/dense/bias": rng.normal(size=6)}, named=False))
    assert [lane["variable"] for lane in lanes] == list(layers)
    assert [lane["checkpoint_key"] for lane in lanes] == [
        "layers/sequential/dense/vars/0",
        "layers/sequential/dense_1/vars/1",
    ]
    assert "the checkpoint stores no variable names" in lanes[0]["evidence"]


# --- real logs and checkpoints --------------------------------------------------------------------------------


def _lanes(report: dict, run: str, tag: str) -> list[dict]:
    (found,) = [r for r in report["runs"] if r["run"] == run]
    (collision,) = [c for c in found["collisions"] if c["tag"] == tag and c["kind"] == "same-step"]
    return collision["lanes"]


@pytest.mark.slow
def test_tfkeras_init_weights_are_named_after_their_layers(scenario):
    report = scan(str(scenario("tfkeras_seed")))
    (run,) = report["runs"]
    assert run["checkpoint"]["format"] == "tf-checkpoint"
    assert run["checkpoint"]["variables"] == 6
    lanes = _lanes(report, "train", "my_variable1_0/histogram")
    # The callback logs layers in model order: lane k is the k-th layer.
    assert [lane["variable"] for lane in lanes] == [
        "my_layer/my_variable1",
        "my_layer_1/my_variable1",
        "my_layer_2/my_variable1",
    ]
    assert [lane["checkpoint_key"] for lane in lanes] == [
        f"model/layer_with_weights-{k}/my_variable1/.ATTRIBUTES/VARIABLE_VALUE" for k in range(3)
    ]
    assert all(lane["confidence"] >= 0.9 and lane["shape"] == [3] for lane in lanes)
    assert lanes[1]["evidence"].startswith(
        "values equal checkpoint `model/layer_with_weights-1/my_variable1/.ATTRIBUTES/VARIABLE_VALUE` at step 2"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("checkpoint", "expected_format"),
    # Found, the run's own `model.weights.h5` beats its `ckpt/`; named, `ckpt/` gives the same answer.
    [(None, "keras-weights-h5"), ("ckpt", "tf-checkpoint")],
)
def test_keras3_v_name_lanes_are_named_after_their_layers(scenario, checkpoint, expected_format):
    run_dir = scenario("keras3_vname")
    report = scan(str(run_dir), [str(run_dir / checkpoint)] if checkpoint else None)
    assert report["runs"][0]["checkpoint"]["format"] == expected_format
    if checkpoint is None:
        assert report["runs"][0]["checkpoint"]["path"] == str(run_dir / "model.weights.h5")
    for leaf, shapes in (("kernel", [[5, 4], [4, 4], [4, 3]]), ("bias", [[4], [4], [3]])):
        lanes = _lanes(report, ".", leaf)
        assert [lane["variable"] for lane in lanes] == [
            f"sequential/{d}/{leaf}" for d in ("dense", "dense_1", "dense_2")
        ]
        assert [lane["shape"] for lane in lanes] == shapes
        assert all(lane["confidence"] >= 0.9 for lane in lanes)


@pytest.mark.slow
def test_keras313_callback_lanes_are_named_from_weights_h5(scenario):
    report = scan(str(scenario("keras313_kernel")))
    assert report["runs"][0]["checkpoint"]["format"] == "keras-weights-h5"
    lanes = _lanes(report, "train", "kernel/histogram")
    assert [lane["variable"] for lane in lanes] == [
        "sequential/dense/kernel",
        "sequential/dense_1/kernel",
        "sequential/dense_2/kernel",
    ]
    assert [lane["checkpoint_key"] for lane in lanes] == [f"layers/{d}/vars/0" for d in ("dense", "dense_1", "dense_2")]
    bias = _lanes(report, "train", "bias/histogram")
    assert [lane["checkpoint_key"] for lane in bias] == [f"layers/{d}/vars/1" for d in ("dense", "dense_1", "dense_2")]
    # dense and dense_1 both have 4 biases: only their values tell them apart.
    assert "closest of 2 candidates" in bias[0]["evidence"]
    assert bias[0]["confidence"] >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize(("name", "weight"), [("torch_leaf", "weight"), ("tbx_leaf", "kernel")])
def test_leaf_name_lanes_are_named_from_safetensors(scenario, name, weight):
    report = scan(str(scenario(name)))
    modules = ["0", "2", "4"] if name == "torch_leaf" else ["0", "1", "2"]
    for leaf in (weight, "bias"):
        lanes = _lanes(report, ".", leaf)
        assert [lane["variable"] for lane in lanes] == [f"{m}.{leaf}" for m in modules]
        assert all(lane["confidence"] >= 0.9 for lane in lanes)


@pytest.mark.slow
def test_without_a_checkpoint_the_report_says_lanes_are_unattributed(logdir_of):
    logdir = logdir_of("torch_leaf")
    os.remove(logdir / "torch_leaf" / "model.safetensors")
    report = scan(str(logdir))
    assert report["runs"][0]["checkpoint"] is None
    for lane in _lanes(report, "torch_leaf", "weight"):
        assert lane["variable"] is None
        assert lane["confidence"] < 0.5
        assert "no checkpoint found" in lane["evidence"]


@pytest.mark.slow
def test_a_corrupt_checkpoint_is_a_warning_and_the_report_is_complete(logdir_of):
    logdir = logdir_of("torch_leaf")
    checkpoint = logdir / "torch_leaf" / "model.safetensors"
    index = LogdirIndex(str(logdir))
    index.reload()
    reporter = Reporter(index)
    assert _lanes(reporter.report(), "torch_leaf", "weight")[0]["variable"] == "0.weight"
    checkpoint.write_bytes(b"\xff" * 64)
    os.utime(checkpoint, (1, 1))  # a different modification time: the reporter must notice the change
    (run,) = reporter.report()["runs"]
    (warning,) = run["warnings"]
    assert warning["file"] == str(checkpoint)
    assert warning["message"].startswith("checkpoint not read: ")
    assert run["checkpoint"] is None
    assert {c["tag"] for c in run["collisions"]} == {"weight", "bias"}
    assert all(lane["variable"] is None for lane in _lanes({"runs": [run]}, "torch_leaf", "weight"))
    assert run["groups"]


@pytest.mark.slow
def test_several_explicit_checkpoints_each_serve_the_run_beside_them(logdir_of):
    logdir = logdir_of("torch_leaf", "tbx_leaf")
    checkpoints = [str(logdir / "tbx_leaf" / "model.safetensors"), str(logdir / "torch_leaf" / "model.safetensors")]
    report = scan(str(logdir), checkpoints)
    assert [r["checkpoint"]["path"] for r in report["runs"]] == checkpoints
    assert _lanes(report, "tbx_leaf", "kernel")[0]["variable"] == "0.kernel"
    assert _lanes(report, "torch_leaf", "weight")[2]["variable"] == "4.weight"
    # One explicit checkpoint serves every run, named or not.
    single = scan(str(logdir), checkpoints[1:])
    assert [r["checkpoint"]["path"] for r in single["runs"]] == [checkpoints[1]] * 2
    assert all(lane["variable"] is None for lane in _lanes(single, "tbx_leaf", "kernel"))


@pytest.mark.parametrize("relative", ["logdir", "checkpoints"])
def test_several_explicit_checkpoints_match_runs_whether_paths_are_relative_or_absolute(
    tmp_path, monkeypatch, relative
):
    monkeypatch.chdir(tmp_path)
    for run in ("a", "b"):
        write_events(str(tmp_path / "logs" / run / "events.out.tfevents.1.host"), [])
    absolute = [str(tmp_path / "logs" / run / "model.safetensors") for run in ("b", "a")]
    if relative == "logdir":
        logdir, checkpoints = "logs", absolute
    else:
        logdir, checkpoints = str(tmp_path / "logs"), ["./logs/b/model.safetensors", "logs/x/../a/model.safetensors"]
    index = LogdirIndex(logdir)
    index.reload()
    reporter = Reporter(index, checkpoints)
    assert {name: reporter.checkpoint_path(run) for name, run in index.runs.items()} == {
        "a": checkpoints[1],
        "b": checkpoints[0],
    }


def test_url_checkpoints_are_matched_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a URL must not be taken for a path under the working directory
    checkpoints = ["gs://bucket/exp/b/model.keras", "gs://bucket/exp/a/model.keras"]
    reporter = Reporter(LogdirIndex("gs://bucket/exp"), checkpoints)
    assert reporter.checkpoint_path(SimpleNamespace(path="gs://bucket/exp/a")) == checkpoints[1]
    assert reporter.checkpoint_path(SimpleNamespace(path="gs://bucket/exp/b")) == checkpoints[0]
