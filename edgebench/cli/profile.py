"""``edgebench profile``: where the time goes, per layer, for one artifact on one target."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table
from rich.text import Text

from edgebench.cli.common import PluginFiles, console, use_plugins
from edgebench.errors import ArtifactError, ConfigError, NothingToRunError, first_line
from edgebench.profile.table import LayerProfile

log = logging.getLogger(__name__)


def eval_image_shape(data: Path | None, input_shape: str | None, artifact: Path) -> tuple[int, ...] | None:
    """The shape (C,H,W) of the images to feed: ``--input-shape`` parsed, else read from an artifact whose input
    is fixed (then neither option is needed); None with ``--data``, whose file is checked (read as the worker will)
    instead. Checked before any measuring."""
    from edgebench.data.files import read_eval_data
    from edgebench.external import onnx_image_io

    if data is not None and input_shape:  # the images in --data have their own shape
        raise ConfigError("give --data or --input-shape, not both (--data's images have their own shape)")
    onnx_input = onnx_image_io(artifact)[:2] if artifact.suffix.lower() == ".onnx" and artifact.is_file() else None
    if data is not None:
        if not data.is_file():
            raise ConfigError(f"data file not found: {data}")
        x, _ = read_eval_data(data)  # a bad file fails here, in one line, not inside the worker
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():  # scored at chance, without a word
            raise ConfigError(f"{data}: {int((~np.isfinite(x)).any(axis=tuple(range(1, x.ndim))).sum())} image(s) "
                              "hold NaN or infinite values; remove them or fill the gaps")
        if np.issubdtype(x.dtype, np.integer) or float(np.abs(x).max(initial=0.0)) > _RAW_PIXELS:
            log.warning("%s holds raw pixels (%s, up to %g): bench feeds them as they are, while a run's artifacts "
                        "take normalised images (Results.input_spec(); a run's own runs/<name>/data/test-*.npz "
                        "holds them so): the accuracy shown is not the one the run measured", data, x.dtype,
                        float(np.abs(x).max(initial=0.0)))
        image = tuple(x.shape[1:])
        _check_fits_onnx_input(image, onnx_input, artifact, f"{data}'s images ({','.join(map(str, image))} each)")
        return None
    if not input_shape:
        if onnx_input is not None:  # one input, one output, float images in and scores out: checked before a worker
            name, dims = onnx_input
            if len(dims) > 1 and all(d for d in dims[1:]):
                return tuple(int(d) for d in dims[1:])  # type: ignore[arg-type]
            shown = "x".join("?" if d is None else str(d) for d in dims)
            raise ConfigError(f"give --data NPZ or --input-shape C,H,W ({artifact.name}'s input '{name}' is {shown})")
        if artifact.suffix.lower() == ".tflite" and artifact.is_file() and (dims := _tflite_image(artifact)) is not None:
            return dims
        if artifact.suffix.lower() == ".xml" and artifact.is_file() and (dims := _openvino_image(artifact)) is not None:
            return dims
        raise ConfigError("give --data NPZ or --input-shape C,H,W")
    try:
        dims = tuple(int(v) for v in input_shape.split(","))
    except ValueError:
        dims = ()
    if not dims or min(dims) < 1:  # numpy refuses a negative size, a runtime a 0 one, neither in a clear line
        raise ConfigError(f"--input-shape must be integers of at least 1 like 1,8,8, got '{input_shape}'")
    _check_fits_onnx_input(dims, onnx_input, artifact, f"--input-shape {input_shape}")
    return dims


def _check_fits_onnx_input(image: tuple[int, ...], onnx_input: tuple[str, Sequence[int | None]] | None,
                           artifact: Path, given: str) -> None:
    """An image shape that an ONNX input with fixed dimensions cannot take is refused before a worker starts
    (ONNX Runtime's own 'Got invalid dimensions' names neither the option nor the shape to give)."""
    if onnx_input is None:
        return
    name, dims = onnx_input
    if len(dims) == len(image) + 1 and all(d is None or d == v for d, v in zip(dims[1:], image, strict=True)):
        return
    per_image = ",".join("?" if d is None else str(d) for d in dims[1:])
    raise ConfigError(f"{given} does not fit {artifact.name}'s input '{name}', which takes {per_image} per image: "
                      "give images of that shape")


#: an image value past which --data looks like raw 0..255 pixels rather than normalised ones
_RAW_PIXELS = 50.0


def _openvino_image(artifact: Path) -> tuple[int, ...] | None:
    """The image dims of an OpenVINO IR's one input where all are fixed (as its layout has them: random input
    needs no layout); None where OpenVINO is missing or a dim is dynamic, ConfigError where the IR cannot be read."""
    from edgebench.runtimes.openvino.ir import partial_dims, read_ir

    model = read_ir(artifact)
    dims = partial_dims(model.input(0).get_partial_shape())[1:] if model is not None else ()
    return tuple(int(d) for d in dims) if dims and all(dims) else None  # type: ignore[arg-type]


def _tflite_image(artifact: Path) -> tuple[int, ...] | None:
    """(C, H, W) of a TFLite file's one 4-d image input, NCHW or NHWC (fewer channels than rows: the backend feeds
    either layout); None where the interpreter is missing or the input not 4-d, ConfigError where the file cannot
    be read (else the user is asked for a shape the file could not be run with anyway)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # the backend's availability check then says what to install
        return None
    try:
        shape = [int(d) for d in Interpreter(model_path=str(artifact)).get_input_details()[0]["shape"]]
    except Exception as exc:
        raise ConfigError(f"{artifact}: not a TFLite model LiteRT can read ({first_line(exc)}); export it "
                          "again") from None
    if len(shape) != 4:
        return None
    return (shape[3], shape[1], shape[2]) if shape[3] < shape[1] else (shape[1], shape[2], shape[3])


def write_eval_input(data: Path | None, shape: tuple[int, ...] | None, tmp: Path) -> Path:
    """``data`` itself, or one random image of ``shape`` written under ``tmp`` for the worker."""
    if data is not None:
        return data
    assert shape is not None  # eval_image_shape returned it
    path = tmp / "random.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.standard_normal((1, *shape)).astype(np.float32), y=np.zeros(1, dtype=np.int64))
    return path


def print_profile(profile_dict: dict[str, Any], p50_ms: float | None, top: int | None) -> None:
    """The per-layer table: time and share next to MACs and share, then what is not conv/gemm compute."""
    profile = LayerProfile.from_dict(profile_dict)
    if profile.status != "ok":
        console.print(f"per-layer profile ({profile.runtime}) not available: {profile.reason}", highlight=False)
        return
    rows = profile.top(top) if top else profile.rows
    table = Table(title=f"per-layer profile: {profile.runtime}, {profile.runs} runs in its own window"
                        + (f" (top {top} by time)" if top else ""))
    for col in ("layer", "op", "c_in", "c_out", "ms", "time %", "conv/gemm ms", "MMACs", "MACs %"):
        table.add_column(col, justify="left" if col in ("layer", "op") else "right")
    for r in rows:
        table.add_row(Text(r.layer), r.op, str(r.c_in or ""), str(r.c_out or ""), f"{r.time_ms:.4f}",
                      f"{100 * r.time_share:.1f}", f"{r.compute_ms:.4f}", f"{r.macs / 1e6:.2f}",
                      f"{100 * r.macs_share:.1f}")
    console.print(table)
    console.print(Text(profile.non_compute_text(p50_ms)), highlight=False)


def backend_for(artifact: Path, backends: list[str], backend: str | None, among: str = "the target's") -> str:
    """The backend of ``backends`` (``among``: whose they are, for errors) that reads ``artifact`` (``backend`` when
    given)."""
    from edgebench.runtimes.base import get_backend

    suffix = artifact.suffix.lower()
    if not suffix and not artifact.is_dir():  # a format without a suffix is a project folder: a file is none
        suffix = "(no suffix)"
    readers = [name for name in backends if any(suffix == _suffix(fmt) for fmt in get_backend(name).formats)]
    if backend is not None:
        if backend not in backends:
            raise ConfigError(f"backend '{backend}' is not one of {among} ({', '.join(backends)})")
        if readers and backend not in readers:  # else the runtime calls a good file damaged
            raise ConfigError(f"backend '{backend}' does not read {suffix} files like {artifact.name} (it reads "
                              f"{', '.join(_suffix(f) or 'project folders' for f in get_backend(backend).formats)}); "
                              f"{' or '.join(readers)} does")
        return backend
    if readers:
        return readers[0]
    if suffix == "(no suffix)":
        raise ConfigError(f"{artifact} has no suffix to tell its format (.onnx, .tflite, ...) and is not a project "
                          "folder; rename it, or pass --backend")
    raise ConfigError(f"none of {among} backends ({', '.join(backends)}) reads {artifact.name}; pass --backend"
                      + (" or pick another target" if among == "the target's" else ""))


def _suffix(fmt: str) -> str:
    """The suffix of a file of format ``fmt`` as a user hands it over (an OpenVINO IR: its .xml), "" for a folder."""
    from edgebench.external import FORMATS
    from edgebench.runtimes.base import get_exporter

    given = {name: suffix for suffix, name in FORMATS.items()}
    if fmt in given:
        return given[fmt]
    try:
        return get_exporter(fmt).suffix
    except KeyError:
        return {"tensorrt": ".engine"}.get(fmt, f".{fmt}")


def profile(
    artifact: Annotated[Path, typer.Argument(
        help="an exported model (.onnx, .pt, .tflite, OpenVINO IR .xml, hls4ml project dir)")],
    target: Annotated[str, typer.Option(help="target name or YAML file (see `edgebench targets`)")] = "local-cpu",
    backend: Annotated[str | None, typer.Option(help="one of the target's backends (default: the one that "
                                                     "reads the artifact)")] = None,
    data: Annotated[Path | None, typer.Option(help="npz with x (NCHW float32): the first image is profiled")] = None,
    input_shape: Annotated[str | None, typer.Option(help="C,H,W of a random input when --data is not given")] = None,
    runs: Annotated[int, typer.Option(min=1, help="inferences in the profiling window")] = 100,
    top: Annotated[int | None, typer.Option(min=1, help="show only the slowest N layers")] = None,
    plugins: PluginFiles = None,
) -> None:
    """Per-layer profile of ARTIFACT on a target: time share vs MACs share, mapped to the PyTorch layers."""
    from edgebench.executor.runners import runner_for
    from edgebench.executor.tasks import measurement_failure, run_one
    from edgebench.job import Job, MeasureSettings
    from edgebench.targets import get_target

    use_plugins(plugins)  # a plug-in backend (or a target file naming one) is known from here on
    spec = get_target(target)
    if not artifact.exists():
        raise ArtifactError(f"artifact not found: {artifact}")
    name = backend_for(artifact, spec.backends, backend)
    runner = runner_for(spec)
    if reason := runner.available():
        raise NothingToRunError(f"nothing could run: target {spec.name}: {reason}")
    if reason := runner.unavailable_backends().get(name):
        raise NothingToRunError(f"nothing could run: target {spec.name}: {name}: {reason}")
    shape = eval_image_shape(data, input_shape, artifact)
    with tempfile.TemporaryDirectory() as tmp:
        data_file = write_eval_input(data, shape, Path(tmp))
        job = Job(job_id="profile", variant_id="-", target=spec.name, backend=name, artifact=str(artifact.resolve()),
                  threads=spec.threads, device=spec.device, backend_options=spec.backend_options.get(name, {}),
                  eval_data=str(data_file.resolve()),
                  measure=MeasureSettings(min_time_s=0.5, accuracy_samples=1, profile_layers=True, profile_runs=runs))
        result = run_one(job, runner.task_timeout(), runner, [artifact, data_file])
    if result.status != "ok":
        raise measurement_failure(result, f"profiling {artifact.name} on {spec.name}")
    console.print(f"{artifact.name} on {spec.name} ({name}, {spec.threads} thread(s)): "
                  f"p50 {result.latency_ms['p50']:.4f} ms in the timed window", highlight=False)
    print_profile(result.layer_profile or {}, result.latency_ms["p50"], top)


def register(app: typer.Typer, wrap: Any) -> None:
    """Add ``profile`` to ``app``, wrapped by ``wrap`` (one-line errors)."""
    app.command()(wrap(profile))
