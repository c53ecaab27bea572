"""What every runtime plugs into: its declared needs, its exporters (artifact formats) and its backends.

One folder per runtime (hls4ml's habit): ``edgebench/runtimes/<name>/`` holds that runtime's exporter
(``export.py``), backend/session (``backend.py``, ``cuda.py``...), report parser, and in ``__init__.py`` a
``RUNTIME`` record of what it needs and of the blocks it adds to target files (hls4ml's ``fpga:``, typed like
a backend's ``Options``; runtimes never see the rest of a target). Runtime folders are discovered, so adding
a runtime means adding its folder (plus a target file, the extra in pyproject.toml and a test): doctor,
availability checks, target files, the registries and the version context recorded with results all read
the folders' declarations.

A backend only loads an artifact and runs it: the measurement harness does all timing, so every runtime is
timed the same way. Heavy runtime imports happen inside ``load()`` / ``export()`` so that importing a
backend module stays cheap (a measurement worker for ONNX Runtime never imports torch).
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from edgebench import plugins
from edgebench.archive import artifact_size, compressed_size
from edgebench.components import Component, installed_versions, missing_reason
from edgebench.profile.table import LayerProfile, not_available
from edgebench.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from edgebench.variants import QatSpec, QuantSpec


class TargetBlock(BaseModel):
    """A block of target files that a runtime owns (hls4ml's ``fpga:``), validated when the target file loads."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    #: backends that cannot run a target without this block
    required_by: ClassVar[tuple[str, ...]] = ()

    def needs(self) -> list[Component]:
        """What a target with this block needs on the machine that runs its jobs besides its backends: the tool of a
        build step such as FPGA synthesis."""
        return []


@dataclass(frozen=True)
class Runtime:
    """A runtime's declaration: what it needs here, which of its modules register backends/exporters, and the
    blocks it adds to target files (key -> model)."""

    name: str
    summary: str
    needs: tuple[Component, ...] = ()
    backend_modules: tuple[str, ...] = ("backend",)
    exporter_modules: tuple[str, ...] = ("export",)
    target_blocks: Mapping[str, type[TargetBlock]] = field(default_factory=dict)


@cache
def list_runtimes() -> dict[str, Runtime]:
    """Every runtime folder's ``RUNTIME`` declaration, by its package name (``edgebench.runtimes.litert``)."""
    found = {}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.ispkg:
            package = f"{__package__}.{info.name}"
            found[package] = importlib.import_module(package).RUNTIME
    return found


@cache
def target_blocks() -> dict[str, type[TargetBlock]]:
    """Every runtime's target-file blocks by key; two runtimes claiming one key is a programming error."""
    found: dict[str, type[TargetBlock]] = {}
    for package, runtime in list_runtimes().items():
        for key, model in runtime.target_blocks.items():
            if key in found:
                raise ValueError(f"target block '{key}:' is declared twice (again by {package})")
            found[key] = model
    return found


def _modules(kind: str) -> list[str]:
    return [f"{package}.{module}" for package, runtime in list_runtimes().items() for module in getattr(runtime, kind)]


class NoOptions(BaseModel):
    """Options model of a plug-in that takes none: any key is an error at load time."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class BackendSettings:
    """Runtime knobs a target passes to a backend; ``options`` were validated by the backend's ``Options``."""

    threads: int = 1
    batch_size: int = 1
    device: str = "cpu"
    precision: str = "fp32"
    options: dict[str, Any] = field(default_factory=dict)


class Session(ABC):
    """A loaded artifact ready to run."""

    #: the loaded session works in a process forked from this one (no runtime threads, device handles or sockets):
    #: the accuracy pass after the timed window then scores the test split on every core the measurement holds
    forkable: ClassVar[bool] = False

    @abstractmethod
    def run(self, inputs: np.ndarray) -> np.ndarray:
        """Run one batch (float32, NCHW or as ``input_dims`` take it) and return the logits as a float32 array."""

    def timed_call(self, batch: np.ndarray) -> Callable[[], object]:
        """A zero-argument callable the timed loop calls once per iteration: one inference of ``batch`` as a deployed
        application makes it (not its result: the loop calls what this returns, without re-binding the batch, so
        nothing but the inference is timed). ``partial(self.run, batch)`` by default; a runtime whose ``run``
        converts in Python what an application feeds it ready-made (LiteRT: the layout and int8 quantization of the
        input, reading the output details) prepares that here, once, and returns the runtime's own call."""
        return partial(self.run, batch)

    def input_dims(self) -> tuple[int | None, ...] | None:
        """The input's dims as the runtime reads them (None where dynamic), or None where unknown: the harness
        feeds images NCHW unless these take them channels-last only (an ONNX file tf2onnx made of a Keras model)."""
        return None

    def sync(self) -> None:
        """Wait for queued device work; a no-op for synchronous CPU runtimes."""

    def details(self) -> dict[str, Any]:
        """Target-specific facts about the loaded artifact (FPGA synthesis figures, engine build time)."""
        return {}

    def profile_layers(self, batch: np.ndarray, runs: int) -> LayerProfile:
        """Per-layer times of ``runs`` inferences of ``batch``, mapped to the PyTorch layers.

        Called after the timed window, never during it: runtimes profile through a separate profiling
        session or counters that cost time. Runtimes without per-operator timing say why.
        """
        return not_available("", "this runtime exposes no per-operator timing")

    def close(self) -> None:
        """Release runtime resources."""


class Backend(ABC):
    """A runtime that can load artifacts of some formats."""

    name: ClassVar[str] = ""
    formats: ClassVar[tuple[str, ...]] = ()
    #: packages and tools this backend needs on the machine that runs it
    needs: ClassVar[tuple[Component, ...]] = ()
    #: precisions the runtime derives itself from an fp32 artifact (TensorRT builds fp16 engines from fp32 ONNX)
    builds_from_fp32: ClassVar[tuple[str, ...]] = ()
    #: the ``backend_options`` a target may set for this backend, validated when the target file loads
    Options: ClassVar[type[BaseModel]] = NoOptions

    @classmethod
    def imports(cls) -> tuple[str, ...]:
        """Modules its sessions import: a measurement worker imports them once, before it forks each job, so
        they count in every job's peak RSS as the runtime's import. Default: the modules of ``needs``."""
        return tuple(module for package in cls.needs if (module := getattr(package, "module", None)))

    def available(self) -> str | None:
        """None when usable here, else the reason it is not (a missing package, no GPU)."""
        return missing_reason(self.needs)

    def target_blocks(self, artifact: Path) -> dict[str, Any]:
        """The target blocks (``fpga:``...) a lone ``artifact`` of this runtime brings when ``edgebench bench``
        makes a target for it: none by default; an hls4ml project names its part in its own metadata."""
        return {}

    def crash_hint(self, error: str) -> str | None:
        """What to try when a measurement's process died of a signal (``error``: the signal, and the innermost frame
        where it died): None by default; a runtime with a known way round its crashes says it."""
        return None

    @abstractmethod
    def load(self, artifact: Path, settings: BackendSettings) -> Session:
        """Load ``artifact`` into a ready session; load/compile time is not timed by the harness."""


#: the key under which an artifact carries what it must be fed (shape, layout, normalisation, classes), in the
#: metadata of formats that have a place for it (ONNX ``metadata_props``, a .tflite file's ``metadata``)
INPUT_METADATA_KEY = "edgebench.input"


class Exporter(ABC):
    """Writes one artifact format; quantization for that format happens here too."""

    format: ClassVar[str] = ""
    #: precisions this exporter can produce
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    #: precisions it writes from a quantization-trained model's own quantizers (QAT variants), not recalibrated
    qat_precisions: ClassVar[tuple[str, ...]] = ()
    #: whether it writes mixed-precision int8 to an accuracy budget (``QuantSpec.max_drop``); such exports get the
    #: validation split as ``validation=(x, y)``
    takes_max_drop: ClassVar[bool] = False
    #: whether its other precisions start from its own fp32 artifact; such exports get the variant's fp32 artifact,
    #: when the sweep has one ready, as ``fp32_source=path`` instead of converting the model again
    derives_from_fp32: ClassVar[bool] = False
    #: the ``quantization.calibrator`` values its int8 honours (None: every one); another is calibrated its own way
    calibrators: ClassVar[tuple[str, ...] | None] = None
    #: file name suffix of the artifact ("" for a directory)
    suffix: ClassVar[str] = ""
    #: packages and tools the export needs
    needs: ClassVar[tuple[Component, ...]] = ()
    #: False when the artifact embeds its own absolute path (hls4ml's compiled C simulation loads
    #: its weights from where it was built), so it must be written in place, not moved there
    relocatable: ClassVar[bool] = True
    #: the key of its runtime's target block that configures it (``fpga`` for hls4ml); None: no target settings
    target_block: ClassVar[str | None] = None
    #: bumped when a fix changes what it writes for the same model and settings: part of the artifact cache key
    #: (from 1 on), so a workdir exported by an earlier edgebench is exported again, not reused as it was
    revision: ClassVar[int] = 0
    #: pip distributions whose code writes its artifacts: their installed versions are part of the artifact cache
    #: key, so after an upgrade (a quantizer fix) the artifact is exported again, not reused as the old code wrote it
    converters: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def for_target(cls, block: TargetBlock | None) -> Exporter:
        """The exporter configured by a target's ``target_block`` (e.g. an FPGA part), None when the target has none."""
        return cls()

    def takes_qat(self, qat: QatSpec) -> bool:
        """Whether it can write ``qat``'s trained quantizers at its ``qat_precisions`` (LiteRT: 8-bit ones only)."""
        return bool(self.qat_precisions)

    def options(self) -> dict[str, Any]:
        """Target settings that change the artifact; part of the artifact cache key."""
        return {}

    def converter_versions(self) -> dict[str, str]:
        """The installed version of each of its ``converters`` (one not installed: left out)."""
        return installed_versions(self.converters)

    def available(self) -> str | None:
        """None when the exporter's dependencies are installed, else the reason."""
        return missing_reason(self.needs)

    def sizes(self, artifact: Path) -> tuple[int, int | None]:
        """What the artifact's ``size_bytes`` and ``compressed_bytes`` are: its bytes on disk and those of its ZIP
        archive (a format whose files are mostly not the model, like an hls4ml project, says what stands for it)."""
        return artifact_size(artifact), compressed_size(artifact)

    def refuses(self, model: nn.Module, input_shape: tuple[int, ...]) -> str | None:
        """Why this exporter can convert no variant of ``model`` taking (C, H, W) ``input_shape`` images (a layer
        type or a graph it has no conversion for), or None; asked of the untrained baseline before any training, so
        such a target is "not run" instead of failing after the training. Pruning keeps the layer types, so the
        baseline stands for every variant."""
        return None

    @abstractmethod
    def export(self, model: nn.Module, quant: QuantSpec, calibration: np.ndarray, out_path: Path) -> Path:
        """Export ``model`` (fp32, eval mode) at ``quant`` precision to ``out_path`` and return the artifact path.

        ``calibration`` holds training images (NCHW float32); its first image is
        also the example input for tracing.
        """

    def describe_input(self, artifact: Path, spec: dict[str, Any]) -> None:
        """Write ``spec`` (what the artifact must be fed: shape, layout, normalisation, classes) into the artifact
        where its format has a place for it, so the file says it to whoever deploys it; nothing by default."""


def _no_formats(cls: type[Backend]) -> str | None:
    """Why a backend class cannot be picked for any artifact: it declares no formats (an empty list in errors)."""
    return None if cls.formats else ('declares no formats: set formats = ("onnx",), the artifact formats its load() '
                                     f"reads (see {plugins.PLUGINS_DOC})")


BACKENDS: Registry[type[Backend]] = Registry("backend", modules=lambda: _modules("backend_modules"),
                                              group="edgebench.backends", base=Backend, check=_no_formats)
EXPORTERS: Registry[type[Exporter]] = Registry("exporter", modules=lambda: _modules("exporter_modules"), base=Exporter)


def get_backend(name: str) -> Backend:
    """Instantiate the backend registered as ``name``."""
    return BACKENDS.get(name)()


def load_session(name: str, backend: Backend, artifact: Path, settings: BackendSettings) -> Session:
    """``backend`` (registered as ``name``) loads ``artifact``; TypeError naming it when its load() returns no
    Session (a plug-in's: else an AttributeError on the first session call that names neither)."""
    session = backend.load(artifact, settings)
    if not isinstance(session, Session):
        raise TypeError(f"backend '{name}' (class {type(backend).__name__}) returned {_what(session)} from load(); load() must "
                        f"return an edgebench.runtimes.base.Session (see {plugins.PLUGINS_DOC})")
    return session


def _what(value: object) -> str:
    """What a plug-in returned, for the error that refuses it: "None" or "a ndarray"."""
    return "None" if value is None else f"a {type(value).__name__}"


def timed_callable(session: Session, batch: np.ndarray) -> Callable[[], object]:
    """``session.timed_call(batch)``, checked once before the timed loop (a check inside it would be timed):
    TypeError naming the session's class when it returns no callable (a plug-in's returning ``run``'s output failed
    on the first timed call with "'numpy.ndarray' object is not callable", naming neither it nor the fix; the job's
    line names the backend)."""
    call = session.timed_call(batch)
    if not callable(call):
        raise TypeError(f"session class {type(session).__name__} returned {_what(call)} from timed_call(batch); timed_call "
                        "must return a zero-argument callable the timed loop calls once per iteration, e.g. "
                        f"functools.partial(self.run, batch) (see {plugins.PLUGINS_DOC})")
    return call


def list_backends() -> list[str]:
    """Names of all registered backends."""
    return BACKENDS.names()


def get_exporter(fmt: str, blocks: Mapping[str, TargetBlock] | None = None) -> Exporter:
    """The exporter of artifact format ``fmt``, configured by the target's runtime blocks when given."""
    exporter = EXPORTERS.get(fmt)
    return exporter.for_target((blocks or {}).get(exporter.target_block or ""))
