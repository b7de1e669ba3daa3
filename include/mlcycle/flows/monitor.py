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
    import pandas as pd
    from mlflow import MlflowClient

    from mlcycle.core.results import DriftCheckResult
    from mlcycle.core.run import RunInfo

log = logging.getLogger(__name__)

CHUNK_ROWS = 100_000
# Text drift reads at most this many rows of each text column from the window (its first ones):
# vocabulary shares settle long before, and the window's text is never held whole.
TEXT_ROWS = 50_000


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


def _labels_file(spec: ModelSpec, lake: lk.Lake, batch: lk.LakePath) -> Any:
    """The labels of ``batch`` that arrived later (``labels/<batch>``: key and target), as the
    encoded target by key, or None when there is no such file."""
    labels_path = lake.labels_of(batch)
    if not labels_path.exists():
        return None
    frame = lk.read_parquet([labels_path], columns=[spec.data.key_column, spec.data.target])
    frame = frame.dropna(subset=[spec.data.target]).drop_duplicates(spec.data.key_column, keep="last")
    return encode_target(spec, frame[spec.data.target]).set_axis(frame[spec.data.key_column].to_numpy())


def _stream(
    spec: ModelSpec,
    model: Any,
    paths: list[lk.LakePath],
    profile: Any,
    *,
    estimation: dict[str, Any] | None,
    lake: lk.Lake,
) -> tuple[Any, dict[str, Any]]:
    """Feed the window chunk by chunk into the drift accumulator (when ``profile`` is given),
    with the champion's predictions as one more column; keep per row what performance needs:
    the score, the label (the batch's own, or one that arrived later under labels/; NaN where
    there is none), the time, the batch, and a regressor's predicted losses."""
    import numpy as np
    import pyarrow.parquet as pq

    from mlcycle.ml import evaluation as ev
    from mlcycle.ml.scoring import iter_chunks
    from mlcycle.monitor import estimates
    from mlcycle.monitor.performance import top_class
    from mlcycle.monitor.window import Accumulator

    acc = Accumulator(profile) if profile is not None else None
    dle = (estimation or {}).get("dle")
    target, time_column, key = spec.data.target, spec.data.time_column, spec.data.key_column
    kept: dict[str, list[np.ndarray]] = {"scores": [], "labels": [], "times": [], "losses": [], "batch": []}
    classes = ev.classes_of(spec)
    chosen = np.zeros(len(classes or []), dtype="int64")  # how often the champion chose each class
    texts: dict[str, list[Any]] = {c: [] for c in spec.features.text}
    rows = 0
    for number, path in enumerate(paths):
        late = _labels_file(spec, lake, path)
        with path.open("rb") as fh:
            names = set(pq.ParquetFile(fh).schema_arrow.names)
            fh.seek(0)
            wanted = (target, key, *([time_column] if spec.monitor.chunk_period else []))
            extra = [c for c in wanted if c in names]
            for table in iter_chunks(fh, [*spec.features.all, *extra], CHUNK_ROWS):
                chunk = table.to_pandas()
                s = ev.scores(model, chunk[spec.features.all], spec.task)
                y = _labels(spec, chunk, late)
                if classes is not None:  # multi-class: watched through the top class
                    chosen += np.bincount(s.argmax(axis=1), minlength=len(classes))
                    s, y = top_class(s, y, classes)
                for column, kept_texts in texts.items():
                    if sum(map(len, kept_texts)) < TEXT_ROWS:
                        kept_texts.append(chunk[column].iloc[: TEXT_ROWS - sum(map(len, kept_texts))])
                if acc is not None:
                    frame = chunk[spec.features.tabular].copy()
                    frame[PREDICTION] = s
                    acc.update(frame)
                # float32 and int32: 12 bytes a row kept, 120 MB for a 10M-row window.
                kept["scores"].append(s.astype("float32"))
                y = np.asarray(y, dtype="float32")
                kept["labels"].append(y)
                kept["batch"].append(np.full(len(chunk), number, dtype="int32"))
                if time_column in chunk.columns:
                    kept["times"].append(chunk[time_column].to_numpy(dtype="datetime64[ns]"))
                if dle is not None:
                    kept["losses"].append(
                        estimates.dle_losses(dle, estimates.dle_inputs(dle, chunk, s)).astype("float32")
                    )
                rows += len(chunk)

    def joined(key: str) -> Any:
        return np.concatenate(kept[key]) if kept[key] else None

    import pandas as pd

    return acc.result() if acc is not None else None, {
        "rows": rows,
        "batches": [p.name for p in paths],
        "predicted_classes": [int(c) for c in chosen] if classes is not None else None,
        "texts": {
            c: pd.concat(parts, ignore_index=True) if parts else pd.Series([], dtype="string")
            for c, parts in texts.items()
        },
        **{key: joined(key) for key in kept},
    }


