"""TensorRT engines built from the ONNX artifact (fp32, fp16, int8 with entropy calibration), TensorRT 8.2 to 11.

Engines are specific to the GPU and TensorRT version that built them, so the
exporter is for a local GPU; remote Jetsons build on the device (the TensorRT
backend accepts ``.onnx`` and builds at load). int8 comes either from an
IInt8EntropyCalibrator2 over training images (fp32 ONNX; from TensorRT 11, which has
no calibrators, ONNX Runtime's entropy calibration writes the Q/DQ nodes) or from the
Q/DQ nodes of the int8 ONNX artifact (explicit quantization, no calibrator). The build time
is recorded next to the engine in ``<engine>.json``. Device buffers use torch's
CUDA allocator, so a CUDA build of torch is needed beside TensorRT.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from edgebench.components import missing_reason
from edgebench.errors import ArtifactError, UnsupportedModelError, require_module
from edgebench.runtimes.base import EXPORTERS, Exporter
from edgebench.runtimes.tensorrt import MAX_BATCH, TENSORRT
from edgebench.runtimes.tensorrt.qdq import write_tensorrt_qdq
from edgebench.variants import QuantSpec

log = logging.getLogger(__name__)


def import_tensorrt() -> Any:
    """The tensorrt module, or MissingExtraError saying where it comes from."""
    return require_module("tensorrt", None, "TensorRT engines", TENSORRT.install)


def tensorrt_unavailable_reason() -> str | None:
    """Why engines cannot be built or run here (no tensorrt, no CUDA torch, no GPU), or None."""
    from edgebench.runtimes.torch.cuda import cuda_unavailable_reason

    return missing_reason((TENSORRT,)) or cuda_unavailable_reason()


def onnx_has_qdq(onnx_path: Path) -> bool:
    """Whether the ONNX graph is explicitly quantized (QuantizeLinear/DequantizeLinear nodes)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in graph.node)


