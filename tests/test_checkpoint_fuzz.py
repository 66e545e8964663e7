"""Property tests: real checkpoints of every format, damaged at random and structurally, never make a reader raise
anything but CheckpointError, never take much memory, and a run beside one is still reported, with a warning
naming the checkpoint when it cannot be read.

VARSCOPE_FUZZ_EXAMPLES=N runs N random examples per test (e.g. 2000); by default a fixed 30 keep the suite fast.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

import google_crc32c
import h5py
import numpy as np
import pytest
from damaged_checkpoints import (
    REAL,
    append_to_shard,
    colliding_run,
    entry_bytes,
    mask_crc,
    object_graph_blob,
    peak_memory,
    string_crc,
    string_tensor,
    write_table,
    write_zip,
    zip_members,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import trackable_object_graph_pb2

from tb_varscope_plugin import scan
from tb_varscope_plugin.checkpoints import isolated
from tb_varscope_plugin.checkpoints.formats import read_checkpoint
from tb_varscope_plugin.checkpoints.tf_bundle import OBJECT_GRAPH_KEY, _entry, read_table
from tb_varscope_plugin.checkpoints.variables import Checkpoint, CheckpointError, UnexpectedCheckpointError

# The fast suite runs a fixed set of examples (derandomized), the same at every run; VARSCOPE_FUZZ_EXAMPLES=N runs N
# random examples per test instead.
_LONG = os.environ.get("VARSCOPE_FUZZ_EXAMPLES")
_FUZZ = settings(
    max_examples=int(_LONG or "30"),
    derandomize=_LONG is None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# The files are tens of KB and the readers' own caps are far above that, so a few MB is all reading one may take;
# 32 MB leaves room for numpy and h5py bookkeeping, and is far below what the unbounded readers took (gigabytes).
# h5 files are read by a worker process: what is traced of them here is the values it sends.
_MEMORY_BOUND = 32 * 1024 * 1024
_FILES = {
    "tf/ckpt-1": ["ckpt-1.index", "ckpt-1.data-00000-of-00001"],
    "model.keras": ["model.keras"],
    "model.weights.h5": ["model.weights.h5"],
    "legacy.h5": ["legacy.h5"],
    "model.safetensors": ["model.safetensors"],
}


class _Run:
    """A logdir whose one run logs two kernels of the fixture under one tag, with the fixture's files beside it,
    rewritten for every example."""

    def __init__(self, root: Path, name: str) -> None:
        self.logdir = root / name.replace("/", "_")
        self.run = colliding_run(self.logdir, name)
        self.name = name
        self.originals = {f: (REAL / name).parent.joinpath(f).read_bytes() for f in _FILES[name]}
        self.path = self.run / Path(name).name

    def write(self, files: dict[str, bytes]) -> None:
        for file, data in {**self.originals, **files}.items():
            (self.run / file).write_bytes(data)

    def check(self) -> None:
        """What every damaged checkpoint must give: a Checkpoint whose loads work or raise CheckpointError, or a
        CheckpointError, never another exception and never a reader's unexpected one; little memory; and in
        scan(), the run reported, with a warning naming the checkpoint if reading it failed."""

        def read_and_load() -> Checkpoint:
            checkpoint = read_checkpoint(str(self.path))
            for variable in checkpoint.variables:
                try:
                    variable.load()
                except CheckpointError as error:
                    assert not isinstance(error, UnexpectedCheckpointError), error
            return checkpoint

        found, peak = peak_memory(read_and_load)
        assert isinstance(found, Checkpoint | CheckpointError), repr(found)
        assert not isinstance(found, UnexpectedCheckpointError), found
        assert peak < _MEMORY_BOUND, peak
        report = scan(str(self.logdir))
        (run,) = report["runs"]
        assert run["run"] == "run" and run["collisions"]
        warnings = [w for w in run["warnings"] if w["message"].startswith("checkpoint not read")]
        if isinstance(found, CheckpointError):
            assert run["checkpoint"] is None
            assert [w["file"] for w in warnings] == [str(self.path)]
            assert str(self.path) in warnings[0]["message"]
        else:
            assert run["checkpoint"] is not None or warnings


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, _Run]:
    root = tmp_path_factory.mktemp("checkpoint_fuzz")
    return {name: _Run(root, name) for name in _FILES}


def _damage(data: st.DataObject, raw: bytes) -> bytes:
    """`raw` with bit flips, a truncation, an overwritten run or a chunk copied elsewhere."""
    kind = data.draw(st.sampled_from(["flip", "truncate", "overwrite", "splice"]))
    out = bytearray(raw)
    if kind == "flip":
        for position in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=8)):
            out[position] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "truncate":
        del out[data.draw(st.integers(0, len(raw) - 1)) :]
    elif kind == "overwrite":
        position = data.draw(st.integers(0, len(raw) - 1))
        blob = data.draw(st.binary(min_size=1, max_size=16) | st.sampled_from([b"\xff" * 8, b"\x00" * 8]))
        out[position : position + len(blob)] = blob
    else:
        start, length, to = (data.draw(st.integers(0, len(raw) - 1)) for _ in range(3))
        chunk = raw[start : start + length]
        out[to : to + len(chunk)] = chunk
    return bytes(out)


# Random bytes damaged in an h5 file can make libhdf5 itself loop forever (a flipped bit in a global heap), out of
# Python's reach: such a file is a warning once the worker reading it (checkpoints/isolated.py) has run past
# its limit. Here that limit is a few seconds, not tens, so an example that finds such a file costs only that.
_H5_LIMIT_SECONDS = 3.0


@pytest.fixture(scope="module", autouse=True)
def _short_h5_limit():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(isolated, "BASE_SECONDS", _H5_LIMIT_SECONDS)
        yield


@_FUZZ
@given(data=st.data())
@pytest.mark.parametrize("name", list(_FILES))
def test_random_damage_to_any_file_is_a_warning_at_worst(runs, name, data):
    run = runs[name]
    file = data.draw(st.sampled_from(_FILES[name]))
    run.write({file: _damage(data, run.originals[file])})
    run.check()


# --- structural damage, format by format: what parses but is not what the format allows ---

_NUMBERS = st.integers(0, 12) | st.integers(0, 2**64 - 1) | st.sampled_from([2**31, 2**32, 2**63, 2**64 - 1])
_DIMS = st.lists(st.integers(0, 5) | st.integers(-(2**63), 2**63 - 1), max_size=4)


@_FUZZ
@given(data=st.data())
def test_tf_bundle_entries_with_valid_checksums_but_any_fields(runs, data):
    run = runs["tf/ckpt-1"]
    run.write({})
    prefix = run.run / "ckpt-1"
    table = read_table(str(prefix) + ".index")
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(table)))
        change = data.draw(st.sampled_from(["entry", "swap", "bytes", "drop", "values"]))
        if change == "entry":
            table[key] = entry_bytes(
                data.draw(_NUMBERS.filter(lambda n: n < 2**32)),
                tuple(data.draw(_DIMS)),
                data.draw(_NUMBERS),
                data.draw(_NUMBERS),
                data.draw(st.integers(0, 2**32 - 1)),
                shard=data.draw(st.integers(0, 3)),
            )
        elif change == "swap":
            other = data.draw(st.sampled_from(sorted(table)))
            table[key], table[other] = table[other], table[key]
        elif change == "bytes":
            table[key] = data.draw(st.binary(max_size=40))
        elif change == "drop" and len(table) > 1:
            del table[key]
        elif change == "values" and key:
            # Values replaced by bytes that checksum correctly, of a size the shape may or may not fit.
            try:
                old = _entry(table[key], key)
            except CheckpointError:
                continue  # an entry an earlier change already broke
            raw = data.draw(st.binary(max_size=64))
            offset = append_to_shard(prefix, raw)
            table[key] = entry_bytes(old.dtype, old.shape, offset, len(raw), mask_crc(google_crc32c.value(raw)))
    write_table(Path(str(prefix) + ".index"), table)
    run.check()


@_FUZZ
@given(data=st.data())
def test_tf_bundle_object_graphs_that_parse_but_point_anywhere(runs, data):
    run = runs["tf/ckpt-1"]
    run.write({})
    prefix = run.run / "ckpt-1"
    table = read_table(str(prefix) + ".index")
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(object_graph_blob(REAL / "tf/ckpt-1"))
    for _ in range(data.draw(st.integers(1, 4))):
        if not graph.nodes:
            break
        node = graph.nodes[data.draw(st.integers(0, len(graph.nodes) - 1))]
        change = data.draw(st.sampled_from(["child", "attribute", "slot", "clear", "drop-nodes"]))
        if change == "child" and node.children:
            child = node.children[data.draw(st.integers(0, len(node.children) - 1))]
            child.node_id = data.draw(st.integers(-(2**31), 2**31 - 1) | st.integers(0, len(graph.nodes)))
            child.local_name = data.draw(st.sampled_from(["optimizer", "", "../x", "save_counter", child.local_name]))
        elif change == "attribute" and node.attributes:
            attribute = node.attributes[0]
            attribute.checkpoint_key = data.draw(st.sampled_from(sorted(table)) | st.text(max_size=8))
            attribute.full_name = data.draw(st.text(max_size=12))
        elif change == "slot":
            slot = node.slot_variables.add()
            slot.original_variable_node_id = data.draw(st.integers(-5, 40))
            slot.slot_variable_node_id = data.draw(st.integers(-5, 40))
        elif change == "clear":
            del node.children[:]
        elif change == "drop-nodes":
            del graph.nodes[data.draw(st.integers(0, len(graph.nodes) - 1)) :]
    blob = graph.SerializeToString()
    raw = string_tensor([blob])
    table[OBJECT_GRAPH_KEY] = entry_bytes(7, (), append_to_shard(prefix, raw), len(raw), string_crc([blob]))
    write_table(Path(str(prefix) + ".index"), table)
    run.check()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@_FUZZ
@given(data=st.data())
def test_safetensors_headers_that_parse_but_hold_anything(runs, data):
    run = runs["model.safetensors"]
    raw = run.originals["model.safetensors"]
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    for _ in range(data.draw(st.integers(1, 3))):
        name = data.draw(st.sampled_from(sorted(header)))
        field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets", None]))
        if field is None:
            header[name] = data.draw(_JSON)
        elif isinstance(header[name], dict):
            header[name][field] = data.draw(
                _JSON
                | st.lists(st.integers(-(2**65), 2**65), max_size=3)
                | st.lists(st.floats(allow_nan=True), max_size=2)
            )
    blob = json.dumps(header).encode()
    declared = data.draw(st.just(len(blob)) | st.integers(0, 2**64 - 1))
    run.write({"model.safetensors": struct.pack("<Q", declared) + blob + raw[8 + size :]})
    run.check()


@_FUZZ
@given(data=st.data())
def test_keras_archives_with_any_member_headers_and_contents(runs, data):
    run = runs["model.keras"]
    members = zip_members(REAL / "model.keras")
    if data.draw(st.booleans()):
        members["config.json"] = json.dumps(data.draw(_JSON)).encode()
    entries = []
    for name, content in members.items():
        overrides: dict = {"method": data.draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))}
        if data.draw(st.integers(0, 3)) == 0:
            field = data.draw(st.sampled_from(["method", "flags", "crc", "file_size"]))
            overrides[field] = data.draw(
                st.sampled_from([0, 1, 8, 12, 14, 99]) if field == "method" else st.integers(0, 2**16 - 1)
            )
        if name == "model.weights.h5" and data.draw(st.booleans()):
            content = _damage(data, content)
        entries.append((name, content, overrides))
    write_zip(run.path, entries)
    run.check()


_DTYPES = st.sampled_from(
    [
        np.dtype("f4"),
        np.dtype(">f8"),
        np.dtype("i8"),
        np.dtype("?"),
        np.dtype("c8"),
        np.dtype("S3"),
        h5py.string_dtype(),
        np.dtype([("a", "f4"), ("b", "i2")]),
        np.dtype("f2"),
    ]
)


@_FUZZ
@given(data=st.data())
@pytest.mark.parametrize("name", ["model.weights.h5", "legacy.h5"])
def test_keras_h5_files_with_any_datasets_and_attributes(runs, name, data):
    run = runs[name]
    run.write({})
    with h5py.File(run.path, "r+") as h5:
        datasets: list[str] = []
        h5.visititems(lambda path, obj: datasets.append(path) if isinstance(obj, h5py.Dataset) else None)
        for _ in range(data.draw(st.integers(1, 3))):
            target = data.draw(st.sampled_from(datasets))
            if target not in h5:
                continue
            parent, leaf = target.rsplit("/", 1)
            change = data.draw(st.sampled_from(["dataset", "attribute", "delete", "group"]))
            if change == "dataset":
                del h5[target]
                shape = tuple(data.draw(st.lists(st.integers(0, 4), max_size=3)))
                if data.draw(st.booleans()):  # declared huge, stored nowhere
                    h5[parent].create_dataset(leaf, shape=(2**31, 4), dtype="f4", chunks=(1024, 4))
                else:
                    h5[parent].create_dataset(leaf, shape=shape, dtype=data.draw(_DTYPES))
            elif change == "attribute":
                holder = data.draw(st.sampled_from([h5, h5[parent], h5[target]]))
                attribute = data.draw(st.sampled_from(["name", "dtype", "layer_names", "weight_names"]))
                holder.attrs[attribute] = data.draw(
                    st.sampled_from([3, b"x", "bfloat16", np.arange(3), np.array([b"nope"]), np.zeros((2, 2))])
                )
            elif change == "delete":
                del h5[parent]
            else:
                del h5[target]
                h5[parent].create_group(leaf)
    run.check()


def test_the_fixtures_read_whole(runs):
    """The undamaged files read, every variable loads, and scan attributes both lanes with no warning."""
    for run in runs.values():
        run.write({})
        checkpoint = read_checkpoint(str(run.path))
        assert all(v.load() is not None for v in checkpoint.variables)
        (report,) = scan(str(run.logdir))["runs"]
        assert report["warnings"] == []
        (collision,) = report["collisions"]
        assert all(lane["variable"] for lane in collision["lanes"]), collision