def _labels(spec: ModelSpec, chunk: pd.DataFrame, late: Any) -> Any:
    """The chunk's labels: its own target, else one that arrived later (``late``: by key); NaN
    (None for a multi-class target's text) where there is none. Binary: class 0/1 as floats."""
    import numpy as np
    import pandas as pd

    target, key = spec.data.target, spec.data.key_column
    own = encode_target(spec, chunk[target]) if target in chunk.columns else pd.Series([None] * len(chunk))
    if late is not None and key in chunk.columns:
        own = own.where(own.notna(), chunk[key].map(late).to_numpy())
    if spec.task is Task.MULTICLASS:
        return own.astype("object").where(own.notna(), None).to_numpy()
    return own.to_numpy(dtype="float32", na_value=np.nan)


# The predicted class distribution drifted: a chi-square test says it is not chance (p below
# this) and the Jensen-Shannon distance says it is not small (at least this).
CLASS_DRIFT_P = 0.001
CLASS_DRIFT_JS = 0.1


def predicted_class_drift(reference: dict[str, Any], counts: list[int], *, min_rows: int) -> dict[str, Any]:
    """How often the champion chose each class in the window vs on the holdout: per class the
    two shares, the chi-square p-value and JS distance, and whether that is drift."""
    import numpy as np

    from mlcycle.monitor.statistics import chi2_test, jensen_shannon

    classes, ref = reference["classes"], np.asarray(reference["counts"], dtype="float64")
    cur = np.asarray(counts, dtype="float64")
    rows = int(cur.sum())
    shares = {c: [round(float(r / max(ref.sum(), 1)), 4), round(float(k / max(rows, 1)), 4)]
              for c, r, k in zip(classes, ref, cur, strict=True)}  # fmt: skip
    out: dict[str, Any] = {"rows": rows, "reference_rows": int(ref.sum()), "shares": shares}
    if rows < min_rows:
        return {**out, "status": "too_few_rows", "drifted": False}
    smoothed = ref + 0.5  # a class the holdout never chose must not make the test infinite
    _, p_value, _ = chi2_test(cur, smoothed)
    js = jensen_shannon(smoothed, cur + 0.5)
    drifted = p_value < CLASS_DRIFT_P and js >= CLASS_DRIFT_JS
    return {**out, "p_value": p_value, "js": js, "js_threshold": CLASS_DRIFT_JS, "drifted": drifted}


def content_drift(spec: ModelSpec, profile: dict[str, Any], streamed: dict[str, Any]) -> dict[str, Any]:
    """Drift the per-feature statistics do not cover: each text column's (vocabulary, words
    the reference never saw, lengths; ``monitor.text``) and a multi-class model's predicted
    class distribution. ``drifted`` names what drifted, for the summary."""
    from mlcycle.monitor.text import text_drift

    out: dict[str, Any] = {"text": {}, "predicted_classes": None, "drifted": []}
    for column, values in (streamed.get("texts") or {}).items():
        reference = (profile.get("text") or {}).get(column)
        if reference is None:
            out["text"][column] = {"status": "no_reference", "drifted": False,
                                   "note": "the champion's profile predates text drift: retrain it"}  # fmt: skip
            continue
        result = out["text"][column] = text_drift(reference, values, min_rows=spec.monitor.min_rows)
        if result.get("drifted"):
            out["drifted"].append(f"text {column}: {result['summary']}")
    if streamed.get("predicted_classes") is not None and profile.get("predicted_classes"):
        result = predicted_class_drift(
            profile["predicted_classes"], streamed["predicted_classes"], min_rows=spec.monitor.min_rows
        )
        out["predicted_classes"] = result
        if result["drifted"]:
            out["drifted"].append(f"predicted classes: JS {result['js']:.3f}, p {result['p_value']:.2g}")
    return out


