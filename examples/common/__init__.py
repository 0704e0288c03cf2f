"""Training plumbing shared by the examples: distributed setup, checkpoints, logging, images.

The example scripts put `examples/` on `sys.path` and import `common.<module>`; nothing here is part
of the `soflow_toolkit` library.
"""
