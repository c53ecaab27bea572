"""What an artifact says it must be fed, checked against what the experiment feeds it.

Every file edgebench exports carries its input record (``edgebench.input``: layout, shape, classes and the
normalisation its model was trained with). Brought back into another experiment as an artifact (``artifacts:``),
it is fed that experiment's preprocessing; where the normalisations differ its accuracy is read at chance level
and stored as "ok". The record is compared before any work instead. Files without one (other tools') pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.data.splits import InputScaling
from edgebench.errors import ConfigError
from edgebench.runtimes.base import INPUT_METADATA_KEY

#: relative tolerance on the per-channel mean and std: the training-split statistics of two experiments on one
#: dataset differ by their split's draw (well under 1 %); another normalisation differs by far more
_SCALING_RTOL = 0.02


def declared_input(path: Path, fmt: str) -> dict[str, Any] | None:
    """The input record an edgebench export wrote into ``path`` (ONNX metadata, a TFLite metadata buffer); None for
    a file without one, another format, or a TFLite file where LiteRT is not installed."""
    if fmt == "onnx":
        import onnx

        props = onnx.load(str(path), load_external_data=False).metadata_props
        text = next((entry.value for entry in props if entry.key == INPUT_METADATA_KEY), None)
    elif fmt == "tflite":
        text = _tflite_metadata(path)
    else:
        return None
    try:
        record = json.loads(text) if text else None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _tflite_metadata(path: Path) -> str | None:
    try:
        from ai_edge_litert.tools import flatbuffer_utils
    except ImportError:
        return None
    model = flatbuffer_utils.read_model(str(path))
    name = INPUT_METADATA_KEY.encode()
    entry = next((m for m in model.metadata or [] if m.name in (INPUT_METADATA_KEY, name)), None)
    data = model.buffers[entry.buffer].data if entry is not None else None
    return bytes(data).decode() if data is not None else None


def check_declared_scaling(path: Path, fmt: str, scaling: InputScaling | None) -> None:
    """ConfigError where ``path`` records a normalisation other than the experiment's (``scaling``; None: the
    loader's arrays as given, which says nothing to compare)."""
    record = declared_input(path, fmt)
    normalize = record.get("normalize") if record else None
    if scaling is None or not isinstance(normalize, dict):
        return
    if _close(normalize.get("mean"), scaling.mean) and _close(normalize.get("std"), scaling.std):
        return
    raise ConfigError(
        f"{path}: its input record ({INPUT_METADATA_KEY}, written by the edgebench export that made it) says it takes "
        f"images normalised with mean {_shown(normalize.get('mean'))} and std {_shown(normalize.get('std'))}, and "
        f"this experiment feeds mean {_shown(scaling.mean)} and std {_shown(scaling.std)} "
        f"({'dataset.preprocess.normalize' if scaling.declared else 'its training split statistics'}): its accuracy "
        "would be read at chance; set dataset.preprocess.normalize to the file's, or list the file exported with "
        "this experiment's preprocessing")


def _close(recorded: Any, fed: list[float]) -> bool:
    try:
        return bool(np.allclose(np.asarray(recorded, dtype=float), np.asarray(fed, dtype=float), rtol=_SCALING_RTOL,
                                atol=1e-6))
    except (TypeError, ValueError):  # another number of channels, or not numbers
        return False


def _shown(values: Any) -> str:
    if isinstance(values, list) and all(isinstance(v, (int, float)) for v in values):
        return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"
    return repr(values)
