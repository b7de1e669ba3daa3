"""The promotion gate: a pure function from measurements and policy to a verdict.

The verdict is an artifact: every rule with its numbers and pass/fail, serialisable
to JSON (``mlcycle.reports.pages.gate_page`` renders it to HTML). The first model of a
name has no champion to compare with and bootstraps under the absolute rules only
(thresholds and budgets).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from mlcycle.core.spec import METRICS, Direction, GateSpec


class Outcome(StrEnum):
    """A rule's result: a ``skipped`` rule (no champion to compare with) does not fail the gate."""

    PASS = "pass"
    FAIL = "fail"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Rule:
    """One evaluated gate rule: what was measured, the limit it had to meet, and a sentence for reviewers."""

    name: str
    kind: str  # threshold | regression | improvement | confidence | budget
    outcome: Outcome
    observed: float | None
    limit: float | None
    detail: str


@dataclass
class Measurement:
    """What evaluation found for one model on the holdout."""

    version: str | None
    metrics: dict[str, float]
    latency_ms_per_1k_rows: float | None = None
    model_size_mb: float | None = None


@dataclass
class Verdict:
    """The gate's decision with every rule behind it; the verdict JSON, page and version tags come from it."""

    model: str
    candidate_version: str | None
    champion_version: str | None
    bootstrap: bool
    passed: bool
    rules: list[Rule]
    candidate_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    confidence: dict[str, float] | None = None
    shadow: dict[str, Any] | None = None
    evidence: dict[str, str] = field(default_factory=dict)

    @property
    def failed_rules(self) -> list[Rule]:
        return [r for r in self.rules if r.outcome is Outcome.FAIL]

    def summary(self) -> str:
        if self.passed:
            against = (
                "bootstrap (no champion yet)" if self.bootstrap else f"vs champion v{self.champion_version}"
            )
            return f"PASS: v{self.candidate_version} passed {sum(r.outcome is Outcome.PASS for r in self.rules)} rules, {against}"
        failed = "; ".join(r.detail for r in self.failed_rules)
        return f"FAIL: v{self.candidate_version} failed {len(self.failed_rules)} rule(s): {failed}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["summary"] = self.summary()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        data = {k: v for k, v in data.items() if k != "summary"}
        data["rules"] = [Rule(**{**r, "outcome": Outcome(r["outcome"])}) for r in data["rules"]]
        return cls(**data)


def _gain(metric: str, candidate: float, champion: float) -> float:
    """Signed improvement of candidate over champion: positive is better."""
    sign = 1.0 if METRICS[metric][1] is Direction.HIGHER else -1.0
    # Rounded so that float noise between identical models is not read as a change.
    return round(sign * (candidate - champion), 12) + 0.0


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def _missing(metric: str, kind: str, where: str) -> Rule:
    return Rule(
        f"{kind}:{metric}", kind, Outcome.FAIL, None, None, f"{metric} was not measured on the {where}"
    )


def _threshold_rules(policy: GateSpec, cand: Measurement) -> list[Rule]:
    rules = []
    for metric, bound in policy.thresholds.items():
        value = cand.metrics.get(metric)
        if value is None or math.isnan(value):
            rules.append(_missing(metric, "threshold", "candidate"))
            continue
        ok = (bound.min is None or value >= bound.min) and (bound.max is None or value <= bound.max)
        limit = bound.min if bound.min is not None else bound.max
        rng = f"{'≥ ' + _fmt(bound.min) if bound.min is not None else ''}{' and ' if bound.min is not None and bound.max is not None else ''}{'≤ ' + _fmt(bound.max) if bound.max is not None else ''}"
        rules.append(
            Rule(
                f"threshold:{metric}",
                "threshold",
                Outcome.PASS if ok else Outcome.FAIL,
                value,
                limit,
                f"{metric} {_fmt(value)} {'meets' if ok else 'misses'} the absolute threshold {rng}",
            )
        )
    return rules


def _budget_rules(policy: GateSpec, cand: Measurement) -> list[Rule]:
    rules = []
    for key, what, unit in (
        ("latency_ms_per_1k_rows", "latency", "ms per 1k rows"),
        ("model_size_mb", "model size", "MB"),
    ):
        limit = getattr(policy.budgets, key)
        if limit is None:
            continue
        value = getattr(cand, key)
        if value is None:
            rules.append(_missing(key, "budget", "candidate"))
            continue
        ok = value <= limit
        rules.append(
            Rule(
                f"budget:{key}",
                "budget",
                Outcome.PASS if ok else Outcome.FAIL,
                value,
                limit,
                f"{what} {_fmt(value)} {unit} {'within' if ok else 'over'} the budget {_fmt(limit)} {unit}",
            )
        )
    return rules


