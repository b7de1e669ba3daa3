"""The training use-case: resolve → validate → train → evaluate → gate → promote.

Operators call these; so do the CLI, the demo and the benchmarks. Every step takes explicit
inputs (spec, run identity, URIs, a ready ``MlflowClient``), returns a typed result
(``mlcycle.core.results``), and is safe to run again for the same run: it finds what an
earlier try made and reuses it.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.core.errors import GateFailedError, RegistryError, ValidationFailedError
from mlcycle.core.spec import ModelSpec, spec_digest
from mlcycle.data import lake as lk
from mlcycle.data.lake import RunFile
from mlcycle.store import ledger, registry

if TYPE_CHECKING:
    import datetime as dt

    import pandas as pd
    from mlflow import MlflowClient

    from mlcycle.core.results import (
        EvaluationResult,
        GateResult,
        MeasurementResult,
        PromoteResult,
        ResolveResult,
        TrainResult,
        TrainSkipped,
        ValidateResult,
    )
    from mlcycle.core.run import RunInfo
    from mlcycle.ml.onnx_twin import Output
    from mlcycle.ml.training import TrainResult as Fitted

log = logging.getLogger(__name__)

TAG_SKIPPED = "mlcycle.skipped"  # on the MLflow run of a training that had nothing to learn


def run_file(spec: ModelSpec, lake_root: str, run: RunInfo, what: RunFile) -> lk.LakePath:
    """Where this run's ``what`` lives in the lake (operators link to the same place)."""
    return lk.Lake(lake_root, spec.name).run_file(run.key, what)


def read_manifest(uri: str) -> lk.Manifest:
    """The manifest that the ``resolve`` step wrote at ``uri``."""
    return lk.Manifest.from_dict(lk.read_json(lk.as_path(uri)))


# --- 1. resolve -----------------------------------------------------------------------------


def resolve(
    spec: ModelSpec,
    run: RunInfo,
    *,
    lake_root: str,
    as_of: dt.date,
    batch_uri: str | None = None,
    latest_only: bool = False,
) -> ResolveResult:
    """Decide which files the run uses and write their manifest (with a digest of their bytes)."""
    lake = lk.Lake(lake_root, spec.name)
    manifest = lk.resolve_training_data(
        lake,
        window_days=spec.data.training_window_days,
        as_of=as_of,
        batch_uri=batch_uri,
        latest_only=latest_only,
    )
    path = lake.run_file(run.key, RunFile.MANIFEST)
    lk.write_json(manifest.to_dict(), path)
    log.info(
        "resolved %d batch(es), %d rows for %s (%s), digest %s",
        len(manifest.batches),
        manifest.rows,
        spec.name,
        manifest.source,
        manifest.digest[:12],
    )
    return {
        "manifest_uri": lk.uri_of(path),
        "batch_uri": manifest.batches[-1],
        "batches": len(manifest.batches),
        "rows": manifest.rows,
        "digest": manifest.digest,
        "source": manifest.source,
    }


# --- 2. validate ----------------------------------------------------------------------------


def validate(
    spec: ModelSpec, run: RunInfo, *, manifest_uri: str, lake_root: str, contracts_dir: str | None = None
) -> ValidateResult:
    """Validate each batch against the model's contract. Failing batches are copied to
    quarantine with the result, and ``ValidationFailedError`` lists each failure."""
    from mlcycle.core import settings
    from mlcycle.data.contracts import load_suite_dict, validate_batches

    manifest = read_manifest(manifest_uri)
    suite = load_suite_dict(Path(contracts_dir or settings.contracts_dir()) / spec.contract)
    frames = [(uri, lk.read_parquet([lk.as_path(uri)])) for uri in manifest.batches]
    report = validate_batches(suite, frames)
    lake = lk.Lake(lake_root, spec.name)
    lk.write_json(report.to_dict(), lake.run_file(run.key, RunFile.VALIDATION))
    if not report.success:
        bad = lk.Manifest(
            model=manifest.model,
            batches=[b.uri for b in report.failed_batches],
            rows=sum(b.rows for b in report.failed_batches),
            digest=manifest.digest,
            source=manifest.source,
        )
        where = lk.quarantine(lake, bad, run.key, report.to_dict())
        raise ValidationFailedError(
            f"{report.summary()}\nquarantined {len(bad.batches)} batch(es) with the validation result "
            f"in {lk.uri_of(where)}; nothing downstream ran. Fix the source or drop the batch, then rerun."
        )
    log.info(report.summary())
    return {
        "success": True,
        "contract": report.contract,
        "batches": len(report.batches),
        "rows": sum(b.rows for b in report.batches),
        "expectations": report.batches[0].evaluated if report.batches else 0,
        "result_uri": lk.uri_of(lake.run_file(run.key, RunFile.VALIDATION)),
    }


