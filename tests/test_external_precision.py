"""Whether another tool's file is quantized, read from its graph: the check of the precision an experiment declares
for it, on files written here by the runtimes' own converters and quantizers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgebench.errors import ConfigError
from edgebench.external_precision import check_declared_precision, quantized_op
from edgebench.runtimes.base import get_exporter
from edgebench.variants import QuantSpec


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()


IMAGES = np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("precision")
    exporter = get_exporter("onnx")
    return {precision: exporter.export(_net(), QuantSpec(precision=precision), IMAGES, root / f"{precision}.onnx")
            for precision in ("fp32", "fp16", "int8", "int8_dynamic")}


def test_onnx_float_and_quantized_files(onnx_files):
    assert quantized_op(onnx_files["fp32"], "onnx") is None
    assert quantized_op(onnx_files["int8"], "onnx") == "an ONNX QuantizeLinear node"
    assert quantized_op(onnx_files["int8_dynamic"], "onnx") is not None
    check_declared_precision(onnx_files["int8_dynamic"], "onnx", "int8_dynamic")
    with pytest.raises(ConfigError, match="fp32.onnx: declared precision int8, but it computes in floating point"):
        check_declared_precision(onnx_files["fp32"], "onnx", "int8")
    with pytest.raises(ConfigError, match=r"declared precision fp16, but its graph is quantized"):
        check_declared_precision(onnx_files["int8"], "onnx", "fp16")


def test_an_onnx_file_declared_as_the_other_float_width_or_int8_kind_is_refused(onnx_files):
    """An fp16 file listed as fp32 (a model.half() export) and a static int8 one listed as int8_dynamic were
    accepted, and stood on the fronts under the wrong precision."""
    for precision in ("fp32", "fp16", "int8", "int8_dynamic"):
        check_declared_precision(onnx_files[precision], "onnx", precision)
    for given, declared, why in (("fp16", "fp32", "its weights are all float16: declare precision fp16"),
                                 ("fp32", "fp16", "its weights are all float32: declare precision fp32"),
                                 ("int8", "int8_dynamic", "its graph quantizes with scales fixed in the file .*: declare precision int8$"),
                                 ("int8_dynamic", "int8", "its graph quantizes activations at run time .*: declare precision "
                                                          "int8_dynamic")):
        with pytest.raises(ConfigError, match=rf"{given}.onnx: declared precision {declared}, but {why}"):
            check_declared_precision(onnx_files[given], "onnx", declared)


def test_a_quantized_onnx_file_declared_float_is_told_its_one_int8_kind(onnx_files):
    """A dynamically quantized file declared fp32 was told 'int8 (int8_dynamic for ...)'; declaring int8 was then
    refused as quantized at run time: two refusals to find the one precision its graph shows."""
    for given, declared in (("int8_dynamic", "fp32"), ("int8_dynamic", "fp16"), ("int8", "fp32")):
        with pytest.raises(ConfigError, match=rf"{given}.onnx: declared precision {declared}, but its graph is "
                                              rf"quantized \(an ONNX \w+ node\): declare precision {given}$"):
            check_declared_precision(onnx_files[given], "onnx", declared)


def test_openvino_irs_compressed_to_float16_are_float_and_of_a_qdq_file_quantized(onnx_files, tmp_path):
    ov = pytest.importorskip("openvino", reason="the openvino extra is not installed (CI installs it)")
    for precision, compress in (("fp32", True), ("int8", False)):  # ovc's default: float16 weights
        xml = tmp_path / precision / "model.xml"
        ov.save_model(ov.convert_model(str(onnx_files[precision])), str(xml), compress_to_fp16=compress)
        found = quantized_op(xml, "openvino")
        assert (found is None) == (precision == "fp32"), found  # int8: its int8 weight constants, FakeQuantizes
        check_declared_precision(xml, "openvino", "fp16" if precision == "fp32" else "int8")


def test_tflite_float_and_int8_files(tmp_path):
    pytest.importorskip("litert_torch", reason="the litert extra is not installed (CI installs it)")
    exporter = get_exporter("tflite")
    for precision in ("fp32", "fp16", "int8"):
        path = exporter.export(_net(), QuantSpec(precision=precision), IMAGES, tmp_path / f"{precision}.tflite")
        found = quantized_op(path, "tflite")
        assert (found is not None) == (precision == "int8"), (precision, found)
