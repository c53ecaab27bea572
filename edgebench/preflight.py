"""Checks made before any work, so a bad experiment fails in a second with one line and an untouched store.

Single fields are validated by the pydantic models of ``config.py``; what they cannot see is checked here:
constraints between fields (:func:`check_experiment`, run when an experiment loads), the directories a
command will write (:func:`writable_dir`, :func:`writable_file`, :func:`check_output_paths`), and whether the
model can run on the dataset's images (:func:`check_model_fits_data`, one forward pass of the untrained model).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from edgebench.errors import ConfigError, OutputPathError, first_line

if TYPE_CHECKING:
    from edgebench.config import Experiment
    from edgebench.data import DatasetSplits

#: hls4ml's AP notation: ap_fixed<W,I[,Q[,O[,N]]]>, ap_ufixed<...>, ap_int<W>, ap_uint<W> (the ``ap_`` is optional)
FIXED_POINT = re.compile(r"^(ap_)?u?(fixed<\s*\d+\s*,\s*-?\d+\s*(,\s*\w+\s*){0,3}>|int<\s*\d+\s*>)$")


def check_experiment(exp: Experiment, source: str) -> None:
    """Constraints between fields of ``exp``; ConfigError naming ``source`` and the fields."""
    pruning, epochs = exp.pruning, exp.training.epochs
    late = [e for e in pruning.prune_epochs if not 0 <= e < epochs]
    if late and "while_training" in pruning.schedules:
        raise ConfigError(f"{source}: pruning.prune_epochs: {late} outside the training run (training.epochs: {epochs}, "
                          f"so epochs 0..{epochs - 1}); lower them or train longer")
    if not FIXED_POINT.match(exp.quantization.fixed_point):
        raise ConfigError(f"{source}: quantization.fixed_point: '{exp.quantization.fixed_point}' is not an hls4ml fixed-point "
                          "type; use e.g. ap_fixed<16,6> (width, integer bits)")
    seen: set[str] = set()
    for i, selection in enumerate(exp.targets):
        if selection.name in seen:
            raise ConfigError(f"{source}: targets: '{selection.name}' is listed twice; give one entry per target")
        seen.add(selection.name)
        grids = (
            ("criteria", selection.criteria, "pruning.criteria", pruning.criteria),
            ("ratios", selection.ratios, "pruning.ratios", pruning.ratios),
            ("schedules", selection.schedules, "pruning.schedules", pruning.schedules),
            ("precisions", selection.precisions, "quantization.precisions", exp.quantization.precisions),
        )
        for field, chosen, grid_field, grid in grids:
            extra = [v for v in chosen or () if v not in grid]
            if extra:
                raise ConfigError(f"{source}: targets.{i}.{field}: {', '.join(map(str, extra))} not in {grid_field} "
                                  f"({', '.join(map(str, grid)) or 'empty'}), so target '{selection.name}' would "
                                  "measure nothing for it")


def writable_dir(path: Path, what: str) -> Path:
    """Create directory ``path`` if missing and check a file can be written there; OutputPathError if not."""
    path = Path(path).expanduser()
    if problem := why_unwritable(path):
        raise OutputPathError(f"{what} {path}: {problem}; choose another path")
    return path


def writable_file(path: Path, what: str) -> Path:
    """Check file ``path`` can be written (its directory is created if missing); OutputPathError if not."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a directory; give a file name")
    if problem := why_unwritable(path.parent):
        raise OutputPathError(f"{what} {path}: {problem}")
    return path


def why_unwritable(directory: Path) -> str | None:
    """Why no file can be written in ``directory`` (created if missing), or None."""
    blocker = next((p for p in (directory, *directory.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        return f"{blocker} is a file, not a directory"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        return f"cannot write in {directory} ({exc.strerror or exc})"
    return None


def check_output_paths(exp: Experiment) -> None:
    """The run directory, the report directory and a SQLite store's directory can be written."""
    writable_dir(exp.workdir(), "run.workdir")
    writable_dir(exp.report_dir(), "report.dir")
    url = exp.store_url()
    if "://" not in url:
        writable_file(Path(url), "store.url")
    elif url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        writable_file(Path(url.removeprefix("sqlite:///")), "store.url")


def check_model_fits_data(exp: Experiment, splits: DatasetSplits) -> None:
    """One forward pass of the untrained baseline on two training images: the model and the data agree."""
    import torch

    from edgebench.plan import plan_fp32_variants
    from edgebench.prune.build import new_model

    baseline = plan_fp32_variants(exp)[0]
    shape = "x".join(map(str, splits.input_shape))
    what = f"model {exp.model.name}" + (f" with {exp.model.kwargs}" if exp.model.kwargs else "")
    with torch.random.fork_rng(devices=[]):  # training seeds itself; this check must not move its RNG
        try:
            model = new_model(baseline, splits).eval()
            with torch.inference_mode():
                out = model(torch.from_numpy(splits.x_train[:2]))
        except Exception as exc:  # whatever the factory or forward raises, the cause is this pairing
            raise ConfigError(f"{what} does not run on dataset {splits.name} ({shape} images): {first_line(exc)}") from None
    if tuple(out.shape) != (len(splits.x_train[:2]), splits.num_classes):
        raise ConfigError(f"{what} gives outputs of shape {tuple(out.shape)} on dataset {splits.name}; expected "
                          f"(batch, {splits.num_classes}) logits")
