"""edgebench/docs/plugins.md's plug-in file, target file and experiment, written out as the page shows them and run: a
criterion, a runtime (ONNX's reference evaluator) and an energy meter (a lab logger's joule counter file) that
edgebench does not ship, each used by a real run without editing edgebench."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import edgebench

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[1] / "edgebench" / "docs" / "plugins.md"
#: the power the test's stand-in for a lab's logger draws, in watts
WATTS = 5.0


def _write_blocks(folder: Path) -> list[str]:
    """Each fenced block whose first line is ``# <file name>``, written there; the names written."""
    names = []
    for body in re.findall(r"```(?:python|yaml)\n(.*?)```", DOC.read_text(), re.DOTALL):
        first, _, rest = body.partition("\n")
        name = first.removeprefix("# ").strip()
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(rest)
        names.append(name)
    return names


def _log_joules(path: Path, stop: threading.Event) -> None:
    """A power logger's counter: joules drawn at WATTS since it started, rewritten every 10 ms (atomically)."""
    t0 = time.perf_counter()
    while not stop.is_set():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{WATTS * (time.perf_counter() - t0):.6f}")
        tmp.replace(path)
        time.sleep(0.01)


def test_the_plugins_page_runs_as_written(tmp_path: Path) -> None:
    assert _write_blocks(tmp_path) == ["team_plugins.py", "targets/lab-reference.yaml", "experiment.yaml"]
    stop = threading.Event()
    logger = threading.Thread(target=_log_joules, args=(tmp_path / "lab_joules.txt", stop), daemon=True)
    logger.start()
    try:
        while not (tmp_path / "lab_joules.txt").exists():
            time.sleep(0.01)
        done = subprocess.run([sys.executable, "-m", "edgebench", "run", "experiment.yaml"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=900)
    finally:
        stop.set()
        logger.join()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = edgebench.load(tmp_path / "runs" / "team-plugins" / "results.db")
    df = results.measurements()
    assert set(df["criterion"].dropna()) == {"team_l2", "l1"}
    reference = df[df["backend"] == "onnx_reference"].set_index("variant_id")
    ort = df[df["backend"] == "onnxruntime"].set_index("variant_id")
    assert len(reference) == 3 and set(reference.index) == set(ort.index)  # baseline, team_l2, l1
    # the same ONNX files: the specification's evaluator answers what ONNX Runtime does, image for image
    assert (reference["accuracy"] - ort.loc[reference.index, "accuracy"]).abs().max() <= 1 / 360
    assert (reference["max_abs_diff"] < 1e-4).all()
    assert (reference["energy_source"] == "measured:lab-counter").all()
    stored = results.stored()
    for _, row in stored[stored["backend"] == "onnx_reference"].iterrows():
        window = row["details"]["energy_window"]
        watts = row["energy_j_per_inference"] * window["inferences"] / window["seconds"]
        assert watts == pytest.approx(WATTS, rel=0.1), window  # the counter's joules over the meter's window
    assert df[df["backend"] == "onnxruntime"]["energy_source"].isna().all()  # local-cpu has no meter
