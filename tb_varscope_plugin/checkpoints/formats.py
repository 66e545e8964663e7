"""Reads a checkpoint of any supported format: picks the format reader from the path and returns its variables."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import numpy as np

from tb_varscope_plugin import filesystem
from tb_varscope_plugin.checkpoints import saved_model, tf_bundle
from tb_varscope_plugin.checkpoints.discovery import (
    KERAS_SUFFIXES,
    SAFETENSORS_SUFFIX,
    TORCH_SUFFIXES,
    candidates,
    newest,
)
from tb_varscope_plugin.checkpoints.variables import Checkpoint, CheckpointError, unexpected

_DATA_FILE = re.compile(r"\.data-\d+-of-\d+$")


def read_checkpoint(path: str) -> Checkpoint:
    """Reads the variables of the checkpoint at `path` (a TF prefix, `.index`, state-file directory, SavedModel
    directory, `.weights.h5`/`.h5`, `.keras`, `.safetensors`, or a PyTorch `.pt`/`.pth`/`.bin`).

    Raises only CheckpointError, and the variables' `load()` too. Each reader turns the damage it knows into a
    CheckpointError with the file and what is wrong; this is the last resort behind them. They parse untrusted bytes
    through h5py, zipfile, protobuf and numpy, whose exceptions are no closed set (h5py maps HDF5's errors onto
    several builtin classes, zipfile raises whatever its decompressors do), and a damaged checkpoint must stay a
    warning on its run, never a crash of the scan or of TensorBoard's reader thread."""
    try:
        checkpoint = _read(path)
    except CheckpointError:
        raise
    except Exception as error:
        raise unexpected(path, error) from error
    guarded = tuple(dataclasses.replace(v, load=_guarded(v.load, path)) for v in checkpoint.variables)
    return dataclasses.replace(checkpoint, variables=guarded)


def _guarded(load: Callable[[], np.ndarray], path: str) -> Callable[[], np.ndarray]:
    def guarded_load() -> np.ndarray:
        try:
            return load()
        except CheckpointError:
            raise
        except Exception as error:
            raise unexpected(path, error) from error

    return guarded_load


def _read(path: str) -> Checkpoint:
    path = path.rstrip("/") or path
    if filesystem.isdir(path):
        found = newest(candidates(path))
        if found is None:
            raise CheckpointError(f"{path}: no checkpoint in this directory")
        if found == path:  # the directory itself is a SavedModel
            return saved_model.read_saved_model(path)
        path = found
    if path.endswith(".index"):
        path = path[: -len(".index")]
    elif _DATA_FILE.search(path):
        path = _DATA_FILE.sub("", path)
    exported = saved_model.saved_model_of(path)
    if exported is not None:
        return saved_model.read_saved_model(exported)
    # Each reader is imported when a file of its kind is read: most logdirs hold none of most kinds, and a scan's
    # start-up would pay for all of them (h5py, with HDF5 under it, is a sixth of a scan's memory).
    if path.endswith(TORCH_SUFFIXES):
        from tb_varscope_plugin.checkpoints import torch_pickle

        return torch_pickle.read_torch(path)
    if path.endswith(SAFETENSORS_SUFFIX):
        from tb_varscope_plugin.checkpoints import safetensors_file

        return safetensors_file.read_safetensors(path)
    if path.endswith(KERAS_SUFFIXES):
        from tb_varscope_plugin.checkpoints import isolated

        return isolated.read_h5(path)  # libhdf5 may never return from a damaged file: a worker reads it
    if filesystem.exists(path + ".index"):
        return tf_bundle.read_bundle(path)
    raise CheckpointError(f"{path}: not a checkpoint (no such file, and no {path}.index)")
