"""The pre-training data check: a candidate's training data against the champion's reference
profile, before anything is fitted.

Three kinds of check, each with its number and its bound in the report:

* **null rate** per feature: a rise of more than ``max_null_rate_increase`` (absolute), or a
  feature null on every row, refuses the run;
* **marginals** per feature (PSI and the other drift statistics of ``monitor.verdict``):
  reported; they refuse only when the spec sets ``max_psi``, because a shift of the world is
  what drift-triggered retraining exists for;
* **relationships**: the association of every pair of columns, the target included (bias-
  corrected Cramér's V of the two columns binned by their own deciles). A pair that was
  associated in the reference and lost most of that association refuses the run.

Why relationships are measured this way: values permuted across rows keep every marginal, so
no marginal statistic can see them, but they cut each permuted column loose from the target
and from the other columns. Binning each column by *its own* quantiles makes the measure
depend on the columns' joint order only, not on their marginals, so a drifted but real window
(shifted prices, older customers) keeps its associations while a permuted one loses them
(measured on both shipped models: permuted pairs fall to ≈ 0, clean windows stay above ≈ 0.8
of the reference, a window at the generators' strongest drift above ≈ 0.65). It needs no
model and no labels beyond the target column the training data has anyway.

Pure functions: a profile (dict, as logged with the champion) and a frame in, a typed
``ShiftReport`` out. The flow (``flows.train``) decides what a breach does.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from mlcycle.core.spec import ModelSpec, Task

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

ASSOCIATION_BINS = 10  # deciles of each numeric column
ASSOCIATION_MAX_ROWS = 20_000  # rows sampled (seeded) for the association table
MAX_LISTED = 12  # breaches named in a summary; the report has them all


class Outcome(StrEnum):
    """A check's result. ``reported`` is measured and shown but never refuses."""

    PASS = "pass"
    FAIL = "fail"
    SKIPPED = "skipped"
    REPORTED = "reported"


@dataclass(frozen=True)
class ShiftCheck:
    """One check: what was measured (``observed``), the reference's value, and the bound."""

    check: str  # null_rate | marginal | relationship
    subject: str  # a feature, or "a ~ b" for a pair of columns
    outcome: Outcome
    observed: float | None
    reference: float | None
    bound: float | None
    detail: str


