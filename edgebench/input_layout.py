"""Channels-first or channels-last: the harness stores images NCHW (PyTorch's layout, and every file edgebench
exports takes it); a file another tool made may take them NHWC (tf2onnx's ONNX of a Keras model, most TFLite
files). These helpers read which layout an input's dims take and lay images out for it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def fits(dims: Sequence[int | None], shape: Sequence[int]) -> bool:
    """Whether an input of ``dims`` (None: dynamic) takes an array of ``shape``."""
    return len(dims) == len(shape) and all(d is None or d == s for d, s in zip(dims, shape))


def channels_last(image_dims: Sequence[int | None], chw: Sequence[int]) -> bool:
    """Whether an input whose per-image dims are ``image_dims`` takes (C, H, W) images channels-last only (a square
    image whose channels equal its side fits both: NCHW, as every exporter here writes)."""
    return len(chw) == 3 and not fits(image_dims, chw) and fits(image_dims, (*chw[1:], chw[0]))


def in_input_layout(x: np.ndarray, dims: Sequence[int | None] | None) -> np.ndarray:
    """NCHW images ``x`` as an input of ``dims`` (batch first; None: unknown) takes them: as they are, or
    transposed to NHWC where only that layout fits."""
    if dims is None or x.ndim != 4 or not channels_last(dims[1:], x.shape[1:]):
        return x
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))
