"""Guardrails in front of a drift-triggered retrain.

Drift says the world moved; these rules say whether retraining now is wise. Every
rule is evaluated (not just the first that blocks) so the recorded decision explains
itself: cooldown since the last training, enough new rows since then, a cap on
retrains per rolling week, and never on data that failed validation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datetime as dt

    from mlcycle.core.spec import MonitorSpec


@dataclass(frozen=True)
class Facts:
    """What the monitor knows when it decides."""

    now: dt.datetime
    drift_detected: bool
    drift_summary: str
    last_training: dt.datetime | None  # when the current champion (or newest version) was trained
    new_rows: int  # rows landed after that training
    retrains_last_week: int  # retrain requests in the 7 days before ``now``
    newest_batch_failed_validation: bool
    newest_batch: str | None = None


@dataclass(frozen=True)
class Check:
    """One guardrail's outcome, with the numbers behind it for the recorded decision."""

    name: str
    passed: bool
    detail: str


@dataclass
class Decision:
    """Whether to ask for a retrain, why, and every check that led there (passed or not)."""

    retrain: bool
    reason: str
    checks: list[Check] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def blocked_by(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]


def decide(facts: Facts, policy: MonitorSpec) -> Decision:
    """Retrain only if drift was found and every guardrail in ``policy`` passes; all checks are evaluated."""
    checks = [Check("drift", facts.drift_detected, facts.drift_summary)]
    if facts.last_training is None:
        checks.append(Check("cooldown", True, "no training recorded yet"))
    else:
        hours = (facts.now - facts.last_training).total_seconds() / 3600
        checks.append(
            Check(
                "cooldown",
                hours >= policy.cooldown_hours,
                f"{hours:.1f} h since the last training, cooldown {policy.cooldown_hours:g} h",
            )
        )
    checks.append(
        Check(
            "min_new_rows",
            facts.new_rows >= policy.min_new_rows,
            f"{facts.new_rows} new rows since the last training, need {policy.min_new_rows}",
        )
    )
    checks.append(
        Check(
            "max_retrains_per_week",
            facts.retrains_last_week < policy.max_retrains_per_week,
            f"{facts.retrains_last_week} retrain(s) requested in the last 7 days, "
            f"at most {policy.max_retrains_per_week}",
        )
    )
    checks.append(
        Check(
            "newest_batch_valid",
            not facts.newest_batch_failed_validation,
            f"newest batch {facts.newest_batch or '-'} "
            + (
                "failed validation (quarantined)"
                if facts.newest_batch_failed_validation
                else "passed validation"
            ),
        )
    )
    retrain = all(c.passed for c in checks)
    if retrain:
        reason = f"retrain requested: {facts.drift_summary}"
    elif not facts.drift_detected:
        reason = f"no retrain: {facts.drift_summary}"
    else:
        blocked = "; ".join(c.detail for c in checks if not c.passed)
        reason = f"drift detected but retrain blocked by guardrails: {blocked}"
    return Decision(retrain=retrain, reason=reason, checks=checks)
