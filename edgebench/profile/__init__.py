"""Per-layer profiles: runtime operators mapped to PyTorch layers (table, onnx_layers) and per-layer
latency lookup tables (lut). Each runtime's own profiler lives in its folder, ``runtimes/<name>/profile.py``,
and is reached through ``Session.profile_layers``."""
