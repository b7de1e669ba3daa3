"""The training use-case: resolve → validate → train → evaluate → gate → promote.

Operators call these; so do the CLI, the demo and the benchmarks. Every step takes explicit
inputs (spec, run identity, URIs, a ready ``MlflowClient``), returns a typed result
(``mlcycle.core.results``), and is safe to run again for the same run: it finds what an
earlier try made and reuses it.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mlcycle.core.errors import (
    DataShiftError,
    GateFailedError,
    MlcycleError,
    RegistryError,
    ValidationFailedError,
)
from mlcycle.core.spec import ModelSpec, encode_target, spec_digest
from mlcycle.data import lake as lk
from mlcycle.data.lake import RunFile
from mlcycle.store import ledger, registry

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient

    from mlcycle.core.results import (
        ApprovalResult,
        EvaluationResult,
        GateResult,
        MeasurementResult,
        PromoteResult,
        ResolveResult,
        SliceResult,
        TrainResult,
        TrainSkipped,
        TrustedEvaluation,
        ValidateResult,
    )
    from mlcycle.core.run import RunInfo
    from mlcycle.ml.onnx_twin import Output
    from mlcycle.ml.training import TrainResult as Fitted
    from mlcycle.monitor.shift import ShiftReport

log = logging.getLogger(__name__)

TAG_SKIPPED = "mlcycle.skipped"  # on the MLflow run of a training that had nothing to learn
# The pre-training data check, on the training run and the version: pass | skipped | accepted |
# refused; with the run's reason when a breach was accepted.
TAG_DATA_SHIFT = "mlcycle.data_shift"
TAG_DATA_SHIFT_REASON = "mlcycle.data_shift.accepted_because"
DATA_SHIFT_ARTIFACT = "data_shift/report.json"
SAMPLE_ARTIFACT = "lineage/sample.json"  # which rows a window above data.max_training_rows kept


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
    """Decide which files the run uses and write their manifest (with a digest of their bytes).
    A file that is not readable Parquet is quarantined (by its digest) and ``UnreadableDataError``
    names it; a location outside the allowed inputs is refused (``InputNotAllowedError``)."""
    from mlcycle.core.errors import UnreadableDataError

    lake = lk.Lake(lake_root, spec.name)
    try:
        manifest = lk.resolve_training_data(
            lake,
            window_days=spec.data.training_window_days,
            as_of=as_of,
            batch_uri=batch_uri,
            latest_only=latest_only,
        )
    except UnreadableDataError as exc:
        raise lk.quarantine_unreadable(lake, run.key, exc) from exc
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
    quarantine with the result, and ``ValidationFailedError`` lists each failure; a batch whose
    data cannot be decoded is quarantined too (``UnreadableDataError``)."""
    from mlcycle.core import settings
    from mlcycle.core.errors import UnreadableDataError
    from mlcycle.data.contracts import load_suite_dict, validate_paths
    from mlcycle.reports import pages

    manifest = read_manifest(manifest_uri)
    suite = load_suite_dict(Path(contracts_dir or settings.contracts_dir()) / spec.contract)
    lake = lk.Lake(lake_root, spec.name)
    try:
        # One file at a time, chunk by chunk: memory does not grow with the window or the batch.
        report = validate_paths(suite, manifest.batches)
    except UnreadableDataError as exc:
        raise lk.quarantine_unreadable(lake, run.key, exc) from exc
    lk.write_json(report.to_dict(), lake.run_file(run.key, RunFile.VALIDATION))
    page = pages.validation_page(report.to_dict(), suite)
    lk.write_bytes_atomic(lake.run_file(run.key, RunFile.VALIDATION_PAGE), page.encode())
    if not report.success:
        failed = [b.uri for b in report.failed_batches]
        where = lk.quarantine(lake, run.key, failed, report.to_dict())
        raise ValidationFailedError(
            f"{report.summary()}\nquarantined {len(failed)} batch(es) with the validation result "
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
        "report_uri": lk.uri_of(lake.run_file(run.key, RunFile.VALIDATION_PAGE)),
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
    accept_data_shift: bool = False,
) -> TrainResult | TrainSkipped:
    """Fit, log and register a candidate; alias it ``challenger``.

    Returns a ``TrainSkipped`` without training when the champion was trained on the same data
    with the same spec (nothing could change) unless ``force``. Before fitting, the data is
    checked against the champion's reference profile (``check_data_shift``): a breach raises
    ``DataShiftError`` unless ``accept_data_shift``, which needs the run's reason.
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
        run_id = registry.run_of(existing)
        if mlc.get_run(run_id).info.status == "RUNNING":
            mlc.set_terminated(run_id)  # an earlier try died before finishing its run
        return _result(spec, mlc, str(existing.version), run_id, existing.tags, created=False)
    _, mlflow_run_id = open_run(mlc, spec, run, manifest_uri)
    if accept_data_shift and not run.reason.strip():
        mlc.set_terminated(mlflow_run_id, status="FAILED")
        raise DataShiftError(
            f"{spec.name}: accept_data_shift=true needs a reason; trigger again with reason set to why "
            "this data is right (it is recorded on the MLflow run, the model version and the ledger)"
        )
    if skipped := _skip_reason(mlc, spec, manifest.digest, force, overrides):
        log.info("skipping training: %s", skipped["reason"])
        mlc.set_tag(mlflow_run_id, TAG_SKIPPED, skipped["reason"])
        mlc.set_terminated(mlflow_run_id)
        return skipped

    plan = training_plan(spec, mlc, manifest, now=dt.datetime.now(dt.UTC), force=force, overrides=overrides)
    log.info("training plan: %s (%s)", plan["mode"], plan["why"])
    if plan["mode"] == "incremental" and not plan["added"]:
        why = (
            f"no batch arrived since the data of champion v{plan['parent']}: an incremental update has "
            "nothing to learn. Trigger with force=true for a full retrain"
        )
        mlc.set_tag(mlflow_run_id, TAG_SKIPPED, why)
        mlc.set_terminated(mlflow_run_id)
        return {"skipped": True, "reason": why, "champion_version": str(plan["parent"])}
    incremental = plan["mode"] == "incremental"
    if incremental:
        df = lk.read_parquet([lk.as_path(u) for u, _ in plan["added"]])
        log.info("read %d new rows from %d batch(es) since v%s", len(df), len(plan["added"]), plan["parent"])
    else:
        df = _read_window(spec, mlc, mlflow_run_id, manifest)
        log.info("read %d rows from %d batch(es)", len(df), len(manifest.batches))
    # Above the bound, an estimator that learns in steps gets every row, a batch at a time.
    streamed = not incremental and len(df) < manifest.rows and tr.streams(spec)
    shift = check_data_shift(
        spec, run, mlc, df, lake_root=lake_root, mlflow_run_id=mlflow_run_id, accept=accept_data_shift
    )
    try:
        if incremental:
            parent = registry.load_sklearn(mlc, spec.name, str(plan["parent"]))
            fitted = tr.update(parent, df, spec)
        elif streamed:
            fitted = tr.stream(spec, df, [lk.as_path(u) for u in manifest.batches], overrides)
        else:
            fitted = tr.train(df, spec, overrides)
    except MlcycleError:
        mlc.set_terminated(mlflow_run_id, status="FAILED")  # a bad spec or param: no retry will fix it
        raise
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
    lineage = _lineage(plan, manifest, rows_learned=fitted.rows_learned or len(fitted.train))
    mlc.log_dict(mlflow_run_id, lineage, LINEAGE_ARTIFACT)
    registry.log_params(mlc, mlflow_run_id, {
        "training.mode": plan["mode"], "training.parent_version": plan.get("parent") or "-",
        "training.added_batches": len(plan.get("added") or manifest.batches), "training.rows_learned": lineage["rows_learned"], "training.streamed": streamed,
    })  # fmt: skip
    shift_tags = {
        TAG_DATA_SHIFT: shift.status,
        TAG_TRAINING_MODE: plan["mode"],
        TAG_TRAINING_PARENT: str(plan.get("parent") or ""),
        TAG_UPDATES_SINCE_FULL: str(lineage["updates_since_full"]),
    }
    if shift.accepted:
        shift_tags[TAG_DATA_SHIFT_REASON] = shift.accepted
    registry.set_version_tags(mlc, spec.name, version, shift_tags)
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


# --- incremental updates ----------------------------------------------------------------------

LINEAGE_ARTIFACT = "lineage/training.json"  # on every training run: mode, parent, batches seen/added
TAG_TRAINING_MODE = "training.mode"  # full | incremental
TAG_TRAINING_PARENT = "training.parent"  # the version an incremental update started from
TAG_UPDATES_SINCE_FULL = "training.updates_since_full"


def _digests(manifest: lk.Manifest) -> list[str]:
    """The SHA-256 of each of the manifest's batches, in order (hashed again for a manifest that
    predates recording them)."""
    return manifest.digests or [lk.file_sha256(lk.as_path(u)) for u in manifest.batches]


def _champion_lineage(mlc: MlflowClient, mv: Any) -> dict[str, Any] | None:
    """The training lineage a version logged (``LINEAGE_ARTIFACT``); None for one trained before
    lineage was recorded."""
    from mlflow.exceptions import MlflowException

    try:
        return cast("dict[str, Any]", registry.load_run_json(mlc, registry.run_of(mv), LINEAGE_ARTIFACT))
    except (MlflowException, OSError) as exc:
        log.info("v%s has no training lineage (%s): the next candidate is trained fully", mv.version, exc)
        return None


def training_plan(
    spec: ModelSpec,
    mlc: MlflowClient,
    manifest: lk.Manifest,
    *,
    now: dt.datetime,
    force: bool,
    overrides: Any,
) -> dict[str, Any]:
    """How this run makes its candidate: ``{"mode": "full", "why"}``, or ``{"mode":
    "incremental", "why", "parent", "added": [(uri, sha256)], "seen", "updates_since_full",
    "last_full"}`` where ``added`` are the window's batches the champion never learned (by
    content: a rewritten file is new data). Full when the spec says so, for the first version,
    with ``force`` or estimator overrides, when the champion has no lineage or another spec, and
    every ``training.full_retrain_every`` updates or ``full_retrain_after_days`` days."""
    policy = spec.training

    def full(why: str) -> dict[str, Any]:
        return {"mode": "full", "why": why}

    if policy.mode == "full":
        return full("training.mode is full")
    champion = registry.version_by_alias(mlc, spec.name, registry.CHAMPION)
    if champion is None:
        return full("no champion yet: the first version is trained on the whole window")
    if force or overrides:
        return full("force or estimator overrides: trained on the whole window")
    if champion.tags.get(registry.TAG_SPEC) != spec_digest(spec):
        return full(f"the spec's features, estimator or data changed since champion v{champion.version}")
    lineage = _champion_lineage(mlc, champion)
    if lineage is None:
        return full(f"champion v{champion.version} has no training lineage to continue from")
    updates, last_full = int(lineage["updates_since_full"]), dt.datetime.fromisoformat(lineage["last_full"])
    if updates >= policy.full_retrain_every:
        return full(
            f"{updates} incremental updates since the last full training (training.full_retrain_every)"
        )
    age = (now - last_full).total_seconds() / 86400
    if age >= policy.full_retrain_after_days:
        return full(f"the last full training is {age:.1f} days old (training.full_retrain_after_days)")
    seen = {b["sha256"] for b in lineage["seen"]}
    digests = _digests(manifest)
    added = [(u, d) for u, d in zip(manifest.batches, digests, strict=True) if d not in seen]
    return {
        "mode": "incremental",
        "why": f"{len(added)} batch(es) since champion v{champion.version}'s data, update {updates + 1} "
        f"of at most {policy.full_retrain_every} before a full retrain",
        "parent": str(champion.version),
        "added": added,
        "seen": lineage["seen"],
        "updates_since_full": updates,
        "last_full": lineage["last_full"],
    }


def _lineage(plan: dict[str, Any], manifest: lk.Manifest, *, rows_learned: int) -> dict[str, Any]:
    """What a version learned: its mode and parent, the batches added by this training, and every
    batch (by content) its weights have seen, which the next incremental update continues from."""
    digests = _digests(manifest)
    if plan["mode"] == "incremental":
        added = [{"uri": u, "sha256": d} for u, d in plan["added"]]
        return {
            "mode": "incremental", "why": plan["why"], "parent": plan["parent"], "added": added,
            "rows_learned": rows_learned, "seen": [*plan["seen"], *added],
            "updates_since_full": plan["updates_since_full"] + 1, "last_full": plan["last_full"],
        }  # fmt: skip
    batches = [{"uri": u, "sha256": d} for u, d in zip(manifest.batches, digests, strict=True)]
    return {
        "mode": "full", "why": plan["why"], "parent": None, "added": batches, "rows_learned": rows_learned,
        "seen": batches, "updates_since_full": 0,
        "last_full": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }  # fmt: skip


def _read_window(
    spec: ModelSpec, mlc: MlflowClient, mlflow_run_id: str, manifest: lk.Manifest
) -> pd.DataFrame:
    """The training window as one frame; above ``data.max_training_rows``, a bounded stratified
    sample read batch by batch (``data.sample``), its exact composition logged with the run."""
    paths = [lk.as_path(u) for u in manifest.batches]
    bound = spec.data.max_training_rows
    if bound is None or manifest.rows <= bound:
        return lk.read_parquet(paths)
    from mlcycle.data.sample import read_sample

    digests = _digests(manifest)
    sample = read_sample(spec, paths, digests, [lk.count_rows([p]) for p in paths])
    mlc.log_dict(mlflow_run_id, sample.lineage, SAMPLE_ARTIFACT)
    registry.log_params(mlc, mlflow_run_id, {
        "data.max_training_rows": bound, "data.sampled_from_rows": manifest.rows,
        "data.sample_keys_sha256": sample.lineage["keys_sha256"],
    })  # fmt: skip
    log.info(
        "window of %d rows above data.max_training_rows: kept a stratified sample of %d",
        manifest.rows,
        len(sample.frame),
    )
    return sample.frame


def check_data_shift(
    spec: ModelSpec,
    run: RunInfo,
    mlc: MlflowClient,
    df: pd.DataFrame,
    *,
    lake_root: str,
    mlflow_run_id: str,
    accept: bool = False,
) -> ShiftReport:
    """Compare training rows ``df`` with the champion's reference profile (``monitor.shift``)
    and record the report: in the run folder (``data_shift.json``), on the MLflow run (artifact
    and tag). A breach raises ``DataShiftError`` naming every breached check, unless ``accept``
    (then the run's reason is recorded beside it). Skipped without a champion or its profile."""
    from mlcycle.monitor import shift

    champion = registry.version_by_alias(mlc, spec.name, registry.CHAMPION)
    if champion is None:
        report = shift.skipped_report(spec, len(df), "no champion yet: nothing to compare with")
    else:
        try:
            profile = registry.load_profile(mlc, champion)
        except RegistryError as exc:
            log.warning("data shift check skipped: %s", exc)
            report = shift.skipped_report(spec, len(df), str(exc), str(champion.version))
        else:
            report = shift.check_shift(spec, profile, df, champion_version=str(champion.version))
    if report.breaches and accept:
        report.accepted = run.reason
    path = run_file(spec, lake_root, run, RunFile.DATA_SHIFT)
    lk.write_json(report.to_dict(), path)
    mlc.log_dict(mlflow_run_id, report.to_dict(), DATA_SHIFT_ARTIFACT)
    mlc.set_tag(mlflow_run_id, TAG_DATA_SHIFT, report.status)
    if report.status == "refused":
        mlc.set_terminated(mlflow_run_id, status="FAILED")
        listed = [f"  - {c.check} {c.detail}" for c in report.breaches[: shift.MAX_LISTED]]
        if (more := len(report.breaches) - shift.MAX_LISTED) > 0:
            listed.append(f"  - and {more} more")
        raise DataShiftError(
            f"{spec.name}: refusing to train on {report.rows} rows: they depart from champion "
            f"v{report.champion_version}'s reference profile in {len(report.breaches)} check(s):\n"
            + "\n".join(listed)
            + f"\nNothing was trained. Full report: {lk.uri_of(path)} (and {DATA_SHIFT_ARTIFACT} on the "
            "MLflow run). If the data is right (the world changed), trigger with accept_data_shift=true "
            "and a reason to train anyway."
        )
    if report.status == "accepted":
        mlc.set_tag(mlflow_run_id, TAG_DATA_SHIFT_REASON, run.reason)
        log.warning(
            "training despite a data shift, accepted by the run (%r): %s", run.reason, report.summary()
        )
    return report


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
    """Score the candidate and the current champion on the same holdout rows, and on the
    trusted evaluation set when one exists (``_on_trusted_set``); time both in turns in this
    process, so the gate can compare their latencies as a ratio that load does not flip."""
    from mlcycle.ml import evaluation as ev

    path = run_file(spec, lake_root, run, RunFile.EVALUATION)
    champion_mv = registry.version_by_alias(mlc, spec.name, registry.CHAMPION)
    rival = champion_mv is not None and str(champion_mv.version) != str(version)
    if path.exists():
        earlier: EvaluationResult = lk.read_json(path)
        # Reused only while the champion it compared against is still the champion.
        expected = str(champion_mv.version) if champion_mv is not None and rival else None
        earlier_champion = earlier.get("champion")
        compared = earlier_champion["version"] if earlier_champion else None
        if earlier.get("candidate", {}).get("version") == str(version) and compared == expected:
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
            "metrics": ev.all_metrics(
                spec.task, y, s, threshold=spec.scoring.decision_threshold, classes=ev.classes_of(spec)
            ),
            "latency_ms_per_1k_rows": None,  # timed below, in turns with the champion
            "model_size_mb": float(size) if size else None,
        }, s

    candidate, cand_scores = measure(version)
    champion, confidence, shadow, champ_scores = None, None, None, None
    trusted: TrustedEvaluation | None = None
    if champion_mv is not None and rival:
        champion, champ_scores = measure(str(champion_mv.version))
        confidence = ev.paired_bootstrap(
            spec.gate.primary_metric,
            y,
            cand_scores,
            champ_scores,
            n=spec.gate.bootstrap_resamples,
            threshold=spec.scoring.decision_threshold,
            classes=ev.classes_of(spec),
        )
        if spec.gate.shadow.required:
            shadow = _shadow_on_newest_batch(
                spec, lake_root, models[str(version)], models[str(champion_mv.version)]
            )
        trusted = _on_trusted_set(
            spec,
            mlc,
            lake_root=lake_root,
            version=str(version),
            candidate=models[str(version)],
            champion=models[str(champion_mv.version)],
            holdout=holdout,
        )
    elif champion_mv is not None:
        log.warning("v%s is already the champion; evaluating it without a comparison", version)
    measured = [m for m in (candidate, champion) if m is not None]
    timed = ev.latencies_interleaved([models[m["version"]] for m in measured], X, spec.task)
    for m, latency in zip(measured, timed, strict=True):
        m["latency_ms_per_1k_rows"] = latency
    slices = spec.gate.slices
    out: EvaluationResult = {
        "candidate": candidate,
        "champion": champion,
        "confidence": confidence,
        "shadow": shadow,
        "holdout_rows": len(holdout),
        "trusted": trusted,
        "slices": cast(
            "list[SliceResult]",
            ev.slice_metrics(
                spec.gate.primary_metric,
                y,
                holdout,
                columns=slices.columns,
                candidate=cand_scores,
                champion=champ_scores,
                min_rows=slices.min_rows,
                threshold=spec.scoring.decision_threshold,
                classes=ev.classes_of(spec),
            ),
        ),
        "class_rows": {c: int((y == c).sum()) for c in classes} if (classes := ev.classes_of(spec)) else None,
    }
    lk.write_json(out, path)
    scored = {str(version): cand_scores}
    if champion is not None:
        scored[champion["version"]] = champ_scores
    plotted = ev.curves(spec.task, y, scored, classes=ev.classes_of(spec))
    if spec.features.text:
        from mlcycle.ml.text import top_terms

        plotted["top_terms"] = top_terms(models[str(version)], spec)
    lk.write_json(plotted, run_file(spec, lake_root, run, RunFile.CURVES))
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


