"""How a variant was made: its chain of parents up to the trained baseline, each step in words.

Read from the stored spec alone (a variant's parent is derived from its spec: a quantized variant comes from
its fp32 weights, a pruned, sparse or low-rank fp32 variant from the trained baseline), so a report needs
nothing but the store. A spec this version cannot read (written by another edgebench) gets one step that
says so, with its stored parent id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgebench.variants import DEFAULT_CALIBRATOR, PruneSpec, QuantSpec, VariantSpec

_QUANT_WORDS = {
    "fp16": "weights and activations cast to fp16",
    "int8_dynamic": "int8 dynamic: weights int8, activations quantized at run time",
}


def _quantized(q: QuantSpec) -> str:
    if q.precision == "int8":
        calibrator = q.calibrator or DEFAULT_CALIBRATOR
        return f"int8 static, per-channel, {calibrator} calibration on {q.calibration_samples} training images"
    if q.precision == "fixed":
        return f"fixed point {q.fixed_point or '(target default)'}, reuse factor {q.reuse_factor} (hls4ml)"
    return _QUANT_WORDS.get(q.precision, q.precision)


def removed_share(facts: Any, base_facts: Any, unit: str) -> float | None:
    """The share of filters (or MACs, ``unit: macs``) a pruned variant removed from the baseline, from the facts
    stored with both (kept filters per layer, MACs); None where either lacks them. Whole filters round: 0.25 of
    layers 6/10/14 wide removes 20 % of the filters."""
    if not isinstance(facts, dict) or not isinstance(base_facts, dict):
        return None
    if unit == "macs":
        mine, base = facts.get("macs"), base_facts.get("macs")
    else:
        mine, base = (sum((f.get("filters") or {}).values()) for f in (facts, base_facts))  # kept, by layer
    return 1 - mine / base if mine is not None and base else None


def pruned_share(ratio: float, unit: str, removed: float | None) -> str:
    """``80% of filters removed``, or what was removed where whole filters made it differ from the ratio asked
    (``80.4% of filters removed (80% asked)``)."""
    if removed is None or round(removed, 3) == round(ratio, 3):
        return f"{ratio:.0%} of {unit} removed"
    return f"{removed:.1%} of {unit} removed ({ratio:.0%} asked)"


def _pruned(p: PruneSpec, removed: float | None = None) -> str:
    text = f"filter pruning: {p.criterion}, {pruned_share(p.ratio, p.unit, removed)}, schedule {p.schedule}"
    if p.schedule == "while_training" and p.prune_epochs:
        text += f" (pruned after epochs {', '.join(map(str, p.prune_epochs))})"
    if p.finetune_epochs:
        text += f", {p.finetune_epochs} finetune epochs"
    allocation = p.allocation or ("global" if p.scope == "global" else "uniform")
    return text + f", allocation {allocation}"


def made_how(spec: VariantSpec, removed: float | None = None) -> str:
    """The step that made ``spec`` from its parent (or, for the baseline, its training recipe); ``removed``: the
    share a pruning step removed (:func:`removed_share`)."""
    if spec.quant.precision != "fp32":
        return f"quantized: {_quantized(spec.quant)}"
    if spec.prune is not None:
        return _pruned(spec.prune, removed)
    if spec.sparse is not None:
        return f"unstructured sparsity: {spec.sparse.method}, {spec.sparse.sparsity:.0%} of weights zero"
    if spec.lowrank is not None:
        return f"low rank: {spec.lowrank.method}, rank ratio {spec.lowrank.rank_ratio:g}"
    t = spec.train
    source = spec.source
    given = source is not None and source.weights_digest is not None
    if given and t.epochs == 0:  # "trained ...: 0 epochs" read as if edgebench had trained it, for nothing
        named = f" ({Path(source.weights).name})" if source.weights else ""  # type: ignore[union-attr]
        return f"{spec.model}: the given weights{named}, as given (not trained here)"
    return (f"{'fine-tuned the given weights of ' if given else 'trained '}{spec.model} on {spec.dataset}: "
            f"{t.epochs} epochs, batch {t.batch_size}, lr {t.lr:g}, seed {t.seed}")


def lineage(spec: dict[str, Any] | None, parent_id: str | None = None,
            calibrator: str | None = None, removed: float | None = None) -> list[dict[str, str | None]]:
    """``[{id, label, step}, ...]`` from this variant up to the trained baseline.

    Args:
        spec: the stored variant spec (JSON form).
        parent_id: the stored parent id, shown when the spec cannot be read.
        calibrator: the int8 calibrator the measurement recorded (its settings), where it is not the spec's: a
            LiteRT int8 file is made from min and max ranges whatever ONNX Runtime's variant was calibrated with.
        removed: the share of filters (or MACs) the variant's pruning removed (:func:`removed_share`).
    """
    try:
        current: VariantSpec | None = VariantSpec.model_validate(spec or {})
    except ValidationError as exc:
        why = f"spec not readable by this edgebench ({exc.error_count()} field error(s))"
        return [{"id": None, "label": None, "step": why + (f"; parent {parent_id}" if parent_id else "")}]
    measured = current
    if calibrator is not None and current.quant.precision == "int8" and current.quant.calibrator != calibrator:
        measured = current.model_copy(update={"quant": current.quant.model_copy(update={"calibrator": calibrator})})
    chain = []
    while current is not None:
        chain.append({"id": current.id, "label": current.label, "step": made_how(current, removed)})
        current = current.parent
    chain[0]["step"] = made_how(measured, removed)  # the variant's id stays the stored one
    return chain
