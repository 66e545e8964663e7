"""Reads Keras weights: Keras 3 `.weights.h5` and `.keras` archives, and tf-keras (Keras 2) `.h5` weights."""

from __future__ import annotations

import io
import json
import lzma
import posixpath
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator

import h5py
import numpy as np

from tb_varscope_plugin.checkpoints.variables import (
    Checkpoint,
    CheckpointError,
    Variable,
    file_size,
    layer_scope,
    open_buffered,
    read_bytes,
    scoped_path,
    strip_output_index,
    widen_bfloat16,
)
from tb_varscope_plugin.filesystem import mtime

_ARCHIVE_WEIGHTS = "model.weights.h5"
_ARCHIVE_CONFIG = "config.json"
# Keras 3 saves a model's optimizer beside its layers; its variables are optimizer state.
_OPTIMIZER_GROUPS = frozenset({"optimizer"})
# h5py reports damage in an h5 file with these; they become CheckpointError.
_H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError, IndexError)
# What zipfile and its decompressors raise for a damaged or unsupported archive member: bad CRCs and headers
# (BadZipFile), flipped deflate bits (zlib.error), bzip2 and lzma damage (OSError, LZMAError), an encrypted member
# (RuntimeError), a compression method zipfile lacks (NotImplementedError).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    OSError,
    EOFError,
    RuntimeError,
    NotImplementedError,
    ValueError,
    KeyError,
    struct.error,
)
# A model's config.json is kilobytes; one past this is not a config. Keras stores weights uncompressed, and those
# are read in place; a member someone compressed is inflated into memory, so only up to this size.
_MAX_CONFIG = 16 * 1024 * 1024
_MAX_INFLATED_WEIGHTS = 256 * 1024 * 1024
# Deflate cannot shrink data more than ~1032:1, so a compressed dataset claiming more is damage, not data.
_MAX_DEFLATE_RATIO = 1100
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zipfile.structFileHeader
_LOCAL_MAGIC = b"PK\x03\x04"
_ENCRYPTED = 0x1
_NUMERIC_KINDS = "biuf"


def read_keras_file(path: str) -> Checkpoint:
    """Reads a `.keras` archive or an h5 weights file, by its name: what the HDF5 worker runs (see isolated.py)."""
    return read_keras_archive(path) if path.endswith(".keras") else read_weights_h5(path)


def read_weights_h5(path: str) -> Checkpoint:
    """Reads a Keras 3 `.weights.h5` or a tf-keras `save_weights('x.h5')` / `save('x.h5')` file."""
    return _read_h5(open_buffered(path), path, {}, "keras-weights-h5", "not a readable Keras weights file")


def read_keras_archive(path: str) -> Checkpoint:
    """Reads a Keras 3 `.keras` archive: `config.json` names the layers, `model.weights.h5` holds values."""
    try:
        with zipfile.ZipFile(open_buffered(path)) as archive:
            config = _parse_config(_inflate(archive, archive.getinfo(_ARCHIVE_CONFIG), _MAX_CONFIG), path)
            weights = _weights_member(archive, archive.getinfo(_ARCHIVE_WEIGHTS), path)
    except _ZIP_ERRORS as e:
        raise CheckpointError(f"{path}: not a readable .keras archive ({e})") from e
    return _read_h5(weights, path, _config_layer_names(config), "keras-v3", f"damaged {_ARCHIVE_WEIGHTS}")


def _read_h5(file: io.IOBase, path: str, config_names: dict[str, str], format: str, damage: str) -> Checkpoint:
    try:
        h5 = h5py.File(file, "r")
    except _H5_ERRORS as e:
        raise CheckpointError(f"{path}: {damage} ({e})") from e
    try:
        variables = _h5_variables(h5, path, config_names)
    except _H5_ERRORS as e:
        h5.close()
        raise CheckpointError(f"{path}: {damage} ({e})") from e
    except CheckpointError:
        h5.close()
        raise
    return Checkpoint(path=path, format=format, variables=variables, mtime=mtime(path), close=h5.close)


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    if info.flag_bits & _ENCRYPTED:
        return "is encrypted"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        return f"uses compression method {info.compress_type}, which zipfile cannot read"
    return None


