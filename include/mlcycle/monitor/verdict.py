"""Per-feature drift results and the dataset verdict: effect sizes against thresholds (with
per-feature overrides), weighted by feature importance."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from mlcycle.core.errors import DriftError
from mlcycle.monitor.profile import (
    ALLOWED,
    DECIDING,
    DEFAULT_THRESHOLDS,
    OTHER,
    PREDICTION,
    REPORTED,
    UNSEEN,
    CategoricalProfile,
    Kind,
    NumericProfile,
    Profile,
    Statistic,
    bin_counts,
    extended_grid,
)
from mlcycle.monitor.statistics import (
    chi2_test,
    jensen_shannon,
    ks_pvalue,
    population_stability_index,
    wasserstein,
)

if TYPE_CHECKING:
    import numpy as np

    from mlcycle.monitor.window import CategoricalCurrent, CurrentStats, NumericCurrent

log = logging.getLogger(__name__)


# --- per-feature results --------------------------------------------------------------------------


@dataclass
class Histogram:
    """Reference and current proportions per bin or category, for a report."""

    labels: list[str]
    reference: list[float]
    current: list[float]


@dataclass
class FeatureResult:
    """One statistic on one feature. ``value`` is None, with a ``reason``, when not computed.

    ``drifted`` is ``value > threshold`` (``value < threshold`` for chi2, whose value is a
    p-value); ``decisive`` says whether it counts towards the feature's verdict or is only
    reported."""

    feature: str
    kind: Kind
    statistic: Statistic
    value: float | None
    threshold: float
    drifted: bool | None
    decisive: bool
    reason: str | None = None
    p_value: float | None = None
    note: str | None = None
    detail: dict[str, float] = field(default_factory=dict)
    histogram: Histogram | None = None


class ColumnSummary(TypedDict, total=False):
    """Summary numbers of one column (reference or current) shown beside its drift results."""

    rows: int
    count: int
    null_rate: float
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    categories: int


@dataclass
class FeatureDrift:
    """The verdict on one feature: drifted if any decisive statistic (the null-rate jump
    included) drifted; stable if every decisive distribution statistic was computed and none
    drifted; otherwise not computed (``drifted`` None, ``reason`` says why)."""

    feature: str
    kind: Kind
    drifted: bool | None
    weight: float
    detail: str
    reason: str | None
    reference: ColumnSummary
    current: ColumnSummary
    results: list[FeatureResult]
    unseen: dict[str, int] = field(default_factory=dict)

    def result(self, statistic: Statistic | str) -> FeatureResult:
        for r in self.results:
            if r.statistic == statistic:
                return r
        raise KeyError(
            f"{self.feature}: no {statistic} result; have {[str(r.statistic) for r in self.results]}"
        )


@dataclass(frozen=True)
class _Plan:
    reported: tuple[Statistic, ...]
    deciding: frozenset[Statistic]
    thresholds: dict[Statistic, float]


def _plans(profile: Profile, overrides: Mapping[str, Mapping[str, Any]] | None) -> dict[str, _Plan]:
    """Per feature: which statistics to compute, which decide, and their thresholds.

    ``overrides`` maps a feature (or ``__prediction__``) to ``{"statistic": name, "threshold":
    number}``: that statistic alone then decides the feature's distribution drift (the others
    are still reported, and a null-rate jump still counts); ``threshold`` defaults to the
    statistic's default."""
    kinds = {
        **dict.fromkeys(profile.numeric, Kind.NUMERIC),
        **dict.fromkeys(profile.categorical, Kind.CATEGORICAL),
    }
    if profile.prediction is not None:
        kinds[PREDICTION] = Kind.NUMERIC
    plans = {
        name: _Plan(REPORTED[kind], frozenset(DECIDING[kind]), dict(DEFAULT_THRESHOLDS))
        for name, kind in kinds.items()
    }
    for name, override in (overrides or {}).items():
        if name not in kinds:
            raise DriftError(f"drift override for unknown feature {name!r}; profiled: {sorted(kinds)}")
        if not isinstance(override, Mapping) or set(override) - {"statistic", "threshold"}:
            raise DriftError(
                f"drift override for {name!r} must be a mapping with keys 'statistic' and optional "
                f"'threshold', got {override!r}"
            )
        kind = kinds[name]
        try:
            stat = Statistic(str(override.get("statistic")))
        except ValueError:
            stat = None
        if stat is None or stat not in ALLOWED[kind]:
            raise DriftError(
                f"drift override for {kind} feature {name!r}: statistic {override.get('statistic')!r} "
                f"is not one of {sorted(str(s) for s in ALLOWED[kind])}"
            )
        threshold = override.get("threshold", DEFAULT_THRESHOLDS[stat])
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not 0 < threshold < math.inf
        ):
            raise DriftError(
                f"drift override for {name!r}: threshold must be a positive number, got {threshold!r}"
            )
        if stat is Statistic.CHI2 and threshold >= 1:
            raise DriftError(
                f"drift override for {name!r}: a chi2 threshold is a p-value below 1, got {threshold}"
            )
        reported = (*REPORTED[kind], stat) if stat not in REPORTED[kind] else REPORTED[kind]
        plans[name] = _Plan(reported, frozenset({stat}), {**DEFAULT_THRESHOLDS, stat: float(threshold)})
    return plans


