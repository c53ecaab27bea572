"""What a part of edgebench needs from the machine: Python packages and executables.

Runtimes, energy meters and runners declare their needs with these records where they live; ``edgebench
doctor``, availability checks and the version context recorded with every result all read those
declarations, so there is no second, hand-kept list. Checks use package metadata and PATH lookups, never
imports, so asking is cheap even where heavy runtimes are installed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from edgebench.errors import extra_install_hint


@dataclass(frozen=True)
class Package:
    """A Python distribution some part of edgebench imports."""

    dist: str  # pip distribution name
    module: str | None  # import name; None: a package only recognised by its metadata
    purpose: str
    extra: str | None = None  # edgebench's pip extra that installs it; None: core, or installed another way
    install: str = ""  # how to install it when no extra does

    @property
    def name(self) -> str:
        return self.dist

    @property
    def install_hint(self) -> str:
        return self.install or (extra_install_hint(self.extra) if self.extra else f"pip install {self.dist}")

    def missing_text(self) -> str:
        return f"{self.dist} is not installed ({self.install_hint})"

    def found(self) -> str | None:
        """Installed version; a package installed without metadata (JetPack's tensorrt) counts when importable."""
        try:
            return importlib.metadata.version(self.dist)
        except importlib.metadata.PackageNotFoundError:
            if self.module and importlib.util.find_spec(self.module) is not None:
                return "installed"
            return None


@dataclass(frozen=True)
class Tool:
    """An executable edgebench runs (a compiler, an HLS tool, a device utility)."""

    name: str
    purpose: str
    install: str

    @property
    def install_hint(self) -> str:
        return self.install

    def missing_text(self) -> str:
        return f"{self.name} not on PATH ({self.install})"

    def found(self) -> str | None:
        """Path of the executable on PATH, or None."""
        return shutil.which(self.name)


Component = Package | Tool


def missing_reason(needs: Iterable[Component]) -> str | None:
    """None when every component is present, else one clause per missing one with how to install it."""
    missing = [c.missing_text() for c in needs if c.found() is None]
    return "; ".join(missing) or None


@cache
def installed_versions(dists: tuple[str, ...]) -> dict[str, str]:
    """``{distribution: version}`` of those of ``dists`` installed; read once per process (package metadata)."""
    versions = {}
    for dist in dists:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
