"""The scoring steps as plain functions: choose the model → plan partitions → score each
(with the challenger in shadow) → merge, summarise, report.

Like ``mlcycle.steps``: explicit inputs, small JSON-serialisable outputs, safe to rerun.
Predictions land at ``<lake>/<model>/predictions/<batch file name>`` (one file per batch,
replaced atomically by a rerun); per-run parts, the shadow comparison and the report
live under ``<lake>/<model>/runs/<run>/scoring/``.
"""

from __future__ import annotations

import html
import json
import logging
from typing import Any

from mlcycle import lake as lk
from mlcycle import registry, scoring
from mlcycle.errors import RegistryError
from mlcycle.spec import ModelSpec, Task
from mlcycle.steps import RunInfo

log = logging.getLogger(__name__)


def choose_model(
    spec: ModelSpec,
    *,
    alias: str | None = "champion",
    version: str | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """The version to score with (an explicit version wins over the alias) and, when the
    champion is served and a different challenger exists, the challenger to run in shadow."""
    mlc = registry.client(tracking_uri)
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
        mv = registry.version_by_alias(mlc, spec.name, alias)
        if mv is None:
            raise RegistryError(
                f"{spec.name}@{alias} is not set: nothing to score with. Train a model first "
                f"(trigger train_{spec.name}) or pass a version."
            )
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


def load_model(spec: ModelSpec, version: str, engine: str, tracking_uri: str | None = None) -> Any:
    """A model with ``predict`` (and ``predict_proba``/``classes_``) for the engine chosen."""
    mlc = registry.client(tracking_uri)  # also the default of load_sklearn's fluent call
    if engine == "onnx":
        from mlcycle.onnx_engine import OnnxModel

        return OnnxModel(registry.load_onnx(mlc, spec.name, version), spec)
    return registry.load_sklearn(f"models:/{spec.name}/{version}")


def plan(batch_uri: str, rows_per_partition: int) -> list[dict[str, int]]:
    return [p.to_dict() for p in scoring.plan_partitions(batch_uri, rows_per_partition)]


def _scoring_dir(spec: ModelSpec, lake_root: str, run: RunInfo) -> lk.LakePath:
    return lk.Lake(lake_root, spec.name).run_dir(run.key) / "scoring"


def score_partition(
    spec: ModelSpec,
    run: RunInfo,
    *,
    batch_uri: str,
    partition: dict[str, int],
    model: dict[str, Any],
    lake_root: str,
    chunk_rows: int = scoring.DEFAULT_CHUNK_ROWS,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    part = scoring.Partition(**partition)
    served = load_model(spec, model["version"], model.get("engine", "sklearn"), tracking_uri)
    shadow = (
        load_model(spec, model["shadow_version"], model.get("shadow_engine") or "sklearn", tracking_uri)
        if model.get("shadow_version")
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
    *,
    batch_uri: str,
    parts: list[dict[str, Any]],
    model: dict[str, Any],
    lake_root: str,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
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
    shadow = scoring.shadow_summary([p["shadow_uri"] for p in parts if p.get("shadow_uri")], spec.task)
    seconds = sum(p["seconds"] for p in parts)
    base = _scoring_dir(spec, lake_root, run)
    flips_sample = shadow.pop("flips_sample", None)
    report = {
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
    lk.write_json(report, base / "report.json")
    if flips_sample:
        lk.write_json(flips_sample, base / "shadow_flips.json")
    lk.write_bytes_atomic(base / "report.html", render_report(report, flips_sample or []).encode())
    report["report_uri"] = lk.uri_of(base / "report.html")
    report["mlflow_run_id"] = _log_to_mlflow(spec, run, report, tracking_uri)
    for p in parts:  # last, so a retry of this step can merge again
        part = lk.as_path(p["part_uri"])
        if part.exists():
            part.unlink()
    return report


def _log_to_mlflow(spec: ModelSpec, run: RunInfo, report: dict[str, Any], tracking_uri: str | None) -> str:
    """One MLflow run per Airflow scoring run (found again on a rerun) in ``<model>-scoring``."""
    mlc = registry.client(tracking_uri)
    run_id = registry.run_for_airflow_run(
        mlc,
        f"{spec.name}-scoring",
        dag_id=run.dag_id,
        run_id=run.run_id,
        run_name=f"score/{run.key}",
        tags={"model.version": report["version"]},
    )
    metrics = {"rows": report["rows"], "rows_per_second": report["rows_per_second"] or 0.0}
    for key, value in (report.get("shadow") or {}).items():
        if isinstance(value, int | float):
            metrics[f"shadow_{key}"] = value
    registry.log_metrics(mlc, run_id, metrics)
    mlc.log_dict(run_id, report, "scoring/report.json")
    mlc.set_terminated(run_id)
    return run_id


def render_report(report: dict[str, Any], flips: list[dict[str, Any]]) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(json.dumps(v) if isinstance(v, dict) else str(v))}</td></tr>"
        for k, v in report.items()
        if k != "shadow"
    )
    shadow = report.get("shadow")
    shadow_html = "<p>No challenger ran in shadow.</p>"
    if shadow:
        shadow_html = (
            "<table>"
            + "".join(
                f"<tr><th>{esc(k)}</th><td>{v:.4g}</td></tr>"
                if isinstance(v, float)
                else f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>"
                for k, v in shadow.items()
            )
            + "</table>"
        )
        if flips:
            cols = list(flips[0])
            shadow_html += (
                f"<h3>Rows that flip class (first {len(flips)})</h3><table><tr>"
                + "".join(f"<th>{esc(c)}</th>" for c in cols)
                + "</tr>"
                + "".join(
                    "<tr>" + "".join(f"<td>{esc(str(r[c]))}</td>" for c in cols) + "</tr>"
                    for r in flips[:200]
                )
                + "</table>"
            )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Scoring {esc(report["model"])} v{esc(report["version"])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #d0d7de;padding:.3em .6em;text-align:left}}th{{background:#f6f8fa}}</style></head>
<body><h1>Scoring of <code>{esc(report["model"])}</code> with v{esc(report["version"])} ({esc(str(report.get("alias") or "pinned version"))})</h1>
<table>{rows}</table><h2>Shadow: challenger v{esc(str(report.get("shadow_version") or "-"))} on the same rows</h2>{shadow_html}</body></html>
"""


def expected_columns(spec: ModelSpec, classes: list[Any]) -> list[str]:
    """Columns of a prediction file, for readers and tests."""
    cols = [spec.data.key_column, "prediction"]
    if spec.task is Task.CLASSIFICATION:
        cols += [f"proba_{c}" for c in classes]
    return [*cols, "model_name", "model_version", "model_alias", "run_id", "scored_at"]
