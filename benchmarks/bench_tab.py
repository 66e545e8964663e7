"""Starts a real TensorBoard (default loader: RustBoard) on a large logdir and measures the VarScope tab's side:
time until `/report` is complete, `/report` latency, and the TensorBoard process's CPU while idle.

Run: `python benchmarks/bench_tab.py SHAPE [--idle 60] [--requests 30] [--reps 1]`, SHAPE `runs1000` or `tags10k` (see
bench_shapes.py; logdirs are built once under benchmarks/data/). The reference for the first load is RustBoard's
own first load cycle of the same logdir, launched the way TensorBoard launches it (no `--checksum`, default
sampling), measured right before in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from bench_scan import rustboard
from bench_shapes import SHAPES, ready

SERVING = re.compile(r"TensorBoard \S+ at (http://\S+) ")
ROUTE = "data/plugin/varscope/report"
TICKS = os.sysconf("SC_CLK_TCK")
# Finer than the tab's own poll (1 s while reading), so the figure is when the reader finished, not when a poll
# happened to ask; 304s make each poll cheap.
POLL_SECONDS = 0.05


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        if error.code == 304:
            return 304, b"", dict(error.headers)
        raise


def start_tensorboard(logdir: str) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--port", "0"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    found: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            match = SERVING.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(timeout=300) or not found:
        process.kill()
        raise SystemExit("TensorBoard did not start")
    return process, found[0]


def measure(logdir: str, idle_seconds: float, requests: int) -> dict:
    """One repetition: RustBoard's first load cycle, then a fresh TensorBoard on `logdir` with the tab opened."""
    board = rustboard(logdir, count=False, checksum=False, samples_all=False)
    process, base = start_tensorboard(logdir)
    try:
        time.sleep(5)  # TensorBoard's own start-up, RustBoard spawned
        before = cpu_seconds(process.pid)
        time.sleep(idle_seconds)
        baseline = (cpu_seconds(process.pid) - before) / idle_seconds

        # The tab opens: its first /report starts VarScope's reader, and it polls until the report is complete.
        opened = time.perf_counter()
        etag = None
        while True:
            status, body, headers = get(base + ROUTE, {"If-None-Match": etag or ""})
            if status == 200:
                report, etag = json.loads(body), headers.get("ETag")
                if report.get("complete"):
                    break
            time.sleep(POLL_SECONDS)
        complete = time.perf_counter() - opened

        full, revalidated = [], []
        etag = None
        for _ in range(requests):
            start = time.perf_counter()
            status, body, headers = get(base + ROUTE, {"Accept-Encoding": "gzip"})
            full.append(time.perf_counter() - start)
            etag = headers.get("ETag")
        for _ in range(requests):
            start = time.perf_counter()
            status, _, _ = get(base + ROUTE, {"Accept-Encoding": "gzip", "If-None-Match": etag or ""})
            revalidated.append(time.perf_counter() - start)
            assert status == 304, status

        time.sleep(6)  # one reload interval: the first idle pass
        before = cpu_seconds(process.pid)
        servers = {pid: cpu_seconds(pid) for pid in children(process.pid)}
        time.sleep(idle_seconds)
        idle = (cpu_seconds(process.pid) - before) / idle_seconds
        server_idle = sum(cpu_seconds(pid) - cpu for pid, cpu in servers.items()) / idle_seconds
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {
        "rustboard": board["seconds"],
        "complete": complete,
        "full": statistics.median(full),
        "revalidated": statistics.median(revalidated),
        "gzipped": len(body),
        "baseline": baseline,
        "idle": idle,
        "server_idle": server_idle,
        "summary": report["summary"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shape", choices=["runs1000", "tags10k"])
    parser.add_argument("--idle", type=float, default=60.0, help="idle seconds over which CPU is measured")
    parser.add_argument("--requests", type=int, default=30, help="/report requests timed (default 30)")
    parser.add_argument("--reps", type=int, default=1, help="repetitions, each a fresh RustBoard and TensorBoard")
    args = parser.parse_args()
    logdir, manifest, files = ready(args.shape)
    size_mb = sum(os.path.getsize(p) for p in files) / 1e6
    runs = []
    for rep in range(args.reps):
        runs.append(measure(logdir, args.idle, args.requests))
        if args.reps > 1:
            print(
                f"repetition {rep + 1}/{args.reps}: tab complete {runs[-1]['complete']:.2f} s, "
                f"RustBoard {runs[-1]['rustboard']:.2f} s",
                flush=True,
            )

    def median(key: str) -> float:
        return statistics.median(run[key] for run in runs)

    ratio = statistics.median(run["complete"] / run["rustboard"] for run in runs)
    summary = runs[-1]["summary"]
    each = f", medians of {args.reps} repetitions" if args.reps > 1 else ""
    print(
        f"shape {args.shape}: {SHAPES[args.shape]}; {size_mb:.0f} MB, {len(files)} event files, "
        f"{manifest['histogram_values']:,} histogram values; {summary['runs']} runs, "
        f"{summary['collisions']} collisions"
    )
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; page cache warm, bytecode compiled{each}\n")
    print(f"RustBoard's first load cycle (as TensorBoard runs it)  {median('rustboard'):8.2f} s")
    print(f"tab opened -> /report complete                          {median('complete'):8.2f} s")
    if args.reps > 1:
        print(f"the two, median of per-repetition ratios               {ratio:8.2f}x")
    print(
        f"/report, full body ({median('gzipped') / 1e3:.0f} kB gzipped), median of {args.requests}"
        f"   {1e3 * median('full'):8.1f} ms"
    )
    print(f"/report, If-None-Match -> 304, median of {args.requests}         {1e3 * median('revalidated'):8.1f} ms")
    print(f"TensorBoard process CPU, idle {args.idle:.0f} s, tab never opened   {100 * median('baseline'):8.2f} %")
    print(f"TensorBoard process CPU, idle {args.idle:.0f} s, after the tab read  {100 * median('idle'):8.2f} %")
    print(f"(RustBoard data server beside it, same {args.idle:.0f} s             {100 * median('server_idle'):8.2f} %)")
    targets = [
        (
            "/report complete no later than RustBoard's first load",
            ratio <= 1,
            f"{median('complete'):.1f} vs {median('rustboard'):.1f} s ({ratio:.2f}x)",
        ),
        ("/report median under 50 ms", median("full") < 0.05, f"{1e3 * median('full'):.1f} ms"),
        ("idle TensorBoard under 1% of a core", median("idle") < 0.01, f"{100 * median('idle'):.2f} %"),
    ]
    print()
    for label, ok, figure in targets:
        print(f"{'PASS' if ok else 'MISS'}  {label}: {figure}")


if __name__ == "__main__":
    main()
