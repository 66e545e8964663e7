"""Reads Keras weights: Keras 3 `.weights.h5` and `.keras` archives, and tf-keras (Keras 2) `.h5` weights."""

from __future__ import annotations

import io
import json
import posixpath
import re
import zipfile
from collections.abc import Callable, Iterator

import h5py
import numpy as np

from tb_varscope_plugin.checkpoints.variables import (
    Checkpoint,
    CheckpointError,
    Variable,
    layer_scope,
    open_buffered,
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
_H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError)


def read_weights_h5(path: str) -> Checkpoint:
    """Reads a Keras 3 `.weights.h5` or a tf-keras `save_weights('x.h5')` / `save('x.h5')` file."""
    try:
        h5 = h5py.File(open_buffered(path), "r")
        variables = _h5_variables(h5, path, {})
    except _H5_ERRORS as e:
        raise CheckpointError(f"{path}: not a readable Keras weights file ({e})") from e
    return Checkpoint(path=path, format="keras-weights-h5", variables=variables, mtime=mtime(path), close=h5.close)


def read_keras_archive(path: str) -> Checkpoint:
    """Reads a Keras 3 `.keras` archive: `config.json` names the layers, `model.weights.h5` holds values."""
    try:
        with zipfile.ZipFile(open_buffered(path)) as archive:
            config = json.loads(archive.read(_ARCHIVE_CONFIG))
            weights = io.BytesIO(archive.read(_ARCHIVE_WEIGHTS))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError) as e:
        raise CheckpointError(f"{path}: not a readable .keras archive ({e})") from e
    try:
        h5 = h5py.File(weights, "r")
        variables = _h5_variables(h5, path, _config_layer_names(config))
    except _H5_ERRORS as e:
        raise CheckpointError(f"{path}: damaged {_ARCHIVE_WEIGHTS} ({e})") from e
    return Checkpoint(path=path, format="keras-v3", variables=variables, mtime=mtime(path), close=h5.close)


def _h5_variables(h5: h5py.File, path: str, config_names: dict[str, str]) -> tuple[Variable, ...]:
    if "layer_names" in h5.attrs or "model_weights" in h5:
        return tuple(_legacy_variables(h5))
    if "vars" in h5 or "layers" in h5:
        return tuple(_keras3_variables(h5, "", [], False, config_names))
    raise CheckpointError(f"{path}: no Keras weights in this h5 file")


def _keras3_variables(
    group: h5py.Group, where: str, scope: list[str], slot: bool, config_names: dict[str, str]
) -> Iterator[Variable]:
    """Keras 3 stores each layer's own variables as `<attribute path>/vars/<i>`; the `vars` group's
    `name` attribute (newer Keras) or config.json gives the layer name, since the group path is made of
    class-derived names (`k3_layer_1`), and Keras 3 keeps no variable names at all."""
    if "vars" in group:
        own = group["vars"]
        name = _text(own.attrs.get("name")) or config_names.get(where) or posixpath.basename(where)
        scope = [*scope, name] if name else scope
        layer = "/".join(scope) or None
        for index in sorted(own, key=_index_key):
            dataset = own[index]
            if isinstance(dataset, h5py.Dataset):
                key = posixpath.join(where, "vars", index)
                path = posixpath.join(layer or "", "vars", index)
                yield _dataset_variable(dataset, path, key, None, layer, slot)
    for child in group:
        member = group[child]
        if child == "vars" or not isinstance(member, h5py.Group):
            continue
        optimizer = not where and child in _OPTIMIZER_GROUPS
        # An optimizer's variables are named apart from the model (`adam/iteration`), so its scope restarts.
        child_scope = [] if optimizer else scope
        yield from _keras3_variables(member, posixpath.join(where, child), child_scope, slot or optimizer, config_names)


def _legacy_variables(h5: h5py.File) -> Iterator[Variable]:
    """tf-keras h5: root attr `layer_names`, each layer group's attr `weight_names` (`my_layer/kernel:0`),
    datasets at `<layer>/<weight name>`. A full-model save nests it all under `model_weights`."""
    root = h5.get("model_weights", h5)
    prefix = "model_weights/" if root is not h5 else ""
    for layer_name in map(_text, root.attrs["layer_names"]):
        group = root[layer_name]
        weight_names = [_text(w) for w in group.attrs.get("weight_names", [])]
        names = [strip_output_index(w) for w in weight_names]
        scope = layer_scope(names)
        for weight_name, name in zip(weight_names, names, strict=True):
            path = scoped_path(scope, name) if scope else None
            if path is not None:
                layer = scope
            elif posixpath.dirname(name):
                path, layer = name, posixpath.dirname(name)
            else:
                path, layer = f"{layer_name}/{name}", layer_name
            key = f"{prefix}{layer_name}/{weight_name}"
            yield _dataset_variable(group[weight_name], path, key, name, layer, False)


def _dataset_variable(
    dataset: h5py.Dataset, path: str, key: str, name: str | None, layer: str | None, slot: bool
) -> Variable:
    bfloat16 = _text(dataset.attrs.get("dtype")) == "bfloat16"
    dtype = "float32" if bfloat16 else dataset.dtype.name
    return Variable(path, key, name, tuple(dataset.shape), dtype, layer, slot, _loader(dataset, bfloat16))


def _loader(dataset: h5py.Dataset, bfloat16: bool) -> Callable[[], np.ndarray]:
    # Named now: once the checkpoint is closed, the dataset can no longer say where it was.
    where = f"{dataset.file.filename}: {dataset.name}"

    def load() -> np.ndarray:
        try:
            values = np.asarray(dataset[()])
        except _H5_ERRORS as e:
            raise CheckpointError(f"{where}: cannot be read ({e})") from e
        if bfloat16:
            # Keras writes bfloat16 as raw 2-byte values tagged with a `dtype` attribute.
            return widen_bfloat16(values)
        return values

    return load


def _config_layer_names(config: dict) -> dict[str, str]:
    """Maps h5 group paths (`layers/dense_1`) to layer names from a `.keras` config.json, mirroring how
    Keras 3 names the groups of a Sequential's or Functional's layer list (snake_case class + counter)."""
    names: dict[str, str] = {}

    def visit(layer: dict, where: str) -> None:
        inner = layer.get("config", {}) if isinstance(layer, dict) else {}
        if isinstance(inner.get("name"), str):
            names[where] = inner["name"]
        children = inner.get("layers")
        if not isinstance(children, list):
            return
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
            visit(child, posixpath.join(where, "layers", group))

    visit(config, "")
    return names


def _snake_case(name: str) -> str:
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _index_key(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)
