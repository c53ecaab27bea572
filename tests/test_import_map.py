"""The package's import map stays a one-way stack: no import cycles between its top-level rooms, and none between
its files (a cycle is what made modules import each other inside functions to dodge ImportError; see
scripts/import_map.py). Imports made for type annotations only (``if TYPE_CHECKING``) are not arrows."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "import_map.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_map", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _problems(lines: list[str]) -> str:
    return "\n".join([lines[0], *(line.strip() for line in lines if line.strip().startswith(("cycle:", "back up:")))])


def test_no_import_cycles_between_rooms() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--verbose"], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0].startswith("rooms ") and "import cycles" in lines[0]
    assert lines[0].endswith("running back up 0, import cycles 0"), _problems(lines)


def test_no_import_cycles_between_files() -> None:
    lines = _script().import_map(files=True)
    assert lines[0].startswith("files ") and "import cycles" in lines[0]
    assert lines[0].endswith("running back up 0, import cycles 0"), _problems(lines)


def test_the_file_map_finds_a_cycle_inside_a_package(tmp_path: Path) -> None:
    package = tmp_path / "edgebench"
    (package / "inner").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "inner" / "__init__.py").write_text("from edgebench.inner import left  # registers on import\n")
    (package / "inner" / "left.py").write_text("def f():\n    from edgebench.inner.right import g  # lazy: still an arrow\n")
    (package / "inner" / "right.py").write_text("import edgebench.inner.left\n")
    (package / "leaf.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import edgebench.inner\n")
    map_of = _script().import_map
    lines = map_of(files=True, package=package)
    assert lines[0].endswith("import cycles 1"), lines
    assert "  cycle: edgebench.inner.left <-> edgebench.inner.right" in lines
    assert "  back up: edgebench.inner.left (floor 0) -> edgebench.inner.right (floor 0)" in lines
    floor_of_leaf = [line.split(":")[0].strip() for line in lines if "edgebench.leaf" in line]
    assert floor_of_leaf == ["floor 0"]  # an import for annotations only is no arrow ...
    annotated = map_of(files=True, package=package, annotations=True)
    assert [line.split(":")[0].strip() for line in annotated if "edgebench.leaf" in line] == ["floor 2"]  # ... unless asked
