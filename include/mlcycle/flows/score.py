"""The scoring steps as plain functions: choose the model → plan partitions → score each
(with the challenger in shadow) → merge, summarise, report.

Like ``mlcycle.flows.train``: explicit inputs, small JSON-serialisable outputs, safe to rerun.
Predictions land at ``<lake>/<model>/predictions/<batch file name>`` (one file per batch,
replaced atomically by a rerun); per-run parts, the shadow comparison and the report
live under ``<lake>/<model>/runs/<run>/scoring/``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mlcycle.core.errors import RegistryError
from mlcycle.data import lake as lk
from mlcycle.data.lake import RunFile
from mlcycle.ml import scoring
from mlcycle.store import registry

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlcycle.core.results import ModelChoice, PartitionResult, PartitionSpec, ScoringReport
    from mlcycle.core.run import RunInfo
    from mlcycle.core.spec import ModelSpec

log = logging.getLogger(__name__)


def choose_model(
    spec: ModelSpec, mlc: MlflowClient, *, alias: str | None = "champion", version: str | None = None
) -> ModelChoice:
    """The version to score with (an explicit version wins over the alias) and, when the
    champion is served and a different challenger exists, the challenger to run in shadow."""
    if version:
        try:
            mv = mlc.get_model_version(spec.name, str(version))
        except Exception:
            raise RegistryError(
                f"{spec.name} has no version {version}; see `mlcycle champion {spec.name}`"
            ) from None
        alias = None
    else:
        alias = alias or registry.CHAMPION
        aliased = registry.version_by_alias(mlc, spec.name, alias)
        if aliased is None:
            raise RegistryError(
                f"{spec.name}@{alias} is not set: nothing to score with. Train a model first "
                f"(trigger train_{spec.name}) or pass a version."
            )
        mv = aliased
    shadow = None
    if alias == registry.CHAMPION:
        challenger = registry.version_by_alias(mlc, spec.name, registry.CHALLENGER)
        if challenger is not None and str(challenger.version) != str(mv.version):
            shadow = challenger
    engine, why = engine_for(spec, mv.tags, str(mv.version))
    log.info("%s v%s scores with %s: %s", spec.name, mv.version, engine, why)
    return {
        "version": str(mv.version),
        "alias": alias,
        "engine": engine,
        "engine_reason": why,
        "shadow_version": str(shadow.version) if shadow else None,
        "shadow_engine": engine_for(spec, shadow.tags, str(shadow.version))[0] if shadow else None,
    }


def engine_for(spec: ModelSpec, tags: dict[str, str], version: str) -> tuple[str, str]:
    """``onnx`` when the version's ONNX twin passed its parity check at training (its
    ``tags``, see ``registry.onnx_tags``) and the spec allows it, else ``sklearn``; with the reason."""
    if spec.scoring.engine == "sklearn":
        return "sklearn", "the spec sets scoring.engine: sklearn"
    status = tags.get(registry.TAG_ONNX)
    if status == "passed":
        return (
            "onnx",
            f"its ONNX twin passed parity at training (max difference {tags.get(registry.TAG_ONNX_DIFF)})",
        )
    if status is None:
        return "sklearn", f"v{version} has no ONNX twin (trained before ONNX export)"
    return "sklearn", f"ONNX twin {status}: {tags.get(registry.TAG_ONNX_REASON) or '-'}"


def load_model(mlc: MlflowClient, spec: ModelSpec, version: str, engine: str) -> Any:
    """A model with ``predict`` (and ``predict_proba``/``classes_``) for the engine chosen."""
    if engine == "onnx":
        from mlcycle.ml.onnx_twin import OnnxModel

        return OnnxModel(registry.load_onnx(mlc, spec.name, version), spec)
    return registry.load_sklearn(mlc, spec.name, version)


def plan(batch_uri: str, rows_per_partition: int) -> list[PartitionSpec]:
    """``batch_uri`` cut into row ranges of at most ``rows_per_partition`` rows, as XCom-ready dicts."""
    return [
        {"index": p.index, "start": p.start, "stop": p.stop}
        for p in scoring.plan_partitions(batch_uri, rows_per_partition)
    ]


def _scoring_dir(spec: ModelSpec, lake_root: str, run: RunInfo) -> lk.LakePath:
    return lk.Lake(lake_root, spec.name).run_file(run.key, RunFile.SCORING).parent


def score_partition(
    spec: ModelSpec,
    run: RunInfo,
    mlc: MlflowClient,
    *,
    batch_uri: str,
    partition: PartitionSpec,
    model: ModelChoice,
    lake_root: str,
    chunk_rows: int = scoring.DEFAULT_CHUNK_ROWS,
) -> PartitionResult:
    """Score one partition (and the shadow, if any) into ``runs/<run>/scoring/``; a rerun replaces it."""
    part = scoring.Partition(**partition)
    served = load_model(mlc, spec, model["version"], model.get("engine") or "sklearn")
    shadow_version = model.get("shadow_version")
    shadow = (
        load_model(mlc, spec, shadow_version, model.get("shadow_engine") or "sklearn")
        if shadow_version
        else None
    )
    base = _scoring_dir(spec, lake_root, run)
    result = scoring.score_file(
        served,
        spec,
        batch_uri,
        lk.uri_of(base / f"part-{part.index:05d}.parquet"),
        meta=scoring.output_meta(spec, model["version"], model.get("alias"), run.run_id),
        chunk_rows=chunk_rows,
        partition=part,
        shadow_model=shadow,
        shadow_uri=lk.uri_of(base / f"shadow-{part.index:05d}.parquet") if shadow is not None else None,
    )
    return {
        "index": part.index,
        "part_uri": result.output_uri,
        "shadow_uri": result.shadow_uri,
        "rows": result.rows,
        "seconds": round(result.seconds, 4),
    }


def finalize(
    spec: ModelSpec,
    run: RunInfo,
    mlc: MlflowClient,
    *,
    batch_uri: str,
    parts: list[PartitionResult],
    model: ModelChoice,
    lake_root: str,
) -> ScoringReport:
    """Merge the parts into the batch's prediction file, summarise the shadow comparison,
    log both to MLflow and write the scoring report."""
    parts = sorted(parts, key=lambda p: p["index"])
    lake = lk.Lake(lake_root, spec.name)
    output = lake.predictions / lk.as_path(batch_uri).name
    part_uris = [p["part_uri"] for p in parts]
    if all(lk.as_path(u).exists() for u in part_uris):
        rows = scoring.merge_parts(part_uris, lk.uri_of(output))
    else:  # a retry after an earlier try merged and cleaned up: the output is there
        rows = lk.count_rows([output]) if output.exists() else -1
    expected = sum(p["rows"] for p in parts)
    if rows != expected:
        raise RegistryError(f"merged {rows} rows but the parts scored {expected}; rerun the scoring")
    shadow = scoring.shadow_summary([uri for p in parts if (uri := p.get("shadow_uri"))], spec.task)
    seconds = sum(p["seconds"] for p in parts)
    lake_run = lk.Lake(lake_root, spec.name)
    flips_sample = shadow.pop("flips_sample", None)
    report: dict[str, Any] = {
        "model": spec.name,
        "version": model["version"],
        "alias": model.get("alias"),
        "shadow_version": model.get("shadow_version"),
        "engine": model.get("engine", "sklearn"),
        "engine_reason": model.get("engine_reason", ""),
        "shadow_engine": model.get("shadow_engine"),
        "batch_uri": batch_uri,
        "output_uri": lk.uri_of(output),
        "rows": rows,
        "partitions": len(parts),
        "scoring_seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds, 1) if seconds else None,
        "shadow": shadow if model.get("shadow_version") else None,
        "run_id": run.run_id,
    }
    from mlcycle.reports import pages

    lk.write_json(report, lake_run.run_file(run.key, RunFile.SCORING_JSON))
    if flips_sample:
        lk.write_json(flips_sample, lake_run.run_file(run.key, RunFile.SHADOW_FLIPS))
    html_path = lake_run.run_file(run.key, RunFile.SCORING)
    lk.write_bytes_atomic(html_path, pages.scoring_page(report, flips_sample or []).encode())
    report["report_uri"] = lk.uri_of(html_path)
    report["mlflow_run_id"] = _log_to_mlflow(spec, run, report, mlc)
    for p in parts:  # last, so a retry of this step can merge again
        part = lk.as_path(p["part_uri"])
        if part.exists():
            part.unlink()
    return report  # type: ignore[return-value]


def open_run(mlc: MlflowClient, spec: ModelSpec, run: RunInfo) -> tuple[str, str]:
    """The MLflow run in ``<model>-scoring`` that records this Airflow run: (experiment id, run
    id), found again on a retry. Opened before the work, so its link works even on a failure."""
    return registry.run_for_airflow_run(mlc, f"{spec.name}-scoring", run, "score")


def _log_to_mlflow(spec: ModelSpec, run: RunInfo, report: dict[str, Any], mlc: MlflowClient) -> str:
    """One MLflow run per Airflow scoring run (found again on a rerun) in ``<model>-scoring``."""
    _, run_id = open_run(mlc, spec, run)
    mlc.set_tag(run_id, "model.version", report["version"])
    metrics = {"rows": report["rows"], "rows_per_second": report["rows_per_second"] or 0.0}
    for key, value in (report.get("shadow") or {}).items():
        if isinstance(value, int | float):
            metrics[f"shadow_{key}"] = value
    registry.log_metrics(mlc, run_id, metrics)
    mlc.log_dict(run_id, report, "scoring/report.json")
    mlc.set_terminated(run_id)
    return run_id


def expected_columns(spec: ModelSpec, classes: list[Any]) -> list[str]:
    """Columns of a prediction file, for readers and tests."""
    cols = [spec.data.key_column, "prediction"]
    if spec.task.classifies:
        cols += [f"proba_{c}" for c in classes]
    return [*cols, "model_name", "model_version", "model_alias", "run_id", "scored_at"]
