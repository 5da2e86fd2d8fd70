"""Shared runtime below inference and training: device and precision, distributed groups,
the checkpoint schema and network wrapping (PyTorch / onnxruntime)."""
