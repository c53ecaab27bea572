"""What the pre-flight check says about a model's outputs before any training."""

from __future__ import annotations

import logging

import pytest
import torch

from edgebench.preflight import _warn_probabilities


def test_probabilities_from_a_final_softmax_are_named(caplog: pytest.LogCaptureFixture) -> None:
    """A model ending in nn.Softmax trains cross-entropy on probabilities (a digits CNN: 0.96 -> 0.66 accuracy)."""
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, -3.0]])
    with caplog.at_level(logging.WARNING, logger="edgebench.preflight"):
        _warn_probabilities(logits, "model m")
        assert caplog.records == []  # logits: a negative entry, rows not summing to 1
        _warn_probabilities(torch.relu(logits), "model m")
        assert caplog.records == []  # non-negative, but rows sum to 2.5 and 0.3
        _warn_probabilities(torch.softmax(logits, dim=1), "model m")
    [record] = caplog.records
    assert "model m gives probabilities" in record.getMessage() and "nn.Softmax" in record.getMessage()
