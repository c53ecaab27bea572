"""What a plug-in backend hands back is checked before it is scored or stored: one job fails, never the run."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgebench.config import load_experiment
from edgebench.measure.worker import _checked_logits, _json_safe
from edgebench.pipeline import run_experiment
from edgebench.store import Store
from edgebench.store.record import MeasurementRecord


def test_details_become_json_the_store_holds() -> None:
    details = {"engine": object(), "gap": math.nan, "peak": math.inf, "nested": {"ok": 1, "bad": -math.inf},
               "shape": (1, 2)}
    safe = _json_safe(details)
    assert safe["gap"] is None and safe["peak"] is None and safe["nested"] == {"ok": 1, "bad": None}
    assert safe["engine"].startswith("<object object at") and safe["shape"] == [1, 2]
    assert _json_safe(None) == {} and _json_safe([1]) == {"details": [1]}


@pytest.mark.parametrize("logits", [np.zeros(16, np.int64), np.zeros((16, 10), np.int64), np.zeros((15, 10), np.float32)],
                         ids=["class-ids", "integer-scores", "rows-missing"])
def test_logits_that_are_not_one_row_of_float_scores_per_image_are_refused(logits: np.ndarray) -> None:
    """Class ids failed in numpy (AxisError); 3 scores for 10 classes were scored silently (0.095 for 0.31);
    integer logits were stored ok."""
    with pytest.raises(RuntimeError, match=r"backend flat returned .* for 16 images; expected float scores of shape "
                                           r"\(16, 10 or more classes\)"):
        _checked_logits(logits, 16, 10, "flat")
    assert _checked_logits(np.zeros((16, 12), np.float16), 16, 10, "wide").shape == (16, 12)
    # float scores of fewer classes than the labels: the labels may be another dataset's, and say so
    with pytest.raises(RuntimeError, match=r"labels in the data go up to 9, but backend flat gives 3 scores per image"):
        _checked_logits(np.zeros((16, 3), np.float32), 16, 10, "flat")
    # a fully convolutional classifier's (N, classes, 1, 1) scores (SqueezeNet's ONNX) are its rows of scores
    scores = np.random.default_rng(0).random((16, 10, 1, 1), np.float32)
    np.testing.assert_array_equal(_checked_logits(scores, 16, 10, "conv"), scores[:, :, 0, 0])
    with pytest.raises(RuntimeError, match=r"returned float32 \(16, 10, 2, 1\) for 16 images"):
        _checked_logits(np.zeros((16, 10, 2, 1), np.float32), 16, 10, "map")  # a score map, not one row per image


@pytest.mark.parametrize(("returned", "said"), [(None, "NoneType"), ("logits", "str"), (np.float32(1.0), "float32 ()"),
                                              (np.zeros((3, 10), np.float32), "float32 (3, 10)")])
def test_a_batch_output_that_is_no_row_per_image_names_the_backend(returned: object, said: str) -> None:
    """A plug-in's run() that forgot its return failed in numpy: "zero-dimensional arrays cannot be concatenated",
    naming neither the backend nor what it returned."""
    from edgebench.measure.worker import predict_all

    class Forgetful:
        forkable = False

        def run(self, x: np.ndarray) -> object:
            return returned

    with pytest.raises(RuntimeError, match=rf"backend none_rt returned {re.escape(said)} for 4 image\(s\); expected "
                                           r"float scores of shape \(4, classes\)"):
        predict_all(Forgetful(), np.zeros((8, 1, 2, 2), np.float32), 4, "none_rt")


def test_a_result_the_store_cannot_hold_fails_its_job_and_the_run_goes_on(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL refused a NaN in a result's JSON (DataError): the driver died at that job on every resume."""
    target = tmp_path / "ort.yaml"  # one backend: the store's refusal is the same whichever measured
    target.write_text(yaml.safe_dump({"backends": ["onnxruntime"]}))
    data = {"name": "guards", "training": {"epochs": 1}, "pruning": {"criteria": ["l1"], "ratios": [0.5]},
            "quantization": {"precisions": ["fp32"]}, "targets": [str(target)],
            "measurement": {"min_iters": 10, "min_time_s": 0.0, "warmup_iters": 1, "precision": None},
            "run": {"workdir": str(tmp_path / "runs")}, "report": {"dir": str(tmp_path / "report")}}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(data))
    refused: list[str] = []
    add = Store.add_measurement

    def refuse_the_first(store: Store, record: MeasurementRecord) -> None:
        if not refused and record.result.status == "ok":
            refused.append(record.job_key)
            raise ValueError('invalid input syntax for type json DETAIL: Token "NaN" is invalid')
        add(store, record)

    monkeypatch.setattr(Store, "add_measurement", refuse_the_first)
    outcome = run_experiment(load_experiment(tmp_path / "exp.yaml"), render=False)
    with Store.open(outcome.store_url) as store:
        rows = store.measurements(outcome.run_id).set_index("job_key")
    assert len(rows) == 2 and (rows["status"] == "ok").sum() == 1  # 2 variants: the other one stored after it
    failed = rows.loc[refused[0]]
    assert failed["status"] == "failed" and failed["error"].startswith("its result could not be stored: ValueError")
    assert len(outcome.failed) == 1


def test_numpy_values_in_details_stay_numbers() -> None:
    assert _json_safe({"mem_kb": np.int64(1234), "shape": np.array([1, 3]), "t": np.float32(0.5)}) == {
        "mem_kb": 1234, "shape": [1, 3], "t": 0.5}


def test_an_fp16_torch_module_with_an_op_the_cpu_has_no_half_kernel_for_says_where_fp16_is_measured(
        tmp_path: Path) -> None:
    """A LocalResponseNorm's avg_pool3d has no fp16 CPU kernel: the job failed with torch's bare
    'NotImplementedError: "avg_pool3d_out_frame" not implemented for 'Half''."""
    from torch import nn

    from edgebench.errors import ArtifactError
    from edgebench.runtimes.base import BackendSettings, get_backend, get_exporter
    from edgebench.variants import QuantSpec

    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.LocalResponseNorm(3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    half = get_exporter("torch").export(model, QuantSpec(precision="fp16"), x, tmp_path / "half.pt")
    session = get_backend("torch").load(half, BackendSettings())
    with pytest.raises(ArtifactError, match=r"PyTorch has no fp16 CPU kernel for an op of this model \(.*avg_pool3d.*"
                                            r"'Half'\); its fp16 is measured on ONNX Runtime, LiteRT or OpenVINO"):
        session.run(x)
    fp32 = get_exporter("torch").export(model, QuantSpec(precision="fp32"), x, tmp_path / "fp32.pt")
    assert get_backend("torch").load(fp32, BackendSettings()).run(x).shape == (2, 3)
