"""The typed contract between tasks: what each step returns and each operator pushes to XCom.

Small JSON-serialisable dicts (URIs, ids, versions, metric dicts), never frames or models.
The DAG factory derives its XCom references from these types (``result_keys``), so a renamed
key fails the DAG-integrity tests, not a run.
"""

from __future__ import annotations

from typing import Any, TypedDict


def result_keys(result: type) -> frozenset[str]:
    """The keys a TypedDict result declares."""
    keys: frozenset[str] = result.__required_keys__ | result.__optional_keys__  # type: ignore[attr-defined]
    return keys


# --- train_<model> ------------------------------------------------------------------------------


class ResolveResult(TypedDict):
    """Which data a run uses (``resolve_data``/``resolve_batch``)."""

    manifest_uri: str
    batch_uri: str  # the newest batch of the manifest
    batches: int
    rows: int
    digest: str
    source: str  # "window" or "batch_uri"


class ValidateResult(TypedDict):
    """A batch set that passed its contract (a failure raises instead)."""

    success: bool
    contract: str
    batches: int
    rows: int
    expectations: int
    result_uri: str  # validation.json
    report_uri: str  # validation.html, the page people read


class TrainSkipped(TypedDict):
    """Training was not needed: the champion saw identical data with the same spec."""

    skipped: bool  # always True
    reason: str
    champion_version: str


class TrainResult(TypedDict):
    """A registered candidate, aliased ``challenger``."""

    skipped: bool  # always False
    created: bool  # False when an earlier try of the same Airflow run had registered it
    version: str
    mlflow_run_id: str
    experiment_id: str
    model_uri: str
    holdout_uri: str
    holdout_metrics: dict[str, float]
    train_seconds: float | None


class MeasurementResult(TypedDict):
    """One model measured on the holdout (``mlcycle.ml.gate.Measurement`` as a dict)."""

    version: str
    metrics: dict[str, float]
    latency_ms_per_1k_rows: float | None
    model_size_mb: float | None


class TrustedEvaluation(TypedDict):
    """Candidate and champion on the trusted evaluation set (``mlcycle.data.lake`` trusted
    section): which version of the set, how many of its rows were used (rows the candidate
    trained on are left out), the metrics of both, or why they were not measured."""

    version: int
    uri: str
    digest: str
    rows: int
    rows_used: int
    excluded_training_rows: int
    candidate: dict[str, float] | None
    champion: dict[str, float] | None
    skipped: str | None  # why the set could not be used; None when both were measured


class SliceResult(TypedDict):
    """The primary metric of candidate and champion on the holdout rows of one slice."""

    column: str
    value: str
    rows: int
    candidate: float | None  # None: the slice has too few rows, or the metric is undefined on it
    champion: float | None


class EvaluationResult(TypedDict):
    """Candidate and champion on the same holdout rows, with the paired bootstrap and the
    shadow comparison on the newest batch when a champion exists, and both on the trusted
    evaluation set when one exists (``trusted`` None otherwise)."""

    candidate: MeasurementResult
    champion: MeasurementResult | None
    confidence: dict[str, Any] | None
    shadow: dict[str, Any] | None
    holdout_rows: int
    trusted: TrustedEvaluation | None
    slices: list[SliceResult]
    class_rows: dict[str, int] | None  # multi-class: holdout rows of each class (None otherwise)


class GateResult(TypedDict):
    """A gate verdict: ``passed`` False is a refused candidate (``promote`` then refuses to act)."""

    passed: bool
    version: str
    champion_version: str | None
    bootstrap: bool
    summary: str
    verdict_uri: str
    report_uri: str
    overrides: dict[str, Any] | None  # the run's gate_overrides, if any (also in the summary)
    approval: dict[str, Any] | None  # the gate's approval policy (ApprovalSpec) for a passed candidate


class AliasCheck(TypedDict):
    """``@champion`` against the ledger (``flows.guard``): where each says it is, and what was done."""

    ok: bool
    registry: str | None  # the version @champion points at
    ledger: str | None  # the version the pipeline last put there
    detail: str
    action: str | None  # None (as recorded) | alert (recorded as external) | revert (moved back)


