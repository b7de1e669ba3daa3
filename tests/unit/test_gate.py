"""The promotion gate: a pure function from measurements and policy to a verdict."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlcycle.core.spec import GateSpec
from mlcycle.ml.gate import Measurement, Outcome, Verdict, decide
from mlcycle.reports.pages import gate_page


def policy(**fields: Any) -> GateSpec:
    fields.setdefault("primary_metric", "roc_auc")
    return GateSpec.model_validate(fields)


def rule(verdict: Verdict, name: str):
    found = [r for r in verdict.rules if r.name == name]
    assert len(found) == 1, f"expected one rule {name!r}, have {[r.name for r in verdict.rules]}"
    return found[0]


def measure(version: str | None, **metrics: float) -> Measurement:
    return Measurement(version=version, metrics=dict(metrics))


# --- comparisons against the champion -------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "candidate", "champion", "allowed", "passed"),
    [
        # higher is better: a drop of exactly the allowed amount passes, a hair more fails
        ("roc_auc", 0.79, 0.80, 0.01, True),
        ("roc_auc", 0.7899, 0.80, 0.01, False),
        ("roc_auc", 0.85, 0.80, 0.01, True),
        ("roc_auc", 0.80, 0.80, 0.0, True),
        # lower is better: a rise is the regression
        ("log_loss", 0.42, 0.40, 0.02, True),
        ("log_loss", 0.4201, 0.40, 0.02, False),
        ("log_loss", 0.30, 0.40, 0.0, True),
        ("rmse", 10.3, 10.0, 0.3, True),
        ("rmse", 10.31, 10.0, 0.3, False),
        ("rmse", 9.0, 10.0, 0.0, True),
    ],
)
def test_max_regression_both_directions(metric, candidate, champion, allowed, passed):
    """max_regression allows at most ``allowed`` worsening, in the metric's own direction."""
    p = policy(primary_metric=metric, max_regression={metric: allowed})
    v = decide("m", p, measure("2", **{metric: candidate}), measure("1", **{metric: champion}))
    r = rule(v, f"regression:{metric}")
    assert r.outcome is (Outcome.PASS if passed else Outcome.FAIL)
    assert v.passed is passed
    assert v.bootstrap is False
    # observed is the signed gain: positive means the candidate is better
    sign = 1 if metric == "roc_auc" else -1
    assert r.observed == pytest.approx(sign * (candidate - champion))
    assert r.limit == allowed


@pytest.mark.parametrize(
    ("metric", "candidate", "champion", "required", "passed"),
    [
        ("roc_auc", 0.81, 0.80, 0.01, True),
        ("roc_auc", 0.8099, 0.80, 0.01, False),
        ("roc_auc", 0.79, 0.80, 0.0, False),
        ("log_loss", 0.39, 0.40, 0.01, True),
        ("log_loss", 0.3901, 0.40, 0.01, False),
        ("log_loss", 0.41, 0.40, 0.0, False),
        ("rmse", 9.5, 10.0, 0.5, True),
        ("rmse", 10.0, 10.0, 0.0, True),
        ("rmse", 10.5, 10.0, 0.0, False),
    ],
)
def test_min_improvement_both_directions(metric, candidate, champion, required, passed):
    """min_improvement needs a gain of at least ``required``; exactly that amount passes."""
    p = policy(primary_metric=metric, min_improvement={metric: required})
    v = decide("m", p, measure("2", **{metric: candidate}), measure("1", **{metric: champion}))
    assert rule(v, f"improvement:{metric}").outcome is (Outcome.PASS if passed else Outcome.FAIL)
    assert v.passed is passed


def test_identical_models_are_not_a_change():
    """Float noise between equal scores is read as zero gain, so 'no improvement' with 0 required passes."""
    p = policy(min_improvement={"roc_auc": 0.0}, max_regression={"log_loss": 0.0}, primary_metric="roc_auc")
    cand = measure("2", roc_auc=0.1 + 0.2, log_loss=0.3)
    champ = measure("1", roc_auc=0.3, log_loss=0.1 + 0.2)
    v = decide("m", p, cand, champ)
    assert v.passed
    assert rule(v, "improvement:roc_auc").observed == 0.0
    assert rule(v, "regression:log_loss").observed == 0.0


