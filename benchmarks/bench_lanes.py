"""Times `scan()` as the values of one tag at one step grow: n writes of a tag at one step are n lanes, and the cost
must grow with n, not n x n. Two layouts: each value its own event (as Keras and PyTorch log), and all n in one event.
Then the lanes named from a checkpoint (`--checkpoint`): n same-shape layers logging `weight` as a PyTorch loop
logging leaf names does, beside a safetensors file of those n tensors. Every lane is compared with every candidate
of its size, so that part grows as n x n.

Run: `python benchmarks/bench_lanes.py [--reps 3] [--checkpoint]`. Each size is timed in the same process (median of
the reps, imports and writing the files not timed); tests/test_linear_lanes.py counts the work instead of timing it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.histogram.summary_v2 import histogram_pb
from tensorboard.summary.writer.record_writer import RecordWriter

from tb_varscope_plugin import scan


def write(path: Path, events: list[event_pb2.Event]) -> None:
    path.parent.mkdir(parents=True)
    with open(path, "wb") as f:
        writer = RecordWriter(f)
        for event in [event_pb2.Event(file_version="brain.Event:2"), *events]:
            writer.write(event.SerializeToString())


def timed(logdir: str, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        report = scan(logdir)
        times.append(time.perf_counter() - start)
    assert report["summary"]["collisions"] == 1
    return statistics.median(times)


def named_from_a_checkpoint(reps: int) -> None:
    from safetensors.numpy import save_file

    print("| same-shape layers logging `weight`, named from a safetensors checkpoint | scan (s) |")
    print("|---|---|")
    rng = np.random.default_rng(0)
    for n in (100, 200, 400, 800):
        weights = {f"layers.{i}.weight": (rng.normal(size=(32, 32)) * 0.1 + i * 0.01) for i in range(n)}
        events = [
            event_pb2.Event(step=step, summary=histogram_pb("weight", w.ravel()))
            for step in range(3)
            for w in weights.values()
        ]
        with tempfile.TemporaryDirectory() as logdir:
            write(Path(logdir) / "run" / "events.out.tfevents.1.bench", events)
            save_file(
                {k: w.astype(np.float32) for k, w in weights.items()}, str(Path(logdir) / "run" / "model.safetensors")
            )
            print(f"| {n:,} | {timed(logdir, reps):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--checkpoint", action="store_true", help="time lanes named from a checkpoint instead")
    args = parser.parse_args()
    if args.checkpoint:
        named_from_a_checkpoint(args.reps)
        return
    value = histogram_pb("kernel", np.arange(30.0)).value[0]
    layouts = {
        "one event per value": lambda n: [event_pb2.Event(step=0, summary=summary_pb2.Summary(value=[value]))] * n,
        "all values in one event": lambda n: [event_pb2.Event(step=0, summary=summary_pb2.Summary(value=[value] * n))],
    }
    print("| values of one tag at one step | " + " | ".join(f"{name} (s)" for name in layouts) + " |")
    print("|---|" + "---|" * len(layouts))
    for n in (1000, 2000, 4000, 10000):
        cells = []
        for make in layouts.values():
            with tempfile.TemporaryDirectory() as logdir:
                write(Path(logdir) / "run" / "events.out.tfevents.1.bench", make(n))
                cells.append(f"{timed(logdir, args.reps):.2f}")
        print(f"| {n:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