def chunk_indices(spec: ModelSpec, streamed: dict[str, Any]) -> list[tuple[str, Any]]:
    """The window's chunks as (label, row indices), in time order: ``monitor.chunk_rows``
    consecutive rows each, or one per ``monitor.chunk_period`` of the time column."""
    import numpy as np
    import pandas as pd

    n = streamed["rows"]
    period = spec.monitor.chunk_period
    if period is None or streamed["times"] is None or len(streamed["times"]) != n:
        size = spec.monitor.chunk_rows
        return [
            (f"rows {i:,}-{min(i + size, n) - 1:,}", np.arange(i, min(i + size, n)))
            for i in range(0, n, size)
        ]
    start = pd.DatetimeIndex(streamed["times"]).floor(pd.Timedelta(period))
    codes, uniques = pd.factorize(start, sort=True)
    return [(f"{u:%Y-%m-%d %H:%M}", np.flatnonzero(codes == i)) for i, u in enumerate(uniques)]


def performance(spec: ModelSpec, profile: dict[str, Any], streamed: dict[str, Any]) -> dict[str, Any]:
    """Estimated and (where labels exist) measured performance, per chunk and over the window,
    each against its band from the reference (``monitor.performance``)."""
    from mlcycle.monitor import performance as perf

    primary = perf.monitored_primary(spec.task, spec.gate.primary_metric)
    ref = profile.get("reference_performance", {})
    estimation = ref.get("estimation")
    if estimation is None:
        return {
            "primary_metric": primary,
            "note": "the champion's reference profile predates performance estimation: retrain it "
            "(trigger the train DAG with force=true) to estimate and judge performance",
        }
    if not streamed["rows"]:
        return {"primary_metric": primary, "note": "no rows to estimate performance on"}
    return perf.assess(
        spec.task,
        estimation,
        streamed["scores"],
        streamed["labels"],
        chunk_indices(spec, streamed),
        losses=streamed["losses"],
        min_rows=spec.monitor.min_rows,
        k=spec.monitor.band_k,
        primary=primary,
        holdout_value=ref.get("metrics", {}).get(primary),
        max_drop=spec.monitor.max_performance_drop,
        batches=batch_indices(streamed),
    )


def batch_indices(streamed: dict[str, Any]) -> list[tuple[str, Any]]:
    """Each streamed batch as (its file name, its row indices)."""
    import numpy as np

    return [(name, np.flatnonzero(streamed["batch"] == i)) for i, name in enumerate(streamed["batches"])]


def _values(judged: dict[str, Any]) -> dict[str, float]:
    return {m: v["value"] for m, v in judged.items() if v.get("value") is not None}


def load_history(lake: lk.Lake) -> dict[str, Any]:
    """The per-batch history (``lake.performance_history``): by batch, the first estimate made
    of it (before its labels) and the realized values once labels are there, side by side."""
    path = lake.performance_history
    return lk.read_json(path) if path.exists() else {}


def update_history(
    lake: lk.Lake, history: dict[str, Any], version: str, measured: list[dict[str, Any]], now: dt.datetime
) -> None:
    """``history`` with the batches just ``measured``, written back."""
    stamp = now.isoformat(timespec="seconds")
    for part in measured:
        entry = history.setdefault(part["label"], {"batch": part["label"], "champion_version": version})
        if entry["champion_version"] != version:
            continue  # measured by another champion: its entry stays as it was
        if (est := _values(part["estimated"])) and "estimated" not in entry:
            entry.update(estimated=est, estimated_at=stamp, rows=part["rows"])
        if (real := _values(part["realized"])) and part["labelled_rows"] > entry.get("labelled_rows", 0):
            entry.update(realized=real, realized_at=stamp, labelled_rows=part["labelled_rows"])
    lk.write_json(history, lake.performance_history)


