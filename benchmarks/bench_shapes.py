"""Times the whole `tb-varscope scan --json` process against RustBoard's checksummed load cycle, per logdir shape.

Run: `python benchmarks/bench_shapes.py SHAPE [--reps 5]`, SHAPE one of `tags10k` (1 run x 10,000 tags x 50 steps),
`runs1000` (1,000 runs x 20 tags x 10 steps), `size150` (150 MB, five runs), `size1500` (1.5 GB, five runs).
Logdirs are built once under benchmarks/data/. Each repetition runs both readers as fresh processes, one after the
other, so a busy machine slows them alike; the page cache is warm. Peak memory is the max RSS of the scan process
and of its forked readers (the largest of them, from `/usr/bin/time`), and RustBoard's VmHWM with
`--samples-per-plugin histograms=all`.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_scan import compile_package, event_files, rustboard, warm

SHAPES = {
    "tags10k": "1 run x 10,000 tags x 50 steps",
    "runs1000": "1,000 runs x 20 tags x 10 steps",
    "size150": "150 MB in five runs (Keras 2/3, PyTorch, tf.summary, a resumed run)",
    "size1500": "1.5 GB in five runs (as size150)",
}


def build(shape: str) -> tuple[str, dict]:
    import synthetic_logs  # only here: the timed processes should not carry the writer's imports

    if shape == "tags10k":
        logdir, manifest = synthetic_logs.build_report_logdir(runs=1, tags=10_000, steps=50)
    elif shape == "runs1000":
        logdir, manifest = synthetic_logs.build_report_logdir(runs=1_000, tags=20, steps=10)
    else:
        logdir, manifest = synthetic_logs.build_scan_logdir(150 if shape == "size150" else 1500)
    return str(logdir), manifest


def ready(shape: str) -> tuple[str, dict, list[str]]:
    """The shape's logdir built (once), its event files in the page cache and the package's bytecode compiled, as
    every benchmark of a shape starts: `(logdir, manifest, event files)`."""
    logdir, manifest = build(shape)
    files = event_files(logdir)
    warm(files)
    compile_package()
    return logdir, manifest, files


def scan_command(logdir: str) -> list[str]:
    script = Path(sys.executable).with_name("tb-varscope")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "tb_varscope_plugin.cli"]
    return [*command, "scan", logdir, "--json"]


def time_scan(logdir: str) -> dict:
    """The whole CLI process, launch to exit, and its peak RSS (GNU time's %M: the largest of the process and its
    forked readers)."""
    timer = shutil.which("time") or "/usr/bin/time"
    start = time.perf_counter()
    result = subprocess.run(
        [timer, "-f", "%M", *scan_command(logdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    seconds = time.perf_counter() - start
    if result.returncode not in (0, 1):
        raise SystemExit(f"tb-varscope scan failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return {"seconds": seconds, "max_rss_mb": int(result.stderr.strip().splitlines()[-1]) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions of each reader (default 5)")
    args = parser.parse_args()

    started = time.perf_counter()
    logdir, manifest, files = ready(args.shape)
    built = time.perf_counter() - started
    size_mb = sum(os.path.getsize(p) for p in files) / 1e6
    load_before = os.getloadavg()[0]
    scans, boards = [], []
    for rep in range(args.reps):
        scans.append(time_scan(logdir))
        boards.append(rustboard(logdir, count=False))
        print(
            f"repetition {rep + 1}/{args.reps}: scan {scans[-1]['seconds']:.2f} s, "
            f"RustBoard {boards[-1]['seconds']:.2f} s",
            file=sys.stderr,
        )
    load_after = os.getloadavg()[0]

    scan_s = statistics.median(t["seconds"] for t in scans)
    board_s = statistics.median(t["seconds"] for t in boards)
    ratio = statistics.median(s["seconds"] / b["seconds"] for s, b in zip(scans, boards, strict=True))
    scan_rss = max(t["max_rss_mb"] for t in scans)
    board_rss = max(t["max_rss_mb"] for t in boards if t["max_rss_mb"])
    print()
    print(
        f"shape {args.shape}: {SHAPES[args.shape]}; {size_mb:.0f} MB in {len(files)} event files, "
        f"{manifest['histogram_values']:,} histogram values (logdir ready in {built:.0f} s)"
    )
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; page cache warm, "
        f"bytecode compiled; load average {load_before:.1f} before, {load_after:.1f} after"
    )
    print(f"medians of {args.reps} interleaved repetitions, launch to exit\n")
    print(f"{'':34s} {'seconds':>8s} {'min-max':>13s} {'peak RSS MB':>12s}")
    for label, runs in (("tb-varscope scan --json", scans), ("RustBoard --checksum, one cycle", boards)):
        seconds = [t["seconds"] for t in runs]
        rss = max(t["max_rss_mb"] or 0 for t in runs)
        print(f"{label:34s} {statistics.median(seconds):8.2f} {min(seconds):6.2f}-{max(seconds):<6.2f} {rss:12.0f}")
    print()
    print(f"scan / RustBoard time, median of per-repetition ratios: {ratio:.2f}")
    print(f"scan / RustBoard peak RSS: {scan_rss / board_rss:.2f}")
    targets = [
        ("scan no slower than RustBoard", ratio <= 1.0, f"{ratio:.2f}x"),
        ("scan peak RSS <= 1/4 of RustBoard's", scan_rss <= board_rss / 4, f"{scan_rss:.0f} vs {board_rss:.0f} MB"),
    ]
    for label, ok, figure in targets:
        print(f"{'PASS' if ok else 'MISS'}  {label}: {figure}")
    print(f"median seconds: scan {scan_s:.2f}, RustBoard {board_s:.2f}")


if __name__ == "__main__":
    main()
