"""Times `tb_varscope_plugin.scan()` against TensorBoard's Python EventFileLoader and RustBoard on one logdir.

Run: `python benchmarks/bench_scan.py [--size-mb 150] [--reps 5]`. The logdir is built once under benchmarks/data/.
Every timed run is a fresh process (imports excluded from the time), repetitions interleave the readers so a busy
machine slows them alike, and the page cache is warm: the files are read once before the first timing.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def event_files(logdir: str) -> list[str]:
    return sorted(str(p) for p in Path(logdir).rglob("*tfevents*"))


def child_scan(logdir: str) -> dict:
    from tb_varscope_plugin import scan

    rss_before = peak_rss_mb("self")
    cpu, start = time.process_time(), time.perf_counter()
    report = scan(logdir)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "cpu": time.process_time() - cpu,
        "max_rss_mb": peak_rss_mb("self"),
        "rss_after_imports_mb": rss_before,
        "collisions": report["summary"]["collisions"],
    }


def child_count(logdir: str) -> dict:
    """How many histogram values the index keeps, and how many remain at one per (run, tag, step)."""
    import numpy as np

    from tb_varscope_plugin.reading.logdir import LogdirIndex

    index = LogdirIndex(logdir)
    index.reload()
    kept = per_step = 0
    for run in index.runs.values():
        for tag in run.histogram_tags():
            series = [f.series[tag] for f in run.files if tag in f.series]
            kept += sum(len(s.steps) for s in series)
            per_step += len(np.unique(np.concatenate([s.steps.astype(np.int64) for s in series])))
    return {"kept": kept, "one_per_step": per_step}


def child_loader(logdir: str, mode: str) -> dict:
    if mode == "stub":
        sys.modules["tensorflow"] = None  # as on a machine without TensorFlow: TensorBoard falls back to its stub
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.compat import tf

    version = tf.__version__  # imports TensorFlow now, outside the timing
    files = event_files(logdir)
    cpu, start = time.process_time(), time.perf_counter()
    events = 0
    for path in files:
        for _ in EventFileLoader(path).Load():
            events += 1
    return {
        "seconds": time.perf_counter() - start,
        "cpu": time.process_time() - cpu,
        "events": events,
        "tf": version,
    }


def run_child(*args: str) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, str(HERE), "--child", *args], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def rustboard(logdir: str, count: bool, checksum: bool = True, samples_all: bool = True) -> dict:
    """One load cycle of RustBoard (checksummed, keeping every step, unless told otherwise: TensorBoard itself runs
    it with neither), timed from launch to its `Finished load cycle` log line."""
    import tensorboard_data_server

    command = [
        tensorboard_data_server.server_binary(),
        *("--logdir", logdir, "--reload", "once", "--port", "0", "--verbose"),
        *(["--checksum"] if checksum else []),
        # Keep every step it can, so nothing is lost to sampling.
        *(["--samples-per-plugin", "histograms=all"] if samples_all else []),
    ]
    start = time.perf_counter()
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    address = own = None
    try:
        for line in server.stderr:
            found = re.search(r"listening on (\S+)", line)
            if found:
                address = found.group(1)
            found = re.search(r"Finished load cycle \(([\d.]+)(m?s)\)", line)
            if found:
                own = float(found.group(1)) / (1000 if found.group(2) == "ms" else 1)
                break
        seconds = time.perf_counter() - start
        rss = peak_rss_mb(str(server.pid))
        kept = _rustboard_values(address) if count else None
    finally:
        server.kill()
        server.wait()
    return {"seconds": seconds, "own": own, "max_rss_mb": rss, "kept": kept}


def peak_rss_mb(pid: str) -> float | None:
    """A process's max RSS from /proc: getrusage's ru_maxrss would carry the forking parent's peak across exec."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return None
    found = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
    return int(found.group(1)) / 1024 if found else None


def _rustboard_values(address: str) -> int:
    """Histogram values RustBoard serves, read back over its gRPC API."""
    import grpc
    from tensorboard import context
    from tensorboard.data import grpc_provider
    from tensorboard.data.proto import data_provider_pb2_grpc

    channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", -1)])
    provider = grpc_provider.GrpcDataProvider(address, data_provider_pb2_grpc.TensorBoardDataProviderStub(channel))
    found = provider.read_tensors(
        context.RequestContext(), experiment_id="", plugin_name="histograms", downsample=10**9
    )
    channel.close()
    return sum(len(points) for tags in found.values() for points in tags.values())


def compile_package() -> None:
    """Compiles tb_varscope_plugin's bytecode, as pip does when it installs the wheel. An editable install run under
    PYTHONDONTWRITEBYTECODE (as in this project's CI) would otherwise compile every module at every launch: 60 ms of
    each timed process that a user's installed copy does not pay."""
    spec = importlib.util.find_spec("tb_varscope_plugin")
    assert spec is not None and spec.submodule_search_locations
    compileall.compile_dir(spec.submodule_search_locations[0], quiet=1)


