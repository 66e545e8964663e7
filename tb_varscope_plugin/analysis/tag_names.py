"""Tag-name forms: the variable path a histogram tag spells once each writer's decorations are removed."""

from __future__ import annotations

import re
from functools import lru_cache

from tb_varscope_plugin.checkpoints.variables import strip_output_index

_SEGMENT_SPLIT = re.compile(r"[/.]")
_HISTOGRAM_SUFFIX = "/histogram"
_REPLICA_SUFFIX = re.compile(r"[:_]\d+$")  # `:0` of a TF variable name, `_0` once a callback made `:` a `_`


# Runs of one logdir mostly log the same tags: each tag's forms are worked out once, not once per run.
@lru_cache(maxsize=1 << 16)
def tag_forms(tag: str) -> tuple[tuple[str, ...], ...]:
    """The segments a tag may stand for once logging decorations are removed, most literal first.

    `my_variable1_0/histogram` -> [`my_variable1_0`], [`my_variable1`]; `0.weight` -> [`0`, `weight`].
    """
    base = tag[: -len(_HISTOGRAM_SUFFIX)] if tag.endswith(_HISTOGRAM_SUFFIX) else tag
    forms = [base]
    stripped = _REPLICA_SUFFIX.sub("", base)
    if stripped and stripped != base:
        forms.append(stripped)
    return tuple(tuple(s for s in _SEGMENT_SPLIT.split(f) if s) for f in forms)


@lru_cache(maxsize=1 << 16)
def tag_base(tag: str) -> str:
    """The variable path a tag spells, without `/histogram` and the `:0`/`_0` the writer added to it."""
    if tag.endswith(_HISTOGRAM_SUFFIX):
        return _REPLICA_SUFFIX.sub("", tag[: -len(_HISTOGRAM_SUFFIX)]) or tag
    return strip_output_index(tag) or tag


def name_segments(name: str) -> list[str]:
    return [s for s in _SEGMENT_SPLIT.split(strip_output_index(name)) if s]


@lru_cache(maxsize=1 << 16)
def tag_leaf(tag: str) -> str:
    """The tag's own name without scopes or decorations: `kernel` for `kernel/histogram`."""
    form = tag_forms(tag)[-1]
    return form[-1] if form else tag


# Words that mark a tag as a gradient (`grad/weight`, `kernel/gradient`, `x_grad`, `kernel_grad`).
_GRADIENT_WORDS = frozenset({"grad", "grads", "gradient", "gradients"})
# Words that mark a tag as activations (`act/Linear`, `activations/dense`); `output` is not one: Keras users name
# output layers so.
_ACTIVATION_WORDS = frozenset({"act", "acts", "activation", "activations"})
_WORD_SPLIT = re.compile(r"[/._:]")
_CLASS_NAME = re.compile(r"^[A-Z][a-z0-9]*[A-Z]?[A-Za-z0-9]*$")  # `Linear`, `Conv2d`, `ReLU`, `LayerNorm`


def tag_words(tag: str) -> list[str]:
    return [w for w in _WORD_SPLIT.split(tag) if w]


@lru_cache(maxsize=4096)  # asked of every colliding tag by attribution, siblings and explanations
def is_gradient(tag: str) -> bool:
    """The tag names gradients: no checkpoint holds its values."""
    return any(w.lower() in _GRADIENT_WORDS for w in tag_words(tag))


@lru_cache(maxsize=4096)
def is_activation(tag: str) -> bool:
    """The tag names a module's outputs (a forward hook's): no variable is behind its values.

    A word like `act` or a last segment spelled like a module class (`act/Linear`, `Conv2d`) says so; variables
    end in lower-case names (`kernel`, `weight`, `w:0`)."""
    if is_gradient(tag):
        return False
    return any(w.lower() in _ACTIVATION_WORDS for w in tag_words(tag)) or bool(_CLASS_NAME.match(tag.split("/")[-1]))
