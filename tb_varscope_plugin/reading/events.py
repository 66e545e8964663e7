"""Events: which summary values of an event record are histograms, and their `[left, right, count]` buckets.

Both encodings are understood: TF2 tensor summaries of the `histograms` plugin (k x 3 tensors) and the legacy
`HistogramProto` written by `tf.compat.v1`, tensorboardX and `torch.utils.tensorboard`.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from google.protobuf.message import DecodeError
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.util import tensor_util

HISTOGRAMS_PLUGIN = "histograms"

LEGACY = "histo"  # HistogramProto: tf.compat.v1, tensorboardX, torch.utils.tensorboard
TENSOR = "tensor"  # TF2 summary of the histograms plugin
LEGACY_FIELD = 0x2A  # the key opening Summary.Value.histo: field 5, length-delimited

parse_event = event_pb2.Event.FromString


def parsed_prefix(payloads: list[bytes]) -> int:
    """How many of `payloads`, from the first, parse as events."""
    try:
        deque(map(parse_event, payloads), maxlen=0)  # parsed at C speed, results dropped
        return len(payloads)
    except DecodeError:
        for count, payload in enumerate(payloads):
            try:
                parse_event(payload)
            except DecodeError:
                return count
        raise


def histogram_values(payload: bytes, plugins: dict[str, str]) -> tuple[int, float, list[tuple[int, str, str]]] | None:
    """`(step, wall_time, [(index in the summary, tag, encoding), ...])` for an event holding histograms, else None.

    `plugins` maps tag to plugin name for one event file: TF2 writers attach a value's metadata only to the
    first value of each tag in a file, so later values are recognised from what the file said before.
    """
    event = parse_event(payload)
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
    """
    if value.WhichOneof("value") == LEGACY:
        histo = value.histo
        limits = list(histo.bucket_limit)
        if not limits:
            return np.zeros((0, 3))
        lefts = [histo.min] + limits[:-1]
        rights = limits[:-1] + [histo.max]
        return np.array([lefts, rights, list(histo.bucket)], dtype=np.float64).T
    array = tensor_util.make_ndarray(value.tensor).astype(np.float64)
    return array.reshape(-1, 3)


def monotone_edges(buckets: np.ndarray) -> np.ndarray:
    """The k + 1 bucket edges of `(k, 3)` buckets, never running backwards, for binning values on them.

    Each left edge, then the last right edge; an edge below the one before it (the backwards first bucket of a
    legacy histogram, see `decode_histogram`) is raised to it, so that bucket holds nothing.
    """
    return np.maximum.accumulate(np.append(buckets[:, 0], buckets[-1, 1]))


def decode_value(payload: bytes, index: int) -> np.ndarray:
    """Decodes the histogram at position `index` of the summary carried by one event record."""
    return decode_histogram(parse_event(payload).summary.value[index])
