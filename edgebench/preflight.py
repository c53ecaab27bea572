"""Checks a run makes before any work, so a bad set-up fails in a second with one line and an untouched store.

Constraints between the experiment's own fields are checked when it loads (``config_checks.py``); what needs the
machine or the data is checked here: the directories the run will write (:func:`check_output_paths`) and
whether the model can run on the dataset's images (:func:`check_model_fits_data`, one forward pass of the
untrained model), whether per-layer QAT bit widths name its layers (:func:`check_qat_layers`), and which
targets' exporters cannot convert it at all (:func:`drop_refused`: those targets are "not run", with the reason).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edgebench.errors import ConfigError, first_line, require_module
from edgebench.measure.contention import contended_cores
from edgebench.measure.speed_probe import tolerance
from edgebench.paths import writable_dir, writable_file
from edgebench.plan import PlannedJob, plan_fp32_variants
from edgebench.plugins import PLUGINS_DOC
from edgebench.runtimes.base import get_exporter

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgebench.config import Experiment
    from edgebench.data import DatasetSplits
    from edgebench.variants import VariantSpec

log = logging.getLogger(__name__)


def check_output_paths(exp: Experiment, report: bool = True) -> None:
    """The run directory, the report directory (where ``report``: `run --no-report` made an empty one) and a SQLite
    store's directory can be written."""
    from edgebench.store.connection import sqlite_file

    writable_dir(exp.workdir(), "run.workdir")
    if report:
        writable_dir(exp.report_dir(), "report.dir")
    url = exp.store_url()
    if "://" not in url:
        writable_file(Path(url), "store.url")
    elif (path := sqlite_file(url)) is not None:
        writable_file(path, "store.url")
    elif url.startswith("sqlite"):  # in memory: the results would be gone when the run ends, and it could not resume
        raise ConfigError(f"store.url {url}: an in-memory database keeps nothing after the run; give a file "
                          "(a path, or sqlite:///path/results.db)")
    if exp.tracking.mlflow is not None:  # before any training: a run must not end unable to log
        require_module("mlflow", "mlflow", "tracking.mlflow")
        from edgebench.tracking.mlflow_log import check_server, check_uri

        check_uri(exp.tracking.mlflow.uri, "tracking.mlflow.uri")
        check_server(exp.tracking.mlflow.uri, "tracking.mlflow.uri")


def check_measurement_env() -> None:
    """ConfigError for a bad EDGEBENCH_SPEED_TOLERANCE or EDGEBENCH_CONTENDED_CORES before any work: each
    measurement reads them, and would fail on them, every job alike."""
    tolerance()
    contended_cores()


