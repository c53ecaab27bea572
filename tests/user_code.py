"""A team's own code, as tests write it to disk: a model file with factories (good and broken ones), a plug-in file
registering a criterion, and trained weights saved the ways training scripts save them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

NETS_PY = '''
import torch
from torch import nn


class SmallNet(nn.Module):
    """Two conv blocks, global pooling, a classifier: defined here, not in edgebench's zoo."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


def build_net(num_classes: int = 10, in_channels: int = 1, width: int = 8) -> nn.Module:
    return SmallNet(num_classes, in_channels, width)


def build_raises(num_classes: int = 10) -> nn.Module:
    raise ValueError("width must be a multiple of 8")


def build_dict(num_classes: int = 10) -> dict:
    return {"net": SmallNet(num_classes)}


class DictInput(SmallNet):
    """A forward that reads its images from a dict, as some training loops feed them."""

    def forward(self, batch):
        return super().forward(batch["image"])


def build_dict_input(num_classes: int = 10) -> nn.Module:
    return DictInput(num_classes)


def build_three_classes(in_channels: int = 1) -> nn.Module:
    return SmallNet(3, in_channels)


class WithAux(SmallNet):
    """Returns (logits, features), as a model with an auxiliary head does."""

    def forward(self, x):
        features = self.features(x).flatten(1)
        return self.fc(features), features


def build_tuple(num_classes: int = 10) -> nn.Module:
    return WithAux(num_classes)


class AuxWhileTraining(SmallNet):
    """GoogLeNet's pattern: (logits, auxiliary logits) in training mode, the logits alone in eval mode."""

    def forward(self, x):
        logits = self.fc(self.features(x).flatten(1))
        return (logits, logits.detach()) if self.training else logits


def build_aux_while_training(num_classes: int = 10) -> nn.Module:
    return AuxWhileTraining(num_classes)


class FailsWhileTraining(SmallNet):
    def forward(self, x):
        if self.training:
            raise RuntimeError("stochastic depth needs a drop rate")
        return super().forward(x)


def build_fails_while_training(num_classes: int = 10) -> nn.Module:
    return FailsWhileTraining(num_classes)


class LogOfNegative(SmallNet):
    """A forward that takes the log of a signed activation: NaN outputs from the first image on."""

    def forward(self, x):
        return torch.log(self.fc(self.features(x).flatten(1)) - 1e3)


def build_nan(num_classes: int = 10) -> nn.Module:
    return LogOfNegative(num_classes)


class Pixels(nn.Module):
    """A 'classifier' with no parameters at all: the first pixels as logits."""

    def forward(self, x):
        return x.flatten(1)[:, :10]


def build_parameterless(num_classes: int = 10) -> nn.Module:
    return Pixels()


class Signal1d(nn.Module):
    """A keyword-spotting style Conv1d model over (N, C, L) signals."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv1d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(self.conv(x).mean(2))


def build_conv1d(num_classes: int = 10) -> nn.Module:
    return Signal1d(num_classes)


class FlatSignal1d(nn.Module):
    """A Conv1d model that flattens the 1xCxL images itself, its input channels a factory argument."""

    def __init__(self, num_classes: int = 10, in_channels: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(self.conv(x.flatten(1, 2)).mean(2))


def build_conv1d_in_channels(num_classes: int = 10, in_channels: int = 8) -> nn.Module:
    return FlatSignal1d(num_classes, in_channels)


def build_locked(num_classes: int = 10) -> nn.Module:
    """SmallNet keeping a lock as an attribute: it cannot be pickled, nor copied."""
    import threading

    net = SmallNet(num_classes)
    net.lock = threading.Lock()
    return net


def build_hardswish(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """SmallNet with a Hardswish where its first ReLU was: a layer hls4ml has no conversion for."""
    net = SmallNet(num_classes, in_channels)
    net.features[2] = nn.Hardswish()
    return net


class HardCodedFlatten(nn.Module):
    """Flattens to a size fixed when the model was written: removing filters breaks the classifier's input."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, num_classes)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv(x))).view(-1, 8 * 4 * 4))
'''

PLUGINS_PY = '''
from edgebench.prune.criteria import CRITERIA
from edgebench.prune.criteria.magnitude import L1Norm


@CRITERIA.register("team_l1")
class TeamL1(L1Norm):
    """The team's own criterion (here: L1 under another name), registered from a plug-in file."""
'''


def write_nets(directory: Path, name: str = "nets.py") -> Path:
    """The model file in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(NETS_PY)
    return path


def import_file(path: Path) -> ModuleType:
    """Import ``path`` as the team's own scripts would (not through edgebench)."""
    spec = importlib.util.spec_from_file_location(f"team_{path.stem}_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