# --- 3. train -------------------------------------------------------------------------------


def open_run(mlc: MlflowClient, spec: ModelSpec, run: RunInfo, manifest_uri: str) -> tuple[str, str]:
    """The MLflow run that records this Airflow run's training: (experiment id, run id), found
    again on a retry. Made before any work, so its link works even when training fails."""
    tags = {
        registry.TAG_DIGEST: read_manifest(manifest_uri).digest,
        registry.TAG_REASON: run.reason or "-",
        registry.TAG_TRIGGER: run.trigger,
        registry.TAG_SPEC: spec_digest(spec),
    }
    return registry.run_for_airflow_run(mlc, spec.name, run, run.dag_id, tags)


def _skip_reason(
    mlc: MlflowClient, spec: ModelSpec, digest: str, force: bool, overrides: Any
) -> TrainSkipped | None:
    champion = registry.version_by_alias(mlc, spec.name, registry.CHAMPION)
    if (
        champion is None
        or force
        or overrides
        or champion.tags.get(registry.TAG_DIGEST) != digest
        or champion.tags.get(registry.TAG_SPEC) != spec_digest(spec)
    ):
        return None
    why = (
        f"champion v{champion.version} was trained on identical data (digest {digest[:12]}) "
        "with the same spec; nothing to learn. Trigger with force=true to train anyway."
    )
    return {"skipped": True, "reason": why, "champion_version": str(champion.version)}


def train(
    spec: ModelSpec,
    run: RunInfo,
    mlc: MlflowClient,
    *,
    manifest_uri: str,
    lake_root: str,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
) -> TrainResult | TrainSkipped:
    """Fit, log and register a candidate; alias it ``challenger``.

    Returns a ``TrainSkipped`` without training when the champion was trained on the same data
    with the same spec (nothing could change) unless ``force``.
    """
    from mlcycle.ml import training as tr

    manifest = read_manifest(manifest_uri)
    existing = registry.version_for_run(mlc, spec.name, run.dag_id, run.run_id)
    if existing is not None:
        log.info("v%s was already registered by run %s; reusing it", existing.version, run.run_id)
        # An earlier try may have died before aliasing it; never move the alias back from a
        # newer candidate, though.
        challenger = registry.version_by_alias(mlc, spec.name, registry.CHALLENGER)
        if challenger is None or int(challenger.version) < int(existing.version):
            registry.set_alias(mlc, spec.name, registry.CHALLENGER, str(existing.version))
        return _result(
            spec, mlc, str(existing.version), registry.run_of(existing), existing.tags, created=False
        )
    _, mlflow_run_id = open_run(mlc, spec, run, manifest_uri)
    if skipped := _skip_reason(mlc, spec, manifest.digest, force, overrides):
        log.info("skipping training: %s", skipped["reason"])
        mlc.set_tag(mlflow_run_id, TAG_SKIPPED, skipped["reason"])
        mlc.set_terminated(mlflow_run_id)
        return skipped

    df = lk.read_parquet([lk.as_path(u) for u in manifest.batches])
    log.info("read %d rows from %d batch(es)", len(df), len(manifest.batches))
    fitted = tr.train(df, spec, overrides)
    holdout_path = run_file(spec, lake_root, run, RunFile.HOLDOUT)
    lk.write_parquet(fitted.holdout, holdout_path)
    started = time.perf_counter()
    holdout_uri = lk.uri_of(holdout_path)
    holdout_metrics, size_mb, onnx_report = _log_run(
        mlc, mlflow_run_id, spec=spec, fitted=fitted, manifest_uri=manifest_uri, holdout_uri=holdout_uri
    )
    version = _register(
        mlc,
        mlflow_run_id,
        spec=spec,
        run=run,
        fitted=fitted,
        manifest=manifest,
        holdout_uri=holdout_uri,
        size_mb=size_mb,
        onnx_report=onnx_report,
    )
    registry.set_alias(mlc, spec.name, registry.CHALLENGER, version)
    mlc.set_terminated(mlflow_run_id)
    log.info(
        "logged and registered %s v%s in %.2fs (challenger)",
        spec.name,
        version,
        time.perf_counter() - started,
    )
    mv = mlc.get_model_version(spec.name, version)
    out = _result(spec, mlc, version, mlflow_run_id, mv.tags, created=True)
    out["holdout_metrics"] = {k: round(v, 6) for k, v in holdout_metrics.items()}
    out["train_seconds"] = round(fitted.seconds, 3)
    return out