# --- absolute thresholds --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bound", "value", "passed"),
    [
        ({"min": 0.7}, 0.7, True),
        ({"min": 0.7}, 0.6999, False),
        ({"max": 0.6}, 0.6, True),
        ({"max": 0.6}, 0.6001, False),
        ({"min": 0.5, "max": 0.9}, 0.95, False),
        ({"min": 0.5, "max": 0.9}, 0.45, False),
        ({"min": 0.5, "max": 0.9}, 0.7, True),
    ],
)
def test_thresholds_are_inclusive(bound, value, passed):
    """Absolute thresholds include their bounds."""
    v = decide("m", policy(thresholds={"roc_auc": bound}), measure("1", roc_auc=value), None)
    r = rule(v, "threshold:roc_auc")
    assert r.outcome is (Outcome.PASS if passed else Outcome.FAIL)
    assert ("meets" if passed else "misses") in r.detail
    assert v.passed is passed


# --- bootstrap (first version) --------------------------------------------------------------------

FULL_POLICY = {
    "primary_metric": "roc_auc",
    "thresholds": {"roc_auc": {"min": 0.7}, "log_loss": {"max": 0.6}},
    "max_regression": {"roc_auc": 0.01, "log_loss": 0.02},
    "min_improvement": {"roc_auc": 0.0},
    "min_confidence": 0.3,
    "budgets": {"latency_ms_per_1k_rows": 200, "model_size_mb": 25},
}


@pytest.mark.parametrize(
    ("auc", "latency", "passed"), [(0.8, 50.0, True), (0.65, 50.0, False), (0.8, 500.0, False)]
)
def test_bootstrap_skips_comparisons(auc, latency, passed):
    """Without a champion the comparison rules are SKIPPED and only thresholds and budgets decide."""
    cand = Measurement(
        "1", {"roc_auc": auc, "log_loss": 0.4}, latency_ms_per_1k_rows=latency, model_size_mb=1.0
    )
    v = decide("churn", policy(**FULL_POLICY), cand, None)
    assert v.bootstrap is True
    assert v.champion_version is None
    assert v.champion_metrics is None
    skipped = {r.name for r in v.rules if r.outcome is Outcome.SKIPPED}
    assert skipped == {
        "regression:roc_auc",
        "regression:log_loss",
        "improvement:roc_auc",
        "confidence:roc_auc",
        "trusted:roc_auc",
    }
    decided = {r.name for r in v.rules if r.outcome is not Outcome.SKIPPED}
    assert decided == {
        "threshold:roc_auc",
        "threshold:log_loss",
        "budget:latency_ms_per_1k_rows",
        "budget:model_size_mb",
    }
    assert v.passed is passed
    if passed:
        assert v.summary() == "PASS: v1 passed 4 rules, bootstrap (no champion yet)"


# --- missing and NaN measurements -----------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), None])
def test_unmeasured_candidate_metric_fails(value):
    """A NaN or absent metric never passes a threshold: it fails with 'not measured'."""
    metrics = {} if value is None else {"roc_auc": value}
    v = decide("m", policy(thresholds={"roc_auc": {"min": 0.7}}), Measurement("1", metrics), None)
    r = rule(v, "threshold:roc_auc")
    assert r.outcome is Outcome.FAIL
    assert r.detail == "roc_auc was not measured on the candidate"
    assert not v.passed
    assert "roc_auc was not measured on the candidate" in v.summary()


@pytest.mark.parametrize(
    ("candidate", "champion", "where"),
    [(float("nan"), 0.8, "candidate"), (0.8, float("nan"), "champion (same holdout)")],
)
def test_nan_in_comparison_fails(candidate, champion, where):
    """A comparison with a NaN on either side fails and says which side was not measured."""
    p = policy(max_regression={"roc_auc": 0.01})
    v = decide("m", p, measure("2", roc_auc=candidate), measure("1", roc_auc=champion))
    r = rule(v, "regression:roc_auc")
    assert r.outcome is Outcome.FAIL
    assert r.detail == f"roc_auc was not measured on the {where}"


# --- budgets --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("latency", "size", "failed"),
    [
        (150.0, 20.0, set()),
        (200.0, 25.0, set()),  # exactly at the budget is within
        (200.1, 20.0, {"budget:latency_ms_per_1k_rows"}),
        (150.0, 30.0, {"budget:model_size_mb"}),
        (None, 20.0, {"budget:latency_ms_per_1k_rows"}),
    ],
)
def test_budgets(latency, size, failed):
    """Latency and size are checked against their budgets; an unmeasured one fails."""
    p = policy(budgets={"latency_ms_per_1k_rows": 200, "model_size_mb": 25})
    v = decide("m", p, Measurement("1", {}, latency_ms_per_1k_rows=latency, model_size_mb=size), None)
    assert {r.name for r in v.failed_rules} == failed
    assert v.passed is (not failed)
    for r in v.failed_rules:
        assert ("over the budget" in r.detail) or ("not measured" in r.detail)


