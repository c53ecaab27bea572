"""The files a run keeps in its workdir: trained models by variant id, eval data, references, calibration.

Every file is written under a temporary name of its writer and renamed (``cache_files``), so a killed run
never leaves a half-written entry and two runs sharing the directory never break each other; each is keyed
by its content so a resumed or repeated run reuses it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from edgebench.cache_files import digest_matches, replacing, write_digest
from edgebench.data import DatasetSplits
from edgebench.data.fingerprint import arrays_digest
from edgebench.errors import OutputPathError
from edgebench.models.whole_module import save_whole
from edgebench.prune import BuiltModel
from edgebench.sampling import spread_sample
from edgebench.variants import VariantSpec

log = logging.getLogger(__name__)


#: free bytes under which a failed write is taken to have filled its disk (torch.save says only "unexpected pos")
_FULL_BYTES = 1 << 20


@contextlib.contextmanager
def _replacing_on_disk(path: Path) -> Iterator[Path]:
    """:func:`replacing`, with a write that failed on a full disk said as such (torch.save's own error on a full
    disk is ``[enforce fail at inline_container.cc] unexpected pos``); checked before the partial file is removed."""
    with replacing(path) as tmp:
        try:
            yield tmp
        except (OSError, RuntimeError) as exc:
            if getattr(exc, "errno", None) == errno.ENOSPC or shutil.disk_usage(path.parent).free < _FULL_BYTES:
                raise OutputPathError(f"no space left on {path.parent} (writing {path.name}); free some space or "
                                      "set run.workdir on a larger disk") from exc
            raise


def _atomic_save(obj: object, path: Path) -> None:
    """Write via a temporary file of this process, so a killed run never leaves a half-written cache entry and
    a run beside this one never renames this one's file away. A model gets its sha256 beside it (moved into place
    with it), so a file damaged later is rebuilt, not exported (:meth:`ModelCache.has`)."""
    with _replacing_on_disk(path) as tmp:
        if isinstance(obj, torch.nn.Module):
            save_whole(obj, tmp)
            write_digest(tmp)
        else:
            tmp.write_text(json.dumps(obj, indent=1, default=str))


def _intact(path: Path) -> bool:
    """Whether the model file ``path`` holds what was written: its sha256 matches the one written with it (a file
    cached before digests were written is taken as it is, as artifacts are)."""
    whole = digest_matches(path)
    if not whole:
        log.warning("cached model %s is damaged (not the file that was written): building it again", path)
    return whole


def _readable_facts(path: Path) -> bool:
    """Whether the facts JSON at ``path`` is there and parses (a damaged one is built again, as a damaged model)."""
    if not path.is_file():
        return False
    try:
        json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        log.warning("cached facts %s are damaged (%s): building the model again", path, exc)
        return False
    return True


class ModelCache:
    """Trained/pruned fp32 models cached by variant id under ``<workdir>/models``."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "models"
        self.dir.mkdir(parents=True, exist_ok=True)

    def model_path(self, spec: VariantSpec) -> Path:
        """The pickled module of ``spec`` (exporters load it in their own processes)."""
        return self.dir / f"{spec.id}.pt"

    def get(self, spec: VariantSpec) -> BuiltModel | None:
        model_path, facts_path = self.model_path(spec), self.facts_path(spec)
        if not self.has(spec):
            return None
        try:
            model = torch.load(model_path, map_location="cpu", weights_only=False).eval()
            facts = json.loads(facts_path.read_text())
        except Exception as exc:  # a corrupt cache entry is rebuilt, not fatal
            log.warning("cached model %s unreadable (%s); rebuilding", model_path, exc)
            return None
        return BuiltModel(model=model, **facts)

    def put(self, spec: VariantSpec, built: BuiltModel) -> None:
        facts = {k: v for k, v in vars(built).items() if k != "model"}
        _atomic_save(built.model, self.model_path(spec))
        _atomic_save(facts, self.facts_path(spec))

    def facts_path(self, spec: VariantSpec) -> Path:
        """The built model's facts (accuracy, filters, training MACs...) as JSON."""
        return self.dir / f"{spec.id}.json"

    def has(self, spec: VariantSpec) -> bool:
        """Whether ``spec`` was built and cached, and its model file is intact (a damaged one is built again: every
        export of it would fail, on every later run)."""
        model_path = self.model_path(spec)
        return model_path.is_file() and _readable_facts(self.facts_path(spec)) and _intact(model_path)

    def facts(self, spec: VariantSpec) -> dict[str, object]:
        """The cached facts of ``spec`` without loading its model (history left out: it is not stored)."""
        facts = json.loads(self.facts_path(spec).read_text())
        return {k: v for k, v in facts.items() if k != "history"}


