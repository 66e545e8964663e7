"""tb-varscope: find histogram tags that collide across layers, and name the variables behind them."""