def _exceeds(stat: Statistic, value: float, threshold: float) -> bool:
    return value < threshold if stat is Statistic.CHI2 else value > threshold


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _bin_labels(edges: list[float]) -> list[str]:
    if not edges:
        return ["all values"]
    below_min = len(edges) >= 2 and edges[0] == math.nextafter(edges[1], -math.inf)
    bounds = [-math.inf, *edges, math.inf]
    labels = []
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        if below_min and i == 0:
            labels.append(f"< {_fmt(edges[1])}")
        elif below_min and i == 1:
            labels.append(f"= {_fmt(hi)}")
        elif lo == -math.inf:
            labels.append(f"≤ {_fmt(hi)}")
        elif hi == math.inf:
            labels.append(f"> {_fmt(lo)}")
        else:
            labels.append(f"({_fmt(lo)}, {_fmt(hi)}]")
    return labels


def _result(
    feature: str, kind: Kind, stat: Statistic, plan: _Plan, value: float | None, **extra: Any
) -> FeatureResult:
    threshold = plan.thresholds[stat]
    decisive = stat in plan.deciding or stat is Statistic.NULL_RATE
    drifted = None if value is None else _exceeds(stat, value, threshold)
    return FeatureResult(feature, kind, stat, value, threshold, drifted, decisive, **extra)


def _null_rate_result(
    ref: NumericProfile | CategoricalProfile,
    cur: NumericCurrent | CategoricalCurrent,
    kind: Kind,
    plan: _Plan,
    min_rows: int,
) -> FeatureResult:
    feature, ref_rate, cur_rate, rows = ref.name, ref.null_rate, cur.null_rate, cur.rows
    hist = Histogram(["null", "not null"], [ref_rate, 1.0 - ref_rate], [cur_rate, 1.0 - cur_rate])
    if rows < min_rows:
        return _result(
            feature,
            kind,
            Statistic.NULL_RATE,
            plan,
            None,
            reason=f"only {rows} rows; need {min_rows}",
            histogram=hist,
        )
    return _result(
        feature,
        kind,
        Statistic.NULL_RATE,
        plan,
        abs(cur_rate - ref_rate),
        note=f"null rate {ref_rate:.3f} -> {cur_rate:.3f}",
        histogram=hist,
    )


def _not_computed_reason(ref_count: int, rows: int, count: int, min_rows: int) -> str | None:
    if ref_count == 0:
        return "the reference has no non-null values"
    if rows == 0:
        return "the current window has no rows"
    if count == 0:
        return f"all {rows} current rows are null"
    if count < min_rows:
        return f"only {count} non-null rows; need {min_rows}"
    return None


