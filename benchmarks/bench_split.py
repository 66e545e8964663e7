"""Times `tb-varscope split` of the benchmark logdir against `scan()` of the same logdir.

Run: `python benchmarks/bench_split.py [--size-mb 150] [--reps 5]`. The logdir is the one bench_scan.py uses, built
once under benchmarks/data/. Every timed run is a fresh process (imports excluded from the time), split and scan
alternate so a busy machine slows them alike, the page cache is warm, and each split writes a new OUTDIR beside the
logdir (removed after the repetition), so both read and write the same disk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def child_scan(logdir: str) -> dict:
    from tb_varscope_plugin import scan

    start = time.perf_counter()
    report = scan(logdir)
    return {"seconds": time.perf_counter() - start, "collisions": report["summary"]["collisions"]}


def child_split(logdir: str, outdir: str) -> dict:
    from tb_varscope_plugin.rewrite.split import split_logdir

    start = time.perf_counter()
    result = split_logdir(logdir, outdir)
    seconds = time.perf_counter() - start
    moved = sum(len(m.steps) for run in result.runs for m in run.moves)
    return {"seconds": seconds, "bytes": result.bytes_written, "moved": moved}


def run_child(*args: str) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, str(HERE), "--child", *args], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=150, help="size of the histogram logdir (default 150)")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions of each (default 5)")
    args = parser.parse_args()

    import synthetic_logs  # only here: the timed child processes should not carry the writer's imports
    from bench_scan import event_files, spread, warm

    logdir, manifest = synthetic_logs.build_scan_logdir(args.size_mb)
    files = event_files(str(logdir))
    size_mb = sum(os.path.getsize(p) for p in files) / 1e6
    warm(files)
    load_before = os.getloadavg()[0]
    times: dict[str, list[dict]] = {"scan": [], "split": []}
    for rep in range(args.reps):
        times["scan"].append(run_child("scan", str(logdir)))
        parent = tempfile.mkdtemp(prefix="split-", dir=logdir.parent)
        try:
            times["split"].append(run_child("split", str(logdir), os.path.join(parent, "out")))
        finally:
            shutil.rmtree(parent)
        print(f"repetition {rep + 1}/{args.reps} done", file=sys.stderr)
    load_after = os.getloadavg()[0]
    scan_s = statistics.median(t["seconds"] for t in times["scan"])
    split_s = statistics.median(t["seconds"] for t in times["split"])
    last = times["split"][-1]
    print(
        f"logdir {logdir}: {size_mb:.1f} MB in {len(files)} event files, {manifest['histogram_values']:,} histogram "
        f"values; split moves {last['moved']:,} of them and writes {last['bytes'] / 1e6:.1f} MB\n"
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load_before:.1f} before, {load_after:.1f} after\n"
        f"{args.reps} repetitions, fresh process each, warm page cache; seconds: median   min-max\n"
        f"  scan()   {spread([t['seconds'] for t in times['scan']])}\n"
        f"  split    {spread([t['seconds'] for t in times['split']])}\n"
        f"split takes {split_s / scan_s:.2f}x the time of scan"
    )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        result = child_scan(*rest) if kind == "scan" else child_split(*rest)
        print(json.dumps(result))
    else:
        sys.path.insert(0, str(HERE.parent))
        main()
