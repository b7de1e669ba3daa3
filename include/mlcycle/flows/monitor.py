"""Drift monitoring: compare recent data with the champion's reference profile, decide
(with guardrails) whether to ask for a retrain, and keep the history.

The reference profile is written at training time and stored with the version
(MLflow artifact ``reference/profile.json``), so a check never re-reads training data.
Recent batches are streamed by chunks: memory grows with the chunk size, not the window.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import TYPE_CHECKING, Any

from mlcycle.core.errors import DataNotFoundError, RegistryError
from mlcycle.core.spec import ModelSpec, Task, encode_target
from mlcycle.data import lake as lk
from mlcycle.data.lake import RunFile
from mlcycle.monitor.profile import PREDICTION
from mlcycle.store import ledger, registry

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlcycle.core.results import DriftCheckResult
    from mlcycle.core.run import RunInfo

log = logging.getLogger(__name__)

CHUNK_ROWS = 100_000


# --- at monitoring time ---------------------------------------------------------------------------


def window_batches(lake: lk.Lake, days: int) -> tuple[list[lk.LakePath], lk.LakePath | None, bool]:
    """(the batches of the ``days`` days ending at the newest batch's date that passed
    validation, the newest batch, whether the newest batch is in quarantine).

    The window follows the data, not the calendar: a check compares the most recent data
    there is, and the min-new-rows guardrail keeps an old window from retraining twice."""
    quarantined = lake.quarantine_index()
    batches = lake.batches()
    if not batches:
        return [], None, False
    newest_day, newest = batches[-1]
    start = newest_day - dt.timedelta(days=days - 1)
    window = [p for day, p in batches if day >= start and not quarantined.find(p)]
    return window, newest, quarantined.find(newest) is not None


def _stream(
    spec: ModelSpec, model: Any, paths: list[lk.LakePath], profile: Any
) -> tuple[Any, dict[str, Any]]:
    """Feed the window chunk by chunk into the drift accumulator, with the champion's
    predictions as one more column; collect labels and scores for performance."""
    import numpy as np
    import pyarrow.parquet as pq

    from mlcycle.ml import evaluation as ev
    from mlcycle.ml.scoring import iter_chunks
    from mlcycle.monitor.window import Accumulator

    acc = Accumulator(profile)
    ys, ss, all_scores = [], [], []
    rows = 0
    for path in paths:
        with path.open("rb") as fh:
            names = set(pq.ParquetFile(fh).schema_arrow.names)
            fh.seek(0)
            cols = [*spec.features.all, *([spec.data.target] if spec.data.target in names else [])]
            for table in iter_chunks(fh, cols, CHUNK_ROWS):
                chunk = table.to_pandas()
                s = ev.scores(model, chunk[spec.features.all], spec.task)
                frame = chunk[spec.features.all].copy()
                frame[PREDICTION] = s
                acc.update(frame)
                all_scores.append(s.astype("float32"))
                if spec.data.target in chunk.columns:
                    y = encode_target(spec, chunk[spec.data.target])
                    labelled = y.notna().to_numpy()
                    ys.append(y.to_numpy()[labelled])
                    ss.append(s[labelled])
                rows += len(chunk)
    scores = np.concatenate(all_scores) if all_scores else np.asarray([], dtype="float32")
    labels = {"y": np.concatenate(ys) if ys else None, "s": np.concatenate(ss) if ss else None}
    return acc.result(), {"rows": rows, "scores": scores, **labels}


def performance(spec: ModelSpec, profile: dict[str, Any], streamed: dict[str, Any]) -> dict[str, Any]:
    """Measured performance where labels exist; for classifiers, the confidence-based estimate."""
    from mlcycle.core.spec import METRICS, Direction
    from mlcycle.ml import evaluation as ev
    from mlcycle.monitor import estimates

    primary = spec.gate.primary_metric
    ref = profile.get("reference_performance", {})
    out: dict[str, Any] = {"primary_metric": primary, "reference": ref.get("metrics", {}).get(primary)}
    limit = spec.monitor.max_performance_drop
    sign = 1.0 if METRICS[primary][1] is Direction.HIGHER else -1.0
    if streamed["y"] is not None and len(streamed["y"]) >= spec.monitor.min_rows:
        current = ev.metric_value(primary, streamed["y"], streamed["s"])
        out["current"] = current
        out["labelled_rows"] = len(streamed["y"])
        if out["reference"] is not None and limit is not None:
            out["drop"] = sign * (out["reference"] - current)
            out["degraded"] = out["drop"] > limit
    if spec.task is Task.CLASSIFICATION and len(streamed["scores"]):
        est = estimates.cbpe_roc_auc(streamed["scores"])
        out["cbpe_roc_auc"] = est
        ref_est = ref.get("cbpe_roc_auc")
        if ref_est is not None and limit is not None:
            out["cbpe_drop"] = ref_est - est
            out["cbpe_degraded"] = out["cbpe_drop"] > limit
    return out


def gather_facts(
    spec: ModelSpec,
    mlc: Any,
    lake: lk.Lake,
    *,
    now: dt.datetime,
    drift_detected: bool,
    summary: str,
    newest: lk.LakePath | None,
    newest_failed: bool,
    ledger_uri: str | None,
) -> Any:
    """The guardrails' inputs: when the last training was, validated rows since, retrains asked in 7 days."""
    from mlcycle.monitor.guardrails import Facts

    versions = mlc.search_model_versions(f"name = '{spec.name}'")
    latest = max(versions, key=lambda v: int(v.creation_timestamp), default=None)
    last_training = (
        dt.datetime.fromtimestamp(int(latest.creation_timestamp) / 1000, tz=dt.UTC) if latest else None
    )
    # New rows: batches after the newest one the last training saw (by file date), validated.
    seen = latest.tags.get(registry.TAG_LAST_BATCH) if latest else None
    since_day = (
        dt.date.fromisoformat(seen) if seen else (last_training.date() if last_training else dt.date.min)
    )
    quarantined = lake.quarantine_index()
    new_paths = [p for day, p in lake.batches() if day > since_day and not quarantined.find(p)]
    requested = ledger.decisions(
        spec.name, since=now - dt.timedelta(days=7), requested_only=True, uri=ledger_uri
    )
    return Facts(
        now=now,
        drift_detected=drift_detected,
        drift_summary=summary,
        last_training=last_training,
        new_rows=lk.count_rows(new_paths) if new_paths else 0,
        retrains_last_week=len(requested),
        newest_batch_failed_validation=newest_failed,
        newest_batch=newest.name if newest is not None else None,
    )


