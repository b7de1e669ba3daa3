"""The HTML toolkit: every page renders from a realistic result dict, extends the one base
layout with the one stylesheet inlined once, escapes what it shows and formats numbers."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlcycle.core.spec import GateSpec, MonitorSpec
from mlcycle.ml.gate import Measurement, Outcome, decide
from mlcycle.monitor import guardrails
from mlcycle.monitor.performance import alert_text as mp_alert_text
from mlcycle.monitor.profile import PREDICTION, build_profile
from mlcycle.monitor.verdict import assess
from mlcycle.monitor.window import Accumulator
from mlcycle.reports import pages
from mlcycle_airflow.links import evidence_url

STYLESHEET = (pages.TEMPLATES / "style.css").read_text().strip()
HOSTILE = "<script>alert('x')</script>"

GATE_POLICY = {
    "primary_metric": "roc_auc",
    "thresholds": {"roc_auc": {"min": 0.7}, "log_loss": {"max": 0.6}},
    "max_regression": {"roc_auc": 0.01, "log_loss": 0.02},
    "min_improvement": {"roc_auc": 0.0},
    "min_confidence": 0.3,
    "budgets": {"latency_ms_per_1k_rows": 200, "model_size_mb": 25},
    "shadow": {"min_agreement": 0.9},
}


# --- inputs, built by the real code ---------------------------------------------------------------


def gate_verdict(passed: bool, *, bootstrap: bool = False) -> dict[str, Any]:
    cand = Measurement(
        "7",
        {"roc_auc": np.float64(0.8123456) if passed else np.float64(0.6012345), "log_loss": 0.41},
        latency_ms_per_1k_rows=12.5,
        model_size_mb=3.25,
    )
    champ = None if bootstrap else Measurement("6", {"roc_auc": 0.80, "log_loss": 0.42})
    conf = {"prob_not_worse": np.float64(0.9 if passed else 0.01), "gain_p05": -0.01, "resamples": 200}
    shadow = {"agreement": 0.9512, "mean_abs_diff": 0.0123, "rows": 500, "batch": "2026-01-02.parquet"}
    v = decide(
        "churn",
        GateSpec.model_validate(GATE_POLICY),
        cand,
        champ,
        confidence=None if bootstrap else conf,
        shadow=None if bootstrap else shadow,
    )
    v.evidence = {"verdict_json": "/lake/churn/runs/r/verdict.json", HOSTILE: "/lake/churn/runs/r/notes.html"}
    return v.to_dict()


def drift_result(*, shift: float) -> dict[str, Any]:
    """A monitoring result shaped as ``flows.monitor.check`` builds it."""
    rng = np.random.default_rng(7)
    n = 2000
    ref = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "plan": rng.choice(["basic", "pro", "<b>max</b>"], n, p=[0.6, 0.3, 0.1]),
        }
    )
    ref_scores = rng.beta(2, 5, n)
    profile = build_profile(ref, ["age"], ["plan"], prediction=ref_scores)
    cur = pd.DataFrame(
        {
            "age": rng.normal(40 + shift, 10, n),
            "plan": rng.choice(["basic", "pro", "<b>max</b>"], n, p=[0.6, 0.3, 0.1]),
        }
    )
    cur[PREDICTION] = rng.beta(2, 5, n)
    acc = Accumulator(profile)
    for start in range(0, n, 500):
        acc.update(cur.iloc[start : start + 500])
    report = assess(profile, acc.result(), drift_share_threshold=0.3, min_rows=100)
    now = dt.datetime(2026, 1, 3, 12, tzinfo=dt.UTC)
    facts = guardrails.Facts(
        now=now,
        drift_detected=report.dataset_drift,
        drift_summary=report.summary(),
        last_training=now - dt.timedelta(hours=2),
        new_rows=n,
        retrains_last_week=0,
        newest_batch_failed_validation=False,
        newest_batch="2026-01-03.parquet",
    )
    decision = guardrails.decide(facts, MonitorSpec())
    return {
        "model": "churn",
        "champion_version": "3",
        "window": ["2026-01-03.parquet"],
        "rows": n,
        "drift": report.to_dict(),
        "performance": performance_report(),
        "decision": {**decision.to_dict(), "reason": decision.reason + " " + HOSTILE},
        "checked_at": now.isoformat(timespec="seconds"),
    }


def performance_report() -> dict[str, Any]:
    """A real report of monitor.performance: three healthy chunks, then one whose scores carry
    less signal, labelled in its first half only."""
    from mlcycle.core.spec import Task
    from mlcycle.monitor import performance as mp

    rng = np.random.default_rng(3)

    def draw(n: int, slope: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
        p = 1 / (1 + np.exp(-(slope * rng.normal(size=n) - 2.5)))
        return p**0.5, (rng.random(n) < p).astype("float64")

    s, y = draw(30_000)
    ref = mp.reference_performance(
        Task.CLASSIFICATION, y, s, threshold=0.5, chunk_rows=3000, primary="roc_auc"
    )
    (s1, y1), (s2, y2) = draw(9000), draw(3000, slope=1.8)
    labels = np.concatenate([y1, y2])
    labels[: len(y1) // 2] = np.nan
    chunks = [(f"chunk {i}", np.arange(i * 3000, (i + 1) * 3000)) for i in range(4)]
    return mp.assess(Task.CLASSIFICATION, ref, np.concatenate([s1, s2]), labels, chunks, min_rows=100, k=3.0,
                     primary="roc_auc", holdout_value=0.93, max_drop=0.05)  # fmt: skip


def scoring_inputs() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    report = {
        "model": "churn",
        "version": "3",
        "alias": "champion",
        "shadow_version": "4",
        "engine": "onnx",
        "engine_reason": f"parity ok {HOSTILE}",
        "shadow_engine": "sklearn",
        "batch_uri": "/lake/churn/incoming/2026-01-03.parquet",
        "output_uri": "/lake/churn/predictions/2026-01-03.parquet",
        "rows": 12345,
        "partitions": 2,
        "scoring_seconds": np.float64(1.23456),
        "rows_per_second": 9999.9,
        "shadow": {"agreement": np.float64(0.987654), "mean_abs_diff": 0.00123456, "rows": 12345},
        "run_id": "manual__2026-01-03",
    }
    flips = [
        {"customer_id": f"c{i}", "score": 0.49 + i / 100, "shadow_score": np.float64(0.51)} for i in range(3)
    ]
    return report, flips


def ledger_entries(lake: str) -> list[dict[str, Any]]:
    return [
        {
            "id": 2,
            "model": "churn",
            "alias": "champion",
            "previous_version": "1",
            "new_version": "2",
            "action": "promote",
            "actor": "airflow",
            "reason": f"gate passed {HOSTILE}",
            "evidence_uri": f"{lake}/churn/runs/r2/verdict.html",
            "verdict": "PASS",
            "dag_id": "train_churn",
            "run_id": "r2",
            "created_at": "2026-01-02T10:00:00+00:00",
        },
        {
            "id": 1,
            "model": "churn",
            "alias": "champion",
            "previous_version": None,
            "new_version": "1",
            "action": "bootstrap",
            "actor": "airflow",
            "reason": "first version",
            "evidence_uri": None,
            "verdict": None,
            "dag_id": "train_churn",
            "run_id": "r1",
            "created_at": "2026-01-01T10:00:00+00:00",
        },
    ]


def validation_inputs(folder) -> tuple[dict[str, Any], dict[str, Any]]:
    """A real contract check of one clean and one corrupt churn batch, and its suite."""
    from mlcycle.core.settings import contracts_dir
    from mlcycle.data.contracts import load_suite_dict, validate_paths
    from mlcycle.data.generators import generate_batch

    paths = []
    for i, corrupt in enumerate((False, True)):
        path = folder / f"2026-01-0{i + 1}.parquet"
        generate_batch("churn", dt.date(2026, 1, i + 1), 400, corrupt=corrupt).to_parquet(path)
        paths.append(str(path))
    suite = load_suite_dict(contracts_dir() / "churn.json")
    report = validate_paths(suite, paths).to_dict()
    report["batches"][1]["failures"][0]["examples"].insert(0, HOSTILE)  # a hostile value in the data
    return report, suite


@pytest.fixture
def lake_root(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("MLCYCLE_LAKE_ROOT", str(tmp_path / "lake"))
    return str((tmp_path / "lake").resolve())


def every_page(lake: str) -> dict[str, str]:
    report, flips = scoring_inputs()
    folder = Path(lake).parent / "batches"
    folder.mkdir(exist_ok=True)
    return {
        "validation": pages.validation_page(*validation_inputs(folder)),
        "task": pages.task_page(
            dag_id="train_churn",
            run_id="r1",
            task_id="promote",
            state="skipped",
            reason=HOSTILE,
            model="churn",
            pages=[("verdict.html", evidence_url(lake, f"{lake}/churn/runs/r1/verdict.html"))],
        ),
        "gate": pages.gate_page(gate_verdict(passed=False)),
        "drift": pages.drift_page(drift_result(shift=8.0)),
        "scoring": pages.scoring_page(report, flips),
        "ledger": pages.ledger_page(ledger_entries(lake), "churn", evidence_href=partial(evidence_url, lake)),
    }


def row_of(page: str, first_cell: str) -> str:
    """The ``<tr>`` whose first cell is ``first_cell``."""
    match = re.search(rf"<tr[^>]*>\s*<td>{re.escape(first_cell)}</td>.*?</tr>", page, flags=re.S)
    assert match, f"no row starting with {first_cell!r}"
    return match.group(0)


# --- what every page shares -----------------------------------------------------------------------


PAGES = ["gate", "drift", "scoring", "ledger", "validation", "task"]


@pytest.mark.parametrize("name", PAGES)
def test_every_page_extends_the_base_with_the_stylesheet_once(name, lake_root):
    page = every_page(lake_root)[name]
    assert page.startswith("<!doctype html>")
    assert '<meta charset="utf-8">' in page
    assert page.count('<body class="mlcycle-report') == 1
    assert page.count("<style>") == 1
    assert page.count(STYLESHEET) == 1
    assert page.rstrip().endswith("</html>")


@pytest.mark.parametrize("name", PAGES)
def test_every_page_is_self_contained(name, lake_root):
    page = every_page(lake_root)[name]
    assert "<link" not in page
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)=["']?https?://""", page)
    assert "@import" not in page


