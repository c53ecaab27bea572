"""What the structured-pruning steps hand each other: the scores of one prunable group's channels.

A leaf module (no edgebench imports) so that allocations, criteria and the surgery in ``structured.py`` can all
name it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GroupScores:
    """Scores of one prunable group's channels, named by its root conv."""

    root: str
    scores: torch.Tensor  # one per current channel of the root (per channel slot when grouped)
    original: int  # root's channels before any pruning
    channel_groups: int = 1  # grouped conv: channels come in this many equal slices pruned alike
    convs: int = 1  # conv layers whose filters this group removes together (residual partners, depthwise)
    #: channel slots of each conv that produces only part of the group's channels (the inputs of a concatenation
    #: that a residual add couples): each must keep one, or that conv would be left with no filters
    parts: tuple[tuple[int, ...], ...] = ()
    #: True when the criterion could not score the group (bn_scale on a conv without BatchNorm) and its channels
    #: are ranked by filter L1 norm instead: scores on another scale than the criterion's
    fallback: bool = False

    @property
    def slots(self) -> int:
        """Original channel slots (a grouped conv's channels count once per slice)."""
        return self.original // self.channel_groups

    @property
    def filter_weight(self) -> int:
        """Filters one channel slot stands for: it is removed from every conv of the group and every slice."""
        return self.convs * self.channel_groups
