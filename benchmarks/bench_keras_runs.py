"""Times a scan of many small Keras runs, each beside its own `.weights.h5`, against the same runs without them.

Run: `python benchmarks/bench_keras_runs.py [--runs 300] [--reps 5] [--tab]`. Each run logs the two kernels of the
tests' Keras 3 fixture under one tag, as Keras 3 logs `v.name`, and holds a copy of the fixture's 20 KB
`model.weights.h5`: what a sweep of Keras trainings leaves. The second logdir is the same without the checkpoints,
so the difference is what reading HDF5 files costs (every one through the worker process of
`checkpoints/isolated.py`). Both are built once under benchmarks/data/; each repetition runs both scans as fresh
processes, one after the other. `--tab` also starts a real TensorBoard on the logdir with checkpoints, `--reps`
times, and times the tab's first pass until `/report` is complete (as bench_tab.py does).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
from pathlib import Path

from bench_scan import compile_package, event_files, warm
from bench_shapes import time_scan

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the tests' fixture and the run that collides on it

from damaged_checkpoints import REAL, colliding_run  # noqa: E402

FIXTURE = REAL / "model.weights.h5"


def build(runs: int) -> tuple[Path, Path]:
    """`(logdir with checkpoints, logdir without)`, `runs` runs each."""
    root = HERE / "data" / f"keras-runs-{runs}"
    with_h5, without = root / "with-h5", root / "without"
    if not (root / "done").exists():
        shutil.rmtree(root, ignore_errors=True)
        for i in range(runs):
            run = colliding_run(with_h5 / f"r{i:04d}", "model.weights.h5")
            shutil.copy(FIXTURE, run / "model.weights.h5")
        shutil.copytree(with_h5, without, ignore=shutil.ignore_patterns("*.h5"))
        (root / "done").touch()
    return with_h5, without


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="runs, each beside its own .weights.h5 (default 300)")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions of each scan (default 5)")
    parser.add_argument("--tab", action="store_true", help="also time the tab's first pass in a real TensorBoard")
    args = parser.parse_args()
    with_h5, without = build(args.runs)
    warm(event_files(str(with_h5)) + event_files(str(without)) + [str(p) for p in with_h5.rglob("*.h5")])
    compile_package()
    timings: dict[str, list[float]] = {"with": [], "without": []}
    for rep in range(args.reps):
        timings["with"].append(time_scan(str(with_h5))["seconds"])
        timings["without"].append(time_scan(str(without))["seconds"])
        print(
            f"repetition {rep + 1}/{args.reps}: {timings['with'][-1]:.2f} s with, {timings['without'][-1]:.2f} s "
            "without",
            file=sys.stderr,
        )
    print(
        f"\n{args.runs} runs, each with one colliding tag of two Keras 3 kernels; {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; medians of {args.reps}, launch to exit\n"
    )
    for label, seconds in (("beside a .weights.h5 each", timings["with"]), ("no checkpoints", timings["without"])):
        print(f"{label:28s} {statistics.median(seconds):6.2f} s  ({min(seconds):.2f}-{max(seconds):.2f})")
    extra = statistics.median(timings["with"]) - statistics.median(timings["without"])
    print(f"\nthe checkpoints' cost: {extra / args.runs * 1000:.1f} ms a run (read, listed, two kernels loaded)")
    if args.tab:
        from bench_tab import measure

        complete = [measure(str(with_h5), 1.0, 5)["complete"] for _ in range(args.reps)]
        spread = f"{min(complete):.2f}-{max(complete):.2f}"
        print(f"tab opened -> /report complete: {statistics.median(complete):.2f} s ({spread})")


if __name__ == "__main__":
    main()