@pytest.mark.parametrize("name", PAGES)
def test_every_page_escapes_and_formats(name, lake_root):
    """Outside text is escaped; no Python repr (numpy scalars, dicts) reaches the page."""
    page = every_page(lake_root)[name]
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "np.float64(" not in page
    assert "{'" not in page
    assert "{&#39;" not in page


def test_templates_ship_with_the_package():
    import tomllib

    from mlcycle.reports.pages import TEMPLATES

    names = {p.name for p in TEMPLATES.iterdir()}
    assert {"base.html.j2", "style.css", "macros.html.j2"} <= names
    assert {"gate.html.j2", "drift.html.j2", "scoring.html.j2", "ledger.html.j2"} <= names
    pyproject = tomllib.loads((TEMPLATES.parents[3] / "pyproject.toml").read_text())
    assert "reports/templates/*" in pyproject["tool"]["setuptools"]["package-data"]["mlcycle"]


def test_the_environment_is_cached_and_strict():
    import jinja2

    env = pages.environment()
    assert env is pages.environment()
    assert env.autoescape is True
    assert env.undefined is jinja2.StrictUndefined


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "n/a"),
        (float("nan"), "n/a"),
        (np.float64(0.123456789), "0.1235"),
        (np.int64(12), "12"),
        (12345, "12345"),
        (123456.78, "123457"),
        (0.000123456, "0.0001235"),
        (True, "yes"),
        (float("inf"), "∞"),
        ("v3", "v3"),
    ],
)
def test_numbers_are_formatted_readably(value, text):
    assert pages.fmt_number(value) == text


