"""Reading and compiling an ONNX artifact for OpenVINO's CPU plugin one way, for timing (the backend) and for
per-layer profiling alike."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from edgebench.errors import REEXPORT_HINT, ArtifactError
from edgebench.runtimes.base import BackendSettings

log = logging.getLogger(__name__)

#: OpenVINO's own names of the properties edgebench sets
THREADS, STREAMS, HINT, PRECISION, PERF_COUNT = (
    "INFERENCE_NUM_THREADS", "NUM_STREAMS", "PERFORMANCE_HINT", "INFERENCE_PRECISION_HINT", "PERF_COUNT")


def compile_config(settings: BackendSettings, perf_count: bool = False) -> dict[str, Any]:
    """CPU plugin properties for ``settings``; ``perf_count`` turns on per-node counters (profiling only).

    Threads and streams are set explicitly, so no performance hint is needed; one given in the target's
    options is passed on. Each stream needs a thread: OpenVINO caps streams at the thread count.
    """
    streams = int(settings.options.get("streams", 1))
    if streams > settings.threads:
        log.warning("openvino: %d streams on %d thread(s) run as %d stream(s)", streams, settings.threads,
                    settings.threads)
    config: dict[str, Any] = {
        THREADS: settings.threads,
        STREAMS: streams,
        # fp32 artifacts must run in fp32: CPUs with bf16/AMX would otherwise downcast by default.
        # int8 QDQ models still run their quantized layers as int8 under this hint.
        # an fp16 variant is the fp32 artifact under the f16 hint; CPUs without fp16 arithmetic run it otherwise,
        # which the session's details record (conv_fc_runtime_precisions)
        PRECISION: "f16" if settings.precision == "fp16" else "f32",
        PERF_COUNT: perf_count,
    }
    if "performance_hint" in settings.options:
        config[HINT] = str(settings.options["performance_hint"])
    return config


def read_onnx(core: Any, artifact: Path) -> Any:
    """The ``ov.Model`` of an ONNX artifact (or of an OpenVINO IR: its ``.xml``, or the cache's directory holding
    it), with a clear error when it is missing or unreadable."""
    from edgebench.runtimes.openvino.ir import ir_xml, openvino_reason

    artifact = ir_xml(artifact)
    if not artifact.is_file():
        kind = "ONNX model" if artifact.suffix == ".onnx" else "OpenVINO IR"
        raise ArtifactError(f"{kind} not found: {artifact}; re-run the export stage (edgebench run)")
    try:
        return core.read_model(str(artifact))
    except RuntimeError as exc:
        if unknown := ops_without_conversion(str(exc)):
            theirs = " (ONNX Runtime's own ops: its quantizer writes them in QuantFormat.QOperator; one in QDQ format " \
                "OpenVINO reads)" if all(op.startswith("com.microsoft.") for op in unknown) else ""
            raise ArtifactError(f"OpenVINO's ONNX reader has no conversion for {', '.join(unknown)} in "
                                f"{artifact.name}{theirs}; leave this artifact's OpenVINO target out, or give a file "
                                "without them") from exc
        if failed := unconverted_ops(str(exc)):
            raise ArtifactError(f"OpenVINO's ONNX reader cannot convert {failed} of {artifact.name}: the layer "
                                "behind it has no OpenVINO form (ONNX Runtime runs the same file); leave this "
                                "model's OpenVINO target out, or write the layer another way") from exc
        raise ArtifactError(f"OpenVINO cannot read {artifact}: {openvino_reason(exc)} ({REEXPORT_HINT})") from exc


#: words of the reasons of ops that fail only on what an unconverted op before them left (no shape, no type)
_KNOCK_ON = ("dynamic", "static", "Element not supported")


def ops_without_conversion(message: str) -> list[str]:
    """The op types OpenVINO's report lists as having no conversion rule at all (domain-qualified where not ONNX's)."""
    found = re.search(r"^-- No conversion rule found for operations: (.+)$", message, re.M)
    return [op.strip() for op in found.group(1).split(",")] if found else []


def unconverted_ops(message: str) -> str | None:
    """The ops OpenVINO's report of a failed conversion names, each with the last line of its reason, and after them
    the ops that failed only on what those left: what its multi-line error, cut to its first line, hid. None for
    any other error."""
    blocks = re.findall(r"^-- (\S+) with a message:\n(.*?)(?=^-- |^Summary:|\Z)", message, re.M | re.S)
    if not blocks:
        return None
    reasons = [(op.rsplit("-", 1)[0], [ln.strip() for ln in text.splitlines() if ln.strip()][-1]) for op, text in blocks]
    causes = [(op, why) for op, why in reasons if not any(word in why for word in _KNOCK_ON)] or reasons
    after = [op for op, why in reasons if (op, why) not in causes]
    return "; ".join(f"{op} ({why})" for op, why in causes) + (
        f" (and {', '.join(after)}, which fail on what it leaves)" if after else "")


def compile_for_batch(core: Any, model: Any, batch: int, config: dict[str, Any]) -> Any:
    """Fix the model's batch dimension to ``batch`` and compile it for the CPU."""
    shaped = model.clone()
    shape = shaped.input(0).get_partial_shape()
    shape[0] = batch
    shaped.reshape({shaped.input(0): shape})
    return core.compile_model(shaped, "CPU", config)


def infer(request: Any, batch: Any) -> None:
    """One synchronous inference of ``batch`` (a numpy array) on ``request``, its input and outputs shared with
    OpenVINO rather than copied, as an application sets its own buffers on the request. The copying default cost a
    1-channel 1x1 conv 0.033 instead of 0.018 ms per call on an Intel Xeon guest, and 0.064 ms once onnxruntime
    was imported in the process (that path throws and catches a C++ exception per call, whose unwinding slows with
    the libraries loaded). Outputs are views into the request: copy them before the next call."""
    request.infer({0: batch}, share_inputs=True, share_outputs=True)