def check(
    spec: ModelSpec,
    run: RunInfo,
    mlc: MlflowClient,
    *,
    lake_root: str,
    now: dt.datetime | None = None,
    ledger_uri: str | None = None,
) -> DriftCheckResult:
    """One monitoring check: drift, performance, guardrails, decision, history."""
    from mlcycle.monitor import guardrails
    from mlcycle.monitor.profile import Profile
    from mlcycle.monitor.verdict import assess
    from mlcycle.reports import pages

    now = now or dt.datetime.now(dt.UTC)
    champion = registry.version_by_alias(mlc, spec.name, registry.CHAMPION)
    if champion is None:
        raise RegistryError(f"{spec.name}@champion is not set: nothing to monitor yet; train a model first")
    profile_dict = registry.load_profile(mlc, champion)
    profile = Profile.from_dict(profile_dict)
    lake = lk.Lake(lake_root, spec.name)
    window, newest, newest_failed = window_batches(lake, spec.monitor.window_days)
    if not lake.batches():
        raise DataNotFoundError(f"no batch of {spec.name} in {lake.incoming}: nothing to monitor")
    if window:
        model = registry.load_sklearn(mlc, spec.name, str(champion.version))
        current, streamed = _stream(spec, model, window, profile)
        overrides = {f: o.model_dump() for f, o in spec.monitor.overrides.items()}
        report = assess(
            profile,
            current,
            overrides=overrides,
            drift_share_threshold=spec.monitor.drift_share_threshold,
            min_rows=spec.monitor.min_rows,
        )
        perf = performance(spec, profile_dict, streamed)
        degraded = bool(perf.get("degraded") or perf.get("cbpe_degraded"))
        summary = report.summary() + (f"; performance dropped ({_perf_text(perf)})" if degraded else "")
        drift_found, drift_dict, rows = report.dataset_drift or degraded, report.to_dict(), streamed["rows"]
    else:  # e.g. the only recent batch failed validation: record why nothing is decided
        summary = f"no validated batch in the last {spec.monitor.window_days} day(s): drift not measured"
        drift_found, drift_dict, rows, perf = False, {"summary": summary, "features": []}, 0, {}
    facts = gather_facts(
        spec,
        mlc,
        lake,
        now=now,
        drift_detected=drift_found,
        summary=summary,
        newest=newest,
        newest_failed=newest_failed,
        ledger_uri=ledger_uri,
    )
    decision = guardrails.decide(facts, spec.monitor)
    recorded = ledger.record_decision(
        ledger.RetrainDecision(
            model=spec.name,
            requested=decision.retrain,
            reason=decision.reason,
            checks=json.dumps([c.__dict__ for c in decision.checks]),
            dag_id=run.dag_id,
            run_id=run.run_id,
        ),
        ledger_uri,
    )
    result: dict[str, Any] = {
        "model": spec.name,
        "champion_version": str(champion.version),
        "window": [p.name for p in window],
        "rows": rows,
        "drift": drift_dict,
        "performance": perf,
        "decision": {**decision.to_dict(), "retrain": recorded.requested, "reason": recorded.reason},
        "checked_at": now.isoformat(timespec="seconds"),
    }
    page = pages.drift_page(result)
    html_path = lake.run_file(run.key, RunFile.DRIFT)
    lk.write_json(result, lake.run_file(run.key, RunFile.DRIFT_JSON))
    lk.write_bytes_atomic(html_path, page.encode())
    result["report_uri"] = lk.uri_of(html_path)
    result["mlflow_run_id"] = _log_to_mlflow(spec, run, result, page, mlc)
    return result  # type: ignore[return-value]