def _log_run(
    mlc: MlflowClient,
    run_id: str,
    *,
    spec: ModelSpec,
    fitted: Fitted,
    manifest_uri: str,
    holdout_uri: str,
) -> tuple[dict[str, float], float, dict[str, Any]]:
    """Params, metrics, the datasets (by reference), the drift reference profile and the ONNX
    twin, all on the training run. Returns (holdout metrics, model size in MB, ONNX report)."""
    import skops.io as sio

    from mlcycle.ml import evaluation, onnx_twin
    from mlcycle.monitor.reference import reference_profile

    manifest = read_manifest(manifest_uri)
    # The holdout is scored once: its metrics, the drift reference and the ONNX parity check
    # all read this output (bench/train_step.py: each pass costs ~1.2 s at 200k holdout rows).
    holdout_out = onnx_twin.output(fitted.pipeline, fitted.holdout[spec.features.all], spec.task)
    holdout_scores = evaluation.scores_of(holdout_out.values, spec.task)
    # The reference profile measures the holdout metrics too: they are logged from it.
    profile = reference_profile(spec, fitted.pipeline, fitted.train, fitted.holdout, holdout_scores)
    holdout_metrics: dict[str, float] = profile["reference_performance"]["metrics"]
    size_mb = len(sio.dumps(fitted.pipeline)) / 1e6
    params = {
        **fitted.params,
        "data.rows": manifest.rows,
        "data.train_rows": len(fitted.train),
        "data.holdout_rows": len(fitted.holdout),
        "data.source": manifest.source,
        "data.batches": len(manifest.batches),
        "spec.split": spec.data.split,
    }
    metrics = {f"holdout_{k}": v for k, v in holdout_metrics.items()}
    metrics |= {"train_seconds": fitted.seconds, "model_size_mb": size_mb}
    onnx_bytes, onnx_report = _onnx_twin(spec, fitted, holdout_out)
    if "max_scaled_diff" in onnx_report:
        metrics["onnx_max_diff"] = onnx_report["max_scaled_diff"]
    registry.log_params(mlc, run_id, params)
    registry.log_metrics(mlc, run_id, metrics)
    for context, frame, uri, digest in (
        ("training", fitted.train, manifest_uri, manifest.digest),
        ("holdout", fitted.holdout, holdout_uri, lk.digest_files([lk.as_path(holdout_uri)])),
    ):
        registry.log_dataset(
            mlc,
            run_id,
            name=f"{spec.name}-{'train' if context == 'training' else context}",
            digest=digest,
            source_uri=uri,
            sample=frame.head(100),
            rows=len(frame),
            context=context,
        )
    mlc.log_dict(run_id, profile, registry.PROFILE_ARTIFACT)
    mlc.log_dict(run_id, onnx_report, registry.ONNX_REPORT)
    if onnx_bytes is not None:
        with tempfile.TemporaryDirectory(prefix="mlcycle-onnx-") as tmp:
            path = Path(tmp) / Path(registry.ONNX_ARTIFACT).name
            path.write_bytes(onnx_bytes)
            mlc.log_artifact(run_id, str(path), artifact_path=str(Path(registry.ONNX_ARTIFACT).parent))
    return holdout_metrics, size_mb, onnx_report