def test_no_budget_no_rule():
    """A budget the policy does not set produces no rule."""
    v = decide("m", policy(), Measurement("1", {}, latency_ms_per_1k_rows=1e9), None)
    assert [r for r in v.rules if r.kind == "budget"] == []
    assert [r.name for r in v.rules] == ["trusted:roc_auc"]  # skipped at bootstrap
    assert v.passed


# --- paired bootstrap confidence ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prob", "outcome"),
    [(0.5, Outcome.PASS), (0.3, Outcome.PASS), (0.29, Outcome.FAIL), (0.0, Outcome.FAIL)],
)
def test_min_confidence(prob, outcome):
    """The share of resamples where the candidate is not worse must reach min_confidence."""
    p = policy(min_confidence=0.3)
    v = decide(
        "m", p, measure("2", roc_auc=0.8), measure("1", roc_auc=0.8), confidence={"prob_not_worse": prob}
    )
    r = rule(v, "confidence:roc_auc")
    assert r.outcome is outcome
    assert r.observed == prob
    assert f"in {prob:.0%} of bootstrap resamples" in r.detail


@pytest.mark.parametrize("confidence", [None, {}, {"prob_not_worse": float("nan")}])
def test_min_confidence_without_bootstrap_fails(confidence):
    """With a champion, a missing bootstrap result fails the confidence rule instead of passing it."""
    v = decide(
        "m",
        policy(min_confidence=0.3),
        measure("2", roc_auc=0.9),
        measure("1", roc_auc=0.8),
        confidence=confidence,
    )
    r = rule(v, "confidence:roc_auc")
    assert r.outcome is Outcome.FAIL
    assert r.detail == "roc_auc was not measured on the paired bootstrap"


# --- the verdict as an artifact -------------------------------------------------------------------


def full_verdict(passed: bool) -> Verdict:
    cand = Measurement(
        "7",
        {"roc_auc": 0.81 if passed else 0.60, "log_loss": 0.41},
        latency_ms_per_1k_rows=12.5,
        model_size_mb=3.25,
    )
    champ = Measurement("6", {"roc_auc": 0.80, "log_loss": 0.42})
    conf = {"prob_not_worse": 0.9 if passed else 0.01, "gain_p05": -0.01, "gain_p95": 0.02, "resamples": 200}
    v = decide("churn", policy(**FULL_POLICY), cand, champ, confidence=conf)
    v.evidence = {"verdict_json": "/lake/churn/runs/r/verdict.json"}
    return v


@pytest.mark.parametrize("passed", [True, False])
def test_verdict_round_trip_through_json(passed):
    """to_dict → JSON → from_dict rebuilds an equal Verdict (rules keep their Outcome enum)."""
    v = full_verdict(passed)
    data = json.loads(json.dumps(v.to_dict()))
    assert data["summary"] == v.summary()
    back = Verdict.from_dict(data)
    assert back == v
    assert all(isinstance(r.outcome, Outcome) for r in back.rules)
    assert back.passed is passed


def test_summary_names_failed_rules_only():
    """A failing summary counts and describes each failed rule and none of the passing ones."""
    v = full_verdict(passed=False)
    failed = {r.name for r in v.failed_rules}
    assert failed == {"threshold:roc_auc", "regression:roc_auc", "improvement:roc_auc", "confidence:roc_auc"}
    text = v.summary()
    assert text.startswith("FAIL: v7 failed 4 rule(s): ")
    for r in v.rules:
        if r.outcome is Outcome.FAIL:
            assert r.detail in text
        else:
            assert r.detail not in text


def test_summary_of_a_pass_against_a_champion():
    """A passing summary names the champion it was compared with (and counts passed rules only)."""
    v = full_verdict(passed=True)
    assert v.passed
    passed = [r for r in v.rules if r.outcome is Outcome.PASS]
    assert len(passed) == len(v.rules) - 1  # no trusted set was given: that rule is skipped
    assert v.summary() == f"PASS: v7 passed {len(passed)} rules, vs champion v6"


