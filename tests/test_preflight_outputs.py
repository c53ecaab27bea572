"""What the pre-flight check says about a model's outputs before any training."""

from __future__ import annotations

import logging

import pytest
import torch

from edgebench.preflight import _warn_probabilities, _warn_still_batchnorm


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


def test_batchnorm_whose_running_statistics_cannot_move_in_the_run_is_named(caplog: pytest.LogCaptureFixture) -> None:
    """torchvision's MNASNet (momentum 0.0003) trained 14 steps kept its initial statistics: eval-mode logits of
    1e21, the baseline at chance. 1 - (1 - 0.0003)^14 = 0.0042: 0.4 % of the way to the data's statistics."""
    ported = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4, momentum=0.0003),
                                 torch.nn.BatchNorm2d(4, momentum=0.1), torch.nn.BatchNorm2d(4, momentum=None))
    with caplog.at_level(logging.WARNING, logger="edgebench.preflight"):
        _warn_still_batchnorm(ported, 10_000, "model m")  # 1 - 0.9997^10000 = 0.95: moved
        _warn_still_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(4)), 1, "model m")  # PyTorch's default
        assert caplog.records == []
        _warn_still_batchnorm(ported, 14, "model m")
    [record] = caplog.records
    assert ("model m: 1 BatchNorm layer(s) with momentum down to 0.0003 move their running statistics only 0.4% of "
            "the way to the data's in this run's 14 training steps") in record.getMessage()
