"""The report document, schema `tb-varscope/1`, as types: the one home in code of `shared/CONTRACT.md`'s schema.

Every stage that builds part of the document returns these; the CLI, `--json` and the HTTP routes read them.
"""

from __future__ import annotations

from typing import Literal, TypedDict

SCHEMA = "tb-varscope/1"

SAME_STEP: Literal["same-step"] = "same-step"
CROSS_FILE: Literal["cross-file"] = "cross-file"
CollisionKind = Literal["same-step", "cross-file"]
# A same-step collision's `cause` when the tag repeats only because the run's steps went back (a reload of an
# earlier snapshot written into the same file). Absent for every other collision, so `kind` keeps its two values.
RESTART: Literal["restart"] = "restart"
CollisionCause = Literal["restart"]

CheckpointFormat = Literal["tf-checkpoint", "saved-model", "keras-weights-h5", "keras-v3", "safetensors", "pytorch"]


class ReportWarning(TypedDict):
    """Something that could not be read, where: a file and a byte offset (0 when the whole file is meant)."""

    file: str
    offset: int
    message: str


class CheckpointInfo(TypedDict):
    path: str
    format: CheckpointFormat
    variables: int


class Lane(TypedDict):
    """Same-step: lane k is the k-th value written for the tag within a step; cross-file: the k-th of `files`."""

    lane: int
    variable: str | None
    checkpoint_key: str | None
    shape: list[int] | None
    elements: int
    confidence: float
    evidence: str


class _CollisionFields(TypedDict):
    tag: str
    kind: CollisionKind
    writers: int
    steps: int
    first_step: int
    last_step: int
    files: list[str]
    lanes: list[Lane]
    explanation: str
    fix: str


class Collision(_CollisionFields, total=False):
    cause: CollisionCause  # same-step only, and only when it is a restart: lanes 0 and 1 are one variable


class GroupVariable(TypedDict):
    name: str
    path: str
    checkpoint_key: str | None
    shape: list[int] | None
    tag: str | None
    lane: int | None


class Group(TypedDict):
    """A layer scope, with the histogram tags of its variables."""

    path: str
    tags: list[str]
    variables: list[GroupVariable]


class RunReport(TypedDict):
    run: str
    event_files: int
    histogram_tags: int
    checkpoint: CheckpointInfo | None
    warnings: list[ReportWarning]
    collisions: list[Collision]
    groups: list[Group]


class Summary(TypedDict):
    runs: int
    histogram_tags: int
    collisions: int
    warnings: int  # all of them: the logdir's and every run's


class _ReportFields(TypedDict):
    schema: str
    logdir: str
    warnings: list[ReportWarning]  # logdir-level: directories that cannot be listed
    summary: Summary
    runs: list[RunReport]


class Report(_ReportFields, total=False):
    complete: bool  # /report only: false until the first pass over the logdir has ended