@pytest.mark.parametrize("passed", [True, False])
def test_gate_page(passed):
    """The HTML report lists every rule with its outcome and heads with PASSED/FAILED."""
    v = full_verdict(passed)
    page = gate_page(v.to_dict())
    assert page.startswith("<!doctype html>")
    head = "PASSED" if passed else "FAILED"
    assert f"<title>Gate churn v7: {head}</title>" in page
    assert ("FAILED" if passed else "PASSED") not in page
    for r in v.rules:
        assert f"<td>{r.name}</td>" in page
    assert page.count(">PASS<") == sum(r.outcome is Outcome.PASS for r in v.rules)
    assert page.count(">FAIL<") == len(v.failed_rules)
    assert "champion version <b>6</b>" in page
    assert '<a href="verdict.json">verdict json</a>' in page and "/lake/churn" not in page


def test_gate_page_bootstrap_and_escaping():
    """Bootstrap verdicts say so and show SKIPPED rules; text from outside is HTML-escaped."""
    cand = Measurement("1", {"roc_auc": 0.8, "log_loss": 0.4}, latency_ms_per_1k_rows=1.0, model_size_mb=1.0)
    v = decide("churn", policy(**FULL_POLICY), cand, None)
    v.evidence = {"<script>alert(1)</script>": "/lake/churn/runs/r/notes.html"}
    page = gate_page(v.to_dict())
    assert "no champion yet (bootstrap: absolute rules only)" in page
    assert page.count(">SKIPPED<") == 5
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    for r in v.rules:
        assert f"<td>{r.name}</td>" in page


# --- shadow comparison on the newest batch --------------------------------------------------------


@pytest.mark.parametrize(
    ("shadow", "outcome"),
    [
        ({"agreement": 0.90, "mean_abs_diff": 0.01, "rows": 100, "batch": "b.parquet"}, Outcome.PASS),
        ({"agreement": 0.85, "mean_abs_diff": 0.01, "rows": 100, "batch": "b.parquet"}, Outcome.PASS),
        ({"agreement": 0.84, "mean_abs_diff": 0.01, "rows": 100, "batch": "b.parquet"}, Outcome.FAIL),
        (None, Outcome.FAIL),
    ],
)
def test_shadow_min_agreement(shadow, outcome):
    """The candidate may change at most the allowed share of decisions on the newest batch."""
    p = GateSpec.model_validate({"primary_metric": "roc_auc", "shadow": {"min_agreement": 0.85}})
    v = decide("m", p, measure("2", roc_auc=0.8), measure("1", roc_auc=0.8), shadow=shadow)
    assert rule(v, "shadow:agreement").outcome is outcome
    assert v.passed is (outcome is Outcome.PASS)


def test_shadow_rules_are_skipped_at_bootstrap():
    p = GateSpec.model_validate({"primary_metric": "rmse", "shadow": {"max_mean_abs_diff": 2.0}})
    v = decide("m", p, measure("1", rmse=1.0), None)
    assert rule(v, "shadow:mean_abs_diff").outcome is Outcome.SKIPPED
    assert v.passed


def test_shadow_max_mean_abs_diff_names_the_batch():
    p = GateSpec.model_validate({"primary_metric": "rmse", "shadow": {"max_mean_abs_diff": 2.0}})
    shadow = {"mean_abs_diff": 2.5, "rows": 10, "batch": "2026-01-02.parquet"}
    v = decide("m", p, measure("2", rmse=1.0), measure("1", rmse=1.0), shadow=shadow)
    r = rule(v, "shadow:mean_abs_diff")
    assert r.outcome is Outcome.FAIL
    assert "2026-01-02.parquet" in r.detail and "≤ 2" in r.detail


# --- the trusted evaluation set -------------------------------------------------------------------


def trusted_result(candidate: float | None, champion: float | None, **fields: Any) -> dict[str, Any]:
    """What ``flows.train.evaluate`` records about the trusted set (``TrustedEvaluation``)."""
    return {
        "version": 3,
        "uri": "/lake/churn/trusted/v3.parquet",
        "digest": "ab" * 32,
        "rows": 4000,
        "rows_used": 3500,
        "excluded_training_rows": 500,
        "candidate": None if candidate is None else {"roc_auc": candidate},
        "champion": None if champion is None else {"roc_auc": champion},
        "skipped": None,
        **fields,
    }