# --- gate -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("passed", [True, False])
def test_gate_page_lists_every_rule_with_its_outcome(passed):
    verdict = gate_verdict(passed)
    page = pages.gate_page(verdict)
    head = "PASSED" if passed else "FAILED"
    assert f"<title>Gate churn v7: {head}</title>" in page
    assert ("FAILED" if passed else "PASSED") not in page
    assert "champion version <b>6</b>" in page
    for r in verdict["rules"]:
        row = row_of(page, r["name"])
        assert f'class="badge {r["outcome"]}"' in row
        assert f'class="rule {r["outcome"]}"' in row
    failing = [r["name"] for r in verdict["rules"] if r["outcome"] is Outcome.FAIL]
    assert bool(failing) is not passed
    assert page.count('<span class="badge fail">FAIL</span>') == len(failing)
    assert page.count('<span class="badge pass">PASS</span>') == sum(
        r["outcome"] is Outcome.PASS for r in verdict["rules"]
    )
    # key numbers, formatted: candidate and champion metrics, bootstrap and shadow tables
    assert ("0.8123" if passed else "0.6012") in page
    assert "<td>log_loss</td>" in page and "0.42" in page
    assert "<th>prob_not_worse</th>" in page
    assert "<th>agreement</th>" in page and "0.9512" in page
    assert '<a href="verdict.json">verdict json</a>' in page and "/lake/churn/runs/r/verdict.json" not in page