def late_labels(
    spec: ModelSpec, lake: lk.Lake, model: Any, *, version: str, estimation: dict[str, Any],
    window: list[lk.LakePath], history: dict[str, Any], k: float,
) -> list[dict[str, Any]]:  # fmt: skip
    """The batches outside the window whose labels landed since the champion estimated them:
    scored again with labels, measured, for the history."""
    from mlcycle.monitor import performance as perf

    in_window = {p.name for p in window}
    waiting = [
        p for _, p in lake.batches()
        if p.name not in in_window and p.name in history and "realized" not in history[p.name]
        and history[p.name]["champion_version"] == version and lake.labels_of(p).exists()
    ]  # fmt: skip
    if not waiting:
        return []
    _, streamed = _stream(spec, model, waiting, None, estimation=estimation, lake=lake)
    report = perf.assess(spec.task, estimation, streamed["scores"], streamed["labels"], [],
                         losses=streamed["losses"], min_rows=spec.monitor.min_rows, k=k,
                         primary=spec.gate.primary_metric, batches=batch_indices(streamed))  # fmt: skip
    return list(report["batches"])


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
    from mlcycle.monitor.window import native_threads
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
        estimation = profile_dict.get("reference_performance", {}).get("estimation")
        with native_threads(1):
            current, streamed = _stream(spec, model, window, profile, estimation=estimation, lake=lake)
        overrides = {f: o.model_dump() for f, o in spec.monitor.overrides.items()}
        report = assess(
            profile,
            current,
            overrides=overrides,
            drift_share_threshold=spec.monitor.drift_share_threshold,
            min_rows=spec.monitor.min_rows,
        )
        perf = performance(spec, profile_dict, streamed)
        content = content_drift(spec, profile_dict, streamed)
        if estimation is not None:
            history, version = load_history(lake), str(champion.version)
            late = late_labels(spec, lake, model, version=version, estimation=estimation, window=window,
                               history=history, k=spec.monitor.band_k)  # fmt: skip
            measured = [*perf.pop("batches", []), *late]
            update_history(lake, history, version, measured, now)
            perf["history"] = [history[p["label"]] for p in measured if p["label"] in history]
        degraded = bool(perf.get("degraded"))
        summary = report.summary() + (f"; performance alert: {_perf_text(perf)}" if degraded else "")
        if content["drifted"]:
            summary += "; " + "; ".join(content["drifted"])
        drift_found = report.dataset_drift or degraded or bool(content["drifted"])
        drift_dict, rows = {**report.to_dict(), **content}, streamed["rows"]
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
    from mlcycle.monitor.performance import alert_text

    alerts = perf.get("alerts", [])
    more = f"; and {len(alerts) - 3} more (see the report)" if len(alerts) > 3 else ""
    return "; ".join(alert_text(a) for a in alerts[:3]) + more


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
    window = result["performance"].get("window") or {}
    primary = result["performance"].get("primary_metric")
    for source in ("estimated", "realized"):
        for metric, v in (window.get(source) or {}).items():
            if isinstance(v.get("value"), int | float):
                metrics[f"performance_{source}_{metric}"] = float(v["value"])
                if metric == primary:
                    metrics[f"performance_{source}"] = float(v["value"])
    metrics["performance_alerts"] = float(len(result["performance"].get("alerts", [])))
    for column, text in (drift_report.get("text") or {}).items():
        for key in ("vocabulary_js", "oov_rate", "length_js"):
            value = (text.get(key) or {}).get("value")
            if isinstance(value, int | float):
                metrics[f"text_{key}_{column}"] = float(value)
    classes = drift_report.get("predicted_classes") or {}
    if isinstance(classes.get("js"), int | float):
        metrics["predicted_classes_js"] = float(classes["js"])
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
