"""Artifacts other tools made (NNCF, Olive, ModelOpt, ONNX Runtime's quantizer, another team's TFLite converter) as
first-class variants: an experiment's ``artifacts:`` section lists them, and each is measured on every target
whose backends load its format, with accuracy on the experiment's test split, stored with its content hash and
lineage (``parent``) and its parameters and MACs counted from its graph, and drawn on the same Pareto fronts as
edgebench's own variants, labelled by origin.

edgebench measures them as they are: it neither converts nor re-quantizes them, so a file that does not take the
experiment's input shape is refused at load (ONNX) or fails its measurement with the runtime's error (TFLite).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import shutil
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgebench.data.splits import InputScaling
from edgebench.errors import REEXPORT_HINT, ConfigError, first_line
from edgebench.external_input import check_declared_scaling
from edgebench.external_precision import check_declared_precision
from edgebench.input_layout import channels_last, fits
from edgebench.models.graph_cost import graph_cost
from edgebench.variants import ExternalSpec, Precision, QuantSpec, VariantSpec

log = logging.getLogger(__name__)

#: the formats edgebench measures as given, by file suffix (PyTorch pickles are code, not data: not accepted);
#: ``.xml``: an OpenVINO IR, its weights in the ``.bin`` of the same name beside it
FORMATS = {".onnx": "onnx", ".tflite": "tflite", ".xml": "openvino"}


class ArtifactConfig(BaseModel):
    """One file another tool made: ``{path: resnet_nncf_int8.onnx, label: nncf-int8, precision: int8}``."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="the file (.onnx, .tflite, or an OpenVINO IR's .xml with its .bin beside it); relative "
                      "paths: from the experiment file's directory")
    label: str = Field(description="the name it is shown under, e.g. nncf-int8 (letters, digits, . _ -)")
    precision: Precision = Field(description="what it computes in: fp32, fp16, int8, int8_dynamic")
    parent: str | None = Field("baseline", description="the fp32 variant it was made from, by label "
                               "(baseline, l1-0.5-while_training...), for lineage and the output-error check; "
                               "null: none")

    @field_validator("label")
    @classmethod
    def _plain_label(cls, label: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][\w.\-]*", label):
            raise ValueError(f"label '{label}': use letters, digits, '.', '_' and '-'")
        return label


