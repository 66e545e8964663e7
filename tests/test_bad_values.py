"""Histogram values that frame and parse but do not decode: each is a warning naming its file, offset and tag, that
value alone is left out, and the rest of the file is read, without allocating what the value claims."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from eventlogs import histogram_event, read_records, write_events
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
from test_plugin_routes import client, load_plugin

from tb_varscope_plugin import scan
from tb_varscope_plugin.reading.events import counted_elements, value_problem

Dim = tensor_shape_pb2.TensorShapeProto.Dim


def tensor(dtype: int, shape: list[int], **fields) -> summary_pb2.Summary.Value:
    proto = tensor_pb2.TensorProto(
        dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[Dim(size=n) for n in shape]), **fields
    )
    # With the histograms plugin's metadata, as a writer attaches it to a tag's first value in a file.
    metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="histograms"))
    return summary_pb2.Summary.Value(tag="kernel", metadata=metadata, tensor=proto)


def buckets(counts: list[float]) -> bytes:
    k = len(counts)
    return np.column_stack([np.arange(k), np.arange(k) + 1.0, counts]).astype("<f8").tobytes()


def legacy(limits: list[float], counts: list[float]) -> summary_pb2.Summary.Value:
    return summary_pb2.Summary.Value(
        tag="kernel", histo=summary_pb2.HistogramProto(min=0.0, max=9.0, bucket_limit=limits, bucket=counts)
    )


DT_FLOAT, DT_DOUBLE, DT_STRING = 1, 2, 7
BAD_TENSORS = {
    "shape [4]": (tensor(DT_DOUBLE, [4], tensor_content=bytes(32)), "shape [4], not [k, 3]"),
    "shape [k, 2]": (tensor(DT_DOUBLE, [5, 2], tensor_content=bytes(80)), "shape [5, 2], not [k, 3]"),
    "dtype 999": (tensor(999, [1, 3], tensor_content=bytes(24)), "dtype 999"),
    "string tensor": (tensor(DT_STRING, [1, 3], string_val=[b"a", b"b", b"c"]), f"dtype {DT_STRING}"),
    "23 content bytes for float64": (tensor(DT_DOUBLE, [1, 3], tensor_content=bytes(23)), "23 content bytes"),
    "NaN count": (tensor(DT_DOUBLE, [2, 3], tensor_content=buckets([1.0, np.nan])), "NaN"),
    "inf count": (tensor(DT_DOUBLE, [2, 3], tensor_content=buckets([np.inf, 1.0])), "add up to inf"),
    "1e308 counts": (tensor(DT_DOUBLE, [2, 3], tensor_content=buckets([1e308, 1e308])), "add up to inf"),
    "2^53 + counts": (tensor(DT_DOUBLE, [1, 3], tensor_content=buckets([2.0**60])), "more than any tensor holds"),
    "negative count": (tensor(DT_DOUBLE, [2, 3], tensor_content=buckets([3.0, -1.0])), "negative (-1)"),
    "NaN count in half_val, its bits out of range": (tensor(19, [1, 3], half_val=[0, 0, -1]), "NaN"),
    "NaN count in float_val": (tensor(DT_FLOAT, [1, 3], float_val=[0.0, 1.0, np.nan]), "NaN"),
    "shape [2^40, 3] over one float": (tensor(DT_DOUBLE, [2**40, 3], double_val=[1.0]), "1 values for a tensor"),
    "shape [2^26, 3] over one float": (tensor(DT_DOUBLE, [2**26, 3], double_val=[1.0]), "1 values for a tensor"),
    "shape [2^40, 3] over content": (tensor(DT_DOUBLE, [2**40, 3], tensor_content=bytes(24)), "24 content bytes"),
}
BAD_LEGACY = {
    "bucket and limit counts differ": (legacy([1.0, 2.0, 3.0], [1.0, 2.0]), "2 bucket counts for 3 bucket limits"),
    "NaN count": (legacy([1.0, 2.0], [1.0, np.nan]), "NaN"),
    "inf count": (legacy([1.0, 2.0], [np.inf, 1.0]), "add up to inf"),
    "1e308 counts": (legacy([1.0, 2.0], [1e308, 1e308]), "add up to inf"),
}


def run_with_bad_value(path: str, bad: summary_pb2.Summary.Value, legacy_run: bool) -> int:
    """Two layers log `kernel` at steps 0..5; at step 3 the second layer's value is `bad`. Returns its offset."""
    rng = np.random.default_rng(0)
    events = []
    for step in range(6):
        for layer, size in enumerate([3, 4]):
            event = histogram_event(step, "kernel", rng.normal(size=size) + 10 * layer, legacy_run)
            if (step, layer) == (3, 1):
                event = event_pb2.Event(step=step, wall_time=event.wall_time, summary=summary_pb2.Summary(value=[bad]))
            events.append(event)
    write_events(path, events)
    return [offset for offset, _ in read_records(path)][1 + 3 * 2 + 1]