def _on_trusted_set(
    spec: ModelSpec,
    mlc: MlflowClient,
    *,
    lake_root: str,
    version: str,
    candidate: Any,
    champion: Any,
    holdout: pd.DataFrame,
) -> TrustedEvaluation | None:
    """Candidate and champion on the newest version of the trusted evaluation set, leaving out
    the rows the candidate was fitted on (a model is never judged on its training rows). None
    when there is no set yet; ``skipped`` says why a set could not be used."""
    import numpy as np

    from mlcycle.ml import evaluation as ev

    versions = lk.trusted_versions(lk.Lake(lake_root, spec.name))
    if not versions:
        return None
    entry = versions[-1]
    out: TrustedEvaluation = {
        "version": entry.version,
        "uri": entry.uri,
        "digest": entry.digest,
        "rows": entry.rows,
        "rows_used": 0,
        "excluded_training_rows": 0,
        "candidate": None,
        "champion": None,
        "skipped": None,
    }
    columns = [*spec.features.all, spec.data.target]
    if missing := [c for c in columns if c not in entry.columns]:
        out["skipped"] = f"it lacks columns {missing} of the spec; the next promotion starts a new set"
        return out
    rows = lk.read_trusted(entry)
    trained = _training_fingerprints(
        spec, mlc, lake_root=lake_root, version=version, holdout=holdout, columns=columns
    )
    if trained is not None:
        keep = ~np.isin(ev.row_fingerprints(rows, columns), trained)
        out["excluded_training_rows"] = int((~keep).sum())
        rows = rows[keep]
    out["rows_used"] = len(rows)
    if len(rows) < spec.gate.trusted.min_rows:
        out["skipped"] = (
            f"{len(rows)} rows left after leaving out {out['excluded_training_rows']} the candidate trained "
            f"on, fewer than gate.trusted.min_rows ({spec.gate.trusted.min_rows})"
        )
        return out
    X, y = rows[spec.features.all], rows[spec.data.target].to_numpy()
    cut, classes = spec.scoring.decision_threshold, ev.classes_of(spec)
    out["candidate"] = cand = ev.all_metrics(
        spec.task, y, ev.scores(candidate, X, spec.task), threshold=cut, classes=classes
    )
    out["champion"] = champ = ev.all_metrics(
        spec.task, y, ev.scores(champion, X, spec.task), threshold=cut, classes=classes
    )
    primary = spec.gate.primary_metric
    log.info(
        "trusted set v%d, %d of %d rows: candidate %s=%.4f, champion %s=%.4f",
        entry.version,
        len(rows),
        entry.rows,
        primary,
        cand[primary],
        primary,
        champ[primary],
    )
    return out


