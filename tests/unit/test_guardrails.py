"""Guardrails before a drift-triggered retrain: each rule blocks on its own; all pass → request."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from mlcycle.core.spec import MonitorSpec
from mlcycle.monitor.guardrails import Facts, decide

NOW = dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC)
POLICY = MonitorSpec(cooldown_hours=12, min_new_rows=1000, max_retrains_per_week=3)
ALL_PASS = Facts(
    now=NOW,
    drift_detected=True,
    drift_summary="drift: 5 of 9 features drifted",
    last_training=NOW - dt.timedelta(hours=13),
    new_rows=5000,
    retrains_last_week=2,
    newest_batch_failed_validation=False,
    newest_batch="2026-11-22.parquet",
)


def test_all_rules_pass_requests_a_retrain():
    d = decide(ALL_PASS, POLICY)
    assert d.retrain is True
    assert d.blocked_by == []
    assert d.reason == "retrain requested: drift: 5 of 9 features drifted"


@pytest.mark.parametrize(
    ("change", "blocked", "detail"),
    [
        ({"drift_detected": False}, "drift", "drift: 5 of 9"),
        ({"last_training": NOW - dt.timedelta(hours=11, minutes=59)}, "cooldown", "12.0 h since"),
        ({"new_rows": 999}, "min_new_rows", "999 new rows since the last training, need 1000"),
        (
            {"retrains_last_week": 3},
            "max_retrains_per_week",
            "3 retrain(s) requested in the last 7 days, at most 3",
        ),
        ({"newest_batch_failed_validation": True}, "newest_batch_valid", "failed validation"),
    ],
)
def test_each_rule_blocks_on_its_own(change, blocked, detail):
    d = decide(dataclasses.replace(ALL_PASS, **change), POLICY)
    assert d.retrain is False
    assert d.blocked_by == [blocked]
    assert detail in next(c.detail for c in d.checks if c.name == blocked)


def test_boundaries_are_inclusive_where_the_policy_says_at_least():
    facts = dataclasses.replace(ALL_PASS, last_training=NOW - dt.timedelta(hours=12), new_rows=1000)
    assert decide(facts, POLICY).retrain is True


def test_blocked_decision_explains_every_failed_rule():
    facts = dataclasses.replace(ALL_PASS, new_rows=10, newest_batch_failed_validation=True)
    d = decide(facts, POLICY)
    assert d.blocked_by == ["min_new_rows", "newest_batch_valid"]
    assert d.reason.startswith("drift detected but retrain blocked by guardrails: 10 new rows")
    assert "failed validation" in d.reason


def test_no_drift_says_so():
    d = decide(dataclasses.replace(ALL_PASS, drift_detected=False, drift_summary="no drift"), POLICY)
    assert d.reason == "no retrain: no drift"


def test_first_training_has_no_cooldown():
    d = decide(dataclasses.replace(ALL_PASS, last_training=None), POLICY)
    assert d.retrain is True
    assert next(c for c in d.checks if c.name == "cooldown").detail == "no training recorded yet"


def test_zero_retrains_per_week_disables_drift_retraining():
    d = decide(dataclasses.replace(ALL_PASS, retrains_last_week=0), MonitorSpec(max_retrains_per_week=0))
    assert d.blocked_by == ["max_retrains_per_week"]
