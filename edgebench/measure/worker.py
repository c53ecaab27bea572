"""Measurement worker: runs one Job in its own process and writes a JobResult.

``execute(job)`` runs in an executor's warm worker process (``edgebench.executor``),
which provides the isolation: a crash or hang of the runtime becomes a failed
result with the error text and the sweep goes on. ``python -m
edgebench.measure.worker JOB.json RESULT.json`` is the entry point on remote
devices over SSH.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import sys
import time
import traceback
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.errors import summarize
from edgebench.input_layout import in_input_layout
from edgebench.job import EnergyWindow, Job, JobResult, TimedWindow
from edgebench.measure.contention import ContentionProbe
from edgebench.measure.energy import EnergyMeter, EnergyReading, create_meter, measure_idle_power, stopped
from edgebench.measure.harness import time_session
from edgebench.measure.machine import device_context
from edgebench.measure.memory import peak_rss_mb
from edgebench.measure.output_form import reference_in_output_form
from edgebench.measure.speed_probe import WindowSpeed
from edgebench.measure.stats import latency_intervals, summarize_ns
from edgebench.profile.table import not_available
from edgebench.runtimes.base import BackendSettings, Session, get_backend, load_session
from edgebench.sampling import spread_sample

log = logging.getLogger(__name__)

def _batched_predict(session: Session, x: np.ndarray, batch_size: int, backend: str) -> np.ndarray:
    outs = []
    for i in range(0, len(x), batch_size):
        chunk = x[i : i + batch_size]
        if len(chunk) < batch_size and batch_size > 1:
            # runtimes with a fixed batch dimension: pad, then drop the padding
            pad = np.repeat(chunk[-1:], batch_size - len(chunk), axis=0)
            outs.append(_rows(session.run(np.concatenate([chunk, pad])), batch_size, backend)[: len(chunk)])
        else:
            outs.append(_rows(session.run(chunk), len(chunk), backend))
    return np.concatenate(outs)


def _rows(out: Any, images: int, backend: str) -> np.ndarray:
    """One batch's output as an array of a row per image; RuntimeError naming the backend and what it returned
    otherwise (a plug-in's run() that forgot its return failed in numpy: "zero-dimensional arrays cannot be
    concatenated")."""
    array = np.asarray(out) if isinstance(out, np.ndarray | list | tuple) or hasattr(out, "__array__") else None
    if array is None or array.ndim == 0 or array.shape[0] != images:
        what = f"{array.dtype} {array.shape}" if array is not None else type(out).__name__
        raise RuntimeError(f"backend {backend} returned {what} for {images} image(s); expected float scores of shape "
                           f"({images}, classes): one row of class scores per image")
    return array


def _json_safe(details: Any) -> dict[str, Any]:
    """A session's details as JSON holds them: what JSON has no type for as its repr, NaN and infinities as null (a
    plug-in backend's object or NaN in them failed the run's store, and every resume, at that job)."""
    safe = json.loads(json.dumps(details or {}, default=_json_value), parse_constant=lambda _constant: None)
    return safe if isinstance(safe, dict) else {"details": safe}


def _json_value(value: Any) -> Any:
    """A numpy number or array as its Python value; anything else JSON has no type for as its repr."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return repr(value)


def _checked_logits(logits: Any, images: int, classes: int, backend: str) -> np.ndarray:
    """``logits`` as a float (images, >= classes) array; RuntimeError naming the backend otherwise (class ids, a
    wrong class count or integer scores were scored silently or failed in numpy)."""
    out = np.asarray(logits)
    if out.ndim > 2 and out.shape[0] == images and sum(d > 1 for d in out.shape[1:]) <= 1:
        out = out.reshape(images, -1)  # a fully convolutional classifier's (N, classes, 1, 1), as SqueezeNet's ONNX
    if out.ndim == 2 and out.shape[0] == images and out.dtype.kind == "f" and out.shape[1] < classes:
        # the labels may not be the model's classes (bench --data of another dataset), or the backend drops scores
        raise RuntimeError(f"labels in the data go up to {classes - 1}, but backend {backend} gives {out.shape[1]} "
                           "scores per image: are these the model's labels and test images (bench --data), and does "
                           "the backend return every class's score?")
    if out.ndim != 2 or out.shape[0] != images or out.shape[1] < classes or out.dtype.kind != "f":
        raise RuntimeError(f"backend {backend} returned {out.dtype} {out.shape} for {images} images; expected float "
                           f"scores of shape ({images}, {classes} or more classes): one row of class scores per image")
    return out


#: the session a forked accuracy-pass process scores its part with (set only while such processes run)
_forked_session: Session | None = None


def _predict_part(part: np.ndarray, batch_size: int, backend: str) -> np.ndarray:
    assert _forked_session is not None
    return _batched_predict(_forked_session, part, batch_size, backend)


def predict_all(session: Session, x: np.ndarray, batch_size: int, backend: str) -> np.ndarray:
    """Logits of ``x``; split over this process's cores when the session is ``forkable``: the timed window is over
    and the measurement holds its lane's cores, so a C simulation (milliseconds per image) need not score the
    test split on one of them. Parts are whole batches, scored in order, so the logits are the same either way."""
    global _forked_session
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    step = -(-len(x) // (cores * batch_size)) * batch_size  # whole batches per part
    if not session.forkable or cores < 2 or step >= len(x):
        return _batched_predict(session, x, batch_size, backend)
    parts = [x[i : i + step] for i in range(0, len(x), step)]
    _forked_session = session
    try:
        # a process that dies (a C simulation's crash) breaks the pool: the job fails with that, it does not hang
        with ProcessPoolExecutor(len(parts) - 1, mp_context=multiprocessing.get_context("fork")) as pool:
            rest = [pool.submit(_predict_part, part, batch_size, backend) for part in parts[1:]]
            first = _batched_predict(session, parts[0], batch_size, backend)
            return np.concatenate([first, *(future.result() for future in rest)])
    finally:
        _forked_session = None


def _arrays(path: str, *names: str) -> tuple[np.ndarray, ...]:
    """Arrays ``names`` of the run's ``.npz`` at ``path``; an error naming the file where it does not read (numpy's
    own, "File is not a zip file", names none)."""
    try:
        with np.load(path) as arrays:
            return tuple(arrays[name] for name in names)
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise RuntimeError(f"{path} does not read ({type(exc).__name__}: {exc}); the next run writes it again "
                           "when it is damaged (or delete it)") from None


def _leading_images(eval_data: str, n: int) -> np.ndarray:
    """The first ``n`` images (float32) of the eval npz, without reading the others."""
    with zipfile.ZipFile(eval_data) as archive, archive.open("x.npy") as member:
        version = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(member)
        if fortran_order or not shape:
            return np.ascontiguousarray(np.load(eval_data)["x"][:n], dtype=np.float32)
        rows = min(n, shape[0])
        count = rows * int(np.prod(shape[1:], dtype=np.int64))
        # a writable buffer: PyTorch warned in every measurement's log that it was given a read-only array
        images = np.frombuffer(bytearray(member.read(count * dtype.itemsize)), dtype=dtype, count=count)
    return np.ascontiguousarray(images.reshape(rows, *shape[1:]), dtype=np.float32)


def execute(job: Job) -> JobResult:
    """Run ``job`` in this process (the caller provides isolation)."""
    backend = get_backend(job.backend)
    reason = backend.available()
    if reason:
        return JobResult(job_id=job.job_id, status="failed", error=f"backend {job.backend} unavailable: {reason}")

    batch_size = job.measure.effective_batch_size
    settings = BackendSettings(
        threads=job.threads,
        batch_size=batch_size,
        device=job.device,
        precision=job.precision,
        options=job.backend_options,
    )
    t0 = time.perf_counter_ns()
    session = load_session(job.backend, backend, Path(job.artifact), settings)
    load_ms = (time.perf_counter_ns() - t0) / 1e6

    # the timed batch is read alone: the test set, loaded after the peak RSS is read, is the harness's, not the job's
    first = _leading_images(job.eval_data, min(batch_size, job.measure.accuracy_samples or batch_size))
    batch = np.repeat(first[:1], batch_size, axis=0) if len(first) < batch_size else first
    dims = session.input_dims()  # images are stored NCHW: a channels-last input gets them transposed, untimed
    batch = in_input_layout(batch, dims)

    speed = WindowSpeed()
    probe = ContentionProbe.start(job.threads)
    window_from = time.time()
    timing = time_session(session, np.ascontiguousarray(batch), job.measure)
    window_to = time.time()
    contention = probe.stop(window_to - window_from, timing.samples_ns)
    speed_probe = speed.stop(timing.samples_ns)
    latency, throughput = summarize_ns(timing.samples_ns, batch_size)
    intervals = latency_intervals(timing.samples_ns, job.measure.confidence)
    # runtime import, model load, first inference, warm-up and the timed loop: read before the session's details
    # (fp16 checks open a second session) and the energy window (a meter's log) add what is not the job's
    peak_rss = peak_rss_mb()

    # while the session is open (some runtimes read it from the compiled model); as JSON the store can hold
    session_details = _json_safe(session.details())
    energy_j = energy_source = energy_note = idle_w = energy_window = None
    if job.energy and job.energy.get("type") not in (None, "none"):
        name, declared = job.energy["type"], ""
        try:
            meter = create_meter(job.energy)
            assert meter is not None
            declared = meter.source
            idle_w = measure_idle_power(meter)
            reading, n_runs = _measure_energy(session, batch, meter, job)
        except Exception as exc:  # a meter is equipment beside the measurement: its failure costs the energy only
            log.warning("energy meter %s failed: %s", name, exc)
            reading, n_runs = EnergyReading(None, 0.0, None, f"energy meter {name} failed: {type(exc).__name__}: {exc}"), 0
        reading = _labelled(reading, name, declared)
        idle_w = idle_w if reading.joules is not None else None
        energy_source, energy_note = reading.source, reading.note
        energy_window = EnergyWindow(seconds=reading.seconds, inferences=n_runs * batch_size)
        if reading.joules is not None:
            energy_j = reading.joules / (n_runs * batch_size)

    x, y = _arrays(job.eval_data, "x", "y")
    x = in_input_layout(x.astype(np.float32), dims)
    leading = x[: job.measure.reference_samples]  # the images the fp32 reference logits are of
    subset = bool(job.measure.accuracy_samples) and job.measure.accuracy_samples < len(y)
    if subset:  # spread over the classes: a test file sorted by class has one class in front
        picked = np.sort(spread_sample(y, job.measure.accuracy_samples))
        x, y = x[picked], y[picked]
    logits = _checked_logits(predict_all(session, x, batch_size, job.backend), len(y), int(y.max()) + 1, job.backend)
    # an image whose logits overflowed (fp16 past 65504, a fixed-point type that wrapped to garbage is finite) is
    # wrong, not class 0, which argmax of a NaN row says
    finite = np.isfinite(logits).all(axis=1)
    accuracy = float(((logits.argmax(axis=1) == y) & finite).mean())
    if not finite.all():
        session_details["non_finite_outputs"] = int((~finite).sum())
        log.warning("%d of %d images gave non-finite outputs (NaN or inf): counted as wrong", (~finite).sum(), len(y))
    max_diff = None
    if job.reference:
        (ref,) = _arrays(job.reference, "logits")  # of the first test images
        if ref.shape[1] != logits.shape[1]:
            raise RuntimeError(f"backend {job.backend} returned {logits.shape[1]} class scores per image; the model "
                               f"has {ref.shape[1]} outputs")
        n = min(len(ref), len(leading))
        mine = logits[:n] if not subset else _checked_logits(  # the subset need not hold them: scored too
            predict_all(session, leading[:n], batch_size, job.backend), n, logits.shape[1], job.backend)
        ref, form = reference_in_output_form(mine, ref[:n])  # a file ending in a Softmax gives probabilities
        if form != "logits":
            session_details["outputs"] = form
        max_diff = float(np.abs(mine.astype(np.float64) - ref).max()) if np.isfinite(mine).all() else math.inf
        session_details["reference_max_abs"] = float(np.abs(ref).max())  # the scale max_diff is read against
    layer_profile = _profile_layers(session, batch, job) if job.measure.profile_layers else None
    session.close()

    return JobResult(
        job_id=job.job_id,
        status="ok",
        accuracy=accuracy,
        n_eval=len(y),
        max_abs_diff=max_diff,
        load_ms=load_ms,
        first_inference_ms=timing.first_inference_ns / 1e6,
        latency_ms=latency,
        latency_ci_ms=intervals,
        throughput_ips=throughput,
        samples_ns=timing.samples_ns,
        batch_size=batch_size,
        peak_rss_mb=peak_rss,
        energy_j_per_inference=energy_j,
        energy_source=energy_source,
        energy_note=energy_note,
        idle_power_w=idle_w,
        runtime=runtime_versions(),
        details=session_details,
        layer_profile=layer_profile,
        device=device_context(),
        # the timed loop's wall time: what a job costs beyond it is the harness's and the executor's overhead
        timed_window_s=timing.wall_ns / 1e9,
        timed_window=(window_from, window_to),
        window=TimedWindow(stopped=timing.stopped, precision=job.measure.precision, precision_met=timing.precision_met,
                           percentiles=job.measure.precision_percentiles, confidence=job.measure.confidence),
        contention=contention,
        speed_probe=speed_probe,
        energy_window=energy_window,
    )


def _profile_layers(session: Session, batch: np.ndarray, job: Job) -> dict[str, Any]:
    """The per-layer profile, in its own window after the timed one; a profiler failure never fails the job."""
    try:
        profile = session.profile_layers(np.ascontiguousarray(batch), job.measure.profile_runs)
    except Exception as exc:  # a runtime's profiler is optional equipment: record why there is no profile
        log.warning("per-layer profiling failed on %s: %s", job.backend, exc)
        profile = not_available(job.backend, f"profiling failed: {type(exc).__name__}: {exc}")
    profile.runtime = job.backend
    return profile.to_dict()


def _labelled(reading: EnergyReading, meter: str | None, declared: str = "") -> EnergyReading:
    """``reading``, or no energy where the meter did not say whether its joules were measured or estimated (an
    unlabelled figure would be shown as if a counter stood behind it), labelled a reading measured while the
    meter's class ``declared`` its readings estimated, or gave no amount of energy (NaN, negative: a negative figure
    led the energy front; a counter's 0 J for a window of inferences)."""
    source = reading.source or ""
    if reading.joules is not None and declared.startswith("estimated:") and source.startswith("measured:"):
        return EnergyReading(None, reading.seconds, None, f"energy meter {meter} declares its readings estimated "
                             f"(source {declared!r}) and labelled one {source!r}: a reading cannot claim a counter its "
                             "meter does not have; not kept")
    if reading.joules is not None and not (math.isfinite(reading.joules) and reading.joules >= 0):
        return EnergyReading(None, reading.seconds, None, f"energy meter {meter} gave {reading.joules:.6g} J: not an "
                             "amount of energy (NaN, infinite or negative), not kept")
    if reading.joules == 0 and source.startswith("measured:") and reading.seconds > 0:
        return EnergyReading(None, reading.seconds, None, f"energy meter {meter} read 0 J over {reading.seconds:.3g} s "
                             "of inference: a counter that did not advance (an update period longer than the window, "
                             "or a counter of another device), not kept")
    if reading.joules is None or source.startswith(("measured:", "estimated:")):
        return reading
    return EnergyReading(None, reading.seconds, None, f"energy meter {meter} gave {reading.joules:.6g} J with source "
                         f"{reading.source!r}, not 'measured:<counter>' or 'estimated:<model>': not kept")