def _perf_text(perf: dict[str, Any]) -> str:
    parts = []
    if "current" in perf:
        parts.append(
            f"{perf['primary_metric']} {perf['current']:.4f} vs {perf['reference']:.4f} on the holdout"
        )
    if "cbpe_roc_auc" in perf:
        parts.append(f"estimated roc_auc {perf['cbpe_roc_auc']:.4f}")
    return ", ".join(parts)


def open_run(mlc: MlflowClient, spec: ModelSpec, run: RunInfo) -> tuple[str, str]:
    """The MLflow run in ``<model>-monitoring`` that records this Airflow run: (experiment id, run
    id), found again on a retry. Opened before the work, so its link works even on a failure."""
    return registry.run_for_airflow_run(mlc, f"{spec.name}-monitoring", run, "monitor")


def _log_to_mlflow(
    spec: ModelSpec, run: RunInfo, result: dict[str, Any], page: str, mlc: MlflowClient
) -> str:
    """One MLflow run per check in ``<model>-monitoring``, so the UI charts each feature over time."""
    _, run_id = open_run(mlc, spec, run)
    mlc.set_tag(run_id, "model.version", result["champion_version"])
    metrics: dict[str, float] = {"rows": float(result["rows"])}
    drift_report = result["drift"]
    for feat in all_features(drift_report):
        for res in feat.get("results", []):
            if isinstance(res.get("value"), int | float):
                metrics[f"{res['statistic']}_{feat['feature'].strip('_')}"] = float(res["value"])
    if isinstance(drift_report.get("share"), int | float):
        metrics["drift_share"] = float(drift_report["share"])
    for key in ("current", "drop", "cbpe_roc_auc", "cbpe_drop"):
        if isinstance(result["performance"].get(key), int | float):
            metrics[f"performance_{key}"] = float(result["performance"][key])
    metrics["retrain_requested"] = 1.0 if result["decision"]["retrain"] else 0.0
    registry.log_metrics(mlc, run_id, metrics)
    mlc.log_dict(run_id, result, "monitoring/drift.json")
    mlc.log_text(run_id, page, "monitoring/drift.html")
    mlc.set_tag(run_id, "decision", result["decision"]["reason"][:5000])
    mlc.set_terminated(run_id)
    return run_id


def all_features(drift_report: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-feature results of a drift report, the prediction last."""
    prediction = [drift_report["prediction"]] if drift_report.get("prediction") else []
    return [*drift_report.get("features", []), *prediction]
