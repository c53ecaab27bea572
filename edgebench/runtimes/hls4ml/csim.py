"""The C simulation of an hls4ml project, built with one g++ call instead of hls4ml's ``build_lib.sh``.

``build_lib.sh`` compiles the firmware and its Python bridge as two translation units at ``-O3``: both parse
the same ap_types and nnet_utils headers and instantiate the same ap_fixed templates, and ``-O3`` buys the
simulation nothing over ``-O1`` (the digits CNN's C simulation took 11.9 ms of CPU per image at ``-O3`` and
10.9 ms at ``-O1``; ``-O0`` takes 690 ms). One translation unit including both files at ``-O1`` took 6.0 s of
g++ CPU time for the default run's firmware against 10.9 s for ``build_lib.sh`` (``scripts/bench_export_stage.py``).

The simulation stays bit-exact: its arithmetic is ap_fixed integer code plus IEEE float conversions, which no
``-O`` level changes without ``-ffast-math`` (never given); ``tests/test_hls4ml.py`` builds one project both
ways and compares every output bit.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from edgebench.errors import UnsupportedModelError

#: what every build gets: hls4ml's own flags but -O1 for -O3 (see above)
CFLAGS = ("-O1", "-fPIC", "-fno-gnu-unique")
#: the last lines of g++'s output kept in a build failure's message
ERROR_LINES = 15


@functools.cache
def cxx_standard() -> str:
    """``-std=c++23`` where this g++ has it (hls4ml's half and bfloat16 types need it), else ``-std=c++11``."""
    probe = subprocess.run(["g++", "-Werror", "-fsyntax-only", "-std=c++23", "-xc++", "-", "-o", "/dev/null"],
                           input="", capture_output=True, text=True, check=False)
    return "-std=c++23" if probe.returncode == 0 else "-std=c++11"


def compile_csim(project_dir: Path, project: str, stamp: str) -> Path:
    """Build ``firmware/<project>-<stamp>.so`` of a written hls4ml project; return its path.

    The library reads its weights from ``firmware/weights`` under ``project_dir`` at its first call, so the
    project must not move afterwards (the exporter builds it in place).
    """
    unity = project_dir / f"{project}_csim.cpp"
    unity.write_text(f'#include "firmware/{project}.cpp"\n#include "{project}_bridge.cpp"\n')
    library = Path("firmware") / f"{project}-{stamp}.so"
    weights = (project_dir / "firmware" / "weights").resolve()
    command = ["g++", *CFLAGS, cxx_standard(), "-shared", "-Ifirmware/ap_types/", f'-DWEIGHTS_DIR="{weights}"',
               unity.name, "-o", str(library)]
    done = subprocess.run(command, cwd=project_dir, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-ERROR_LINES:])
        raise UnsupportedModelError(f"g++ could not build the C simulation in {project_dir}:\n{tail}")
    return project_dir / library
