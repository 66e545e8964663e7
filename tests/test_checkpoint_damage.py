"""Checkpoints damaged the ways issue 14 lists: each is a CheckpointError (a warning on the run), never a crash, and
the run is still reported. Every file starts as a real one from tests/data/checkpoints."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from damaged_checkpoints import (
    REAL,
    append_to_shard,
    colliding_run,
    copy_real,
    deflate_bomb,
    entry_bytes,
    mask_crc,
    peak_memory,
    rewrite_entry,
    string_crc,
    string_tensor,
    write_table,
    write_zip,
    zip_members,
)
from tensorboard.compat.proto import types_pb2

from tb_varscope_plugin import scan
from tb_varscope_plugin.checkpoints import keras_h5, safetensors_file
from tb_varscope_plugin.checkpoints.formats import read_checkpoint
from tb_varscope_plugin.checkpoints.tf_bundle import OBJECT_GRAPH_KEY, read_table
from tb_varscope_plugin.checkpoints.variables import CheckpointError, UnexpectedCheckpointError

_KERNEL = "optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE"


def _checkpoint_warnings(logdir: Path, file: Path) -> list[dict]:
    """The checkpoint warnings of the one run under `logdir`, which must be reported with its collision."""
    report = scan(str(logdir))
    (run,) = report["runs"]
    assert run["run"] == "run"
    assert [c["tag"] for c in run["collisions"]] in (["kernel"], ["weight"])
    warnings = [w for w in run["warnings"] if w["message"].startswith("checkpoint not read")]
    assert all(str(file) in w["file"] or str(file) in w["message"] for w in warnings)
    return warnings


def _damaged_tf_run(tmp_path: Path) -> tuple[Path, Path]:
    run = colliding_run(tmp_path, "tf/ckpt-1")
    return run, copy_real("tf/ckpt-1", run)


def _float_bytes(values: np.ndarray) -> tuple[bytes, int]:
    import google_crc32c

    raw = np.asarray(values, "<f4").tobytes()
    return raw, mask_crc(google_crc32c.value(raw))


# --- TF bundles: index entries with valid checksums but values that make no sense ---


def test_the_table_writer_rebuilds_tensorflows_own_index_byte_for_byte(tmp_path):
    # What makes the damaged indexes below faithful: TF's file, re-encoded by the test's writer, is unchanged.
    original = (REAL / "tf/ckpt-1.index").read_bytes()
    write_table(tmp_path / "x.index", read_table(str(REAL / "tf/ckpt-1.index")))
    assert (tmp_path / "x.index").read_bytes() == original


def test_an_unknown_dtype_is_a_warning_on_the_run(tmp_path):
    run, prefix = _damaged_tf_run(tmp_path)
    raw, crc = _float_bytes(np.ones((3, 3)))
    rewrite_entry(prefix, _KERNEL, entry_bytes(999, (3, 3), append_to_shard(prefix, raw), len(raw), crc))
    kernel = next(v for v in read_checkpoint(str(prefix)).variables if v.key == _KERNEL)
    assert kernel.dtype == "dtype 999"
    with pytest.raises(CheckpointError, match=r"ckpt-1.data-00000-of-00001: .* has unsupported dtype 999"):
        kernel.load()
    (warning,) = _checkpoint_warnings(tmp_path, prefix)
    assert "unsupported dtype 999" in warning["message"]


@pytest.mark.parametrize(
    ("dtype", "values"),
    [(types_pb2.DT_FLOAT, None), (types_pb2.DT_STRING, [b"a", b"b"])],
    ids=["float32", "two strings"],
)
def test_an_object_graph_that_is_not_one_string_is_a_warning(tmp_path, dtype, values):
    run, prefix = _damaged_tf_run(tmp_path)
    if values is None:
        raw, crc = _float_bytes(np.float32(1.5))
        shape: tuple[int, ...] = ()
    else:
        raw, crc, shape = string_tensor(values), string_crc(values), (len(values),)
    rewrite_entry(prefix, OBJECT_GRAPH_KEY, entry_bytes(dtype, shape, append_to_shard(prefix, raw), len(raw), crc))
    with pytest.raises(CheckpointError, match=r"ckpt-1.*object graph .* not one string"):
        read_checkpoint(str(prefix))
    (warning,) = _checkpoint_warnings(tmp_path, prefix)
    assert "object graph" in warning["message"]


def test_a_string_tensor_where_a_float_kernel_is_expected_is_a_warning(tmp_path):
    run, prefix = _damaged_tf_run(tmp_path)
    values = [b"x" * i for i in range(9)]
    raw = string_tensor(values)
    offset = append_to_shard(prefix, raw)
    rewrite_entry(prefix, _KERNEL, entry_bytes(types_pb2.DT_STRING, (3, 3), offset, len(raw), string_crc(values)))
    kernel = next(v for v in read_checkpoint(str(prefix)).variables if v.key == _KERNEL)
    with pytest.raises(CheckpointError, match="holds strings, not numbers"):
        kernel.load()
    (warning,) = _checkpoint_warnings(tmp_path, prefix)
    assert "holds strings" in warning["message"]


@pytest.mark.parametrize(
    "shape",
    [(-1, 9), (2**40, 3), (2**62, 2**62), (3, 3, 2**63 - 1)],
    ids=["negative", "2^40 x 3", "overflowing product", "int64 max"],
)
def test_a_shape_that_the_bytes_cannot_hold_is_refused_before_reading(tmp_path, shape):
    run, prefix = _damaged_tf_run(tmp_path)
    raw, crc = _float_bytes(np.ones(9))
    rewrite_entry(prefix, _KERNEL, entry_bytes(types_pb2.DT_FLOAT, shape, append_to_shard(prefix, raw), len(raw), crc))
    found, peak = peak_memory(lambda: [v.load() for v in read_checkpoint(str(prefix)).variables])
    assert isinstance(found, CheckpointError), found
    assert peak < 5_000_000
    assert _checkpoint_warnings(tmp_path, prefix)


def test_an_entry_past_the_end_of_its_shard_is_refused_before_reading(tmp_path):
    run, prefix = _damaged_tf_run(tmp_path)
    rewrite_entry(prefix, _KERNEL, entry_bytes(types_pb2.DT_FLOAT, (2**30,), 0, 2**32, 0))
    found, peak = peak_memory(lambda: read_checkpoint(str(prefix)))
    assert isinstance(found, CheckpointError) and "truncated" in str(found)
    assert peak < 5_000_000
    assert _checkpoint_warnings(tmp_path, prefix)


# --- safetensors: headers that parse as JSON but are not what the format allows ---


def _safetensors_run(tmp_path: Path, edit) -> Path:
    """A run beside a copy of the real safetensors file, its header replaced by `edit(header)` (bytes or a dict)."""
    colliding_run(tmp_path, "model.safetensors")
    path = copy_real("model.safetensors", tmp_path / "run")
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = edit(json.loads(raw[8 : 8 + size]))
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + size :])
    return path


def _set(name: str, field: str, value):
    def edit(header: dict) -> dict:
        header[name][field] = value
        return header

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda header: b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (lambda header: {**header, "__metadata__": json.loads("[" * 500 + "]" * 500)}, None),
        (_set("0.weight", "shape", [2**64]), "wrong size"),
        (_set("0.weight", "shape", [9.5]), "unsupported or damaged"),
        (_set("0.weight", "shape", [9.0]), "unsupported or damaged"),
        (_set("0.weight", "shape", [-3, -3]), "unsupported or damaged"),
        (_set("0.weight", "shape", [True, 9]), "unsupported or damaged"),
        (_set("0.weight", "data_offsets", [0.0, 36.0]), "unsupported or damaged"),
        (_set("0.weight", "data_offsets", ["0", "36"]), "unsupported or damaged"),
        (_set("0.weight", "dtype", ["F32"]), "unsupported or damaged"),
        (lambda header: {**header, "0.weight": "F32"}, "unsupported or damaged"),
    ],
    ids=[
        "nested 100k deep",
        "metadata nested 500 deep",
        "2^64",
        "9.5",
        "9.0",
        "negative",
        "bool",
        "float offsets",
        "string offsets",
        "list dtype",
        "entry not an object",
    ],
)
def test_a_damaged_safetensors_header_is_a_warning_on_the_run(tmp_path, edit, message):
    path = _safetensors_run(tmp_path, edit)
    if message is None:  # metadata is free-form: a deep one is not damage, and the tensors still read
        assert len(read_checkpoint(str(path)).variables) == 4
        assert _checkpoint_warnings(tmp_path, path) == []
        return
    with pytest.raises(CheckpointError, match=f"model.safetensors: .*{message}"):
        read_checkpoint(str(path))
    (warning,) = _checkpoint_warnings(tmp_path, path)
    assert message in warning["message"]


# --- Keras `.weights.h5`: datasets that are not numbers, and very many layers ---


def _h5_run(tmp_path: Path, name: str = "model.weights.h5") -> Path:
    colliding_run(tmp_path, name)
    return copy_real(name, tmp_path / "run")


@pytest.mark.parametrize(
    "dtype",
    [h5py.string_dtype(), np.dtype([("a", "<f4"), ("b", "<i4")]), np.dtype("S4")],
    ids=["variable-length strings", "compound", "fixed-length strings"],
)
def test_a_dataset_of_a_candidates_size_that_is_not_numbers_is_a_warning(tmp_path, dtype):
    path = _h5_run(tmp_path)
    with h5py.File(path, "r+") as h5:
        del h5["layers/dense/vars/0"]
        h5["layers/dense/vars"].create_dataset("0", shape=(3, 3), dtype=dtype)
    kernel = next(v for v in read_checkpoint(str(path)).variables if v.key == "layers/dense/vars/0")
    with pytest.raises(CheckpointError, match="model.weights.h5: layers/dense/vars/0: holds .* not numbers"):
        kernel.load()
    (warning,) = _checkpoint_warnings(tmp_path, path)
    assert "not numbers" in warning["message"]


def test_a_dataset_claiming_more_values_than_its_file_stores_is_refused_before_reading(tmp_path):
    path = _h5_run(tmp_path)
    with h5py.File(path, "r+") as h5:
        del h5["layers/dense/vars/0"]
        # Chunked and never written: HDF5 would hand back 2^34 fill values (64 GiB) from a few bytes of file.
        h5["layers/dense/vars"].create_dataset("0", shape=(2**32, 4), dtype="f4", chunks=(1024, 4))
    kernel = next(v for v in read_checkpoint(str(path)).variables if v.key == "layers/dense/vars/0")
    found, peak = peak_memory(kernel.load)
    assert isinstance(found, CheckpointError) and "claims 68719476736 bytes" in str(found)
    assert peak < 5_000_000


def test_many_layers_open_each_object_once(tmp_path, monkeypatch):
    path = tmp_path / "many.weights.h5"
    layers = 2000
    with h5py.File(path, "w") as h5:
        h5.create_group("vars")
        for i in range(layers):
            own = h5.create_group(f"layers/dense_{i}/vars")
            own.attrs["name"] = f"dense_{i}"
            own.create_dataset("0", data=np.full((2, 2), i, "f4"))
    opened = []
    real_open = h5py.h5o.open
    monkeypatch.setattr(h5py.h5o, "open", lambda *a, **k: opened.append(a[1]) or real_open(*a, **k))
    # The reader itself, in this process: read_checkpoint has a worker process read h5 files (isolated.py).
    variables = keras_h5.read_weights_h5(str(path)).variables
    assert [v.path for v in variables[:2]] == ["dense_0/vars/0", "dense_1/vars/0"]
    assert len(variables) == layers
    # Per layer its group, its `vars` and its dataset, once each; the rest is the file's root, `layers`, `vars`.
    assert 3 * layers <= len(opened) <= 3 * layers + 6


def test_groups_linked_in_a_cycle_are_walked_once(tmp_path):
    path = copy_real("model.weights.h5", tmp_path)
    with h5py.File(path, "r+") as h5:
        h5["layers/dense/loop"] = h5["layers"]  # a hard link back up: the file's tree becomes a cycle
        h5["layers/dense/soft"] = h5py.SoftLink("/layers")
    assert len(read_checkpoint(str(path)).variables) == len(read_checkpoint(str(REAL / "model.weights.h5")).variables)


def test_a_legacy_layer_name_naming_a_dataset_is_a_warning(tmp_path):
    path = _h5_run(tmp_path, "legacy.h5")
    with h5py.File(path, "r+") as h5:
        h5.attrs["layer_names"] = [b"dense", b"dense_1/dense_1/kernel:0"]
    with pytest.raises(CheckpointError, match="legacy.h5: layer 'dense_1/dense_1/kernel:0' is not a group"):
        read_checkpoint(str(path))
    assert _checkpoint_warnings(tmp_path, path)


# --- Keras `.keras` archives: damaged, hostile or oversized members ---


def _keras_run(tmp_path: Path, edit) -> Path:
    """A run beside a `.keras` rebuilt from the real one's members, `edit(members)` giving write_zip's list."""
    colliding_run(tmp_path, "model.keras")
    path = tmp_path / "run" / "model.keras"
    write_zip(path, edit(zip_members(REAL / "model.keras")))
    return path


def _stored(members: dict[str, bytes], **overrides) -> list[tuple[str, bytes, dict]]:
    """The members as Keras writes them (stored), `overrides[name]` applied to one."""
    return [
        (n, d, {"method": zipfile.ZIP_STORED, **overrides.get(n.replace(".", "_"), {})}) for n, d in members.items()
    ]


def test_every_bit_flip_in_a_deflated_archive_is_a_warning_or_reads(tmp_path):
    path = _keras_run(tmp_path, lambda members: [(n, d, {}) for n, d in members.items()])
    original = path.read_bytes()
    errors = 0
    for position in range(30, len(original) - 200, max(1, len(original) // 150)):
        damaged = bytearray(original)
        damaged[position] ^= 1 << (position % 8)
        path.write_bytes(bytes(damaged))
        try:
            [v.load() for v in read_checkpoint(str(path)).variables]
        except CheckpointError as error:
            assert "model.keras" in str(error)
            errors += 1
    assert errors > 100  # nearly every flip in deflated data or its CRC is caught


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"config_json": {"flags": 1}}, "config.json is encrypted"),
        ({"model_weights_h5": {"flags": 1}}, "model.weights.h5 is encrypted"),
        ({"config_json": {"method": 99}}, "config.json uses compression method 99"),
        ({"model_weights_h5": {"method": 99}}, "model.weights.h5 uses compression method 99"),
    ],
    ids=["encrypted config", "encrypted weights", "method 99 config", "method 99 weights"],
)
def test_an_encrypted_or_unknown_compression_member_is_a_warning(tmp_path, overrides, message):
    path = _keras_run(tmp_path, lambda members: _stored(members, **overrides))
    with pytest.raises(CheckpointError, match=f"model.keras: .*{message}"):
        read_checkpoint(str(path))
    (warning,) = _checkpoint_warnings(tmp_path, path)
    assert message in warning["message"]


@pytest.mark.parametrize(
    ("member", "overrides", "message"),
    [
        ("config_json", {"method": 8, "raw": deflate_bomb(2 << 30), "file_size": 2 << 30, "crc": 0}, "declares"),
        ("config_json", {"method": 8, "raw": deflate_bomb(64 << 20), "file_size": 1000, "crc": 0}, "Bad CRC-32"),
        ("model_weights_h5", {"method": 8, "raw": deflate_bomb(2 << 30), "file_size": 2 << 30, "crc": 0}, "declares"),
        ("config_json", {"raw": b"{", "file_size": 1 << 30, "sparse": (1 << 30) - 1}, "declares 1073741824 bytes"),
    ],
    ids=["2 MB bomb declaring 2 GiB", "bomb declaring 1000 bytes", "weights bomb", "1 GiB config.json"],
)
def test_a_member_too_large_to_inflate_is_refused_with_little_memory(tmp_path, member, overrides, message):
    path = _keras_run(tmp_path, lambda members: _stored(members, **{member: overrides}))
    found, peak = peak_memory(lambda: read_checkpoint(str(path)))
    assert isinstance(found, CheckpointError) and message in str(found), found
    assert peak < 20_000_000
    assert _checkpoint_warnings(tmp_path, path)


@pytest.mark.parametrize(
    ("config", "message"),
    [(b"[" * 100_000 + b"]" * 100_000, "config.json is nested too deeply"), (b"\xff{}", "damaged config.json")],
    ids=["nested 100k deep", "not UTF-8"],
)
def test_a_config_that_does_not_parse_is_a_warning(tmp_path, config, message):
    path = _keras_run(tmp_path, lambda members: _stored({**members, "config.json": config}))
    with pytest.raises(CheckpointError, match=f"model.keras: {message}"):
        read_checkpoint(str(path))
    (warning,) = _checkpoint_warnings(tmp_path, path)
    assert message in warning["message"]


def _strip_layer_name_attributes(members: dict[str, bytes], tmp_path: Path) -> dict[str, bytes]:
    weights = tmp_path / "weights.h5"
    weights.write_bytes(members["model.weights.h5"])
    with h5py.File(weights, "r+") as h5:
        for group in ("vars", "layers/dense/vars", "layers/dense_1/vars"):
            del h5[group].attrs["name"]
    return {**members, "model.weights.h5": weights.read_bytes()}


@pytest.mark.parametrize(
    ("edit", "model"),
    [
        (lambda config: {**config, "config": "sequential"}, ""),
        (lambda config: {**config, "config": {**config["config"], "layers": "dense"}}, "sequential/"),
        (
            lambda config: {**config, "config": {**config["config"], "layers": [{"class_name": "Dense", "config": 3}]}},
            "sequential/",
        ),
        (lambda config: json.loads("[" * 900 + "]" * 900), ""),
    ],
    ids=["model config a string", "layers a string", "layer config a number", "nested 900 deep"],
)
def test_a_config_of_the_wrong_shape_names_nothing_and_the_weights_still_read(tmp_path, edit, model):
    def rebuild(members):
        members = _strip_layer_name_attributes(members, tmp_path)  # so the config is what would name the layers
        config = edit(json.loads(members["config.json"]))
        return _stored({**members, "config.json": json.dumps(config).encode()})

    path = _keras_run(tmp_path, rebuild)
    variables = [v for v in read_checkpoint(str(path)).variables if not v.slot]
    # With neither attribute nor config, a layer is named after its h5 group; the model after its config, if any.
    assert [v.layer for v in variables] == [f"{model}dense", f"{model}dense", f"{model}dense_1", f"{model}dense_1"]
    assert _checkpoint_warnings(tmp_path, path) == []


# --- the last resort: what a reader did not foresee is still only a warning ---


def test_an_exception_a_reader_did_not_foresee_is_a_warning_naming_the_file(tmp_path, monkeypatch):
    colliding_run(tmp_path, "model.safetensors")
    path = copy_real("model.safetensors", tmp_path / "run")

    def broken_reader(_path: str):
        raise ZeroDivisionError("a reader's own bug")

    monkeypatch.setattr(safetensors_file, "read_safetensors", broken_reader)
    with pytest.raises(UnexpectedCheckpointError, match=r"model.safetensors: cannot be read \(ZeroDivisionError"):
        read_checkpoint(str(path))
    (warning,) = _checkpoint_warnings(tmp_path, path)
    assert "ZeroDivisionError: a reader's own bug" in warning["message"]


def test_a_load_that_fails_unforeseen_is_a_warning_naming_the_file(tmp_path, monkeypatch):
    colliding_run(tmp_path, "model.safetensors")
    path = copy_real("model.safetensors", tmp_path / "run")
    monkeypatch.setattr(safetensors_file, "_loader", lambda *args: lambda: 1 / 0)
    kernel = next(v for v in read_checkpoint(str(path)).variables if v.key == "0.weight")
    with pytest.raises(UnexpectedCheckpointError, match=r"model.safetensors: cannot be read \(ZeroDivisionError"):
        kernel.load()
    (warning,) = _checkpoint_warnings(tmp_path, path)
    assert "ZeroDivisionError" in warning["message"]
