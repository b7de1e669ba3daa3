"""The scoring steps as plain functions: choose the model → plan partitions → score each
(with the challenger in shadow) → merge, summarise, report.

Like ``mlcycle.flows.train``: explicit inputs, small JSON-serialisable outputs, safe to rerun.
Predictions land at ``<lake>/<model>/predictions/<batch file name>`` (one file per batch,
replaced atomically by a rerun); per-run parts, the shadow comparison and the report
live under ``<lake>/<model>/runs/<run>/scoring/``.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from mlcycle.core.errors import RegistryError, SpecError
from mlcycle.data import lake as lk
from mlcycle.data.lake import RunFile
from mlcycle.ml import scoring
from mlcycle.store import registry

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlcycle.core.results import ModelChoice, PartitionResult, PartitionSpec, ScoringReport
    from mlcycle.core.run import RunInfo
    from mlcycle.core.spec import ModelSpec
    from mlcycle.ml.beam_job import BeamJob

log = logging.getLogger(__name__)

ENGINES = ("auto", "sklearn", "beam")  # the values of scoring.engine and of the run's engine param
CHUNKED, BEAM = "chunked", "beam"  # what drives a batch: score_file by chunks, or a Beam pipeline


def requested_engine(spec: ModelSpec, engine: str | None = None) -> str:
    """The engine a run asks for: its ``engine`` param when given, else the spec's ``scoring.engine``."""
    value = engine or spec.scoring.engine
    if value not in ENGINES:
        raise SpecError(f"engine {value!r} is not one of {list(ENGINES)}")
    return value


def batch_engine(spec: ModelSpec, engine: str | None = None) -> str:
    """What drives the batch: ``beam`` (an Apache Beam pipeline) or ``chunked`` (``score_file``)."""
    return BEAM if requested_engine(spec, engine) == "beam" else CHUNKED


def choose_model(
    spec: ModelSpec,
    mlc: MlflowClient,
    *,
    alias: str | None = "champion",
    version: str | None = None,
    engine: str | None = None,
) -> ModelChoice:
    """The version to score with (an explicit version wins over the alias) and, when the
    champion is served and a different challenger exists, the challenger to run in shadow.
    ``engine``: the run's choice of engine (None: the spec's)."""
    requested = requested_engine(spec, engine)
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
    engine, why = engine_for(spec, mv.tags, str(mv.version), requested)
    driver = batch_engine(spec, requested)
    log.info("%s v%s scores with %s (%s engine): %s", spec.name, mv.version, engine, driver, why)
    return {
        "version": str(mv.version),
        "alias": alias,
        "engine": engine,
        "engine_reason": why,
        "shadow_version": str(shadow.version) if shadow else None,
        "shadow_engine": engine_for(spec, shadow.tags, str(shadow.version), requested)[0] if shadow else None,
        "batch_engine": driver,
    }


def engine_for(
    spec: ModelSpec, tags: dict[str, str], version: str, requested: str | None = None
) -> tuple[str, str]:
    """``onnx`` when the version's ONNX twin passed its parity check at training (its
    ``tags``, see ``registry.onnx_tags``) and the spec allows it, else ``sklearn``; with the reason.
    ``requested``: the run's engine (``auto``, ``sklearn`` or ``beam``, which chooses as ``auto``;
    None: the spec's)."""
    requested = requested or spec.scoring.engine
    if requested == "sklearn":
        where = "the run" if requested != spec.scoring.engine else "the spec"
        return "sklearn", f"{where} sets scoring.engine: sklearn"
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


def plan(batch_uri: str, rows_per_partition: int, engine: str = CHUNKED) -> list[PartitionSpec]:
    """``batch_uri`` cut into row ranges of at most ``rows_per_partition`` rows, as XCom-ready dicts.
    With the ``beam`` engine, one partition of the whole batch: the pipeline parallelises inside."""
    if engine == BEAM:
        import sys

        rows_per_partition = sys.maxsize
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
        "beam": None,
    }


# --- the Beam engine ----------------------------------------------------------------------------


