"""The names a user is shown for checkpoint variables and their layers: each variable's own path, except where
layers share one name (sonnet 2 and `tf.Module` in eager mode, Keras 3 blocks with a default name); those are shown
by the shortest tail of their object-graph or weights-file path that tells them apart (`trunk/0/w`, `trunk/1/w`).
"""

from __future__ import annotations

import posixpath
import re

from tb_varscope_plugin.checkpoints.variables import Checkpoint, Variable

_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"  # a TF object-based checkpoint key: object path + this
_KERAS3_VARS = re.compile(r"/vars/\d+$")  # a Keras 3 weights file key: layer path + `vars/<i>`


def parent_path(path: str) -> str:
    """What comes before the last `/` or `.` of a path (`sequential/dense`, `encoder.fc`), `` at the top."""
    return path[: max(path.rfind("/"), path.rfind("."), 0)]


def layer_of(v: Variable) -> str:
    """The layer the variable's own names put it in."""
    return v.layer if v.layer is not None else parent_path(v.path)


class ShownNames:
    """The layer and path shown for each of a checkpoint's layer weights."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        weights = [v for v in checkpoint.variables if not v.slot]
        keys_of: dict[str, set[str]] = {}
        for v in weights:
            keys_of.setdefault(v.path, set()).add(v.key)
        # A layer is shared when two of its variables' paths name different tensors; all of its variables are then
        # shown by where they are stored, so one layer's weights stay together.
        shared = {layer_of(v) for v in weights if len(keys_of[v.path]) > 1}
        members: dict[str, list[Variable]] = {}
        for v in weights:
            if layer_of(v) in shared:
                members.setdefault(layer_of(v), []).append(v)
        self._layers: dict[str, str] = {}  # key -> the layer shown, for variables of shared layers only
        for group in members.values():
            homes = {v.key: _stored_layer(v) for v in group}
            length = _telling_length(sorted(set(homes.values())))
            for v in group:
                home = homes[v.key]
                start = max(len(home) - length, 0)
                # `0` alone says little: a tail starts at a name (`trunk/0`), not at an index.
                while start > 0 and home[start].isdigit():
                    start -= 1
                self._layers[v.key] = "/".join(home[start:])

    def renamed(self, v: Variable) -> bool:
        """Whether the variable's own path is shared with another tensor, so it is shown by where it is stored."""
        return v.key in self._layers

    def layer(self, v: Variable) -> str:
        return self._layers.get(v.key, layer_of(v))

    def path(self, v: Variable, leaf: str | None = None) -> str:
        """The variable's path as shown; `leaf` names a variable stored without a name (`vars/0`) in its layer."""
        if v.key in self._layers:
            return f"{self._layers[v.key]}/{leaf or _leaf(v)}"
        if leaf is not None and v.layer:
            return f"{v.layer}/{leaf}"
        return v.path


def _stored_layer(v: Variable) -> tuple[str, ...]:
    """Where the variable's layer is stored: the object path of a TF checkpoint, the group path of a weights file."""
    key = v.key[: -len(_VALUE_SUFFIX)] if v.key.endswith(_VALUE_SUFFIX) else v.key
    match = _KERAS3_VARS.search(key)
    layer = key[: match.start()] if match else posixpath.dirname(key)
    return tuple(s for s in layer.split("/") if s)


def _telling_length(homes: list[tuple[str, ...]]) -> int:
    """The fewest trailing segments that make every path of `homes` different from the others."""
    longest = max((len(h) for h in homes), default=0)
    for length in range(1, longest + 1):
        if len({h[-length:] for h in homes}) == len(homes):
            return length
    return longest


def _leaf(v: Variable) -> str:
    layer = layer_of(v)
    return v.path[len(layer) + 1 :] if layer and v.path.startswith(layer) else posixpath.basename(v.path)