def _training_fingerprints(
    spec: ModelSpec,
    mlc: MlflowClient,
    *,
    lake_root: str,
    version: str,
    holdout: pd.DataFrame,
    columns: list[str],
) -> np.ndarray | None:
    """Fingerprints (``evaluation.row_fingerprints``) of the rows ``version`` was fitted on: its
    training run's manifest minus its holdout. None, with a warning, when that manifest is gone
    or is not the data the version records."""
    import numpy as np

    from mlcycle.core.run import run_key
    from mlcycle.ml import evaluation as ev

    tags = mlc.get_model_version(spec.name, version).tags
    airflow_run = tags.get(registry.TAG_RUN_ID)
    path = (
        lk.Lake(lake_root, spec.name).run_file(run_key(airflow_run), RunFile.MANIFEST)
        if airflow_run
        else None
    )
    manifest = read_manifest(lk.uri_of(path)) if path is not None and path.exists() else None
    if (
        manifest is None
        or manifest.digest != tags.get(registry.TAG_DIGEST)
        or not all(lk.as_path(u).exists() for u in manifest.batches)
    ):
        log.warning(
            "the training data of v%s cannot be read again (manifest %s): the trusted set is used whole, "
            "rows the candidate trained on included",
            version,
            lk.uri_of(path) if path is not None else "unknown",
        )
        return None
    frame = lk.read_parquet([lk.as_path(u) for u in manifest.batches], columns=columns)
    if spec.data.target in frame.columns:  # the holdout and the trusted set hold encoded labels
        frame[spec.data.target] = encode_target(spec, frame[spec.data.target])
    seen = ev.row_fingerprints(frame, columns)
    return np.setdiff1d(seen, ev.row_fingerprints(holdout, columns))


