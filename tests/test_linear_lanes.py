"""Work grows with the values, not with values x lanes: a tag written n times at one step makes n lanes, and the
report and `/histograms` ask for each. Counted in calls, not seconds: sorting a series into lanes and parsing a
record are the steps that, once per lane, made 4,000 values at one step take 2 s and 10,000 in one record 70 s."""

from __future__ import annotations

import numpy as np
import pytest
from eventlogs import histogram_event, write_events
from hypothesis import given
from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.histogram.summary_v2 import histogram_pb

from tb_varscope_plugin import scan
from tb_varscope_plugin.reading import events, run_index
from tb_varscope_plugin.reading.logdir import LogdirIndex


@pytest.fixture
def work(monkeypatch) -> dict[str, int]:
    """Counts of the costly steps: `lanes` series sorted into lanes, `parses` records parsed to decode values."""
    counts = {"lanes": 0, "parses": 0}
    sort_into_lanes, summary_values = run_index._Lanes.of, events.summary_values

    def counted_lanes(steps):
        counts["lanes"] += 1
        return sort_into_lanes(steps)

    def counted_parse(payload):
        counts["parses"] += 1
        return summary_values(payload)

    monkeypatch.setattr(run_index._Lanes, "of", staticmethod(counted_lanes))
    monkeypatch.setattr(events, "summary_values", counted_parse)
    return counts


@pytest.mark.parametrize("n", [200, 800])
def test_values_at_one_step_are_sorted_into_lanes_once_and_each_record_parsed_once(tmp_path, work, n):
    write_events(str(tmp_path / "run" / "events.out.tfevents.1.x"), [histogram_event(0, "k", np.arange(3.0))] * n)

    (run,) = scan(str(tmp_path))["runs"]

    assert run["collisions"][0]["writers"] == n
    assert work == {"lanes": 1, "parses": n}  # each lane's last value is a record of its own


@pytest.mark.parametrize("n", [200, 800])
def test_values_in_one_record_are_decoded_from_one_parse(tmp_path, work, n):
    value = histogram_pb("k", np.arange(3.0)).value[0]
    event = event_pb2.Event(step=0, summary=summary_pb2.Summary(value=[value] * n))
    write_events(str(tmp_path / "run" / "events.out.tfevents.1.x"), [event])

    (run,) = scan(str(tmp_path))["runs"]

    assert [lane["elements"] for lane in run["collisions"][0]["lanes"]] == [3] * n
    assert work == {"lanes": 1, "parses": 1}


def test_every_lane_of_a_series_is_served_from_one_sort(tmp_path, work):
    steps, lanes = 20, 50
    events_ = [histogram_event(step, "k", np.arange(3.0)) for step in range(steps) for _ in range(lanes)]
    write_events(str(tmp_path / "run" / "events.out.tfevents.1.x"), events_)
    index = LogdirIndex(str(tmp_path))
    index.reload()
    run = index.runs["run"]

    served = [run.lane_refs("k", lane) for lane in range(run.lane_count("k"))]

    assert [len(refs) for refs in served] == [steps] * lanes
    assert work["lanes"] == 1


@given(
    st.one_of(
        st.lists(st.integers(-(2**31), 2**31 - 1), max_size=40),
        st.lists(st.integers(0, 6), max_size=40),  # many repeats
        st.lists(st.integers(0, 6), max_size=40).map(sorted),  # in step order with repeats, as layers write
    )
)
def test_lanes_are_the_kth_write_at_each_step(written):
    steps = np.array(written, dtype=np.int64)
    lanes = run_index._Lanes.of(steps)
    rank = [written[:i].count(step) for i, step in enumerate(written)]
    most = max(rank, default=-1) + 1
    assert lanes.length == len(written) and lanes.most == most
    positions = lanes.positions if lanes.positions is not None else np.arange(len(written))
    bounds = lanes.bounds if lanes.bounds is not None else [0, len(written)]
    for k in range(most):
        assert positions[bounds[k] : bounds[k + 1]].tolist() == [i for i, r in enumerate(rank) if r == k]
    if lanes.steps is not None:
        assert lanes.steps.tolist() == sorted(set(written))
        assert lanes.counts.tolist() == [written.count(step) for step in sorted(set(written))]
