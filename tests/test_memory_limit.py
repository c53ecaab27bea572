"""The bound on what a library call may allocate: past it, the allocation fails in the call (a MemoryError the
caller names), not the process at the kernel's OOM killer; after it, the process's own limit is back."""

from __future__ import annotations

import contextlib
import resource

import pytest
import torch
from torch import nn

from edgebench import memory_limit
from edgebench.errors import UnsupportedModelError
from edgebench.prune import structured
from edgebench.prune.criteria.magnitude import L1Norm


def test_an_allocation_past_the_bound_fails_inside_and_the_limit_is_restored_after() -> None:
    before = resource.getrlimit(resource.RLIMIT_AS)
    with pytest.raises(MemoryError), memory_limit.bounded_growth(256 * 2**20):
        bytearray(2**30)
    assert resource.getrlimit(resource.RLIMIT_AS) == before
    assert len(bytearray(2**30)) == 2**30  # the same allocation, outside: the process may grow again


def test_a_channel_mapping_that_grows_without_end_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without LRN traced per channel, torch-pruning's index lists grow until the bound (here 64 MiB; 8 GiB in a
    run; the bound on a walk's indices per step lifted): the refusal names torch-pruning and what to do, where the
    process was killed at 24 GiB."""
    monkeypatch.setattr(memory_limit, "DEFAULT_GROWTH_BYTES", 64 * 2**20)
    monkeypatch.setattr(structured, "_channel_windows_traced_per_channel", contextlib.nullcontext)
    monkeypatch.setattr(structured, "_WALK_INDICES_PER_DIM", 2**40)
    with pytest.raises(UnsupportedModelError, match=r"torch-pruning cannot map this model's channels \(its channel "
                                                    r"groups grew past the memory bound.*pruning.keep"):
        structured.prune_model(_lrn_net(), L1Norm(), 0.5, torch.rand(1, 3, 16, 16))


def test_a_walk_whose_indices_grow_without_end_keeps_its_root_long_before_the_memory_bound(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """The same growth, cut where one step of the walk carries more indices than 4 times the model's largest
    parameter dimension: that conv keeps its filters (a warning says why) and the other is pruned."""
    monkeypatch.setattr(structured, "_channel_windows_traced_per_channel", contextlib.nullcontext)
    monkeypatch.setattr(structured, "_WARNED", set())  # warned once per process: another test's "4" would hide it
    model = _lrn_net()
    with caplog.at_level("WARNING", logger="edgebench.prune.structured"):
        plan = structured.prune_model(model, L1Norm(), 0.5, torch.rand(1, 3, 16, 16))
    assert list(plan) == ["0"] and model[0].out_channels == 8 and model[4].out_channels == 32
    assert "the filters of 4 are not pruned: torch-pruning's walk over the layers tied to them did not settle " \
           "(past 216 steps in a graph of 29 nodes, or 1152 channel indices in one" in caplog.text


def _lrn_net() -> nn.Module:
    """Two conv, ReLU, LRN, max-pool blocks (AlexNet's), and a classifier."""
    return nn.Sequential(nn.Conv2d(3, 16, 5, padding=2), nn.ReLU(), nn.LocalResponseNorm(5), nn.MaxPool2d(3, 2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.LocalResponseNorm(5), nn.MaxPool2d(3, 2),
                         nn.Flatten(), nn.Linear(32 * 3 * 3, 4)).eval()
