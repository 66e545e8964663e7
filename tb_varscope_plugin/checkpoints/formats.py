"""Reads a checkpoint of any supported format: picks the format reader from the path and returns its variables."""

from __future__ import annotations

import re

from tensorboard.compat.tensorflow_stub.io import gfile

from tb_varscope_plugin.checkpoints import keras_h5, safetensors_file, saved_model, tf_bundle, torch_pickle
from tb_varscope_plugin.checkpoints.discovery import (
    KERAS_SUFFIXES,
    SAFETENSORS_SUFFIX,
    TORCH_SUFFIXES,
    candidates,
    newest,
)
from tb_varscope_plugin.checkpoints.variables import Checkpoint, CheckpointError

_DATA_FILE = re.compile(r"\.data-\d+-of-\d+$")


def read_checkpoint(path: str) -> Checkpoint:
    """Reads the variables of the checkpoint at `path` (a TF prefix, `.index`, state-file directory, SavedModel
    directory, `.weights.h5`/`.h5`, `.keras`, `.safetensors`, or a PyTorch `.pt`/`.pth`/`.bin`)."""
    path = path.rstrip("/") or path
    if gfile.isdir(path):
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
    if path.endswith(TORCH_SUFFIXES):
        return torch_pickle.read_torch(path)
    if path.endswith(SAFETENSORS_SUFFIX):
        return safetensors_file.read_safetensors(path)
    if path.endswith(".keras"):
        return keras_h5.read_keras_archive(path)
    if path.endswith(KERAS_SUFFIXES):
        return keras_h5.read_weights_h5(path)
    if gfile.exists(path + ".index"):
        return tf_bundle.read_bundle(path)
    raise CheckpointError(f"{path}: not a checkpoint (no such file, and no {path}.index)")