def check_model_fits_data(exp: Experiment, splits: DatasetSplits) -> nn.Module:
    """The baseline model builds (the factory, the trained weights), runs on one and on two training images and
    gives (batch, classes) logits; and when the experiment prunes filters, it can be pruned. Returns the model."""
    import torch

    from edgebench.models.source import FactoryError
    from edgebench.models.weights import WeightsError
    from edgebench.prune.build import new_model  # torch: imported only when a run starts

    baseline = plan_fp32_variants(exp)[0]
    shape = "x".join(map(str, splits.input_shape))
    what = f"model {baseline.model}" + (f" with {exp.model.kwargs}" if exp.model.kwargs else "")
    with torch.random.fork_rng(devices=[]):  # training seeds itself; this check must not move its RNG
        try:
            model = new_model(baseline, splits).eval()
        except (FactoryError, WeightsError):
            raise
        except Exception as exc:  # a factory import that fails in a way the file check could not see
            raise ConfigError(f"{what}: building it failed: {type(exc).__name__}: {first_line(exc)}") from None
        for n in (1, 2):  # batch 1 is what single-stream timing runs; 2 catches a batch dimension fixed at 1
            try:
                with torch.inference_mode():
                    out = model(torch.from_numpy(splits.x_train[:n]))
            except Exception as exc:  # whatever the forward raises, the cause is this pairing
                one_d = any(isinstance(m, torch.nn.Conv1d) for m in model.modules())
                hint = _conv1d_hint(baseline, splits) if one_d else (
                    f"; edgebench calls it with one (N, {', '.join(map(str, splits.input_shape))}) float tensor: a "
                    "forward that takes a dict, several inputs or another layout needs a wrapper module")
                raise ConfigError(f"{what} does not run on dataset {splits.name} ({shape} images, batch {n}): "
                                  f"{first_line(exc)}{hint}") from None
            if not isinstance(out, torch.Tensor):
                raise ConfigError(f"{what} returns a {type(out).__name__}, not one logits tensor, on dataset "
                                  f"{splits.name}: return only the (batch, {splits.num_classes}) logits (e.g. a "
                                  "wrapper whose forward returns out[0] or out['logits'])")
            if tuple(out.shape) != (n, splits.num_classes):
                raise ConfigError(f"{what} gives outputs of shape {tuple(out.shape)} on dataset {splits.name}; "
                                  f"expected (batch, {splits.num_classes}) logits")
            if not bool(torch.isfinite(out).all()):  # every variant's training would stop at its first batch
                weights = " with its weights" if exp.model.weights else " as its factory builds it"
                raise ConfigError(f"{what}{weights} gives NaN or infinite outputs on dataset {splits.name}'s first "
                                  f"training image(s): check its forward{' and weights' if exp.model.weights else ''}")
        if exp.training.epochs > 0 and next(model.parameters(), None) is None:
            raise ConfigError(f"{what} has no parameters: there is nothing to train, prune or quantize (training."
                              f"epochs {exp.training.epochs})")
        _check_picklable(model, what)  # first: the training-mode check copies the model, as pickle does
        if exp.training.epochs > 0:
            _check_training_output(model, torch.from_numpy(splits.x_train[:2]), what)
        _warn_probabilities(out, what)
        if exp.training.epochs > 0 and exp.model.weights is None:
            steps = exp.training.epochs * math.ceil(len(splits.x_train) / exp.training.batch_size)
            _warn_still_batchnorm(model, steps, what)
        check_qat_layers(exp, model, what)
        if any(spec.prune is not None for spec in plan_fp32_variants(exp)):
            check_prunable(model, torch.from_numpy(splits.x_train[:2]), what, exp.pruning.check_removal,
                           exp.pruning.keep)
            check_plugin_criteria(exp, model, splits, what)
        if "nisp" in exp.pruning.criteria and not any(isinstance(m, torch.nn.Linear) for m in model.modules()):
            raise ConfigError(f"pruning.criteria: nisp scores the inputs of the last Linear layer (the final response "
                              f"layer), and {what} has no Linear layer (a conv classifier); choose another criterion")
    return model


def _conv1d_hint(baseline: VariantSpec, splits: DatasetSplits) -> str:
    """How edgebench feeds a Conv1d model a signal, and, where its factory took in_channels from the images (their
    C, 1 for a 1xCxL signal), that this is not the signal's channels: a model that already flattened its input was
    otherwise told to flatten it."""
    from edgebench.models.source import factory_kwargs, spec_factory

    hint = ("; edgebench feeds images (N, C, H, W): an (N, C, L) signal is read as 1xCxL images, so a Conv1d model "
            "takes x.flatten(1, 2) of them")
    if baseline.source is not None and baseline.source.program:  # a program: no factory was called
        return hint
    given, signal = factory_kwargs(spec_factory(baseline), baseline, splits).get("in_channels"), splits.input_shape[1]
    if given != splits.input_shape[0] or given == signal:  # not the images' C, or the signal's C too
        return hint
    return (f"{hint}; its factory was given in_channels={given} (the images' C), not the signal's {signal} channels: "
            f"a Conv1d's input channels must not come from that argument (model.kwargs: {{in_channels: {signal}}})")


#: training images a plug-in criterion scores the untrained model on in :func:`check_plugin_criteria`
PROBE_IMAGES = 8


