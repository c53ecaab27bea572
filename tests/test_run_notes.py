"""Run notes read from the stored measurements alone: which artifacts lost the model's function."""

from __future__ import annotations

import pandas as pd

from edgebench.report.run_notes import run_notes
from edgebench.store import Store


def _measurements(store: Store, run_id: str, rows: list[tuple[str, str, str, float, float]]) -> pd.DataFrame:
    """A stored run's first ok measurements with (kind, label, backend, accuracy, n_eval) set per row."""
    df = store.measurements(run_id)
    df = df[df["status"] == "ok"].head(len(rows)).copy()
    for column, values in zip(("kind", "label", "backend", "accuracy", "n_eval"), zip(*rows)):
        df[column] = list(values)
    return df


def test_an_artifact_at_chance_beside_a_baseline_that_learned_is_named(filled_store: tuple[Store, str]) -> None:
    """The hls4ml firmware that misread a reshape scored 0.275 of 4 classes where ONNX Runtime scored 0.755, and was
    stored "ok" without a word. The bars, by hand from the test split's most common class (0.25): on 200 images
    0.25 + 2 * sqrt(0.25 * 0.75 / 200) = 0.3112, on 100 images 0.25 + 2 * sqrt(0.25 * 0.75 / 100) = 0.3366."""
    df = _measurements(*filled_store, [("baseline", "baseline/fp32", "onnxruntime", 0.755, 200),
                                       ("baseline", "baseline/fp32", "hls4ml", 0.275, 200),  # under 0.3112: lost
                                       ("structured", "l1-0.9/int8", "onnxruntime", 0.32, 200),  # above 0.3112
                                       ("structured", "l1-0.9/fp32", "onnxruntime", 0.33, 100)])  # under 0.3366: lost
    notes = [str(n) for n in run_notes(df, {"majority_class_rate": 0.25})]
    lost = [n for n in notes if n.startswith("lost: ")]
    assert lost == ["lost: 2 measurements score no better than always answering the test split's most common class "
                    "(0.250) where the baseline scored 0.755: baseline/fp32 on local-cpu/hls4ml (0.275); l1-0.9/fp32 on "
                    "local-cpu/onnxruntime (0.330). These artifacts do not compute the model any more (a type too narrow, "
                    "pruned past recovery, or a conversion error): their latency and size are not those of a working "
                    "model"]


def test_no_artifact_is_called_lost_where_the_baseline_never_learned_or_the_chance_level_is_unknown(
        filled_store: tuple[Store, str]) -> None:
    at_chance = _measurements(*filled_store, [("baseline", "baseline/fp32", "onnxruntime", 0.30, 200),
                               ("structured", "l1-0.5/fp32", "onnxruntime", 0.26, 200)])
    notes = [str(n) for n in run_notes(at_chance, {"majority_class_rate": 0.25})]
    labels = [n.split(":")[0] for n in notes]
    assert "chance" in labels and "lost" not in labels  # the baseline's own note says it, not one per variant
    learned = _measurements(*filled_store, [("baseline", "baseline/fp32", "onnxruntime", 0.755, 200),
                             ("structured", "l1-0.5/fp32", "onnxruntime", 0.26, 200)])
    assert "lost" in [n.label for n in run_notes(learned, {"majority_class_rate": 0.25})]
    assert "lost" not in [n.label for n in run_notes(learned, None)]  # stored before the chance level was recorded


def test_nan_outputs_are_the_overflow_notes_not_a_model_that_never_learned(filled_store: tuple[Store, str]) -> None:
    """A plug-in runtime that returned NaN for every image scored 0.000, and the note said the baseline had not
    learned and to train longer, where ONNX Runtime would have scored 0.975: its overflow note says what happened."""
    df = _measurements(*filled_store, [("baseline", "baseline/fp32", "team_nan", 0.0, 120),
                                       ("structured", "l1-0.5/fp32", "team_nan", 0.0, 120)])
    df["details"] = [{"non_finite_outputs": 120}, {"non_finite_outputs": 120}]
    labels = [note.label for note in run_notes(df, {"majority_class_rate": 0.34})]
    assert labels.count("overflow") == 2 and "chance" not in labels and "lost" not in labels
    df["details"] = [{}, {"non_finite_outputs": 120}]  # the baseline finite and at chance: it did not learn
    assert "chance" in [note.label for note in run_notes(df, {"majority_class_rate": 0.34})]


def test_another_tools_file_off_its_fine_tuned_parent_is_not_called_a_conversion_error(
        filled_store: tuple[Store, str]) -> None:
    """The team's ONNX file of its own weights (1.4e-6 from them) was 0.673 off the parent, which the run had
    fine-tuned for an epoch, and the note said the runtime ran another function and its accuracy and latency were
    not the model's. Another tool's file is said to differ from its parent, with both causes; edgebench's own
    export 0.673 off is still a conversion error (0.673 > 0.01 x 3.76 = 0.0376)."""
    df = _measurements(*filled_store, [("external", "external:team-onnx/fp32", "onnxruntime", 0.9, 360),
                                       ("baseline", "baseline/fp32", "onnxruntime", 0.9, 360)])
    df["precision"], df["max_abs_diff"] = "fp32", 0.673
    df["details"] = [{"reference_max_abs": 3.76}, {"reference_max_abs": 3.76}]
    notes = {note.label: note.text for note in run_notes(df, None)}
    assert notes["not the parent"].startswith(
        "1 float artifacts made by other tools compute other outputs than their parent variant's PyTorch model "
        "(external:team-onnx/fp32 on local-cpu/onnxruntime: 0.673 off logits up to 3.76): expected where the file was "
        "made from other weights than the parent (before this run's fine-tuning, training.epochs")
    assert notes["not the model"].startswith("1 float measurements' outputs differ from their PyTorch model's by more "
                                             "than rounding explains (baseline/fp32 on local-cpu/onnxruntime: 0.673")
