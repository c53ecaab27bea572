"""The package's import map stays a one-way stack: no import cycles between its top-level rooms (a cycle is
what made modules import each other inside functions to dodge ImportError, see scripts/import_map.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "import_map.py"


def test_no_import_cycles_between_rooms() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--verbose"], capture_output=True, text=True, check=True).stdout
    summary = out.splitlines()[0]
    assert summary.startswith("rooms ") and "import cycles" in summary
    problems = [line.strip() for line in out.splitlines() if line.strip().startswith(("cycle:", "back up:"))]
    assert summary.endswith("running back up 0, import cycles 0"), "\n".join([summary, *problems])
