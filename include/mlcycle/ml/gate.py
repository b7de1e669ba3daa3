"""The promotion gate: a pure function from measurements and policy to a verdict.

The verdict is an artifact: every rule with its numbers and pass/fail, serialisable
to JSON (``mlcycle.reports.pages.gate_page`` renders it to HTML). The first model of a
name has no champion to compare with and bootstraps under the absolute rules only
(thresholds and budgets).

Against a champion, the candidate must also not regress on the *trusted evaluation set*
(validated holdout rows of earlier champions, ``mlcycle.data.lake``), so a candidate whose own
holdout carries the same damage as its training data cannot win on it; and its latency is
judged as a ratio to the champion's, both timed interleaved, so machine load cannot flip it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from mlcycle.core.spec import GateSpec, higher_is_better


class Outcome(StrEnum):
    """A rule's result: a ``skipped`` rule (no champion to compare with) does not fail the gate."""

    PASS = "pass"
    FAIL = "fail"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Rule:
    """One evaluated gate rule: what was measured, the limit it had to meet, and a sentence for reviewers."""

    name: str
    kind: str  # threshold | regression | improvement | confidence | budget | shadow | trusted | slice | class
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
    confidence: dict[str, Any] | None = None
    shadow: dict[str, Any] | None = None
    evidence: dict[str, str] = field(default_factory=dict)
    trusted: dict[str, Any] | None = None  # the trusted set's version, rows, digest and metrics
    slices: list[dict[str, Any]] | None = None  # the primary metric per slice (gate.slices)
    overrides: dict[str, Any] | None = None  # the run's one-off changes to the spec's gate

    @property
    def failed_rules(self) -> list[Rule]:
        return [r for r in self.rules if r.outcome is Outcome.FAIL]

    def summary(self) -> str:
        return self._outcome() + (
            f" (gate overrides of this run: {json.dumps(self.overrides, sort_keys=True)})"
            if self.overrides
            else ""
        )

    def _outcome(self) -> str:
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
    sign = 1.0 if higher_is_better(metric) else -1.0
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


def _latency_ratio_rule(policy: GateSpec, cand: Measurement, champ: Measurement | None) -> Rule | None:
    """Candidate latency / champion latency against ``budgets.max_latency_ratio``, when a
    champion was timed beside the candidate; None when the absolute budget applies instead."""
    limit = policy.budgets.max_latency_ratio
    if limit is None or champ is None or champ.latency_ms_per_1k_rows is None:
        return None
    c, b = cand.latency_ms_per_1k_rows, champ.latency_ms_per_1k_rows
    if c is None or math.isnan(c):
        return _missing("latency_ratio", "budget", "candidate")
    ratio = c / max(b, 1e-9)
    ok = ratio <= limit
    return Rule(
        "budget:latency_ratio",
        "budget",
        Outcome.PASS if ok else Outcome.FAIL,
        ratio,
        limit,
        f"latency {_fmt(c)} ms per 1k rows is {ratio:.2f}x the champion's {_fmt(b)} (timed interleaved, "
        f"best of several runs), {'within' if ok else 'over'} the allowed {limit:.2f}x",
    )


def _budget_rules(policy: GateSpec, cand: Measurement, champ: Measurement | None = None) -> list[Rule]:
    rules = []
    ratio = _latency_ratio_rule(policy, cand, champ)
    if ratio is not None:
        rules.append(ratio)
    for key, what, unit in (
        ("latency_ms_per_1k_rows", "latency", "ms per 1k rows"),
        ("model_size_mb", "model size", "MB"),
    ):
        if key == "latency_ms_per_1k_rows" and ratio is not None:
            continue  # beside a champion the ratio decides: an absolute time flips with load
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
    policy: GateSpec, cand: Measurement, champ: Measurement, confidence: dict[str, Any] | None
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
            better = "higher" if higher_is_better(metric) else "lower"
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


def _class_recall_rules(
    policy: GateSpec, cand: Measurement, champ: Measurement | None, class_rows: dict[str, int] | None
) -> list[Rule]:
    """Multi-class: one rule per class, its recall on the holdout no more than
    ``max_class_recall_drop`` below the champion's on the same rows. A class with fewer than
    ``class_min_rows`` holdout rows (``class_rows``), or none, is listed as skipped, not judged.
    The first version: skipped."""
    limit = policy.max_class_recall_drop
    if limit is None:
        return []
    classes = sorted(k.partition(".")[2] for k in cand.metrics if k.startswith("recall."))
    rules = []
    for cls in classes:
        name = f"class:recall.{cls}"
        c = cand.metrics.get(f"recall.{cls}")
        b = champ.metrics.get(f"recall.{cls}") if champ else None
        rows = (class_rows or {}).get(cls)
        if champ is None:
            skipped = "no champion yet: bootstrap under absolute rules"
        elif rows is not None and rows < policy.class_min_rows:
            skipped = f"class {cls!r} has {rows} holdout rows, fewer than gate.class_min_rows ({policy.class_min_rows}): not judged"
        elif c is None or b is None or math.isnan(c) or math.isnan(b):
            skipped = f"class {cls!r} has no holdout rows: recall undefined, not judged"
        else:
            drop = round(b - c, 12) + 0.0
            ok = drop <= limit
            rules.append(
                Rule(
                    name,
                    "class",
                    Outcome.PASS if ok else Outcome.FAIL,
                    -drop,
                    limit,
                    f"recall of class {cls!r} {_fmt(c)} vs champion {_fmt(b)}: drop {_fmt(drop)}, "
                    f"allowed {_fmt(limit)} (gate.max_class_recall_drop)",
                )
            )
            continue
        rules.append(Rule(name, "class", Outcome.SKIPPED, None, limit, skipped))
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


