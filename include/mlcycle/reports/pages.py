"""The report pages: plain result dicts in, self-contained HTML out.

Every page is a Jinja2 template in ``templates/`` extending ``base.html.j2``, which inlines
the one stylesheet (``style.css``): a page is a single file with no external URL, as it is
served from the data lake and from MLflow artifacts. Every value is HTML-escaped; numbers
go through the ``num`` filter (4 significant digits, ``n/a`` for missing).

The functions here only shape data for the templates; Jinja2 is imported on the first
render, so importing this module is cheap.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import jinja2

TEMPLATES = Path(__file__).with_name("templates")
LEDGER_JSON_URL = "/mlcycle/ledger.json"
LEDGER_COLUMNS = (
    "created_at",
    "model",
    "alias",
    "previous_version",
    "new_version",
    "action",
    "actor",
    "reason",
    "verdict",
)
MAX_FLIPS_SHOWN = 200
SIGNIFICANT_DIGITS = 4


# --- formatting -----------------------------------------------------------------------------------


def fmt_number(value: Any, digits: int = SIGNIFICANT_DIGITS) -> str:
    """A value as short readable text: floats to ``digits`` significant digits (large ones
    without an exponent), ints as they are, None and NaN as ``n/a``, booleans as yes/no.

    numpy scalars are converted first, so no ``np.float64(...)`` repr reaches a page."""
    if value is None:
        return "n/a"
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # numpy scalar -> Python scalar
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        if 10**digits <= abs(value) < 1e15:
            return f"{value:.0f}"
        return f"{value:.{digits}g}"
    return str(value)


@cache
def environment() -> jinja2.Environment:
    """The one template environment (built on first use): autoescaped, strict about
    undefined names, with the ``num`` filter."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = fmt_number
    return env


def _render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


# --- gate verdict ---------------------------------------------------------------------------------


def gate_page(verdict: dict[str, Any], curves: Mapping[str, Any] | None = None) -> str:
    """The promotion gate's verdict (``Verdict.to_dict()``): every rule with its outcome, the
    holdout metrics of candidate and champion, the plots (``curves`` of ``evaluation.curves``:
    ROC, precision-recall and calibration, or predicted vs actual; the paired-bootstrap
    distribution of the gain; the change per slice; the shadow score differences), the shadow
    comparison, the trusted
    evaluation set and the evidence files (linked relative to the page, which sits beside them
    in the lake and in the MLflow run's artifacts)."""
    confidence = dict(verdict.get("confidence") or {})
    histogram = confidence.pop("histogram", None)
    shadow = dict(verdict.get("shadow") or {})
    shadow_histogram = shadow.pop("histogram", None)
    v = {
        **verdict,
        "confidence": confidence,
        "shadow": shadow,
        "evidence": verdict.get("evidence") or {},
        "summary": verdict.get("summary", ""),
    }
    rules = [{**r, "outcome": str(r["outcome"]).lower()} for r in verdict.get("rules", [])]
    cand = verdict.get("candidate_metrics") or {}
    champ = verdict.get("champion_metrics") or {}
    metrics = [(name, cand.get(name), champ.get(name)) for name in sorted(set(cand) | set(champ))]
    evidence = [(key, str(uri).rstrip("/").rsplit("/", 1)[-1]) for key, uri in v["evidence"].items()]
    return _render(
        "gate.html.j2",
        v=v,
        rules=rules,
        metrics=metrics,
        trusted=_trusted(verdict.get("trusted")),
        charts=_model_charts(verdict, curves),
        bootstrap=_bootstrap_chart(histogram, verdict),
        shadow_chart=_histogram_chart(shadow_histogram, [(0.0, "same score", "zero")]),
        slices=_slice_rows(verdict, rules),
        evidence=evidence,
        classes=_class_tables(verdict, curves),
        top_terms=(curves or {}).get("top_terms") or {},
    )