def _register(
    mlc: MlflowClient,
    run_id: str,
    *,
    spec: ModelSpec,
    run: RunInfo,
    fitted: Fitted,
    manifest: lk.Manifest,
    holdout_uri: str,
    size_mb: float,
    onnx_report: dict[str, Any],
) -> str:
    """Log the pipeline (skops, with its trusted types and signature) and register a version
    carrying every identifying tag in one call."""
    import mlflow
    from mlflow.models import infer_signature

    from mlcycle.ml import training as tr

    # Integer columns are declared as doubles: a null in production would otherwise turn them
    # into floats and break schema enforcement at serving time.
    sample = fitted.train[spec.features.all].head(200)
    sample = sample.astype({c: "float64" for c in sample.columns if sample[c].dtype.kind in "iu"})
    with registry.fluent(mlc), mlflow.start_run(run_id=run_id):
        info = mlflow.sklearn.log_model(
            fitted.pipeline,
            name="model",
            serialization_format="skops",
            skops_trusted_types=tr.trusted_types_for(fitted.pipeline, spec),
            signature=infer_signature(sample, fitted.pipeline.predict(sample)),
            input_example=sample.head(5),
            pip_requirements=registry.model_requirements(),
        )
    return registry.register_version(
        mlc,
        model=spec.name,
        description=spec.description,
        source=info.model_uri,
        mlflow_run_id=run_id,
        tags={
            registry.TAG_DAG_ID: run.dag_id,
            registry.TAG_RUN_ID: run.run_id,
            registry.TAG_DIGEST: manifest.digest,
            registry.TAG_REASON: run.reason or "-",
            registry.TAG_TRIGGER: run.trigger,
            registry.TAG_SPEC: spec_digest(spec),
            registry.TAG_ROWS: str(manifest.rows),
            registry.TAG_SOURCE: manifest.source,
            registry.TAG_LAST_BATCH: lk.last_batch_date(manifest.batches) or "",
            registry.TAG_SIZE: f"{size_mb:.4f}",
            registry.TAG_HOLDOUT: holdout_uri,
            **registry.onnx_tags(onnx_report),
        },
    )


def _onnx_twin(spec: ModelSpec, fitted: Fitted, holdout_out: Output) -> tuple[bytes | None, dict[str, Any]]:
    """The ONNX twin of a freshly trained pipeline and its parity report (``mlcycle.ml.onnx_twin``)."""
    if spec.scoring.engine == "sklearn":
        return None, {"status": "disabled", "reason": "the spec sets scoring.engine: sklearn"}
    from mlcycle.ml import onnx_twin

    return onnx_twin.export(fitted.pipeline, spec, fitted.holdout, holdout_out)


def _result(
    spec: ModelSpec,
    mlc: MlflowClient,
    version: str,
    mlflow_run_id: str,
    tags: dict[str, str],
    *,
    created: bool,
) -> TrainResult:
    return {
        "skipped": False,
        "created": created,
        "version": str(version),
        "mlflow_run_id": mlflow_run_id,
        "experiment_id": registry.experiment_of(mlc, mlflow_run_id),
        "model_uri": f"models:/{spec.name}/{version}",
        "holdout_uri": tags.get(registry.TAG_HOLDOUT, ""),
        "holdout_metrics": {},
        "train_seconds": None,
    }


# --- 4. evaluate ----------------------------------------------------------------------------