@dataclass
class ShiftReport:
    """Every check of a training frame against the champion's reference, and the decision."""

    model: str
    champion_version: str | None
    rows: int
    checks: list[ShiftCheck]
    skipped: str | None = None  # why nothing was compared (no champion, no profile)
    accepted: str | None = None  # the run's reason, when it accepted a breach

    @property
    def breaches(self) -> list[ShiftCheck]:
        return [c for c in self.checks if c.outcome is Outcome.FAIL]

    @property
    def status(self) -> str:
        """``skipped``, ``pass``, ``accepted`` (breached, trained anyway) or ``refused``."""
        if self.skipped is not None:
            return "skipped"
        if not self.breaches:
            return "pass"
        return "accepted" if self.accepted else "refused"

    def summary(self) -> str:
        if self.skipped is not None:
            return f"data shift check skipped: {self.skipped}"
        decided = [c for c in self.checks if c.outcome in (Outcome.PASS, Outcome.FAIL)]
        against = f"champion v{self.champion_version}'s reference"
        if not self.breaches:
            return f"no data shift: {len(decided)} checks of {self.rows} rows against {against} passed"
        listed = "; ".join(c.detail for c in self.breaches[:MAX_LISTED])
        more = len(self.breaches) - MAX_LISTED
        return (
            f"data shift: {len(self.breaches)} of {len(decided)} checks of {self.rows} rows against "
            f"{against} breached: {listed}{f'; and {more} more' if more > 0 else ''}"
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status
        data["summary"] = self.summary()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShiftReport:
        fields = {k: v for k, v in data.items() if k not in ("status", "summary", "checks")}
        checks = [ShiftCheck(**{**c, "outcome": Outcome(c["outcome"])}) for c in data["checks"]]
        return cls(checks=checks, **fields)


def skipped_report(
    spec: ModelSpec, rows: int, reason: str, champion_version: str | None = None
) -> ShiftReport:
    """A report saying why nothing was compared (no champion yet, or no profile to compare with)."""
    return ShiftReport(spec.name, champion_version, rows, [], skipped=reason)


# --- associations -----------------------------------------------------------------------------------


def _codes(values: pd.Series, numeric: bool, bins: int) -> np.ndarray:
    """Each value's bin as 0..k-1, -1 for a missing value: numeric columns by their own
    quantiles (ties and discrete columns give fewer bins), others by distinct value."""
    import numpy as np
    import pandas as pd

    if not numeric:
        return np.asarray(pd.Categorical(values).codes, dtype="int64")
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    out = np.full(len(x), -1, dtype="int64")
    ok = np.isfinite(x)
    if ok.any():
        edges = np.unique(np.quantile(x[ok], np.linspace(0.0, 1.0, bins + 1)[1:-1]))
        out[ok] = np.searchsorted(edges, x[ok], side="left")
    return out


def cramers_v(a: np.ndarray, b: np.ndarray) -> float | None:
    """Bias-corrected Cramér's V (Bergsma 2013) of two code arrays (-1 = missing, left out):
    about 0 for independent columns whatever the sample size, 1 for a one-to-one relation. None when
    either column has a single value among the rows both have."""
    import numpy as np

    both = (a >= 0) & (b >= 0)
    n = int(both.sum())
    if n < 3:
        return None
    ua, ia = np.unique(a[both], return_inverse=True)
    ub, ib = np.unique(b[both], return_inverse=True)
    r, k = len(ua), len(ub)
    if r < 2 or k < 2:
        return None
    table = np.bincount(ia * k + ib, minlength=r * k).reshape(r, k).astype("float64")
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / n
    phi2 = float(((table - expected) ** 2 / expected).sum()) / n
    phi2 = max(0.0, phi2 - (k - 1) * (r - 1) / (n - 1))
    rc, kc = r - (r - 1) ** 2 / (n - 1), k - (k - 1) ** 2 / (n - 1)
    denominator = min(kc - 1, rc - 1)
    return float(np.sqrt(phi2 / denominator)) if denominator > 0 else None


def associations(
    spec: ModelSpec, df: pd.DataFrame, *, max_rows: int = ASSOCIATION_MAX_ROWS
) -> dict[str, Any]:
    """The association of every pair of the spec's features and its target in ``df`` (a seeded
    sample of at most ``max_rows`` rows): ``{"bins", "rows", "pairs": {"a ~ b": V or None}}``.
    Logged with every version's reference profile; computed again on a candidate's data."""
    columns = [*spec.features.numeric, *spec.features.categorical, spec.data.target]
    numeric = set(spec.features.numeric) | ({spec.data.target} if spec.task is Task.REGRESSION else set())
    sample = df.sample(max_rows, random_state=0) if len(df) > max_rows else df
    codes = {c: _codes(sample[c], c in numeric, ASSOCIATION_BINS) for c in columns if c in sample.columns}
    pairs = {
        f"{a} ~ {b}": cramers_v(codes[a], codes[b])
        for a, b in itertools.combinations(columns, 2)
        if a in codes and b in codes
    }
    return {"bins": ASSOCIATION_BINS, "rows": len(sample), "pairs": pairs}


# --- the checks ------------------------------------------------------------------------------------


def _null_rate(values: pd.Series, numeric: bool) -> float:
    import numpy as np

    from mlcycle.monitor.profile import as_float

    if not len(values):
        return 0.0
    if numeric:  # as the profile counts them: inf is missing too
        return float((~np.isfinite(as_float(values, str(values.name)))).mean())
    return float(values.isna().mean())


def _null_checks(spec: ModelSpec, profile: Mapping[str, Any], df: pd.DataFrame) -> list[ShiftCheck]:
    bound = spec.gate.data_shift.max_null_rate_increase
    checks = []
    for feature in spec.features.tabular:
        numeric = feature in spec.features.numeric
        ref_profile = profile.get("numeric" if numeric else "categorical", {}).get(feature)
        if ref_profile is None:
            checks.append(
                ShiftCheck(
                    "null_rate",
                    feature,
                    Outcome.SKIPPED,
                    None,
                    None,
                    bound,
                    f"{feature} is not in the champion's profile",
                )
            )
            continue
        ref, cur = float(ref_profile["null_rate"]), _null_rate(df[feature], numeric)
        all_null = cur >= 1.0 > ref
        ok = cur - ref <= bound and not all_null
        what = "null on every row" if all_null else f"null rate {cur:.1%}"
        detail = f"{feature}: {what} vs reference {ref:.1%} ({(cur - ref) * 100:+.1f} points, allowed +{bound * 100:.1f})"
        checks.append(
            ShiftCheck("null_rate", feature, Outcome.PASS if ok else Outcome.FAIL, cur, ref, bound, detail)
        )
    return checks


def _marginal_checks(spec: ModelSpec, profile: Mapping[str, Any], df: pd.DataFrame) -> list[ShiftCheck]:
    """PSI per feature from the drift machinery (``Accumulator`` + ``assess``); refusing only
    above ``max_psi`` when the spec sets it."""
    from mlcycle.core.errors import DriftError
    from mlcycle.monitor.profile import Profile, Statistic
    from mlcycle.monitor.verdict import assess
    from mlcycle.monitor.window import Accumulator

    bound = spec.gate.data_shift.max_psi
    try:
        reference = Profile.from_dict(profile)
        if sorted(reference.features) != sorted(spec.features.tabular):
            raise DriftError(
                f"the champion's profile has features {reference.features}, the spec {spec.features.tabular}"
            )
        acc = Accumulator(reference)
        acc.update(df[reference.features])
        report = assess(reference, acc.result(), min_rows=spec.monitor.min_rows)
    except DriftError as exc:
        return [
            ShiftCheck("marginal", "*", Outcome.SKIPPED, None, None, bound, f"marginals not compared: {exc}")
        ]
    checks = []
    for feature in report.features:
        psi = next((r for r in feature.results if r.statistic is Statistic.PSI), None)
        value = psi.value if psi is not None else None
        if value is None:
            reason = psi.reason if psi is not None else "no PSI for this feature"
            checks.append(
                ShiftCheck(
                    "marginal",
                    feature.feature,
                    Outcome.SKIPPED,
                    None,
                    None,
                    bound,
                    f"{feature.feature}: {reason}",
                )
            )
            continue
        if bound is None:
            outcome, limit = Outcome.REPORTED, "reported only (gate.data_shift.max_psi is not set)"
        else:
            outcome = Outcome.PASS if value <= bound else Outcome.FAIL
            limit = f"allowed ≤ {bound:.3g}"
        checks.append(
            ShiftCheck(
                "marginal",
                feature.feature,
                outcome,
                value,
                None,
                bound,
                f"{feature.feature}: PSI {value:.3f} against the reference; {limit}",
            )
        )
    return checks


def _relationship_checks(spec: ModelSpec, profile: Mapping[str, Any], df: pd.DataFrame) -> list[ShiftCheck]:
    policy = spec.gate.data_shift
    reference = profile.get("associations")
    if not reference:
        why = "the champion's profile has no associations (it predates this check); retrain it to add them"
        return [ShiftCheck("relationship", "*", Outcome.SKIPPED, None, None, None, why)]
    if len(df) < policy.min_rows:
        why = f"{len(df)} rows, fewer than gate.data_shift.min_rows ({policy.min_rows}): associations are too noisy"
        return [ShiftCheck("relationship", "*", Outcome.SKIPPED, None, None, None, why)]
    current = associations(spec, df)["pairs"]
    checks = _leak_checks(spec, reference["pairs"], current)
    for pair, ref in reference["pairs"].items():
        if ref is None or ref < policy.min_reference_association:
            continue  # not associated in the reference: nothing a permutation could destroy
        bound = policy.min_association_ratio * ref
        cur = current.get(pair)
        if cur is None:
            checks.append(
                ShiftCheck(
                    "relationship",
                    pair,
                    Outcome.SKIPPED,
                    None,
                    ref,
                    bound,
                    f"{pair}: not measurable in the new data (a column is constant, empty or no longer in the spec)",
                )
            )
            continue
        ok = cur >= bound
        detail = f"{pair}: association {cur:.3f} vs reference {ref:.3f}, required ≥ {bound:.3f}"
        checks.append(
            ShiftCheck("relationship", pair, Outcome.PASS if ok else Outcome.FAIL, cur, ref, bound, detail)
        )
    return checks


def _leak_checks(
    spec: ModelSpec, reference: Mapping[str, float | None], current: Mapping[str, float | None]
) -> list[ShiftCheck]:
    """A feature that now (almost) determines the target, where it did not in the reference:
    a column filled from the outcome trains a model that cannot exist at prediction time."""
    bound = spec.gate.data_shift.max_target_association
    checks = []
    for feature in spec.features.tabular:
        pair = f"{feature} ~ {spec.data.target}"
        cur, ref = current.get(pair), reference.get(pair)
        if cur is None or ref is None or ref >= bound:
            continue
        ok = cur < bound
        detail = (
            f"{feature} ~ {spec.data.target}: association {cur:.3f} vs reference {ref:.3f}, allowed < {bound:.3f}"
            + ("" if ok else f": {feature!r} looks filled from the label (leakage); fix the column upstream")
        )
        checks.append(
            ShiftCheck("leakage", pair, Outcome.PASS if ok else Outcome.FAIL, cur, ref, bound, detail)
        )
    return checks


def check_shift(
    spec: ModelSpec, profile: Mapping[str, Any], df: pd.DataFrame, *, champion_version: str | None
) -> ShiftReport:
    """Compare ``df`` (a candidate's training rows) with the champion's reference ``profile``
    (``monitor.reference.reference_profile``) under ``spec.gate.data_shift``: null rates,
    marginals and relationships, each check with its number and bound."""
    checks = [
        *_null_checks(spec, profile, df),
        *_relationship_checks(spec, profile, df),
        *_marginal_checks(spec, profile, df),
    ]
    report = ShiftReport(spec.name, champion_version, len(df), checks)
    log.info("%s", report.summary())
    return report
