"""Inference cost of a model: parameter count and multiply-accumulates (MACs) per sample.

MACs count only the layers that dominate compute on every target: convolutions
(out_elements * in_channels / groups * kh * kw; a transposed one: in_elements * out_channels / groups * kh * kw),
linear layers (in * out), ``nn.MultiheadAttention`` (its projections and both attention products) and recurrent
layers (``nn.RNN``/``LSTM``/``GRU``: gates x hidden x (input + hidden) a step). Pooling, BN
(foldable into the conv) and activations are not counted. Dense runtimes execute every MAC, zero weights
included; ``nonzero=True`` counts only the MACs of non-zero weights - what a sparse kernel, or hls4ml's
firmware at reuse factor 1, has to compute.
"""

from __future__ import annotations

import torch
from torch import nn

#: the layers whose MACs are counted
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, *_TRANSPOSED, nn.Linear)


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``model``."""
    return sum(p.numel() for p in model.parameters())


def count_nonzero_params(model: nn.Module) -> int:
    """Parameters of ``model`` that are not exactly zero (weights, biases, BN affine parameters)."""
    return sum(int(torch.count_nonzero(p.detach())) for p in model.parameters())


def layer_macs(model: nn.Module, input_shape: tuple[int, ...], nonzero: bool = False) -> dict[str, int]:
    """Conv and linear MACs per layer (module path) of one forward pass of a single sample of ``input_shape``.

    Each weight is used once per output position, so a layer costs ``positions * weights``; ``nonzero``
    counts only its non-zero weights. A module called more than once (shared weights) counts every call.
    """
    names = {m: n for n, m in model.named_modules()}
    macs: dict[str, int] = {}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if isinstance(module, _TRANSPOSED):  # each weight meets every input position
            positions = inputs[0][0].numel() // module.in_channels
        else:  # each weight meets every output position
            positions = output[0].numel() // (module.out_features if isinstance(module, nn.Linear) else module.out_channels)
        weights = int(torch.count_nonzero(module.weight)) if nonzero else module.weight.numel()
        macs[names[module]] = macs.get(names[module], 0) + positions * weights

    def composite(module: nn.Module, args: tuple[torch.Tensor, ...], kwargs: dict, _output: object) -> None:
        inputs = (*args, *(kwargs[k] for k in ("query", "key", "input") if k in kwargs))
        macs[names[module]] = macs.get(names[module], 0) + _composite_macs(module, inputs, nonzero)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _LAYERS)]
    handles += [m.register_forward_hook(composite, with_kwargs=True) for m in model.modules()
                if isinstance(m, _COMPOSITE)]
    if not handles:  # a compiled program (TorchScript, torch.export) has no layer modules to hook
        return {"(program)": _program_macs(model, input_shape)}
    was_training = model.training
    model.eval()
    try:
        weight = next(model.parameters())  # fp16 modules take fp16 inputs
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=weight.device, dtype=weight.dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return macs


#: layers that compute through their own weights, not through the Linear modules they hold (whose hooks never fire)
_COMPOSITE = (nn.MultiheadAttention, nn.RNNBase)


def _weights(tensor: torch.Tensor | None, nonzero: bool) -> int:
    return 0 if tensor is None else int(torch.count_nonzero(tensor)) if nonzero else tensor.numel()


def _composite_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...], nonzero: bool) -> int:
    """MACs of one call of an attention or recurrent layer on one sample."""
    if isinstance(module, nn.MultiheadAttention):  # (L, E) queries against (S, E) keys and values
        query, key = inputs[0], inputs[1] if len(inputs) > 1 else inputs[0]
        queries, keys = query.shape[-2 if module.batch_first or query.dim() == 2 else 0], \
            key.shape[-2 if module.batch_first or key.dim() == 2 else 0]
        e = module.embed_dim
        if module.in_proj_weight is not None:  # packed q, k, v projections: one third meets each side's rows
            per_row = _weights(module.in_proj_weight, nonzero) / 3
            projections = per_row * queries + 2 * per_row * keys
        else:
            projections = (_weights(module.q_proj_weight, nonzero) * queries
                           + (_weights(module.k_proj_weight, nonzero) + _weights(module.v_proj_weight, nonzero)) * keys)
        return int(projections + 2 * queries * keys * e + _weights(module.out_proj.weight, nonzero) * queries)
    assert isinstance(module, nn.RNNBase)
    x = inputs[0]
    if isinstance(x, nn.utils.rnn.PackedSequence):  # one sample's steps, packed
        steps = x.data.shape[0]
    else:  # (T, I) unbatched, (N, T, I) batch first, else (T, N, I)
        steps = x.shape[1] if x.dim() == 3 and module.batch_first else x.shape[0]
    weights = sum(_weights(p, nonzero) for name, p in module.named_parameters() if name.startswith("weight_"))
    return steps * weights  # every weight (gates x hidden x (input + hidden), a projection) meets every step


def _program_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Convolution and matmul MACs of a compiled program, counted from the operators it dispatches (every weight
    counts: a program's layers cannot be inspected for zeros)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape))
    return counter.get_total_flops() // 2  # a multiply-accumulate is two floating-point operations


def count_macs(model: nn.Module, input_shape: tuple[int, ...], nonzero: bool = False) -> int:
    """Conv + linear MACs of one forward pass of a single sample of shape ``input_shape`` (C, H, W)."""
    return sum(layer_macs(model, input_shape, nonzero).values())


def conv_filters(model: nn.Module) -> dict[str, int]:
    """Output channels of every conv layer, by module name."""
    return {name: m.out_channels for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
