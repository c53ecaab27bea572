"""The refusal of an op a converter has no conversion for (``torch.median`` to ONNX or LiteRT), naming the op and the
line of the model's own code that calls it: the converters' own errors name the op alone (ONNX), or end in an FX
graph dump cut off in the job's one-line error (LiteRT)."""

from __future__ import annotations

import re

import torch
from torch import nn

from edgebench.errors import UnsupportedModelError
from edgebench.models.code_closure import library_dirs


def own_frame(text: str) -> str:
    """``file:line`` of the first frame in a traceback ``text`` that is the model's own code (not edgebench's,
    Python's or an installed package's), "" where none is."""
    library = tuple(map(str, library_dirs()))
    own = [f"{file}:{line}" for file, line in re.findall(r'File "([^"]+)", line (\d+)', text)
           if not file.startswith(library)]
    return own[0] if own else ""


def call_site(model: nn.Module, example: torch.Tensor, op: str) -> str:
    """Where the model's own code calls the aten ``op`` (``aten.median.dim`` or ``aten::median``), from torch.export's
    stack traces; "" where the model does not export or no node of that op has one."""
    name = op.replace("::", ".")
    try:
        graph = torch.export.export(model, (example,)).graph
    except Exception:  # the converter's failure is the one to report; this only adds where it is
        return ""
    return next((where for node in graph.nodes if node.op == "call_function" and str(node.target).startswith(name)
                 if (where := own_frame(node.meta.get("stack_trace") or ""))), "")


def unsupported_op(model: nn.Module, example: torch.Tensor, op: str, converter: str, targets: str) -> UnsupportedModelError:
    """The one-line refusal: ``converter`` has no conversion for ``op``, called at the model's line, and what to do
    (``targets``: the targets to leave out, e.g. "the targets that load ONNX")."""
    where = call_site(model, example, op)
    return UnsupportedModelError(f"{converter} has no conversion for {op}{f' (called at {where})' if where else ''}: "
                                 f"write that step of the model with ops it converts, or leave {targets} out of the "
                                 "experiment")
