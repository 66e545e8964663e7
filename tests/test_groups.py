"""Layer groups: every histogram tag of a run under the layer it belongs to, with or without a checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from eventlogs import histogram_event, write_events

from tb_varscope_plugin import scan
from tb_varscope_plugin.checkpoints.variables import Checkpoint, Variable
from tb_varscope_plugin.reading.logdir import LogdirIndex
from tb_varscope_plugin.report import build_run_report


def _report(tmp_path: Path, writes: list[tuple[str, np.ndarray]], checkpoint: Checkpoint | None = None) -> dict:
    """The run report of one event file holding `writes` (tag, values) at steps 0 and 1, in list order."""
    events = [histogram_event(step, tag, values) for step in range(2) for tag, values in writes]
    write_events(str(tmp_path / "events.out.tfevents.1.host"), events)
    index = LogdirIndex(str(tmp_path))
    index.reload()
    return build_run_report(index.runs["."], checkpoint)


def _tree(report: dict) -> dict[str, list[tuple[str | None, int | None]]]:
    return {g["path"]: [(v["tag"], v["lane"]) for v in g["variables"]] for g in report["groups"]}


def test_keras3_init_and_build_weights_of_a_layer_share_its_group(tmp_path):
    rng = np.random.default_rng(0)
    report = _report(
        tmp_path,
        [
            ("my_layer/my_variable1/histogram", rng.normal(size=3)),
            ("sequential/my_layer/my_variable2/histogram", rng.normal(size=15)),
            ("my_layer_1/my_variable1/histogram", rng.normal(size=3)),
            ("sequential/my_layer_1/my_variable2/histogram", rng.normal(size=9)),
        ],
    )
    assert report["collisions"] == []
    assert _tree(report) == {
        "sequential/my_layer": [
            ("my_layer/my_variable1/histogram", 0),
            ("sequential/my_layer/my_variable2/histogram", 0),
        ],
        "sequential/my_layer_1": [
            ("my_layer_1/my_variable1/histogram", 0),
            ("sequential/my_layer_1/my_variable2/histogram", 0),
        ],
    }
    (group, _) = report["groups"]
    assert [v["path"] for v in group["variables"]] == ["my_layer/my_variable1", "sequential/my_layer/my_variable2"]
    assert [v["name"] for v in group["variables"]] == ["my_variable1", "my_variable2"]


def test_a_scope_that_ends_two_longer_ones_stays_apart(tmp_path):
    rng = np.random.default_rng(1)
    report = _report(
        tmp_path,
        [("a/dense/kernel", rng.normal(size=4)), ("b/dense/kernel", rng.normal(size=4)), ("dense/bias", np.ones(2))],
    )
    assert sorted(_tree(report)) == ["a/dense", "b/dense", "dense"]


def test_without_a_checkpoint_lanes_of_a_bare_name_sit_at_the_top(tmp_path):
    rng = np.random.default_rng(2)
    report = _report(
        tmp_path,
        [("0.weight", rng.normal(size=6)), ("weight", rng.normal(size=4)), ("weight", rng.normal(size=5))],
    )
    assert _tree(report) == {"": [("weight", 0), ("weight", 1)], "0": [("0.weight", 0)]}
    assert report["groups"][0]["tags"] == ["weight"]


def _variable(path: str, name: str | None, layer: str, value: np.ndarray, key: str) -> Variable:
    return Variable(path, key, name, value.shape, "float32", layer, False, lambda: value)


def test_a_checkpoint_puts_a_tf_keras_init_weight_with_its_layer(tmp_path):
    rng = np.random.default_rng(3)
    v1 = [rng.normal(size=3) for _ in range(2)]
    v2 = [rng.normal(size=(5, 3)), rng.normal(size=(3, 3))]
    layers = ["sequential/my_layer", "sequential/my_layer_1"]
    variables = [
        _variable(f"{layer}/my_variable1", "my_variable1", layer, a, f"model/layer_with_weights-{k}/my_variable1")
        for k, (layer, a) in enumerate(zip(layers, v1, strict=True))
    ] + [
        _variable(
            f"{layer}/my_variable2", f"{layer}/my_variable2", layer, b, f"model/layer_with_weights-{k}/my_variable2"
        )
        for k, (layer, b) in enumerate(zip(layers, v2, strict=True))
    ]
    adam = Variable("optimizer/m", "optimizer/m", None, (3,), "float32", None, True, lambda: np.zeros(3))
    never_logged = _variable("sequential/my_layer_1/scale", "scale", "sequential/my_layer_1", np.ones(1), "scale")
    checkpoint = Checkpoint("ckpt/ckpt-1", "tf-checkpoint", (*variables, adam, never_logged), None)
    report = _report(
        tmp_path,
        [
            ("my_variable1_0/histogram", v1[0]),
            ("my_layer/my_variable2_0/histogram", v2[0]),
            ("my_variable1_0/histogram", v1[1]),
            ("my_layer_1/my_variable2_0/histogram", v2[1]),
        ],
        checkpoint,
    )
    assert report["checkpoint"] == {"path": "ckpt/ckpt-1", "format": "tf-checkpoint", "variables": 5}
    assert _tree(report) == {
        "sequential/my_layer": [("my_variable1_0/histogram", 0), ("my_layer/my_variable2_0/histogram", 0)],
        "sequential/my_layer_1": [
            ("my_variable1_0/histogram", 1),
            ("my_layer_1/my_variable2_0/histogram", 0),
            (None, None),
        ],
    }
    second = report["groups"][1]
    assert second["tags"] == ["my_layer_1/my_variable2_0/histogram", "my_variable1_0/histogram"]
    assert second["variables"][0] == {
        "name": "my_variable1",
        "path": "sequential/my_layer_1/my_variable1",
        "checkpoint_key": "model/layer_with_weights-1/my_variable1",
        "shape": [3],
        "tag": "my_variable1_0/histogram",
        "lane": 1,
    }
    assert second["variables"][2]["name"] == "scale"


# --- real logs and checkpoints --------------------------------------------------------------------------------


def _groups(report: dict) -> dict[str, list[str]]:
    (run,) = report["runs"]
    return {g["path"]: g["tags"] for g in run["groups"]}


@pytest.mark.slow
def test_keras3_callback_groups_init_and_build_weights_by_layer(scenario):
    report = scan(str(scenario("keras3_callback")))
    assert report["summary"]["collisions"] == 0
    assert _groups(report) == {
        f"sequential/{layer}": [f"{layer}/my_variable1/histogram", f"sequential/{layer}/my_variable2/histogram"]
        for layer in ("my_layer", "my_layer_1", "my_layer_2")
    }
    (run,) = report["runs"]
    first = run["groups"][0]["variables"]
    assert [(v["path"], v["checkpoint_key"], v["shape"]) for v in first] == [
        ("sequential/my_layer/my_variable1", "layers/my_layer/vars/0", [3]),
        ("sequential/my_layer/my_variable2", "layers/my_layer/vars/1", [5, 3]),
    ]


@pytest.mark.slow
def test_tfkeras_seed_groups_each_colliding_lane_with_its_layer(scenario):
    report = scan(str(scenario("tfkeras_seed")))
    assert _groups(report) == {
        layer: [f"{layer}/my_variable2_0/histogram", "my_variable1_0/histogram"]
        for layer in ("my_layer", "my_layer_1", "my_layer_2")
    }
    (run,) = report["runs"]
    assert [[v["lane"] for v in g["variables"] if v["tag"] == "my_variable1_0/histogram"] for g in run["groups"]] == [
        [0],
        [1],
        [2],
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("tfkeras_fixed", ["my_layer_fixed", "my_layer_fixed_1", "my_layer_fixed_2"]),
        ("keras3_vpath", ["sequential/dense", "sequential/dense_1", "sequential/dense_2"]),
        ("torch_full", ["0", "2", "4"]),
    ],
)
def test_clean_runs_have_groups_and_no_collisions(scenario, name, expected):
    report = scan(str(scenario(name)))
    (run,) = report["runs"]
    assert run["collisions"] == []
    assert run["checkpoint"] is not None
    assert sorted(_groups(report)) == expected
    placed = sorted(tag for g in run["groups"] for tag in g["tags"])
    assert len(placed) == run["histogram_tags"] == 6
    assert all(v["checkpoint_key"] and v["tag"] for g in run["groups"] for v in g["variables"])


@pytest.mark.slow
def test_keras3_vpath_variables_from_weights_h5_are_named_by_layer_path_and_tag_leaf(scenario):
    (run,) = scan(str(scenario("keras3_vpath")))["runs"]
    assert run["checkpoint"]["format"] == "keras-weights-h5"  # the run's own file, not its `ckpt/`
    assert sorted((v["path"], v["checkpoint_key"], v["tag"]) for g in run["groups"] for v in g["variables"]) == sorted(
        (f"sequential/{d}/{leaf}", f"layers/{d}/vars/{k}", f"sequential/{d}/{leaf}")
        for d in ("dense", "dense_1", "dense_2")
        for k, leaf in enumerate(("kernel", "bias"))
    )
