"""Times the report once the logdir is read: 3 runs x 600 histogram tags x 150 steps, one tag in ten colliding.

Run: `python benchmarks/bench_report.py [--reps 5]`. Times `Reporter.report()` built fresh and served from its cache,
and the plugin's `/report` and `/histograms` routes through werkzeug's test client. Page cache warm.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time


def timed(fn, reps: int) -> list[float]:
    seconds = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def measure(logdir: str, reps: int) -> list[tuple[str, list[float], str]]:
    from tb_varscope_plugin.reading.logdir import LogdirIndex
    from tb_varscope_plugin.report import Reporter

    rows = []
    indexes = []

    def read() -> None:
        index = LogdirIndex(logdir)
        index.reload()
        indexes.append(index)

    rows.append(("LogdirIndex.reload(): first read of the logdir", timed(read, reps), ""))
    index = indexes[-1]
    documents = []
    rows.append(("Reporter.report(), first build", timed(lambda: documents.append(Reporter(index).report()), reps), ""))
    reporter = Reporter(index)
    reporter.report()
    rows.append(("Reporter.report(), cached (nothing new read)", timed(reporter.report, reps * 20), ""))
    size = len(json.dumps(documents[-1]))
    rows.append(("  report document", [], f"{size / 1e3:.0f} kB of JSON"))
    rows.extend(measure_routes(logdir, documents[-1], reps))
    return rows


def measure_routes(logdir: str, document: dict, reps: int) -> list[tuple[str, list[float], str]]:
    try:
        from tb_varscope_plugin.server.plugin import VarScopeLoader
    except ImportError:
        return [("plugin routes", [], "tb_varscope_plugin.server.plugin not available")]
    from tensorboard.backend import application
    from tensorboard.plugins import base_plugin
    from werkzeug.test import Client

    flags = argparse.Namespace(reload_interval=0, varscope_checkpoint=None)
    plugin = VarScopeLoader().load(base_plugin.TBContext(logdir=logdir, flags=flags))
    plugin.reload_impl()  # read the logdir now, so the routes are timed on a read index
    http = Client(application.TensorBoardWSGI([plugin]))
    routes = "/data/plugin/varscope"
    first = http.get(f"{routes}/report")
    assert first.status_code == 200, first.status_code
    plugin.live.wait()  # the first request starts the background reader; let its (empty) pass finish
    collision = next(c for r in document["runs"] for c in r["collisions"] if c["kind"] == "same-step")
    run = next(r["run"] for r in document["runs"] if collision in r["collisions"])
    query = {"run": run, "tag": collision["tag"], "lane": "1"}

    def lane() -> None:
        response = http.get(f"{routes}/histograms", query_string=query)
        assert response.status_code == 200 and len(response.get_json()) == 150

    return [
        ("GET /data/plugin/varscope/report", timed(lambda: http.get(f"{routes}/report"), reps * 4), ""),
        ("GET /data/plugin/varscope/histograms (one lane, 150 steps)", timed(lane, reps * 4), ""),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions of the slow steps (default 5)")
    args = parser.parse_args()

    import synthetic_logs

    logdir, manifest = synthetic_logs.build_report_logdir()
    files = sorted(logdir.rglob("*tfevents*"))
    for path in files:  # warm the page cache
        path.read_bytes()
    rows = measure(str(logdir), args.reps)

    print(
        f"\nlogdir {logdir}: {manifest['runs']} runs x {manifest['tags']} histogram tags x {manifest['steps']} steps, "
        f"{manifest['histogram_values']:,} values, {manifest['bytes'] / 1e6:.0f} MB in {len(files)} files"
    )
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; page cache warm; "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    header = f"{'step':60s} {'median ms':>10s}  {'min-max ms':>15s}  {'n':>3s}"
    print(header)
    print("-" * len(header))
    for label, seconds, note in rows:
        if not seconds:
            print(f"{label:60s} {note}")
            continue
        ms = [s * 1000 for s in seconds]
        spread = f"{min(ms):.1f}-{max(ms):.1f}"
        print(f"{label:60s} {statistics.median(ms):10.1f}  {spread:>15s}  {len(ms):3d}")


if __name__ == "__main__":
    main()