def evaluate(
    spec: ModelSpec, run: RunInfo, mlc: MlflowClient, *, version: str, holdout_uri: str, lake_root: str
) -> EvaluationResult:
    """Score the candidate and the current champion on the same holdout rows."""
    from mlcycle.ml import evaluation as ev

    path = run_file(spec, lake_root, run, RunFile.EVALUATION)
    if path.exists():
        earlier: EvaluationResult = lk.read_json(path)
        if earlier.get("candidate", {}).get("version") == str(version):
            log.info("evaluation of v%s was already done by this run; reusing %s", version, lk.uri_of(path))
            return earlier

    holdout = lk.read_parquet([lk.as_path(holdout_uri)])
    X, y = holdout[spec.features.all], holdout[spec.data.target].to_numpy()
    models: dict[str, Any] = {}

    def measure(v: str) -> tuple[MeasurementResult, Any]:
        model = models[v] = registry.load_sklearn(mlc, spec.name, v)
        s = ev.scores(model, X, spec.task)
        size = mlc.get_model_version(spec.name, v).tags.get(registry.TAG_SIZE)
        return {
            "version": str(v),
            "metrics": ev.all_metrics(spec.task, y, s),
            "latency_ms_per_1k_rows": ev.latency_ms_per_1k(model, X, spec.task),
            "model_size_mb": float(size) if size else None,
        }, s

    candidate, cand_scores = measure(version)
    champion_mv = registry.version_by_alias(mlc, spec.name, registry.CHAMPION)
    champion, confidence, shadow = None, None, None
    if champion_mv is not None and str(champion_mv.version) != str(version):
        champion, champ_scores = measure(str(champion_mv.version))
        confidence = ev.paired_bootstrap(
            spec.gate.primary_metric, y, cand_scores, champ_scores, n=spec.gate.bootstrap_resamples
        )
        if spec.gate.shadow.required:
            shadow = _shadow_on_newest_batch(
                spec, lake_root, models[str(version)], models[str(champion_mv.version)]
            )
    elif champion_mv is not None:
        log.warning("v%s is already the champion; evaluating it without a comparison", version)
    out: EvaluationResult = {
        "candidate": candidate,
        "champion": champion,
        "confidence": confidence,
        "shadow": shadow,
        "holdout_rows": len(holdout),
    }
    lk.write_json(out, path)
    primary = spec.gate.primary_metric
    log.info(
        "holdout %d rows: candidate v%s %s=%.4f%s",
        len(holdout),
        version,
        primary,
        candidate["metrics"][primary],
        f", champion v{champion['version']} {primary}={champion['metrics'][primary]:.4f}"
        if champion
        else ", no champion",
    )
    return out


def _shadow_on_newest_batch(
    spec: ModelSpec, lake_root: str, candidate: Any, champion: Any
) -> dict[str, Any] | None:
    """Candidate vs champion on the newest production batch (labels not needed): how many
    decisions would change and how far scores move if the candidate were served."""
    import numpy as np

    from mlcycle.ml import evaluation as ev

    lake = lk.Lake(lake_root, spec.name)
    quarantined = lake.quarantined_names()
    batches = [p for _, p in lake.batches() if p.name not in quarantined]
    if not batches:
        return None
    X: pd.DataFrame = lk.read_parquet([batches[-1]], columns=spec.features.all)
    c, b = ev.scores(candidate, X, spec.task), ev.scores(champion, X, spec.task)
    out: dict[str, Any] = {
        "batch": batches[-1].name,
        "rows": len(X),
        "mean_abs_diff": float(np.abs(c - b).mean()),
    }
    if spec.task.value == "classification":
        out["agreement"] = float((candidate.predict(X) == champion.predict(X)).mean())
    return out


# --- 5. gate --------------------------------------------------------------------------------


