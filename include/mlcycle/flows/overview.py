"""One model at a glance: what the model page shows, gathered from the registry, the
monitoring runs and the ledger.

``model_overview`` reads only (it never moves an alias). It also compares the registry's
``@champion`` with the ledger's last champion move (``flows.guard.alias_check``): a difference
means someone moved the alias outside the pipeline, and the page shows it red.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from mlcycle.flows.guard import alias_check
from mlcycle.store import ledger, registry

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlcycle.core.spec import ModelSpec

MAX_VERSIONS = 50  # newest first; older ones are in MLflow
MAX_CHECKS = 100  # monitoring checks, newest kept
# Metrics of a monitoring run the page plots: drift share, the primary metric measured on
# labelled rows and estimated without labels (flows.monitor._log_to_mlflow names them).
MONITOR_SERIES = ("drift_share", "performance_realized", "performance_estimated")


def _when(millis: int | None) -> str | None:
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC).isoformat(timespec="seconds") if millis else None


def _versions(mlc: MlflowClient, spec: ModelSpec) -> list[dict[str, Any]]:
    newest = mlc.search_model_versions(
        f"name = '{spec.name}'", max_results=MAX_VERSIONS, order_by=["version_number DESC"]
    )
    metric = f"holdout_{spec.gate.primary_metric}"
    rows = []
    for mv in newest:
        tags = dict(mv.tags or {})
        metrics = mlc.get_run(mv.run_id).data.metrics if mv.run_id else {}
        rows.append(
            {
                "version": str(mv.version),
                "created_at": _when(mv.creation_timestamp),
                "aliases": sorted(mv.aliases or []),
                "verdict": tags.get(registry.TAG_VERDICT),  # pass | fail | None (no gate yet)
                "summary": tags.get(registry.TAG_VERDICT_SUMMARY),
                "evidence_uri": tags.get(registry.TAG_EVIDENCE),
                "onnx": tags.get(registry.TAG_ONNX),
                "superseded_by": tags.get(registry.TAG_SUPERSEDED_BY),
                "dag_id": tags.get(registry.TAG_DAG_ID),
                "run_id": tags.get(registry.TAG_RUN_ID),
                "mlflow_run_id": mv.run_id,
                "trigger": tags.get(registry.TAG_TRIGGER),
                "metric": metrics.get(metric),
            }
        )
    return rows


def _checks(mlc: MlflowClient, spec: ModelSpec) -> list[dict[str, Any]]:
    """The monitoring checks, oldest first, with the series the page plots."""
    experiment = mlc.get_experiment_by_name(f"{spec.name}-monitoring")
    if experiment is None:
        return []
    runs = mlc.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=MAX_CHECKS
    )
    return [
        {
            "checked_at": _when(r.info.start_time),
            "champion_version": r.data.tags.get("model.version"),
            "decision": r.data.tags.get("decision"),
            "retrain": r.data.metrics.get("retrain_requested") == 1.0,
            "rows": r.data.metrics.get("rows"),
            "dag_id": r.data.tags.get(registry.TAG_DAG_ID),
            "run_id": r.data.tags.get(registry.TAG_RUN_ID),
            **{key: r.data.metrics.get(key) for key in MONITOR_SERIES},
        }
        for r in reversed(runs)
        if r.info.status == "FINISHED"
    ]


def model_overview(spec: ModelSpec, mlc: MlflowClient, *, ledger_uri: str | None = None) -> dict[str, Any]:
    """Champion and challenger, the versions with their verdicts and primary metric, the
    monitoring history, the ledger, and whether ``@champion`` is where the ledger says."""
    champion = registry.version_by_alias(mlc, spec.name, registry.CHAMPION)
    challenger = registry.version_by_alias(mlc, spec.name, registry.CHALLENGER)
    entries = ledger.history(spec.name, ledger_uri)
    champion_version = str(champion.version) if champion else None
    return {
        "model": spec.name,
        "task": spec.task.value,
        "description": spec.description,
        "primary_metric": spec.gate.primary_metric,
        "champion": champion_version,
        "challenger": str(challenger.version) if challenger else None,
        "alias_check": alias_check(champion_version, entries),
        "versions": _versions(mlc, spec),
        "checks": _checks(mlc, spec),
        "ledger": [e.to_dict() for e in entries],
    }
