"""Checkpoints: one module per format, all returning the same `Variable` records, and where a run keeps its own."""
