"""The report: one plain dict (schema `tb-varscope/1`) built from a logdir index; CLI and HTTP routes present it."""

from __future__ import annotations

import re
from collections.abc import Callable

from tb_varscope_plugin.collisions import find_collisions
from tb_varscope_plugin.run_index import LogdirIndex, RunIndex

SCHEMA = "tb-varscope/1"


class Reporter:
    """Builds the report of an index, redoing a run's part only when that run has read new values."""

    def __init__(self, index: LogdirIndex) -> None:
        self.index = index
        self._runs: dict[str, tuple[int, dict]] = {}  # run name -> (generation it was built at, its report)

    def report(self) -> dict:
        """The whole document for what the index has read so far."""
        runs = [self._run_report(run) for _, run in sorted(self.index.runs.items())]
        return {
            "schema": SCHEMA,
            "logdir": self.index.logdir,
            "summary": {
                "runs": len(runs),
                "histogram_tags": sum(r["histogram_tags"] for r in runs),
                "collisions": sum(len(r["collisions"]) for r in runs),
            },
            "runs": runs,
        }

    def _run_report(self, run: RunIndex) -> dict:
        cached = self._runs.get(run.name)
        if cached is not None and cached[0] == run.generation:
            report = cached[1]
        else:
            report = build_run_report(run)
            self._runs[run.name] = (run.generation, report)
        # Damage and torn tails can change without new values arriving, so warnings are always fresh.
        return {**report, "warnings": run.warnings()}


def build_run_report(run: RunIndex) -> dict:
    """One run's part of the report."""
    return {
        "run": run.name,
        "event_files": len(run.files),
        "histogram_tags": len(run.histogram_tags()),
        "checkpoint": None,
        "warnings": run.warnings(),
        "collisions": find_collisions(run),
        "groups": [],
    }


def scan(
    logdir: str,
    checkpoints: list[str] | None = None,
    *,
    run_filter: re.Pattern | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Reads every run under `logdir` and returns the report document (see the contract).

    `run_filter` keeps only runs whose name it matches; `progress` is told each run's name before it is read.
    """
    index = LogdirIndex(logdir, run_filter)
    index.reload(progress)
    return Reporter(index).report()
