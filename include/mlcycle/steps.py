"""The lifecycle steps as plain functions: resolve → validate → train → evaluate → gate → promote.

Operators call these; so do the CLI and the benchmarks. Every step takes explicit
inputs (spec, URIs, run identity), returns a small JSON-serialisable dict, and is
safe to run again for the same run: it finds what an earlier try made and reuses it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcycle import lake as lk
from mlcycle import ledger, registry, settings
from mlcycle.errors import GateFailedError, RegistryError, ValidationFailedError
from mlcycle.spec import ModelSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunInfo:
    """Who is running a step: the Airflow DAG and run, and why."""

    dag_id: str
    run_id: str
    reason: str = ""
    trigger: str = "manual"  # schedule | manual | asset | backfill | test
    actor: str = "airflow"

    @property
    def key(self) -> str:
        return lk.run_key(self.run_id)


def spec_digest(spec: ModelSpec) -> str:
    """What of the spec changes a model: features, estimator, target and split."""
    relevant = spec.model_dump(mode="json", include={"features", "estimator", "data"}, by_alias=True)
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def _run_dir(spec: ModelSpec, lake_root: str, run: RunInfo) -> lk.LakePath:
    return lk.Lake(lake_root, spec.name).run_dir(run.key)


# --- 1. resolve -----------------------------------------------------------------------------


def resolve(
    spec: ModelSpec,
    run: RunInfo,
    *,
    lake_root: str,
    as_of: dt.date,
    batch_uri: str | None = None,
    latest_only: bool = False,
) -> dict[str, Any]:
    lake = lk.Lake(lake_root, spec.name)
    manifest = lk.resolve_training_data(
        lake,
        window_days=spec.data.training_window_days,
        as_of=as_of,
        batch_uri=batch_uri,
        latest_only=latest_only,
    )
    path = lake.run_dir(run.key) / "manifest.json"
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


def read_manifest(uri: str) -> lk.Manifest:
    return lk.Manifest.from_dict(lk.read_json(lk.as_path(uri)))


# --- 2. validate ----------------------------------------------------------------------------


def validate(
    spec: ModelSpec, run: RunInfo, *, manifest_uri: str, lake_root: str, contracts_dir: str | None = None
) -> dict[str, Any]:
    """Validate each batch against the model's contract. Failing batches are copied to
    quarantine with the result, and ``ValidationFailedError`` lists each failure."""

    from mlcycle.contracts import load_suite_dict, validate_batches

    manifest = read_manifest(manifest_uri)
    suite = load_suite_dict(Path(contracts_dir or settings.contracts_dir()) / spec.contract)
    frames = [(uri, lk.read_parquet([lk.as_path(uri)])) for uri in manifest.batches]
    report = validate_batches(suite, frames)
    lake = lk.Lake(lake_root, spec.name)
    result_path = lake.run_dir(run.key) / "validation.json"
    lk.write_json(report.to_dict(), result_path)
    if not report.success:
        bad = lk.Manifest(
            model=manifest.model,
            batches=[b.uri for b in report.failed_batches],
            rows=sum(b.rows for b in report.failed_batches),
            digest=manifest.digest,
            source=manifest.source,
        )
        where = lake.quarantine(run.key)
        lk.quarantine(lake, bad, run.key, report.to_dict())
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
        "result_uri": lk.uri_of(result_path),
    }


# --- 3. train -------------------------------------------------------------------------------


def train(
    spec: ModelSpec,
    run: RunInfo,
    *,
    manifest_uri: str,
    lake_root: str,
    tracking_uri: str | None = None,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Fit, log and register a candidate; alias it ``challenger``.

    Returns ``{"skipped": True, ...}`` without training when the champion was trained on
    the same data with the same spec (nothing could change) unless ``force``.
    """
    from mlcycle import evaluation
    from mlcycle import training as tr

    manifest = read_manifest(manifest_uri)
    mlc = registry.client(tracking_uri)
    run_dir = _run_dir(spec, lake_root, run)

    existing = registry.version_for_run(mlc, spec.name, run.dag_id, run.run_id)
    if existing is not None:
        log.info("v%s was already registered by run %s; reusing it", existing.version, run.run_id)
        # An earlier try may have died before aliasing it; never move the alias back
        # from a newer candidate, though.
        challenger = registry.version_by_alias(mlc, spec.name, registry.CHALLENGER)
        if challenger is None or int(challenger.version) < int(existing.version):
            registry.set_alias(mlc, spec.name, registry.CHALLENGER, str(existing.version))
        return _train_result(spec, existing.version, existing.run_id, mlc, existing.tags, created=False)

    sdigest = spec_digest(spec)
    champion = registry.version_by_alias(mlc, spec.name, registry.CHAMPION)
    if (
        champion is not None
        and not force
        and not overrides
        and champion.tags.get(registry.TAG_DIGEST) == manifest.digest
        and champion.tags.get(registry.TAG_SPEC) == sdigest
    ):
        why = (
            f"champion v{champion.version} was trained on identical data (digest {manifest.digest[:12]}) "
            "with the same spec; nothing to learn. Trigger with force=true to train anyway."
        )
        log.info("skipping training: %s", why)
        return {"skipped": True, "reason": why, "champion_version": str(champion.version)}

    df = lk.read_parquet([lk.as_path(u) for u in manifest.batches])
    log.info("read %d rows from %d batch(es)", len(df), len(manifest.batches))
    result = tr.train(df, spec, overrides)
    holdout_uri = lk.uri_of(run_dir / "holdout.parquet")
    lk.write_parquet(result.holdout, lk.as_path(holdout_uri))
    features = spec.features.all
    holdout_metrics = evaluation.all_metrics(
        spec.task,
        result.holdout[spec.data.target].to_numpy(),
        evaluation.scores(result.pipeline, result.holdout[features], spec.task),
    )
    trusted = tr.trusted_types_for(result.pipeline, spec)
    onnx_bytes, onnx_report = _onnx_twin(spec, result)

    import mlflow
    import skops.io as sio
    from mlflow.models import infer_signature

    size_mb = len(sio.dumps(result.pipeline)) / 1e6
    experiment_id = registry.ensure_experiment(mlc, spec.name)
    run_tags = {
        registry.TAG_DAG_ID: run.dag_id,
        registry.TAG_RUN_ID: run.run_id,
        registry.TAG_DIGEST: manifest.digest,
        registry.TAG_REASON: run.reason or "-",
        registry.TAG_TRIGGER: run.trigger,
        registry.TAG_SPEC: sdigest,
    }
    started = time.perf_counter()
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"{run.dag_id}/{run.key}", tags=run_tags
    ) as mrun:
        mlflow.log_params(
            {
                **result.params,
                "data.rows": len(df),
                "data.train_rows": len(result.train),
                "data.holdout_rows": len(result.holdout),
                "data.source": manifest.source,
                "data.batches": len(manifest.batches),
                "spec.split": spec.data.split,
            }
        )
        mlflow.log_metrics(
            {f"holdout_{k}": v for k, v in holdout_metrics.items()}
            | {"train_seconds": result.seconds, "model_size_mb": size_mb}
        )
        mlflow.log_input(
            mlflow.data.from_pandas(
                result.train, source=manifest_uri, targets=spec.data.target, name=f"{spec.name}-train"
            ),
            context="training",
        )
        mlflow.log_input(
            mlflow.data.from_pandas(
                result.holdout, source=holdout_uri, targets=spec.data.target, name=f"{spec.name}-holdout"
            ),
            context="holdout",
        )
        # Integer columns are declared as doubles: a null in production would otherwise
        # turn them into floats and break schema enforcement at serving time.
        sample = result.train[features].head(200)
        sample = sample.astype({c: "float64" for c in sample.columns if sample[c].dtype.kind in "iu"})
        # The reference the drift monitor compares against, stored with the version.
        from mlcycle.monitoring import PROFILE_ARTIFACT, reference_profile

        mlflow.log_dict(
            reference_profile(spec, result.pipeline, result.train, result.holdout), PROFILE_ARTIFACT
        )
        mlflow.log_dict(onnx_report, registry.ONNX_REPORT)
        if onnx_bytes is not None:
            with tempfile.TemporaryDirectory(prefix="mlcycle-onnx-") as tmp:
                path = Path(tmp) / Path(registry.ONNX_ARTIFACT).name
                path.write_bytes(onnx_bytes)
                mlflow.log_artifact(str(path), artifact_path=str(Path(registry.ONNX_ARTIFACT).parent))
        if "max_scaled_diff" in onnx_report:
            mlflow.log_metric("onnx_max_diff", onnx_report["max_scaled_diff"])
        info = mlflow.sklearn.log_model(
            result.pipeline,
            name="model",
            serialization_format="skops",
            skops_trusted_types=trusted,
            signature=infer_signature(sample, result.pipeline.predict(sample)),
            input_example=sample.head(5),
            pip_requirements=registry.model_requirements(),
        )
        version = registry.register_version(
            mlc,
            model=spec.name,
            description=spec.description,
            source=info.model_uri,
            mlflow_run_id=mrun.info.run_id,
            tags={
                **run_tags,
                registry.TAG_ROWS: str(manifest.rows),
                registry.TAG_SOURCE: manifest.source,
                registry.TAG_LAST_BATCH: lk.last_batch_date(manifest.batches) or "",
                registry.TAG_SIZE: f"{size_mb:.4f}",
                registry.TAG_HOLDOUT: holdout_uri,
                registry.TAG_ONNX: onnx_report["status"],
                registry.TAG_ONNX_REASON: onnx_report.get("reason", "")[:500],
                registry.TAG_ONNX_DIFF: f"{onnx_report['max_scaled_diff']:.3g}"
                if "max_scaled_diff" in onnx_report
                else "",
            },
        )
    registry.set_alias(mlc, spec.name, registry.CHALLENGER, version)
    log.info(
        "logged and registered %s v%s in %.2fs (challenger)",
        spec.name,
        version,
        time.perf_counter() - started,
    )
    mv = mlc.get_model_version(spec.name, version)
    out = _train_result(spec, version, mrun.info.run_id, mlc, mv.tags, created=True)
    out["holdout_metrics"] = {k: round(v, 6) for k, v in holdout_metrics.items()}
    out["train_seconds"] = round(result.seconds, 3)
    return out