def _class_tables(verdict: Mapping[str, Any], curves: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """A multi-class model's confusion matrix (rows: true class, columns: predicted) and per-class
    recall and precision, for the candidate and the champion, on the same holdout rows."""
    if not curves or not curves.get("classes"):
        return []
    out = []
    for side in SERIES:
        m = curves["models"].get(str(verdict.get(f"{side}_version")))
        if not m or "confusion" not in m:
            continue
        rows = [
            {"cls": c, "counts": counts, "total": sum(counts), **m["per_class"].get(c, {})}
            for c, counts in zip(curves["classes"], m["confusion"], strict=True)
        ]
        out.append(
            {
                "side": side,
                "version": verdict.get(f"{side}_version"),
                "classes": curves["classes"],
                "rows": rows,
            }
        )
    return out


# --- charts: plain SVG drawn server-side (no script, no external file) ---------------------------

CHART_W, CHART_H, PAD = 300, 220, 36
SERIES = ("candidate", "champion")


def _scale(lo: float, hi: float, size: float, *, flip: bool = False) -> Callable[[float], float]:
    span = (hi - lo) or 1.0

    def to_px(value: float) -> float:
        frac = (value - lo) / span
        return round(PAD + (1 - frac if flip else frac) * (size - 2 * PAD), 1)

    return to_px


def _chart(
    title: str,
    series: list[tuple[str, list[list[float]]]],
    *,
    x_label: str,
    y_label: str,
    diagonal: bool = False,
    dots: bool = False,
    bounds: tuple[float, float, float, float] | None = None,
) -> dict[str, Any]:
    """A line (or dot) chart: ``series`` as (candidate|champion, [[x, y], ...]) in pixel space."""
    xs = [p[0] for _, pts in series for p in pts] or [0.0, 1.0]
    ys = [p[1] for _, pts in series for p in pts] or [0.0, 1.0]
    x0, x1, y0, y1 = bounds or (min(xs), max(xs), min(ys), max(ys))
    sx, sy = _scale(x0, x1, CHART_W), _scale(y0, y1, CHART_H, flip=True)
    drawn = [
        {
            "side": side,
            "points": " ".join(f"{sx(x)},{sy(y)}" for x, y in pts),
            "dots": [(sx(x), sy(y)) for x, y in pts],
        }
        for side, pts in series
    ]
    return {
        "title": title,
        "width": CHART_W,
        "height": CHART_H,
        "pad": PAD,
        "series": drawn,
        "dots": dots,
        "diagonal": (sx(max(x0, y0)), sy(max(x0, y0)), sx(min(x1, y1)), sy(min(x1, y1)))
        if diagonal
        else None,
        "x_label": x_label,
        "y_label": y_label,
        "x_ticks": [(sx(t), fmt_number(t, 2)) for t in (x0, (x0 + x1) / 2, x1)],
        "y_ticks": [(sy(t), fmt_number(t, 2)) for t in (y0, (y0 + y1) / 2, y1)],
    }


def _model_charts(verdict: Mapping[str, Any], curves: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """ROC, precision-recall and calibration (classifier) or predicted vs actual (regressor), the
    candidate in blue and the champion in grey, on the same holdout rows."""
    if not curves or not curves.get("models"):
        return []
    models = curves["models"]
    order = [(side, models.get(str(verdict.get(f"{side}_version")))) for side in SERIES]
    present = [(side, m) for side, m in order if m]
    unit = (0.0, 1.0, 0.0, 1.0)
    if curves.get("task") == "multiclass":
        return [
            _chart("Calibration of the top class", [(s, [c[:2] for c in m["calibration"]]) for s, m in present],
                   x_label="confidence", y_label="share right", diagonal=True, dots=True, bounds=unit),
        ]  # fmt: skip
    if curves.get("task") == "classification":
        return [
            _chart("ROC curve", [(s, m["roc"]) for s, m in present], x_label="false positive rate",
                   y_label="true positive rate", diagonal=True, bounds=unit),
            _chart("Precision-recall", [(s, m["pr"]) for s, m in present], x_label="recall",
                   y_label="precision", bounds=unit),
            _chart("Calibration", [(s, [c[:2] for c in m["calibration"]]) for s, m in present],
                   x_label="mean predicted probability", y_label="observed frequency", diagonal=True,
                   dots=True, bounds=unit),
        ]  # fmt: skip
    pts = [p for _, m in present for p in m["predicted_vs_actual"]]
    lo, hi = min(min(p) for p in pts), max(max(p) for p in pts)
    residuals = [(s, [[i / 20, q] for i, q in enumerate(m["residual_quantiles"])]) for s, m in present]
    return [
        _chart("Predicted vs actual", [(s, m["predicted_vs_actual"]) for s, m in present], x_label="actual",
               y_label="predicted", diagonal=True, dots=True, bounds=(lo, hi, lo, hi)),
        _chart("Residual quantiles", residuals, x_label="quantile", y_label="predicted - actual"),
    ]  # fmt: skip


def _bootstrap_chart(
    histogram: Mapping[str, Any] | None, verdict: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The paired-bootstrap distribution of the candidate's gain over the champion (positive is
    better), with the line at zero (``min_confidence`` is the share of resamples right of it)
    and the allowed regression of the primary metric."""
    regression = next(
        (r for r in verdict.get("rules", []) if str(r.get("name", "")).startswith("regression:")), None
    )
    marks = [(0.0, "not worse", "zero")]
    if regression and regression.get("limit") is not None:
        limit = float(regression["limit"])
        marks.append((-limit, f"allowed regression {fmt_number(limit)}", "limit"))
    return _histogram_chart(histogram, marks)


def _histogram_chart(
    histogram: Mapping[str, Any] | None, marks: list[tuple[float, str, str]]
) -> dict[str, Any] | None:
    """Bars of ``histogram`` (``counts`` per bin between ``edges``) with labelled vertical lines
    at ``marks`` ((value, label, CSS kind)); None without data."""
    if not histogram or not histogram.get("counts"):
        return None
    counts, edges = histogram["counts"], histogram["edges"]
    lo = min(edges[0], *(value for value, _, _ in marks))
    hi = max(edges[-1], *(value for value, _, _ in marks))
    sx, top = _scale(lo, hi, CHART_W), max(counts) or 1
    sy = _scale(0, top, CHART_H, flip=True)
    bars = [
        {
            "x": sx(a),
            "w": max(sx(b) - sx(a) - 1, 1),
            "y": sy(c),
            "h": sy(0) - sy(c),
            "label": f"{a:+.3g} to {b:+.3g}: {c}",
        }
        for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True)
    ]
    return {
        "width": CHART_W,
        "height": CHART_H,
        "pad": PAD,
        "bars": bars,
        "markers": [(sx(value), label, kind) for value, label, kind in marks],
        "base": sy(0),
        "x_ticks": [(sx(t), fmt_number(t, 2)) for t in (lo, 0.0, hi)],
    }


def _slice_rows(verdict: Mapping[str, Any], rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each slice with both models' primary metric, the change, its rule's outcome and a bar of
    the change against the tolerance."""
    by_name = {r["name"]: r for r in rules if r.get("kind") == "slice"}
    out = []
    changes = [abs(r["observed"]) for r in by_name.values() if r.get("observed") is not None]
    limit = max((float(r["limit"]) for r in by_name.values() if r.get("limit") is not None), default=0.0)
    half = max([*changes, limit, 1e-9])
    sx = _scale(-half, half, 160)
    for s in verdict.get("slices") or []:
        rule = by_name.get(f"slice:{s['column']}={s['value']}", {})
        change = rule.get("observed")
        bar = None
        if change is not None:
            a, b = sorted((sx(0.0), sx(change)))
            bar = {
                "x": a,
                "w": max(b - a, 1),
                "zero": sx(0.0),
                "limit": sx(-limit),
                "side": "pass" if rule["outcome"] == "pass" else "fail",
            }
        out.append(
            {
                **s,
                "change": change,
                "outcome": rule.get("outcome", "skipped"),
                "bar": bar,
                "detail": rule.get("detail", ""),
            }
        )
    return out


def _trusted(trusted: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The trusted-set section of a gate page: which version (rows, digest) and both models' metrics."""
    if not trusted:
        return None
    keys = ("version", "rows", "rows_used", "excluded_training_rows", "digest", "uri", "skipped")
    cand, champ = trusted.get("candidate") or {}, trusted.get("champion") or {}
    return {
        "info": {k: trusted[k] for k in keys if trusted.get(k) is not None},
        "metrics": [(name, cand.get(name), champ.get(name)) for name in sorted(set(cand) | set(champ))],
    }


# --- data validation ------------------------------------------------------------------------------

MAX_EXAMPLES_SHOWN = 10


def _kwarg_text(value: Any) -> str:
    """An expectation argument as people write it: a list in brackets, a suite parameter as its
    expression (``now() + timedelta(days=1)``), anything else as a number or text."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_kwarg_text(v) for v in value) + "]"
    if isinstance(value, dict):
        if set(value) == {"$PARAMETER"}:
            return str(value["$PARAMETER"])
        return "{" + ", ".join(f"{k}: {_kwarg_text(v)}" for k, v in value.items()) + "}"
    return fmt_number(value)


def _rule_text(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_kwarg_text(v)}" for k, v in kwargs.items() if k != "column")


def validation_page(report: Mapping[str, Any], suite: Mapping[str, Any]) -> str:
    """A contract check (``ValidationReport.to_dict()``) beside its suite: one row per
    expectation with its outcome on each batch, then every failure with what was observed,
    how many values were unexpected and some of them."""
    batches = [{**b, "name": str(b["uri"]).rstrip("/").rsplit("/", 1)[-1]} for b in report.get("batches", [])]
    failed: dict[tuple[str, str | None], set[int]] = {}
    failures = []
    for i, b in enumerate(batches, start=1):
        for f in b.get("failures", []):
            column = (f.get("kwargs") or {}).get("column")
            failed.setdefault((f["expectation"], column), set()).add(i)
            failures.append(
                {
                    **f,
                    "batch": i,
                    "column": column,
                    "examples": (f.get("examples") or [])[:MAX_EXAMPLES_SHOWN],
                }
            )
    expectations = []
    for exp in suite.get("expectations", []):
        kwargs = exp.get("kwargs") or {}
        bad = failed.pop((exp["type"], kwargs.get("column")), set())
        expectations.append(
            {
                "type": exp["type"],
                "column": kwargs.get("column"),
                "rule": _rule_text(kwargs),
                "failed": bool(bad),
                "outcomes": ["fail" if i in bad else "pass" for i in range(1, len(batches) + 1)],
            }
        )
    # A failure the suite does not list (a missing column diagnosed as one) still gets a row.
    for (kind, column), bad in failed.items():
        expectations.append(
            {
                "type": kind,
                "column": column,
                "rule": "",
                "failed": True,
                "outcomes": ["fail" if i in bad else "pass" for i in range(1, len(batches) + 1)],
            }
        )
    return _render(
        "validation.html.j2",
        report=report,
        batches=batches,
        rows=sum(int(b.get("rows") or 0) for b in batches),
        expectations=expectations,
        failures=failures,
        failed_cells=len(failures),
    )


# --- drift check ----------------------------------------------------------------------------------


def _features(drift_report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The per-feature results of a drift report, the prediction last."""
    prediction = [drift_report["prediction"]] if drift_report.get("prediction") else []
    return [*drift_report.get("features", []), *prediction]


def _histogram(hist: Mapping[str, Any], height: int = 40) -> dict[str, Any] | None:
    """Bar geometry for reference (grey) vs current (blue) proportions per bin."""
    ref = [float(x) for x in hist.get("reference", [])]
    cur = [float(x) for x in hist.get("current", [])]
    labels = [str(x) for x in hist.get("labels", [])]
    if not ref and not cur:
        return None
    top = max([*ref, *cur, 1e-9])
    bars = []
    for i, (r, c) in enumerate(zip(ref, cur, strict=False)):
        x = 2 + i * 24
        for dx, value, side in ((0, r, "reference"), (11, c, "current")):
            h = value / top * (height - 2)
            label = labels[i] if i < len(labels) else ""
            bars.append({"x": x + dx, "y": height - h, "h": h, "side": side, "label": label, "value": value})
    return {"width": 24 * max(len(ref), 1) + 4, "height": height, "bars": bars}


def _feature_row(f: Mapping[str, Any]) -> dict[str, Any]:
    results = f.get("results") or []
    # The distribution shown is the one PSI compares (bins or categories).
    hist = next(
        (r["histogram"] for r in results if r.get("statistic") == "psi" and r.get("histogram")),
        None,
    )
    drifted = f.get("drifted")
    state, verdict = ("na", "n/a") if drifted is None else (("fail", "DRIFT") if drifted else ("pass", "ok"))
    stats = [
        {"statistic": str(r["statistic"]), "value": r["value"], "threshold": r.get("threshold")}
        for r in results
        if isinstance(r.get("value"), int | float) and not isinstance(r.get("value"), bool)
    ]
    return {
        "feature": str(f.get("feature")),
        "kind": str(f.get("kind")),
        "state": state,
        "verdict": verdict,
        "stats": stats,
        "histogram": _histogram(hist) if hist else None,
        "detail": str(f.get("reason") or f.get("detail") or ""),
    }


def _performance_view(perf: Mapping[str, Any]) -> dict[str, Any]:
    """The performance section of a drift page: the rules that fired, one row per metric over
    the window, and per metric a chart of the estimate (blue) and the realized value (black)
    per chunk between the band's lines (red)."""
    from mlcycle.monitor.performance import alert_text

    window = perf.get("window") or {}
    metrics = list(dict.fromkeys([*(window.get("estimated") or {}), *(window.get("realized") or {})]))
    rows = [
        {"metric": m, "estimated": (window.get("estimated") or {}).get(m), "realized": (window.get("realized") or {}).get(m)}
        for m in metrics
    ]  # fmt: skip
    chunks = perf.get("chunks") or []

    def points(source: str, metric: str, key: str = "value") -> list[list[float]]:
        out = []
        for i, c in enumerate(chunks, 1):
            v = (c.get(source) or {}).get(metric) or {}
            if isinstance(v.get(key), int | float) and math.isfinite(v[key]):
                out.append([float(i), float(v[key])])
        return out

    charts = []
    for m in metrics:
        series = [("estimated", points("estimated", m)), ("realized", points("realized", m)),
                  ("band", points("estimated", m, "lower") or points("realized", m, "lower")),
                  ("band", points("estimated", m, "upper") or points("realized", m, "upper"))]  # fmt: skip
        if len(chunks) > 1 and any(pts for _, pts in series[:2]):
            charts.append(_chart(f"{m} per chunk", [(side, pts) for side, pts in series if pts],
                                 x_label="chunk (oldest to newest)", y_label=m))  # fmt: skip
    return {
        "alerts": [alert_text(a) for a in perf.get("alerts", [])],
        "rows": rows,
        "charts": charts,
        "chunks": chunks,
        "note": perf.get("note") or (None if window else "not measured"),
        "too_few_rows": perf.get("too_few_rows"),
        "calibration": perf.get("calibration"),
        "threshold": perf.get("threshold"),
        "k": perf.get("k"),
        "window": window,
        "history": [h for h in perf.get("history") or [] if h.get("estimated") or h.get("realized")],
    }


def drift_page(result: dict[str, Any]) -> str:
    """A monitoring check (the ``result`` of ``flows.monitor.check``): the retrain decision
    with its guardrail checks, performance, and per feature the statistics, verdict and a
    small reference-vs-current histogram."""
    drift = result.get("drift") or {}
    decision = result.get("decision") or {}
    return _render(
        "drift.html.j2",
        r={**result, "performance": result.get("performance") or {}, "window": result.get("window") or []},
        decision={"retrain": bool(decision.get("retrain")), "reason": decision.get("reason", "")},
        checks=decision.get("checks") or [],
        summary=drift.get("summary", ""),
        features=[_feature_row(f) for f in _features(drift)],
        perf=_performance_view(result.get("performance") or {}),
        text=drift.get("text") or {},
        classes=drift.get("predicted_classes"),
    )


# --- scoring report -------------------------------------------------------------------------------


def scoring_page(report: dict[str, Any], flips: list[dict[str, Any]]) -> str:
    """A batch scoring run: what was scored with which version and engine, throughput, and
    the shadow comparison with the challenger, with a sample of the rows that flip class."""
    shown = flips[:MAX_FLIPS_SHOWN]
    columns = list(dict.fromkeys(c for row in shown for c in row))
    return _render(
        "scoring.html.j2",
        report={
            **report,
            "alias": report.get("alias"),
            "shadow_version": report.get("shadow_version"),
        },
        facts={k: v for k, v in report.items() if k not in ("shadow", "beam")}
        | _beam_facts(report.get("beam")),
        shadow=report.get("shadow") or {},
        flips=shown,
        flip_columns=columns,
    )


def _beam_facts(beam: dict[str, Any] | None) -> dict[str, Any]:
    """The Beam engine's run as report facts: runner, rows, dead letters, batch latency."""
    if not beam:
        return {}
    latency = beam.get("batch_latency_ms") or {}
    return {
        "beam_runner": beam.get("runner"),
        "beam_rows_read": beam.get("rows_read"),
        "beam_rows_scored": beam.get("rows_scored"),
        "beam_dead_letters": beam.get("rows_failed"),
        "beam_dead_letter_uri": beam.get("dead_letter_uri"),
        "beam_rows_unseen_category": (beam.get("metrics") or {})
        .get("counters", {})
        .get("rows_unseen_category", 0),
        "beam_batch_latency_ms": (
            f"mean {latency.get('mean')}, min {latency.get('min')}, max {latency.get('max')} over {latency.get('count')} batches"
            if latency
            else None
        ),
        "beam_metrics_uri": beam.get("metrics_uri"),
    }


# --- a task's evidence ----------------------------------------------------------------------------

PAGE_TITLES = {
    "validation.html": "Data validation",
    "verdict.html": "Gate verdict",
    "drift.html": "Drift check",
    "scoring/report.html": "Scoring report",
}


def task_page(
    *,
    dag_id: str,
    run_id: str,
    task_id: str,
    state: str | None,
    reason: str | None,
    model: str | None,
    pages: list[tuple[str, str]],
) -> str:
    """What a task left when it has no report of its own (skipped, refused, not run yet): its
    state, why, and the run's report pages as ``(name relative to the run folder, href)``."""
    listed = [{"name": name, "href": href, "title": PAGE_TITLES.get(name, name)} for name, href in pages]
    ledger_href = "/mlcycle/ledger" + (f"?{urlencode({'model': model})}" if model else "")
    return _render(
        "task.html.j2",
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        state=state,
        reason=reason,
        model=model,
        pages=listed,
        ledger_href=ledger_href,
    )


# --- promotion ledger -----------------------------------------------------------------------------


LEDGER_ACTIONS = ("promote", "bootstrap", "rollback", "superseded", "external", "revert")


def fmt_time(value: Any) -> str:
    """An ISO timestamp as people read it: ``2026-12-02 14:35:49 UTC`` (naive ones are UTC)."""
    import datetime as dt

    if not value:
        return "-"
    try:
        t = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ledger_page(
    entries: list[dict[str, Any]],
    model: str | None,
    *,
    evidence_href: Callable[[str], str],
    version_href: Callable[[str, str], str] | None = None,
    run_href: Callable[[str, str], str] | None = None,
    action: str | None = None,
    models: list[str] | None = None,
) -> str:
    """The promotion ledger (``Entry.to_dict()`` rows, newest first), optionally of one model
    and one action: each move with its time in UTC, links to both versions in MLflow
    (``version_href(model, version)``), to the Airflow run that moved it (``run_href(dag_id,
    run_id)``) and to its verdict (``evidence_href(evidence_uri)``). The serving app knows
    those addresses; the page only lays them out."""

    def version_cell(e: Mapping[str, Any], key: str) -> dict[str, Any]:
        v = e.get(key)
        return {
            "text": "-" if v is None else str(v),
            "href": version_href(e["model"], str(v)) if v and version_href else None,
        }

    rows = []
    for e in entries:
        if action and e.get("action") != action:
            continue
        cells = {c: {"text": "-" if e.get(c) is None else str(e[c]), "href": None} for c in LEDGER_COLUMNS}
        cells["created_at"] = {"text": fmt_time(e.get("created_at")), "href": None}
        cells["previous_version"] = version_cell(e, "previous_version")
        cells["new_version"] = version_cell(e, "new_version")
        rows.append(
            {
                "cells": cells,
                "action": e.get("action"),
                "evidence_href": evidence_href(e["evidence_uri"]) if e.get("evidence_uri") else None,
                "run_href": run_href(e["dag_id"], e["run_id"])
                if run_href and e.get("dag_id") and e.get("run_id")
                else None,
            }
        )
    query = {k: v for k, v in (("model", model), ("action", action)) if v}
    json_href = LEDGER_JSON_URL + (f"?{urlencode(query)}" if query else "")
    return _render(
        "ledger.html.j2",
        rows=rows,
        model=model,
        action=action,
        models=models or [],
        actions=LEDGER_ACTIONS,
        columns=LEDGER_COLUMNS,
        json_href=json_href,
    )


# --- model page -----------------------------------------------------------------------------------


def _series_chart(
    title: str, series: list[tuple[str, list[list[float]]]], *, x_label: str, y_label: str
) -> dict[str, Any] | None:
    """A history chart of one or two series, or None when there is nothing to draw."""
    series = [(side, pts) for side, pts in series if pts]
    return _chart(title, series, x_label=x_label, y_label=y_label) if series else None


def model_page(
    overview: Mapping[str, Any],
    *,
    evidence_href: Callable[[str], str],
    version_href: Callable[[str, str], str],
    run_href: Callable[[str, str], str],
    rollback_dag: str,
    ledger_href: str,
) -> str:
    """One model at a glance (``flows.overview.model_overview``): champion and challenger, a
    red warning when ``@champion`` was moved outside the pipeline, every version with its
    verdict and links, the primary metric over versions, drift and performance over the
    monitoring checks, and the ledger's recent moves. Its rollback form triggers ``rollback_dag``
    through Airflow's REST API with the viewer's own session, so Airflow's permissions apply."""
    metric = overview["primary_metric"]
    versions = [
        {
            **v,
            "created": fmt_time(v.get("created_at")),
            "href": version_href(overview["model"], v["version"]),
            "evidence": evidence_href(v["evidence_uri"]) if v.get("evidence_uri") else None,
            "run": run_href(v["dag_id"], v["run_id"]) if v.get("dag_id") and v.get("run_id") else None,
            "rollback": v.get("verdict") == "pass" and v["version"] != overview["champion"],
        }
        for v in overview["versions"]
    ]
    points = [
        [float(v["version"]), float(v["metric"])] for v in reversed(versions) if v.get("metric") is not None
    ]
    checks = overview["checks"]

    def over_checks(key: str) -> list[list[float]]:
        return [[float(i), float(c[key])] for i, c in enumerate(checks, 1) if c.get(key) is not None]

    charts = [
        _series_chart(f"holdout {metric} by version", [("candidate", points)], x_label="version", y_label=metric),
        _series_chart("drift share by check", [("candidate", over_checks("drift_share"))],
                      x_label="check (oldest to newest)", y_label="share of drifted features"),
        _series_chart(f"performance by check (blue: realized {metric}, grey: estimated {metric})",
                      [("candidate", over_checks("performance_realized")),
                       ("champion", over_checks("performance_estimated"))],
                      x_label="check (oldest to newest)", y_label="metric"),
    ]  # fmt: skip
    recent_checks = [
        {**c, "checked": fmt_time(c.get("checked_at")),
         "run": run_href(c["dag_id"], c["run_id"]) if c.get("dag_id") and c.get("run_id") else None}
        for c in reversed(checks)
    ][:20]  # fmt: skip
    moves = [
        {**e, "created": fmt_time(e.get("created_at")),
         "evidence": evidence_href(e["evidence_uri"]) if e.get("evidence_uri") else None}
        for e in overview["ledger"][:20]
    ]  # fmt: skip
    return _render(
        "model.html.j2",
        o=overview,
        champion_href=version_href(overview["model"], overview["champion"]) if overview["champion"] else None,
        versions=versions,
        charts=[c for c in charts if c],
        checks=recent_checks,
        moves=moves,
        rollback_dag=rollback_dag,
        ledger_href=ledger_href,
    )


def models_page(models: list[Mapping[str, Any]]) -> str:
    """The index of model pages: ``[{"name", "description", "href"}]``."""
    return _render("models.html.j2", models=models)
