"""A model's code digest covers the user's modules its factory imports, and a user's file that exits at import is named."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgebench.config import ModelConfig
from edgebench.models.code_closure import user_code_files
from edgebench.models.source import model_source

MODELS_PY = """from torch import nn

from teamnet.blocks import block
from . import layers


def build(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return nn.Sequential(block(in_channels, 8), layers.head(8, num_classes))
"""
BLOCKS_PY = """import json  # the standard library is not the team's code
from torch import nn


def block(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU())
"""
LAYERS_PY = """from torch import nn


def head(c: int, n: int) -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, n))
"""


@pytest.fixture
def teamnet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    package = tmp_path / "teamnet"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, text in (("models.py", MODELS_PY), ("blocks.py", BLOCKS_PY), ("layers.py", LAYERS_PY)):
        (package / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package
    for name in [m for m in sys.modules if m == "teamnet" or m.startswith("teamnet.")]:
        del sys.modules[name]


def test_the_factorys_helper_modules_are_in_its_code_digest(teamnet: Path) -> None:
    model = ModelConfig(name="teamnet.models:build")
    before = model_source(model).code_digest
    files = user_code_files([teamnet / "models.py"])
    assert [Path(f).name for f in files] == ["models.py", "__init__.py", "blocks.py", "layers.py"]  # absolute, relative
    (teamnet / "blocks.py").write_text(BLOCKS_PY.replace("nn.ReLU()", "nn.Tanh()"))  # another network
    assert model_source(model).code_digest != before
    (teamnet / "blocks.py").write_text(BLOCKS_PY)
    assert model_source(model).code_digest == before


def test_a_model_file_imports_its_sibling_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "net.py").write_text("import sibling_blocks\n\ndef build():\n    return sibling_blocks.make()\n")
    (tmp_path / "sibling_blocks.py").write_text("from torch import nn\n\ndef make():\n    return nn.Conv2d(1, 2, 3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert [Path(f).name for f in user_code_files([tmp_path / "net.py"])] == ["net.py", "sibling_blocks.py"]


def test_a_plugin_file_that_exits_at_import_is_named(tmp_path: Path) -> None:
    """argparse's parse_args() at import exited the command with its own usage line, naming no file."""
    from edgebench.plugins import PluginError, load_file

    net = tmp_path / "cli_net.py"
    net.write_text("import argparse\n\nargparse.ArgumentParser().parse_args(['--width', '3'])\n")
    with pytest.raises(PluginError, match=r"cli_net.py: importing it called sys.exit\(2\) \(parse_args\(\) at import\? "
                                          r"run it under `if __name__ == \"__main__\":`\)"):
        load_file(net)


def test_following_imports_runs_none_of_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """find_spec imported a dotted name's parent: a lazy GPU import's package raised (the run died before any
    work) and a heavy library started while hashing."""
    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu" / "__init__.py").write_text("raise RuntimeError('CUDA driver too old')\n")
    (tmp_path / "gpu" / "kernels.py").write_text("X = 1\n")
    (tmp_path / "net.py").write_text("def build():\n    from gpu import kernels\n    return kernels.X\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    files = user_code_files([tmp_path / "net.py"])
    assert [Path(f).relative_to(tmp_path).as_posix() for f in files] == ["net.py", "gpu/__init__.py",
                                                                          "gpu/kernels.py"]
    assert "gpu" not in sys.modules