def test_gate_page_of_a_failing_threshold_marks_it():
    verdict = gate_verdict(passed=False)
    row = row_of(page := pages.gate_page(verdict), "threshold:roc_auc")
    assert "badge fail" in row and "misses the absolute threshold" in row and "0.6012" in row
    assert "badge pass" in row_of(page, "threshold:log_loss")


def test_gate_page_of_a_bootstrap_and_from_stored_json():
    """A bootstrap says so and shows SKIPPED rules; a verdict read back from JSON (outcomes as
    plain strings) renders the same page."""
    verdict = gate_verdict(passed=True, bootstrap=True)
    page = pages.gate_page(verdict)
    assert "no champion yet (bootstrap: absolute rules only)" in page
    skipped = [r for r in verdict["rules"] if r["outcome"] is Outcome.SKIPPED]
    assert page.count('<span class="badge skipped">SKIPPED</span>') == len(skipped) == 6
    assert "Paired bootstrap" not in page and "Shadow comparison" not in page
    stored = json.loads(json.dumps(verdict, default=float))
    assert pages.gate_page(stored) == page


# --- drift ----------------------------------------------------------------------------------------


def test_drift_page_shows_features_histograms_and_decision():
    result = drift_result(shift=8.0)
    page = pages.drift_page(result)
    assert "<title>Drift churn</title>" in page
    assert "(champion v3)" in page and "2000 rows from 2026-01-03.parquet" in page
    age = result["drift"]["features"][0]
    assert age["feature"] == "age" and age["drifted"] is True
    row = row_of(page, "age")
    assert '<span class="badge fail">DRIFT</span>' in row
    psi = next(r for r in age["results"] if r["statistic"] == "psi")
    assert f"psi {pages.fmt_number(psi['value'])}" in row and "(limit 0.2)" in row
    svg = re.search(r"<svg class=\"hist\".*?</svg>", row, flags=re.S)
    assert svg, "the numeric feature has no histogram"
    bins = len(psi["histogram"]["labels"])
    assert svg.group(0).count('<rect class="reference"') == bins
    assert svg.group(0).count('<rect class="current"') == bins
    # categories are escaped, in the histogram titles too
    plan_row = row_of(page, "plan")
    assert "&lt;b&gt;max&lt;/b&gt;" in plan_row and "<b>max</b>" not in plan_row
    assert PREDICTION in page  # the prediction is listed last
    assert page.index(">plan<") < page.index(f">{PREDICTION}<")
    # the decision with every guardrail check, failing ones marked
    checks = result["decision"]["checks"]
    assert any(not c["passed"] for c in checks)  # trained 2 h ago: the cooldown blocks
    for c in checks:
        mark = "pass" if c["passed"] else "fail"
        assert f'<li class="check {mark}">' in page
        assert f"{c['name']}: " in page
    assert "no retrain" in page
    # performance: the rules that fired, every metric estimated and realized with its band,
    # and per metric a chart of the chunks with the band
    perf = result["performance"]
    assert perf["alerts"] and any(a["scope"] == "chunk 3" for a in perf["alerts"])
    section = page[page.index("<h2>Performance</h2>") : page.index("<h2>Per feature</h2>")]
    for alert in perf["alerts"]:
        assert html.escape(mp_alert_text(alert)) in section
    for metric in ("roc_auc", "accuracy", "precision", "recall", "f1"):
        assert f"<tr><td>{metric}</td>" in section
        assert f'aria-label="{metric} per chunk"' in section
    auc = perf["window"]["estimated"]["roc_auc"]
    assert (
        f'{pages.fmt_number(auc["value"])} <span class="muted">± {pages.fmt_number(auc["sampling_error"])}'
        in section
    )
    assert section.count('<polyline class="band"') == 10  # lower and upper, per metric
    assert "chunk 3" in section and "calibrated with isotonic" in section


