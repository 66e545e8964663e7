"""Events: which summary values of an event record are histograms, and their `[left, right, count]` buckets.

Both encodings are understood: TF2 tensor summaries of the `histograms` plugin (k x 3 tensors) and the legacy
`HistogramProto` written by `tf.compat.v1`, tensorboardX and `torch.utils.tensorboard`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from google.protobuf.message import DecodeError
from tensorboard.compat.proto import event_pb2, summary_pb2

from tb_varscope_plugin.reading.fast_path import MAX_COUNT

HISTOGRAMS_PLUGIN = "histograms"

LEGACY = "histo"  # HistogramProto: tf.compat.v1, tensorboardX, torch.utils.tensorboard
TENSOR = "tensor"  # TF2 summary of the histograms plugin
LEGACY_FIELD = 0x2A  # the key opening Summary.Value.histo: field 5, length-delimited

parse_event = event_pb2.Event.FromString

# The dtypes a histogram tensor can hold: how `tensor_content` lays each out (native order, as `make_ndarray` reads
# it), and the repeated field that holds its values otherwise. Strings, booleans, complex numbers hold no counts.
_TENSOR_DTYPES = {
    1: ("f", 4, "float_val"),  # DT_FLOAT
    2: ("d", 8, "double_val"),  # DT_DOUBLE
    3: ("i", 4, "int_val"),  # DT_INT32
    9: ("q", 8, "int64_val"),  # DT_INT64
    19: ("e", 2, "half_val"),  # DT_HALF, its bits kept in int32s outside tensor_content
}


class BadValue(ValueError):
    """A histogram value that frames and parses, but whose contents are no `(k, 3)` buckets of counts."""


def value_problem(value: summary_pb2.Summary.Value) -> str | None:
    """Why a histogram value (one `histogram_values` found) cannot be decoded into `(k, 3)` buckets, or None.

    Checked from the sizes the value states against what it holds, before anything is allocated from them: a
    shape of [2^40, 3] over one float is refused here, not broadcast into terabytes by `make_ndarray`.
    """
    return _checked(value)[1]


def counted_elements(value: summary_pb2.Summary.Value) -> int:
    """How many elements a histogram value counts (its bucket counts' sum, rounded), found as `value_problem`
    checks the value, without making its buckets: a lane's size in the report. Raises BadValue for a value
    `value_problem` refuses."""
    total, problem = _checked(value)
    if problem is not None:
        raise BadValue(problem)
    return int(round(total))


def _checked(value: summary_pb2.Summary.Value) -> tuple[float, str | None]:
    """`(the sum of the value's bucket counts, None)`, or `(0.0, why the value holds no sound buckets)`."""
    if value.HasField(LEGACY):
        histo = value.histo
        counts = histo.bucket
        if len(counts) != len(histo.bucket_limit):
            return 0.0, f"{len(counts)} bucket counts for {len(histo.bucket_limit)} bucket limits"
        return _counted(counts)
    tensor = value.tensor
    layout = _TENSOR_DTYPES.get(tensor.dtype)
    if layout is None:
        return 0.0, f"a tensor of dtype {tensor.dtype}, which holds no counts"
    code, size, field = layout
    shape = [d.size for d in tensor.tensor_shape.dim]
    if len(shape) != 2 or shape[1] != 3 or shape[0] < 0:
        return 0.0, f"a tensor of shape {shape}, not [k, 3]"
    content = tensor.tensor_content
    if content:
        if len(content) != 3 * shape[0] * size:
            return 0.0, f"{len(content)} content bytes for a tensor of {shape[0] * 3} values of {size} bytes"
        return _counted(np.frombuffer(content, dtype=code)[2::3].tolist())
    values = getattr(tensor, field)
    if len(values) != 3 * shape[0]:
        # make_ndarray would repeat the last value to fill the shape: a few bytes could claim gigabytes.
        return 0.0, f"{len(values)} values for a tensor of shape {shape}"
    if code == "e":
        return _counted(np.array(values, dtype=np.int64).astype(np.uint16).view(np.float16)[2::3].tolist())
    return _counted(values[2::3])


def _counted(counts) -> tuple[float, str | None]:
    total = sum(counts)  # exact for integer counts: compared with MAX_COUNT before any rounding to a float
    if 0 <= total <= MAX_COUNT and min(counts, default=0) >= 0:
        return float(total), None
    if total != total:
        return 0.0, "a bucket count is NaN"
    if min(counts) < 0:
        return 0.0, f"a bucket count is negative ({min(counts):g})"
    return 0.0, f"bucket counts add up to {total:g}, more than any tensor holds"


@dataclass(frozen=True)
class Origin:
    """What an event file's first event says of its writer: `file_version` (`brain.Event:2` from TensorFlow, PyTorch
    and tensorboardX alike) and `source_metadata.writer` (`tensorflow.core.util.events_writer` from TensorFlow,
    `tensorboard.summary.writer.event_file_writer` from TensorBoard's Python writer, which PyTorch uses; tensorboardX
    and older TensorFlow write none)."""

    file_version: str
    writer: str


def origin(event: event_pb2.Event) -> Origin:
    """The origin of the file whose first event is `event`."""
    return Origin(event.file_version, event.source_metadata.writer)


def parsed_prefix(payloads: list[bytes]) -> list[event_pb2.Event]:
    """The events `payloads` hold, from the first up to the first that does not parse as one."""
    try:
        return list(map(parse_event, payloads))  # parsed at C speed
    except DecodeError:
        found = []
        for payload in payloads:
            try:
                found.append(parse_event(payload))
            except DecodeError:
                return found
        raise


def histogram_values(
    event: event_pb2.Event, plugins: dict[str, str]
) -> tuple[int, float, list[tuple[int, str, str]]] | None:
    """`(step, wall_time, [(index in the summary, tag, encoding), ...])` for an event holding histograms, else None.

    `plugins` maps tag to plugin name for one event file: TF2 writers attach a value's metadata only to the
    first value of each tag in a file, so later values are recognised from what the file said before.
    """
    # An event without a summary has no values, and HasField is about twice as fast as WhichOneof; the two oneof
    # members can be tested in either order.
    found = []
    for index, value in enumerate(event.summary.value):
        if value.HasField(TENSOR):
            tag = value.tag
            plugin = plugins.get(tag)
            if plugin is None:
                plugin = plugins[tag] = value.metadata.plugin_data.plugin_name
            if plugin == HISTOGRAMS_PLUGIN:
                found.append((index, tag, TENSOR))
        elif value.HasField(LEGACY):
            found.append((index, value.tag, LEGACY))
    if not found:
        return None
    return event.step, event.wall_time, found


def decode_histogram(value: summary_pb2.Summary.Value) -> np.ndarray:
    """The value's buckets as a float64 array of shape (k, 3): left edge, right edge, count.

    A legacy `HistogramProto` is converted as TensorBoard's default loader (RustBoard, `data_compat.rs`) converts
    it, so that `/histograms` serves what TensorBoard serves: every bucket kept, the first starting at `min` and
    the last ending at `max`. An empty first bucket whose limit lies below `min` (PyTorch's default bins) thus
    runs backwards. (Python's `data_compat.migrate_value`, used with `--load_fast=false`, drops empty end buckets
    first; tests/test_bucket_decoding.py pins exactly where the two differ.) Code that bins values on these edges
    uses `monotone_edges`.

    Raises BadValue for a value `value_problem` refuses.
    """
    problem = value_problem(value)
    if problem is not None:
        raise BadValue(problem)
    if value.WhichOneof("value") == LEGACY:
        histo = value.histo
        limits = list(histo.bucket_limit)
        if not limits:
            return np.zeros((0, 3))
        lefts = [histo.min] + limits[:-1]
        rights = limits[:-1] + [histo.max]
        return np.array([lefts, rights, list(histo.bucket)], dtype=np.float64).T
    tensor = value.tensor
    if tensor.tensor_content:
        # What every writer writes: the content is the [k, 3] array in native order, its size checked above; read
        # as `make_ndarray` reads it, without its general path (a quarter of the cost of reporting a collision).
        code = _TENSOR_DTYPES[tensor.dtype][0]
        return np.frombuffer(tensor.tensor_content, dtype=code).astype(np.float64).reshape(-1, 3)
    # Counts in the tensor's typed fields (`double_val`...) rather than its content: TensorBoard's general path,
    # imported only here, as its module imports the whole filesystem layer (see filesystem.py).
    from tensorboard.util import tensor_util

    return tensor_util.make_ndarray(tensor).astype(np.float64).reshape(-1, 3)


def monotone_edges(buckets: np.ndarray) -> np.ndarray:
    """The k + 1 bucket edges of `(k, 3)` buckets, never running backwards, for binning values on them.

    Each left edge, then the last right edge; an edge below the one before it (the backwards first bucket of a
    legacy histogram, see `decode_histogram`) is raised to it, so that bucket holds nothing.
    """
    return np.maximum.accumulate(np.append(buckets[:, 0], buckets[-1, 1]))


def summary_values(payload: bytes) -> list[summary_pb2.Summary.Value]:
    """The summary values of one event record; raises BadValue if it is no event (the file was replaced)."""
    try:
        return list(parse_event(payload).summary.value)
    except DecodeError as error:
        raise BadValue("the record is no event") from error