def _numeric_results(
    fp: NumericProfile, cur: NumericCurrent, plan: _Plan, min_rows: int
) -> list[FeatureResult]:
    import numpy as np

    name, kind = fp.name, Kind.NUMERIC
    results = [_null_rate_result(fp, cur, kind, plan, min_rows)]
    reason = _not_computed_reason(fp.count, cur.rows, cur.count, min_rows)
    if reason:
        return results + [_result(name, kind, s, plan, None, reason=reason) for s in plan.reported]
    n, m = fp.count, cur.count
    t = extended_grid(fp.grid)
    ref_p = np.asarray(fp.bin_counts, dtype="float64") / n
    cur_p = bin_counts(name, t, cur.cum_counts, m, fp.edges) / m
    hist = Histogram(_bin_labels(fp.edges), [float(v) for v in ref_p], [float(v) for v in cur_p])
    constant = fp.std == 0
    for stat in plan.reported:
        if stat is Statistic.PSI:
            value = population_stability_index(ref_p, cur_p)
            results.append(_result(name, kind, stat, plan, value, histogram=hist))
        elif stat is Statistic.JS:
            results.append(_result(name, kind, stat, plan, jensen_shannon(ref_p, cur_p), histogram=hist))
        elif stat is Statistic.KS:
            gap = np.abs(cur.cum_counts / m - np.asarray(fp.cum_counts) / n)
            d = float(gap.max())
            results.append(
                _result(
                    name,
                    kind,
                    stat,
                    plan,
                    d,
                    p_value=ks_pvalue(d, n, m),
                    detail={"n_reference": n, "n_current": m},
                )
            )
        elif stat is Statistic.WASSERSTEIN:
            # std 0 means a constant column, whose IQR is 0 as well: an IQR fallback could never
            # apply, so a constant reference leaves the distance in the column's own units.
            scale = fp.std if fp.std else 1.0
            raw = wasserstein(fp, cur)
            note = (
                "reference is constant (std 0): distance in the column's units, not in stds"
                if constant
                else None
            )
            results.append(
                _result(
                    name, kind, stat, plan, raw / scale, note=note, detail={"distance": raw, "scale": scale}
                )
            )
    return results


def _categorical_results(
    cp: CategoricalProfile, cur: CategoricalCurrent, plan: _Plan, min_rows: int
) -> list[FeatureResult]:
    import numpy as np

    name, kind = cp.name, Kind.CATEGORICAL
    results = [_null_rate_result(cp, cur, kind, plan, min_rows)]
    reason = _not_computed_reason(cp.count, cur.rows, cur.count, min_rows)
    if reason:
        return results + [_result(name, kind, s, plan, None, reason=reason) for s in plan.reported]
    labels = [*cp.categories, OTHER, UNSEEN]
    ref_c = np.asarray([*cp.categories.values(), cp.other, 0], dtype="float64")
    cur_c = np.asarray([*(cur.counts[c] for c in cp.categories), cur.other, cur.unseen_rows], dtype="float64")
    keep = (ref_c > 0) | (cur_c > 0)  # a bucket empty on both sides adds nothing to PSI or JS
    ref_p, cur_p = ref_c[keep] / cp.count, cur_c[keep] / cur.count
    hist = Histogram(
        [lab for lab, k in zip(labels, keep, strict=True) if k],
        [float(v) for v in ref_p],
        [float(v) for v in cur_p],
    )
    unseen_note = None
    if cur.unseen_rows:
        listed = ", ".join(cur.unseen) + (", ..." if cur.unseen_truncated else "")
        unseen_note = f"{cur.unseen_rows} rows in unseen categories ({listed}), bucketed as {UNSEEN}"
    for stat in plan.reported:
        if stat is Statistic.PSI:
            value = population_stability_index(ref_p, cur_p)
            results.append(_result(name, kind, stat, plan, value, note=unseen_note, histogram=hist))
        elif stat is Statistic.JS:
            value = jensen_shannon(ref_p, cur_p)
            results.append(_result(name, kind, stat, plan, value, note=unseen_note, histogram=hist))
        elif stat is Statistic.CHI2:
            results.append(_chi2_result(cp, plan, ref_c, cur_c, cur.unseen_rows))
    return results