def _onnx_twin(spec: ModelSpec, result: Any) -> tuple[bytes | None, dict[str, Any]]:
    """The ONNX twin of a freshly trained pipeline and its parity report (see mlcycle.onnx_engine)."""
    if spec.scoring.engine == "sklearn":
        return None, {"status": "disabled", "reason": "the spec sets scoring.engine: sklearn"}
    from mlcycle import onnx_engine

    return onnx_engine.export(result.pipeline, spec, result.holdout)


def _train_result(
    spec: ModelSpec, version: str, mlflow_run_id: str, mlc: Any, tags: dict[str, str], *, created: bool
) -> dict[str, Any]:
    experiment_id = mlc.get_run(mlflow_run_id).info.experiment_id
    return {
        "skipped": False,
        "created": created,
        "version": str(version),
        "mlflow_run_id": mlflow_run_id,
        "experiment_id": experiment_id,
        "model_uri": f"models:/{spec.name}/{version}",
        "holdout_uri": tags.get(registry.TAG_HOLDOUT),
        "run_url": registry.run_url(experiment_id, mlflow_run_id),
        "version_url": registry.version_url(spec.name, str(version)),
    }


# --- 4. evaluate ----------------------------------------------------------------------------


def evaluate(
    spec: ModelSpec,
    run: RunInfo,
    *,
    version: str,
    holdout_uri: str,
    lake_root: str,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Score the candidate and the current champion on the same holdout rows."""
    from mlcycle import evaluation as ev

    path = _run_dir(spec, lake_root, run) / "evaluation.json"
    if path.exists():
        earlier = lk.read_json(path)
        if earlier.get("candidate", {}).get("version") == str(version):
            log.info("evaluation of v%s was already done by this run; reusing %s", version, lk.uri_of(path))
            return earlier

    mlc = registry.client(tracking_uri)
    holdout = lk.read_parquet([lk.as_path(holdout_uri)])
    X, y = holdout[spec.features.all], holdout[spec.data.target].to_numpy()

    models: dict[str, Any] = {}

    def measure(v: str) -> tuple[dict[str, Any], Any]:
        model = models[v] = registry.load_sklearn(f"models:/{spec.name}/{v}")
        s = ev.scores(model, X, spec.task)
        mv = mlc.get_model_version(spec.name, v)
        size = mv.tags.get(registry.TAG_SIZE)
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
    out = {
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

    from mlcycle import evaluation as ev

    lake = lk.Lake(lake_root, spec.name)
    quarantined = lake.quarantined_names()
    batches = [p for _, p in lake.batches() if p.name not in quarantined]
    if not batches:
        return None
    X = lk.read_parquet([batches[-1]], columns=spec.features.all)
    c, b = ev.scores(candidate, X, spec.task), ev.scores(champion, X, spec.task)
    out = {"batch": batches[-1].name, "rows": len(X), "mean_abs_diff": float(np.abs(c - b).mean())}
    if spec.task.value == "classification":
        out["agreement"] = float((candidate.predict(X) == champion.predict(X)).mean())
    return out


# --- 5. gate --------------------------------------------------------------------------------


def gate(
    spec: ModelSpec,
    run: RunInfo,
    *,
    evaluation: dict[str, Any],
    lake_root: str,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Apply the spec's gate policy; write the verdict (JSON + HTML) to the lake and to
    the candidate's MLflow run, tag the version, and raise ``GateFailedError`` on a fail."""
    from mlcycle import gate as g

    cand = g.Measurement(**evaluation["candidate"])
    champ = g.Measurement(**evaluation["champion"]) if evaluation.get("champion") else None
    verdict = g.decide(
        spec.name,
        spec.gate,
        cand,
        champ,
        confidence=evaluation.get("confidence"),
        shadow=evaluation.get("shadow"),
    )
    run_dir = _run_dir(spec, lake_root, run)
    json_path, html_path = run_dir / "verdict.json", run_dir / "verdict.html"
    verdict.evidence = {"verdict_json": lk.uri_of(json_path), "verdict_html": lk.uri_of(html_path)}
    lk.write_json(verdict.to_dict(), json_path)
    lk.write_bytes_atomic(html_path, g.render_html(verdict).encode())

    mlc = registry.client(tracking_uri)
    mv = mlc.get_model_version(spec.name, cand.version)
    mlc.log_dict(mv.run_id, verdict.to_dict(), "gate/verdict.json")
    mlc.log_text(mv.run_id, g.render_html(verdict), "gate/verdict.html")
    mlc.log_metric(mv.run_id, "gate_passed", 1.0 if verdict.passed else 0.0)
    registry.set_version_tags(
        mlc,
        spec.name,
        cand.version,
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
    spec: ModelSpec,
    run: RunInfo,
    *,
    verdict: dict[str, Any],
    tracking_uri: str | None = None,
    ledger_uri: str | None = None,
) -> dict[str, Any]:
    """Move ``champion`` to the gated version (compare-and-set against the champion the gate
    saw) and append the move to the ledger. A rerun changes nothing and records nothing twice."""
    if not verdict.get("passed"):
        raise RegistryError(
            f"refusing to promote {spec.name}: the verdict did not pass ({verdict.get('summary')})"
        )
    mlc = registry.client(tracking_uri)
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
