"""`tb-varscope scan LOGDIR`: the report for people, or as JSON for machines, with a linter's exit status."""

from __future__ import annotations

import argparse
import functools
import json
import posixpath
import re
import sys
import textwrap
from typing import NoReturn

from tb_varscope_plugin import filesystem
from tb_varscope_plugin.filesystem import error_reason
from tb_varscope_plugin.reading.logdir import run_names
from tb_varscope_plugin.report import scan, scan_json
from tb_varscope_plugin.schema import CROSS_FILE, SAME_STEP, Collision, Report, ReportWarning, RunReport

FORMATS = ("text", "json", "github")
CLEAN, COLLISIONS, USAGE = 0, 1, 2
INTERRUPTED = 130  # what a shell reports for a command stopped by Ctrl-C
WIDTH = 100  # of the text report: prose is wrapped to it, table columns give way to it
NAME_MIN = 12  # narrowest a name column of the table gets
MAX_WARNINGS = 20  # a logdir of damaged files could print thousands; --verbose shows them all


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: error: {message} (see --help)\n")


class _Version(argparse.Action):
    """`--version`, the installed distribution's version looked up only when asked for (importing
    `importlib.metadata` costs every run 15 ms otherwise)."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:  # noqa: A002
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> NoReturn:
        from importlib import metadata

        sys.stdout.write(f"{parser.prog} {metadata.version('tb-varscope')}\n")  # where argparse's own writes it
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tb-varscope",
        description="Find histogram tags that collide across layers in TensorBoard logs, and the variables "
        "behind them.",
    )
    parser.add_argument("--version", action=_Version, help="show the version and exit")
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
    output = scan_parser.add_mutually_exclusive_group()
    output.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text: the report for people (default); json: the document, schema tb-varscope/1; "
        "github: GitHub Actions annotations, one ::error per collision and one ::warning per damaged file",
    )
    output.add_argument("--json", dest="format", action="store_const", const="json", help="the same as --format json")
    scan_parser.add_argument(
        "-v", "--verbose", action="store_true", help="text: each lane's evidence, and every warning"
    )
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
        message = f"internal error ({type(error).__name__}: {reason}); please report it with the command line"
        return _fail(message, github=getattr(args, "format", None) == "github")


def _scan(args: argparse.Namespace) -> int:
    fail = functools.partial(_fail, github=args.format == "github")
    try:
        run_filter = re.compile(args.run) if args.run is not None else None
    except re.error as error:
        return fail(f"--run is not a valid regular expression: {error}")
    problem = _logdir_problem(args.logdir) or _missing_checkpoint(args.checkpoint or [])
    if problem:
        return fail(problem)
    progress = _Progress() if sys.stderr.isatty() and args.format == "text" else None
    if args.format == "json" and not sys.stdout.isatty():
        # For a machine: each run's part arrives serialised from the process that read it, and is written on one
        # line as it came, the document never held as objects.
        pieces, head = scan_json(args.logdir, args.checkpoint, run_filter=run_filter)
        if not head["summary"]["runs"]:
            return fail(_no_run(args.logdir, args.run, head))
        sys.stdout.writelines([*pieces, "\n"])
        return COLLISIONS if head["summary"]["collisions"] else CLEAN
    try:
        report = scan(args.logdir, args.checkpoint, run_filter=run_filter, progress=progress)
    finally:
        if progress is not None:
            progress.done()
    if not report["runs"]:
        return fail(_no_run(args.logdir, args.run, report))
    if args.format == "json":
        text = json.dumps(report, indent=2) + "\n"  # for a person at a terminal
    elif args.format == "github":
        text = format_github(report)
    else:
        text = format_report(report, args.verbose)
    sys.stdout.write(text)
    return COLLISIONS if report["summary"]["collisions"] else CLEAN


def _split(args: argparse.Namespace) -> int:
    # Here, not at the top: only `split` writes event files, and the writer's imports cost every scan 10 ms.
    from tb_varscope_plugin.rewrite.split import SplitError, format_split, split_logdir

    try:
        run_filter = re.compile(args.run) if args.run is not None else None
    except re.error as error:
        return _fail(f"--run is not a valid regular expression: {error}")
    problem = _logdir_problem(args.logdir) or _missing_checkpoint(args.checkpoint or [])
    if problem:
        return _fail(problem)
    progress = _Progress() if sys.stderr.isatty() else None
    try:
        result = split_logdir(
            args.logdir, args.outdir, args.checkpoint, run_filter=run_filter, dry_run=args.dry_run, progress=progress
        )
    except SplitError as error:
        return _fail(str(error))
    except filesystem.READ_ERRORS as error:
        return _fail(f"cannot write {args.outdir!r}: {error_reason(error)}")
    finally:
        if progress is not None:
            progress.done()
    sys.stdout.write(format_split(result))
    return CLEAN


def _logdir_problem(logdir: str) -> str | None:
    if not filesystem.isdir(logdir):
        return f"LOGDIR {logdir!r} is not a readable directory"
    try:
        filesystem.listdir(logdir)
    except filesystem.READ_ERRORS as error:
        return f"LOGDIR {logdir!r} cannot be listed: {error_reason(error)}"
    return None


def _missing_checkpoint(paths: list[str]) -> str | None:
    # A TF checkpoint is named by its prefix, which is no file itself: its `.index` file is.
    for path in paths:
        if not (filesystem.exists(path) or filesystem.exists(path + ".index")):
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


def _fail(message: str, github: bool = False) -> int:
    """Says why there is no answer, in one line on stderr (and, for GitHub, as an annotation); returns status 2."""
    sys.stderr.write(f"tb-varscope: error: {_printable(message)}\n")
    if github:
        sys.stdout.write(_workflow_command("error", None, "tb-varscope gave no answer", message) + "\n")
    return USAGE


class _Progress:
    """One self-overwriting line on a terminal's stderr, so a long scan shows where it is."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self, run: str) -> None:
        self.runs += 1
        sys.stderr.write(f"\r\033[Kreading run {self.runs}: {_printable(run)[:70]}")
        sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def format_report(report: Report, verbose: bool = False) -> str:
    """The report as a person reads it: a table of the runs with something to say, the clean runs in one line,
    one block per cause (its explanation and fix once, then the tags and lanes it covers), the warnings, and a
    closing line that counts collisions and warnings. `verbose` adds each lane's evidence and every warning."""
    logdir = report["logdir"]
    flagged = [run for run in report["runs"] if run["collisions"] or run["warnings"]]
    clean = [run["run"] for run in report["runs"] if not (run["collisions"] or run["warnings"])]
    lines = _table(logdir, flagged) if flagged else []
    if clean:
        lines.append(_clean_line([_printable(name) for name in clean], everything=not flagged))
    causes = _causes(report)
    for number, cause in enumerate(causes, 1):
        lines.extend(["", *_cause_block(number, len(causes), cause, verbose)])
    warnings = _warnings(report)
    if warnings:
        lines.extend(
            ["", f"{_plural(len(warnings), 'warning')} (what could not be read is left out, the rest is read):"]
        )
        shown = warnings if verbose else warnings[:MAX_WARNINGS]
        for where, w in shown:
            lines.extend(_wrapped(f"{where}: {_relative(logdir, w['file'])}{_offset(w)}: {w['message']}", "  "))
        if len(shown) < len(warnings):
            lines.append(f"  ... and {len(warnings) - len(shown)} more (--verbose lists them all)")
    lines.extend(["", _summary_line(report, len(causes))])
    # Run, tag and file names come from the logdir: control characters in them must not drive the terminal.
    return "\n".join(_printable(line) for line in lines) + "\n"


