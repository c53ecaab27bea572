"""Machine and software context recorded with every run (what makes two numbers comparable)."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import distributions
from pathlib import Path

import psutil

import edgebench
from edgebench.components import installed_versions
from edgebench.measure.jetson import read_jetson_context

#: packages that change figures besides the runtimes' own (which each runtime folder declares)
_CORE_PACKAGES = ("torch-pruning", "onnx", "numpy")


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, falling back to platform.processor()."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_governor() -> str | None:
    """cpufreq governor of CPU 0 where readable (absent in most VMs)."""
    path = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    return path.read_text().strip() if path.is_file() else None


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that affect measurements: every runtime's, the core ones, and those that
    add plug-ins (an installed backend or meter changes figures without a new variant id)."""
    from edgebench.components import Package
    from edgebench.runtimes.base import list_runtimes

    names = [c.dist for r in list_runtimes().values() for c in r.needs if isinstance(c, Package)]
    return dict(installed_versions(tuple(dict.fromkeys([*names, *_CORE_PACKAGES, *plugin_packages()]))))


def plugin_packages() -> list[str]:
    """The installed distributions with entry points in an ``edgebench.*`` group (read from metadata, not imported)."""
    found = {dist.name for dist in distributions() if any(ep.group.startswith("edgebench.") for ep in dist.entry_points)}
    return sorted(found - {"edgebench"})


def git_commit() -> str | None:
    """edgebench's git commit when running from its own checkout; None for an installed edgebench, even one whose
    site-packages lie inside another repository (a project's .venv: that commit is the project's)."""
    package = Path(edgebench.__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(package.parent), "ls-files", "--full-name", "--error-unmatch", "edgebench/__init__.py"],
            capture_output=True, text=True, timeout=5)
        if out.returncode != 0:  # the package is not a file of the repository around it
            return None
        out = subprocess.run(
            ["git", "-C", str(package.parent), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def device_context() -> dict[str, object]:
    """What sets the speed of the machine a measurement runs on: CPU, governor, Jetson power mode and clocks.

    The worker records it with every result, so a job run over SSH carries the device's own context.
    """
    jetson = read_jetson_context()
    return {
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "governor": cpu_governor(),
        **jetson,
        "power_mode": jetson.get("nvpmodel") or cpu_governor(),
    }


def machine_info() -> dict[str, object]:
    """Everything recorded about this machine for a run."""
    return {
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "governor": cpu_governor(),
        "power_mode": device_context()["power_mode"],
        "packages": package_versions(),
        "edgebench_version": edgebench.__version__,
        "edgebench_commit": git_commit(),
    }
