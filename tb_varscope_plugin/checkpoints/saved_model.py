"""Reads SavedModel directories (`tf.saved_model.save`, Keras `model.export`): their `variables/` bundle is a
TF checkpoint with its object graph, read by the tensor bundle reader and reported as the directory."""

from __future__ import annotations

import dataclasses
import posixpath

from tb_varscope_plugin import filesystem
from tb_varscope_plugin.checkpoints.discovery import SAVED_MODEL_FILE, SAVED_MODEL_VARIABLES
from tb_varscope_plugin.checkpoints.tf_bundle import read_bundle
from tb_varscope_plugin.checkpoints.variables import Checkpoint, CheckpointError


def read_saved_model(directory: str) -> Checkpoint:
    """Reads the variable records of the SavedModel in `directory`, named from the object graph of its variables."""
    if not filesystem.exists(posixpath.join(directory, SAVED_MODEL_FILE)):
        raise CheckpointError(f"{directory}: not a SavedModel (no {SAVED_MODEL_FILE})")
    bundle = read_bundle(posixpath.join(directory, SAVED_MODEL_VARIABLES))
    return dataclasses.replace(bundle, path=directory, format="saved-model")


def saved_model_of(path: str) -> str | None:
    """The SavedModel directory whose `saved_model.pb` or variables prefix `path` is, if it is one."""
    if posixpath.basename(path) == SAVED_MODEL_FILE:
        return posixpath.dirname(path)
    if path.endswith("/" + SAVED_MODEL_VARIABLES):
        directory = path[: -len(SAVED_MODEL_VARIABLES) - 1]
        return directory if filesystem.exists(posixpath.join(directory, SAVED_MODEL_FILE)) else None
    return None
