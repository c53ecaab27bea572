"""Per-layer profiles: records of runtime operators mapped to PyTorch layers (``table``) and the mapping of an
ONNX artifact's nodes to its layers (``onnx_layers``). Each runtime's profiler lives in its folder,
``runtimes/<name>/profile.py``, reached through ``Session.profile_layers``; per-layer latency lookup tables for
latency-aware pruning are in ``prune/allocation/latency/table.py``."""
