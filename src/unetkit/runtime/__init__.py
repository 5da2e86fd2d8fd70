"""Shared runtime below inference and training: device and precision, distributed groups,
the checkpoint schema, network wrapping (PyTorch / onnxruntime), and how every command writes
files (``atomic``: whole or absent; ``outputs``: the output rule, checked before the work)."""