@pytest.mark.parametrize(
    ("candidate", "champion", "tolerance", "outcome"),
    [
        (0.80, 0.80, 0.01, Outcome.PASS),
        (0.79, 0.80, 0.01, Outcome.PASS),  # exactly the tolerance
        (0.7899, 0.80, 0.01, Outcome.FAIL),
        (0.72, 0.78, 0.02, Outcome.FAIL),  # what a model trained on permuted columns did
        (0.85, 0.80, 0.0, Outcome.PASS),
    ],
)
def test_trusted_set_rule(candidate, champion, tolerance, outcome):
    """Against a champion, the candidate may not regress on the trusted set beyond the tolerance;
    the verdict names the set's version, rows and digest."""
    p = policy(trusted={"tolerance": tolerance})
    trusted = trusted_result(candidate, champion)
    v = decide("m", p, measure("2", roc_auc=0.9), measure("1", roc_auc=0.8), trusted=trusted)
    r = rule(v, "trusted:roc_auc")
    assert (r.kind, r.outcome, r.limit) == ("trusted", outcome, tolerance)
    assert r.observed == pytest.approx(candidate - champion)
    assert "trusted set v3 (3500 of 4000 rows, SHA-256 abababababab)" in r.detail
    assert v.passed is (outcome is Outcome.PASS)
    assert v.trusted == trusted
    if outcome is Outcome.FAIL:
        assert r.detail in v.summary()


@pytest.mark.parametrize(
    ("regression", "tolerance", "expected"),
    [({"roc_auc": 0.01}, None, 0.02), ({"roc_auc": 0.01}, 0.05, 0.05), ({}, None, 0.0)],
)
def test_trusted_tolerance_defaults_to_twice_the_primary_max_regression(regression, tolerance, expected):
    trusted = {} if tolerance is None else {"tolerance": tolerance}
    assert policy(max_regression=regression, trusted=trusted).trusted_tolerance == expected


def test_trusted_rule_lower_is_better():
    """rmse: a rise on the trusted set is the regression."""
    p = GateSpec.model_validate({"primary_metric": "rmse", "max_regression": {"rmse": 0.3}})
    trusted = {**trusted_result(None, None), "candidate": {"rmse": 15.7}, "champion": {"rmse": 6.6}}
    v = decide("m", p, measure("2", rmse=13.9), measure("1", rmse=18.3), trusted=trusted)
    r = rule(v, "trusted:rmse")
    assert r.outcome is Outcome.FAIL and r.observed == pytest.approx(-9.1) and r.limit == 0.6
    assert rule(v, "regression:rmse").outcome is Outcome.PASS  # its own (damaged) holdout is fooled


@pytest.mark.parametrize(
    ("trusted", "reason"),
    [
        (None, "no trusted evaluation set yet: the next promotion seeds it with its holdout"),
        (
            trusted_result(
                None, None, rows_used=12, skipped="12 rows left, fewer than gate.trusted.min_rows (200)"
            ),
            "not used: 12 rows left, fewer than gate.trusted.min_rows (200)",
        ),
    ],
    ids=["no-set", "set-unusable"],
)
def test_trusted_rule_is_skipped_without_a_usable_set(trusted, reason):
    v = decide("m", policy(), measure("2", roc_auc=0.8), measure("1", roc_auc=0.8), trusted=trusted)
    r = rule(v, "trusted:roc_auc")
    assert r.outcome is Outcome.SKIPPED and reason in r.detail
    assert v.passed


@pytest.mark.parametrize("side", ["candidate", "champion"])
def test_trusted_rule_fails_when_a_side_was_not_measured(side):
    trusted = trusted_result(0.8, 0.8)
    trusted[side] = {"roc_auc": float("nan")}
    v = decide("m", policy(), measure("2", roc_auc=0.8), measure("1", roc_auc=0.8), trusted=trusted)
    r = rule(v, "trusted:roc_auc")
    assert r.outcome is Outcome.FAIL and r.detail.endswith(f"({side})") and "not measured" in r.detail


def test_trusted_rule_is_skipped_at_bootstrap_and_says_it_seeds_the_set():
    v = decide("m", policy(), measure("1", roc_auc=0.8), None, trusted=trusted_result(0.8, None))
    r = rule(v, "trusted:roc_auc")
    assert r.outcome is Outcome.SKIPPED
    assert (
        r.detail
        == "no champion yet: bootstrap under absolute rules; promoting it seeds the trusted evaluation set"
    )
    assert v.trusted is None


