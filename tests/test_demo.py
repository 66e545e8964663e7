"""The demo trains for real and leaves what its printout promises: two runs that collide, two that do not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tb_varscope_plugin import scan
from tb_varscope_plugin.cli import main

DEMO = Path(__file__).resolve().parents[1] / "demo" / "train.py"


@pytest.fixture(scope="module")
def demo_logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    pytest.importorskip("tf_keras")
    logdir = tmp_path_factory.mktemp("demo") / "demo-logs"
    result = subprocess.run(
        [sys.executable, str(DEMO), "--logdir", str(logdir)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return logdir, result.stdout


@pytest.mark.slow
def test_demo_prints_its_runs_and_the_next_commands(demo_logs) -> None:
    logdir, out = demo_logs

    lines = [line for line in out.splitlines() if line.startswith("wrote ")]
    assert [line.split(":")[0] for line in lines] == [
        f"wrote {logdir / run}"
        for run in ("1-tfkeras-init-weight", "2-tfkeras-build-weight", "3-keras3-v-name", "4-keras3-v-path")
    ]
    # Runs refer to each other by the folder numbers the user sees, not by the test suite's scenario names.
    assert "the model of run 1" in lines[1] and "the training of run 3" in lines[3]
    assert "tfkeras_seed" not in out and "keras3_vname" not in out
    assert f"tb-varscope scan {logdir}" in out
    assert f"tensorboard --logdir {logdir}" in out


@pytest.mark.slow
def test_scan_finds_the_seed_layer_and_v_name_collisions_only(demo_logs) -> None:
    report = scan(str(demo_logs[0]))

    collisions = {run["run"]: sorted(c["tag"] for c in run["collisions"]) for run in report["runs"]}
    assert collisions == {
        "1-tfkeras-init-weight/train": ["my_variable1_0/histogram"],
        "2-tfkeras-build-weight/train": [],
        "3-keras3-v-name": ["bias", "kernel"],
        "4-keras3-v-path": [],
    }
    assert report["summary"] == {"runs": 4, "histogram_tags": 18, "collisions": 3, "warnings": 0}


@pytest.mark.slow
def test_each_lane_is_named_after_the_layer_that_wrote_it(demo_logs) -> None:
    runs = {run["run"]: run for run in scan(str(demo_logs[0]))["runs"]}

    def lanes(run: str, tag: str) -> list[tuple[str, list[int]]]:
        (collision,) = (c for c in runs[run]["collisions"] if c["tag"] == tag)
        assert (collision["kind"], collision["writers"], collision["steps"]) == ("same-step", 3, 3)
        return [(lane["variable"], lane["shape"]) for lane in collision["lanes"]]

    assert lanes("1-tfkeras-init-weight/train", "my_variable1_0/histogram") == [
        ("my_layer/my_variable1", [3]),
        ("my_layer_1/my_variable1", [3]),
        ("my_layer_2/my_variable1", [3]),
    ]
    assert lanes("3-keras3-v-name", "kernel") == [
        ("sequential/dense/kernel", [5, 4]),
        ("sequential/dense_1/kernel", [4, 4]),
        ("sequential/dense_2/kernel", [4, 3]),
    ]
    assert lanes("3-keras3-v-name", "bias") == [
        ("sequential/dense/bias", [4]),
        ("sequential/dense_1/bias", [4]),
        ("sequential/dense_2/bias", [3]),
    ]


@pytest.mark.slow
def test_every_demo_run_finds_the_checkpoint_saved_beside_it(demo_logs) -> None:
    logdir = demo_logs[0]

    runs = scan(str(logdir))["runs"]
    # The Keras 3 runs save both: the `model.weights.h5` in the run itself wins over the run's `ckpt/`.
    assert {run["run"]: (run["checkpoint"]["path"], run["checkpoint"]["variables"]) for run in runs} == {
        "1-tfkeras-init-weight/train": (str(logdir / "1-tfkeras-init-weight" / "ckpt" / "ckpt-1"), 6),
        "2-tfkeras-build-weight/train": (str(logdir / "2-tfkeras-build-weight" / "ckpt" / "ckpt-1"), 6),
        "3-keras3-v-name": (str(logdir / "3-keras3-v-name" / "model.weights.h5"), 6),
        "4-keras3-v-path": (str(logdir / "4-keras3-v-path" / "model.weights.h5"), 6),
    }


@pytest.mark.slow
def test_cli_on_the_demo_reports_collisions_like_a_linter(demo_logs, capsys) -> None:
    assert main(["scan", str(demo_logs[0])]) == 1

    out = capsys.readouterr().out
    assert "1-tfkeras-init-weight/train: my_variable1_0/histogram  3 writers per step at steps 0..2" in out
    assert "2 runs clean: 2-tfkeras-build-weight/train, 4-keras3-v-path" in out
    assert out.rstrip().endswith("3 collisions (2 causes) in 2 of 4 runs, 18 histogram tags read, no warnings.")