def artifact_format(path: Path) -> str:
    """The format of an external artifact, from its suffix; ConfigError for one edgebench does not take as given."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"{path.name}: edgebench measures {' and '.join(FORMATS)} files as given; convert it to "
                          "one of them (a PyTorch pickle is code, not data: give the model and its state dict instead)")
    return fmt


def check_artifacts(artifacts: list[ArtifactConfig], source: str) -> None:
    """Each file exists and has a format edgebench measures; labels are unique."""
    seen: set[str] = set()
    for i, artifact in enumerate(artifacts):
        where = f"{source}: artifacts.{i}"
        if artifact.label in seen:
            raise ConfigError(f"{where}.label: '{artifact.label}' is used twice; give each artifact its own label")
        seen.add(artifact.label)
        path = Path(artifact.path)
        if not path.is_file():
            raise ConfigError(f"{where}.path: {artifact.path} is not a file")
        try:
            artifact_format(path)
            external_data_files(path)
        except ConfigError as exc:
            raise ConfigError(f"{where}.path: {exc}") from None


def external_data_files(path: Path) -> list[Path]:
    """The files a model keeps its weights in beside its graph - an ONNX model's external data (``torch.onnx.export``
    writes ``<name>.data`` for a model of any size), an OpenVINO IR's ``.bin`` -: part of the artifact's content;
    ConfigError naming one that is missing."""
    fmt = artifact_format(path)
    if fmt == "openvino":
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise ConfigError(f"{path}: an OpenVINO IR keeps its weights in {weights.name} beside the .xml, which is "
                              "missing: keep the two files together")
        return [weights]
    if fmt != "onnx":
        return []
    import onnx
    from onnx.external_data_helper import uses_external_data

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:
        raise ConfigError(f"{path}: not an ONNX model onnx can read ({first_line(exc)}); {REEXPORT_HINT}") from None
    locations = {entry.value for tensor in _tensors(model.graph) if uses_external_data(tensor)
                 for entry in tensor.external_data if entry.key == "location"}
    files = [path.parent / location for location in sorted(locations)]
    for file in files:
        if not file.is_file():
            raise ConfigError(f"{path}: its weights are in an external data file {file}, which is missing: keep it "
                              "beside the .onnx, or save the model with its weights inside")
    return files


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor an ONNX graph holds: its initializers and its nodes' tensor attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            yield from ([attribute.t] if attribute.HasField("t") else [])
            yield from attribute.tensors
            for subgraph in [*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs]:
                yield from _tensors(subgraph)


def artifact_digest(path: Path, data: list[Path] | None = None) -> str:
    """The content hash of an artifact: its file and, for an ONNX model, the external data files it reads (``data``
    when the caller has listed them already)."""
    from edgebench.plugins import content_digest

    data = external_data_files(path) if data is None else data
    if not data:
        return content_digest(path)
    return hashlib.sha256("".join(content_digest(f) for f in [path, *data]).encode()).hexdigest()


def external_specs(artifacts: list[ArtifactConfig], fp32_specs: list[VariantSpec], source: str) -> list[VariantSpec]:
    """A variant per artifact: the experiment's dataset and preprocessing (what its accuracy is measured on), its
    content, and its parent resolved among the experiment's fp32 variants by label."""
    base = fp32_specs[0]
    by_label = {s.label.removesuffix("/fp32"): s for s in fp32_specs if s.quant.precision == "fp32"}
    specs = []
    for i, artifact in enumerate(artifacts):
        parent = None
        if artifact.parent is not None:
            parent = by_label.get(artifact.parent.removesuffix("/fp32"))
            if parent is None:
                raise ConfigError(f"{source}: artifacts.{i}.parent: no fp32 variant '{artifact.parent}'; the experiment "
                                  f"has {', '.join(by_label)} (or null)")
        path = Path(artifact.path)
        external = ExternalSpec(label=artifact.label, format=artifact_format(path), digest=artifact_digest(path),
                                path=str(path), parent_id=parent.id if parent else None)
        specs.append(VariantSpec(model=base.model, dataset=base.dataset, dataset_kwargs=base.dataset_kwargs,
                                 data_digest=base.data_digest,
                                 preprocess=base.preprocess, quant=QuantSpec(precision=artifact.precision),
                                 external=external))
    return specs


def check_inputs(spec: VariantSpec, input_shape: tuple[int, ...], classes: int, batches: Collection[int] = (1,),
                 scaling: InputScaling | None = None) -> None:
    """An external artifact takes the experiment's (C, H, W) images at every batch size it is measured at
    (``batches``: 1 for single-stream, the offline scenario's batch), and gives one output of ``classes`` scores
    where its graph fixes their number; ConfigError naming the file and what does not fit otherwise. Its declared
    precision must be what its graph computes in, and a normalisation its own input record names must be the
    experiment's (``scaling``)."""
    external = spec.external
    if external is None or external.path is None:
        return
    _check_fits(external, input_shape, classes, batches)
    check_declared_precision(Path(external.path), external.format, spec.quant.precision)
    check_declared_scaling(Path(external.path), external.format, scaling)


def _check_fits(external: ExternalSpec, input_shape: tuple[int, ...], classes: int, batches: Collection[int]) -> None:
    assert external.path is not None
    if external.format == "tflite":
        _check_tflite(Path(external.path), input_shape, classes)
        return
    if external.format == "openvino":
        _check_openvino_ir(Path(external.path), input_shape, classes)
        return
    if external.format != "onnx":
        return
    name, dims, scores = onnx_image_io(Path(external.path))
    shown = "x".join("?" if d is None else str(d) for d in dims)
    if not (fits(dims[1:], input_shape) or channels_last(dims[1:], input_shape)):
        raise ConfigError(f"{external.path}: its input '{name}' is {shown}, the experiment's images are "
                          f"Nx{'x'.join(map(str, input_shape))} (NCHW, or NHWC)")
    if dims[0] is not None and (other := sorted(b for b in batches if b != dims[0])):
        raise ConfigError(f"{external.path}: its input '{name}' has a fixed batch of {dims[0]}, and the experiment "
                          f"measures it at batch {other[0]} (single_stream: 1; offline: measurement.batch_size); "
                          "export it with a dynamic batch axis, or measure it at that batch")
    check_class_scores(Path(external.path), scores, classes)


