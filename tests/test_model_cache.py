"""The run's model cache: a damaged cached model is built again, and a full disk is said as such."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from edgebench.errors import OutputPathError
from edgebench.prune import BuiltModel
from edgebench.run_cache import ModelCache
from edgebench.variants import VariantSpec

SPEC = VariantSpec(model="digits_cnn", dataset="digits")


def _built() -> BuiltModel:
    return BuiltModel(model=nn.Linear(64, 10).eval(), params=650, macs=640, training_macs=0, filters={},
                      val_accuracy=0.5)


def test_a_truncated_cached_model_is_built_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A cached model damaged after it was written (a crash, a full disk, a sync tool) is not there: exporting it
    would fail on every later run. Its sha256 is written beside it; an entry from before digests is taken as it is."""
    cache = ModelCache(tmp_path)
    cache.put(SPEC, _built())
    path = cache.model_path(SPEC)
    assert path.with_name(path.name + ".sha256").is_file() and cache.has(SPEC)
    assert isinstance(cache.get(SPEC).model, nn.Linear)
    with open(path, "r+b") as file:  # same size, one byte changed
        file.seek(100)
        byte = file.read(1)
        file.seek(100)
        file.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(1, 1))
    with caplog.at_level(logging.WARNING):
        assert not cache.has(SPEC) and cache.get(SPEC) is None
    assert f"cached model {path} is damaged" in caplog.text
    cache.put(SPEC, _built())  # the rebuild replaces file and digest
    assert cache.has(SPEC)
    os.truncate(path, 3000)
    assert not cache.has(SPEC)
    path.with_name(path.name + ".sha256").unlink()  # as cached before digests were written
    assert cache.has(SPEC)


@pytest.mark.parametrize("failure", ["torch", "enospc"])
def test_a_full_disk_while_saving_a_model_says_no_space_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            failure: str) -> None:
    """torch.save on a full disk says only '[enforce fail at inline_container.cc] unexpected pos'; the free space
    left (or the errno) tells what happened."""
    def full_save(obj: object, path: Path, **_options: object) -> None:  # save_whole passes pickle_module
        Path(path).write_bytes(b"PK" * 100)
        if failure == "enospc":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 8576 vs 8472")

    usage = shutil.disk_usage(tmp_path)
    free = 0 if failure == "torch" else usage.free
    monkeypatch.setattr(torch, "save", full_save)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=free))
    cache = ModelCache(tmp_path)
    with pytest.raises(OutputPathError, match=rf"^no space left on {tmp_path / 'models'} \(writing "
                                              rf"{SPEC.id}.pt\); free some space or set run.workdir"):
        cache.put(SPEC, _built())
    assert list((tmp_path / "models").iterdir()) == []  # the partial file is gone


def test_another_save_failure_is_not_called_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_save(obj: object, path: Path, **_options: object) -> None:
        raise RuntimeError("cannot pickle this")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(RuntimeError, match="cannot pickle this"):
        ModelCache(tmp_path).put(SPEC, _built())


def test_a_model_file_edited_during_a_run_still_loads_the_model_cached_from_it(tmp_path, monkeypatch) -> None:
    """Editing the model file mid-run: every later job failed 'variant ... is not in the model cache', with the file
    right there (its class's module, named by the file's old content, could not be imported any more). The classes
    of a user's file are pickled by value now: a fresh worker loads the model as it was built."""
    import sys

    from edgebench.plugins import PLUGINS_ENV, load_file

    nets = tmp_path / "nets.py"
    nets.write_text("from torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                    "        self.fc = nn.Linear(4, 2)\n\n    def forward(self, x):\n        return self.fc(x)\n")
    module = load_file(nets)
    monkeypatch.setenv(PLUGINS_ENV, str(nets))
    cache, built = ModelCache(tmp_path / "run"), _built()
    cache.put(SPEC, BuiltModel(**{**vars(built), "model": module.Net()}))
    nets.write_text(nets.read_text().replace("return self.fc(x)", "return -self.fc(x)"))  # an edit, mid-run
    del sys.modules[module.__name__]  # a fresh worker process has only the file as it is now
    loaded = cache.get(SPEC).model
    x = torch.ones(1, 4)
    assert torch.equal(loaded(x), loaded.fc(x))  # the forward it was built with, not the edited one


def test_damaged_facts_or_data_files_are_written_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A damaged models/<id>.json made every run a JSONDecodeError traceback; a truncated test/reference .npz
    failed every job of every later run with "BadZipFile: File is not a zip file"."""
    import numpy as np

    from edgebench.run_cache import write_calibration

    cache = ModelCache(tmp_path)
    cache.put(SPEC, _built())
    cache.facts_path(SPEC).write_text('{"params": 650, "macs"')
    with caplog.at_level(logging.WARNING):
        assert not cache.has(SPEC)
    assert f"cached facts {cache.facts_path(SPEC)} are damaged" in caplog.text
    x, y = np.ones((4, 1, 2, 2), np.float32), np.arange(4) % 2
    path = write_calibration(x, y, 4, tmp_path)
    os.truncate(path, path.stat().st_size // 2)
    with caplog.at_level(logging.WARNING):
        assert write_calibration(x, y, 4, tmp_path) == path
    assert np.array_equal(np.load(path)["x"], x) and f"cached {path} is damaged" in caplog.text