def _inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    """A member's bytes, refusing more than `cap`: first by its declared size, then while inflating, since a
    member's declared size is only a claim (a zip bomb declares little and inflates to gigabytes)."""
    problem = _member_problem(info)
    if problem is None and info.file_size > cap:
        problem = f"declares {info.file_size} bytes, more than the {cap} read at most"
    if problem is not None:
        raise zipfile.BadZipFile(f"{info.filename} {problem}")
    chunks, total = [], 0
    with archive.open(info) as member:
        while chunk := member.read(min(1 << 20, cap + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                raise zipfile.BadZipFile(f"{info.filename} inflates past {cap} bytes")
    return b"".join(chunks)


def _weights_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: str) -> io.IOBase:
    """The archive's weights as a file for h5py: read in place when stored uncompressed (as Keras writes them),
    else inflated into memory up to a cap."""
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & _ENCRYPTED:
        return io.BytesIO(_inflate(archive, info, _MAX_INFLATED_WEIGHTS))
    # A stored member's bytes follow its local header, whose extra field may differ from the central directory's.
    header = _LOCAL_HEADER.unpack(read_bytes(path, info.header_offset, _LOCAL_HEADER.size))
    if header[0] != _LOCAL_MAGIC:
        raise zipfile.BadZipFile(f"{info.filename}: bad local file header")
    start = info.header_offset + _LOCAL_HEADER.size + header[10] + header[11]
    if info.compress_size != info.file_size or start + info.file_size > file_size(path):
        raise zipfile.BadZipFile(f"{info.filename}: stored member runs past the end of the archive")
    return open_buffered(path, start, info.file_size)


def _parse_config(raw: bytes, path: str) -> object:
    try:
        return json.loads(raw)
    except RecursionError as e:  # json's parser recurses once per level; a model's config nests a few dozen deep
        raise CheckpointError(f"{path}: {_ARCHIVE_CONFIG} is nested too deeply to be a model config") from e
    except ValueError as e:  # also UnicodeDecodeError
        raise CheckpointError(f"{path}: damaged {_ARCHIVE_CONFIG} ({e})") from e


def _h5_variables(h5: h5py.File, path: str, config_names: dict[str, str]) -> tuple[Variable, ...]:
    if "layer_names" in h5.attrs or "model_weights" in h5:
        return tuple(_legacy_variables(h5, path))
    if "vars" in h5 or "layers" in h5:
        return tuple(_keras3_variables(h5, path, config_names))
    raise CheckpointError(f"{path}: no Keras weights in this h5 file")


def _keras3_variables(h5: h5py.File, path: str, config_names: dict[str, str]) -> Iterator[Variable]:
    """Keras 3 stores each layer's own variables as `<attribute path>/vars/<i>`; the `vars` group's
    `name` attribute (newer Keras) or config.json gives the layer name, since the group path is made of
    class-derived names (`k3_layer_1`), and Keras 3 keeps no variable names at all.

    Walked with h5py's low-level calls, each object opened once from its parent: h5py's high-level objects cost
    seconds for a model of 20k layers. Only hard links are followed and each group is entered once, so a damaged
    file's link cycles or deep nesting end the walk instead of looping or exhausting the stack."""
    seen: set[int] = set()
    pending: list[tuple[h5py.h5g.GroupID, str, list[str], bool]] = [(h5.id, "", [], False)]
    while pending:
        group, where, scope, slot = pending.pop()
        own, children = None, []
        for link in group:
            if group.links.get_info(link).type != h5py.h5l.TYPE_HARD:
                continue
            member = h5py.h5o.open(group, link)
            if h5py.h5i.get_type(member) != h5py.h5i.GROUP or h5py.h5o.get_info(member).addr in seen:
                continue
            seen.add(h5py.h5o.get_info(member).addr)
            child = link.decode("utf-8", "replace")
            if child == "vars":
                own = member
            else:
                children.append((child, member))
        if own is not None:
            name = _attr_text(h5py.Group(own), "name") or config_names.get(where) or posixpath.basename(where)
            scope = [*scope, name] if name else scope
            layer = "/".join(scope) or None
            for index, dataset in sorted(_datasets(own), key=lambda item: _index_key(item[0])):
                key = posixpath.join(where, "vars", index)
                yield _dataset_variable(
                    dataset, path, posixpath.join(layer or "", "vars", index), key, None, layer, slot
                )
        for child, member in reversed(children):
            optimizer = not where and child in _OPTIMIZER_GROUPS
            # An optimizer's variables are named apart from the model (`adam/iteration`), so its scope restarts.
            pending.append((member, posixpath.join(where, child), [] if optimizer else scope, slot or optimizer))


def _datasets(group: h5py.h5g.GroupID) -> Iterator[tuple[str, h5py.h5d.DatasetID]]:
    for link in group:
        if group.links.get_info(link).type == h5py.h5l.TYPE_HARD:
            member = h5py.h5o.open(group, link)
            if h5py.h5i.get_type(member) == h5py.h5i.DATASET:
                yield link.decode("utf-8", "replace"), member


def _legacy_variables(h5: h5py.File, path: str) -> Iterator[Variable]:
    """tf-keras h5: root attr `layer_names`, each layer group's attr `weight_names` (`my_layer/kernel:0`),
    datasets at `<layer>/<weight name>`. A full-model save nests it all under `model_weights`."""
    root = h5.get("model_weights", h5)
    prefix = "model_weights/" if root is not h5 else ""
    for layer_name in map(_text, _text_list(root, "layer_names", path)):
        group = root[layer_name]
        if not isinstance(group, h5py.Group):
            raise CheckpointError(f"{path}: layer {layer_name!r} is not a group")
        weight_names = [_text(w) for w in _text_list(group, "weight_names", path)]
        names = [strip_output_index(w) for w in weight_names]
        scope = layer_scope(names)
        for weight_name, name in zip(weight_names, names, strict=True):
            variable_path = scoped_path(scope, name) if scope else None
            if variable_path is not None:
                layer = scope
            elif posixpath.dirname(name):
                variable_path, layer = name, posixpath.dirname(name)
            else:
                variable_path, layer = f"{layer_name}/{name}", layer_name
            key = f"{prefix}{layer_name}/{weight_name}"
            yield _dataset_variable(group[weight_name], path, variable_path, key, name, layer, False)


def _text_list(group: h5py.Group, attribute: str, path: str) -> list:
    """A list-of-names attribute (`layer_names`, `weight_names`); absent means none."""
    if attribute not in group.attrs:
        return []
    values = group.attrs[attribute]
    if not isinstance(values, np.ndarray) or values.ndim != 1:
        raise CheckpointError(f"{path}: attribute {attribute} of {group.name} is not a list of names")
    return list(values)


def _dataset_variable(
    dataset: object, file: str, path: str, key: str, name: str | None, layer: str | None, slot: bool
) -> Variable:
    """`dataset` as h5py opened it (a Dataset, or a low-level DatasetID), or whatever else a damaged file put there."""
    if isinstance(dataset, h5py.h5d.DatasetID):
        dataset = h5py.Dataset(dataset)
    if not isinstance(dataset, h5py.Dataset) or dataset.shape is None:
        raise CheckpointError(f"{file}: {key} is not an array of values")
    bfloat16 = _attr_text(dataset, "dtype") == "bfloat16"
    dtype = "float32" if bfloat16 else dataset.dtype.name
    return Variable(path, key, name, dataset.shape, dtype, layer, slot, _loader(dataset, f"{file}: {key}", bfloat16))


def _loader(dataset: h5py.Dataset, where: str, bfloat16: bool) -> Callable[[], np.ndarray]:
    """Loads a dataset's values once they are known to be numbers that its file really stores.

    `where` is named now: once the checkpoint is closed, the dataset can no longer say where it was."""

    def load() -> np.ndarray:
        try:
            kind, nbytes = dataset.dtype.kind, dataset.size * dataset.dtype.itemsize
            if kind not in _NUMERIC_KINDS:
                raise CheckpointError(f"{where}: holds {dataset.dtype} values, not numbers")
            stored = dataset.id.get_storage_size()
            filtered = dataset.id.get_create_plist().get_nfilters() > 0
            # Uncompressed values take their bytes in the file; compressed ones cannot expand past deflate's ratio.
            if nbytes > stored * (_MAX_DEFLATE_RATIO if filtered else 1):
                raise CheckpointError(f"{where}: claims {nbytes} bytes of values but the file stores {stored}")
            values = np.asarray(dataset[()])
        except _H5_ERRORS as e:
            raise CheckpointError(f"{where}: cannot be read ({e})") from e
        if bfloat16:
            # Keras writes bfloat16 as raw 2-byte values tagged with a `dtype` attribute.
            return widen_bfloat16(values)
        return values

    return load


def _config_layer_names(config: object) -> dict[str, str]:
    """Maps h5 group paths (`layers/dense_1`) to layer names from a `.keras` config.json, mirroring how
    Keras 3 names the groups of a Sequential's or Functional's layer list (snake_case class + counter).
    Anything in the config that is not shaped so (a `config` that is a string) names nothing."""
    names: dict[str, str] = {}
    pending: list[tuple[object, str]] = [(config, "")]
    while pending:
        layer, where = pending.pop()
        inner = layer.get("config") if isinstance(layer, dict) else None
        if not isinstance(layer, dict) or not isinstance(inner, dict):
            continue
        if isinstance(inner.get("name"), str):
            names[where] = inner["name"]
        children = inner.get("layers")
        if not isinstance(children, list):
            continue
        used: dict[str, int] = {}
        for child in children:
            if not isinstance(child, dict):
                continue
            class_name = str(child.get("class_name", ""))
            # A Sequential's layer list leaves out its InputLayer; a Functional's keeps it.
            if class_name == "InputLayer" and layer.get("class_name") == "Sequential":
                continue
            base = _snake_case(class_name)
            used[base] = used.get(base, -1) + 1
            group = base if used[base] == 0 else f"{base}_{used[base]}"
            pending.append((child, posixpath.join(where, "layers", group)))
    return names


def _snake_case(name: str) -> str:
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _index_key(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)


def _attr_text(obj: h5py.HLObject, name: str) -> str:
    # Asked before read: h5py raises (slowly, through HDF5's error stack) for a missing attribute.
    return _text(obj.attrs[name]) if h5py.h5a.exists(obj.id, name.encode()) else ""


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)