def check_plugin_criteria(exp: Experiment, model: nn.Module, splits: DatasetSplits, what: str) -> None:
    """Each criterion of the user's own code (not edgebench's) scores a copy of the untrained model's groups on a
    few training images, as a build does: one that raises (its scoring method misnamed, so the base's
    ``module_scores`` runs; a score per layer instead of per channel) failed every one of its variants' builds
    only after the baseline had trained. ConfigError naming the criterion and the error."""
    import torch

    from edgebench.prune import CRITERIA
    from edgebench.prune.criteria.base import Criterion, ScoringData
    from edgebench.prune.structured import kept_layers, score_groups

    x, y = torch.from_numpy(splits.x_train[:PROBE_IMAGES]), torch.from_numpy(splits.y_train[:PROBE_IMAGES])
    val = torch.from_numpy(splits.x_val[:PROBE_IMAGES]), torch.from_numpy(splits.y_val[:PROBE_IMAGES])  # as a build's
    for name in exp.pruning.criteria:
        kind = CRITERIA.get(name)
        if kind.__module__.startswith("edgebench."):
            continue  # edgebench's own are tested
        where = f"pruning.criteria: criterion '{name}' ({kind.__name__})"
        if all(getattr(kind, m) is getattr(Criterion, m) for m in ("module_scores", "layer_scores", "__call__")):
            raise ConfigError(f"{where} overrides none of the methods that score channels: a criterion overrides "
                              "module_scores(self, module, role), giving one score per channel of the module along "
                              f"role ('out', 'in' or 'bn'), or None (see {PLUGINS_DOC})")
        probe = copy.deepcopy(model).eval()
        try:
            criterion = kind(**exp.pruning.criterion_kwargs.get(name, {}))
            criterion.prepare(probe, x[:1], ScoringData(x, y, x_val=val[0], y_val=val[1]) if criterion.needs_data
                              else None)
            try:
                score_groups(probe, criterion, x[:1], ignored=kept_layers(probe, exp.pruning.keep))
            finally:
                criterion.release()
        except Exception as exc:  # the user's code: whatever it raises is the finding
            raise ConfigError(f"{where} fails on {what} before any training: {type(exc).__name__}: "
                              f"{first_line(exc) or '(no message)'}") from None


def _check_training_output(model: nn.Module, x: torch.Tensor, what: str) -> None:
    """In training mode too the model gives one logits tensor: one that adds auxiliary outputs while training
    (GoogLeNet's and Inception's aux heads) failed every build in cross-entropy ("argument 'input' must be Tensor,
    not tuple"). Checked on a copy, so the model's BatchNorm statistics stay as built."""
    import torch

    training = copy.deepcopy(model).train()
    try:
        with torch.no_grad():
            out = training(x)
    except Exception as exc:  # runs in eval mode (checked before): what differs is its training-mode code
        raise ConfigError(f"{what} runs in eval mode but not in training mode (model.train(), batch {len(x)}): "
                          f"{type(exc).__name__}: {first_line(exc)}") from None
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"{what} returns a {type(out).__name__} in training mode (auxiliary heads?), one logits "
                          "tensor in eval mode: edgebench trains on the one (batch, classes) logits tensor; build it "
                          "without the extra outputs while training (e.g. aux_logits=False), or measure trained weights "
                          "with training.epochs: 0")


def _warn_probabilities(out: torch.Tensor, what: str) -> None:
    """Warn when the model's outputs are already probabilities (a final softmax, as Keras models often end):
    training applies cross-entropy, which takes logits (a digits CNN lost 30 points of accuracy to it)."""
    import torch

    if len(out) and out.min() >= 0 and torch.allclose(out.sum(1), torch.ones(len(out)), atol=1e-4):
        log.warning("%s gives probabilities (its outputs are >= 0 and sum to 1: a final softmax): training takes logits "
                    "(cross-entropy applies its own softmax); remove the final nn.Softmax (the argmax, and so the "
                    "accuracy, is the same without it)", what)


