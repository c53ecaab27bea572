"""Training and evaluation loops with hooks.

Everything that changes how a run trains without being the loop itself - pruning while training,
the Network Slimming L1 penalty on BN scales - is a :class:`TrainHook`, so there is exactly one loop.
The loop also accounts training compute: each epoch adds ``3 * forward MACs * samples seen`` (forward
plus a backward of about twice the forward) using the architecture as it is in that epoch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from edgebench.data import DatasetSplits
from edgebench.errors import ConfigError
from edgebench.models.cost import count_macs, count_params
from edgebench.variants import TrainSpec

log = logging.getLogger(__name__)

class TrainingError(ConfigError):
    """Training cannot go on (a loss that is no longer finite); the experiment's training settings are the fix."""


#: backward pass ~ 2x forward, so a training step costs ~ 3x the forward MACs per sample
TRAIN_MACS_FACTOR = 3


@dataclass
class TrainState:
    """What hooks see and may change during a run."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    spec: TrainSpec
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    input_shape: tuple[int, ...]
    epochs: int
    epoch: int = 0
    lr: float = 0.0
    step: int = 0
    loss: torch.Tensor | None = None
    training_macs: int = 0
    history: list[dict] = field(default_factory=list)

    def rebuild_optimizer(self) -> None:
        """Make a fresh optimizer over the model's current parameters.

        Called by hooks that change the architecture: pruning replaces parameter tensors, so the old
        optimizer would update dead tensors and its momentum buffers have the wrong shapes. Momentum
        restarts from zero, which is what a freshly pruned network honestly has.
        """
        self.optimizer = make_optimizer(self.model, self.spec, self.lr)


class TrainHook:
    """No-op base: override the events you need."""

    def on_train_start(self, state: TrainState) -> None:
        """Before the first epoch."""

    def on_epoch_start(self, state: TrainState) -> None:
        """Before each epoch (learning rate already set)."""

    def after_backward(self, state: TrainState) -> None:
        """After ``loss.backward()``, before the optimizer step: gradients may be edited here."""

    def on_batch_end(self, state: TrainState) -> None:
        """After the optimizer step."""

    def on_epoch_end(self, state: TrainState) -> None:
        """After each epoch's training and validation; the architecture may change here."""


@dataclass
class TrainResult:
    """Outcome of a run: per-epoch history, total training MACs and the final validation accuracy."""

    history: list[dict]
    training_macs: int
    val_accuracy: float


def make_optimizer(model: nn.Module, spec: TrainSpec, lr: float) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay, the recipe the pruning papers train with."""
    if next(model.parameters(), None) is None:
        raise TrainingError("the model has no parameters: there is nothing to train")
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=spec.momentum, weight_decay=spec.weight_decay)


def cosine_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """Cosine-annealed learning rate at the start of ``epoch`` of ``epochs``."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * epoch / epochs))


def _as_tensor(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    return a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))


@torch.no_grad()
def evaluate(model: nn.Module, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on (x, y), in eval mode (restores the previous mode)."""
    xt, yt = _as_tensor(x), _as_tensor(y)
    if len(xt) == 0:
        raise ValueError("cannot evaluate on an empty split")
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(xt), batch_size):
        correct += int((model(xt[i : i + batch_size]).argmax(1) == yt[i : i + batch_size]).sum())
    model.train(was_training)
    return correct / len(xt)


def _check_finite(loss: torch.Tensor, epoch: int, n_epochs: int, lr: float, step: int) -> None:
    """Stop on a NaN or infinite loss: its weights become NaN, and a model of NaNs would be exported and measured
    (at chance accuracy) as if it were this variant. On the first batch no update has happened yet, so the learning
    rate cannot be the cause."""
    if torch.isfinite(loss.detach()):
        return
    value = float(loss.detach())
    if step == 0:
        raise TrainingError(f"training stopped at its first batch, before any weight update: the loss is {value}, so the "
                            "model's outputs on the training images are not finite as it is built (or loaded); check "
                            "its forward and its weights")
    raise TrainingError(f"training stopped in epoch {epoch + 1}/{n_epochs}: the loss is {value} (training.lr {lr}); "
                        "lower training.lr")


def train(
    model: nn.Module,
    splits: DatasetSplits,
    spec: TrainSpec,
    hooks: Sequence[TrainHook] = (),
    epochs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``splits.x_train`` with SGD + cosine LR; deterministic for ``spec.seed``.

    Args:
        hooks: called at the events of :class:`TrainHook`, in order.
        epochs: overrides ``spec.epochs`` (finetuning runs).
        progress: called with (epochs done, total epochs) after each epoch.
    """

    n_epochs = spec.epochs if epochs is None else epochs
    torch.manual_seed(spec.seed)
    generator = torch.Generator().manual_seed(spec.seed)
    loss_fn = nn.CrossEntropyLoss()
    state = TrainState(
        model=model,
        optimizer=make_optimizer(model, spec, spec.lr),
        spec=spec,
        x_train=_as_tensor(splits.x_train),
        y_train=_as_tensor(splits.y_train),
        x_val=_as_tensor(splits.x_val),
        y_val=_as_tensor(splits.y_val),
        input_shape=tuple(splits.input_shape),
        epochs=n_epochs,
        lr=spec.lr,
    )
    for hook in hooks:
        hook.on_train_start(state)
    n = len(state.x_train)
    for epoch in range(n_epochs):
        state.epoch = epoch
        state.lr = cosine_lr(spec.lr, epoch, n_epochs)
        for group in state.optimizer.param_groups:
            group["lr"] = state.lr
        for hook in hooks:
            hook.on_epoch_start(state)
        epoch_macs = count_macs(model, state.input_shape)
        model.train()
        order = torch.randperm(n, generator=generator)
        loss_sum, seen = 0.0, 0
        for i in range(0, n, spec.batch_size):
            idx = order[i : i + spec.batch_size]
            if len(idx) < 2:  # BatchNorm cannot train on a single sample
                continue
            state.optimizer.zero_grad(set_to_none=True)
            state.loss = loss_fn(model(state.x_train[idx]), state.y_train[idx])
            _check_finite(state.loss, epoch, n_epochs, spec.lr, state.step)
            state.loss.backward()
            for hook in hooks:
                hook.after_backward(state)
            state.optimizer.step()
            state.step += 1
            loss_sum += float(state.loss.detach()) * len(idx)
            seen += len(idx)
            for hook in hooks:
                hook.on_batch_end(state)
        state.training_macs += TRAIN_MACS_FACTOR * epoch_macs * seen
        val_acc = evaluate(model, state.x_val, state.y_val)
        state.history.append(
            {
                "epoch": epoch,
                "lr": state.lr,
                "train_loss": loss_sum / max(seen, 1),
                "val_accuracy": val_acc,
                "macs": epoch_macs,
                "params": count_params(model),
                "training_macs": state.training_macs,
            }
        )
        for hook in hooks:
            hook.on_epoch_end(state)
        log.info("epoch %d/%d loss %.4f val %.4f", epoch + 1, n_epochs, loss_sum / max(seen, 1), val_acc)
        if progress is not None:
            progress(epoch + 1, n_epochs)
    model.eval()
    final_acc = evaluate(model, state.x_val, state.y_val)
    return TrainResult(history=state.history, training_macs=state.training_macs, val_accuracy=final_acc)