def test_drift_page_of_a_stable_window_and_of_no_window():
    stable = pages.drift_page(drift_result(shift=0.0))
    assert '<span class="badge pass">ok</span>' in row_of(stable, "age")
    empty = {
        "model": "churn",
        "champion_version": "3",
        "window": [],
        "rows": 0,
        "drift": {"summary": "no validated batch in the last 1 day(s): drift not measured", "features": []},
        "performance": {},
        "decision": {"retrain": False, "reason": "no drift", "checks": []},
        "checked_at": "2026-01-03T12:00:00+00:00",
    }
    page = pages.drift_page(empty)
    assert "no feature was assessed" in page and "not measured" in page
    assert "drift not measured" in page and "<svg" not in page


# --- scoring --------------------------------------------------------------------------------------


def test_scoring_page_shows_the_run_the_shadow_and_the_flips():
    report, flips = scoring_inputs()
    page = pages.scoring_page(report, flips)
    assert "<title>Scoring churn v3</title>" in page
    assert "with v3 (champion)" in page and "challenger v4" in page
    assert '<th>rows</th><td class="num">12345</td>' in page
    assert "1.235" in page and "0.9877" in page
    assert "Rows that flip class (first 3)" in page
    assert len(re.findall(r"<td>c\d+</td>", page)) == 3 and "0.51" in page


def test_scoring_page_without_shadow_and_caps_the_flips():
    report, _ = scoring_inputs()
    page = pages.scoring_page({**report, "shadow": None, "shadow_version": None}, [])
    assert "No challenger ran in shadow." in page and "challenger v-" in page
    many = [{"customer_id": f"c{i}"} for i in range(pages.MAX_FLIPS_SHOWN + 50)]
    capped = pages.scoring_page(report, many)
    assert len(re.findall(r"<td>c\d+</td>", capped)) == pages.MAX_FLIPS_SHOWN