def check(tmp_path, bad, message, legacy_run):
    path = tmp_path / "logs" / "run" / "events.out.tfevents.1.host"
    offset = run_with_bad_value(str(path), bad, legacy_run)

    tracemalloc.start()
    report = scan(str(tmp_path / "logs"))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    (run,) = report["runs"]
    (warning,) = run["warnings"]
    assert (warning["file"], warning["offset"]) == (str(path), offset)
    assert warning["message"].startswith("histogram of tag 'kernel' at step 3 skipped: ")
    assert message in warning["message"]
    (collision,) = run["collisions"]  # step 3 has one value left, the other five steps still collide
    assert (collision["writers"], collision["steps"], collision["last_step"]) == (2, 5, 5)
    assert [lane["elements"] for lane in collision["lanes"]] == [3, 4]  # the last values read, after the bad one
    assert peak < 32 << 20


@pytest.mark.parametrize("case", list(BAD_TENSORS))
def test_a_tensor_that_does_not_decode_is_a_warning_and_the_rest_is_read(tmp_path, case):
    bad, message = BAD_TENSORS[case]
    check(tmp_path, bad, message, legacy_run=False)


@pytest.mark.parametrize("case", list(BAD_LEGACY))
def test_a_legacy_histogram_that_does_not_decode_is_a_warning_and_the_rest_is_read(tmp_path, case):
    bad, message = BAD_LEGACY[case]
    check(tmp_path, bad, message, legacy_run=True)


def test_many_bad_values_are_a_few_warnings_and_a_count(tmp_path):
    path = tmp_path / "run" / "events.out.tfevents.1.host"
    bad = BAD_TENSORS["NaN count"][0]
    events = [histogram_event(0, "kernel", np.arange(3.0))]
    events += [event_pb2.Event(step=step, summary=summary_pb2.Summary(value=[bad])) for step in range(1, 51)]
    write_events(str(path), events)

    (run,) = scan(str(tmp_path))["runs"]

    *listed, more = run["warnings"]
    assert len(listed) == 10
    assert more["offset"] == listed[-1]["offset"]
    assert more["message"].startswith("40 more histogram values after this one skipped")


def test_in_tensorboard_a_nan_count_is_a_warning_and_the_report_keeps_updating(tmp_path):
    path = tmp_path / "run" / "events.out.tfevents.1.host"
    run_with_bad_value(str(path), BAD_TENSORS["NaN count"][0], legacy_run=False)
    plugin = load_plugin(tmp_path)
    plugin.reload_impl()
    write_events(str(tmp_path / "later" / "events.out.tfevents.2.host"), [histogram_event(0, "bias", np.arange(3.0))])
    plugin.reload_impl()

    report = plugin.report_impl()

    assert [run["run"] for run in report["runs"]] == ["later", "run"]
    assert "NaN" in report["runs"][1]["warnings"][0]["message"]
    assert report["summary"]["collisions"] == 1
    lane = client(plugin).get(
        "/data/plugin/varscope/histograms", query_string={"run": "run", "tag": "kernel", "lane": "1"}
    )
    assert [step for _, step, _ in lane.get_json()] == [0, 1, 2, 4, 5]  # step 3's second value was left out


def test_a_value_spoiled_after_it_was_read_is_a_plain_404_until_the_file_is_read_again(tmp_path):
    path = tmp_path / "run" / "events.out.tfevents.1.host"
    run_with_bad_value(str(path), histogram_event(3, "kernel", np.arange(4.0)).summary.value[0], legacy_run=False)
    plugin = load_plugin(tmp_path)
    plugin.live.start()
    assert plugin.live.wait(60)  # the reader's one pass (reload interval 0) is over: reloads are ours from here
    http = client(plugin)
    query = {"run": "run", "tag": "kernel", "lane": "1"}
    assert len(http.get("/data/plugin/varscope/histograms", query_string=query).get_json()) == 6
    run_with_bad_value(str(path), BAD_TENSORS["dtype 999"][0], legacy_run=False)  # the same file, rewritten

    response = http.get("/data/plugin/varscope/histograms", query_string=query)

    assert (response.status_code, response.mimetype) == (404, "text/plain")
    assert "can no longer be read" in response.get_data(as_text=True)
    plugin.reload_impl()
    assert [step for _, step, _ in http.get("/data/plugin/varscope/histograms", query_string=query).get_json()] == [
        0,
        1,
        2,
        4,
        5,
    ]
    rewritten, skipped = plugin.report_impl()["runs"][0]["warnings"]
    assert rewritten["message"].startswith("shrank to ")  # the bad value is shorter than the one it replaced
    assert rewritten["message"].endswith("; read again from the start")
    assert skipped["message"].startswith("histogram of tag 'kernel' at step 3 skipped: a tensor of dtype 999")


@pytest.mark.parametrize("count, refused", [(2**53, False), (2**53 + 1, True)])
def test_int64_counts_are_held_to_the_limit_exactly(count, refused):
    """A float64 cannot tell 2^53 + 1 from 2^53: the counts' sum is compared before it is made a float."""
    dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in (1, 3)]
    tensor = tensor_pb2.TensorProto(
        dtype=9, tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dims), int64_val=[0, 1, count]
    )
    value = summary_pb2.Summary.Value(tag="kernel", tensor=tensor)
    assert (value_problem(value) is not None) == refused
    if not refused:
        assert counted_elements(value) == count