def warm(files: list[str]) -> None:
    for path in files:
        with open(path, "rb") as f:
            while f.read(16 << 20):
                pass


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f}   {min(values):5.2f}-{max(values):<5.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=150, help="size of the histogram logdir (default 150)")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions of each reader (default 5)")
    parser.add_argument(
        "--stub-reps",
        type=int,
        default=1,
        help="repetitions of the TF-less EventFileLoader, ~1 MB/s (default 1; 0 skips)",
    )
    args = parser.parse_args()

    import synthetic_logs  # only here: the timed child processes should not carry the writer's imports

    logdir, manifest = synthetic_logs.build_scan_logdir(args.size_mb)
    logdir = str(logdir)
    files = event_files(logdir)
    size_mb = sum(os.path.getsize(p) for p in files) / 1e6
    warm(files)
    load_before = os.getloadavg()[0]

    times: dict[str, list[dict]] = {"scan": [], "tf": [], "stub": [], "rustboard": []}
    for rep in range(args.reps):
        times["scan"].append(run_child("scan", logdir))
        times["tf"].append(run_child("loader", logdir, "tf"))
        times["rustboard"].append(rustboard(logdir, count=rep == 0))
        if rep < args.stub_reps:
            times["stub"].append(run_child("loader", logdir, "stub"))
        print(f"repetition {rep + 1}/{args.reps} done", file=sys.stderr)
    counts = run_child("count", logdir)
    load_after = os.getloadavg()[0]

    scan_s = statistics.median(t["seconds"] for t in times["scan"])
    tf_s = statistics.median(t["seconds"] for t in times["tf"])
    rb_s = statistics.median(t["seconds"] for t in times["rustboard"])
    tf_version = times["tf"][0]["tf"]
    print()
    print(
        f"logdir {logdir}: {size_mb:.1f} MB in {len(files)} event files, {manifest['histogram_values']:,} histogram "
        f"values ({manifest['steps']} steps)"
    )
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"page cache warm; load average {load_before:.1f} before, {load_after:.1f} after"
    )
    print(f"wall seconds over {args.reps} repetitions (imports excluded)\n")
    header = f"{'reader':58s} {'median':>7s}   {'min-max':11s} {'MB/s':>6s}  {'vs scan()':>9s}"
    print(header)
    print("-" * len(header))
    rows = [
        ("tb_varscope_plugin.scan() (full report)", "scan"),
        (f"EventFileLoader, TensorFlow {tf_version} record reader", "tf"),
        ("EventFileLoader without TensorFlow (stub reader)", "stub"),
        ("RustBoard --checksum, launch to 'Finished load cycle'", "rustboard"),
    ]
    for label, key in rows:
        seconds = [t["seconds"] for t in times[key]]
        if not seconds:
            continue
        median = statistics.median(seconds)
        print(f"{label:58s} {spread(seconds)} {size_mb / median:6.0f}  {median / scan_s:8.2f}x")
    own = [t["own"] for t in times["rustboard"] if t["own"] is not None]
    if own:
        median = statistics.median(own)
        label = "RustBoard load cycle as it logs it"
        print(f"{label:58s} {spread(own)} {size_mb / median:6.0f}  {median / scan_s:8.2f}x")

    rss = max(t["max_rss_mb"] for t in times["scan"])
    base = max(t["rss_after_imports_mb"] for t in times["scan"])
    rb_rss = max((t["max_rss_mb"] for t in times["rustboard"] if t["max_rss_mb"]), default=None)
    rb_kept = times["rustboard"][0]["kept"]
    print()
    print(
        f"values kept: scan {counts['kept']:,}; RustBoard {rb_kept:,} (one per run, tag and step: "
        f"{counts['one_per_step']:,}); same-step values only scan keeps: {counts['kept'] - rb_kept:,}"
    )
    rb_memory = f"; RustBoard {rb_rss:.0f} MB" if rb_rss else ""
    print(f"peak memory: scan() process max RSS {rss:.0f} MB ({base:.0f} MB of it after imports){rb_memory}")
    print()
    targets = [
        ("scan() >= 5x faster than EventFileLoader (with TF)", tf_s / scan_s >= 5, f"{tf_s / scan_s:.1f}x"),
        ("scan() <= 2x RustBoard's checksummed load", scan_s <= 2 * rb_s, f"{scan_s / rb_s:.2f}x"),
        (
            "scan() keeps every value RustBoard drops",
            counts["kept"] == manifest["histogram_values"],
            f"{counts['kept']:,} of {manifest['histogram_values']:,}",
        ),
        ("scan() max RSS < 300 MB", rss < 300, f"{rss:.0f} MB"),
    ]
    for label, ok, figure in targets:
        print(f"{'PASS' if ok else 'MISS'}  {label}: {figure}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        result = {"scan": child_scan, "count": child_count, "loader": child_loader}[kind](*rest)
        print(json.dumps(result))
    else:
        main()