def _comparison_rules(
    policy: GateSpec, cand: Measurement, champ: Measurement, confidence: dict[str, float] | None
) -> list[Rule]:
    rules = []
    for kind, table in (("regression", policy.max_regression), ("improvement", policy.min_improvement)):
        for metric, amount in table.items():
            c, b = cand.metrics.get(metric), champ.metrics.get(metric)
            if c is None or math.isnan(c):
                rules.append(_missing(metric, kind, "candidate"))
                continue
            if b is None or math.isnan(b):
                rules.append(_missing(metric, kind, "champion (same holdout)"))
                continue
            gain = _gain(metric, c, b)
            better = "higher" if METRICS[metric][1] is Direction.HIGHER else "lower"
            if kind == "regression":
                ok = gain >= -amount
                detail = (
                    f"{metric} {_fmt(c)} vs champion {_fmt(b)}: change {gain:+.4g} ({better} is better), "
                    f"allowed regression {_fmt(amount)}"
                )
            else:
                ok = gain >= amount
                detail = (
                    f"{metric} {_fmt(c)} vs champion {_fmt(b)}: improvement {gain:+.4g} ({better} is better), "
                    f"required ≥ {_fmt(amount)}"
                )
            rules.append(
                Rule(f"{kind}:{metric}", kind, Outcome.PASS if ok else Outcome.FAIL, gain, amount, detail)
            )
    if policy.min_confidence is not None:
        prob = (confidence or {}).get("prob_not_worse")
        if prob is None or math.isnan(prob):
            rules.append(_missing(policy.primary_metric, "confidence", "paired bootstrap"))
        else:
            ok = prob >= policy.min_confidence
            rules.append(
                Rule(
                    f"confidence:{policy.primary_metric}",
                    "confidence",
                    Outcome.PASS if ok else Outcome.FAIL,
                    prob,
                    policy.min_confidence,
                    f"candidate not worse than champion on {policy.primary_metric} in {prob:.0%} of bootstrap "
                    f"resamples, required ≥ {policy.min_confidence:.0%}",
                )
            )
    return rules


def _shadow_rules(policy: GateSpec, shadow: dict[str, Any] | None) -> list[Rule]:
    rules = []
    seen = shadow or {}
    checks = (
        ("agreement", policy.shadow.min_agreement, True, "share of rows with the same class"),
        ("mean_abs_diff", policy.shadow.max_mean_abs_diff, False, "mean |score difference|"),
    )
    for key, limit, at_least, what in checks:
        if limit is None:
            continue
        value = seen.get(key)
        if value is None or math.isnan(value):
            rules.append(_missing(key, "shadow", "newest batch (no batch to compare on)"))
            continue
        ok = value >= limit if at_least else value <= limit
        rules.append(
            Rule(
                f"shadow:{key}",
                "shadow",
                Outcome.PASS if ok else Outcome.FAIL,
                value,
                limit,
                f"{what} vs champion on {seen.get('rows')} rows of {seen.get('batch')}: {_fmt(value)}, "
                f"required {'≥' if at_least else '≤'} {_fmt(limit)}",
            )
        )
    return rules


def decide(
    model: str,
    policy: GateSpec,
    candidate: Measurement,
    champion: Measurement | None,
    *,
    confidence: dict[str, float] | None = None,
    shadow: dict[str, Any] | None = None,
) -> Verdict:
    """The verdict on ``candidate``: absolute rules always, rules against ``champion`` if there is one."""
    rules = _threshold_rules(policy, candidate) + _budget_rules(policy, candidate)
    if champion is None:
        skipped = [f"regression:{m}" for m in policy.max_regression] + [
            f"improvement:{m}" for m in policy.min_improvement
        ]
        if policy.min_confidence is not None:
            skipped.append(f"confidence:{policy.primary_metric}")
        if policy.shadow.min_agreement is not None:
            skipped.append("shadow:agreement")
        if policy.shadow.max_mean_abs_diff is not None:
            skipped.append("shadow:mean_abs_diff")
        rules += [
            Rule(
                name,
                name.split(":")[0],
                Outcome.SKIPPED,
                None,
                None,
                "no champion yet: bootstrap under absolute rules",
            )
            for name in skipped
        ]
    else:
        rules += _comparison_rules(policy, candidate, champion, confidence)
        rules += _shadow_rules(policy, shadow)
    return Verdict(
        model=model,
        candidate_version=candidate.version,
        champion_version=champion.version if champion else None,
        bootstrap=champion is None,
        passed=all(r.outcome is not Outcome.FAIL for r in rules),
        rules=rules,
        candidate_metrics=candidate.metrics,
        champion_metrics=champion.metrics if champion else None,
        confidence=confidence,
        shadow=shadow,
    )
