"""The typed record the store keeps for one measurement job (asv's result object).

Built from the worker's :class:`~edgebench.job.JobResult` and the planned job's identity in one
place; :meth:`Store.add_measurement` maps it onto the ``measurements`` and ``samples`` tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgebench.archive import ENCODING
from edgebench.job import CONFIDENCE, Job, JobResult

LATENCY_KEYS = ("p50", "p90", "p99", "mean", "std", "min", "max")


@dataclass(frozen=True)
class MeasurementRecord:
    """One job's result with what identifies it: run, job key, variant, target, backend and settings."""

    run_id: str
    job_key: str
    variant_id: str
    target: str
    backend: str
    result: JobResult
    settings: dict[str, Any] = field(default_factory=dict)
    #: the artifact on disk, and ZIP-compressed (what sparsity buys shows only there: zeros take their full
    #: width in a dense artifact)
    size_bytes: int | None = None
    compressed_bytes: int | None = None
    #: the job the worker ran (artifact, data, settings): what ``compare --remeasure`` runs again
    job: Job | None = None

    def row(self, created_at: str) -> dict[str, Any]:
        """The ``measurements`` row (raw samples go to their own table)."""
        r, s = self.result, self.settings
        return {
            "run_id": self.run_id,
            "job_key": self.job_key,
            "variant_id": self.variant_id,
            "target": self.target,
            "backend": self.backend,
            "settings": s,
            "threads": s.get("threads"),
            "batch_size": s.get("batch_size", r.batch_size),
            "scenario": s.get("scenario"),
            "settings_precision": s.get("precision"),
            "status": r.status,
            "error": r.error,
            "error_detail": r.error_detail,
            "accuracy": r.accuracy,
            "n_eval": r.n_eval,
            "max_abs_diff": r.max_abs_diff,
            "load_ms": r.load_ms,
            "first_inference_ms": r.first_inference_ms,
            **{f"{key}_ms": r.latency_ms.get(key) for key in LATENCY_KEYS},
            **self.interval_columns(),
            "throughput_ips": r.throughput_ips,
            "peak_rss_mb": r.peak_rss_mb,
            "size_bytes": self.size_bytes,
            "energy_j_per_inference": r.energy_j_per_inference,
            "energy_source": r.energy_source,
            "energy_note": r.energy_note,
            "idle_power_w": r.idle_power_w,
            "runtime": r.runtime,
            "details": self.details(),
            "created_at": created_at,
        }

    def details(self) -> dict[str, Any]:
        """The ``details`` JSON: the session's facts with the result's typed fields inside (JobResult's JSON
        shape) and the compressed artifact size."""
        details = self.result.model_dump(mode="json")["details"]
        if self.compressed_bytes is not None:
            details["artifact"] = {"compressed_bytes": self.compressed_bytes, "encoding": ENCODING}
        if self.job is not None:
            details["job"] = self.job.model_dump(mode="json")
        return details

    def interval_columns(self) -> dict[str, Any]:
        """``p50_low_ms`` ... ``p99_high_ms`` and ``ci_confidence`` (null when the result carries no interval)."""
        intervals = self.result.latency_ci_ms or {}
        columns: dict[str, Any] = {}
        for name in ("p50", "p90", "p99"):
            low, high = intervals.get(name, (None, None))
            columns[f"{name}_low_ms"], columns[f"{name}_high_ms"] = low, high
        window = self.result.window
        columns["ci_confidence"] = (window.confidence if window else CONFIDENCE) if intervals else None
        return columns