SHADOW_BINS = 30


def _shadow_on_newest_batch(
    spec: ModelSpec, lake_root: str, candidate: Any, champion: Any
) -> dict[str, Any] | None:
    """Candidate vs champion on the newest production batch (labels not needed): how many
    decisions would change and how far scores move if the candidate were served."""
    import numpy as np

    from mlcycle.ml import evaluation as ev

    lake = lk.Lake(lake_root, spec.name)
    # The newest batch whose content never failed (a good file named like a bad one counts).
    quarantined = lake.quarantine_index()
    newest = next((p for _, p in reversed(lake.batches()) if not quarantined.find(p)), None)
    if newest is None:
        return None
    X: pd.DataFrame = lk.read_parquet([newest], columns=spec.features.all)
    shift = ev.score_shift(ev.scores(candidate, X, spec.task), ev.scores(champion, X, spec.task))
    counts, edges = np.histogram(shift, bins=SHADOW_BINS)
    out: dict[str, Any] = {
        "batch": newest.name,
        "rows": len(X),
        "mean_abs_diff": float(np.abs(shift).mean()),
        # Candidate minus champion score per row: the gate page plots it.
        "histogram": {"counts": counts.tolist(), "edges": [float(e) for e in edges]},
    }
    if spec.task.classifies:
        out["agreement"] = float((candidate.predict(X) == champion.predict(X)).mean())
    return out


