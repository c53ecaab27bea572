"""``edgebench profile`` and ``bench --profile-layers``: per-layer tables in the terminal, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from edgebench.cli import app
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx

runner = CliRunner()


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8 * 8 * 8, 3)).eval()
    path = tmp_path_factory.mktemp("cli") / "m.onnx"
    export_fp32_onnx(model, torch.zeros(1, 1, 8, 8), path)
    return path


def test_profile_prints_layers_of_the_artifact_on_a_target(onnx_file: Path) -> None:
    result = runner.invoke(app, ["profile", str(onnx_file), "--target", "local-cpu", "--input-shape", "1,8,8",
                                 "--runs", "10"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "m.onnx on local-cpu (onnxruntime, 1 thread(s))" in result.output
    for layer in ("0", "2", "5"):  # the Sequential's conv, conv and linear module paths
        assert f"│ {layer} " in result.output
    assert "not conv/gemm compute" in result.output and "of the timed p50" in result.output


def test_bench_profile_layers_adds_the_table(onnx_file: Path) -> None:
    """As README writes it, `bench ARTIFACT --profile-layers`: an ONNX input with fixed C,H,W needs no --input-shape."""
    result = runner.invoke(app, ["bench", str(onnx_file), "--min-time-s", "0.05", "--profile-layers"],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "p50 ms" in result.output and "per-layer profile: onnxruntime" in result.output


def test_profile_wrong_backend_is_one_line(onnx_file: Path) -> None:
    result = runner.invoke(app, ["profile", str(onnx_file), "--target", "local-cpu", "--backend", "litert",
                                 "--input-shape", "1,8,8"])
    assert result.exit_code == 2 and "not one of the target's (torch, onnxruntime)" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["profile", str(onnx_file), "--target", "local-litert", "--input-shape", "1,8,8"])
    assert result.exit_code == 2 and "none of the target's backends (litert) reads m.onnx" in result.output


def test_an_onnx_input_of_unknown_size_asks_for_the_shape(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "any",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "c", "h", "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])])
    path = tmp_path / "any.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    result = runner.invoke(app, ["bench", str(path)])
    assert result.exit_code == 2, result.output
    assert " ".join(result.output.split()) == "error: give --data NPZ or --input-shape C,H,W (any.onnx's input 'x' is ?x?x?x?)"


def test_bench_errors_name_edgebenchs_backends_not_a_target(tmp_path: Path) -> None:
    """bench has no target: its errors spoke of "the target's backends" and told the user to pick another target."""
    (tmp_path / "notes.txt").write_text("not a model")
    result = CliRunner().invoke(app, ["bench", str(tmp_path / "notes.txt")])
    assert result.exit_code == 2 and "none of edgebench's backends (onnxruntime, " in result.output
    assert "reads notes.txt; pass --backend" in result.output and "target" not in result.output


def test_bench_warns_that_raw_pixels_are_fed_as_they_are(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """uint8 pixels reached a model trained on normalised ones: bench showed accuracy 0.44 where the run stored 0.71,
    with no word."""
    import numpy as np

    from edgebench.cli.profile import eval_image_shape

    np.savez(tmp_path / "raw.npz", x=np.full((4, 1, 8, 8), 200, np.uint8), y=np.zeros(4, np.int64))
    np.savez(tmp_path / "norm.npz", x=np.full((4, 1, 8, 8), 1.5, np.float32), y=np.zeros(4, np.int64))
    with caplog.at_level("WARNING", logger="edgebench.cli.profile"):
        eval_image_shape(tmp_path / "norm.npz", None, tmp_path / "m.onnx")
        assert caplog.text == ""
        eval_image_shape(tmp_path / "raw.npz", None, tmp_path / "m.onnx")
    assert "raw.npz holds raw pixels (uint8, up to 200): bench feeds them as they are" in caplog.text