#: share of the way to the data's statistics below which a BatchNorm's running statistics count as unmoved, and
#: PyTorch's default momentum (layers at it or above are the user's choice of a short run, not a port's setting)
BN_MOVED, BN_DEFAULT_MOMENTUM = 0.5, 0.1


def _warn_still_batchnorm(model: nn.Module, steps: int, what: str) -> None:
    """Warn where BatchNorm layers' running statistics, which eval mode (every measurement) uses, can hardly move in
    ``steps`` training steps: momentum m moves them 1 - (1 - m)^steps of the way to the data's. torchvision's MNASNet
    (m = 0.0003, a TensorFlow port's) trained 14 steps kept its initial statistics: logits of 1e21 in eval mode, the
    baseline at chance and a gradient criterion's scores infinite."""
    from torch import nn

    slow = [m.momentum for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and m.track_running_stats and m.momentum is not None and m.momentum < BN_DEFAULT_MOMENTUM
            and 1 - (1 - m.momentum) ** steps < BN_MOVED]  # PyTorch's default: a short run's own choice
    if slow:
        moved = 1 - (1 - min(slow)) ** steps
        log.warning("%s: %d BatchNorm layer(s) with momentum down to %g move their running statistics only %.1f%% of "
                    "the way to the data's in this run's %d training steps, and eval mode (every measurement) uses "
                    "them: raise their momentum (e.g. 0.1, PyTorch's default) or train longer", what, len(slow),
                    min(slow), 100 * moved, steps)


def drop_refused(jobs: list[PlannedJob], model: nn.Module, input_shape: tuple[int, ...]) -> tuple[list[PlannedJob], list[str]]:
    """The jobs whose exporter can convert ``model`` (the baseline), and a line per target and backend whose
    exporter refuses it (``Exporter.refuses``: hls4ml and a layer type it has no conversion for). Artifacts other
    tools made are not exported, so their jobs stay."""
    reasons: dict[tuple[str, str], str | None] = {}
    kept, refused = [], []
    for job in jobs:
        key = (job.target.name, job.backend)
        if job.variant.external is None and key not in reasons:
            reasons[key] = get_exporter(job.artifact_format, job.target.blocks).refuses(model, input_shape)
            if reasons[key]:
                refused.append(f"{job.target.name}/{job.backend}: {reasons[key]}")
        if job.variant.external is not None or reasons[key] is None:
            kept.append(job)
    return kept, refused


def _check_picklable(model: nn.Module, what: str) -> None:
    """The model can be saved whole (:func:`~edgebench.models.whole_module.save_whole`, for the workers and the
    cache): one that cannot (a parametrized layer, an open file or lock kept as an attribute) would fail every
    variant after its training."""
    import io

    from edgebench.models.whole_module import save_whole

    try:
        save_whole(model, io.BytesIO())
    except Exception as exc:  # pickle's AttributeError/TypeError/PicklingError, whichever the object gives
        remedy = ("bake the parametrizations into the weights first (torch.nn.utils.parametrize."
                  "remove_parametrizations)" if "parametrized" in str(exc) else "keep no open files, locks, "
                  "threads or generators as its attributes (build them in forward, or outside the model)")
        raise ConfigError(f"{what} cannot be saved whole ({type(exc).__name__}: {first_line(exc)}): {remedy}") from None


def check_qat_layers(exp: Experiment, model: nn.Module, what: str) -> None:
    """Every layer a QAT setting's ``layer_bits`` names is a Conv2d/Linear layer of the model (pruning keeps the
    names), else ConfigError naming the unknown layers and the valid ones."""
    from edgebench.quantization.qat import quantizable_layers

    layers = quantizable_layers(model)
    for i, qat in enumerate(exp.quantization.qat):
        unknown = sorted(set(qat.layer_bits) - set(layers))
        if unknown:
            raise ConfigError(f"quantization.qat.{i}.layer_bits: {', '.join(map(repr, unknown))} "
                              f"{'is no layer' if len(unknown) == 1 else 'are no layers'} of {what} that QAT quantizes; "
                              f"its Conv2d/Linear layers: {', '.join(layers)}")


