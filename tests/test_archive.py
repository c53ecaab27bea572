"""Compressed artifacts: the ZIP encoding reads back byte-identical, and the runtime loads what comes out."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from edgebench.archive import compress_artifact, compressed_size
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx


def _sparse_net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4)).eval()
    with torch.no_grad():
        net[0].weight.mul_(torch.rand(64, 64) > 0.9)  # 90 % zeros
    return net


def _unzip(archive: bytes, dest: Path) -> Path:
    """What a device does with the archive (a plain unzip); the artifact's path under ``dest``."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        zf.extractall(dest)
        return dest / Path(zf.namelist()[0]).parts[0]


def test_onnx_artifact_round_trips_and_loads(tmp_path: Path) -> None:
    net, x = _sparse_net(), torch.randn(3, 64)
    path = tmp_path / "m.onnx"
    export_fp32_onnx(net, x[:1], path)
    packed = compress_artifact(path)
    assert len(packed) == compressed_size(path) < 0.4 * path.stat().st_size  # 90 % zeros: most bytes vanish
    restored = _unzip(packed, tmp_path / "out")
    assert restored.read_bytes() == path.read_bytes()
    session = ort.InferenceSession(str(restored), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0], net(x).numpy(),
                                   atol=1e-5)


def test_directory_artifact_round_trips(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "firmware").mkdir(parents=True)
    (project / "firmware" / "w.txt").write_text("0," * 500 + "1")
    (project / "meta.json").write_text('{"a": 1}')
    restored = _unzip(compress_artifact(project), tmp_path / "out")
    assert restored == tmp_path / "out" / "project"
    assert sorted(p.relative_to(restored) for p in restored.rglob("*") if p.is_file()) == [
        Path("firmware/w.txt"), Path("meta.json")]
    assert (restored / "firmware" / "w.txt").read_text() == (project / "firmware" / "w.txt").read_text()
