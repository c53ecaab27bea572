"""Training loop: accuracy on digits, determinism, compute accounting, hooks."""

from __future__ import annotations

import torch

from edgebench.data import load_dataset
from edgebench.models import create_model
from edgebench.models.cost import count_macs
from edgebench.train import TrainHook, TrainState, evaluate, train
from edgebench.variants import TrainSpec


def _digits_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("digits_cnn", num_classes=10, in_channels=1)


def test_default_model_learns_digits() -> None:
    splits = load_dataset("digits")
    model = _digits_model()
    result = train(model, splits, TrainSpec(epochs=8))
    assert evaluate(model, splits.x_test, splits.y_test) > 0.9
    assert len(result.history) == 8
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_training_is_deterministic_and_counts_macs() -> None:
    splits = load_dataset("digits")
    spec = TrainSpec(epochs=2, seed=3)
    a, b = _digits_model(1), _digits_model(1)
    ra, rb = train(a, splits, spec), train(b, splits, spec)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    # every training sample is seen each epoch (last batch of 1 would be skipped; not the case here)
    per_epoch = 3 * count_macs(a, splits.input_shape) * len(splits.x_train)
    assert ra.training_macs == rb.training_macs == 2 * per_epoch


class _Recorder(TrainHook):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_train_start(self, state: TrainState) -> None:
        self.events.append("start")

    def on_epoch_start(self, state: TrainState) -> None:
        self.events.append(f"epoch{state.epoch}")

    def after_backward(self, state: TrainState) -> None:
        assert any(p.grad is not None for p in state.model.parameters())
        self.events.append("backward")

    def on_epoch_end(self, state: TrainState) -> None:
        self.events.append(f"end{state.epoch}")
        state.rebuild_optimizer()


def test_hooks_are_called_in_order() -> None:
    splits = load_dataset("digits")
    hook = _Recorder()
    train(_digits_model(), splits, TrainSpec(epochs=2, batch_size=512), hooks=[hook])
    batches = -(-len(splits.x_train) // 512)
    assert hook.events[:2] == ["start", "epoch0"]
    assert hook.events.count("backward") == 2 * batches
    assert hook.events[-1] == "end1"