def prepare_beam(
    spec: ModelSpec,
    run: RunInfo,
    mlc: MlflowClient,
    *,
    batch_uri: str,
    model: ModelChoice,
    lake_root: str,
    batch_rows: int,
    model_threads: int | None = 1,
) -> tuple[str, BeamJob]:
    """Stage what a Beam scoring pipeline reads under ``runs/<run>/scoring/beam/`` (the served
    model and shadow as files, so workers need no MLflow; the input schema from the served
    version's pipeline; the job document) and return the job's URI and the job.

    The files live in the lake, so workers of a cluster runner read them where the lake is."""
    from mlcycle.ml.beam_job import BeamJob, ModelFile
    from mlcycle.ml.schema import schema_of

    base = _scoring_dir(spec, lake_root, run)
    work = base / "beam"
    version = model["version"]
    pipeline = registry.load_sklearn(mlc, spec.name, version)
    schema = schema_of(pipeline, spec)  # what a row must hold, from the version itself

    def stage(v: str, engine: str) -> ModelFile:
        if engine == "onnx":
            path = work / f"model-v{v}.onnx"
            lk.write_bytes_atomic(path, registry.load_onnx(mlc, spec.name, v))
            return ModelFile("onnx", lk.uri_of(path), v)
        data, trusted = registry.sklearn_file(mlc, spec.name, v)
        path = work / f"model-v{v}.skops"
        lk.write_bytes_atomic(path, data)
        return ModelFile("sklearn", lk.uri_of(path), v, trusted)

    shadow_version = model.get("shadow_version")
    job = BeamJob(
        input_uri=batch_uri,
        output_uri=lk.uri_of(base / "part-00000.parquet"),
        dead_letter_uri=lk.uri_of(base / "dead-letters.parquet"),
        metrics_uri=lk.uri_of(work / "metrics.json"),
        spec=spec.model_dump(mode="json", by_alias=True),
        features=[f.to_dict() for f in schema.features],
        classes=list(schema.classes or []),
        model=stage(version, model.get("engine") or "sklearn"),
        meta=scoring.output_meta(spec, version, model.get("alias"), run.run_id),
        batch_rows=batch_rows,
        shadow=stage(shadow_version, model.get("shadow_engine") or "sklearn") if shadow_version else None,
        shadow_uri=lk.uri_of(base / "shadow-00000.parquet") if shadow_version else None,
        model_threads=model_threads,
    )
    job_path = work / "job.json"
    # Not lk.write_json: its keys are sorted, and the order of ``meta`` is the order of the columns.
    lk.write_bytes_atomic(job_path, json.dumps(job.to_dict(), indent=2).encode())
    return lk.uri_of(job_path), job


def beam_result(job: BeamJob, runner: str, seconds: float) -> PartitionResult:
    """The partition result of a finished Beam scoring run, from the metrics it wrote."""
    from mlcycle.ml import beam_job

    metrics = lk.read_json(lk.as_path(job.metrics_uri))
    head = beam_job.summary(metrics)
    for staged in (job.model, job.shadow):  # copies of registry artifacts: the job names their versions
        if staged is not None and lk.as_path(staged.uri).exists():
            lk.as_path(staged.uri).unlink()
    rows = lk.count_rows([lk.as_path(job.output_uri)])
    if rows != head["rows_scored"]:
        raise RegistryError(
            f"the Beam pipeline counted {head['rows_scored']} rows scored but {job.output_uri} holds {rows}; "
            f"rerun the scoring (metrics: {job.metrics_uri})"
        )
    return {
        "index": 0,
        "part_uri": job.output_uri,
        "shadow_uri": job.shadow_uri,
        "rows": rows,
        "seconds": round(seconds, 4),
        "beam": {
            "runner": runner,
            "rows_read": head["rows_read"],
            "rows_scored": head["rows_scored"],
            "rows_failed": head["rows_failed"],
            "dead_letter_uri": job.dead_letter_uri,
            "metrics_uri": job.metrics_uri,
            "batch_latency_ms": head["batch_latency_ms"],
        },
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
        "batch_engine": model.get("batch_engine") or CHUNKED,
        "batch_uri": batch_uri,
        "output_uri": lk.uri_of(output),
        "rows": rows,
        "partitions": len(parts),
        "scoring_seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds, 1) if seconds else None,
        "shadow": shadow if model.get("shadow_version") else None,
        "beam": _beam_report(parts),
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


def _beam_report(parts: list[PartitionResult]) -> dict[str, Any] | None:
    """The Beam run of a batch for the report: its summary and every metric it recorded."""
    beam = next((p["beam"] for p in parts if p.get("beam")), None)
    if beam is None:
        return None
    metrics_path = lk.as_path(beam["metrics_uri"])
    metrics = lk.read_json(metrics_path) if metrics_path.exists() else {}
    return {**beam, "dead_letters": beam["rows_failed"], "metrics": metrics}


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
    if beam := report.get("beam"):
        metrics |= {f"beam_{k}": beam[k] for k in ("rows_read", "rows_scored", "rows_failed")}
        if beam.get("batch_latency_ms"):
            metrics["beam_batch_latency_ms_mean"] = beam["batch_latency_ms"]["mean"]
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