def test_gate_page_shows_the_trusted_set():
    trusted = trusted_result(0.72, 0.78)
    v = decide(
        "churn", policy(**FULL_POLICY), measure("7", roc_auc=0.8), measure("6", roc_auc=0.8), trusted=trusted
    )
    data = json.loads(json.dumps(v.to_dict()))
    assert Verdict.from_dict(data) == v
    page = gate_page(data)
    assert "<h2>Trusted evaluation set</h2>" in page
    assert "ab" * 32 in page and "/lake/churn/trusted/v3.parquet" in page
    assert "<th>rows_used</th>" in page and "3500" in page
    assert "0.72" in page and "0.78" in page


# --- latency as a ratio to the champion -----------------------------------------------------------


def timed(version: str, latency: float | None) -> Measurement:
    return Measurement(version, {"roc_auc": 0.8}, latency_ms_per_1k_rows=latency, model_size_mb=1.0)


@pytest.mark.parametrize(
    ("candidate", "champion", "outcome"),
    [
        (30.0, 20.0, Outcome.PASS),
        (30.0, 20.1, Outcome.PASS),
        (31.0, 20.0, Outcome.FAIL),
        (500.0, 450.0, Outcome.PASS),
    ],
)
def test_latency_is_a_ratio_to_the_champion(candidate, champion, outcome):
    """Beside a champion, latency is judged as candidate / champion (both timed interleaved):
    the absolute budget, which load flips, is not applied (500 ms is over 200 ms but passes)."""
    p = policy(budgets={"latency_ms_per_1k_rows": 200, "model_size_mb": 25, "max_latency_ratio": 1.5})
    v = decide("m", p, timed("2", candidate), timed("1", champion))
    r = rule(v, "budget:latency_ratio")
    assert (r.kind, r.outcome, r.limit) == ("budget", outcome, 1.5)
    assert r.observed == pytest.approx(candidate / champion)
    assert f"is {candidate / champion:.2f}x the champion's" in r.detail
    assert "budget:latency_ms_per_1k_rows" not in {x.name for x in v.rules}
    assert rule(v, "budget:model_size_mb").outcome is Outcome.PASS


def test_latency_ratio_defaults_to_1_5():
    assert policy().budgets.max_latency_ratio == 1.5
    v = decide("m", policy(), timed("2", 16.0), timed("1", 10.0))
    assert rule(v, "budget:latency_ratio").outcome is Outcome.FAIL


@pytest.mark.parametrize(
    ("champion", "ratio", "expected"),
    [
        (None, 1.5, "budget:latency_ms_per_1k_rows"),  # first version: the absolute budget
        (timed("1", None), 1.5, "budget:latency_ms_per_1k_rows"),  # champion not timed beside it
        (timed("1", 10.0), None, "budget:latency_ms_per_1k_rows"),  # ratio switched off in the spec
        (timed("1", 10.0), 1.5, "budget:latency_ratio"),
    ],
)
def test_absolute_latency_budget_only_without_a_timed_champion(champion, ratio, expected):
    p = policy(budgets={"latency_ms_per_1k_rows": 200, "max_latency_ratio": ratio})
    v = decide("m", p, timed("2", 12.0), champion)
    latency = [r.name for r in v.rules if r.name.startswith("budget:latency")]
    assert latency == [expected]


def test_an_untimed_candidate_fails_the_latency_ratio():
    v = decide("m", policy(), timed("2", None), timed("1", 10.0))
    r = rule(v, "budget:latency_ratio")
    assert r.outcome is Outcome.FAIL and r.detail == "latency_ratio was not measured on the candidate"


# --- per-slice non-regression ---------------------------------------------------------------------


def a_slice(value: str, rows: int, candidate: float | None, champion: float | None, column: str = "region"):
    return {"column": column, "value": value, "rows": rows, "candidate": candidate, "champion": champion}