def _calibrator(trt: Any, images: np.ndarray, batch_size: int, cache_file: Path) -> Any:
    """An IInt8EntropyCalibrator2 feeding ``images`` (NCHW float32) from one GPU buffer."""
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.batches = [images[i : i + batch_size] for i in range(0, len(images) - batch_size + 1, batch_size)]
            self.buffer = torch.empty((batch_size, *images.shape[1:]), dtype=torch.float32, device="cuda")

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            if not self.batches:
                return None
            self.buffer.copy_(torch.from_numpy(np.ascontiguousarray(self.batches.pop(0))))
            torch.cuda.synchronize()
            return [int(self.buffer.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_file.write_bytes(bytes(cache))

    return EntropyCalibrator()


def tensorrt_major(trt: Any) -> int:
    """TensorRT's major version (11 removed weak typing: no FP16/INT8 builder flags, no calibrators)."""
    return int(trt.__version__.split(".")[0])


def _strongly_typed_input(onnx_path: Path, precision: str, calibration: np.ndarray | None, tmp: Path) -> Path:
    """The ONNX a strongly typed build (TensorRT >= 11) needs for ``precision``: fp16 tensors for fp16, Q/DQ for int8.

    int8 without Q/DQ is quantized here as TensorRT wants it (signed symmetric activations, 8-bit per-channel
    weights) on the calibration images with the entropy calibrator, the same rule as IInt8EntropyCalibrator2.
    """
    if precision == "fp16":
        from edgebench.runtimes.onnxruntime.fp16 import convert_fp16

        convert_fp16(onnx_path, tmp / "fp16.onnx")
        return tmp / "fp16.onnx"
    if calibration is None or len(calibration) == 0:
        raise ValueError("int8 TensorRT from an fp32 ONNX needs calibration images")
    from edgebench.runtimes.onnxruntime.calibration import quantize_qdq

    quantize_qdq(onnx_path, tmp / "int8.onnx", calibration.astype(np.float32), calibrator="entropy",
                 reduce_range=False, symmetric_activations=True, signed_activations=True)
    return tmp / "int8.onnx"


def _set_workspace(trt: Any, config: Any, workspace_mb: int) -> None:
    """The builder's scratch memory: memory pools from TensorRT 8.4, ``max_workspace_size`` before (JetPack 4)."""
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    else:
        config.max_workspace_size = workspace_mb << 20


def build_engine(onnx_path: Path, precision: str, calibration: np.ndarray | None = None,
                 workspace_mb: int = 1024) -> tuple[bytes, float]:
    """Serialized engine for ``precision`` and its build time in seconds.

    int8 uses the graph's Q/DQ nodes when present (made signed and symmetric, see ``qdq``), else calibrates on
    ``calibration``. TensorRT < 11 builds fp16 and int8 with its precision flags (layers int8 cannot run fall back to
    fp16); TensorRT >= 11 builds strongly typed networks, from an fp16 ONNX or a Q/DQ one (other layers in fp32).
    """
    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError(f"TensorRT cannot build precision '{precision}'; use fp32, fp16 or int8")
    trt = import_tensorrt()
    weakly_typed = tensorrt_major(trt) < 11
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if precision != "fp32" and not weakly_typed and not (precision == "int8" and onnx_has_qdq(onnx_path)):
            onnx_path = _strongly_typed_input(onnx_path, precision, calibration, tmp)
        explicit_int8 = precision == "int8" and onnx_has_qdq(onnx_path)
        if explicit_int8:
            write_tensorrt_qdq(onnx_path, tmp / "qdq.onnx")
            onnx_path = tmp / "qdq.onnx"
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        if weakly_typed and precision != "fp32" and not getattr(builder, f"platform_has_fast_{precision}", True):
            # TensorRT builds it anyway (a Jetson Nano's int8 runs fp32 kernels): the figure would not be int8's
            raise UnsupportedModelError(f"this GPU has no fast {precision} (TensorRT's platform_has_fast_{precision} "
                                        f"is false): drop {precision} from the target's precisions")
        # explicit batch is the only mode from 10 on; before, it is a creation flag
        network = builder.create_network(0 if tensorrt_major(trt) >= 10
                                         else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ArtifactError(f"TensorRT cannot parse {onnx_path}: {errors}")

        config = builder.create_builder_config()
        _set_workspace(trt, config, workspace_mb)
        tensor = network.get_input(0)
        chw = tuple(tensor.shape)[1:]
        profile = builder.create_optimization_profile()
        profile.set_shape(tensor.name, (1, *chw), (1, *chw), (MAX_BATCH, *chw))
        config.add_optimization_profile(profile)
        if weakly_typed and precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)  # int8 layers fall back to fp16, not fp32
        if weakly_typed and precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            if not explicit_int8:
                if calibration is None or len(calibration) == 0:
                    raise ValueError("int8 TensorRT from an fp32 ONNX needs calibration images")
                batch = min(32, len(calibration))
                config.int8_calibrator = _calibrator(trt, calibration.astype(np.float32), batch,
                                                     tmp / "calibration.cache")
                calibration_profile = builder.create_optimization_profile()  # calibration runs at kOPT
                calibration_profile.set_shape(tensor.name, *[(batch, *chw)] * 3)
                config.set_calibration_profile(calibration_profile)
        t0 = time.perf_counter()
        serialized = builder.build_serialized_network(network, config)
        build_s = time.perf_counter() - t0
    if serialized is None:
        raise ArtifactError(f"TensorRT failed to build a {precision} engine from {onnx_path} (see its log)")
    return bytes(serialized), build_s


@EXPORTERS.register("tensorrt")
class TensorRTExporter(Exporter):
    """ONNX (fp32, via the ONNX exporter) -> engine for this machine's GPU."""

    format = "tensorrt"
    precisions = ("fp32", "fp16", "int8")
    suffix = ".engine"
    # an engine only loads in the TensorRT it was built by
    converters = ("tensorrt", "torch", "onnxscript", "onnx-ir", "onnx")

    def available(self) -> str | None:
        return tensorrt_unavailable_reason()

    def export(self, model: nn.Module, quant: QuantSpec, calibration: np.ndarray, out_path: Path) -> Path:
        import torch

        from edgebench.runtimes.onnxruntime.export import export_fp32_onnx

        trt = import_tensorrt()
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            example = torch.from_numpy(np.ascontiguousarray(calibration[:1], dtype=np.float32))
            export_fp32_onnx(model.eval(), example, onnx_path)
            engine, build_s = build_engine(onnx_path, quant.precision, calibration[: quant.calibration_samples])
        out_path.write_bytes(engine)
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "unknown"
        record = {"precision": quant.precision, "build_s": round(build_s, 3), "tensorrt": trt.__version__, "gpu": gpu}
        out_path.with_name(out_path.name + ".json").write_text(json.dumps(record, indent=2))
        log.info("built %s engine in %.1f s on %s", quant.precision, build_s, gpu)
        return out_path
