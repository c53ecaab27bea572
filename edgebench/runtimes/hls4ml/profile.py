"""hls4ml per-layer latency from C-synthesis reports, or "not available" with the reason.

Vitis/Vivado HLS writes one ``<function>_csynth.xml`` per synthesised function beside the top
report; hls4ml instantiates every layer as a template function whose name carries its config
index (``conv_2d_cl_..._config2_s``), and the project's ``firmware/<project>.cpp`` calls it with
the layer's name as a comment (``nnet::conv_2d_cl<..., config2>(...); // features_0``). A layer's
helpers carry its index too (``shift_line_buffer_..._config2_s``, ``dense_latency_..._config2_mult_s``)
and their latency is inside the layer's: a layer's row is the report named after the called function
and ending in its own config index. Layer names are hls4ml's (a PyTorch path with ``.`` as ``_``).
Without synthesis there is no per-layer latency at all: the C simulation's host time says nothing
about the FPGA.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgebench.profile.table import LayerInfo, LayerProfile, OpTime, build_profile, not_available
from edgebench.runtimes.hls4ml.report import find_csynth_report, parse_csynth_report, read_synthesis

_CALL = re.compile(r"nnet::(\w+)<[^;]*?config(\d+)>\s*\([^;]*\);\s*//\s*(\S+)")
#: the layer's own specialisation ends in its config index (``_s``, and ``_1``... where HLS made copies)
_CONFIG = re.compile(r"config(\d+)(?:_s)?(?:_\d+)?$")


def layer_calls(firmware_cpp: Path) -> dict[int, tuple[str, str]]:
    """config index -> (nnet function, hls4ml layer name) from the project's top-level C++."""
    return {int(index): (function, name) for function, index, name in _CALL.findall(firmware_cpp.read_text())}


def profile_hls4ml(artifact: Path, project: str = "edgebench") -> LayerProfile:
    """Per-layer latency (ns at the report's clock) of an hls4ml artifact directory, from its synthesis reports."""
    record = read_synthesis(artifact)
    if record.get("status") != "synthesised":
        return not_available("hls4ml", f"no C-synthesis report: {record.get('reason', 'not synthesised')}")
    top = find_csynth_report(artifact, project)
    cpp = artifact / "firmware" / f"{project}.cpp"
    if top is None or not cpp.is_file():
        return not_available("hls4ml", f"synthesis record present but {project}_csynth.xml or {cpp.name} is missing")
    calls = layer_calls(cpp)
    latest: dict[int, OpTime] = {}  # config index -> the layer function's report (the longest, if HLS made copies)
    layers: dict[str, LayerInfo] = {}
    for report_path in sorted(top.parent.glob("*_csynth.xml")):
        if report_path == top:
            continue
        report = parse_csynth_report(report_path)
        module = report.top or report_path.stem.removesuffix("_csynth")
        match = _CONFIG.search(module)
        if match is None or int(match.group(1)) not in calls or report.latency_ns_worst is None:
            continue  # helper functions below the layer level
        index = int(match.group(1))
        function, name = calls[index]
        if not module.startswith(f"{function}_"):
            continue  # a helper inside the layer (line buffers, multiplier blocks)
        op = OpTime(module, function, report.latency_ns_worst / 1e6, name)
        if index not in latest or op.time_ms > latest[index].time_ms:
            latest[index] = op
    ops = list(latest.values())
    if not ops:
        return not_available("hls4ml", f"no per-layer reports with a config index next to {top.name}")
    top_report = parse_csynth_report(top)
    run_ms = top_report.latency_ns_worst / 1e6 if top_report.latency_ns_worst is not None else None
    return build_profile("hls4ml", ops, layers, run_ms, 1)
