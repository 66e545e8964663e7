"""The scenario fixtures hold what their docstrings promise: read back with TensorBoard's own event loader."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Runs in a subprocess with TensorFlow blocked, so TensorBoard reads through its TF-free stub (as the plugin
# will) and the pytest process stays free of TensorFlow. Prints, per event file, tag -> step -> the element
# count of each histogram value written at that step, in file order.
READER = """
import json, sys
sys.modules["tensorflow"] = None
from pathlib import Path
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.util import tensor_util

root = Path(sys.argv[1])
files = []
for path in sorted(root.rglob("*tfevents*"), key=lambda p: (str(p.parent), p.name)):
    tags = {}
    for event in EventFileLoader(str(path)).Load():
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == "histograms":
                buckets = tensor_util.make_ndarray(value.tensor)
                lanes = tags.setdefault(value.tag, {}).setdefault(str(event.step), [])
                lanes.append(int(buckets[:, 2].sum()))
    files.append({"dir": path.parent.relative_to(root).as_posix(), "tags": tags})
print(json.dumps(files))
"""


def read_histograms(run_dir: Path) -> list[tuple[str, dict[str, dict[int, list[int]]]]]:
    out = subprocess.run(
        [sys.executable, "-c", READER, str(run_dir)], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return [
        (f["dir"], {tag: {int(s): lanes for s, lanes in steps.items()} for tag, steps in f["tags"].items()})
        for f in json.loads(out)
    ]


def event_file(directory: str, steps: range, tags: dict[str, list[int]]) -> tuple[str, dict]:
    """One expected event file: each tag carries, at every step, values with these element counts in order."""
    return directory, {tag: {step: lanes for step in steps} for tag, lanes in tags.items()}


EPOCHS = range(3)
SEED_LAYER_CKPT = ["ckpt/checkpoint", "ckpt/ckpt-1.index", "ckpt/ckpt-1.data-00000-of-00001"]
DENSE_KERNEL = [20, 16, 12]  # [5, 4], [4, 4], [4, 3]
DENSE_BIAS = [4, 4, 3]

EXPECTED: dict[str, tuple[list[tuple[str, dict]], list[str]]] = {
    "tfkeras_seed": (
        [
            event_file(
                "train",
                EPOCHS,
                {
                    "my_variable1_0/histogram": [3, 3, 3],
                    "my_layer/my_variable2_0/histogram": [15],
                    "my_layer_1/my_variable2_0/histogram": [9],
                    "my_layer_2/my_variable2_0/histogram": [9],
                },
            )
        ],
        SEED_LAYER_CKPT,
    ),
    "tfkeras_fixed": (
        [
            event_file(
                "train",
                EPOCHS,
                {
                    "my_layer_fixed/my_variable1_0/histogram": [3],
                    "my_layer_fixed/my_variable2_0/histogram": [15],
                    "my_layer_fixed_1/my_variable1_0/histogram": [3],
                    "my_layer_fixed_1/my_variable2_0/histogram": [9],
                    "my_layer_fixed_2/my_variable1_0/histogram": [3],
                    "my_layer_fixed_2/my_variable2_0/histogram": [9],
                },
            )
        ],
        SEED_LAYER_CKPT,
    ),
    "keras3_vname": (
        [event_file(".", EPOCHS, {"kernel": DENSE_KERNEL, "bias": DENSE_BIAS})],
        ["model.weights.h5", *SEED_LAYER_CKPT],
    ),
    "keras3_vpath": (
        [
            event_file(
                ".",
                EPOCHS,
                {
                    "sequential/dense/kernel": [20],
                    "sequential/dense/bias": [4],
                    "sequential/dense_1/kernel": [16],
                    "sequential/dense_1/bias": [4],
                    "sequential/dense_2/kernel": [12],
                    "sequential/dense_2/bias": [3],
                },
            )
        ],
        ["model.weights.h5", *SEED_LAYER_CKPT],
    ),
    "keras3_callback": (
        [
            event_file(
                "train",
                EPOCHS,
                {
                    "my_layer/my_variable1/histogram": [3],
                    "sequential/my_layer/my_variable2/histogram": [15],
                    "my_layer_1/my_variable1/histogram": [3],
                    "sequential/my_layer_1/my_variable2/histogram": [9],
                    "my_layer_2/my_variable1/histogram": [3],
                    "sequential/my_layer_2/my_variable2/histogram": [9],
                },
            )
        ],
        ["model.keras"],
    ),
    "keras313_kernel": (
        [event_file("train", EPOCHS, {"kernel/histogram": DENSE_KERNEL, "bias/histogram": DENSE_BIAS})],
        ["model.weights.h5"],
    ),
    "torch_leaf": (
        [event_file(".", EPOCHS, {"weight": DENSE_KERNEL, "bias": DENSE_BIAS})],
        ["model.safetensors"],
    ),
    "torch_full": (
        [
            event_file(
                ".",
                EPOCHS,
                {"0.weight": [20], "0.bias": [4], "2.weight": [16], "2.bias": [4], "4.weight": [12], "4.bias": [3]},
            )
        ],
        ["model.safetensors"],
    ),
    "tbx_leaf": (
        [event_file(".", EPOCHS, {"kernel": DENSE_KERNEL, "bias": DENSE_BIAS})],
        ["model.safetensors"],
    ),
    "resumed": (
        [
            event_file(".", range(0, 6), {"dense/kernel": [20], "dense/bias": [4]}),
            event_file(".", range(4, 10), {"dense/kernel": [20], "dense/bias": [4]}),
        ],
        [],
    ),
    "multi_run": (
        [event_file(run, range(5), {"dense/kernel": [20], "dense/bias": [4]}) for run in ("run_a", "run_b", "run_c")],
        [],
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXPECTED))
def test_scenario_writes_the_documented_histograms(scenario, name: str) -> None:
    files, checkpoint_files = EXPECTED[name]
    run_dir = scenario(name)

    assert read_histograms(run_dir) == files
    for relative in checkpoint_files:
        assert (run_dir / relative).is_file(), relative


@pytest.mark.slow
def test_logdir_of_copies_scenarios_side_by_side(logdir_of) -> None:
    logdir = logdir_of("tfkeras_seed", "multi_run")

    runs = sorted(p.parent.relative_to(logdir).as_posix() for p in logdir.rglob("*tfevents*"))
    assert runs == ["multi_run/run_a", "multi_run/run_b", "multi_run/run_c", "tfkeras_seed/train"]
