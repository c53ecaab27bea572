"""Variant specs: what a model variant is made of, and its content-addressed id.

A variant is fully described by its spec (base model, dataset, training recipe, one of a prune / sparse /
low-rank spec, quant spec). The id is a hash of that spec, so the same experiment re-run maps to the same ids
and reuses cached artifacts and stored results. Fields added after ids were first published
(:data:`_ADDED_FIELDS`) enter the hash only when set, so every earlier variant keeps its id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Precision = Literal["fp32", "fp16", "int8", "int8_dynamic", "fixed"]
#: a registered schedule name (``edgebench.prune.schedules.SCHEDULES``: while_training, oneshot_finetune, iterative,
#: scratch, scratch_b), checked when the experiment loads
Schedule = str
#: how a variant differs from the trained baseline
Kind = Literal["baseline", "structured", "sparse", "lowrank", "external"]
#: int8 static ONNX activation-range calibrators (edgebench.runtimes.onnxruntime.calibration)
Calibrator = Literal["minmax", "entropy", "percentile"]
#: the calibrator that measured best on the default run's variants (scripts/study_int8_calibration.py):
#: smallest max |logit diff| at equal accuracy; entropy clips activations too hard on these models
DEFAULT_CALIBRATOR: Calibrator = "minmax"

#: the largest float32: a training hyper-parameter past it overflows the optimizer's tensors
FLOAT32_MAX = 3.4028234663852886e38


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # .inf lr trained a NaN model


class TrainSpec(_Frozen):
    """Training recipe shared by every variant of an experiment."""

    epochs: int = Field(8, ge=0, description="epochs of the (baseline) training run; with model.weights, of "
                        "fine-tuning them (0: the weights as given)")
    batch_size: int = Field(64, ge=1, description="training batch size")
    # within float32 (the optimizer's type): 1e300 had failed each build with torch's overflow, no field named
    lr: float = Field(0.05, gt=0, le=FLOAT32_MAX, description="SGD learning rate at the start (cosine schedule down to 0)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(5e-4, ge=0, le=FLOAT32_MAX, description="SGD weight decay")
    seed: int = Field(0, description="seed of the initial weights, the data order and the criteria's scoring samples "
                      "(the random criterion has its own: pruning.criterion_kwargs: {random: {seed: N}})")


class PruneSpec(_Frozen):
    """How filters are removed: criterion, target ratio and schedule."""

    criterion: str = Field(description="registered criterion name, e.g. l1, mean_activation, random")
    ratio: float = Field(gt=0, lt=1, description="fraction of filters (or MACs) removed")
    schedule: Schedule = "while_training"
    unit: Literal["filters", "macs"] = "filters"
    scope: Literal["layer", "global"] = "layer"
    round_to: int | None = Field(None, ge=1)
    prune_epochs: tuple[int, ...] = Field(
        (), description="while_training: epochs (0-based) after which filters are removed; ratio ramps to target"
    )
    finetune_epochs: int = Field(0, ge=0, description="oneshot_finetune / iterative: epochs of finetuning")
    steps: int = Field(1, ge=1, description="iterative: number of prune/finetune steps")
    criterion_kwargs: dict[str, Any] = Field(default_factory=dict)
    allocation: str | None = Field(
        None, description="per-layer ratio allocation (prune/allocation/) other than uniform/global (= scope)"
    )
    allocation_kwargs: dict[str, Any] = Field(default_factory=dict)
    revision: int = Field(0, ge=0, description="the criterion's definition revision (Criterion.revision): a "
                          "changed definition builds a different artifact, so it gets another id")
    keep: tuple[str, ...] = Field((), description="conv layers whose filters are never removed")


class SparseSpec(_Frozen):
    """Unstructured sparsity: individual weights set to zero (``prune/sparse/``)."""

    method: str = Field(description="registered sparse method: magnitude, snip, rigl, scl")
    sparsity: float = Field(gt=0, lt=1, description="fraction of conv/linear weights removed")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="the method's options")
    revision: int = Field(0, ge=0, description="the method's definition revision (SparseMethod.revision)")


class LowRankSpec(_Frozen):
    """Low-rank factorisation trained from scratch (LRPET, ``prune/lowrank.py``)."""

    method: Literal["lrpet"] = "lrpet"
    rank_ratio: float = Field(gt=0, lt=1, description="kept fraction of each layer's full rank")
    energy_transfer: bool = True
    bn_rectification: bool = True


#: bit widths quantization-aware training can train (weights and activations)
QAT_BITS = range(2, 9)


class QatSpec(_Frozen):
    """Quantization-aware training (``edgebench.quantization.qat``): fake quantizers trained in the training run.

    Weights are symmetric, activations (each Conv/Linear input) per tensor. ``scales: float`` gives per-channel
    weight scales for int8 runtimes (ONNX QDQ, LiteRT); ``power_of_two`` gives one power-of-two scale per
    tensor, which is exactly an ``ap_fixed`` type per layer, so the hls4ml firmware computes bit for bit what
    the fake-quantized PyTorch model computes.
    """

    weight_bits: int = Field(8, ge=min(QAT_BITS), le=max(QAT_BITS), description="bits of every layer's weights")
    activation_bits: int = Field(8, ge=min(QAT_BITS), le=max(QAT_BITS), description="bits of every layer's input")
    scales: Literal["float", "power_of_two"] = Field("float", description="per-channel float weight scales (int8 runtimes), or "
        "one power-of-two scale per tensor (shifts: FPGA)")
    layer_bits: dict[str, tuple[int, int]] = Field(
        default_factory=dict, description="per-layer (weight bits, activation bits) by module name, overriding the defaults")
    start_epoch: int | None = Field(
        None, ge=0, description="epoch (0-based) at which fake quantizers are inserted; default: after the last "
        "pruning step, or half-way through an unpruned run")
    revision: int = Field(1, ge=0, description="what QAT trains (1: a BatchNorm1d after a Linear is folded into it, "
                          "as a BatchNorm2d into its conv), so models trained before get new ids")

    @model_validator(mode="after")
    def _bits_in_range(self) -> QatSpec:
        bad = {name: bits for name, bits in self.layer_bits.items() if not all(b in QAT_BITS for b in bits)}
        if bad:
            raise ValueError(f"layer_bits {bad}: bit widths must be 2..8")
        return self

    @property
    def tag(self) -> str:
        """Short name, e.g. ``qat-w8a8``, ``qat-w4a4-pow2``."""
        pow2 = "-pow2" if self.scales == "power_of_two" else ""
        return f"qat-w{self.weight_bits}a{self.activation_bits}{pow2}" + ("-layers" if self.layer_bits else "")

    @property
    def precisions(self) -> tuple[Precision, ...]:
        """The artifact precisions its trained quantizers export to: int8 always, fixed point (hls4ml) only from
        power-of-two scales."""
        return ("int8", "fixed") if self.scales == "power_of_two" else ("int8",)

    def bits(self, layer: str) -> tuple[int, int]:
        """(weight bits, activation bits) of the layer named ``layer``."""
        return self.layer_bits.get(layer, (self.weight_bits, self.activation_bits))


class QuantSpec(_Frozen):
    """Numeric precision of the deployed artifact."""

    precision: Precision = "fp32"
    calibration_samples: int = Field(256, ge=1, description="int8 static: training images used to calibrate")
    fixed_point: str | None = Field(None, description="fixed: default ap_fixed<W,I> for hls4ml")
    reuse_factor: int = Field(1, ge=1, description="fixed: hls4ml reuse factor")
    calibrator: Calibrator | None = Field(
        None, description="int8 (static ONNX QDQ): activation-range calibrator; only int8 has one, so it is part "
        "of int8 artifacts' identity only")
    max_drop: float | None = Field(
        None, gt=0, lt=1, description="int8 (static ONNX QDQ): accuracy drop allowed on the validation split; the "
        "layers whose quantization costs most stay fp32 until it holds (runtimes/onnxruntime/mixed_precision.py)")
    qat: QatSpec | None = Field(
        None, description="int8 / fixed exported from quantizers trained with the model (no calibration); with "
        "precision fp32 it names the quantization-trained model those artifacts are exported from")

    @model_validator(mode="after")
    def _calibrator_only_for_int8(self) -> QuantSpec:
        if self.calibrator is not None and self.precision != "int8":
            raise ValueError(f"calibrator applies to int8 static quantization only, not to {self.precision}")
        if self.qat is not None and self.calibrator is not None:
            raise ValueError("a QAT variant uses its trained quantizers; it has no calibrator")
        if self.max_drop is not None and (self.precision != "int8" or self.qat is not None):
            raise ValueError("max_drop applies to calibrated int8 (mixed precision), not to QAT or other precisions")
        return self


#: the smallest std a declared normalize divides by: on [0, 1] pixels common datasets' channel stds are 0.2..0.3
#: (ImageNet's 0.224, CIFAR-10's 0.25, MNIST's 0.31); a std under 1e-3 multiplies its channel by over 1000, so one
#: 8-bit step (1/255) becomes a jump of 4 or more and that channel swamps the others (std 1e-30 made its inputs
#: 1e30 and the run ended at chance, with a note pointing at the learning rate)
_MIN_STD = 1e-3


class Normalize(_Frozen):
    """Per-channel ``(x - mean) / std`` on pixel values scaled to [0, 1] (torchvision's ``Normalize``)."""

    mean: tuple[float, ...] = Field(min_length=1, description="one value per channel (or one for all)")
    std: tuple[float, ...] = Field(min_length=1, description="one value per channel (or one for all)")

    @model_validator(mode="after")
    def _positive_std(self) -> Normalize:
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {list(self.std)}")
        if tiny := [s for s in self.std if s < _MIN_STD]:
            raise ValueError(f"std {tiny[0]:g} scales its channel by {1 / tiny[0]:.3g}; give each channel's standard "
                             f"deviation on [0, 1] pixels, at least {_MIN_STD:g} (ImageNet's are about 0.22)")
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values, std {len(self.std)}; give one per channel")
        return self


class Preprocess(_Frozen):
    """What trained weights expect of their input, applied in this order to every split (so training, int8
    calibration and every target's accuracy see the same images): ``resize``, ``center_crop``, ``normalize``.
    Without ``normalize`` images are standardised with the training split's per-channel statistics."""

    resize: int | tuple[int, int] | None = Field(
        None, description="N: the shorter side to N, keeping the aspect ratio; [H, W]: exactly (bilinear, antialiased)")
    center_crop: int | tuple[int, int] | None = Field(None, description="N or [H, W]: the central window")
    normalize: Normalize | None = None

    @field_validator("resize", "center_crop", mode="before")
    @classmethod
    def _one_or_two_sizes(cls, value: Any) -> Any:
        """A list of another length fails both members of the union, and pydantic's two errors name neither form."""
        if isinstance(value, list | tuple) and len(value) != 2:
            raise ValueError(f"one size N or [height, width], got {list(value)}")
        return value

    @model_validator(mode="after")
    def _positive_sizes(self) -> Preprocess:
        for name in ("resize", "center_crop"):
            value = getattr(self, name)
            sizes = value if isinstance(value, tuple) else (value,) if value is not None else ()
            if any(v < 1 for v in sizes):
                raise ValueError(f"{name} must be positive sizes, got {value}")
        return self


#: what a trained-weights file holds: a state dict (or a checkpoint dict holding one), a TorchScript program,
#: or a ``torch.export`` ExportedProgram (``.pt2``)
WeightsFormat = Literal["state_dict", "torchscript", "exported_program"]


class ModelSource(_Frozen):
    """A model from outside the zoo: the user's code and trained weights, identified by their content.

    ``file`` and ``weights`` say where to read them on this machine; they are not part of the variant id (a moved
    checkout keeps its cache), the digests are (an edited model file or retrained weights never reuse a cached
    model). ``trust_checkpoint`` changes how a checkpoint is read, not what it holds, so it is not in the id either.
    """

    file: str | None = Field(None, description="absolute path of the Python file defining the factory")
    code_digest: str | None = Field(None, description="sha256 of the factory's source file and the plug-in files")
    code_files: tuple[str, ...] = Field((), description="the files the code digest covers, where they lie on this "
                                        "machine (not part of the id): a build checks them against it")
    weights: str | None = Field(None, description="absolute path of the trained weights")
    weights_digest: str | None = Field(None, description="sha256 of the weights file")
    weights_format: WeightsFormat | None = None
    trust_checkpoint: bool = Field(False, description="unpickle arbitrary objects from the checkpoint")

    @property
    def program(self) -> bool:
        """Whether the model is a compiled program (TorchScript or ExportedProgram) with no Python class."""
        return self.weights_format in ("torchscript", "exported_program")


#: ModelSource fields that say where to read a file or how, not what it holds: left out of variant ids
_SOURCE_LOCATIONS = ("file", "weights", "trust_checkpoint", "code_files")


class ExternalSpec(_Frozen):
    """An artifact another tool made (an NNCF, Olive or ONNX Runtime int8 ONNX, a TFLite file), measured as it is.

    Its identity is its content (``digest``), its format and the name it is shown under; where the file lies and
    which variant it was made from (``parent_id``, lineage) are not part of the variant id.
    """

    label: str = Field(description="the name it is shown under, e.g. nncf-int8")
    format: str = Field(description="artifact format: onnx, tflite")
    digest: str = Field(description="sha256 of the file")
    path: str | None = Field(None, description="absolute path of the file; not part of the id")
    parent_id: str | None = Field(None, description="the variant it was made from; not part of the id")


#: ExternalSpec fields that are not what the artifact is
_EXTERNAL_LOCATIONS = ("path", "parent_id")


class VariantSpec(_Frozen):
    """Everything that determines a variant; its hash is the variant id."""

    model: str
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    dataset: str
    dataset_kwargs: dict[str, Any] = Field(default_factory=dict)
    train: TrainSpec = TrainSpec()
    prune: PruneSpec | None = None
    quant: QuantSpec = QuantSpec()
    sparse: SparseSpec | None = None
    lowrank: LowRankSpec | None = None
    source: ModelSource | None = Field(None, description="the user's model file and weights (None: a zoo model)")
    preprocess: Preprocess | None = Field(None, description="declared input preprocessing (None: standardised)")
    external: ExternalSpec | None = Field(None, description="an artifact made by another tool (artifacts: section)")
    data_digest: str | None = Field(None, description="digest of the files the dataset's options name (None: none, "
                                    "as for the bundled datasets)")

    @model_validator(mode="after")
    def _one_kind(self) -> VariantSpec:
        if sum(x is not None for x in (self.prune, self.sparse, self.lowrank, self.external)) > 1:
            raise ValueError("a variant is structured (prune), sparse, low-rank or external, not several at once")
        return self

    @property
    def id(self) -> str:
        """Content hash of the spec (12 hex chars); fields added later count only when set, and where the user's
        files lie does not count (their content does)."""
        data = self.model_dump(mode="json")
        if data["source"] is not None:
            data["source"] = {k: v for k, v in data["source"].items() if k not in _SOURCE_LOCATIONS}
        if data["external"] is not None:
            data["external"] = {k: v for k, v in data["external"].items() if k not in _EXTERNAL_LOCATIONS}
        return spec_hash(hash_payload(data, _ADDED_FIELDS))

    @property
    def kind(self) -> Kind:
        """How this variant differs from the trained baseline."""
        if self.prune is not None:
            return "structured"
        if self.sparse is not None:
            return "sparse"
        if self.external is not None:
            return "external"
        return "lowrank" if self.lowrank is not None else "baseline"

    @property
    def weights_spec(self) -> VariantSpec:
        """The spec of the trained model this variant is exported from: the fp32 variant, or for QAT the model
        trained with its fake quantizers (one per QAT setting, shared by its int8 and fixed-point artifacts)."""
        return self.model_copy(update={"quant": QuantSpec(qat=self.quant.qat)})

    @property
    def hosts_qat(self) -> bool:
        """Whether this variant's training run can host quantization-aware training: a run from scratch with the
        training loop's hooks (the baseline, pruning while training)."""
        if self.sparse is not None or self.lowrank is not None:
            return False
        return self.prune is None or self.prune.schedule == "while_training"

    @property
    def fp32_spec(self) -> VariantSpec:
        """The fp32 variant this variant is a quantization of (itself when it is one)."""
        return self.model_copy(update={"quant": QuantSpec()})

    @property
    def parent(self) -> VariantSpec | None:
        """Lineage: a quantized (PTQ or QAT) variant's parent is its fp32 variant; a pruned, sparse or low-rank
        fp32's is the baseline; the baseline has none, nor has an external artifact (its parent is named by id)."""
        if self.external is not None:
            return None
        if self.quant.precision != "fp32" or self.quant.qat is not None:
            return self.fp32_spec
        if self.kind != "baseline":
            return self.model_copy(update={"prune": None, "sparse": None, "lowrank": None})
        return None

    @property
    def parent_id(self) -> str | None:
        """Id of :attr:`parent`; an external artifact's, the variant the experiment says it was made from."""
        if self.external is not None:
            return self.external.parent_id
        parent = self.parent
        return None if parent is None else parent.id

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. ``l1-0.5-while_training/int8``, ``rigl-0.9-sparse/fp32``,
        ``lrpet-r0.25/fp32``."""
        if self.prune is not None:
            p = self.prune
            allocation = p.allocation or ("global" if p.scope == "global" else None)  # uniform goes unnamed
            base = f"{p.criterion}-{p.ratio:g}-{p.schedule}" + (f"-{allocation}" if allocation else "")
        elif self.sparse is not None:
            base = f"{self.sparse.method}-{self.sparse.sparsity:g}-sparse"
        elif self.lowrank is not None:
            base = f"{self.lowrank.method}-r{self.lowrank.rank_ratio:g}"
        elif self.external is not None:
            base = f"external:{self.external.label}"
        else:
            base = "baseline"
        if self.quant.max_drop is not None:
            return f"{base}/int8-maxdrop{self.quant.max_drop:g}"
        if self.quant.qat is None:
            return f"{base}/{self.quant.precision}"
        if self.quant.precision == "fp32":  # the quantization-trained model its artifacts are exported from
            return f"{base}/{self.quant.qat.tag}"
        return f"{base}/{self.quant.precision}-{self.quant.qat.tag}"


_ABSENT = object()


class AddedObject(NamedTuple):
    """An added sub-object: left out of the hash while it is ``absent``; when set, its own ``fields`` added later
    than it are left out while they hold their defaults."""

    absent: Any
    fields: dict[str, Any]


#: fields added after variant ids were first published, with the value that leaves them out of the hash
_ADDED_FIELDS: dict[str, Any] = {
    "sparse": AddedObject(None, {"revision": 0}),
    "lowrank": None,
    "prune": {"allocation": None, "allocation_kwargs": {}, "revision": 0, "keep": []},  # JSON: a tuple dumps as []
    "quant": {"calibrator": None, "qat": None, "max_drop": None},
    "source": None,
    "preprocess": None,
    "external": None,
    "data_digest": None,
}


def hash_payload(data: dict[str, Any], added: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` without the ``added`` fields that hold their default (nested: a mapping of a sub-object's
    added fields, or an :class:`AddedObject`), so adding an optional field to a spec does not change the hash of
    specs that leave it unset."""
    out = {}
    for key, value in data.items():
        default = added.get(key, _ABSENT)
        if isinstance(default, AddedObject):
            if value != default.absent:
                out[key] = hash_payload(value, default.fields) if isinstance(value, dict) else value
        elif isinstance(default, dict) and default and isinstance(value, dict):
            out[key] = hash_payload(value, default)
        elif default is _ABSENT or value != default:
            out[key] = value
    return out


def spec_hash(obj: Any) -> str:
    """Stable 12-hex-digit hash of a JSON-serialisable object."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


#: settings later releases record, at the value a run from before them had: compared as if absent there
ADDED_SETTINGS: dict[str, object] = {"calibrator": DEFAULT_CALIBRATOR}


#: artifact formats whose int8 one calibrator makes whatever was asked (LiteRT: ai-edge-quantizer's min and max;
#: ``Exporter.calibrators``): their calibrator setting tells nothing (releases before this one recorded the asked one)
ONE_CALIBRATOR_FORMATS = frozenset({"tflite"})


def comparable_settings(settings: dict[str, object]) -> dict[str, object]:
    """``settings`` without the added ones at their earlier value, so a run from before a setting existed pairs
    with one that records it (int8 was calibrated by min and max before ``calibrator`` was recorded), and without
    a calibrator the format's int8 does not use."""
    ignored = {"calibrator"} if settings.get("artifact_format") in ONE_CALIBRATOR_FORMATS else set()
    return {k: v for k, v in settings.items()
            if k not in ignored and (k not in ADDED_SETTINGS or v != ADDED_SETTINGS[k])}