# --- 5. gate --------------------------------------------------------------------------------


def gate(
    spec: ModelSpec,
    run: RunInfo,
    mlc: MlflowClient,
    *,
    evaluation: EvaluationResult,
    lake_root: str,
    overrides: dict[str, Any] | None = None,
) -> GateResult:
    """Apply the spec's gate policy; write the verdict (JSON + HTML) to the lake and to the
    candidate's MLflow run, tag the version. A refusal is a result (``passed`` False), not an
    error: the run that judged a candidate worked; :func:`promote` refuses to act on it.
    ``overrides`` (the run's ``gate_overrides``) change the spec's gate for this run only; they
    are recorded in the verdict, its summary, the version's tags and the ledger."""
    from mlcycle.ml import gate as g
    from mlcycle.reports import pages

    cand = g.Measurement(**evaluation["candidate"])
    champion = evaluation.get("champion")
    champ = g.Measurement(**champion) if champion else None
    from mlcycle.core.spec import gate_with_overrides

    policy = gate_with_overrides(spec.gate, overrides, task=spec.task, classes=spec.data.classes)
    verdict = g.decide(
        spec.name,
        policy,
        cand,
        champ,
        confidence=evaluation.get("confidence"),
        shadow=evaluation.get("shadow"),
        trusted=cast("dict[str, Any] | None", evaluation.get("trusted")),
        slices=cast("list[dict[str, Any]] | None", evaluation.get("slices")),
        class_rows=evaluation.get("class_rows"),
    )
    verdict.overrides = overrides or None
    json_path = run_file(spec, lake_root, run, RunFile.VERDICT_JSON)
    html_path = run_file(spec, lake_root, run, RunFile.VERDICT)
    verdict.evidence = {"verdict_json": lk.uri_of(json_path), "verdict_html": lk.uri_of(html_path)}
    curves_path = run_file(spec, lake_root, run, RunFile.CURVES)
    page = pages.gate_page(
        verdict.to_dict(), curves=lk.read_json(curves_path) if curves_path.exists() else None
    )
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
    return {
        "passed": verdict.passed,
        "version": str(cand.version),
        "champion_version": verdict.champion_version,
        "bootstrap": verdict.bootstrap,
        "summary": verdict.summary(),
        "verdict_uri": lk.uri_of(json_path),
        "report_uri": lk.uri_of(html_path),
        "overrides": verdict.overrides,
        "approval": policy.approval.model_dump() if verdict.passed else None,
    }