def _printable(text: str) -> str:
    # Control characters and bidirectional overrides (U+202E) are not printable: they are shown as escapes.
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _table(logdir: str, runs: list[RunReport]) -> list[str]:
    """One row per run with a collision or a warning: what a reader scans first."""
    header = ("run", "collisions", "worst tag", "writers", "warnings", "checkpoint")
    rows = []
    for run in runs:
        worst = max(run["collisions"], key=lambda c: (c["writers"], c["steps"]), default=None)
        checkpoint = run["checkpoint"]
        rows.append(
            (
                _printable(run["run"]),
                str(len(run["collisions"])),
                "-" if worst is None else _printable(worst["tag"]),
                "-" if worst is None else str(worst["writers"]),
                str(len(run["warnings"])),
                "none" if checkpoint is None else _printable(_from_run(logdir, run["run"], checkpoint["path"])),
            )
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    # Names give way until a row fits: the checkpoint path first, then the wider of run name and tag.
    excess = sum(widths) + 2 * (len(header) - 1) - WIDTH
    shrink = min(excess, widths[5] - NAME_MIN)
    if shrink > 0:
        widths[5] -= shrink
        excess -= shrink
    while excess > 0 and max(widths[0], widths[2]) > NAME_MIN:
        widths[0 if widths[0] >= widths[2] else 2] -= 1
        excess -= 1
    numeric, last = {1, 3, 4}, len(header) - 1
    return [
        "  ".join(
            cell.rjust(width) if i in numeric else _fit(cell, width, i == last).ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [header, *rows]
    ]


def _fit(cell: str, width: int, last: bool) -> str:
    # The end of a run name, tag or path tells it from its neighbours (`seed-2/train`, `dense_2/kernel`). The
    # last column (the checkpoint) may run over rather than lose part of its file name.
    if len(cell) <= width:
        return cell
    name = cell.rsplit("/", 1)[-1]
    if last and len(name) + 4 > width:
        return cell if len(cell) <= len(name) + 4 else ".../" + name
    return "..." + cell[len(cell) - width + 3 :]


def _clean_line(names: list[str], everything: bool) -> str:
    head = f"{'all ' if everything and len(names) > 1 else ''}{_plural(len(names), 'run')} clean"
    line = f"{head}: {', '.join(names)}"
    if len(line) <= WIDTH:
        return line
    shown: list[str] = []
    for name in names:
        more = f", ... ({len(names) - len(shown) - 1} more)"
        if len(f"{head}: {', '.join([*shown, name])}{more}") > WIDTH:
            break
        shown.append(name)
    return f"{head}: {', '.join(shown)}, ... ({len(names) - len(shown)} more)"


class _Cause:
    """Collisions explained alike: the same kind, and explanation and fix that differ only in tag and counts."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.collisions: list[tuple[str, Collision]] = []  # (run, collision)


def _causes(report: Report) -> list[_Cause]:
    causes: dict[tuple[str, str, str], _Cause] = {}
    for run in report["runs"]:
        for collision in run["collisions"]:
            key = (
                collision["kind"],
                _shape_of(collision["explanation"], collision),
                _shape_of(collision["fix"], collision),
            )
            causes.setdefault(key, _Cause(collision["kind"])).collisions.append((run["run"], collision))
    # Most collisions first: the cause to fix first.
    return sorted(causes.values(), key=lambda cause: -len(cause.collisions))


def _shape_of(text: str, collision: Collision) -> str:
    # What is left of a text once its collision's own tag (its first mention; later ones are examples such as
    # "(`kernel`, `bias`)") and its counts are taken out.
    return re.sub(r"\d+", "#", text.replace(f"`{collision['tag']}`", "`\0`", 1))


def _cause_block(number: int, count: int, cause: _Cause, verbose: bool) -> list[str]:
    collisions = [collision for _, collision in cause.collisions]
    runs = {run for run, _ in cause.collisions}
    lines = [
        f"cause {number} of {count} [{cause.kind}]: {_plural(len(collisions), 'tag')} in {_plural(len(runs), 'run')}"
    ]
    first = collisions[0]
    alike = all(c["explanation"] == first["explanation"] for c in collisions)
    lines.extend(
        _wrapped(
            ("why: " if alike else f"why (for `{first['tag']}`, the others alike): ") + first["explanation"],
            "  ",
        )
    )
    lines.extend(_wrapped("fix: " + first["fix"], "  "))
    for run, collision in cause.collisions:
        lines.extend(_collision_lines(run, collision, verbose))
    return lines


def _collision_lines(run: str, collision: Collision, verbose: bool) -> list[str]:
    lines = [f"  {run}: {collision['tag']}  {_how_often(collision)}", *_lane_lines(collision, verbose)]
    if collision["kind"] == CROSS_FILE:
        lines.extend(_wrapped("files: " + ", ".join(collision["files"]), "    "))
    return lines


def _how_often(collision: Collision) -> str:
    steps, first, last = collision["steps"], collision["first_step"], collision["last_step"]
    if steps == 1:
        span = f"at step {first}"
    elif steps == last - first + 1:
        span = f"at steps {first}..{last}"
    else:
        span = f"at {steps} steps from {first} to {last}"
    if collision["kind"] == SAME_STEP:
        return f"{collision['writers']} writers per step {span}"
    return f"{collision['writers']} event files hold it {span}"


def _lane_lines(collision: Collision, verbose: bool) -> list[str]:
    """One aligned line per lane (variable, shape, elements, confidence), and with `verbose` its evidence."""
    lanes = collision["lanes"]
    names = [_printable(lane["variable"] or "(not named)") for lane in lanes]
    shapes = ["" if lane["shape"] is None else str(lane["shape"]) for lane in lanes]
    name_width = max(map(len, names), default=0)
    shape_width = max(map(len, shapes), default=0)
    digits = len(str(len(lanes) - 1)) if lanes else 1
    lines = []
    for lane, name, shape in zip(lanes, names, shapes, strict=True):
        elements = _plural(lane["elements"], "element")
        if lane["variable"]:
            elements += f", confidence {lane['confidence']:.0%}"
        cells = [f"lane {lane['lane']:>{digits}}", name.ljust(name_width), shape.ljust(shape_width), elements]
        lines.append("    " + "  ".join(cell for cell in cells if cell))
        if verbose:
            lines.extend(_wrapped(lane["evidence"], "      "))
    return lines


def _warnings(report: Report) -> list[tuple[str, ReportWarning]]:
    """Every warning with where it belongs: a run's name, or `logdir` for directories that could not be listed."""
    found = [("logdir", warning) for warning in report["warnings"]]
    found.extend((f"run {run['run']}", warning) for run in report["runs"] for warning in run["warnings"])
    return found


def _offset(warning: ReportWarning) -> str:
    return f" at offset {warning['offset']}" if warning["offset"] else ""


def _from_run(logdir: str, run: str, path: str) -> str:
    # A checkpoint is mostly beside its run, so it is shown from the run's directory: `model.weights.h5`, `../ckpt`.
    relative = _relative(logdir, path)
    return relative if relative == path else posixpath.relpath(relative, run)


def _relative(logdir: str, path: str) -> str:
    # Paths under the logdir are shown from it, as run names are; others (a --checkpoint elsewhere) as given.
    prefix = logdir.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else path


def format_github(report: Report) -> str:
    """GitHub Actions workflow commands: an `::error` per collision on its event file, a `::warning` per file
    that could not be read in full, then the closing line, so a workflow run shows each in its annotations."""
    logdir, lines = report["logdir"], []
    for run in report["runs"]:
        for collision in run["collisions"]:
            directory = logdir if run["run"] == "." else posixpath.join(logdir, run["run"])
            title = f"histogram tag {collision['tag']} collides ({collision['kind']})"
            message = "\n".join(
                [
                    f"run {run['run']}: {collision['tag']} {_how_often(collision)}",
                    *(line.strip() for line in _lane_lines(collision, verbose=False)),
                    *(["files: " + ", ".join(collision["files"])] if collision["kind"] == CROSS_FILE else []),
                    "why: " + collision["explanation"],
                    "fix: " + collision["fix"],
                ]
            )
            path = posixpath.join(directory, collision["files"][0])
            lines.append(_workflow_command("error", path, title, message))
    by_file: dict[str, list[ReportWarning]] = {}
    for _, warning in _warnings(report):
        by_file.setdefault(warning["file"], []).append(warning)
    for path, warnings in by_file.items():
        message = "\n".join(f"{_offset(w).strip()}: {w['message']}".lstrip(": ") for w in warnings)
        lines.append(_workflow_command("warning", path, "tb-varscope could not read all of this", message))
    lines.append(_printable(_summary_line(report, len(_causes(report)))))
    return "\n".join(lines) + "\n"


def _workflow_command(command: str, path: str | None, title: str, message: str) -> str:
    # GitHub's escaping (actions/toolkit's escapeData and escapeProperty): `%`, CR and LF in the message, and also
    # `:` and `,` in a property, which they would end. Names are made printable first, so only our newlines remain.
    def data(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    def prop(text: str) -> str:
        return data(_printable(text)).replace(":", "%3A").replace(",", "%2C")

    printable = "\n".join(_printable(line) for line in message.split("\n"))
    where = "" if path is None else f"file={prop(path)},"
    return f"::{command} {where}title={prop(title)}::{data(printable)}"


def _summary_line(report: Report, causes: int) -> str:
    summary = report["summary"]
    runs, tags, collisions = summary["runs"], summary["histogram_tags"], summary["collisions"]
    read = f"{_plural(tags, 'histogram tag')} read"
    warned = _plural(summary["warnings"], "warning") if summary["warnings"] else "no warnings"
    if not collisions:
        return f"No colliding histogram tags: {_plural(runs, 'run')}, {read}, {warned}."
    colliding_runs = sum(1 for run in report["runs"] if run["collisions"])
    return (
        f"{_plural(collisions, 'collision')} ({_plural(causes, 'cause')}) in {colliding_runs} of "
        f"{_plural(runs, 'run')}, {read}, {warned}."
    )


def _wrapped(text: str, indent: str) -> list[str]:
    # Never at a hyphen: a command (`tb-varscope split`) or a flag cut in two cannot be copied from the terminal.
    lines = textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent + "  ", break_on_hyphens=False)
    return lines or [indent]


def _plural(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {plural or noun + 's'}"


if __name__ == "__main__":
    sys.exit(main())