def check_prunable(model: nn.Module, example: torch.Tensor, what: str, exact: bool = True,
                   keep: Sequence[str] = ()) -> None:
    """A copy of ``model`` loses a quarter of its filters (L1, every layer but the classifier and ``keep``) and still
    gives logits of the same shape; ConfigError naming the operation or layer that stops it (torch-pruning cannot
    trace it, or the layer after the cut breaks: a reshape to a hard-coded size, an op that mixes channels), and
    every layer that fails alone, for ``pruning.keep``. With ``exact``, the pruned copy must also give the outputs
    of a copy whose layers ignore the removed channels (:func:`zero_channels`): else torch-pruning removed other
    inputs than the removed filters fed, and every pruned variant would be wrong."""
    import copy

    import torch

    from edgebench.prune.criteria.magnitude import L1Norm
    from edgebench.prune.structured import (
        dependency_graph,
        kept_layers,
        normalised_roots,
        prunable_groups,
        prune_model,
        remove_channels,
        torch_pruning_failure,
    )

    pruned = copy.deepcopy(model).eval()
    try:
        ignored = kept_layers(pruned, keep)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    try:
        plan = prune_model(pruned, L1Norm(), 0.25, example[:1], ignored=ignored)
    except Exception as exc:
        bad, remedy = _inexact_layers(model, example, keep)
        where = f" at layer '{next(iter(bad))}'" if bad else ""
        raise ConfigError(f"{what} cannot be pruned{where}: torch-pruning cannot map its channels "
                          f"({torch_pruning_failure(exc)}); {remedy}") from None
    if not plan and not prunable_groups(model, dependency_graph(model, example[:1]), kept_layers(model, keep)):
        raise ConfigError(f"{what} has no filters to prune: structured pruning removes the output channels of "
                          "Conv2d layers other than the classifier and pruning.keep (a Conv1d model has none); "
                          "remove pruning.criteria")
    coupled = _coupled_filters(model, pruned, plan)
    if coupled:
        layer, planned, removed = coupled[0]
        tied, then = _every_coupled_layer(model, example, keep, [name for name, _, _ in coupled])
        more = len(tied) - 1
        others = f" (and {more} more layer{'s' if more > 1 else ''} tied alike)" if more else ""
        raise ConfigError(f"{what} cannot be pruned at layer '{layer}'{others}: removing {planned} of its filters "
                          f"removed {removed} (its channels are tied to each other: its output split and the "
                          "parts combined channel by channel, as in a gated linear unit, or added to a copy of "
                          f"itself), so ratios and scores would be wrong; pruning.keep: "
                          f"[{', '.join([*keep, *tied])}]{then}")
    failing = _failing_layer(pruned, example)
    if failing is not None:
        bad, remedy = _inexact_layers(model, example, keep)
        cut = (f" (cutting the filters of layer '{next(iter(bad))}')" if len(bad) == 1 else
               f" (cutting the filters of any one of the {len(bad)} layers named below breaks it too)" if bad
               else "")
        raise ConfigError(f"{what} breaks when filters are removed{cut}: {failing}; compute sizes from the input "
                          "(x.flatten(1), adaptive pooling) instead of hard-coding them; if none is hard-coded, "
                          "torch-pruning maps the channels wrongly (a channel shuffle, a split, a gate such as "
                          "nn.GLU over channels, or a concatenation flattened into a Linear: pool or convolve it "
                          f"first); {remedy}")
    with torch.inference_mode():
        before, after = model(example), pruned(example)
    if before.shape != after.shape:
        raise ConfigError(f"{what} gives outputs of shape {tuple(after.shape)} after pruning instead of "
                          f"{tuple(before.shape)}: its classifier was cut; remove pruning.criteria")
    if not exact:
        return
    normalised = normalised_roots(model, example[:1])
    checked = {root: channels for root, channels in plan.items() if root not in normalised}
    if normalised:  # the other groups are checked on a copy that loses only their filters
        log.info("%s: removing filters is not checked against zeroing for the groups a LayerNorm/GroupNorm "
                 "normalises together (%s)", what, ", ".join(sorted(normalised)))
        pruned = copy.deepcopy(model).eval()
        remove_channels(pruned, example[:1], checked)
    if checked and _removal_gap(model, pruned, example, checked) > _EXACT:
        bad, remedy = _inexact_layers(model, example, keep, skip=normalised)
        layer = next(iter(bad), next(iter(checked)))
        why = bad.get(layer, "")
        gap = why if why.startswith(" by") else ""
        # (an attention's embedding never gets here: those filters are kept, structured._uncuttable_layer)
        cause = ("torch-pruning cut other inputs than those filters fed (a channel shuffle, a gate such as nn.GLU over "
                 "channels, or a permute before a flatten, in between); keep NCHW channel order up to x.flatten(1), or ")
        raise ConfigError(
            f"{what} is pruned wrongly at layer '{layer}': removing its filters changes the logits{gap} against "
            f"zeroing what reads them: {cause}{remedy} "
            "(pruning.check_removal: false when an op over channels, e.g. x.mean(1), causes it)")


