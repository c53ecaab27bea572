"""Vivado HLS / Vitis HLS C-synthesis reports (``<top>_csynth.xml``) and the artifact's synthesis record.

The XML's ``PerformanceEstimates`` give latency in clock cycles (best/average/worst),
the initiation interval (``Interval-min``/``Interval-max``) and the estimated clock;
``AreaEstimates`` give used and available BRAM_18K/DSP/FF/LUT/URAM (Vivado HLS names
the DSP column ``DSP48E``). Without the tool no report exists and the record says
"not synthesised": no resource figure is ever invented.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SYNTHESIS_FILE = "synthesis.json"
#: how to call an edgebench hls4ml artifact (library, layout, sizes); written by the exporter, read by the backend
METADATA_FILE = "edgebench.json"
RESOURCES = ("LUT", "FF", "DSP", "BRAM_18K", "URAM")
_TIME_UNITS_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "sec": 1e9, "s": 1e9}


@dataclass
class SynthesisReport:
    """What C synthesis estimated for one top function."""

    top: str | None
    part: str | None
    target_clock_ns: float | None
    estimated_clock_ns: float | None
    latency_cycles_best: int | None
    latency_cycles_worst: int | None
    latency_ns_best: float | None
    latency_ns_worst: float | None
    interval_min: int | None
    interval_max: int | None
    resources: dict[str, int] = field(default_factory=dict)
    available: dict[str, int] = field(default_factory=dict)
    utilisation_pct: dict[str, float] = field(default_factory=dict)
    tool_version: str | None = None


def _text(root: ET.Element, path: str) -> str | None:
    node = root.find(path)
    if node is None or node.text is None:
        return None
    text = node.text.strip()
    return text if text and text.lower() not in ("undef", "-") else None


def _int(root: ET.Element, path: str) -> int | None:
    text = _text(root, path)
    return int(float(text)) if text is not None and re.fullmatch(r"[\d.]+", text) else None


def _float(root: ET.Element, path: str) -> float | None:
    text = _text(root, path)
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _duration_ns(text: str | None) -> float | None:
    """'1.234 us' / '615.0 ns' -> nanoseconds."""
    if not text:
        return None
    match = re.fullmatch(r"([\d.]+)\s*([a-z]+)", text.strip())
    if not match or match.group(2) not in _TIME_UNITS_NS:
        return None
    return float(match.group(1)) * _TIME_UNITS_NS[match.group(2)]


def _resources(node: ET.Element | None) -> dict[str, int]:
    found: dict[str, int] = {}
    if node is None:
        return found
    for child in node:
        name = "DSP" if child.tag in ("DSP48E", "DSP48", "DSP") else child.tag
        if name in RESOURCES and child.text and child.text.strip().isdigit():
            found[name] = int(child.text.strip())
    return found


def parse_csynth_report(path: Path) -> SynthesisReport:
    """Parse a ``*_csynth.xml`` file written by Vivado HLS or Vitis HLS."""
    root = ET.parse(path).getroot()
    perf = "PerformanceEstimates"
    target = _float(root, "UserAssignments/TargetClockPeriod")
    estimated = _float(root, f"{perf}/SummaryOfTimingAnalysis/EstimatedClockPeriod")
    best = _int(root, f"{perf}/SummaryOfOverallLatency/Best-caseLatency")
    worst = _int(root, f"{perf}/SummaryOfOverallLatency/Worst-caseLatency")
    clock = target or estimated
    best_ns = _duration_ns(_text(root, f"{perf}/SummaryOfOverallLatency/Best-caseRealTimeLatency"))
    worst_ns = _duration_ns(_text(root, f"{perf}/SummaryOfOverallLatency/Worst-caseRealTimeLatency"))
    if best_ns is None and best is not None and clock:
        best_ns = best * clock
    if worst_ns is None and worst is not None and clock:
        worst_ns = worst * clock
    used = _resources(root.find("AreaEstimates/Resources"))
    available = _resources(root.find("AreaEstimates/AvailableResources"))
    utilisation = {k: 100.0 * used[k] / available[k] for k in used if available.get(k)}
    return SynthesisReport(
        top=_text(root, "UserAssignments/TopModelName"),
        part=_text(root, "UserAssignments/Part"),
        target_clock_ns=target,
        estimated_clock_ns=estimated,
        latency_cycles_best=best,
        latency_cycles_worst=worst,
        latency_ns_best=best_ns,
        latency_ns_worst=worst_ns,
        interval_min=_int(root, f"{perf}/SummaryOfOverallLatency/Interval-min"),
        interval_max=_int(root, f"{perf}/SummaryOfOverallLatency/Interval-max"),
        resources=used,
        available=available,
        utilisation_pct=utilisation,
        tool_version=_text(root, "ReportVersion/Version"),
    )


def find_csynth_report(project_dir: Path, project: str) -> Path | None:
    """The top function's report in an hls4ml project (``<project>_prj/solution1/syn/report/``)."""
    expected = project_dir / f"{project}_prj" / "solution1" / "syn" / "report" / f"{project}_csynth.xml"
    if expected.is_file():
        return expected
    candidates = sorted(project_dir.glob(f"**/syn/report/{project}_csynth.xml"))
    return candidates[0] if candidates else None


def write_synthesis(artifact_dir: Path, report: SynthesisReport | None, reason: str | None = None) -> dict[str, Any]:
    """Record the synthesis outcome beside the artifact: the parsed figures, or why there are none."""
    record: dict[str, Any] = (
        {"status": "synthesised", **asdict(report)} if report is not None
        else {"status": "not synthesised", "reason": reason or "no synthesis report"}
    )
    (artifact_dir / SYNTHESIS_FILE).write_text(json.dumps(record, indent=2))
    return record


def read_synthesis(artifact_dir: Path) -> dict[str, Any]:
    """The synthesis record of an hls4ml artifact (``status`` is 'synthesised' or 'not synthesised')."""
    path = Path(artifact_dir) / SYNTHESIS_FILE
    if not path.is_file():
        return {"status": "not synthesised", "reason": f"{path} missing (artifact exported by another tool?)"}
    return json.loads(path.read_text())
