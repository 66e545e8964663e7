"""Rewriting a logdir: the split plan, copying event files and checkpoints, the `split` command."""
