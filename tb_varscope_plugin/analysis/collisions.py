"""Collisions: histogram tags written more than once at one step, within one event file or across files of a run."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tb_varscope_plugin.analysis.attribution import LaneMatch
from tb_varscope_plugin.reading.events import LEGACY
from tb_varscope_plugin.reading.run_index import RunIndex
from tb_varscope_plugin.schema import CROSS_FILE, SAME_STEP, Collision, CollisionKind, Lane

# tf-keras's callback logs weight.name with ':' made '_': my_variable1:0 becomes my_variable1_0/histogram.
_TF_KERAS_CALLBACK = re.compile(r"_\d+/histogram$")
# Every fix ends with how to repair the logs already written, which no logging change can.
SPLIT_HINTS = {
    SAME_STEP: "To repair the logs already written, `tb-varscope split LOGDIR OUTDIR` writes a copy with each lane "
    "under a tag of its own.",
    CROSS_FILE: "To repair the logs already written, `tb-varscope split LOGDIR OUTDIR` writes a copy in which the "
    "older file's values at the shared steps go under `<tag>/superseded`.",
}


@dataclass(frozen=True)
class FoundCollision:
    """A colliding tag as the index shows it, before its lanes are named."""

    tag: str
    kind: CollisionKind
    writers: int
    steps: int
    first_step: int
    last_step: int
    files: tuple[str, ...]
    encoding: str | None  # how the values were written (same-step only)
    elements: tuple[int, ...]  # same-step: each lane's element count, from its last value


def find_collisions(run: RunIndex) -> list[FoundCollision]:
    """Every colliding histogram tag of the run: a same-step and a cross-file collision per tag at most."""
    found = []
    for tag in run.histogram_tags():
        same_step = _same_step(run, tag)
        if same_step is not None:
            found.append(same_step)
        cross_file = _cross_file(run, tag)
        if cross_file is not None:
            found.append(cross_file)
    return found


def collision_entry(found: FoundCollision, matches: list[LaneMatch]) -> Collision:
    """The collision in the report's shape, its lanes named by `matches` (one per lane, in lane order)."""
    if found.kind == SAME_STEP:
        explanation, fix = explain_same_step(found.tag, found.encoding, found.writers)
    else:
        explanation, fix = _explain_cross_file(found)
    fix = f"{fix} {SPLIT_HINTS[found.kind]}"
    lanes: list[Lane] = [
        {
            "lane": match.lane,
            "variable": match.name,
            "checkpoint_key": match.variable.key if match.variable is not None else None,
            "shape": list(match.variable.shape) if match.variable is not None else None,
            "elements": elements,
            "confidence": match.confidence,
            "evidence": match.evidence,
        }
        for match, elements in zip(matches, found.elements, strict=True)
    ]
    return {
        "tag": found.tag,
        "kind": found.kind,
        "writers": found.writers,
        "steps": found.steps,
        "first_step": found.first_step,
        "last_step": found.last_step,
        "files": list(found.files),
        "lanes": lanes,
        "explanation": explanation,
        "fix": fix,
    }


def _same_step(run: RunIndex, tag: str) -> FoundCollision | None:
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
    lasts = [run.last_ref(tag, lane) for lane in range(writers)]
    # Decoded together: the last values of a step's lanes often lie in one record, read and parsed once.
    decoded = iter(run.decode_all([ref for ref in lasts if ref is not None]))
    elements = []
    for last in lasts:
        buckets = next(decoded) if last is not None else None
        elements.append(int(round(float(buckets[:, 2].sum()))) if buckets is not None and len(buckets) else 0)
    return FoundCollision(
        tag, SAME_STEP, writers, len(repeated), min(repeated), max(repeated), tuple(files), encoding, tuple(elements)
    )


def _cross_file(run: RunIndex, tag: str) -> FoundCollision | None:
    shared = run.shared_steps(tag)
    if not shared:
        return None
    files = tuple(sorted({name for names in shared.values() for name in names}))
    writers = max(len(names) for names in shared.values())
    return FoundCollision(tag, CROSS_FILE, writers, len(shared), min(shared), max(shared), files, None, ())


def _explain_cross_file(found: FoundCollision) -> tuple[str, str]:
    return (
        f"{len(found.files)} event files of this run hold `{found.tag}` at the same steps "
        f"({found.first_step}..{found.last_step}): the run was resumed into the same directory, or two writers were "
        "open at once. TensorBoard shows one value per step, so one file's values hide the other's.",
        "Resume into a new run directory, or resume logging at the step after the last checkpoint "
        "(Keras: `initial_epoch`); make sure one process writes each run; delete the stale event file.",
    )


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
