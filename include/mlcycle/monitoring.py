"""Drift monitoring: compare recent data with the champion's reference profile, decide
(with guardrails) whether to ask for a retrain, and keep the history.

The reference profile is written at training time and stored with the version
(MLflow artifact ``reference/profile.json``), so a check never re-reads training data.
Recent batches are streamed by chunks: memory grows with the chunk size, not the window.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
from typing import TYPE_CHECKING, Any

from mlcycle import lake as lk
from mlcycle import ledger, registry
from mlcycle.drift import PREDICTION
from mlcycle.errors import DataNotFoundError, RegistryError
from mlcycle.spec import ModelSpec, Task

if TYPE_CHECKING:
    import pandas as pd

    from mlcycle.steps import RunInfo

log = logging.getLogger(__name__)

PROFILE_ARTIFACT = "reference/profile.json"
CHUNK_ROWS = 100_000


# --- at training time -----------------------------------------------------------------------------


def reference_profile(
    spec: ModelSpec, pipeline: Any, train: pd.DataFrame, holdout: pd.DataFrame
) -> dict[str, Any]:
    """Profile of the training data, the holdout's prediction distribution, the model's
    feature importance and its reference performance (measured and, for classifiers, the
    confidence-based estimate) — everything a later check compares against."""
    import numpy as np

    from mlcycle import drift
    from mlcycle import evaluation as ev

    X_hold = holdout[spec.features.all]
    scores = ev.scores(pipeline, X_hold, spec.task)
    profile = drift.build_profile(
        train,
        spec.features.numeric,
        spec.features.categorical,
        prediction=scores,
        importance=feature_importance(spec, pipeline, holdout),
    ).to_dict()
    y = holdout[spec.data.target].to_numpy()
    reference = {"metrics": ev.all_metrics(spec.task, y, scores)}
    if spec.task is Task.CLASSIFICATION:
        reference["cbpe_accuracy"] = drift.cbpe_accuracy(np.asarray(scores))
        reference["cbpe_roc_auc"] = drift.cbpe_roc_auc(np.asarray(scores))
    profile["reference_performance"] = reference
    return profile


def feature_importance(
    spec: ModelSpec, pipeline: Any, holdout: pd.DataFrame, max_rows: int = 2000
) -> dict[str, float]:
    """Permutation importance on (a sample of) the holdout, clipped at 0 and normalised."""
    from sklearn.inspection import permutation_importance

    sample = (
        holdout.sample(min(len(holdout), max_rows), random_state=0) if len(holdout) > max_rows else holdout
    )
    scoring = "roc_auc" if spec.task is Task.CLASSIFICATION else "neg_root_mean_squared_error"
    result = permutation_importance(
        pipeline,
        sample[spec.features.all],
        sample[spec.data.target],
        scoring=scoring,
        n_repeats=3,
        random_state=0,
    )
    raw = {f: max(float(v), 0.0) for f, v in zip(spec.features.all, result.importances_mean, strict=True)}
    total = sum(raw.values())
    return {f: (v / total if total else 1.0 / len(raw)) for f, v in raw.items()}


# --- at monitoring time ---------------------------------------------------------------------------


def load_profile(mlc: Any, model_version: Any) -> dict[str, Any]:
    import mlflow.artifacts

    try:
        return mlflow.artifacts.load_dict(f"runs:/{model_version.run_id}/{PROFILE_ARTIFACT}")
    except Exception as exc:
        raise RegistryError(
            f"{model_version.name} v{model_version.version} has no reference profile ({PROFILE_ARTIFACT}); "
            "it was trained before profiles existed: retrain it (trigger the train DAG with force=true)"
        ) from exc


def window_batches(lake: lk.Lake, days: int) -> tuple[list[lk.LakePath], lk.LakePath | None, bool]:
    """(the batches of the ``days`` days ending at the newest batch's date that passed
    validation, the newest batch, whether the newest batch is in quarantine).

    The window follows the data, not the calendar: a check compares the most recent data
    there is, and the min-new-rows guardrail keeps an old window from retraining twice."""
    quarantined = lake.quarantined_names()
    batches = lake.batches()
    if not batches:
        return [], None, False
    newest_day, newest = batches[-1]
    start = newest_day - dt.timedelta(days=days - 1)
    window = [p for day, p in batches if day >= start and p.name not in quarantined]
    return window, newest, newest.name in quarantined


def _stream(
    spec: ModelSpec, model: Any, paths: list[lk.LakePath], profile: Any
) -> tuple[Any, dict[str, Any]]:
    """Feed the window chunk by chunk into the drift accumulator, with the champion's
    predictions as one more column; collect labels and scores for performance."""
    import numpy as np

    from mlcycle import drift
    from mlcycle import evaluation as ev
    from mlcycle.scoring import iter_chunks

    acc = drift.Accumulator(profile)
    ys, ss, all_scores = [], [], []
    rows = 0
    for path in paths:
        with path.open("rb") as fh:
            import pyarrow.parquet as pq

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
                    labelled = chunk[spec.data.target].notna().to_numpy()
                    ys.append(chunk[spec.data.target].to_numpy()[labelled])
                    ss.append(s[labelled])
                rows += len(chunk)
    scores = np.concatenate(all_scores) if all_scores else np.asarray([], dtype="float32")
    labels = {"y": np.concatenate(ys) if ys else None, "s": np.concatenate(ss) if ss else None}
    return acc.result(), {"rows": rows, "scores": scores, **labels}


def performance(spec: ModelSpec, profile: dict[str, Any], streamed: dict[str, Any]) -> dict[str, Any]:
    """Measured performance where labels exist; for classifiers, the confidence-based estimate."""
    from mlcycle import drift
    from mlcycle import evaluation as ev
    from mlcycle.spec import METRICS, Direction

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
        est = drift.cbpe_roc_auc(streamed["scores"])
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
    from mlcycle.guardrails import Facts

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
    quarantined = lake.quarantined_names()
    new_paths = [p for day, p in lake.batches() if day > since_day and p.name not in quarantined]
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
    *,
    lake_root: str,
    now: dt.datetime | None = None,
    tracking_uri: str | None = None,
    ledger_uri: str | None = None,
) -> dict[str, Any]:
    """One monitoring check: drift, performance, guardrails, decision, history."""
    from mlcycle import drift, guardrails

    now = now or dt.datetime.now(dt.UTC)
    mlc = registry.client(tracking_uri)
    champion = registry.version_by_alias(mlc, spec.name, registry.CHAMPION)
    if champion is None:
        raise RegistryError(f"{spec.name}@champion is not set: nothing to monitor yet; train a model first")
    profile_dict = load_profile(mlc, champion)
    profile = drift.Profile.from_dict(profile_dict)
    lake = lk.Lake(lake_root, spec.name)
    window, newest, newest_failed = window_batches(lake, spec.monitor.window_days)
    if not lake.batches():
        raise DataNotFoundError(f"no batch of {spec.name} in {lake.incoming}: nothing to monitor")
    if window:
        model = registry.load_sklearn(f"models:/{spec.name}/{champion.version}")
        current, streamed = _stream(spec, model, window, profile)
        overrides = {f: o.model_dump() for f, o in spec.monitor.overrides.items()}
        report = drift.assess(
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
    base = lake.run_dir(run.key)
    result = {
        "model": spec.name,
        "champion_version": str(champion.version),
        "window": [p.name for p in window],
        "rows": rows,
        "drift": drift_dict,
        "performance": perf,
        "decision": {**decision.to_dict(), "retrain": recorded.requested, "reason": recorded.reason},
        "checked_at": now.isoformat(timespec="seconds"),
    }
    lk.write_json(result, base / "drift.json")
    lk.write_bytes_atomic(base / "drift.html", render_report(result).encode())
    result["report_uri"] = lk.uri_of(base / "drift.html")
    result["mlflow_run_id"] = _log_to_mlflow(spec, run, result, mlc)
    return result


def _perf_text(perf: dict[str, Any]) -> str:
    parts = []
    if "current" in perf:
        parts.append(
            f"{perf['primary_metric']} {perf['current']:.4f} vs {perf['reference']:.4f} on the holdout"
        )
    if "cbpe_roc_auc" in perf:
        parts.append(f"estimated roc_auc {perf['cbpe_roc_auc']:.4f}")
    return ", ".join(parts)


def _log_to_mlflow(spec: ModelSpec, run: RunInfo, result: dict[str, Any], mlc: Any) -> str:
    """One MLflow run per check in ``<model>-monitoring``, so the UI charts each feature over time."""
    run_id = registry.run_for_airflow_run(
        mlc,
        f"{spec.name}-monitoring",
        dag_id=run.dag_id,
        run_id=run.run_id,
        run_name=f"monitor/{run.key}",
        tags={"model.version": result["champion_version"]},
    )
    metrics: dict[str, float] = {"rows": float(result["rows"])}
    drift_report = result["drift"]
    for feat in _all_features(drift_report):
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
    mlc.log_text(run_id, render_report(result), "monitoring/drift.html")
    mlc.set_tag(run_id, "decision", result["decision"]["reason"][:5000])
    mlc.set_terminated(run_id)
    return run_id


def _bars(ref: list[float], cur: list[float], labels: list[str]) -> str:
    """A tiny inline SVG: reference (grey) and current (blue) proportions per bin."""
    width, height = 12 * max(len(ref), 1) * 2 + 4, 40
    top = max([*ref, *cur, 1e-9])
    bars = []
    for i, (r, c) in enumerate(zip(ref, cur, strict=False)):
        x = 2 + i * 24
        for dx, v, colour in ((0, r, "#8c959f"), (11, c, "#0969da")):
            h = v / top * (height - 2)
            label = html.escape(labels[i] if i < len(labels) else "")
            bars.append(
                f"<rect x='{x + dx}' y='{height - h:.1f}' width='10' height='{h:.1f}' fill='{colour}'>"
                f"<title>{label}: {v:.3f}</title></rect>"
            )
    return f"<svg width='{width}' height='{height}'>{''.join(bars)}</svg>"


def _all_features(drift_report: dict[str, Any]) -> list[dict[str, Any]]:
    prediction = [drift_report["prediction"]] if drift_report.get("prediction") else []
    return [*drift_report.get("features", []), *prediction]


def render_report(result: dict[str, Any]) -> str:
    esc = html.escape
    d = result["drift"]
    rows = []
    for f in _all_features(d):
        # The distribution shown is the one PSI compares (bins or categories).
        hist = next(
            (
                r["histogram"]
                for r in f.get("results", [])
                if r.get("statistic") == "psi" and r.get("histogram")
            ),
            {},
        )
        svg = _bars(
            hist.get("reference", []), hist.get("current", []), [str(x) for x in hist.get("labels", [])]
        )
        verdict = "n/a" if f.get("drifted") is None else ("DRIFT" if f["drifted"] else "ok")
        colour = {"DRIFT": "#cf222e", "ok": "#1a7f37"}.get(verdict, "#6e7781")
        stats = ", ".join(
            f"{r['statistic']} {r['value']:.4g}"
            + (f" (limit {r['threshold']:g})" if r.get("threshold") is not None else "")
            for r in f.get("results", [])
            if isinstance(r.get("value"), int | float)
        )
        rows.append(
            f"<tr><td>{esc(str(f.get('feature')))}</td><td>{esc(str(f.get('kind')))}</td>"
            f"<td style='color:{colour};font-weight:bold'>{verdict}</td><td>{esc(stats)}</td><td>{svg}</td>"
            f"<td>{esc(str(f.get('reason') or f.get('detail') or ''))}</td></tr>"
        )
    decision = result["decision"]
    checks = "".join(
        f"<li>{'✔' if c['passed'] else '✘'} {esc(c['name'])}: {esc(c['detail'])}</li>"
        for c in decision.get("checks", [])
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Drift {esc(result["model"])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #d0d7de;padding:.3em .6em;text-align:left;vertical-align:middle}}th{{background:#f6f8fa}}</style></head>
<body><h1>Drift check of <code>{esc(result["model"])}</code> (champion v{esc(result["champion_version"])})</h1>
<p>{esc(str(result["rows"]))} rows from {esc(", ".join(result["window"]))}, checked {esc(result["checked_at"])}.</p>
<h2>Decision: {"retrain requested" if decision["retrain"] else "no retrain"}</h2><p>{esc(decision["reason"])}</p><ul>{checks}</ul>
<h2>Performance</h2><pre>{esc(json.dumps(result["performance"], indent=1, default=str))}</pre>
<h2>Per feature</h2><p>Bars: reference (grey) vs current (blue) proportions per bin or category.</p>
<p>{esc(str(d.get("summary", "")))}</p>
<table><tr><th>feature</th><th>kind</th><th>verdict</th><th>statistics</th><th>distribution</th><th>detail</th></tr>
{"".join(rows)}</table></body></html>
"""