def refusal(spec: ModelSpec, verdict: GateResult) -> GateFailedError:
    """The error that says a verdict refused its candidate: what failed, what stays, where to look."""
    summary = verdict.get("summary") or "gate verdict did not pass"
    return GateFailedError(
        f"{spec.name} {summary}\nv{verdict.get('version')} stays registered but is not promoted; "
        f"champion unchanged (v{verdict.get('champion_version')}). "
        f"Full verdict: {verdict.get('report_uri') or 'none was written'}"
    )


def rejection(
    spec: ModelSpec, verdict: GateResult, approval: ApprovalResult | None
) -> GateFailedError | None:
    """The error that says nobody approved a candidate whose gate asks for approval, else None."""
    policy = verdict.get("approval") or {}
    if not policy.get("required"):
        return None
    if approval is None or not approval.get("required"):
        detail = "the approval step did not run"
    elif approval.get("approved"):
        return None
    else:
        detail = approval["detail"]
    return GateFailedError(
        f"{spec.name} v{verdict.get('version')} passed its gate but was not approved: {detail}.\n"
        f"v{verdict.get('version')} stays registered but is not promoted; champion unchanged "
        f"(v{verdict.get('champion_version')}). Verdict: {verdict.get('report_uri') or 'none was written'}"
    )


