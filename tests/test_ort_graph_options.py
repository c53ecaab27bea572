"""A target's ORT graph optimisations (``backend_options.onnxruntime``): the level and passes left out reach every
session the backend opens, and they load the fp16 file ORT 1.32's NCHWc layout pass crashes on."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgebench.runtimes.base import BackendSettings, get_backend, get_exporter
from edgebench.runtimes.onnxruntime.session import GraphOptions, make_session_options, open_session
from edgebench.variants import QuantSpec

NCHWC_DOMAIN = "com.microsoft.nchwc"
x86_only = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                              reason="ORT's NCHWc layout pass runs on x86 CPUs only")


class ConvAttention(nn.Module):
    """A convolution's positions as tokens, LayerNorm, self-attention: a hybrid CNN-transformer's block."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 2, 1)
        self.norm = nn.LayerNorm(16)
        self.attention = nn.MultiheadAttention(16, 2, batch_first=True)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(torch.relu(self.conv(x)).flatten(2).transpose(1, 2))
        return self.fc(self.attention(tokens, tokens, tokens, need_weights=False)[0].mean(1))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, dict[str, Path], np.ndarray]:
    torch.manual_seed(0)
    model = ConvAttention().eval()
    out = tmp_path_factory.mktemp("ort-graph")
    images = np.random.default_rng(0).random((8, 3, 16, 16), dtype=np.float32)
    exporter = get_exporter("onnx")
    paths = {p: exporter.export(model, QuantSpec(precision=p), images, out / f"{p}.onnx") for p in ("fp32", "fp16")}
    return model, paths, images


def _optimised_domains(artifact: Path, passes: GraphOptions, tmp_path: Path) -> set[str]:
    options = make_session_options(1, passes)
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    options.log_severity_level = 3
    open_session(artifact, options, ["CPUExecutionProvider"], passes)
    return {node.domain for node in onnx.load(options.optimized_model_filepath).graph.node}


@x86_only
def test_the_level_and_the_passes_left_out_change_the_graph_ort_runs(exported: tuple, tmp_path: Path) -> None:
    """ORT's default (every level) lays the fp32 convolution out in NCHWc blocks on an x86 CPU; the extended level,
    or the NchwcTransformer left out by name, keeps it NCHW."""
    _, paths, _ = exported
    assert NCHWC_DOMAIN in _optimised_domains(paths["fp32"], GraphOptions(), tmp_path)
    assert NCHWC_DOMAIN not in _optimised_domains(paths["fp32"], GraphOptions(graph_optimization_level="extended"), tmp_path)
    assert NCHWC_DOMAIN not in _optimised_domains(paths["fp32"], GraphOptions(disabled_optimizers=("NchwcTransformer",)), tmp_path)


def test_the_backend_opens_its_session_with_the_targets_options(exported: tuple) -> None:
    import onnxruntime as ort

    _, paths, _ = exported
    settings = BackendSettings(options={"graph_optimization_level": "basic", "disabled_optimizers": ["ConstantFolding"]})
    session = get_backend("onnxruntime").load(paths["fp32"], settings)
    assert session._session.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert session._passes == GraphOptions(graph_optimization_level="basic", disabled_optimizers=("ConstantFolding",))  # and so the profiling and fp16 sessions


LOAD = """
import json, sys
import numpy as np
from pathlib import Path
from edgebench.runtimes.base import BackendSettings, get_backend

session = get_backend("onnxruntime").load(Path(sys.argv[1]), BackendSettings(precision="fp16",
                                          options=json.loads(sys.argv[2])))
images = np.load(sys.argv[3])
logits = np.concatenate([session.run(images[i:i + 1]) for i in range(len(images))])
details = session.details()  # a second session of the same passes: which weights ORT kept in fp16
profile = session.profile_layers(images[:1], runs=2)  # a third, profiling
print(json.dumps({"logits": logits.tolist(), "computes": details["fp16"]["computes"], "status": profile.status,
                  "layers": len(profile.rows)}))
"""


@x86_only
def test_an_fp16_file_the_nchwc_pass_crashes_on_loads_with_the_pass_left_out(exported: tuple, tmp_path: Path) -> None:
    """Conv, LayerNorm and attention in fp16: ORT 1.32's CPU provider dies of SIGSEGV loading the file at its default
    level (its NCHWc pass, where it meets the Casts ORT adds around the fp16 MatMuls it has no kernel for; upstream
    onnxruntime#28392). With the pass left out, the file loads in every session the backend opens and gives the
    model's logits to fp16 precision. In a child process: a crash would take pytest down with it."""
    model, paths, images = exported
    np.save(tmp_path / "images.npy", images)
    options = json.dumps({"disabled_optimizers": ["NchwcTransformer"]})
    child = subprocess.run([sys.executable, "-c", LOAD, str(paths["fp16"]), options, str(tmp_path / "images.npy")],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    out = json.loads(child.stdout.strip().splitlines()[-1])
    expected = model(torch.from_numpy(images)).detach().numpy()
    np.testing.assert_allclose(np.array(out["logits"]), expected, atol=5e-3)
    assert out["status"] == "ok" and out["layers"] > 0 and out["computes"]


@x86_only
def test_bench_takes_the_backends_options(exported: tuple) -> None:
    """`edgebench bench` made its own target with no way to set them, so it could not measure that file at all;
    `--option KEY=VALUE` sets one as a target file's backend_options does, checked the same way."""
    from typer.testing import CliRunner

    from edgebench.cli import app

    _, paths, _ = exported
    runner = CliRunner()
    crashed = runner.invoke(app, ["bench", str(paths["fp16"]), "--min-time-s", "0.05"])
    assert "worker killed by SIGSEGV" in crashed.output and "_create_inference_session" in crashed.output
    # the failure itself says what to try (it said only where ORT died)
    assert "backend_options: {onnxruntime: {disabled_optimizers: [NchwcTransformer]}}" in crashed.output
    result = runner.invoke(app, ["bench", str(paths["fp16"]), "--min-time-s", "0.05",
                                 "--option", "disabled_optimizers=[NchwcTransformer]"])
    assert result.exit_code == 0, result.output
    assert "fp16.onnx on onnxruntime" in result.output and "p50 interval" in result.output
    wrong = runner.invoke(app, ["bench", str(paths["fp32"]), "--option", "graph_optimization_level=fast"])
    assert wrong.exit_code == 2
    assert "backend_options.onnxruntime: option 'graph_optimization_level': Input should be 'all'" in wrong.output
    bare = runner.invoke(app, ["bench", str(paths["fp32"]), "--option", "extended"])
    assert bare.exit_code == 2 and "--option 'extended': not KEY=VALUE" in bare.output
