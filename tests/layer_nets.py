"""Small networks with the layer kinds that need care (a grouped conv, attention), shared by several tests."""

from __future__ import annotations

import torch
from torch import nn


class GroupedBlock(nn.Module):
    """A ResNeXt-style conv -> grouped conv (groups=4, 2 inputs per group, the widest) -> conv."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.g = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1, groups=4)
        self.c3, self.fc = nn.Conv2d(16, 8, 1), nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.c3(torch.relu(self.g(torch.relu(self.c1(x)))))).mean((2, 3)))


class AttentionNet(nn.Module):
    """A conv whose positions are tokens of a multi-head attention layer (8 channels, 2 heads), then 4 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.c, self.a, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.MultiheadAttention(8, 2, batch_first=True), \
            nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.c(x).flatten(2).transpose(1, 2)
        return self.fc(self.a(tokens, tokens, tokens, need_weights=False)[0].mean(1))


class RowMedianNet(nn.Module):
    """A conv, then each row less its median: ``torch.median`` has no ONNX (opset 17) or LiteRT conversion."""

    def __init__(self) -> None:
        super().__init__()
        self.c, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c(x))
        x = x - x.median(dim=3, keepdim=True)[0]  # MEDIAN_LINE
        return self.fc(x.flatten(1))


def line_marked(cls: type, mark: str) -> int:
    """The line number of the line of ``cls``'s source that carries the comment ``mark``."""
    import inspect

    lines, first = inspect.getsourcelines(cls)
    return first + next(i for i, line in enumerate(lines) if f"# {mark}" in line)