# --- 6. promote -----------------------------------------------------------------------------


def promote(
    spec: ModelSpec,
    run: RunInfo,
    mlc: MlflowClient,
    *,
    verdict: GateResult,
    approval: ApprovalResult | None = None,
    ledger_uri: str | None = None,
    lake_root: str | None = None,
) -> PromoteResult:
    """Move ``champion`` to the gated version (compare-and-set against the champion the gate
    saw), append the move to the ledger and add the version's holdout rows to the trusted
    evaluation set (``lake_root``, default ``MLCYCLE_LAKE_ROOT``). A rerun changes nothing and
    records nothing twice. A refused verdict raises ``GateFailedError`` (:func:`refusal`), and so
    does an approval the gate asked for and nobody gave (:func:`rejection`); an approval given is
    recorded in the ledger (the approver as the actor, their comment in the reason)."""
    from mlcycle.core.errors import PromotionConflictError

    if not verdict.get("passed"):
        raise refusal(spec, verdict)
    if (denied := rejection(spec, verdict, approval)) is not None:
        raise denied
    version = str(verdict["version"])
    approver = approval["by"] if approval and approval.get("approved") else None
    try:
        # One move of the champion at a time across every task sharing the ledger, so the
        # compare-and-set sees a concurrent promotion that moved it first; recorded under the lock.
        with ledger.alias_lock(
            spec.name, registry.CHAMPION, holder=f"{run.dag_id}/{run.run_id}", uri=ledger_uri
        ) as lock:
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
                    actor=f"{approver or run.actor}:{run.dag_id}",
                    reason=(run.reason or f"gate passed ({run.trigger} run)")
                    + (f"; {approval['detail']}" if approval and approver else ""),
                    evidence_uri=verdict.get("report_uri"),
                    verdict=verdict.get("summary"),
                    dag_id=run.dag_id,
                    run_id=run.run_id,
                ),
                lock=lock,
            )
    except PromotionConflictError as exc:
        raise _superseded(spec, run, mlc, verdict=verdict, conflict=exc, ledger_uri=ledger_uri) from exc
    log.info(
        "%s@champion: v%s -> v%s%s",
        spec.name,
        previous or "-",
        version,
        " (already there; ledger entry kept)" if already and not recorded else "",
    )
    _add_to_trusted_set(spec, mlc, version, lake_root)
    return {
        "promoted": not already,
        "version": version,
        "previous_version": previous,
        "ledger_recorded": recorded,
    }