def _coupled_filters(model: nn.Module, pruned: nn.Module, plan: dict[str, list[int]]) -> list[tuple[str, int, int]]:
    """Each root conv that lost more filters than the plan named (one root channel tied to others of the same
    conv), as ``(layer, planned, removed)``; empty when every root lost exactly its plan."""
    found = []
    for root, idxs in plan.items():
        removed = model.get_submodule(root).out_channels - pruned.get_submodule(root).out_channels
        if removed != len(idxs):
            found.append((root, len(idxs), removed))
    return found


#: how many times the coupling check prunes again with the tied layers kept, to name them all in one line
_COUPLING_ROUNDS = 6


def _every_coupled_layer(model: nn.Module, example: torch.Tensor, keep: Sequence[str],
                         tied: list[str]) -> tuple[list[str], str]:
    """``tied`` and the layers found tied alike once those are kept (a kept layer's group can hide another's), so
    the refusal names every layer ``pruning.keep`` needs, not one per run; and, appended to the refusal, torch-pruning's
    error where pruning with those kept fails (else empty)."""
    from edgebench.prune.criteria.magnitude import L1Norm
    from edgebench.prune.structured import kept_layers, prune_model, torch_pruning_failure

    tied = list(tied)
    for _ in range(_COUPLING_ROUNDS):
        trial = copy.deepcopy(model).eval()
        try:
            plan = prune_model(trial, L1Norm(), 0.25, example[:1], ignored=kept_layers(trial, [*keep, *tied]))
        except Exception as exc:  # named now: the user would otherwise learn it only after keeping those layers
            return tied, f" (then pruning fails: {torch_pruning_failure(exc)})"
        more = [name for name, _, _ in _coupled_filters(model, trial, plan) if name not in tied]
        if not more:
            break
        tied += more
    return tied, ""


#: relative difference (of the logits' scale) above which a removal is not the zeroing it should equal
_EXACT = 1e-4


def _removal_gap(model: nn.Module, pruned: nn.Module, example: torch.Tensor, plan: dict[str, list[int]]) -> float:
    """max |logit difference| between ``pruned`` and a copy of ``model`` with ``plan``'s channels zeroed where they
    are read, relative to the logits' scale (at least 1)."""
    import copy

    import torch

    from edgebench.prune.structured import zero_channels

    zeroed = copy.deepcopy(model).eval()
    zero_channels(zeroed, example[:1], plan)
    with torch.inference_mode():
        expected, got = zeroed(example), pruned(example)
    return float((expected - got).abs().max() / expected.abs().max().clamp(min=1))


