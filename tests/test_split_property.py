"""split on generated logs: whatever the layout of writes, files and steps, nothing is lost and nothing collides.

`VARSCOPE_FUZZ_EXAMPLES=500` runs a longer search than the default.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from eventlogs import histogram_event, write_events
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorboard.plugins.scalar.summary_v2 import scalar_pb

from tb_varscope_plugin import scan
from tb_varscope_plugin.reading.events import histogram_values, parse_event
from tb_varscope_plugin.reading.logdir import LogdirIndex
from tb_varscope_plugin.reading.records import RecordReader
from tb_varscope_plugin.rewrite.split import split_logdir

EXAMPLES = int(os.environ.get("VARSCOPE_FUZZ_EXAMPLES", "25"))

# One event file: per step, for each write, (tag, legacy encoding, a scalar in the same event).
writes = st.lists(st.tuples(st.sampled_from(["w", "b", "w/lane_1"]), st.booleans(), st.booleans()), max_size=4)
event_file = st.lists(st.tuples(st.integers(0, 6), writes), min_size=1, max_size=6)


def _write(path: Path, steps: list, seed: int) -> None:
    rng = np.random.default_rng(seed)
    events = []
    seen: set[str] = set()
    encoding: dict[str, bool] = {}
    for step, step_writes in steps:
        for tag, legacy, with_scalar in step_writes:
            legacy = encoding.setdefault(tag, legacy)  # a tag keeps its encoding, as every writer does
            event = histogram_event(step, tag, rng.normal(size=int(rng.integers(1, 6))), legacy)
            if tag in seen:  # TF2 writers put metadata on a tag's first value in a file only
                event.summary.value[0].ClearField("metadata")
            seen.add(tag)
            if with_scalar:
                event.summary.value.append(scalar_pb("loss", float(step)).value[0])
            events.append(event)
    write_events(str(path), events)


def _records(path: Path) -> tuple[int, list[bytes]]:
    """How many histogram values the file holds, and its other records' bytes."""
    reader = RecordReader(str(path))
    plugins: dict[str, str] = {}
    values, others = 0, []
    for payload in (p for block in reader.blocks() for p in block.payloads):
        found = histogram_values(parse_event(payload), plugins)
        if found is None:
            others.append(payload)
        else:
            values += len(found[2])
    return values, others


@settings(max_examples=EXAMPLES, deadline=None)
@given(files=st.lists(event_file, min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_split_keeps_every_value_and_leaves_no_collision(files, seed):
    with tempfile.TemporaryDirectory() as tmp:
        logdir, out = Path(tmp) / "logs", Path(tmp) / "out"
        logdir.mkdir()
        names = [f"events.out.tfevents.{100 + i}.host" for i in range(len(files))]
        for name, steps in zip(names, files, strict=True):
            _write(logdir / name, steps, seed)

        split_logdir(str(logdir), str(out))

        assert scan(str(out))["summary"]["collisions"] == 0
        before = [_records(logdir / name) for name in names]
        after = [_records(out / name) for name in names]
        assert [a[1] for a in after] == [b[1] for b in before]  # every other record, byte for byte
        assert sum(a[0] for a in after) == sum(b[0] for b in before)
        index = LogdirIndex(str(out))
        index.reload()
        run = index.runs.get(".")
        # Every histogram of OUTDIR is recognised as one: each new tag's first value carries its metadata.
        indexed = 0 if run is None else sum(len(s.steps) for f in run.files for s in f.series.values())
        assert indexed == sum(b[0] for b in before)
