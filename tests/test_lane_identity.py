"""Every lane a user logs gets its own variable and its own name: gradients from their weights, layers sharing a name
by where the checkpoint stores them, restarts as one variable written twice, and explanations by writer."""

from __future__ import annotations

import pytest

from tb_varscope_plugin import scan


def _collisions(report: dict, run: str) -> dict[str, dict]:
    (found,) = [r for r in report["runs"] if r["run"] == run]
    return {c["tag"]: c for c in found["collisions"] if c["kind"] == "same-step"}


def _variables(collision: dict) -> list[str | None]:
    return [lane["variable"] for lane in collision["lanes"]]


def _assert_told_apart(report: dict) -> None:
    """No two lanes of one collision are shown under one name, unless they are one variable written twice."""
    for run in report["runs"]:
        for c in run["collisions"]:
            names = [lane["variable"] for lane in c["lanes"] if lane["variable"] is not None]
            if c.get("cause") != "restart":
                assert len(names) == len(set(names)), (c["tag"], names)


@pytest.mark.slow
def test_torch_blocks_name_every_weight_and_gradient_lane_and_no_activation_lane(scenario):
    report = scan(str(scenario("torch_blocks")))
    assert report["runs"][0]["checkpoint"]["format"] == "pytorch"
    collisions = _collisions(report, ".")
    assert set(collisions) == {"weight", "grad/weight", "bias", "bias_grad", "act/Linear"}
    modules = [f"{block}.{linear}" for block in range(3) for linear in ("fc", "out")]
    for family, leaf in (("weight", "weight"), ("grad/weight", "weight"), ("bias", "bias"), ("bias_grad", "bias")):
        collision = collisions[family]
        assert _variables(collision) == [f"{m}.{leaf}" for m in modules], family
        assert [lane["checkpoint_key"] for lane in collision["lanes"]] == [f"{m}.{leaf}" for m in modules]
        assert all(lane["confidence"] >= 0.9 for lane in collision["lanes"])
    # A gradient lane is named from the lane of its weight written in the same place, and says so.
    evidence = collisions["grad/weight"]["lanes"][2]["evidence"]
    assert evidence.startswith("lane 2 of `grad/weight` is written in the same place as lane 2 of `weight`")
    assert "every `grad/weight` value is written right after a `weight` value" in evidence
    assert "named from the checkpoint: values equal checkpoint `1.fc.weight`" in evidence
    assert "lane 4 of `bias`" in collisions["bias_grad"]["lanes"][4]["evidence"]
    # Activations have no variable: unnamed, and the report does not send the user to a checkpoint for them.
    act = collisions["act/Linear"]
    assert _variables(act) == [None] * 6
    assert all("no variable is behind them" in lane["evidence"] for lane in act["lanes"])
    assert not any("--checkpoint" in lane["evidence"] for lane in act["lanes"])
    assert "Activations have no variable behind them" in act["explanation"]
    assert "named_modules()" in act["fix"]
    assert "torch.utils.tensorboard" in collisions["grad/weight"]["explanation"]
    assert "gradients" in collisions["grad/weight"]["explanation"]
    _assert_told_apart(report)
    (run,) = report["runs"]
    groups = {g["path"]: g["tags"] for g in run["groups"]}
    assert groups["1.out"] == ["bias", "bias_grad", "grad/weight", "weight"]


@pytest.mark.slow
def test_tf_modules_sharing_a_name_are_shown_by_their_object_paths(scenario):
    report = scan(str(scenario("tfmodule_shared")))
    (run,) = report["runs"]
    assert run["checkpoint"]["format"] == "tf-checkpoint"
    collisions = _collisions(report, ".")
    for tag, leaf in (
        ("two_tower/linear/w:0", "w"),
        ("two_tower/linear/b:0", "b"),
        ("two_tower/linear/w/gradient", "w"),
        ("two_tower/linear/b/gradient", "b"),
    ):
        collision = collisions[tag]
        assert _variables(collision) == [f"trunk/{k}/{leaf}" for k in range(3)], tag
        assert [lane["checkpoint_key"] for lane in collision["lanes"]] == [
            f"model/trunk/{k}/{leaf}/.ATTRIBUTES/VARIABLE_VALUE" for k in range(3)
        ]
    assert (
        "written in the same place as lane 1 of `two_tower/linear/w:0`"
        in (collisions["two_tower/linear/w/gradient"]["lanes"][1]["evidence"])
    )
    assert "`tf.Module`s (and sonnet 2 modules) sharing a name" in collisions["two_tower/linear/w:0"]["explanation"]
    _assert_told_apart(report)
    # One group per module, not one `two_tower/linear` holding all three.
    groups = {g["path"]: sorted(v["path"] for v in g["variables"]) for g in run["groups"]}
    assert set(groups) == {"trunk/0", "trunk/1", "trunk/2"}
    assert groups["trunk/1"] == ["trunk/1/b", "trunk/1/b", "trunk/1/w", "trunk/1/w"]  # each with its gradient


@pytest.mark.slow
def test_keras3_blocks_sharing_a_default_name_are_shown_by_their_weights_file_paths(scenario):
    report = scan(str(scenario("keras3_shared_name")))
    collisions = _collisions(report, "train")
    blocks = ["encoder_block", "encoder_block_1", "encoder_block_2"]
    for leaf, index in (("kernel", 0), ("bias", 1)):
        collision = collisions[f"encoder/encoder_block/proj/{leaf}/histogram"]
        assert _variables(collision) == [f"{b}/proj/{leaf}" for b in blocks]
        assert [lane["checkpoint_key"] for lane in collision["lanes"]] == [
            f"blocks/{b}/proj/vars/{index}" for b in blocks
        ]
        assert "weight.path" in collision["explanation"] and "share one name" in collision["explanation"]
    _assert_told_apart(report)
    (run,) = report["runs"]
    assert [g["path"] for g in run["groups"]] == [f"{b}/proj" for b in blocks]


@pytest.mark.slow
def test_a_restart_in_one_file_is_one_variable_before_and_after(scenario):
    report = scan(str(scenario("torch_restart")))
    assert report["runs"][0]["checkpoint"]["path"].endswith("/model.pt")
    collisions = _collisions(report, ".")
    assert set(collisions) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    for tag, collision in collisions.items():
        assert collision["cause"] == "restart"
        assert (collision["writers"], collision["first_step"], collision["last_step"]) == (2, 20, 25)
        assert _variables(collision) == [tag, tag]
        assert [lane["checkpoint_key"] for lane in collision["lanes"]] == [tag, tag]
        assert collision["lanes"][0]["evidence"].startswith(
            "values before and after the restart at step 25 (the run went back to step 20)"
        )
        assert collision["lanes"][1]["evidence"].startswith("values after the restart at step 25")
        assert "went back from step 25 to step 20" in collision["explanation"]
        assert "leaf name" not in collision["explanation"]
        assert "new run directory" in collision["fix"] and "purge_step=20" in collision["fix"]


@pytest.mark.slow
def test_tensorboardx_collisions_are_explained_as_tensorboardx(scenario):
    collisions = _collisions(scan(str(scenario("tbx_leaf"))), ".")
    assert "written by tensorboardX" in collisions["kernel"]["explanation"]
    assert "tf.summary" not in collisions["kernel"]["explanation"]