@pytest.mark.parametrize(
    ("metric", "candidate", "champion", "passed"),
    [
        ("roc_auc", 0.75, 0.80, True),  # exactly the tolerance
        ("roc_auc", 0.7499, 0.80, False),
        ("roc_auc", 0.90, 0.80, True),
        ("rmse", 10.05, 10.0, True),  # lower is better: a rise is the regression
        ("rmse", 10.0501, 10.0, False),
    ],
)
def test_a_slice_may_not_regress_beyond_its_tolerance(metric, candidate, champion, passed):
    p = policy(primary_metric=metric, slices={"columns": ["region"], "min_rows": 100, "tolerance": 0.05})
    overall = {metric: 0.8}
    slices = [a_slice("north", 500, candidate, champion), a_slice("south", 400, champion, champion)]
    v = decide("m", p, measure("2", **overall), measure("1", **overall), slices=slices)
    r = rule(v, "slice:region=north")
    assert (r.kind, r.outcome) == ("slice", Outcome.PASS if passed else Outcome.FAIL)
    assert r.limit == 0.05 and "slice region=north (500 holdout rows)" in r.detail
    assert rule(v, "slice:region=south").outcome is Outcome.PASS
    assert v.passed is passed  # one bad slice refuses a candidate that is fine overall
    assert v.slices == slices and Verdict.from_dict(json.loads(json.dumps(v.to_dict()))).slices == slices


def test_small_undefined_and_bootstrap_slices_are_listed_not_judged():
    p = policy(slices={"columns": ["contract"], "min_rows": 200, "tolerance": 0.01})
    slices = [
        a_slice("monthly", 900, 0.50, 0.90, "contract"),  # far worse: fails
        a_slice("two-year", 150, None, None, "contract"),  # too few rows
        a_slice("one-year", 300, None, 0.8, "contract"),  # one class only: AUC undefined
    ]
    v = decide("m", p, measure("2", roc_auc=0.8), measure("1", roc_auc=0.8), slices=slices)
    assert [r.outcome for r in v.rules if r.kind == "slice"] == [
        Outcome.FAIL,
        Outcome.SKIPPED,
        Outcome.SKIPPED,
    ]
    assert "fewer than gate.slices.min_rows (200)" in rule(v, "slice:contract=two-year").detail
    assert "undefined" in rule(v, "slice:contract=one-year").detail
    first = decide("m", p, measure("1", roc_auc=0.8), None, slices=slices)
    assert {r.outcome for r in first.rules if r.kind == "slice"} == {Outcome.SKIPPED} and first.passed


def test_slices_need_categorical_features():
    from mlcycle.core.spec import get_spec

    spec = get_spec("churn")
    raw = spec.model_dump(by_alias=True)
    raw["gate"]["slices"] = {"columns": ["tenure_months", "nope"]}
    with pytest.raises(ValueError, match=r"\['tenure_months', 'nope'\] are not categorical features"):
        type(spec).model_validate(raw)


# --- a run's one-off gate overrides ---------------------------------------------------------------


def test_gate_overrides_change_this_runs_policy_and_say_so():
    from mlcycle.core.spec import gate_with_overrides

    base = policy(
        thresholds={"roc_auc": {"min": 0.7}, "log_loss": {"max": 0.6}}, max_regression={"roc_auc": 0.01}
    )
    stricter = gate_with_overrides(base, {"thresholds": {"roc_auc": {"min": 0.85}}, "min_confidence": 0.5})
    assert stricter.thresholds["roc_auc"].min == 0.85 and stricter.thresholds["log_loss"].max == 0.6  # merged
    assert stricter.min_confidence == 0.5 and stricter.max_regression == {"roc_auc": 0.01}
    assert gate_with_overrides(base, None) is base and gate_with_overrides(base, {}) is base
    v = decide("m", stricter, measure("1", roc_auc=0.8, log_loss=0.4), None)
    v.overrides = {"thresholds": {"roc_auc": {"min": 0.85}}}
    assert not v.passed and v.summary().endswith(
        '(gate overrides of this run: {"thresholds": {"roc_auc": {"min": 0.85}}})'
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"budgets": {"model_size_mb": 1000}},
            r"\['budgets'\] cannot be overridden per run; use \['thresholds'",
        ),
        ({"min_confidence": 2}, r"min_confidence: Input should be less than or equal to 1"),
        ({"max_regression": {"roc_auc": -0.1}}, r"non-negative"),
        ({"thresholds": {"nope": {"min": 1}}}, r"unknown metric"),
    ],
)
def test_bad_gate_overrides_are_refused_with_what_is_allowed(overrides, message):
    from mlcycle.core.errors import SpecError
    from mlcycle.core.spec import gate_with_overrides

    with pytest.raises(SpecError, match=message):
        gate_with_overrides(policy(), overrides)
