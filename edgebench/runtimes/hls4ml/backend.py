"""hls4ml C-simulation backend: runs the fixed-point firmware compiled by the hls4ml exporter.

It calls the project's bridge function ``<project>_float(in, out)`` in the
compiled library, the same entry ``ModelGraph.predict`` uses, one sample at a time.
hls4ml's own ``link_existing_project`` cannot reload PyTorch projects (their
config YAML holds Python objects), and recompiling per job would cost seconds of
g++, so the library built at export time is loaded directly. Latency here is host
C-simulation time, not FPGA latency: that comes from the synthesis report.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.errors import ArtifactError
from edgebench.profile.table import LayerProfile
from edgebench.runtimes.base import BACKENDS, Backend, BackendSettings, Session
from edgebench.runtimes.hls4ml import GXX, HLS4ML
from edgebench.runtimes.hls4ml.report import METADATA_FILE, read_synthesis


def to_hls_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """NCHW batch -> the float32 C-contiguous layout the project was built for (NCHW or NHWC)."""
    if layout == "NHWC" and x.ndim == 4:
        x = np.transpose(x, (0, 2, 3, 1))
    return np.ascontiguousarray(x, dtype=np.float32)


class Hls4mlSession(Session):
    """The compiled C simulation; each sample is one call of the top function."""

    forkable = True  # plain C called through ctypes, milliseconds per image: its accuracy pass splits over cores

    def __init__(self, library: Any, function: Any, metadata: dict[str, Any], synthesis: dict[str, Any],
                 artifact: Path) -> None:
        self._artifact = artifact
        self._library = library  # keeps the shared object loaded
        self._function = function
        self._details = {"hls4ml": metadata, "synthesis": synthesis}
        self._layout = metadata["input_layout"]
        self._in_size = int(np.prod(metadata["input_shape"]))
        self._out_size = int(metadata["output_size"])

    def run(self, inputs: np.ndarray) -> np.ndarray:
        x = to_hls_layout(inputs, self._layout).reshape(len(inputs), self._in_size)
        out = np.zeros((len(inputs), self._out_size), dtype=np.float32)
        for i in range(len(x)):
            self._function(x[i], out[i])
        return out

    def profile_layers(self, batch: np.ndarray, runs: int) -> LayerProfile:
        """Per-layer latency from the C-synthesis reports (C-simulation time says nothing about the FPGA)."""
        from edgebench.runtimes.hls4ml.profile import profile_hls4ml

        return profile_hls4ml(self._artifact, self._details["hls4ml"]["project"])

    def details(self) -> dict[str, Any]:
        """Project settings and the synthesis record: figures, or "not synthesised" and why."""
        return self._details


@BACKENDS.register("hls4ml")
class Hls4mlBackend(Backend):
    """Loads an hls4ml artifact directory written by ``Hls4mlExporter``."""

    name = "hls4ml"
    formats = ("hls4ml",)
    needs = (HLS4ML, GXX)  # the compiled C simulation is loaded with ctypes; g++ built it

    @classmethod
    def imports(cls) -> tuple[str, ...]:
        """The C simulation is a compiled library loaded with ctypes: no Python runtime to import."""
        return ()

    def target_blocks(self, artifact: Path) -> dict[str, Any]:
        """The ``fpga:`` block the project was built for, from its ``edgebench.json``."""
        meta_path = artifact / METADATA_FILE
        if not meta_path.is_file():  # any folder is read as a project: say it is none before asking for a part
            raise ArtifactError(f"{artifact} is not an hls4ml artifact from edgebench (no {METADATA_FILE}); give "
                                "an exported model file or an hls4ml project folder edgebench wrote")
        meta = json.loads(meta_path.read_text())
        keys = ("part", "hls_backend", "clock_period_ns", "io_type", "strategy")
        return {"fpga": {key: meta[key] for key in keys if meta.get(key) is not None}}

    def load(self, artifact: Path, settings: BackendSettings) -> Session:
        meta_path = artifact / METADATA_FILE
        if not meta_path.is_file():
            raise ArtifactError(f"{artifact} is not an hls4ml artifact from edgebench (no edgebench.json); re-export")
        metadata = json.loads(meta_path.read_text())
        lib_path = artifact / metadata["library"]
        try:
            library = ctypes.cdll.LoadLibrary(str(lib_path))
            function = getattr(library, f"{metadata['project']}_float")
        except (OSError, AttributeError) as exc:
            raise ArtifactError(f"cannot load the C simulation {lib_path}: {exc}; re-export the variant") from exc
        pointer = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
        function.argtypes = [pointer, pointer]
        function.restype = None
        return Hls4mlSession(library, function, metadata, read_synthesis(artifact), artifact)
