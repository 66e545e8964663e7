"""`tb-varscope scan LOGDIR`: the report for people, or as JSON for machines, with a linter's exit status."""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from importlib import metadata
from typing import NoReturn

from tensorboard.compat.tensorflow_stub.io import gfile

from tb_varscope_plugin.filesystem import READ_ERRORS, error_reason
from tb_varscope_plugin.reading.logdir import run_names
from tb_varscope_plugin.report import scan
from tb_varscope_plugin.rewrite.split import SplitError, format_split, split_logdir
from tb_varscope_plugin.schema import CROSS_FILE, SAME_STEP, Collision, Report, RunReport

CLEAN, COLLISIONS, USAGE = 0, 1, 2
INTERRUPTED = 130  # what a shell reports for a command stopped by Ctrl-C
WIDTH = 100


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tb-varscope",
        description="Find histogram tags that collide across layers in TensorBoard logs, and the variables "
        "behind them.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {metadata.version('tb-varscope')}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    scan_parser = commands.add_parser(
        "scan",
        help="scan a logdir for colliding histogram tags",
        description="Reads every event file under LOGDIR. "
        "Exit status: 0 no collision, 1 collisions found, 2 usage error, LOGDIR unreadable or holding no event "
        "file, --run matching no run, a --checkpoint that does not exist, or an internal error.",
    )
    scan_parser.add_argument("logdir", metavar="LOGDIR", help="the directory TensorBoard would be given as --logdir")
    scan_parser.add_argument(
        "--checkpoint",
        action="append",
        metavar="PATH",
        help="checkpoint naming the variables (TF prefix or directory, .weights.h5, .keras, .safetensors); "
        "repeat for several; default: found beside each run",
    )
    scan_parser.add_argument("--run", metavar="REGEX", help="only runs whose name matches this regular expression")
    scan_parser.add_argument("--json", action="store_true", help="print the report as JSON (schema tb-varscope/1)")
    split_parser = commands.add_parser(
        "split",
        help="write a copy of a logdir in which every colliding lane is a tag of its own",
        description="Copies LOGDIR to OUTDIR (new or empty; LOGDIR is only read), giving each lane of a same-step "
        "collision a tag named after its variable, and moving the older file's values of a cross-file collision "
        "to <tag>/superseded. Exit status: 0 written (or, with --dry-run, would be), 2 usage error.",
    )
    split_parser.add_argument("logdir", metavar="LOGDIR", help="the directory TensorBoard would be given as --logdir")
    split_parser.add_argument("outdir", metavar="OUTDIR", help="where the repaired copy goes: new or empty")
    split_parser.add_argument(
        "--checkpoint", action="append", metavar="PATH", help="as for scan: the checkpoint naming the variables"
    )
    split_parser.add_argument("--run", metavar="REGEX", help="only runs whose name matches this regular expression")
    split_parser.add_argument("--dry-run", action="store_true", help="print the mapping, write nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _split(args) if args.command == "split" else _scan(args)
    except KeyboardInterrupt:
        sys.stderr.write("tb-varscope: interrupted\n")
        return INTERRUPTED
    except Exception as error:  # noqa: BLE001 - a CI gate must never read a crash as "collisions found"
        reason = " ".join(str(error).split()) or "no message"
        return _fail(f"internal error ({type(error).__name__}: {reason}); please report it with the command line")


def _scan(args: argparse.Namespace) -> int:
    try:
        run_filter = re.compile(args.run) if args.run is not None else None
    except re.error as error:
        return _fail(f"--run is not a valid regular expression: {error}")
    problem = _logdir_problem(args.logdir) or _missing_checkpoint(args.checkpoint or [])
    if problem:
        return _fail(problem)
    progress = _Progress() if sys.stderr.isatty() and not args.json else None
    try:
        report = scan(args.logdir, args.checkpoint, run_filter=run_filter, progress=progress)
    finally:
        if progress is not None:
            progress.done()
    if not report["runs"]:
        return _fail(_no_run(args.logdir, args.run, report))
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_report(report))
    return COLLISIONS if report["summary"]["collisions"] else CLEAN


def _split(args: argparse.Namespace) -> int:
    try:
        run_filter = re.compile(args.run) if args.run is not None else None
    except re.error as error:
        return _fail(f"--run is not a valid regular expression: {error}")
    problem = _logdir_problem(args.logdir) or _missing_checkpoint(args.checkpoint or [])
    if problem:
        return _fail(problem)
    try:
        result = split_logdir(args.logdir, args.outdir, args.checkpoint, run_filter=run_filter, dry_run=args.dry_run)
    except SplitError as error:
        return _fail(str(error))
    except READ_ERRORS as error:
        return _fail(f"cannot write {args.outdir!r}: {error_reason(error)}")
    sys.stdout.write(format_split(result))
    return CLEAN


