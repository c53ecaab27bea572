"""One torchlib registry per process for torch.onnx's dynamo exporter, instead of one per export.

``torch.onnx.export(..., dynamo=True)`` rebuilds its registry of torchlib functions on every call
(``ONNXRegistry.from_torchlib``): onnxscript re-reads the source of ~500 functions each time, about 1.0 s of the
1.4-2.3 s one digits_cnn export takes here. The registry depends only on the opset, so the first build per opset is
kept and every later call gets a copy of it (a copy, because ``custom_translation_table`` registers ops into the
registry it is given). The registry is torch-internal API: where this torch has not the expected class, nothing is
changed and every export builds its own registry, as before.
"""

from __future__ import annotations

import functools
import importlib
import logging
from typing import Any

log = logging.getLogger(__name__)

_MODULE = "torch.onnx._internal.exporter._registration"


def share_torchlib_registry() -> bool:
    """Make ``ONNXRegistry.from_torchlib`` build once per opset in this process; returns whether it could."""
    try:
        registry_class = importlib.import_module(_MODULE).ONNXRegistry
        build = registry_class.from_torchlib
    except (ImportError, AttributeError) as exc:
        log.info("torch.onnx registry not shared (%s): each export builds its own", exc)
        return False
    if getattr(build, "_edgebench_shared", False):
        return True

    @functools.cache
    def built(*args: Any, **kwargs: Any) -> Any:
        return build(*args, **kwargs)

    def from_torchlib(cls: type, *args: Any, **kwargs: Any) -> Any:
        template = built(*args, **kwargs)
        registry = cls()
        registry.__dict__.update(template.__dict__)
        registry.functions = {target: list(decomps) for target, decomps in template.functions.items()}
        return registry

    from_torchlib._edgebench_shared = True  # type: ignore[attr-defined]
    from_torchlib.unshared = build  # type: ignore[attr-defined]
    registry_class.from_torchlib = classmethod(from_torchlib)
    return True
