"""CPU of one idle reload of the tab's reader: the logdir read, nothing written since, the walk and the report's
check run again as the tab's reader thread runs them every `--reload_interval`.

Run: `python benchmarks/bench_idle.py SHAPE [--reloads 100] [--reps 3]`, SHAPE `runs1000` or `tags10k` (see
bench_shapes.py; logdirs are built once under benchmarks/data/). Prints process CPU (user + system) per reload,
the median of `--reps` rounds of `--reloads` reloads each. bench_tab.py measures what this costs a real TensorBoard
over 60 idle seconds, beside RustBoard's own data server.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from bench_shapes import SHAPES, ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shape", choices=["runs1000", "tags10k"])
    parser.add_argument("--reloads", type=int, default=100, help="idle reloads per round (default 100)")
    parser.add_argument("--reps", type=int, default=3, help="rounds (default 3)")
    args = parser.parse_args()
    logdir, _, _ = ready(args.shape)

    from tb_varscope_plugin.reading.logdir import LogdirIndex
    from tb_varscope_plugin.report import Reporter

    index = LogdirIndex(logdir, contain_errors=True)  # as the tab's reader makes it
    reporter = Reporter(index)
    index.reload()
    first = reporter.report()
    rounds = []
    for _ in range(args.reps):
        start = time.process_time()
        for _ in range(args.reloads):
            index.reload()
            assert reporter.report() is first  # idle: the very report published before
        rounds.append((time.process_time() - start) / args.reloads)
    print(f"shape {args.shape}: {SHAPES[args.shape]}; {len(index.runs)} runs")
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; page cache warm")
    print(
        f"CPU per idle reload, median of {args.reps} rounds of {args.reloads}: "
        f"{1e3 * statistics.median(rounds):.1f} ms ({', '.join(f'{1e3 * r:.1f}' for r in rounds)})"
    )


if __name__ == "__main__":
    main()
