"""Collisions: histogram tags written more than once at one step, within one event file or across files of a run."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from tb_varscope_plugin.analysis.attribution import LaneMatch
from tb_varscope_plugin.analysis.tag_names import is_activation, is_gradient
from tb_varscope_plugin.reading.events import LEGACY, TENSOR
from tb_varscope_plugin.reading.run_index import EventFile, RunIndex, Series, ValueRef
from tb_varscope_plugin.schema import CROSS_FILE, RESTART, SAME_STEP, Collision, CollisionKind, Lane

# tf-keras's callback logs weight.name with ':' made '_': my_variable1:0 becomes my_variable1_0/histogram.
_TF_KERAS_CALLBACK = re.compile(r"_\d+/histogram$")
# Every fix ends with how to repair the logs already written, which no logging change can.
SPLIT_HINTS = {
    SAME_STEP: "To repair the logs already written, `tb-varscope split LOGDIR OUTDIR` writes a copy with each lane "
    "under a tag of its own.",
    CROSS_FILE: "To repair the logs already written, `tb-varscope split LOGDIR OUTDIR` writes a copy in which the "
    "older file's values at the shared steps go under `<tag>/superseded`.",
}
_TF_VARIABLE_NAME = re.compile(r":\d+$")  # a tf.Variable's `name` ends with its output index

# `source_metadata.writer` of a file's first event.
TF_EVENTS_WRITER = "tensorflow.core.util.events_writer"
TB_PYTHON_WRITER = "tensorboard.summary.writer.event_file_writer"

Writer = str
TENSORFLOW: Writer = "tensorflow"  # tf.summary, and the Keras callbacks through it
TORCH: Writer = "torch"  # torch.utils.tensorboard.SummaryWriter
TENSORBOARDX: Writer = "tensorboardX"
UNKNOWN: Writer = "unknown"


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
    elements: tuple[int, ...]  # same-step: each lane's element count, from its last value
    writer: Writer = UNKNOWN  # which library wrote the files, as far as they tell (same-step only)
    # Same-step only: where one writer's steps went back and then wrote the tag again at steps it had written
    # (step reached, step gone back to), when that is the only reason the tag repeats.
    restarts: tuple[tuple[int, int], ...] = ()


def find_collisions(run: RunIndex) -> list[FoundCollision]:
    """Every colliding histogram tag of the run: a same-step and a cross-file collision per tag at most."""
    found: list[tuple[FoundCollision, list[ValueRef | None] | None]] = []  # same-step ones with their lanes' last
    # Only a tag that some file holds twice at one step can collide within a file, and only one that several files
    # hold can collide across them: told apart in one pass over the series, so the tags that do neither (nearly
    # all) cost a set lookup each, not a look at every file for them.
    repeating: set[str] = set()
    held: set[str] = set()
    shared: set[str] = set()
    for f in run.files:
        for tag, series in f.series.items():
            if series.lanes().most > 1:
                repeating.add(tag)
            if tag in held:
                shared.add(tag)
        held.update(f.series)
    for tag in sorted(repeating | shared):
        same_step = _same_step(run, tag) if tag in repeating else None
        if same_step is not None:
            found.append(same_step)
        cross_file = _cross_file(run, tag) if tag in shared else None
        if cross_file is not None:
            found.append((cross_file, None))
    # Each lane's size from its last value's counts, all read at once: each file is opened once for them (a run of
    # 10,000 tags may have a thousand colliding), and the last values of a step's lanes, often in one record, are
    # read and parsed once.
    counted = iter(run.element_counts([ref for _, lasts in found for ref in lasts or () if ref is not None]))
    return [collision if lasts is None else _sized(collision, lasts, counted) for collision, lasts in found]


def collision_entry(found: FoundCollision, matches: list[LaneMatch]) -> Collision:
    """The collision in the report's shape, its lanes named by `matches` (one per lane, in lane order)."""
    if found.restarts:
        explanation, fix = _explain_restart(found)
    elif found.kind == SAME_STEP:
        explanation, fix = explain_same_step(found.tag, found.writer, found.writers)
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
    entry: Collision = {
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
    if found.restarts:
        entry["cause"] = RESTART
    return entry


def _same_step(run: RunIndex, tag: str) -> tuple[FoundCollision, list[ValueRef | None]] | None:
    """The tag's same-step collision, if it has one, its lanes' sizes left for `_sized`; with each lane's last value."""
    writers = 0
    repeated: set[int] = set()
    files = []
    writer = UNKNOWN
    restarts: list[tuple[int, int]] | None = []  # None once some repeat is not a restart
    for f in run.files:
        series = f.series.get(tag)
        if series is None or series.lanes().most < 2:  # one value per step: most series, known without counting
            continue
        steps, counts = series.step_counts()
        writers = max(writers, series.lanes().most)
        repeated.update(steps[counts > 1].tolist())
        files.append(f.name)
        writer = writer_of(f, series.encoding)
        went_back = _restarts(series)
        restarts = None if restarts is None or went_back is None else restarts + went_back
    if not repeated:
        return None
    lasts = [run.last_ref(tag, lane) for lane in range(writers)]
    found = FoundCollision(
        tag,
        SAME_STEP,
        writers,
        len(repeated),
        min(repeated),
        max(repeated),
        tuple(files),
        (),
        writer,
        tuple(restarts or ()),
    )
    return found, lasts


def _sized(found: FoundCollision, lasts: list[ValueRef | None], counted: Iterator[int]) -> FoundCollision:
    """A same-step collision with each lane's element count, that of its last value (`counted` yields the count of
    each of `lasts` that is not None, in turn)."""
    elements = [next(counted) if last is not None else 0 for last in lasts]
    # One variable written again has one size: lanes of several sizes are several variables, not a restart.
    restarts = found.restarts if len(set(elements)) == 1 else ()
    return dataclasses.replace(found, elements=tuple(elements), restarts=restarts)


def _restarts(series: Series) -> list[tuple[int, int]] | None:
    """Where the steps of one file's series go back (step reached, step gone back to), provided that between those
    points each step is written once: the tag repeats only because the run went back. None otherwise."""
    steps = np.asarray(series.steps, dtype=np.int64)
    back = np.flatnonzero(np.diff(steps) < 0)
    if not len(back):
        return None
    bounds = [0, *(back + 1).tolist(), len(steps)]
    if any(np.any(np.diff(steps[a:b]) <= 0) for a, b in zip(bounds, bounds[1:], strict=False)):
        return None
    return [(int(steps[i]), int(steps[i + 1])) for i in back.tolist()]


def writer_of(f: EventFile, encoding: str) -> Writer:
    """Which library wrote an event file, from its first event's writer mark and how it encodes histograms."""
    mark = f.origin.writer if f.origin is not None else ""
    if mark == TF_EVENTS_WRITER:
        return TENSORFLOW
    if mark == TB_PYTHON_WRITER:
        # TensorBoard's own Python writer: torch.utils.tensorboard uses it, and writes HistogramProto values.
        return TORCH if encoding == LEGACY else UNKNOWN
    if not mark and encoding == LEGACY:
        # tensorboardX leaves no mark (TensorFlow has done so only before its mark existed, with tensor values).
        return TENSORBOARDX
    return TENSORFLOW if not mark and encoding == TENSOR else UNKNOWN


def _cross_file(run: RunIndex, tag: str) -> FoundCollision | None:
    shared = run.shared_steps(tag)
    if not shared:
        return None
    files = tuple(sorted({name for names in shared.values() for name in names}))
    writers = max(len(names) for names in shared.values())
    return FoundCollision(tag, CROSS_FILE, writers, len(shared), min(shared), max(shared), files, ())


def _explain_cross_file(found: FoundCollision) -> tuple[str, str]:
    return (
        f"{len(found.files)} event files of this run hold `{found.tag}` at the same steps "
        f"({found.first_step}..{found.last_step}): the run was resumed into the same directory, or two writers were "
        "open at once. TensorBoard shows one value per step, so one file's values hide the other's.",
        "Resume into a new run directory, or resume logging at the step after the last checkpoint "
        "(Keras: `initial_epoch`); make sure one process writes each run; delete the stale event file.",
    )


def explain_same_step(tag: str, writer: Writer, writers: int) -> tuple[str, str]:
    """Why `writers` values of `tag` land at one step, and how to log them apart, from the writer and the tag."""
    hidden = (
        f"{writers} values of `{tag}` are written at each step into one event file. TensorBoard's default loader keeps "
        "one value per tag and step, so it shows only the last writer; with --load_fast=false all are drawn "
        "unlabelled at one step."
    )
    if is_activation(tag):
        return _explain_activations(tag, writer, hidden)
    if writer == TENSORFLOW:
        return _explain_tensorflow(tag, hidden)
    what = "parameters' gradients" if is_gradient(tag) else "parameters"
    if writer == TORCH:
        return (
            f"{hidden} The file was written by `torch.utils.tensorboard`'s `SummaryWriter`, and the tag is built from "
            f"a leaf name (`weight`, `bias`): every module that has such a parameter logs its {what} under it.",
            _TORCH_FIX,
        )
    if writer == TENSORBOARDX:
        return (
            f"{hidden} The file was written by tensorboardX (no writer mark, `HistogramProto` values): its "
            f"`add_histogram` was called with one name for several arrays, as a PyTorch loop logging {what} by "
            "their leaf name (`weight`, `bias`) does.",
            _TORCH_FIX,
        )
    return (
        f"{hidden} Several variables are logged under one name, as `tf.summary.histogram(v.name, v)` does with "
        "Keras 3 variables, whose names are bare (`kernel`), or a PyTorch loop logging parameters by leaf name.",
        "Log each variable under a unique, full name: `v.path` in Keras 3, the parameter's full name in PyTorch, "
        "or give layers and weights unique names.",
    )


_TORCH_FIX = (
    "Log each parameter under its full name from `model.named_parameters()` (`0.fc.weight`, and "
    "`grad/0.fc.weight` for its gradient), or log it under its module's name from `model.named_modules()`."
)


def _explain_tensorflow(tag: str, hidden: str) -> tuple[str, str]:
    if _TF_KERAS_CALLBACK.search(tag):
        return (
            f"{hidden} This is tf-keras naming: a weight created in a layer's `__init__` gets its bare name "
            "(`my_variable1:0`, without the layer's scope), so the same weight of several layers shares one name, "
            "and the TensorBoard callback logs histograms by `weight.name`.",
            "Create weights in `build()`, where `add_weight` puts them under the layer's scope "
            "(`my_layer_1/my_variable1:0`), or give each layer's weight a unique name.",
        )
    if tag.endswith("/histogram") and "/" not in tag[: -len("/histogram")]:
        return (
            f"{hidden} This is the Keras 3 TensorBoard callback before 3.14: it logs `weight.name`, and Keras 3 "
            "names are bare (`kernel`, `bias`), so every layer writes the same tag.",
            "Upgrade Keras to 3.14 or later, whose callback logs `weight.path` (`sequential/dense_1/kernel`), "
            "or log histograms yourself by `weight.path`.",
        )
    if tag.endswith("/histogram"):
        return (
            f"{hidden} This is the Keras 3 TensorBoard callback logging `weight.path`: several layers share one name "
            "(a layer class with a default `name=`, used more than once in a subclassed model), so their weights "
            "share one path.",
            "Give each layer a unique name (do not hard-code a default `name` in a layer's `__init__`), or let "
            "Keras make one from the class name; a `keras.Sequential` or functional model refuses duplicates.",
        )
    if "/" in tag or _TF_VARIABLE_NAME.search(tag):
        return (
            f"{hidden} A `tf.summary` loop logs variables by name, and several variables have the same one: "
            "`tf.Module`s (and sonnet 2 modules) sharing a name do not get unique names in eager mode, so every "
            "module's variable is named alike (`two_tower/linear/w:0`), as are Keras 3 layers given one name "
            "(`v.path`).",
            'Give each module a unique `name=` (`Linear(..., name=f"linear_{i}")`), or log each variable under its '
            'place in the model (`f"trunk/{i}/w"`), the path `tf.train.Checkpoint` saves it under.',
        )
    return (
        f"{hidden} A `tf.summary` loop logs several variables under one name, as `tf.summary.histogram(v.name, v)` "
        "does with Keras 3 variables, whose names are bare (`kernel`).",
        "Log each variable under a unique, full name: `v.path` in Keras 3, or give layers and weights unique names.",
    )


def _explain_activations(tag: str, writer: Writer, hidden: str) -> tuple[str, str]:
    explanation = (
        f"{hidden} The tag names activations (a module's output, logged by a forward hook under the module's "
        "class or a fixed prefix), so every module of that kind writes it. Activations have no variable behind "
        "them: no checkpoint can name these lanes; lane k is the k-th module to run at each step."
    )
    if writer in (TORCH, TENSORBOARDX):
        return explanation, (
            "Register the hook with each module's name from `model.named_modules()` and log under it "
            "(`act/0.fc`), not under `type(module).__name__`."
        )
    return explanation, "Log each layer's output under the layer's own name or path."


def _explain_restart(found: FoundCollision) -> tuple[str, str]:
    (reached, back), *more = found.restarts
    again = f" (and {len(more)} more time{'s' if len(more) > 1 else ''})" if more else ""
    return (
        f"The run went back from step {reached} to step {back}{again} and wrote `{found.tag}` again at steps it had "
        f"already written ({found.first_step}..{found.last_step}), into the same event file: a reload of an "
        "earlier snapshot that kept logging with the same writer. Both lanes are the same variable: lane 0 holds "
        "the values from before the restart, lane 1 those after it. TensorBoard keeps one value per tag and step, "
        "so it hides one of them.",
        "After reloading a snapshot, log into a new run directory, or open the writer with "
        f"`SummaryWriter(log_dir, purge_step={back})` (PyTorch, tensorboardX) so TensorBoard drops the values "
        "written after the snapshot; a `tf.summary` loop should start a new run directory.",
    )
