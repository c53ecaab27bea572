"""The refusal of an op a converter has no conversion for (``torch.median`` to ONNX or LiteRT), naming the op and the
line of the model's own code that calls it: the converters' own errors name the op alone (ONNX), or end in an FX
graph dump cut off in the job's one-line error (LiteRT)."""

from __future__ import annotations

import importlib.util
import re

import torch
from torch import nn

from edgebench.errors import UnsupportedModelError
from edgebench.models.code_closure import library_dirs
from edgebench.plugins import USER_FILE_MODULE_PREFIX

#: the file name cloudpickle gives the code it writes by value (the classes of a user's model file, in a worker)
BY_VALUE_CODE = "<dynamic-code>"


def own_frame(text: str, model: nn.Module | None = None) -> str:
    """``file:line`` of the first frame in a traceback ``text`` that is the model's own code (not edgebench's,
    Python's or an installed package's), "" where none is; a frame of code unpickled by value is named by the
    file of ``model``'s own classes (:func:`by_value_file`), or left out where that is not known."""
    library = tuple(map(str, library_dirs()))
    dynamic = by_value_file(model) if model is not None and BY_VALUE_CODE in text else None
    own = [f"{dynamic if file == BY_VALUE_CODE else file}:{line}"
           for file, line in re.findall(r'File "([^"]+)", line (\d+)', text)
           if not file.startswith(library) and (file != BY_VALUE_CODE or dynamic)]
    return own[0] if own else ""


def by_value_file(model: nn.Module) -> str | None:
    """The user's file that ``model``'s own classes come from, where they were unpickled by value (a model the
    pipeline saved, in an exporter's worker: cloudpickle names their code "<dynamic-code>", and the refusal said
    "called at <dynamic-code>:4"); found by their module's name among the run's files, as the workers import
    them. None where the classes come from no file, or from more than one."""
    names = {type(m).__module__ for m in model.modules() if type(m).__module__.startswith(USER_FILE_MODULE_PREFIX)}
    if len(names) != 1:
        return None
    try:
        spec = importlib.util.find_spec(names.pop())
    except (ImportError, ValueError):  # ValueError: a module in sys.modules without a spec
        return None
    return spec.origin if spec is not None else None


def call_site(model: nn.Module, example: torch.Tensor, op: str) -> str:
    """Where the model's own code calls the aten ``op`` (``aten.median.dim`` or ``aten::median``), from torch.export's
    stack traces; "" where the model does not export or no node of that op has one."""
    name = op.replace("::", ".")
    try:
        graph = torch.export.export(model, (example,)).graph
    except Exception:  # the converter's failure is the one to report; this only adds where it is
        return ""
    return next((where for node in graph.nodes if node.op == "call_function" and str(node.target).startswith(name)
                 if (where := own_frame(node.meta.get("stack_trace") or "", model))), "")


def unsupported_op(model: nn.Module, example: torch.Tensor, op: str, converter: str, targets: str) -> UnsupportedModelError:
    """The one-line refusal: ``converter`` has no conversion for ``op``, called at the model's line, and what to do
    (``targets``: the targets to leave out, e.g. "the targets that load ONNX")."""
    where = call_site(model, example, op)
    return UnsupportedModelError(f"{converter} has no conversion for {op}{f' (called at {where})' if where else ''}: "
                                 f"write that step of the model with ops it converts, or leave {targets} out of the "
                                 "experiment")
