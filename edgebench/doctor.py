"""What is installed here, what each target needs, and what is missing.

Checks use package metadata and PATH lookups rather than imports, so ``edgebench
doctor`` stays fast even where heavy runtimes (LiteRT, TensorRT) are installed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from edgebench.errors import ConfigError
from edgebench.targets import TargetSpec, list_targets, load_target_file, target_unavailable_reason


@dataclass(frozen=True)
class Component:
    """A Python package or an executable edgebench can use."""

    name: str
    kind: str  # "package" | "tool"
    purpose: str
    extra: str | None = None  # pip extra that installs it; None for system tools
    install_hint: str = ""
    found: str | None = None  # version or path when present

    @property
    def present(self) -> bool:
        return self.found is not None


# (distribution, import name or None = metadata only, extra, purpose)
_PACKAGES = (
    ("torch", "torch", None, "training, PyTorch backends"),
    ("onnxruntime", "onnxruntime", None, "ONNX Runtime CPU backend"),
    ("onnxruntime-gpu", None, None, "ONNX Runtime CUDA backend (replaces onnxruntime)"),
    ("litert-torch", "litert_torch", "litert", "TFLite conversion (fp32, int8 PT2E)"),
    ("ai-edge-litert", "ai_edge_litert", "litert", "LiteRT interpreter (XNNPACK)"),
    ("hls4ml", "hls4ml", "fpga", "FPGA conversion and C simulation"),
    ("nvidia-ml-py", "pynvml", "cuda", "GPU energy (NVML)"),
    ("tensorrt", "tensorrt", None, "TensorRT engines (NVIDIA's wheel or JetPack)"),
    ("paramiko", "paramiko", "remote", "SSH remote targets"),
)

_TOOLS = (
    ("g++", "hls4ml C simulation", "apt-get install g++"),
    ("vitis_hls", "hls4ml synthesis reports (Vitis backend)", "install Vitis HLS, source settings64.sh"),
    ("vivado_hls", "hls4ml synthesis reports (Vivado backend)", "install Vivado HLS, source settings64.sh"),
    ("nvidia-smi", "NVIDIA driver present", "install the NVIDIA driver"),
    ("tegrastats", "Jetson power rails (fallback meter)", "part of L4T on Jetson"),
)

#: what each backend needs, for the targets table: components by name
BACKEND_NEEDS: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "onnxruntime": ("onnxruntime",),
    "litert": ("litert-torch", "ai-edge-litert"),
    "hls4ml": ("hls4ml", "g++"),
    "torch_cuda": ("torch", "nvidia-smi"),
    "onnxruntime_cuda": ("onnxruntime-gpu", "nvidia-smi"),
    "tensorrt": ("tensorrt", "nvidia-smi"),
}


def _package_version(dist: str, module: str | None) -> str | None:
    """Installed version; packages installed without metadata (JetPack's tensorrt) count when importable."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "installed" if module and importlib.util.find_spec(module) is not None else None


def components() -> list[Component]:
    """Every optional package and tool, with what was found."""
    found = []
    for dist, module, extra, purpose in _PACKAGES:
        hint = f"pip install -c constraints.txt -e '.[{extra}]'" if extra else f"pip install {dist}"
        if dist == "tensorrt":
            hint = "pip install tensorrt (x86-64 + CUDA) or JetPack on Jetson"
        elif dist == "onnxruntime-gpu":
            hint = "pip install onnxruntime-gpu (instead of onnxruntime)"
        found.append(Component(dist, "package", purpose, extra, hint, _package_version(dist, module)))
    for tool, purpose, hint in _TOOLS:
        found.append(Component(tool, "tool", purpose, None, hint, shutil.which(tool)))
    return found


@dataclass
class TargetStatus:
    """One target's availability and what it lacks."""

    name: str
    spec: TargetSpec | None
    reason: str | None
    needs: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def available(self) -> bool:
        return self.reason is None


def target_needs(spec: TargetSpec) -> list[str]:
    """Components a target relies on (local targets: on this machine; SSH targets: paramiko here)."""
    if spec.kind == "ssh":
        return ["paramiko"]
    needs: list[str] = []
    for backend in spec.backends:
        needs += [n for n in BACKEND_NEEDS.get(backend, ()) if n not in needs]
    if spec.fpga is not None and spec.fpga.synthesize:
        needs.append(spec.fpga.hls_tool)
    return needs


def target_statuses(extra_dir: Path | None = None, check: bool = True) -> list[TargetStatus]:
    """Every target file with its availability reason; a broken file is reported, not raised."""
    have = {c.name for c in components() if c.present}
    statuses = []
    for name, path in list_targets(extra_dir).items():
        try:
            spec = load_target_file(path)
        except ConfigError as exc:  # a malformed target file is shown with its error
            statuses.append(TargetStatus(name, None, f"invalid target file: {exc}"))
            continue
        needs = target_needs(spec)
        reason = target_unavailable_reason(spec) if check else None
        statuses.append(TargetStatus(name, spec, reason, needs, [n for n in needs if n not in have]))
    return statuses