def gate(
    spec: ModelSpec, run: RunInfo, mlc: MlflowClient, *, evaluation: EvaluationResult, lake_root: str
) -> GateResult:
    """Apply the spec's gate policy; write the verdict (JSON + HTML) to the lake and to the
    candidate's MLflow run, tag the version, and raise ``GateFailedError`` on a fail."""
    from mlcycle.ml import gate as g
    from mlcycle.reports import pages

    cand = g.Measurement(**evaluation["candidate"])
    champion = evaluation.get("champion")
    champ = g.Measurement(**champion) if champion else None
    verdict = g.decide(
        spec.name,
        spec.gate,
        cand,
        champ,
        confidence=evaluation.get("confidence"),
        shadow=evaluation.get("shadow"),
    )
    json_path = run_file(spec, lake_root, run, RunFile.VERDICT_JSON)
    html_path = run_file(spec, lake_root, run, RunFile.VERDICT)
    verdict.evidence = {"verdict_json": lk.uri_of(json_path), "verdict_html": lk.uri_of(html_path)}
    page = pages.gate_page(verdict.to_dict())
    lk.write_json(verdict.to_dict(), json_path)
    lk.write_bytes_atomic(html_path, page.encode())

    run_id = registry.run_of(mlc.get_model_version(spec.name, str(cand.version)))
    mlc.log_dict(run_id, verdict.to_dict(), "gate/verdict.json")
    mlc.log_text(run_id, page, "gate/verdict.html")
    mlc.log_metric(run_id, "gate_passed", 1.0 if verdict.passed else 0.0)
    registry.set_version_tags(
        mlc,
        spec.name,
        str(cand.version),
        {
            registry.TAG_VERDICT: "pass" if verdict.passed else "fail",
            registry.TAG_VERDICT_SUMMARY: verdict.summary(),
            registry.TAG_EVIDENCE: lk.uri_of(html_path),
        },
    )
    for rule in verdict.rules:
        log.info("gate rule %-28s %-7s %s", rule.name, rule.outcome.upper(), rule.detail)
    if not verdict.passed:
        raise GateFailedError(
            f"{spec.name} {verdict.summary()}\nv{cand.version} stays registered but is not promoted; "
            f"champion unchanged (v{verdict.champion_version}). Full verdict: {lk.uri_of(html_path)}"
        )
    return {
        "passed": True,
        "version": str(cand.version),
        "champion_version": verdict.champion_version,
        "bootstrap": verdict.bootstrap,
        "summary": verdict.summary(),
        "verdict_uri": lk.uri_of(json_path),
        "report_uri": lk.uri_of(html_path),
    }


# --- 6. promote -----------------------------------------------------------------------------


def promote(
    spec: ModelSpec, run: RunInfo, mlc: MlflowClient, *, verdict: GateResult, ledger_uri: str | None = None
) -> PromoteResult:
    """Move ``champion`` to the gated version (compare-and-set against the champion the gate
    saw) and append the move to the ledger. A rerun changes nothing and records nothing twice."""
    if not verdict.get("passed"):
        raise RegistryError(
            f"refusing to promote {spec.name}: the verdict did not pass ({verdict.get('summary')})"
        )
    version = str(verdict["version"])
    previous = registry.set_alias(
        mlc, spec.name, registry.CHAMPION, version, expected=verdict.get("champion_version")
    )
    already = previous == version
    if already:
        # A retry after the alias moved: the move's "from" is what the gate compared against.
        previous = verdict.get("champion_version")
    recorded = ledger.append(
        ledger.Entry(
            model=spec.name,
            alias=registry.CHAMPION,
            previous_version=previous,
            new_version=version,
            action="bootstrap" if verdict.get("bootstrap") else "promote",
            actor=f"{run.actor}:{run.dag_id}",
            reason=run.reason or f"gate passed ({run.trigger} run)",
            evidence_uri=verdict.get("report_uri"),
            verdict=verdict.get("summary"),
            dag_id=run.dag_id,
            run_id=run.run_id,
        ),
        ledger_uri,
    )
    log.info(
        "%s@champion: v%s -> v%s%s",
        spec.name,
        previous or "-",
        version,
        " (already there; ledger entry kept)" if already and not recorded else "",
    )
    return {
        "promoted": not already,
        "version": version,
        "previous_version": previous,
        "ledger_recorded": recorded,
    }
