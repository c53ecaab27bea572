"""Trained weights as the starting point: state dicts (``torch.save`` or ``.safetensors``), checkpoint dicts,
TorchScript and ``torch.export`` programs.

A checkpoint is data, not code: it is read with torch's safe unpickler (``weights_only=True``), which refuses
anything but tensors and plain containers. A checkpoint that needs arbitrary pickled objects (a whole pickled
module, a custom class) is refused with the class it needs, unless the experiment opts in with
``model.trust_checkpoint: true``. Every problem is one :class:`WeightsError` line naming the file and, for
mismatches, the first key and both shapes.
"""

from __future__ import annotations

import io
import logging
import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgebench.errors import ConfigError, first_line
from edgebench.variants import WeightsFormat

#: keys under which training scripts commonly keep the state dict inside a checkpoint dict, in the order tried
#: (a model's own weights before the exponential moving average timm and others save beside them)
CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "state_dict_ema", "model_ema", "ema")
#: prefixes wrappers add to every key: DataParallel / DistributedDataParallel, torch.compile
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
#: buffers older checkpoints lack; BatchNorm works without them
_OPTIONAL_KEYS = re.compile(r"(^|\.)num_batches_tracked$")

log = logging.getLogger(__name__)


class WeightsError(ConfigError):
    """A weights file cannot be read, or does not fit the model."""


def detect_format(path: Path) -> WeightsFormat:
    """What ``path`` holds, from the archive's layout: an ExportedProgram (``archive_format`` entry), a
    TorchScript program (``code/`` and ``constants.pkl``), else a ``torch.save`` checkpoint."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(n == "archive_format" or n.endswith("/archive_format") for n in names):
            return "exported_program"
        if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
            return "torchscript"
    return "state_dict"


def _refused_global(exc: Exception) -> str | None:
    """The Python class a weights-only load refused, or None where the pickle itself is broken."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    return found.group(1) if found else None


_UNREADABLE = "corrupt, truncated or not written by torch.save or safetensors"


def _unpickler_reason(exc: Exception) -> str:
    """torch's weights-only unpickler puts its own reason after a paragraph about ``weights_only``."""
    found = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc), re.DOTALL)
    return first_line(found.group(1) if found else exc)


