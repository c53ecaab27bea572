"""Whether XNNPACK's sparse inference can engage on a LiteRT model, read from the loaded interpreter.

XNNPACK runs a sparse subgraph (Elsen et al., "Fast Sparse ConvNets") only when, per the TensorFlow Lite
XNNPACK delegate's README: its weights are stored in sparse form (``DENSIFY`` operators), it starts with a
3x3 stride-2 ``CONV_2D`` on 3 input channels, it ends with a spatial ``MEAN`` (or ``DEPTH_TO_SPACE``), its
convolutions are 1x1 (plus 3x3/5x5 depthwise), and at least 2/3 of the 1x1 filter weights are zero. Zeros
stored densely run through the dense kernels like any other value. This check reads the operators and the
constant filters of the artifact and says which conditions fail; the first conv's stride/padding and the
operators between the start and the ``MEAN`` are not readable here and are listed as unchecked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: XNNPACK's threshold on the zero fraction of the 1x1 convolutions' weights
MIN_ZERO_FRACTION = 2 / 3
UNCHECKED = "stride/padding of the first CONV_2D; operators between it and the MEAN"


def xnnpack_sparse_inference(interpreter: Any) -> dict[str, Any]:
    """``{"candidate": bool, "unmet": [...], "pointwise_convs": [{"name", "zero_fraction"}], "unchecked": ...}``."""
    ops = [op for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    names = {op["op_name"] for op in ops}
    unmet = []
    if "DENSIFY" not in names:
        unmet.append("weights stored dense (no DENSIFY operator): the converter wrote no sparse tensors")
    convs = [op for op in ops if op["op_name"] == "CONV_2D"]
    first = tensors[convs[0]["inputs"][1]]["shape"] if convs else None  # (out, kh, kw, in)
    if first is None or tuple(first[1:]) != (3, 3, 3):
        unmet.append("the graph does not start with a 3x3 CONV_2D on 3 input channels")
    if not names & {"MEAN", "DEPTH_TO_SPACE"}:
        unmet.append("no spatial MEAN (or DEPTH_TO_SPACE) to end a sparse subgraph")
    # fp16 weights reach the conv through a DEQUANTIZE whose output holds no data: read its constant input
    dequantized = {op["outputs"][0]: op["inputs"][0] for op in ops if op["op_name"] == "DEQUANTIZE"}
    pointwise, zeros, total = [], 0, 0
    for op in convs:
        index = dequantized.get(op["inputs"][1], op["inputs"][1])
        if tuple(tensors[index]["shape"][1:3]) != (1, 1):
            continue
        weights = interpreter.get_tensor(index)
        pointwise.append({"name": tensors[index]["name"].rsplit(";", 1)[-1],
                          "zero_fraction": round(float(np.mean(weights == 0)), 4)})
        zeros, total = zeros + int(np.sum(weights == 0)), total + weights.size
    if not pointwise:
        unmet.append("no 1x1 CONV_2D (the only convolutions XNNPACK runs sparse)")
    elif zeros / total < MIN_ZERO_FRACTION:
        unmet.append(f"only {zeros / total:.0%} of the 1x1 filter weights are zero (needs >= 2/3)")
    return {"candidate": not unmet, "unmet": unmet, "pointwise_convs": pointwise, "unchecked": UNCHECKED}
