"""A training run whose loss stops being finite stops with one line, instead of leaving a NaN model to be measured."""

from __future__ import annotations

import math

import pytest
import torch

from edgebench.data import load_dataset
from edgebench.models import create_model
from edgebench.train import TrainingError, train
from edgebench.variants import TrainSpec


@pytest.mark.parametrize("lr", [math.inf, 1e30])
def test_a_non_finite_loss_stops_training_naming_the_epoch_and_the_lr(lr: float) -> None:
    splits = load_dataset("digits")
    torch.manual_seed(0)
    model = create_model("digits_cnn", num_classes=10, in_channels=1)
    spec = TrainSpec.model_construct(**{**TrainSpec().model_dump(), "epochs": 2, "lr": lr})  # past any lr check
    with pytest.raises(TrainingError, match=r"^training stopped in epoch 1/2: the loss is (nan|inf).*lower training.lr$"):
        train(model, splits, spec)
