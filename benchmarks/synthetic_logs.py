"""Builds the benchmark logdirs with TensorBoard's own writer: histogram events shaped as Keras, tf.summary and PyTorch
write them, same-step collisions included, cached under benchmarks/data/ and reused while their recipe is unchanged.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import google_crc32c
import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
from tensorboard.plugins.histogram.summary_v2 import histogram_pb
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from tensorboard.summary.writer import record_writer
from tensorboard.summary.writer.event_file_writer import EventFileWriter

DATA = Path(__file__).resolve().parent / "data"
RECIPE = 2  # bump when the layout below changes, so cached logdirs are rebuilt
VARIANTS = 8  # distinct histograms per (tag, writer); steps cycle through them
START = 1_700_000_000.0


def _masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def use_fast_crc() -> None:
    """TensorBoard's RecordWriter computes CRC32C in pure Python (~1 MB/s): swap in the C one, whose CRCs are equal."""
    sample = bytes(range(256)) * 5
    assert _masked_crc32c(sample) == pywrap_tensorflow.masked_crc32c(sample)
    record_writer.masked_crc32c = _masked_crc32c


@dataclass
class Writer:
    """One logged histogram series: `writers` values under `tag` at every step, like several layers sharing a name."""

    tag: str
    legacy: bool = False
    writers: int = 1
    values: list[list[summary_pb2.Summary.Value]] = field(default_factory=list)


def _tensor_values(tag: str, rng: np.random.Generator, scale: float) -> list[summary_pb2.Summary.Value]:
    return [histogram_pb(tag, rng.normal(0, scale, 2000)).value[0] for _ in range(VARIANTS)]


def _legacy_values(tag: str, rng: np.random.Generator, scale: float) -> list[summary_pb2.Summary.Value]:
    # As torch.utils.tensorboard.add_histogram writes it: HistogramProto with min/max/num/sum/sum_squares and
    # right bucket limits, empty buckets dropped at the ends.
    out = []
    for _ in range(VARIANTS):
        data = rng.normal(0, scale, 2000)
        counts, edges = np.histogram(data, bins=30)
        histo = summary_pb2.HistogramProto(
            min=float(data.min()),
            max=float(data.max()),
            num=float(data.size),
            sum=float(data.sum()),
            sum_squares=float((data * data).sum()),
            bucket_limit=edges[1:].tolist(),
            bucket=counts.astype(float).tolist(),
        )
        out.append(summary_pb2.Summary.Value(tag=tag, histo=histo))
    return out


def _run_layouts() -> dict[str, list[Writer]]:
    """Per run, the histogram series written at each step."""
    keras2 = [Writer(f"dense_{i}/kernel_0/histogram") for i in range(10)]
    keras2 += [Writer(f"dense_{i}/bias_0/histogram") for i in range(10)]
    keras2 += [Writer("my_variable1_0/histogram", writers=4)]  # tf-keras: weight made in __init__ of 4 layers
    keras3 = [Writer("kernel/histogram", writers=8), Writer("bias/histogram", writers=8)]  # Keras 3 before 3.14
    keras3 += [Writer(f"embedding_{i}/embeddings/histogram") for i in range(4)]
    torch = [Writer(f"encoder.layer{i}.{p}", legacy=True) for i in range(8) for p in ("weight", "bias")]
    torch += [Writer("weight", legacy=True, writers=6), Writer("bias", legacy=True, writers=6)]  # leaf names
    scoped = [Writer(f"model/block_{i}/conv/{p}") for i in range(12) for p in ("kernel", "bias")]  # tf.summary
    return {
        "keras2/train": keras2,
        "keras3/train": keras3,
        "torch": torch,
        "tf_summary": scoped,
        "resumed": list(scoped[:12]),
    }


def _fill(layout: dict[str, list[Writer]], rng: np.random.Generator) -> None:
    for writers in layout.values():
        for w in writers:
            make = _legacy_values if w.legacy else _tensor_values
            w.values = [make(w.tag, rng, 0.05 * (lane + 1)) for lane in range(w.writers)]