def _cached_npz(path: Path, make_arrays: Callable[[], dict[str, np.ndarray]]) -> Path:
    """Write ``make_arrays()`` to ``path`` once, via a temporary file so a killed run leaves no partial file; a file
    that no longer reads whole (truncated, overwritten) is written again, not handed to every job of every run."""
    if path.is_file() and not _reads_whole(path):
        log.warning("cached %s is damaged (it does not read as the arrays written): writing it again", path)
        path.unlink()
    if not path.is_file():
        with _replacing_on_disk(path) as tmp:
            np.savez(tmp, **make_arrays())
    return path


def _reads_whole(path: Path) -> bool:
    """Whether every array of the ``.npz`` at ``path`` reads."""
    try:
        with np.load(path) as arrays:
            for name in arrays.files:
                arrays[name]
    except Exception:  # a truncated zip, a damaged member: BadZipFile, ValueError, EOFError, OSError...
        return False
    return True


def write_eval_data(splits: DatasetSplits, workdir: Path) -> Path:
    """The test split as the npz every worker reads (written once per dataset content)."""
    key = arrays_digest(splits.x_test, splits.y_test, prefix=splits.name)
    return _cached_npz(workdir / "data" / f"test-{key}.npz",
                       lambda: {"x": splits.x_test.astype(np.float32), "y": splits.y_test.astype(np.int64)})


def reference_path(spec: VariantSpec, workdir: Path, n: int) -> Path:
    """Where the logits of ``spec``'s PyTorch model (the one its artifacts are exported from) on the first ``n`` test
    images are kept (another ``measurement.reference_samples`` is another file: a cached one of 16 images had judged
    a job asked for 200)."""
    return workdir / "reference" / f"{spec.id}-{n}.npz"


def reference_ready(path: Path) -> bool:
    """Whether the reference at ``path`` is written and reads whole (a damaged one is written again)."""
    return path.is_file() and _reads_whole(path)


def write_reference(spec: VariantSpec, built: BuiltModel, x: np.ndarray, n: int, workdir: Path) -> Path:
    """The logits of the PyTorch model the artifact is exported from on the first ``n`` test images, for the
    max-output-difference check."""

    def logits() -> dict[str, np.ndarray]:
        with torch.inference_mode():
            return {"logits": built.model.eval()(torch.from_numpy(x[:n])).numpy()}

    return _cached_npz(reference_path(spec, workdir, n), logits)


def write_calibration(x_train: np.ndarray, y_train: np.ndarray, n: int, workdir: Path,
                      validation: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """``n`` training images spread over the classes (:func:`spread_sample`), read by exporters that calibrate
    (int8, and the fixed-point range check), and the ``validation`` split (``x_val``, ``y_val``) that a
    mixed-precision export checks its accuracy budget on."""
    x = np.ascontiguousarray(x_train[np.sort(spread_sample(y_train, n))], dtype=np.float32)
    arrays = {"x": x}
    if validation is not None:
        arrays |= {"x_val": np.ascontiguousarray(validation[0], dtype=np.float32),
                   "y_val": np.asarray(validation[1], dtype=np.int64)}
    key = arrays_digest(*arrays.values())
    return _cached_npz(workdir / "data" / f"calibration-{key}.npz", lambda: arrays)