def _chi2_result(
    cp: CategoricalProfile, plan: _Plan, ref_c: np.ndarray, cur_c: np.ndarray, unseen_rows: int
) -> FeatureResult:
    """Chi-square over the buckets the reference has (expected > 0). Unseen categories have an
    expected count of 0, where the statistic is infinite whatever the evidence, so their rows
    are left out of the test (and reported by PSI/JS, where they are their own bucket): the
    test asks whether the current rows in known categories are spread as the reference's."""
    name, kind = cp.name, Kind.CATEGORICAL
    cells = ref_c > 0
    obs = cur_c[cells]
    if cells.sum() < 2:
        return _result(name, kind, Statistic.CHI2, plan, None, reason="the reference has a single category")
    if obs.sum() == 0:
        return _result(
            name, kind, Statistic.CHI2, plan, None, reason="every current value is an unseen category"
        )
    stat, p, dof = chi2_test(obs, ref_c[cells])
    return _result(
        name,
        kind,
        Statistic.CHI2,
        plan,
        p,
        p_value=p,
        note="value is the p-value; drift when below the threshold",
        detail={"statistic": stat, "dof": dof, "excluded_unseen_rows": unseen_rows},
    )


def _comparison(r: FeatureResult) -> str:
    below = r.statistic is Statistic.CHI2  # a p-value: drift below the threshold
    op = ("<" if below else ">") if r.drifted else ("≥" if below else "≤")
    return f"{r.statistic} {_fmt(r.value or 0.0)} {op} {_fmt(r.threshold)}"


def _verdict(results: list[FeatureResult]) -> tuple[bool | None, str, str | None]:
    """(drifted, one-line detail, reason when not computed) from a feature's results."""
    decisive = [r for r in results if r.decisive]
    shown = ", ".join(_comparison(r) for r in decisive if r.value is not None)
    if any(r.drifted for r in decisive):
        return True, f"drifted: {shown}", None
    distribution = [r for r in decisive if r.statistic is not Statistic.NULL_RATE]
    if all(r.drifted is not None for r in distribution):
        return False, f"stable: {shown}", None
    reason = next(r.reason for r in distribution if r.drifted is None) or "not computed"
    return None, f"not computed: {reason}", reason


def _numeric_summary(x: NumericProfile | NumericCurrent) -> ColumnSummary:
    return ColumnSummary(
        rows=x.rows, count=x.count, null_rate=x.null_rate, mean=x.mean, std=x.std, min=x.min, max=x.max
    )


def _assess_numeric(
    fp: NumericProfile, cur: NumericCurrent, plan: _Plan, min_rows: int, weight: float
) -> FeatureDrift:
    results = _numeric_results(fp, cur, plan, min_rows)
    drifted, detail, reason = _verdict(results)
    return FeatureDrift(
        feature=fp.name,
        kind=Kind.NUMERIC,
        drifted=drifted,
        weight=weight,
        detail=detail,
        reason=reason,
        reference=_numeric_summary(fp),
        current=_numeric_summary(cur),
        results=results,
    )


def _assess_categorical(
    cp: CategoricalProfile, cur: CategoricalCurrent, plan: _Plan, min_rows: int, weight: float
) -> FeatureDrift:
    results = _categorical_results(cp, cur, plan, min_rows)
    drifted, detail, reason = _verdict(results)
    return FeatureDrift(
        feature=cp.name,
        kind=Kind.CATEGORICAL,
        drifted=drifted,
        weight=weight,
        detail=detail,
        reason=reason,
        reference=ColumnSummary(
            rows=cp.rows,
            count=cp.count,
            null_rate=cp.null_rate,
            categories=len(cp.categories) + cp.other_categories,
        ),
        current=ColumnSummary(
            rows=cur.rows,
            count=cur.count,
            null_rate=cur.null_rate,
            categories=sum(1 for v in cur.counts.values() if v) + len(cur.unseen),
        ),
        results=results,
        unseen=dict(cur.unseen),
    )