def _logdir_problem(logdir: str) -> str | None:
    if not gfile.isdir(logdir):
        return f"LOGDIR {logdir!r} is not a readable directory"
    try:
        gfile.listdir(logdir)
    except READ_ERRORS as error:
        return f"LOGDIR {logdir!r} cannot be listed: {error_reason(error)}"
    return None


def _missing_checkpoint(paths: list[str]) -> str | None:
    # A TF checkpoint is named by its prefix, which is no file itself: its `.index` file is.
    for path in paths:
        if not (gfile.exists(path) or gfile.exists(path + ".index")):
            return f"--checkpoint {path!r} does not exist (no such file or directory, and no {path}.index)"
    return None


def _no_run(logdir: str, pattern: str | None, report: Report) -> str:
    """Why a scan found nothing to report: a typo in a CI path must not pass the gate."""
    if pattern is not None:
        names = run_names(logdir)
        if names:
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            found = _plural(len(names), "run")
            return f"--run {pattern!r} matches none of the runs under {logdir!r} ({found}: {shown})"
    message = f"LOGDIR {logdir!r} holds no event file (no file named *tfevents* in it or below it)"
    warnings = report["warnings"]  # directories that could not be listed, so their runs may be missing
    if warnings:
        first = warnings[0]
        message += f"; {_plural(len(warnings), 'warning')}, the first: {first['file']}: {first['message']}"
    return message


def _fail(message: str) -> int:
    sys.stderr.write(f"tb-varscope: error: {_printable(message)}\n")
    return USAGE


class _Progress:
    """One self-overwriting line on a terminal's stderr, so a long scan shows where it is."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self, run: str) -> None:
        self.runs += 1
        sys.stderr.write(f"\r\033[Kreading run {self.runs}: {run[:70]}")
        sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def format_report(report: Report) -> str:
    """The report as a person reads it: a block per run with a collision or a warning, then one summary line."""
    lines = []
    for run in report["runs"]:
        if run["collisions"] or run["warnings"]:
            lines.extend(_run_block(run))
            lines.append("")
    for warning in report.get("warnings", []):
        lines.append(f"warning: {warning['file']}: {warning['message']}")
    lines.append(_summary_line(report))
    # Run, tag and file names come from the logdir: control characters in them must not drive the terminal.
    return "\n".join(_printable(line) for line in lines) + "\n"


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _run_block(run: RunReport) -> list[str]:
    files = _plural(run["event_files"], "event file")
    tags = _plural(run["histogram_tags"], "histogram tag")
    checkpoint = run["checkpoint"]
    if checkpoint is None:
        named_by = "no checkpoint found"
    else:
        named_by = f"checkpoint {checkpoint['path']} ({checkpoint['format']}, {checkpoint['variables']} variables)"
    lines = [f"run {run['run']}: {files}, {tags}; {named_by}"]
    for collision in run["collisions"]:
        lines.extend(_collision_block(collision))
    for warning in run["warnings"]:
        lines.append(f"  warning: {warning['file']} at offset {warning['offset']}: {warning['message']}")
    return lines


def _collision_block(collision: Collision) -> list[str]:
    steps = collision["steps"]
    first, last = collision["first_step"], collision["last_step"]
    span = f"step {first}" if steps == 1 else f"steps {first}..{last}"
    if collision["kind"] == SAME_STEP:
        who = f"{collision['writers']} writers per step"
    else:
        who = f"{collision['writers']} event files at one step"
    lines = [f"  COLLISION {collision['tag']}  [{collision['kind']}] {who}, {_plural(steps, 'step')} affected ({span})"]
    for lane in collision["lanes"]:
        variable = lane["variable"] or "(unknown variable)"
        shape = "" if lane["shape"] is None else " shape " + "x".join(str(d) for d in lane["shape"])
        lines.append(
            f"    lane {lane['lane']}: {variable}{shape}, {_plural(lane['elements'], 'element')},"
            f" confidence {lane['confidence']:.0%}"
        )
        lines.extend(_wrapped(lane["evidence"], "      "))
    if collision["kind"] == CROSS_FILE:
        lines.append("    files: " + ", ".join(collision["files"]))
    lines.extend(_wrapped("why: " + collision["explanation"], "    "))
    lines.extend(_wrapped("fix: " + collision["fix"], "    "))
    return lines


def _summary_line(report: Report) -> str:
    summary = report["summary"]
    runs, tags, collisions = summary["runs"], summary["histogram_tags"], summary["collisions"]
    read = f"{_plural(runs, 'run')}, {_plural(tags, 'histogram tag')} read"
    if not collisions:
        return f"No colliding histogram tags ({read})."
    colliding_runs = sum(1 for run in report["runs"] if run["collisions"])
    return f"{_plural(collisions, 'collision')} in {colliding_runs} of {read}."


def _wrapped(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent + "  ") or [indent]


def _plural(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {plural or noun + 's'}"


if __name__ == "__main__":
    sys.exit(main())
