"""Small event files for fast tests, written with TensorBoard's own pure-Python writers (no TensorFlow needed)."""

from __future__ import annotations

import os
import time

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.histogram.summary_v2 import histogram_pb
from tensorboard.summary.writer.record_writer import RecordWriter

from tb_varscope_plugin.reading.records import RecordReader


def histogram_event(step: int, tag: str, values: np.ndarray, legacy: bool = False) -> event_pb2.Event:
    """An event holding one histogram: a TF2 tensor summary, or a legacy HistogramProto as PyTorch writes."""
    if legacy:
        counts, edges = np.histogram(values, bins=10)
        histo = summary_pb2.HistogramProto(
            min=float(values.min()),
            max=float(values.max()),
            num=float(values.size),
            sum=float(values.sum()),
            sum_squares=float((values**2).sum()),
            bucket_limit=edges[1:].tolist(),
            bucket=counts.astype(float).tolist(),
        )
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, histo=histo)])
    else:
        summary = histogram_pb(tag, values)
    return event_pb2.Event(step=step, wall_time=time.time(), summary=summary)


def write_events(path: str, events: list[event_pb2.Event], append: bool = False) -> None:
    """Writes events as TFRecords to `path` (a `*tfevents*` file name), after a file_version event when new."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "ab" if append else "wb") as f:
        writer = RecordWriter(f)
        if not append:
            writer.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
        for event in events:
            writer.write(event.SerializeToString())


def layered_run(path: str, tag: str, sizes: list[int], steps: int, legacy: bool = False) -> None:
    """Like Keras logging one weight of several layers under one tag: len(sizes) writes of `tag` per step,
    layer k's values drawn around 10 * k."""
    rng = np.random.default_rng(0)
    events = [
        histogram_event(step, tag, rng.normal(size=size) + 10 * layer, legacy)
        for step in range(steps)
        for layer, size in enumerate(sizes)
    ]
    write_events(path, events)


def read_records(source: str | RecordReader) -> list[tuple[int, bytes]]:
    """`(offset, payload)` of every complete, valid record of a file (a path, or a reader to resume), as the index
    reads them block by block."""
    reader = RecordReader(source) if isinstance(source, str) else source
    return [
        (block.base + start, payload)
        for block in reader.blocks()
        for start, payload in zip(block.starts.tolist(), block.payloads, strict=True)
    ]
