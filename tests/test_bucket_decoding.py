"""Legacy `HistogramProto` buckets decoded as TensorBoard's default loader serves them, pinned two ways.

TensorBoard has two decoders that disagree: RustBoard (the default loader) keeps every bucket, the first from `min`
to the first limit and the last from the second-to-last limit to `max`; Python's `data_compat.migrate_value`
(`--load_fast=false`) first drops empty buckets at both ends. A PyTorch histogram with default bins starts with an
empty bucket whose limit lies below `min`, so its first bucket runs backwards under RustBoard's rule.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorboard import data_compat
from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2
from tensorboard.util import tensor_util

from tb_varscope_plugin.reading.events import decode_histogram, monotone_edges


def _torch_like(values: np.ndarray, limits: np.ndarray) -> summary_pb2.Summary.Value:
    """A value as `torch.utils.tensorboard` writes one with its default bins: counts per limit, empty ones kept."""
    counts = np.bincount(np.searchsorted(limits, values, side="left"), minlength=len(limits))[: len(limits)]
    histo = summary_pb2.HistogramProto(
        min=float(values.min()),
        max=float(values.max()),
        num=float(len(values)),
        bucket_limit=limits.tolist(),
        bucket=counts.astype(float).tolist(),
    )
    return summary_pb2.Summary.Value(tag="weight", histo=histo)


def _python_loader(value: summary_pb2.Summary.Value) -> np.ndarray:
    return tensor_util.make_ndarray(data_compat.migrate_value(value).tensor).astype(np.float64).reshape(-1, 3)


def test_a_default_binned_torch_histogram_keeps_its_backwards_first_bucket():
    values = np.random.default_rng(0).uniform(-0.38, 0.38, size=1000)
    limits = np.linspace(-0.4, 0.4, 599)  # the first limit, -0.4, lies below min: bucket 0 is empty
    ours = decode_histogram(_torch_like(values, limits))
    assert len(ours) == 599
    first = ours[0]
    assert first[0] == values.min() and first[1] == limits[0] < first[0] and first[2] == 0  # runs backwards
    assert len(_python_loader(_torch_like(values, limits))) < 599  # Python's loader drops it
    # Binning on the monotone edges (what attribution compares) gives back the logged counts.
    edges = monotone_edges(ours)
    assert np.all(np.diff(edges) >= 0) and len(edges) == 600
    np.testing.assert_array_equal(np.histogram(values, bins=edges)[0], ours[:, 2])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=60),
    st.integers(2, 40),
    st.floats(0.0, 3.0),
)
def test_the_two_decoders_differ_exactly_by_trimmed_empty_end_buckets(points, bins, margin):
    """Python's loader = ours without the empty buckets at both ends, its first left edge set to `min` and its
    last right edge to `max`, in float32; nothing else differs."""
    values = np.array(points)
    limits = np.linspace(values.min() - margin, values.max() + margin + 1e-6, bins)
    value = _torch_like(values, limits)
    ours, python = decode_histogram(value), _python_loader(value)
    filled = np.flatnonzero(ours[:, 2] > 0)
    if not len(filled):
        assert python.shape == (0, 3)
        return
    kept = ours[filled[0] : filled[-1] + 1].copy()
    kept[0, 0], kept[-1, 1] = value.histo.min, value.histo.max
    np.testing.assert_array_equal(python, kept.astype(np.float32))


# --- against TensorBoard's own histograms route -------------------------------------------------------------------

WRITERS = {
    "torch": """
        from torch.utils.tensorboard import SummaryWriter
        with SummaryWriter(logdir) as writer:
            for step, values in enumerate(series):
                writer.add_histogram("layer/weight", values, step)
    """,
    "tensorboardx": """
        from tensorboardX import SummaryWriter
        with SummaryWriter(logdir) as writer:
            for step, values in enumerate(series):
                writer.add_histogram("layer/weight", values, step)
    """,
    "tf_compat_v1": """
        import tensorflow as tf
        tf.compat.v1.disable_eager_execution()
        x = tf.compat.v1.placeholder(tf.float32, [None])
        summary = tf.compat.v1.summary.histogram("layer/weight", x)
        with tf.compat.v1.Session() as session, tf.compat.v1.summary.FileWriter(logdir) as writer:
            for step, values in enumerate(series):
                writer.add_summary(session.run(summary, {x: values}), step)
    """,
}


def _write(logdir, writer: str) -> None:
    script = "import sys\nimport numpy as np\nlogdir = sys.argv[1]\n"
    script += "series = [np.random.default_rng(s).normal(s, 1.0, 500).astype(np.float32) for s in range(6)]\n"
    script += textwrap.dedent(WRITERS[writer])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", script, str(logdir / writer)], check=True, env=env)


@pytest.mark.slow
def test_a_clean_legacy_tag_is_served_exactly_as_tensorboard_serves_it(tmp_path):
    from tensorboard_process import get_json, tensorboard

    needs = {"torch": "torch", "tensorboardx": "tensorboardX", "tf_compat_v1": "tensorflow"}
    for writer, module in needs.items():
        if importlib.util.find_spec(module) is not None:  # torch is a test extra; its run is skipped without it
            _write(tmp_path, writer)
    runs = sorted(p.name for p in tmp_path.iterdir())
    assert {"tf_compat_v1"} <= set(runs)
    with tensorboard(tmp_path, "--reload_interval", "1") as url:
        deadline = time.monotonic() + 120
        while True:
            theirs = {r: get_json(url, "data/plugin/histograms/histograms", run=r, tag="layer/weight") for r in runs}
            report = get_json(url, "data/plugin/varscope/report")
            if all(len(t) == 6 for t in theirs.values()) and report["complete"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        for run in runs:
            ours = get_json(url, "data/plugin/varscope/histograms", run=run, tag="layer/weight", lane="0")
            assert len(theirs[run]) == 6
            assert ours == theirs[run], run


# Each dtype a histogram tensor can hold: its TensorProto code and the repeated field holding values outside content.
TENSOR_DTYPES = {
    np.float64: (2, "double_val"),
    np.float32: (1, "float_val"),
    np.float16: (19, "half_val"),
    np.int32: (3, "int_val"),
    np.int64: (9, "int64_val"),
}


@pytest.mark.parametrize("dtype", list(TENSOR_DTYPES))
@pytest.mark.parametrize("as_content", [True, False])
def test_tensor_buckets_decode_as_make_ndarray_reads_them(dtype, as_content):
    """Buckets held as `tensor_content` (what writers write) are read straight from it; every dtype, in either
    layout, gives what TensorBoard's `make_ndarray` gives."""
    buckets = np.array([[-1.5, -0.5, 3], [-0.5, 0.5, 0], [0.5, 2.0, 7]]).astype(dtype)
    code, field = TENSOR_DTYPES[dtype]
    shape = tensor_shape_pb2.TensorShapeProto(dim=[{"size": 3}, {"size": 3}])
    tensor = tensor_pb2.TensorProto(dtype=code, tensor_shape=shape)
    if as_content:
        tensor.tensor_content = buckets.tobytes()
    else:
        flat = buckets.view(np.uint16) if dtype == np.float16 else buckets  # half values are kept as their bits
        getattr(tensor, field).extend(flat.ravel().tolist())
    value = summary_pb2.Summary.Value(tag="h", tensor=tensor)
    decoded = decode_histogram(value)
    assert decoded.dtype == np.float64 and decoded.flags.writeable
    np.testing.assert_array_equal(decoded, tensor_util.make_ndarray(tensor).astype(np.float64).reshape(-1, 3))
