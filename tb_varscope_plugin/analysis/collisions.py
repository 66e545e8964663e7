"""Collisions: histogram tags written more than once at one step, within one event file or across files of a run."""

from __future__ import annotations

import re

from tb_varscope_plugin.reading.events import LEGACY
from tb_varscope_plugin.reading.run_index import RunIndex

SAME_STEP = "same-step"
CROSS_FILE = "cross-file"

# tf-keras's callback logs weight.name with ':' made '_': my_variable1:0 becomes my_variable1_0/histogram.
_TF_KERAS_CALLBACK = re.compile(r"_\d+/histogram$")


def find_collisions(run: RunIndex) -> list[dict]:
    """Every colliding histogram tag of the run, in the contract's shape, lanes not yet attributed."""
    found = []
    for tag in run.histogram_tags():
        same_step = _same_step(run, tag)
        if same_step is not None:
            found.append(same_step)
        cross_file = _cross_file(run, tag)
        if cross_file is not None:
            found.append(cross_file)
    return found


def _same_step(run: RunIndex, tag: str) -> dict | None:
    writers = 0
    repeated: set[int] = set()
    files = []
    encoding = None
    for f in run.files:
        series = f.series.get(tag)
        if series is None:
            continue
        steps, counts = series.step_counts()
        if counts.max() > 1:
            writers = max(writers, int(counts.max()))
            repeated.update(steps[counts > 1].tolist())
            files.append(f.name)
            encoding = series.encoding
    if not repeated:
        return None
    lanes = []
    for lane in range(writers):
        last = run.decode(run.last_ref(tag, lane))
        lanes.append(
            {
                "lane": lane,
                "variable": None,
                "checkpoint_key": None,
                "shape": None,
                "elements": int(round(float(last[:, 2].sum()))) if len(last) else 0,
                "confidence": 0.0,
                "evidence": "not attributed: lanes are told apart by write order only",
            }
        )
    explanation, fix = explain_same_step(tag, encoding, writers)
    return {
        "tag": tag,
        "kind": SAME_STEP,
        "writers": writers,
        "steps": len(repeated),
        "first_step": min(repeated),
        "last_step": max(repeated),
        "files": files,
        "lanes": lanes,
        "explanation": explanation,
        "fix": fix,
    }


def _cross_file(run: RunIndex, tag: str) -> dict | None:
    shared = run.shared_steps(tag)
    if not shared:
        return None
    files = sorted({name for names in shared.values() for name in names})
    first, last = min(shared), max(shared)
    return {
        "tag": tag,
        "kind": CROSS_FILE,
        "writers": max(len(names) for names in shared.values()),
        "steps": len(shared),
        "first_step": first,
        "last_step": last,
        "files": files,
        "lanes": [],
        "explanation": (
            f"{len(files)} event files of this run hold `{tag}` at the same steps ({first}..{last}): the run was "
            "resumed into the same directory, or two writers were open at once. TensorBoard shows one value per step, "
            "so one file's values hide the other's."
        ),
        "fix": (
            "Resume into a new run directory, or resume logging at the step after the last checkpoint "
            "(Keras: `initial_epoch`); make sure one process writes each run; delete the stale event file."
        ),
    }


def explain_same_step(tag: str, encoding: str | None, writers: int) -> tuple[str, str]:
    """Why `writers` values of `tag` land at one step, and how to log them apart, from the tag's shape."""
    hidden = (
        f"{writers} values of `{tag}` are written at each step into one event file. TensorBoard's default loader keeps "
        "one value per tag and step, so it shows only the last writer; with --load_fast=false all are drawn "
        "unlabelled at one step."
    )
    if _TF_KERAS_CALLBACK.search(tag):
        return (
            f"{hidden} This is tf-keras naming: a weight created in a layer's `__init__` gets its bare name "
            "(`my_variable1:0`, without the layer's scope), so the same weight of several layers shares one name, "
            "and the TensorBoard callback logs histograms by `weight.name`.",
            "Create weights in `build()`, where `add_weight` puts them under the layer's scope "
            "(`my_layer_1/my_variable1:0`), or give each layer's weight a unique name.",
        )
    if tag.endswith("/histogram"):
        return (
            f"{hidden} This is the Keras 3 TensorBoard callback before 3.14: it logs `weight.name`, and Keras 3 "
            "names are bare (`kernel`, `bias`), so every layer writes the same tag.",
            "Upgrade Keras to 3.14 or later, whose callback logs `weight.path` (`sequential/dense_1/kernel`), "
            "or log histograms yourself by `weight.path`.",
        )
    if encoding == LEGACY and "/" not in tag:
        return (
            f"{hidden} The tag looks like a PyTorch parameter's leaf name (`weight`, `bias`): every module that "
            "has such a parameter logs under it.",
            "Log each parameter under its full name from `model.named_parameters()` (`0.weight`, `encoder.fc.bias`).",
        )
    return (
        f"{hidden} Several variables are logged under one name, as `tf.summary.histogram(v.name, v)` does with "
        "Keras 3 variables, whose names are bare (`kernel`).",
        "Log each variable under a unique, full name: `v.path` in Keras 3, the parameter's full name in PyTorch, "
        "or give layers and weights unique names.",
    )
