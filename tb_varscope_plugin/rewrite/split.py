"""`tb-varscope split LOGDIR OUTDIR`: a repaired copy of a logdir in which every colliding lane is a tag of its own.

The report names each lane's variable; the plan turns those names into tags; every event file is copied with only
the values that move re-serialised, and the checkpoints that name the runs' variables are copied beside them.
LOGDIR is only read.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from tensorboard.compat.tensorflow_stub.io import gfile

from tb_varscope_plugin.filesystem import READ_ERRORS, error_reason, is_local
from tb_varscope_plugin.report import Reporter, processes, read_logdir
from tb_varscope_plugin.rewrite.checkpoint_copy import checkpoint_files, copy_file
from tb_varscope_plugin.rewrite.copy_processes import copy_files
from tb_varscope_plugin.rewrite.plan import LANE, FilePlan, Move, RunPlan, plan_run
from tb_varscope_plugin.schema import ReportWarning


class SplitError(Exception):
    """A reason not to split at all (a usage error): nothing has been written."""


@dataclass
class RunSplit:
    """What the split does to one run."""

    run: str
    event_files: int
    moves: list[Move]
    checkpoint: str | None  # the checkpoint naming its variables, as found in LOGDIR (or named by --checkpoint)
    checkpoint_copied: bool  # False: it lies outside LOGDIR and stays where it is
    warnings: list[ReportWarning] = field(default_factory=list)


@dataclass
class SplitResult:
    logdir: str
    outdir: str
    dry_run: bool
    runs: list[RunSplit]
    bytes_written: int = 0


def split_logdir(
    logdir: str,
    outdir: str,
    checkpoints: list[str] | None = None,
    *,
    run_filter: re.Pattern | None = None,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
) -> SplitResult:
    """Writes OUTDIR (unless `dry_run`) and says what moved; raises SplitError before writing anything on a usage
    error. A file that cannot be read becomes a warning on its run, as in `scan`."""
    logdir = logdir.rstrip("/") or "/"
    outdir = outdir.rstrip("/") or "/"
    _check_paths(logdir, outdir, checkpoints or [])
    try:
        index = read_logdir(logdir, run_filter=run_filter, progress=progress)
    except READ_ERRORS as error:
        raise SplitError(f"cannot read {logdir!r}: {error_reason(error)}") from error
    if not index.runs:
        which = "matching --run" if run_filter is not None else "(no *tfevents* file below it)"
        raise SplitError(f"LOGDIR {logdir!r} holds no run {which}")
    reporter = Reporter(index, checkpoints)
    report = reporter.report()
    result = SplitResult(logdir, outdir, dry_run, [])
    plans: list[tuple[RunPlan, RunSplit]] = []
    for run_report in report["runs"]:
        run = index.runs[run_report["run"]]
        plan = plan_run(run, run_report)
        checkpoint = reporter.checkpoint_path(run)
        copied = checkpoint is not None and _relative(checkpoint, logdir) is not None
        entry = RunSplit(run.name, len(run.files), plan.moves, checkpoint, copied, list(run_report["warnings"]))
        result.runs.append(entry)
        plans.append((plan, entry))
    if dry_run:
        return result
    gfile.makedirs(outdir)
    jobs: list[tuple[FilePlan, str]] = []
    owners: list[RunSplit] = []
    for plan, entry in plans:
        # By run name, not by path: a run directory may be a symlink to somewhere outside LOGDIR.
        directory = _target("" if plan.run.name == "." else plan.run.name, outdir)
        gfile.makedirs(directory)
        jobs += [(file_plan, posixpath.join(directory, file_plan.file.name)) for file_plan in plan.files]
        owners += [entry] * len(plan.files)
    for (written, warning), entry in zip(copy_files(jobs, processes()), owners, strict=True):
        result.bytes_written += written
        if warning is not None:
            entry.warnings.append(warning)
    copied_checkpoints: set[str] = set()
    for _, entry in plans:
        if entry.checkpoint is not None and entry.checkpoint_copied and entry.checkpoint not in copied_checkpoints:
            copied_checkpoints.add(entry.checkpoint)
            result.bytes_written += _copy_checkpoint(entry, logdir, outdir)
    return result


def _check_paths(logdir: str, outdir: str, checkpoints: list[str]) -> None:
    if not gfile.isdir(logdir):
        raise SplitError(f"LOGDIR {logdir!r} is not a readable directory")
    if _relative(outdir, logdir) is not None:
        raise SplitError(f"OUTDIR {outdir!r} lies inside LOGDIR {logdir!r}; split never writes into LOGDIR")
    if gfile.exists(outdir):
        if not gfile.isdir(outdir):
            raise SplitError(f"OUTDIR {outdir!r} exists and is not a directory")
        if gfile.listdir(outdir):
            raise SplitError(f"OUTDIR {outdir!r} is not empty; name a new or empty directory")
    for path in checkpoints:
        if not (gfile.exists(path) or gfile.exists(path + ".index")):
            raise SplitError(f"--checkpoint {path!r} does not exist")


def _relative(path: str, root: str) -> str | None:
    """`path` relative to `root` (`""` for root itself), or None when it lies outside it, as written or once
    symlinks are resolved (an OUTDIR reached through a link into LOGDIR is still inside it)."""
    forms = [(path, root)]
    if is_local(path) and is_local(root):
        forms = [(os.path.abspath(path), os.path.abspath(root)), (os.path.realpath(path), os.path.realpath(root))]
    for p, r in forms:
        if p == r:
            return ""
        prefix = r.rstrip("/") + "/"
        if p.startswith(prefix):
            return p[len(prefix) :]
    return None


def _target(relative: str, outdir: str) -> str:
    return posixpath.join(outdir, relative) if relative else outdir


def _copy_checkpoint(entry: RunSplit, logdir: str, outdir: str) -> int:
    assert entry.checkpoint is not None
    written = 0
    try:
        files = checkpoint_files(entry.checkpoint)
    except READ_ERRORS as error:
        entry.warnings.append({"file": entry.checkpoint, "offset": 0, "message": f"checkpoint not copied: {error}"})
        return 0
    for path in files:
        relative = _relative(path, logdir)
        if relative is None:  # a file the checkpoint's directory links to from outside
            continue
        try:
            written += copy_file(path, _target(relative, outdir))
        except READ_ERRORS as error:
            message = f"checkpoint file not copied ({error_reason(error)})"
            entry.warnings.append({"file": path, "offset": 0, "message": message})
    return written


def format_split(result: SplitResult) -> str:
    """The mapping per run (old tag, lane, new tag, values moved) and one closing line, for people."""
    lines = []
    for run in result.runs:
        if not (run.moves or run.warnings):
            continue
        lines.append(f"run {run.run}:")
        lines.extend(_move_lines(run.moves))
        if run.checkpoint is not None and run.moves:
            verb = "would be copied" if result.dry_run else "copied"
            if not run.checkpoint_copied:
                verb = "left in place (outside LOGDIR): name it with --checkpoint when reading OUTDIR"
            lines.append(f"  checkpoint {run.checkpoint} {verb}")
        for warning in run.warnings:
            lines.append(f"  warning: {warning['file']} at offset {warning['offset']}: {warning['message']}")
        lines.append("")
    lines.append(_summary(result))
    return "\n".join(_printable(line) for line in lines) + "\n"


def _move_lines(moves: list[Move]) -> list[str]:
    lines = []
    lanes: dict[tuple[str, int | None, str], int] = {}
    for move in moves:
        if move.kind == LANE:
            key = (move.tag, move.lane, move.new_tag)
            lanes[key] = lanes.get(key, 0) + len(move.steps)
    for (tag, lane, new_tag), count in lanes.items():
        lines.append(f"  {tag}  lane {lane}  ->  {new_tag}  ({_plural(count, 'value')})")
    for move in moves:
        if move.kind != LANE:
            lines.append(
                f"  {move.tag}  {move.file} at {_steps(move.steps)}  ->  {move.new_tag}  "
                f"({_plural(len(move.steps), 'value')}; {move.kept_by} holds these steps)"
            )
    return lines


def _summary(result: SplitResult) -> str:
    lanes = {(r.run, m.tag, m.lane) for r in result.runs for m in r.moves if m.kind == LANE}
    tags = {(run, tag) for run, tag, _ in lanes}
    superseded = sum(len(m.steps) for r in result.runs for m in r.moves if m.kind != LANE)
    files = sum(r.event_files for r in result.runs)
    what = f"{_plural(len(result.runs), 'run')}, {_plural(files, 'event file')}"
    changes = f"{_plural(len(tags), 'colliding tag')} split into {_plural(len(lanes), 'tag')}"
    if superseded:
        changes += f", {_plural(superseded, 'value')} of older files moved to */superseded"
    if result.dry_run:
        return f"Dry run: would write {result.outdir} ({what}); {changes}. Nothing was written."
    return f"Wrote {result.outdir} ({what}, {result.bytes_written:,} bytes); {changes}."


def _steps(steps: tuple[int, ...]) -> str:
    """`steps 4..5, 9` for people: runs of consecutive steps as ranges."""
    spans: list[list[int]] = []
    for step in sorted(steps):
        if spans and step == spans[-1][1] + 1:
            spans[-1][1] = step
        else:
            spans.append([step, step])
    text = ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in spans)
    return ("step " if len(steps) == 1 else "steps ") + text


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _printable(text: str) -> str:
    # Run, tag and file names come from the logdir: control characters in them must not drive the terminal.
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