def _write_run(path: Path, writers: list[Writer], steps: range, suffix: str = "") -> int:
    """Writes one event file; returns how many histogram values it holds."""
    writer = EventFileWriter(str(path), max_queue_size=1000, flush_secs=600, filename_suffix=suffix)
    seen: set[str] = set()
    count = 0
    tensor_run = not all(w.legacy for w in writers)
    for step in steps:
        wall = START + step * 10.0
        for w in writers:
            for lane in range(w.writers):
                value = summary_pb2.Summary.Value()
                value.CopyFrom(w.values[lane][step % VARIANTS])
                # TF2 writers attach summary metadata only to the first value of a tag in each file.
                if w.tag in seen:
                    value.ClearField("metadata")
                seen.add(w.tag)
                event = event_pb2.Event(wall_time=wall, step=step, summary=summary_pb2.Summary(value=[value]))
                writer.add_event(event)
                wall += 0.001
                count += 1
        if tensor_run:  # an epoch-loss scalar, as Keras writes beside the histograms
            loss = scalar_pb("epoch_loss", 1.0 / (step + 1))
            writer.add_event(event_pb2.Event(wall_time=wall, step=step, summary=loss))
    writer.close()
    return count


def _bytes_per_step(writers: list[Writer]) -> int:
    return sum(w.writers * (w.values[0][1].ByteSize() + 40) for w in writers)


def _finished(root: Path, recipe: dict) -> dict | None:
    manifest = root / "manifest.json"
    if manifest.exists():
        found = json.loads(manifest.read_text())
        # The manifest holds the recipe's keys beside what was built: compare those keys only.
        if {key: found.get(key) for key in recipe} == recipe:
            return found
    return None


def build_scan_logdir(size_mb: int) -> tuple[Path, dict]:
    """A logdir of about `size_mb` MB of histogram events in five runs; returns it with its manifest."""
    root = DATA / f"scan-{size_mb}mb"
    recipe = {"recipe": RECIPE, "size_mb": size_mb}
    manifest = _finished(root, recipe)
    if manifest is not None:
        return root / "logs", manifest
    shutil.rmtree(root, ignore_errors=True)
    use_fast_crc()
    started = time.perf_counter()
    layout = _run_layouts()
    _fill(layout, np.random.default_rng(0))
    per_step = sum(_bytes_per_step(w) for w in layout.values())
    steps = max(10, int(size_mb * 1_000_000 / per_step) + 1)
    values = 0
    per_step_values = 0  # values that remain when each (run, tag, step) keeps one, as TensorBoard does
    logs = root / "logs"
    for run, writers in layout.items():
        if run == "resumed":
            # Resumed from a checkpoint two thirds in, into the same directory: the steps after it are written twice.
            resume = 2 * steps // 3
            values += _write_run(logs / run, writers, range(0, steps), suffix=".a")
            values += _write_run(logs / run, writers, range(resume, steps + steps // 3), suffix=".b")
            per_step_values += len(writers) * (steps + steps // 3)
        else:
            values += _write_run(logs / run, writers, range(steps))
            per_step_values += len(writers) * steps
    size = sum(p.stat().st_size for p in logs.rglob("*tfevents*"))
    manifest = {
        **recipe,
        "steps": steps,
        "files": len(list(logs.rglob("*tfevents*"))),
        "bytes": size,
        "histogram_values": values,
        "one_per_step_values": per_step_values,
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return logs, manifest


def build_report_logdir(runs: int = 3, tags: int = 600, steps: int = 150) -> tuple[Path, dict]:
    """`runs` runs, each with `tags` TF2 histogram tags at `steps` steps; one tag in ten is written by two layers."""
    root = DATA / f"report-{runs}x{tags}x{steps}"
    recipe = {"recipe": RECIPE, "runs": runs, "tags": tags, "steps": steps}
    manifest = _finished(root, recipe)
    if manifest is not None:
        return root / "logs", manifest
    shutil.rmtree(root, ignore_errors=True)
    use_fast_crc()
    started = time.perf_counter()
    rng = np.random.default_rng(1)
    logs = root / "logs"
    values = 0
    for r in range(runs):
        writers = [
            Writer(f"model/layer_{i // 2}/{'kernel' if i % 2 else 'bias'}/histogram", writers=2 if i % 10 == 0 else 1)
            for i in range(tags)
        ]
        layout = {"run": writers}
        _fill(layout, rng)
        values += _write_run(logs / f"run_{r}", writers, range(steps))
    manifest = {
        **recipe,
        "bytes": sum(p.stat().st_size for p in logs.rglob("*tfevents*")),
        "histogram_values": values,
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return logs, manifest