# --- ledger ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["churn", None])
def test_ledger_page_lists_moves_with_evidence_links(model, lake_root):
    page = pages.ledger_page(ledger_entries(lake_root), model, evidence_href=partial(evidence_url, lake_root))
    title = "Promotion ledger: churn" if model else "Promotion ledger"
    assert f"<title>{title}</title>" in page and f"<h1>{title}</h1>" in page
    assert page.index("gate passed") < page.index("first version")
    assert 'href="/mlcycle/evidence/churn/runs/r2/verdict.html"' in page
    assert page.count(">verdict</a>") == 1  # the bootstrap has no evidence
    assert f'href="/mlcycle/ledger.json{"?model=churn" if model else ""}"' in page
    assert "<th>previous version</th>" in page
    assert page.count("<td>-</td>") >= 3  # missing values are dashes, never "None"
    assert "None" not in page


def test_ledger_page_without_moves():
    page = pages.ledger_page([], None, evidence_href=partial(evidence_url, "/lake"))
    assert "no moves yet" in page and 'colspan="11"' in page


def test_ledger_page_links_versions_and_runs_reads_utc_and_filters(lake_root):
    page = pages.ledger_page(
        ledger_entries(lake_root),
        "churn",
        evidence_href=partial(evidence_url, lake_root),
        version_href=lambda model, v: f"http://mlflow/#/models/{model}/versions/{v}",
        run_href=lambda dag, run: f"/dags/{dag}/runs/{run}",
        action="promote",
        models=["churn", "demand"],
    )
    assert "2026-01-02 10:00:00 UTC" in page and "+00:00" not in page
    assert '<a href="http://mlflow/#/models/churn/versions/2" target="_blank" rel="noopener">2</a>' in page
    assert '<a href="http://mlflow/#/models/churn/versions/1" target="_blank" rel="noopener">1</a>' in page
    assert '<a href="/dags/train_churn/runs/r2" target="_top">Airflow run</a>' in page
    assert "first version" not in page  # the bootstrap row is filtered out by action=promote
    assert '<option value="promote" selected>' in page and '<option value="demand">' in page
    assert 'href="/mlcycle/ledger.json?model=churn&amp;action=promote"' in page


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("2026-01-02T10:00:00.123456+00:00", "2026-01-02 10:00:00 UTC"),
        ("2026-01-02T12:00:00+02:00", "2026-01-02 10:00:00 UTC"),
        ("2026-01-02T10:00:00", "2026-01-02 10:00:00 UTC"),  # naive: stored as UTC
        (None, "-"),
        ("not a time", "not a time"),
    ],
)
def test_times_read_in_utc(value, text):
    assert pages.fmt_time(value) == text


def test_validation_page_shows_every_expectation_per_batch_and_the_failures(tmp_path):
    report, suite = validation_inputs(tmp_path)
    page = pages.validation_page(report, suite)
    assert "FAILED" in page and page.count('<tr class="rule ') >= len(suite["expectations"]) + 2
    for exp in suite["expectations"]:
        assert f"<code>{exp['type']}</code>" in page
    # The clean batch passes everything, the corrupt one fails what the operator message names.
    failed = {(f["expectation"], (f["kwargs"] or {}).get("column")) for f in report["batches"][1]["failures"]}
    assert ("expect_column_values_to_not_be_null", "customer_id") in failed
    row = re.search(
        r'<tr class="rule fail"><td><code>expect_column_values_to_not_be_null</code></td><td>customer_id</td>.*?</tr>',
        page,
    )
    assert row and row.group(0).count("badge pass") == 1 and row.group(0).count("badge fail") == 1
    assert "<h2>Failures</h2>" in page and page.count('<tr class="rule fail"><td class="num">#2</td>') == len(
        failed
    )
    assert "#1</td>" not in page.split("<h2>Failures</h2>")[1]  # nothing of the clean batch failed


def test_validation_page_of_a_clean_check_has_no_failures(tmp_path):
    report, suite = validation_inputs(tmp_path)
    clean = {**report, "success": True, "batches": report["batches"][:1]}
    page = pages.validation_page(clean, suite)
    assert "PASSED" in page and "badge fail" not in page and "<h2>Failures</h2>" not in page


