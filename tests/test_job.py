"""The job/result contract's JSON: typed fields inside ``details``, so controllers and device workers of different
versions read each other's results, and stored rows keep one shape."""

from __future__ import annotations

import json

from edgebench.job import EnergyWindow, JobResult, Placement

#: JobResult's top-level JSON keys before its typed fields existed: a controller of that version reads results
#: with extra="forbid", so a newer device worker must write no other key
FIELDS_BEFORE_TYPED = {
    "job_id", "status", "error", "error_detail", "accuracy", "n_eval", "max_abs_diff", "load_ms", "first_inference_ms",
    "latency_ms", "throughput_ips", "samples_ns", "batch_size", "peak_rss_mb", "energy_j_per_inference", "energy_source",
    "energy_note", "idle_power_w", "runtime", "details",
}


def _typed() -> JobResult:
    return JobResult(job_id="j", status="ok", details={"engine_build_s": 2.5}, device={"cpu_model": "AMD EPYC"},
                     timed_window_s=1.25, energy_window=EnergyWindow(seconds=0.5, inferences=40),
                     ran_on=Placement(executor="ray", host="10.0.0.2", node="ab12cd34", pid=77))


def test_typed_fields_travel_inside_details_and_come_back_typed() -> None:
    result = _typed()
    data = json.loads(result.model_dump_json())
    assert set(data) == FIELDS_BEFORE_TYPED  # an older controller reads it
    assert data["details"] == {"engine_build_s": 2.5, "device": {"cpu_model": "AMD EPYC"}, "timed_window_s": 1.25,
                               "energy_window": {"seconds": 0.5, "inferences": 40},
                               "ran_on": {"executor": "ray", "host": "10.0.0.2", "node": "ab12cd34", "pid": 77}}
    back = JobResult.model_validate_json(result.model_dump_json())
    assert back == result and back.details == {"engine_build_s": 2.5}


def test_a_result_written_by_an_older_worker_reads_into_the_typed_fields() -> None:
    old = {"job_id": "j", "status": "ok", "details": {"xnnpack_sparse_inference": True, "device": {"governor": "performance"},
                                                      "timed_window_s": 1.0, "energy_window": {"seconds": 2.0, "inferences": 9}}}
    result = JobResult.model_validate(old)
    assert result.device == {"governor": "performance"} and result.timed_window_s == 1.0
    assert result.energy_window == EnergyWindow(seconds=2.0, inferences=9) and result.ran_on is None
    assert result.details == {"xnnpack_sparse_inference": True}


def test_placement_names_the_machine_without_the_process() -> None:
    assert Placement(executor="local", host="box", pid=12).machine == "local box"
    assert str(Placement(executor="local", host="box", pid=12)) == "local box pid 12"
    assert Placement(executor="ray", host="10.0.0.2", node="ab12cd34", pid=7).machine == "ray 10.0.0.2 node ab12cd34"
    assert str(Placement(executor="ray", host="board:a")) == "ray board:a"
