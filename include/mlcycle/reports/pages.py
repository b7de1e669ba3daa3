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


def gate_page(verdict: dict[str, Any]) -> str:
    """The promotion gate's verdict (``Verdict.to_dict()``): every rule with its outcome,
    the holdout metrics of candidate and champion, the paired bootstrap, the shadow
    comparison, the trusted evaluation set and the evidence files."""
    v = {
        **verdict,
        "confidence": verdict.get("confidence") or {},
        "shadow": verdict.get("shadow") or {},
        "evidence": verdict.get("evidence") or {},
        "summary": verdict.get("summary", ""),
    }
    rules = [{**r, "outcome": str(r["outcome"]).lower()} for r in verdict.get("rules", [])]
    cand = verdict.get("candidate_metrics") or {}
    champ = verdict.get("champion_metrics") or {}
    metrics = [(name, cand.get(name), champ.get(name)) for name in sorted(set(cand) | set(champ))]
    return _render(
        "gate.html.j2", v=v, rules=rules, metrics=metrics, trusted=_trusted(verdict.get("trusted"))
    )


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
        facts={k: v for k, v in report.items() if k != "shadow"},
        shadow=report.get("shadow") or {},
        flips=shown,
        flip_columns=columns,
    )


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


def ledger_page(
    entries: list[dict[str, Any]], model: str | None, *, evidence_href: Callable[[str], str]
) -> str:
    """The promotion ledger (``Entry.to_dict()`` rows, newest first), optionally of one model;
    each move links to its verdict at ``evidence_href(evidence_uri)`` (the app serving the page
    knows where its evidence lives)."""
    rows = [
        {
            "cells": {c: "-" if e.get(c) is None else str(e[c]) for c in LEDGER_COLUMNS},
            "evidence_href": evidence_href(e["evidence_uri"]) if e.get("evidence_uri") else None,
        }
        for e in entries
    ]
    json_href = LEDGER_JSON_URL + (f"?{urlencode({'model': model})}" if model else "")
    return _render("ledger.html.j2", rows=rows, model=model, columns=LEDGER_COLUMNS, json_href=json_href)
