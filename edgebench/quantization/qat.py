"""Quantization-aware training as a training hook, and the deployable model of a quantization-trained one.

:class:`QuantizationAwareTraining` inserts fake quantizers into the model at the start of a chosen epoch of the
training run itself, so it composes with pruning while training (``prune.schedules.PruneWhileTraining``): the
pruning steps shape the architecture first, the remaining epochs train the pruned network with its quantizers,
and one run yields a variant that is both pruned and quantization-trained. The quantizers hold no parameters
(the wrapped layers keep their own), so the optimizer and its momentum carry on unchanged.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator

import torch
from torch import fx, nn

from edgebench.quantization.modules import LayerQuant, QuantLayer
from edgebench.train import TrainHook, TrainState
from edgebench.variants import QatSpec

log = logging.getLogger(__name__)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, module)


#: the BatchNorm a layer's trained quantizers fold in, by the layer's type
_FOLDED_BN = {nn.Conv2d: nn.BatchNorm2d, nn.Linear: nn.BatchNorm1d}


def _conv_bn_pairs(model: nn.Module) -> dict[str, str]:
    """Conv2d -> BatchNorm2d and Linear -> BatchNorm1d module names where the BN reads only that layer's output,
    which only it reads (the ONNX exporter folds such a BN into the layer's weights, so QAT must fold it too)."""
    graph = fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    pairs = {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm1d | nn.BatchNorm2d):
            continue
        source = node.args[0] if node.args else None
        layer = modules.get(source.target) if isinstance(source, fx.Node) and source.op == "call_module" else None
        if (type(layer) in _FOLDED_BN and isinstance(modules[node.target], _FOLDED_BN[type(layer)])
                and len(source.users) == 1):
            pairs[source.target] = node.target
    return pairs


def quantizable_layers(model: nn.Module) -> list[str]:
    """Names of the Conv2d and Linear modules that QAT quantizes (grouped convolutions included)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def prepare_qat(model: nn.Module, spec: QatSpec) -> nn.Module:
    """Wrap every Conv2d/Linear of ``model`` in place in a :class:`QuantLayer` (its BatchNorm folded in and replaced
    by an empty Sequential, which tracing and exporters skip); returns ``model``."""
    unknown = sorted(set(spec.layer_bits) - set(quantizable_layers(model)))
    if unknown:
        raise ValueError(f"qat.layer_bits names {unknown}, not Conv2d/Linear layers of the model "
                         f"({', '.join(quantizable_layers(model))})")
    pairs = _conv_bn_pairs(model)
    power_of_two = spec.scales == "power_of_two"
    for name in quantizable_layers(model):
        layer = model.get_submodule(name)
        bn_name = pairs.get(name)
        bn = model.get_submodule(bn_name) if bn_name else None
        weight_bits, activation_bits = spec.bits(name)
        _set_module(model, name, QuantLayer(layer, bn, weight_bits, activation_bits, power_of_two))
        if bn_name:
            _set_module(model, bn_name, nn.Sequential())
    return model


def quant_layers(model: nn.Module) -> Iterator[tuple[str, QuantLayer]]:
    """The (name, layer) of every quantization-trained layer of ``model``."""
    return ((name, m) for name, m in model.named_modules() if isinstance(m, QuantLayer))


def is_quantization_trained(model: nn.Module) -> bool:
    """Whether ``model`` carries trained fake quantizers."""
    return any(True for _ in quant_layers(model))


def deployable(model: nn.Module) -> tuple[nn.Module, list[LayerQuant]]:
    """A plain float copy of a quantization-trained ``model`` whose Conv2d/Linear hold the quantized (dequantized)
    weights and biases, and each layer's quantizers; run on quantized inputs of each layer, it computes what
    the fake-quantized model computes in eval mode."""
    model = model.eval()
    layers = [m.export(name) for name, m in quant_layers(model)]
    plain = copy.deepcopy(model)
    for layer in layers:
        module: QuantLayer = plain.get_submodule(layer.name)
        inner = module.layer
        if inner.bias is None:
            inner.bias = nn.Parameter(torch.zeros(len(layer.bias_q)))
        with torch.no_grad():
            inner.weight.copy_(layer.weight_q)
            inner.bias.copy_(layer.bias_q)
        _set_module(plain, layer.name, inner)
    return plain.eval(), layers


def default_start_epoch(epochs: int, prune_epochs: tuple[int, ...] = ()) -> int:
    """After the last pruning step, or half-way through an unpruned run (within the run)."""
    start = max(prune_epochs) + 1 if prune_epochs else epochs // 2
    return min(start, epochs - 1)


class QuantizationAwareTraining(TrainHook):
    """Insert fake quantizers at the start of epoch ``start_epoch`` and train with them to the end of the run.

    Pruning hooks must have finished by then: the quantizers wrap the final architecture (checked at the start).
    """

    def __init__(self, spec: QatSpec, start_epoch: int, last_prune_epoch: int | None = None) -> None:
        self.spec = spec
        self.start_epoch = start_epoch
        self.last_prune_epoch = last_prune_epoch

    def on_train_start(self, state: TrainState) -> None:
        if not 0 <= self.start_epoch < state.epochs:
            raise ValueError(f"qat start_epoch {self.start_epoch} outside the run's epochs 0..{state.epochs - 1}")
        if self.last_prune_epoch is not None and self.start_epoch <= self.last_prune_epoch:
            raise ValueError(f"qat start_epoch {self.start_epoch} is not after the last pruning step (epoch "
                             f"{self.last_prune_epoch}); quantizers wrap the final architecture")

    def on_epoch_start(self, state: TrainState) -> None:
        if state.epoch == self.start_epoch:
            prepare_qat(state.model, self.spec)
            log.info("epoch %d: fake quantizers inserted (%s)", state.epoch, self.spec.tag)