def read_state_dict(path: Path, trust: bool = False) -> dict[str, torch.Tensor]:
    """The state dict in ``path``: a state dict, a checkpoint dict holding one, or (trusted only) a pickled module."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        refused = _refused_global(exc)
        if trust or refused is None:  # a corrupt or truncated file, or not a torch.save file at all
            raise WeightsError(f"{path}: not a checkpoint torch.load can read; {_UNREADABLE} "
                               f"({_unpickler_reason(exc)})") from None
        raise WeightsError(f"{path}: needs the Python object {refused} to load, and a checkpoint is read as data "
                           "(torch.load weights_only=True); save model.state_dict() instead, or set "
                           "model.trust_checkpoint: true if you trust where the file came from") from None
    except ModuleNotFoundError as exc:  # a trusted whole-model pickle whose class lives in a module not installed
        raise WeightsError(f"{path}: pickles a model whose module '{exc.name}' is not importable here; install it "
                           "(or put it on PYTHONPATH), or save model.state_dict() and give the model's code") from None
    except Exception as exc:  # a truncated zip, a text file, a foreign format
        reason = first_line(exc).split(". ")[0]  # torch adds sentences of advice to a truncated zip's reason
        raise WeightsError(f"{path}: not a checkpoint torch.load can read; {_UNREADABLE} ({type(exc).__name__}: "
                           f"{reason})") from None
    return _state_dict_of(obj, path)


def _state_dict_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping):
        for key in CHECKPOINT_KEYS:
            if isinstance(obj.get(key), Mapping | nn.Module):
                return _state_dict_of(obj[key], path)
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return _strip_prefixes({str(k): v for k, v in obj.items()})
        keys = ", ".join(map(str, list(obj)[:6])) or "none"
        raise WeightsError(f"{path}: a dict that is not a state dict (keys {keys}); expected tensors by parameter "
                           f"name, or a checkpoint with one under {' / '.join(CHECKPOINT_KEYS)}")
    raise WeightsError(f"{path}: holds a {type(obj).__name__}, not a state dict or a checkpoint dict")


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items()}
    return state


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(map(str, t.shape)) + ")"


def _needed(keys: Iterable[str]) -> set[str]:
    return {k for k in keys if not _OPTIONAL_KEYS.search(k)}


def _rekeyed(state: Mapping[str, torch.Tensor], own: Mapping[str, Any]) -> Mapping[str, torch.Tensor]:
    """``state`` with the one leading prefix that its keys all carry and the model's lack (a Lightning module's
    ``model.``, a wrapper's attribute) removed, or the one the model's keys all carry added (weights of the bare
    network for a model that wraps it), where that makes the keys the model's; else ``state`` unchanged."""
    def prefixes(key: str) -> list[str]:
        parts = key.split(".")
        return [".".join(parts[:i]) + "." for i in range(1, len(parts))]

    if not state or not own or (_needed(state) <= set(own) and _needed(own) <= set(state)):
        return state
    for prefix in prefixes(next(iter(state))):
        if all(k.startswith(prefix) for k in state):
            stripped = {k.removeprefix(prefix): v for k, v in state.items()}
            if _needed(own) <= set(stripped) <= set(own):
                log.info("weights: keys read without their prefix '%s' (the model's keys lack it)", prefix)
                return stripped
    for prefix in prefixes(next(iter(own))):
        if all(k.startswith(prefix) for k in own):
            added = {prefix + k: v for k, v in state.items()}
            if _needed(own) <= set(added) <= set(own):
                log.info("weights: keys read under the model's prefix '%s'", prefix)
                return added
    return state


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Copy ``state`` into ``model``; WeightsError naming the first missing, unexpected or mis-shaped key."""
    own = model.state_dict()
    state = _rekeyed(state, own)
    missing = [k for k in own if k not in state and not _OPTIONAL_KEYS.search(k)]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"the model's '{missing[0]}' {_shape(own[missing[0]])} is not in the weights"
                         + (f" ({len(missing) - 1} more missing)" if len(missing) > 1 else ""))
        if unexpected:
            parts.append(f"the weights' '{unexpected[0]}' {_shape(state[unexpected[0]])} is not in the model"
                         + (f" ({len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
        raise WeightsError(f"{path}: keys do not match the model: {'; '.join(parts)}")
    for key, tensor in own.items():
        if key in state and tuple(state[key].shape) != tuple(tensor.shape):
            raise WeightsError(f"{path}: '{key}' has shape {_shape(state[key])} in the weights but {_shape(tensor)} "
                               "in the model (another width, depth or number of classes?)")
    empty = next((k for k, t in state.items() if t.is_meta), None)  # shapes without data: nothing to check or copy
    if empty is not None:
        raise WeightsError(f"{path}: '{empty}' is a meta-device tensor, which holds a shape and no values (saved from "
                           "a model built on device 'meta', e.g. under init_empty_weights); save the weights after they "
                           "are loaded or trained")
    # a diverged training's NaN or inf weights would give variants of accuracy 0 and exports that fail on scales
    bad = next((k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)
    if bad is not None:
        raise WeightsError(f"{path}: '{bad}' holds NaN or infinite values (a training that diverged?); give weights "
                           "saved before it did")
    model.load_state_dict(state, strict=False)


class ProgramModule(nn.Module):
    """A compiled program (TorchScript, or a ``torch.export`` ExportedProgram) as a module that pickles as the
    program's own archive bytes, so the run's model cache, the exporters and the PyTorch artifact hold it like any
    other model. Programs run in eval mode only: an exported graph has its BatchNorm and dropout fixed."""

    def __init__(self, program: torch.jit.ScriptModule | torch.export.ExportedProgram) -> None:
        super().__init__()
        self.program = program
        # not "graph": re-exported (ONNX's dynamo exporter, LiteRT's torch.export), the program's weights sit under
        # this name in a GraphModule, whose own `graph` is its fx Graph; the dynamo export failed and the TorchScript
        # fallback fixed the batch of a program's x.view(x.size(0), -1), and LiteRT's conversion failed
        self.net = program if isinstance(program, torch.jit.ScriptModule) else program.module()
        self.training = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @property
    def onnx_exportable(self) -> nn.Module:
        """What ``torch.onnx.export`` takes: a TorchScript module itself (its legacy exporter reads the scripted
        graph; tracing through a wrapper cannot), an exported graph through this wrapper."""
        return self.net if isinstance(self.program, torch.jit.ScriptModule) else self

    def train(self, mode: bool = True) -> ProgramModule:
        """Stays in eval mode (exporters switch modes and back); the experiment check refuses training a program."""
        return self

    def __reduce__(self) -> tuple[Any, tuple[bytes, bool]]:
        buffer = io.BytesIO()
        scripted = isinstance(self.program, torch.jit.ScriptModule)
        (torch.jit.save if scripted else torch.export.save)(self.program, buffer)
        return _load_program_bytes, (buffer.getvalue(), scripted)


def _load_program_bytes(data: bytes, scripted: bool) -> ProgramModule:
    buffer = io.BytesIO(data)
    return ProgramModule(torch.jit.load(buffer, map_location="cpu").eval() if scripted else torch.export.load(buffer))


def load_program(path: Path, fmt: WeightsFormat) -> ProgramModule:
    """The TorchScript module or ExportedProgram in ``path``, ready to run in eval mode."""
    try:
        if fmt == "torchscript":
            return ProgramModule(torch.jit.load(str(path), map_location="cpu").eval())
        program = torch.export.load(str(path))
    except Exception as exc:
        kind = "TorchScript" if fmt == "torchscript" else "torch.export (.pt2)"
        raise WeightsError(f"{path}: cannot load the {kind} program ({type(exc).__name__}: {first_line(exc)})") \
            from None
    batch = _fixed_batch(program)
    if batch is not None:  # its guard refuses every other batch: training, evaluation and measurement batch images
        raise WeightsError(f"{path}: the torch.export program takes a fixed batch of {batch}; export the program with "
                           "a dynamic batch dimension (dynamic_shapes=({0: torch.export.Dim('batch')},))")
    return ProgramModule(program)


def _fixed_batch(program: torch.export.ExportedProgram) -> int | None:
    """The batch size an ExportedProgram was exported for where it is fixed (its first input's first dimension
    is a plain int, not a symbol), else None."""
    inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in inputs:
            value = node.meta.get("val")
            shape = getattr(value, "shape", ())
            return int(shape[0]) if len(shape) and isinstance(shape[0], int) else None
    return None