def _trusted_rule(policy: GateSpec, trusted: dict[str, Any] | None) -> Rule:
    """The candidate may not regress on the trusted set by more than the spec's tolerance
    (``GateSpec.trusted_tolerance``); skipped when there is no usable set yet."""
    metric = policy.primary_metric
    name, tolerance = f"trusted:{metric}", policy.trusted_tolerance
    if trusted is None:
        why = "no trusted evaluation set yet: the next promotion seeds it with its holdout"
        return Rule(name, "trusted", Outcome.SKIPPED, None, tolerance, why)
    where = (
        f"trusted set v{trusted.get('version')} ({trusted.get('rows_used')} of {trusted.get('rows')} rows, "
        f"SHA-256 {str(trusted.get('digest', ''))[:12]})"
    )
    if trusted.get("skipped"):
        return Rule(
            name, "trusted", Outcome.SKIPPED, None, tolerance, f"{where} not used: {trusted['skipped']}"
        )
    c = (trusted.get("candidate") or {}).get(metric)
    b = (trusted.get("champion") or {}).get(metric)
    if c is None or math.isnan(c):
        return _missing(metric, "trusted", f"{where} (candidate)")
    if b is None or math.isnan(b):
        return _missing(metric, "trusted", f"{where} (champion)")
    gain = _gain(metric, c, b)
    ok = gain >= -tolerance
    better = "higher" if higher_is_better(metric) else "lower"
    detail = (
        f"on the {where}: {metric} {_fmt(c)} vs champion {_fmt(b)}: change {gain:+.4g} ({better} is better), "
        f"allowed regression {_fmt(tolerance)}"
    )
    return Rule(name, "trusted", Outcome.PASS if ok else Outcome.FAIL, gain, tolerance, detail)


def _slice_rules(policy: GateSpec, slices: list[dict[str, Any]] | None, *, bootstrap: bool) -> list[Rule]:
    """One rule per slice of ``gate.slices``: on the holdout rows of that slice, the candidate's
    primary metric may not be worse than the champion's by more than ``slices.tolerance``. A slice
    with too few rows, or where the metric is undefined, is listed as skipped."""
    metric, spec = policy.primary_metric, policy.slices
    rules = []
    for s in slices or []:
        name = f"slice:{s['column']}={s['value']}"
        where = f"slice {s['column']}={s['value']} ({s['rows']} holdout rows)"
        c, b = s.get("candidate"), s.get("champion")
        if bootstrap:
            skipped = f"no champion yet, candidate {metric} {_fmt(c)}"
        elif s["rows"] < spec.min_rows:
            skipped = f"fewer than gate.slices.min_rows ({spec.min_rows}), not judged"
        elif c is None or b is None:
            skipped = f"{metric} is undefined on it (one class only?), not judged"
        else:
            gain = _gain(metric, c, b)
            outcome = Outcome.PASS if gain >= -spec.tolerance else Outcome.FAIL
            detail = (
                f"{where}: {metric} {_fmt(c)} vs champion {_fmt(b)}, change {gain:+.4g}, "
                f"allowed regression {_fmt(spec.tolerance)}"
            )
            rules.append(Rule(name, "slice", outcome, gain, spec.tolerance, detail))
            continue
        rules.append(Rule(name, "slice", Outcome.SKIPPED, None, spec.tolerance, f"{where}: {skipped}"))
    return rules


def decide(
    model: str,
    policy: GateSpec,
    candidate: Measurement,
    champion: Measurement | None,
    *,
    confidence: dict[str, Any] | None = None,
    shadow: dict[str, Any] | None = None,
    trusted: dict[str, Any] | None = None,
    slices: list[dict[str, Any]] | None = None,
    class_rows: dict[str, int] | None = None,
) -> Verdict:
    """The verdict on ``candidate``: absolute rules always, rules against ``champion`` if there
    is one (on the holdout, per slice of it, and on the ``trusted`` set's measurements when it
    was used)."""
    rules = _threshold_rules(policy, candidate) + _budget_rules(policy, candidate, champion)
    if champion is None:
        skipped = [f"regression:{m}" for m in policy.max_regression] + [
            f"improvement:{m}" for m in policy.min_improvement
        ]
        skipped.append(f"trusted:{policy.primary_metric}")
        if policy.min_confidence is not None:
            skipped.append(f"confidence:{policy.primary_metric}")
        if policy.shadow.min_agreement is not None:
            skipped.append("shadow:agreement")
        if policy.shadow.max_mean_abs_diff is not None:
            skipped.append("shadow:mean_abs_diff")
        seeds = {f"trusted:{policy.primary_metric}": "; promoting it seeds the trusted evaluation set"}
        rules += [
            Rule(
                name,
                name.split(":")[0],
                Outcome.SKIPPED,
                None,
                None,
                f"no champion yet: bootstrap under absolute rules{seeds.get(name, '')}",
            )
            for name in skipped
        ]
    else:
        rules += _comparison_rules(policy, candidate, champion, confidence)
        rules += _shadow_rules(policy, shadow)
        rules.append(_trusted_rule(policy, trusted))
    rules += _class_recall_rules(policy, candidate, champion, class_rows)
    rules += _slice_rules(policy, slices, bootstrap=champion is None)
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
        trusted=trusted if champion is not None else None,
        slices=slices or None,
    )