# --- the dataset verdict --------------------------------------------------------------------------


@dataclass
class DriftReport:
    """Per-feature verdicts, the prediction's (reported apart, not in the share) and the verdict.

    ``share`` is the weighted share of drifted features among those with a verdict (weights
    from the profile's importance, equal if none; None when no feature could be assessed).
    ``dataset_drift`` is ``share > drift_share_threshold`` or a drifted prediction."""

    rows: int
    features: list[FeatureDrift]
    prediction: FeatureDrift | None
    drifted: list[str]
    not_computed: list[str]
    share: float | None
    weighted: bool
    drift_share_threshold: float
    min_rows: int
    dataset_drift: bool

    def feature(self, name: str) -> FeatureDrift:
        for f in self.features:
            if f.feature == name:
                return f
        if self.prediction and name == PREDICTION:
            return self.prediction
        raise KeyError(f"no feature {name!r} in the drift report; have {[f.feature for f in self.features]}")

    def summary(self) -> str:
        head = "drift" if self.dataset_drift else "no drift"
        label = "weighted share" if self.weighted else "share"
        computed = len(self.features) - len(self.not_computed)
        if self.share is None:
            parts = [f"{head}: no feature could be assessed"]
        else:
            cmp = ">" if self.share > self.drift_share_threshold else "≤"
            parts = [
                f"{head}: {len(self.drifted)} of {computed} features drifted "
                f"({label} {self.share:.2f} {cmp} {self.drift_share_threshold:.2f})"
            ]
        if self.not_computed:
            parts.append(f"not computed: {', '.join(self.not_computed)}")
        if self.prediction is not None:
            p = self.prediction
            if p.drifted is None:
                parts.append(f"prediction not computed ({p.reason})")
            else:
                shown = ", ".join(
                    f"{'KS' if r.statistic is Statistic.KS else str(r.statistic).upper()} {r.value:.2f}"
                    for r in p.results
                    if r.decisive and r.statistic is not Statistic.NULL_RATE and r.value is not None
                )
                parts.append(f"prediction {'drifted: ' if p.drifted else ''}{shown}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["summary"] = self.summary()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReport:
        def result(r: Mapping[str, Any]) -> FeatureResult:
            hist = Histogram(**r["histogram"]) if r.get("histogram") else None
            return FeatureResult(
                **{**r, "kind": Kind(r["kind"]), "statistic": Statistic(r["statistic"]), "histogram": hist}
            )

        def feature(f: Mapping[str, Any]) -> FeatureDrift:
            return FeatureDrift(
                **{**f, "kind": Kind(f["kind"]), "results": [result(r) for r in f["results"]]}
            )

        fields = {k: v for k, v in data.items() if k not in ("summary", "features", "prediction")}
        return cls(
            features=[feature(f) for f in data["features"]],
            prediction=feature(data["prediction"]) if data.get("prediction") else None,
            **fields,
        )


def _check_compatible(profile: Profile, current: CurrentStats) -> None:
    problems = []
    if list(current.numeric) != list(profile.numeric) or list(current.categorical) != list(
        profile.categorical
    ):
        problems.append(
            f"features {[*current.numeric, *current.categorical]} vs the profile's {profile.features}"
        )
    for name, fp in profile.numeric.items():
        cur = current.numeric.get(name)
        if cur is not None and len(cur.cum_counts) != len(extended_grid(fp.grid)):
            problems.append(f"{name}: {len(cur.cum_counts)} grid counts vs {len(fp.grid) + 1}")
    for name, cp in profile.categorical.items():
        cur_c = current.categorical.get(name)
        if cur_c is not None and list(cur_c.counts) != list(cp.categories):
            problems.append(f"{name}: different category list")
    if problems:
        raise DriftError(
            "current statistics were accumulated against a different profile ("
            + "; ".join(problems)
            + "); accumulate with Accumulator(profile) of the same profile"
        )


def _weights(profile: Profile, names: list[str]) -> dict[str, float]:
    if profile.importance is None:
        return dict.fromkeys(names, 1.0)
    # Permutation importance can be slightly negative for useless features: such a feature
    # should not count, and a negative weight would let drift lower the share.
    return {n: max(profile.importance.get(n, 0.0), 0.0) for n in names}


def assess(
    profile: Profile,
    current: CurrentStats,
    *,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    drift_share_threshold: float = 0.3,
    min_rows: int = 100,
) -> DriftReport:
    """Test every profiled feature of ``current`` against ``profile`` and decide.

    Per feature, numeric: PSI on the reference bins and the KS statistic decide (drift if
    PSI > 0.2 or KS > 0.1), Wasserstein (in reference stds) and JS are reported; categorical:
    PSI and JS decide (PSI > 0.2 or JS > 0.1), chi-square is reported. A null-rate change of
    more than 0.1 is drift on its own. A distribution statistic needs ``min_rows`` non-null
    current values, the null rate ``min_rows`` rows; otherwise its ``reason`` says why not.

    ``overrides`` is ``{feature: {"statistic": "ks"|"psi"|"js"|"wasserstein"|"chi2",
    "threshold": float}}``: the named statistic alone then decides that feature (``threshold``
    optional; for chi2 it is a p-value, drift below it). ``__prediction__`` can be overridden
    too. Features without a verdict are left out of the share's denominator and listed in
    ``not_computed``; if the computed features' importances sum to 0, the share falls back to
    equal weights.
    """
    if not 0.0 < drift_share_threshold <= 1.0:
        raise ValueError(f"drift_share_threshold must be in (0, 1], got {drift_share_threshold}")
    if min_rows < 1:
        raise ValueError(f"min_rows must be positive, got {min_rows}")
    _check_compatible(profile, current)
    plans = _plans(profile, overrides)
    weights = _weights(profile, profile.features)
    features = [
        _assess_numeric(fp, current.numeric[name], plans[name], min_rows, weights[name])
        for name, fp in profile.numeric.items()
    ] + [
        _assess_categorical(cp, current.categorical[name], plans[name], min_rows, weights[name])
        for name, cp in profile.categorical.items()
    ]
    prediction = None
    if profile.prediction is not None:
        fp = profile.prediction
        if current.prediction is None:
            prediction = FeatureDrift(
                feature=PREDICTION,
                kind=Kind.NUMERIC,
                drifted=None,
                weight=0.0,
                detail="not computed: no predictions were given to the accumulator",
                reason="no predictions were given to the accumulator",
                reference=_numeric_summary(fp),
                current=ColumnSummary(rows=0, count=0),
                results=[],
            )
        else:
            prediction = _assess_numeric(fp, current.prediction, plans[PREDICTION], min_rows, 0.0)
    computed = [f for f in features if f.drifted is not None]
    weighted = profile.importance is not None
    total = sum(f.weight for f in computed)
    if computed and total <= 0:
        log.warning(
            "features with a verdict (%s) all have importance 0: using equal weights for the drifted share",
            ", ".join(f.feature for f in computed),
        )
        weighted, total = False, float(len(computed))
    share = None
    if computed:
        share = sum((f.weight if weighted else 1.0) for f in computed if f.drifted) / total
    dataset_drift = bool(
        (share is not None and share > drift_share_threshold) or (prediction and prediction.drifted)
    )
    report = DriftReport(
        rows=current.rows,
        features=features,
        prediction=prediction,
        drifted=[f.feature for f in features if f.drifted],
        not_computed=[f.feature for f in features if f.drifted is None],
        share=share,
        weighted=weighted,
        drift_share_threshold=drift_share_threshold,
        min_rows=min_rows,
        dataset_drift=dataset_drift,
    )
    log.info("%s (%d rows)", report.summary(), current.rows)
    return report
