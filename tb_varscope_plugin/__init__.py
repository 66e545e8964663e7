"""tb-varscope: find histogram tags that collide across layers, and name the variables behind them."""

from tb_varscope_plugin.report import scan

__all__ = ["scan"]