def _measure_energy(session: Session, batch: np.ndarray, meter: EnergyMeter, job: Job) -> tuple[EnergyReading, int]:
    """Run inferences for at least the meter's resolution window and the timing's ``min_iters``; return the reading
    and the run count.

    A window shorter than the meter's update period would read zero or one
    tick, so it is lengthened by repeating inferences; ``min_iters`` (at least one) keeps a window of zero seconds
    (``min_time_s: 0`` with a meter that sets no ``min_window_s``) from holding no inference to divide by.
    """
    window_s = max(job.measure.min_time_s, meter.min_window_s)
    least = max(job.measure.min_iters, 1)
    runs = 0
    meter.start()
    t_end = time.perf_counter() + window_s
    while runs < least or time.perf_counter() < t_end:
        session.run(batch)
        runs += 1
    session.sync()
    return stopped(meter), runs


def runtime_versions() -> dict[str, str]:
    """Versions of the runtime packages this worker process has loaded (by their import names)."""
    from edgebench.runtimes.base import list_runtimes

    versions = {"python": sys.version.split()[0], "numpy": np.__version__}
    for runtime in list_runtimes().values():
        for package in runtime.needs:
            module = sys.modules.get(getattr(package, "module", None) or "")
            if module is not None:
                versions[package.module] = getattr(module, "__version__", "unknown")
    return versions


def stderr_tail(output: str | bytes | None, lines: int = 40) -> str | None:
    """The last ``lines`` lines a dead worker printed: kept in the store for debugging its failure."""
    if not output:
        return None
    text = output.decode(errors="replace") if isinstance(output, bytes) else output
    return "\n".join(text.rstrip().splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    """CLI entry: ``worker JOB.json RESULT.json``; always writes a result file when it can."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.stderr.write("usage: python -m edgebench.measure.worker JOB.json RESULT.json\n")
        return 2
    job = Job.model_validate_json(Path(args[0]).read_text())
    try:
        result = execute(job)
    except Exception as exc:  # any runtime error becomes a recorded failure, its traceback kept in the store
        # runtimes raise messages of many lines: the result gets one line (the file and the reason), the store all
        result = JobResult(job_id=job.job_id, status="failed", error=summarize(exc), error_detail=traceback.format_exc())
    Path(args[1]).write_text(result.model_dump_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
