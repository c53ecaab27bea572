"""What an artifact's outputs are, so they are compared with the PyTorch model's logits in the same form.

A file another tool made often ends in the model's Softmax (a Keras classifier, a deployment export that hands
out probabilities), or in a ``log_softmax`` (the PyTorch MNIST example). Its accuracy is the same as the logits'
(argmax is unchanged), but its outputs are not logits: compared with the model's logits they would differ by the
logits' own size, which reads as a conversion error. The reference is put in the artifact's form instead.
"""

from __future__ import annotations

import numpy as np

#: how far a row's sum may be from 1 and still be a distribution: an int8 Softmax rounds each of its outputs to a
#: step of 1/256, so ten classes may sum to 1 +- 0.02
_SUM_TOLERANCE = 0.03


def _distributions(rows: np.ndarray) -> bool:
    """Every row is non-negative and sums to 1 (within int8 rounding)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(rows).all() and (rows >= 0).all()
                    and (np.abs(rows.sum(axis=1) - 1) <= _SUM_TOLERANCE).all())


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def reference_in_output_form(outputs: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, str]:
    """``logits`` (the PyTorch model's, for the same images as ``outputs``) in the form of ``outputs``: their softmax
    where the outputs are probabilities and the logits are not, their log-softmax where the outputs are
    log-probabilities and the logits are not, else the logits. Returns them with the form's name: ``logits``,
    ``probabilities`` or ``log-probabilities``."""
    logits = logits.astype(np.float64)
    outputs = outputs.astype(np.float64)
    if _distributions(outputs) and not _distributions(logits):
        return np.exp(_log_softmax(logits)), "probabilities"
    with np.errstate(over="ignore"):
        if _distributions(np.exp(outputs)) and not _distributions(np.exp(logits)):
            return _log_softmax(logits), "log-probabilities"
    return logits, "logits"