def check_class_scores(path: Path, dims: Sequence[int | None], classes: int) -> None:
    """ConfigError where an artifact's output (``dims``, batch first; None where not fixed) fixes another number of
    scores per image than the dataset's ``classes`` (a model trained for another label set): it was measured, then
    failed on its first batch. Singleton dims do not count ((N, C, 1, 1) scores are read as N x C)."""
    per_image = [d for d in dims[1:] if d is not None]
    if len(per_image) < len(dims[1:]) or not per_image or math.prod(per_image) == classes:
        return
    shown = "x".join("?" if d is None else str(d) for d in dims)
    raise ConfigError(f"{path}: its output is {shown}, {math.prod(per_image)} scores per image, and the dataset has "
                      f"{classes} classes: give the model made for this dataset's classes (or the dataset it was "
                      "made for)")


def _check_tflite(path: Path, input_shape: tuple[int, ...], classes: int) -> None:
    """A TFLite artifact has one input taking the experiment's images (NCHW or NHWC, as the LiteRT backend feeds
    them) and one output; ConfigError naming the file otherwise (a second output would be scored as logits or not,
    by its order). Unchecked where the LiteRT interpreter is not installed (its target is then not run)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return
    try:
        interpreter = Interpreter(model_path=str(path))
    except Exception as exc:
        raise ConfigError(f"{path}: not a TFLite model LiteRT can read ({first_line(exc)})") from None
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ConfigError(f"{path}: has {len(inputs)} inputs and {len(outputs)} outputs; edgebench feeds one batch of "
                          "images and scores one output of class scores: convert the model with its logits alone")
    dims = tuple(int(d) for d in inputs[0]["shape"][1:])
    nhwc = (*input_shape[1:], input_shape[0]) if len(input_shape) == 3 else input_shape
    if dims not in (tuple(input_shape), tuple(nhwc)):
        raise ConfigError(f"{path}: its input is Nx{'x'.join(map(str, dims))}, the experiment's images are "
                          f"Nx{'x'.join(map(str, input_shape))} (NCHW, or NHWC for LiteRT)")
    check_class_scores(path, [int(d) for d in outputs[0]["shape"]], classes)


def _check_openvino_ir(path: Path, input_shape: tuple[int, ...], classes: int) -> None:
    """An OpenVINO IR has one input taking the experiment's images (NCHW or NHWC) and one output; ConfigError naming
    the file otherwise. Unchecked where OpenVINO is not installed (its target is then not run)."""
    from edgebench.runtimes.openvino.ir import partial_dims, read_ir

    model = read_ir(path)
    if model is None:
        return
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ConfigError(f"{path}: has {len(model.inputs)} inputs and {len(model.outputs)} outputs; edgebench feeds "
                          "one batch of images and scores one output of class scores")
    dims = partial_dims(model.input(0).get_partial_shape())
    if not (fits(dims[1:], input_shape) or channels_last(dims[1:], input_shape)):
        shown = "x".join("?" if d is None else str(d) for d in dims)
        raise ConfigError(f"{path}: its input is {shown}, the experiment's images are "
                          f"Nx{'x'.join(map(str, input_shape))} (NCHW, or NHWC)")
    check_class_scores(path, partial_dims(model.output(0).get_partial_shape()), classes)


def onnx_image_io(path: Path) -> tuple[str, list[int | None], list[int | None]]:
    """The name and dims (None where symbolic) of an ONNX model's one input, and its output's dims; ConfigError for
    an unreadable file or a model with more or fewer inputs than one batch of images, or more outputs than one
    (which to score?)."""
    import onnx

    try:
        graph = onnx.load(path, load_external_data=False).graph
    except Exception as exc:
        raise ConfigError(f"{path}: not an ONNX model onnx can read ({first_line(exc)}); {REEXPORT_HINT}") from None
    if not graph.node:  # onnx reads an empty file as an empty model, which would be blamed for its 0 inputs
        raise ConfigError(f"{path}: holds no ONNX graph (an empty or cut-off file?); export the model again")
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ConfigError(f"{path}: has {len(inputs)} inputs; edgebench feeds one batch of images")
    if len(graph.output) != 1:
        names = ", ".join(o.name for o in graph.output)
        raise ConfigError(f"{path}: has {len(graph.output)} outputs ({names}); edgebench scores one output of "
                          "class scores: export the model with its logits alone")
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    given, made = inputs[0].type.tensor_type.elem_type, graph.output[0].type.tensor_type.elem_type
    if given and given not in floats:  # 0: undeclared, as some tools write it; the runtime then decides
        raise ConfigError(f"{path}: its input '{inputs[0].name}' takes {onnx.TensorProto.DataType.Name(given).lower()} "
                          "(raw pixels, preprocessed inside the graph?); edgebench feeds float images (preprocessed as "
                          "dataset.preprocess declares; bench: as --data holds them): export the graph from after its "
                          "preprocessing")
    if made and made not in (*floats, onnx.TensorProto.DOUBLE):
        raise ConfigError(f"{path}: its output '{graph.output[0].name}' is {onnx.TensorProto.DataType.Name(made).lower()}"
                          " (class ids?); edgebench scores one row of class scores per image: export the logits")
    def dims(value: Any) -> list[int | None]:
        return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]

    return inputs[0].name, dims(inputs[0]), dims(graph.output[0])


def import_artifact(spec: VariantSpec, destination: Path) -> Path:
    """Copy the user's file into the run's artifact cache (in a worker), under a temporary name then renamed, with
    its digest beside a file copy (so a copy damaged in the cache is not ready, and is imported again); an error if
    the file changed since the experiment was read (its content is the variant's identity). An ONNX model's external
    data is written into the copy: the cache holds one self-contained file per artifact."""
    from edgebench.cache_files import COMPLETE_MARKER, replacing, write_digest

    external = spec.external
    assert external is not None and external.path is not None
    source = Path(external.path)
    data = external_data_files(source)
    with replacing(destination) as tmp:
        if external.format == "openvino":  # a directory artifact: the IR's two files under fixed names
            from edgebench.runtimes.openvino.ir import IR_BIN, IR_XML

            tmp.mkdir()
            shutil.copyfile(source, tmp / IR_XML)
            shutil.copyfile(data[0], tmp / IR_BIN)
            (tmp / COMPLETE_MARKER).touch()
        elif data:
            import onnx

            model = onnx.load(source)  # reads the weights from beside the source file
            if model.ByteSize() >= 2**31:
                raise ConfigError(f"{source}: its graph and weights exceed ONNX's 2 GB single file; edgebench measures "
                                  "models that fit one file")
            onnx.save_model(model, tmp)
        else:
            shutil.copyfile(source, tmp)
        if artifact_digest(source, data) != external.digest:
            raise ConfigError(f"{external.path} changed while the run was planned; run the experiment again")
        if destination.is_dir():  # an earlier copy the run did not finish (no marker): replaced whole
            shutil.rmtree(destination)
    if not destination.is_dir():
        write_digest(destination)
    return destination


def as_given(error: str, cached: Path, external: ExternalSpec) -> str:
    """A failed job's ``error`` about an external artifact's cached copy, naming the user's file instead, and what
    to do with a file another tool made (the hint to delete it from the cache, for edgebench to export it again,
    does not apply)."""
    if external.path is not None:
        error = error.replace(str(cached.resolve()), external.path).replace(str(cached), external.path)
    hint = error.find(f"({REEXPORT_HINT[:12]}")  # whole, or cut short by the worker's one-line summary
    if hint >= 0:
        error = f"{error[:hint].rstrip()} (another tool made it: measure it on a target whose runtime runs it, or " \
                "have that tool write one this runtime loads)"
    return error


def external_facts(spec: VariantSpec, input_shape: tuple[int, ...]) -> dict[str, object]:
    """What is stored for an external artifact: where it came from, its hash, and its parameters and MACs counted
    from its graph for one image of ``input_shape`` (None where they cannot be counted; logged, never fatal)."""
    external = spec.external
    assert external is not None
    facts: dict[str, object] = {"origin": f"external:{external.label}", "sha256": external.digest,
                                "source_path": external.path}
    try:
        facts.update(graph_cost(Path(external.path or ""), external.format, input_shape))
    except Exception as exc:  # a graph another tool wrote may hold what the counter cannot read
        log.warning("%s: parameters and MACs not counted (%s)", external.path, first_line(exc))
    return facts