def test_task_page_without_reports_says_so():
    page = pages.task_page(
        dag_id="score_churn",
        run_id="r9",
        task_id="choose_model",
        state=None,
        reason=None,
        model=None,
        pages=[],
    )
    assert "not started" in page and "No report of this run is in the lake yet" in page
    assert "Promotion ledger" not in page


def holdout_curves(task: str, versions: tuple[str, ...]) -> dict[str, Any]:
    """``evaluation.curves`` of real scores: the candidate better than the champion."""
    from mlcycle.core.spec import Task
    from mlcycle.ml.evaluation import curves

    rng = np.random.default_rng(1)
    if task == "classification":
        y = rng.integers(0, 2, 800)
        scored = {
            v: np.clip(y * (0.5 - 0.2 * i) + rng.random(800) * 0.5, 0, 1) for i, v in enumerate(versions)
        }
        return curves(Task.CLASSIFICATION, y, scored)
    y = rng.normal(50, 10, 800)
    return curves(Task.REGRESSION, y, {v: y + rng.normal(0, 2 + 3 * i, 800) for i, v in enumerate(versions)})


def test_gate_page_plots_both_models_the_bootstrap_and_the_slices():
    from mlcycle.ml.evaluation import paired_bootstrap

    verdict = gate_verdict(passed=True)
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 600)
    verdict["confidence"] = paired_bootstrap(
        "roc_auc", y, y * 0.5 + rng.random(600) * 0.5, rng.random(600), n=50
    )
    verdict["slices"] = [
        {"column": "region", "value": "north", "rows": 400, "candidate": 0.81, "champion": 0.80},
        {"column": "region", "value": "east", "rows": 20, "candidate": None, "champion": None},
    ]
    verdict["rules"] += [
        {"name": "slice:region=north", "kind": "slice", "outcome": "pass", "observed": 0.01, "limit": 0.05, "detail": "ok"},
        {"name": "slice:region=east", "kind": "slice", "outcome": "skipped", "observed": None, "limit": 0.05, "detail": "small"},
    ]  # fmt: skip
    page = pages.gate_page(verdict, curves=holdout_curves("classification", ("7", "6")))
    for title in ("ROC curve", "Precision-recall", "Calibration"):
        assert f'aria-label="{title}"' in page
    assert page.count('<polyline class="candidate"') == 2 and page.count('<polyline class="champion"') == 2
    assert page.count('<circle class="candidate"') >= 5  # the calibration bins
    assert "Gain of the candidate over the champion per resample" in page
    assert page.count('<rect class="candidate" x=') == 20 and "allowed regression 0.01" in page  # 20 bins
    north = row_of(page, "region = north")
    assert "badge pass" in north and '<svg class="slice-bar"' in north
    assert "not judged" in row_of(page, "region = east")
    assert '<a href="verdict.json">verdict json</a>' in page and "/lake/churn" not in page  # URLs, not paths


def test_gate_page_of_a_regressor_plots_predicted_vs_actual():
    page = pages.gate_page(
        gate_verdict(passed=True, bootstrap=True), curves=holdout_curves("regression", ("7",))
    )
    assert 'aria-label="Predicted vs actual"' in page and 'aria-label="Residual quantiles"' in page
    assert page.count('<circle class="candidate"') == 300 and '<circle class="champion"' not in page
    assert "Paired bootstrap" not in page  # no champion, no comparison


def test_gate_page_without_curves_has_no_charts():
    assert '<svg class="plot"' not in pages.gate_page(gate_verdict(passed=False))


def test_gate_page_plots_the_shadow_score_differences():
    rng = np.random.default_rng(3)
    diffs = rng.normal(0.01, 0.05, 2000)
    counts, edges = np.histogram(diffs, bins=30)
    verdict = gate_verdict(passed=True)
    verdict["shadow"] = {
        "batch": "2026-12-01.parquet", "rows": 2000, "agreement": 0.97, "mean_abs_diff": 0.04,
        "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
    }  # fmt: skip
    page = pages.gate_page(verdict)
    section = page.split("Shadow comparison on the newest batch", 1)[1]
    assert 'aria-label="Candidate score minus champion score per row of the newest batch"' in section
    assert section.count('<rect class="candidate" x=') == 30 and "same score" in section
    assert "edges" not in section  # plotted, not printed as a table