def _superseded(
    spec: ModelSpec,
    run: RunInfo,
    mlc: MlflowClient,
    *,
    verdict: GateResult,
    conflict: Exception,
    ledger_uri: str | None,
) -> Exception:
    """A candidate passed its gate, but the champion moved to another version since (a run
    racing it promoted first): tag the version and append a ``superseded`` ledger entry (once
    per run), and return the error that ends the task without retries."""
    from mlcycle.core.errors import PromotionConflictError

    version, judged_against = str(verdict["version"]), verdict.get("champion_version")
    current = registry.version_by_alias(mlc, spec.name, registry.CHAMPION)
    winner = str(current.version) if current else "-"
    registry.set_version_tags(mlc, spec.name, version, {registry.TAG_SUPERSEDED_BY: winner})
    ledger.append(
        ledger.Entry(
            model=spec.name,
            alias=registry.CHAMPION,
            previous_version=judged_against,
            new_version=version,
            action="superseded",
            actor=f"{run.actor}:{run.dag_id}",
            reason=f"passed its gate against v{judged_against or '-'}, but v{winner} became champion first",
            evidence_uri=verdict.get("report_uri"),
            verdict=verdict.get("summary"),
            dag_id=run.dag_id,
            run_id=run.run_id,
        ),
        ledger_uri,
    )
    log.warning("%s v%s superseded: v%s became champion first", spec.name, version, winner)
    return PromotionConflictError(
        f"{conflict}\nv{version} stays registered and is recorded as superseded by v{winner} (ledger "
        f"action 'superseded', version tag {registry.TAG_SUPERSEDED_BY}); the champion stays v{winner}. "
        f"To judge a candidate against v{winner}, trigger train_{spec.name} again."
    )


def _add_to_trusted_set(spec: ModelSpec, mlc: MlflowClient, version: str, lake_root: str | None) -> None:
    """The promoted version's holdout rows (validated, and checked against the previous
    champion's reference before training) join the trusted evaluation set, once per version."""
    from mlcycle.core import settings

    holdout_uri = mlc.get_model_version(spec.name, version).tags.get(registry.TAG_HOLDOUT)
    if not holdout_uri or not lk.as_path(holdout_uri).exists():
        log.warning(
            "v%s has no holdout file (%s): the trusted evaluation set is not extended",
            version,
            holdout_uri or f"no {registry.TAG_HOLDOUT} tag",
        )
        return
    data = spec.data
    policy = spec.gate.trusted
    lk.add_trusted_rows(
        lk.Lake(lake_root or settings.lake_root(), spec.name),
        lk.read_parquet([lk.as_path(holdout_uri)]),
        model_version=version,
        columns=list(dict.fromkeys([data.key_column, data.time_column, *spec.features.all, data.target])),
        key_column=data.key_column,
        time_column=data.time_column,
        max_rows=policy.max_rows,
        max_rows_per_version=policy.max_rows_per_version,
    )
