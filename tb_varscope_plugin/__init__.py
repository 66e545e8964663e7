"""tb-varscope: find histogram tags that collide across layers, and name the variables behind them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see; at run time `scan` is imported when first asked for
    from tb_varscope_plugin.report import scan

__all__ = ["scan"]


def __getattr__(name: str) -> Any:
    # `scan` is imported when first asked for, so that importing the package (as the command and TensorBoard do,
    # for a submodule) does not import the filesystem layer before the command has deferred its back ends.
    if name == "scan":
        from tb_varscope_plugin.report import scan

        return scan
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