def overview(**changes: Any) -> dict[str, Any]:
    version = {
        "created_at": "2026-12-01T10:00:00+00:00", "aliases": [], "summary": "PASS: ...",
        "evidence_uri": None, "onnx": "passed", "superseded_by": None, "dag_id": "train_churn",
        "mlflow_run_id": "r", "trigger": "manual",
    }  # fmt: skip
    base = {
        "model": "churn", "task": "classification", "description": "Churn", "primary_metric": "roc_auc",
        "champion": "2", "challenger": "3",
        "alias_check": {"ok": True, "registry": "2", "ledger": "2", "detail": "@champion is v2, as the ledger recorded", "action": None},
        "versions": [
            {**version, "version": "3", "verdict": "fail", "metric": 0.79, "run_id": "r3", "aliases": ["challenger"]},
            {**version, "version": "2", "verdict": "pass", "metric": 0.84, "run_id": "r2", "aliases": ["champion"],
             "evidence_uri": "/lake/churn/runs/r2/verdict.html"},
            {**version, "version": "1", "verdict": "pass", "metric": 0.83, "run_id": "r1"},
        ],
        "checks": [
            {"checked_at": f"2026-12-0{i}T02:00:00+00:00", "champion_version": "2", "decision": "no retrain",
             "retrain": False, "rows": 1500, "dag_id": "monitor_churn", "run_id": f"m{i}",
             "drift_share": 0.1 * i, "performance_realized": None, "performance_estimated": 0.8 + 0.01 * i}
            for i in (1, 2, 3)
        ],
        "ledger": [],
    }  # fmt: skip
    return {**base, **changes}


def render_model(o: dict[str, Any]) -> str:
    return pages.model_page(
        o,
        evidence_href=lambda uri: "/mlcycle/evidence/" + uri.removeprefix("/lake/"),
        version_href=lambda name, v: f"http://mlflow/#/models/{name}/versions/{v}",
        run_href=lambda dag_id, run_id: f"/dags/{dag_id}/runs/{run_id}",
        rollback_dag="rollback_churn",
        ledger_href="/mlcycle/ledger?model=churn",
    )


def test_model_page_lists_versions_plots_history_and_offers_rollback():
    page = render_model(overview())
    table = page.split("<h2>Versions</h2>", 1)[1]
    assert table.index("v3</a>") < table.index("v2</a>") < table.index("v1</a>")  # newest first
    assert 'href="http://mlflow/#/models/churn/versions/2"' in page
    assert (
        'href="/mlcycle/evidence/churn/runs/r2/verdict.html"' in page
        and 'href="/dags/train_churn/runs/r2"' in page
    )
    assert re.findall(r'data-version="(\d+)"', page) == ["1"]  # passed and not the champion
    for chart in ("holdout roc_auc by version", "drift share by check", "performance by check"):
        assert f'aria-label="{chart}' in page
    assert 'data-dag="rollback_churn"' in page and "/api/v2/dags/${dag}/dagRuns" in page
    assert "MOVED OUTSIDE" not in page and "as the ledger recorded" in page


def test_model_page_of_a_new_model_and_of_a_moved_champion():
    empty = render_model(overview(champion=None, challenger=None, versions=[], checks=[]))
    assert "no version registered yet: trigger train_churn" in empty and '<svg class="plot"' not in empty
    moved = render_model(overview(alias_check={
        "ok": False, "registry": "3", "ledger": "2", "action": "alert",
        "detail": "@champion is v3 but the pipeline last moved it to v2: it was moved outside the pipeline"}))  # fmt: skip
    assert "MOVED OUTSIDE THE PIPELINE" in moved and "alias-check external" in moved