def _inexact_layers(model: nn.Module, example: torch.Tensor, keep: Sequence[str] = (),
                    skip: Collection[str] = ()) -> tuple[dict[str, str], str]:
    """Each prunable group (by its conv; none kept, none in ``skip``) whose removal alone fails or is not exact, with
    what went wrong (`` (error)`` or `` by <gap> of the logits' scale``), and what to do: keep those layers too
    (``pruning.keep``), or remove pruning.criteria."""
    import copy

    from edgebench.prune.criteria.magnitude import L1Norm
    from edgebench.prune.structured import (
        dependency_graph,
        kept_layers,
        lowest_channels,
        prunable_groups,
        prune_model,
        remove_channels,
        score_group,
        torch_pruning_failure,
    )

    try:
        graph = dependency_graph(model, example[:1])
        groups = prunable_groups(model, graph, kept_layers(model, keep))
    except Exception:  # torch-pruning cannot trace or map the model at all (the caller names its error)
        return {}, "remove pruning.criteria (torch-pruning cannot trace this model, so no layer can be kept apart)"
    bad: dict[str, str] = {}
    for root, group in groups:
        if root in skip:
            continue
        pruned = copy.deepcopy(model).eval()
        try:
            scores = score_group(root, group, L1Norm(), graph)  # the lowest quarter, in even slices when grouped
            plan = {root: lowest_channels(scores, max(len(scores.scores) // 4, 1))}
            remove_channels(pruned, example[:1], plan)
            gap = _removal_gap(model, pruned, example, plan)
        except Exception as exc:
            bad[root] = f" ({type(exc).__name__}: {first_line(exc)})"
            continue
        if gap > _EXACT:
            bad[root] = f" by {gap:.2g} of the logits' scale"
    if not bad:
        return bad, "remove pruning.criteria"
    kept = [*keep, *bad]
    trial = copy.deepcopy(model).eval()
    try:  # suggest keeping them only where the rest then prunes and runs
        prune_model(trial, L1Norm(), 0.25, example[:1], ignored=kept_layers(trial, kept))
        works, why = _failing_layer(trial, example) is None, ""
    except Exception as exc:
        works, why = False, f": {torch_pruning_failure(exc)}"
    if not works:
        return bad, (f"remove pruning.criteria (keeping {', '.join(bad)} with pruning.keep does not make the rest "
                     f"prunable either{why})")
    if _filters(trial) == _filters(model):  # the layers kept hold every group: nothing would be pruned
        return bad, (f"remove pruning.criteria (keeping {', '.join(bad)} with pruning.keep leaves no filter to "
                     "prune: every other conv's filters are tied to theirs)")
    return bad, f"keep those layers and prune the rest: pruning.keep: [{', '.join(kept)}]; or remove pruning.criteria"


def _filters(model: nn.Module) -> int:
    """Output channels of every Conv2d of ``model``."""
    import torch

    return sum(m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def _failing_layer(model: nn.Module, example: torch.Tensor) -> str | None:
    """Run ``model``; if it raises, the innermost layer that was running (or the last that finished) and the error;
    None when it runs."""
    import torch

    names = {m: n for n, m in model.named_modules()}
    running: list[str] = []
    finished: list[str] = []

    def enter(module: nn.Module, _inputs: object) -> None:
        running.append(f"{names[module]} ({type(module).__name__})")

    def leave(*_: object) -> None:
        finished.append(running.pop())

    layers = [m for m in model.modules() if m is not model]
    hooks = [m.register_forward_pre_hook(enter) for m in layers] + [m.register_forward_hook(leave) for m in layers]
    try:
        with torch.inference_mode():
            model(example)
    except Exception as exc:
        # an op between layers (a reshape to a fixed size) fails outside any layer: name the layer it follows
        where = f"layer {running[-1]}" if running else f"the forward after layer {finished[-1] if finished else '(none)'}"
        return f"{where} raises {type(exc).__name__}: {first_line(exc)}"
    finally:
        for hook in hooks:
            hook.remove()
    return None
