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


def test_a_loss_that_is_not_finite_before_any_update_blames_the_model_not_the_lr() -> None:
    """Weights that arrive with a NaN in them (a bad checkpoint): the first batch's loss is NaN before any step, so
    lowering the learning rate (what the message said) cannot help."""
    splits = load_dataset("digits")
    torch.manual_seed(0)
    model = create_model("digits_cnn", num_classes=10, in_channels=1)
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        first_conv.weight[0, 0, 0, 0] = math.nan
    spec = TrainSpec(epochs=1)
    with pytest.raises(TrainingError, match=r"^training stopped at its first batch, before any weight update: the loss is "
                                            r"nan, .*check its forward and its weights$"):
        train(model, splits, spec)


def test_a_model_without_parameters_is_named_not_handed_to_the_optimizer() -> None:
    with pytest.raises(TrainingError, match="^the model has no parameters: there is nothing to train$"):
        train(torch.nn.Flatten(), load_dataset("digits"), TrainSpec(epochs=1))