class ApprovalResult(TypedDict):
    """A person's answer to "promote this candidate?" (or why nobody was asked)."""

    required: bool
    approved: bool | None  # None: not asked (approval not required, or the gate refused)
    by: str | None  # who answered; None when nobody was asked or the wait timed out
    comment: str | None
    timed_out: bool
    responded_at: str | None
    detail: str


class PromoteResult(TypedDict):
    """An alias move, recorded in the ledger."""

    promoted: bool  # False when the alias already pointed there (a retry)
    version: str
    previous_version: str | None
    ledger_recorded: bool


# --- score_<model> ------------------------------------------------------------------------------


class ModelChoice(TypedDict):
    """The version that scores a batch, its engine, and the challenger in shadow."""

    version: str
    alias: str | None
    engine: str  # the model's runtime: "onnx" or "sklearn"
    engine_reason: str
    shadow_version: str | None
    shadow_engine: str | None
    batch_engine: str  # what drives the batch: "chunked" (built in) or "beam"


class PartitionSpec(TypedDict):
    """Rows ``start``..``stop`` (exclusive) of a batch: one mapped scoring task."""

    index: int
    start: int
    stop: int


class PartitionResult(TypedDict):
    """One scored partition (a part file, merged by ``finalize``)."""

    index: int
    part_uri: str
    shadow_uri: str | None
    rows: int
    seconds: float
    beam: BeamRunSummary | None  # the Beam engine's run (None for the built-in engine)


class BeamRunSummary(TypedDict):
    """A Beam scoring run, small enough for XCom: runner, row counts, where the details are."""

    runner: str
    rows_read: int
    rows_scored: int
    rows_failed: int
    dead_letter_uri: str
    metrics_uri: str
    batch_latency_ms: dict[str, float] | None  # count, mean, min, max of the per-batch latency


class ScoringReport(TypedDict):
    """A scored batch: where the predictions are, with which model and engine, the shadow summary."""

    model: str
    version: str
    alias: str | None
    shadow_version: str | None
    engine: str
    engine_reason: str
    shadow_engine: str | None
    batch_engine: str
    batch_uri: str
    output_uri: str
    rows: int
    partitions: int
    scoring_seconds: float
    rows_per_second: float | None
    shadow: dict[str, Any] | None
    beam: dict[str, Any] | None  # the Beam metrics, dead-letter count and URI (engine beam)
    run_id: str
    report_uri: str
    mlflow_run_id: str


class ScoringSummary(TypedDict):
    """What ``finalize`` pushes to XCom (the report's headline)."""

    output_uri: str
    rows: int
    rows_per_second: float | None
    version: str
    shadow_version: str | None
    engine: str
    batch_engine: str
    report_uri: str
    shadow: dict[str, Any] | None
    beam: BeamRunSummary | None


# --- monitor_<model> ----------------------------------------------------------------------------


class DriftCheckResult(TypedDict):
    """One monitoring check: drift, performance, the guarded decision, where the report is."""

    model: str
    champion_version: str
    window: list[str]
    rows: int
    drift: dict[str, Any]
    performance: dict[str, Any]
    decision: dict[str, Any]
    checked_at: str
    report_uri: str
    mlflow_run_id: str


class RetrainDecision(TypedDict):
    """What ``check_drift`` pushes to XCom: whether to ask for a retrain, and why (not)."""

    retrain: bool
    reason: str
    blocked_by: list[str]
    champion_version: str
    rows: int
    report_uri: str


class RetrainRequest(TypedDict):
    """The extra of the retrain asset event."""

    reason: str
    monitor_dag_id: str
    monitor_run_id: str
    report: str | None


class RollbackResult(TypedDict):
    """A rollback of ``champion``: where it was, where it is, and what was checked on the way."""

    version: str
    previous_version: str | None
    moved: bool  # False when a retry of the same run found the alias already moved
    ledger_recorded: bool
    forced: bool
    checks: list[str]  # what the target passed (gate, loading, ONNX parity), one line each
