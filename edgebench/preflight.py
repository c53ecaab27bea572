"""Checks a run makes before any work, so a bad set-up fails in a second with one line and an untouched store.

Constraints between the experiment's own fields are checked when it loads (``config.py``); what needs the
machine or the data is checked here: the directories the run will write (:func:`check_output_paths`) and
whether the model can run on the dataset's images (:func:`check_model_fits_data`, one forward pass of the
untrained model).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgebench.errors import ConfigError, first_line, require_module
from edgebench.paths import writable_dir, writable_file
from edgebench.plan import plan_fp32_variants

if TYPE_CHECKING:
    from edgebench.config import Experiment
    from edgebench.data import DatasetSplits


def check_output_paths(exp: Experiment) -> None:
    """The run directory, the report directory and a SQLite store's directory can be written."""
    writable_dir(exp.workdir(), "run.workdir")
    writable_dir(exp.report_dir(), "report.dir")
    url = exp.store_url()
    if "://" not in url:
        writable_file(Path(url), "store.url")
    elif url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        writable_file(Path(url.removeprefix("sqlite:///")), "store.url")
    if exp.tracking.mlflow is not None:  # before any training: a run must not end unable to log
        require_module("mlflow", "mlflow", "tracking.mlflow")


def check_model_fits_data(exp: Experiment, splits: DatasetSplits) -> None:
    """One forward pass of the untrained baseline on two training images: the model and the data agree."""
    import torch

    from edgebench.prune.build import new_model  # torch: imported only when a run starts

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
