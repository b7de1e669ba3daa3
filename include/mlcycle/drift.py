"""Drift monitoring: a reference profile built once at training time, streamed statistics of
a current window, per-feature tests, a dataset verdict, and a label-free performance estimate.

::

    profile = build_profile(train_df, numeric, categorical, prediction=holdout_scores, importance=imp)
    lake.write_json(profile.to_dict(), path)              # stored with the model version
    ...
    acc = Accumulator(Profile.from_dict(lake.read_json(path)))
    for chunk in chunks:                                  # or accumulate_parquet(uri, profile)
        acc.update(chunk, prediction=scores_of_chunk)
    report = assess(profile, acc.result(), overrides={"age": {"statistic": "ks", "threshold": 0.05}})
    report.dataset_drift, report.summary()

Why it is shaped this way:

* The profile carries everything monitoring needs (quantile grid, cumulative counts and sums
  at the grid points, decile bins, category frequencies), so monitoring never re-reads the
  training data.
* A current window is reduced, chunk by chunk, to counts and sums at the reference grid
  points: memory is O(grid size + categories) whatever the number of rows, chunk sizes do not
  change any count-based statistic (PSI, KS, JS, chi-square, null rate), and sum-based ones
  (mean, std, Wasserstein) only in the last bits of floating-point rounding.
* Verdicts use effect sizes (PSI, the KS statistic, the JS distance), never p-values: with a
  million rows every p-value is tiny for shifts nobody cares about. p-values are reported.
* Only ``scipy.special`` is used at run time (Kolmogorov distribution, chi-square tail,
  relative entropy): importing ``scipy.stats`` costs ~0.7 s on the 2-core CI box against
  ~0.1 s, for the same formulas. The tests check every statistic against ``scipy.stats``.

Nothing here imports Airflow, and importing this module does not import numpy, pandas,
scipy or pyarrow: they are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypedDict

from mlcycle.errors import DriftError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

PROFILE_VERSION = 1
PREDICTION = "__prediction__"  # the model's output on the holdout, profiled as a numeric feature
OTHER = "__other__"  # reference categories beyond the ``max_categories`` most frequent
UNSEEN = "__unseen__"  # current categories the reference never had
# An empty bucket's proportion is replaced by this (1 in 10,000) before PSI takes a log, as
# Evidently and most PSI write-ups do. Without it one empty bin makes PSI infinite; with it an
# empty reference bin holding 1 % of current rows adds about 0.046 to PSI.
PSI_EPSILON = 1e-4
NULL_RATE_THRESHOLD = 0.1  # |current - reference| null rate above this is drift on its own
MAX_UNSEEN_LISTED = 20  # unseen category names kept (all unseen rows are counted regardless)
DEFAULT_CHUNK_ROWS = 100_000


class Kind(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


class Statistic(StrEnum):
    PSI = "psi"
    KS = "ks"
    JS = "js"
    WASSERSTEIN = "wasserstein"
    CHI2 = "chi2"
    NULL_RATE = "null_rate"


# Default thresholds. Every statistic is an effect size that signals drift ABOVE its threshold,
# except chi-square, whose value is a p-value and signals drift BELOW it (a significance level).
DEFAULT_THRESHOLDS: dict[Statistic, float] = {
    Statistic.PSI: 0.2,  # the usual "significant shift" level
    Statistic.KS: 0.1,  # max CDF gap of 10 percentage points
    Statistic.JS: 0.1,  # Jensen-Shannon distance, base 2 (0 = same, 1 = disjoint)
    Statistic.WASSERSTEIN: 0.1,  # in units of the reference std
    Statistic.CHI2: 0.05,  # p-value
    Statistic.NULL_RATE: NULL_RATE_THRESHOLD,
}
# Which statistics decide a feature's verdict by default, and which are computed at all.
DECIDING: dict[Kind, tuple[Statistic, ...]] = {
    Kind.NUMERIC: (Statistic.PSI, Statistic.KS),
    Kind.CATEGORICAL: (Statistic.PSI, Statistic.JS),
}
REPORTED: dict[Kind, tuple[Statistic, ...]] = {
    Kind.NUMERIC: (Statistic.PSI, Statistic.KS, Statistic.WASSERSTEIN, Statistic.JS),
    Kind.CATEGORICAL: (Statistic.PSI, Statistic.JS, Statistic.CHI2),
}
ALLOWED: dict[Kind, frozenset[Statistic]] = {
    Kind.NUMERIC: frozenset({Statistic.PSI, Statistic.KS, Statistic.JS, Statistic.WASSERSTEIN}),
    Kind.CATEGORICAL: frozenset({Statistic.PSI, Statistic.JS, Statistic.CHI2}),
}


# --- the reference profile ------------------------------------------------------------------------


@dataclass
class NumericProfile:
    """A numeric column of the reference (the training frame, or the holdout's predictions).

    ``grid`` holds the values at ``grid_size`` evenly spaced probabilities from 0 to 1 (so it
    starts at the minimum and ends at the maximum). The *extended grid* is ``grid`` with one
    point prepended just below the minimum (``nextafter(min, -inf)``), so the mass a current
    window puts below the reference minimum is seen too. ``cum_counts[i]`` is the number of
    reference values ≤ extended-grid point ``i``; ``cum_sums[i]`` is the sum of
    ``value - mean`` over those values (centred so that sums of large values keep their
    precision). KS reads CDFs from the counts; Wasserstein integrates CDFs exactly between grid
    points from counts and sums.

    Bins are right-closed: ``(-inf, e1], (e1, e2], ..., (ek, +inf)`` with the inner ``edges``
    taken from the grid at probabilities 1/bins, 2/bins, ... (exact deciles when
    ``grid_size - 1`` is a multiple of ``bins``, as with the defaults), deduplicated for
    discrete columns. When the lowest edge equals the minimum (a point mass of at least
    1/bins there: a constant column, zero-inflated counts), the below-minimum point is added
    as an edge so "below", "at" and "above" the minimum are separate bins.
    """

    name: str
    rows: int
    nulls: int
    null_rate: float
    count: int  # non-null (finite) values
    mean: float | None
    std: float | None  # population std (ddof 0); exactly 0 for a constant column
    min: float | None
    max: float | None
    grid: list[float]
    cum_counts: list[int]
    cum_sums: list[float]
    edges: list[float]  # inner edges only: the outer -inf/+inf are implied (and are not valid JSON)
    bin_counts: list[int]


@dataclass
class CategoricalProfile:
    """A categorical column of the reference. Categories are compared by their string form.

    ``categories`` keeps the ``max_categories`` most frequent (ties by name), most frequent
    first; ``other`` counts the rows of all remaining categories (the ``__other__`` bucket).
    When the reference has such a bucket, a current category outside the top list cannot be
    told apart from a rare reference category, so it is counted in ``__other__``, not as
    unseen; raise ``max_categories`` if unseen detection matters for a high-cardinality column.
    """

    name: str
    rows: int
    nulls: int
    null_rate: float
    count: int
    categories: dict[str, int]
    other: int
    other_categories: int  # distinct categories folded into ``other``


@dataclass
class Profile:
    """Everything monitoring needs about the training data, as JSON (``to_dict``/``from_dict``)."""

    rows: int
    numeric: dict[str, NumericProfile]
    categorical: dict[str, CategoricalProfile]
    prediction: NumericProfile | None = None
    importance: dict[str, float] | None = None
    grid_size: int = 1001
    bins: int = 10
    max_categories: int = 50
    version: int = PROFILE_VERSION

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """The profile of ``to_dict``'s output. Top-level keys this version does not know are
        ignored, so a caller may store more next to the profile (e.g. reference performance)."""
        version = data.get("version")
        if version != PROFILE_VERSION:
            raise DriftError(
                f"reference profile has version {version!r}, this library reads version {PROFILE_VERSION}; "
                "rebuild the profile (retrain the model) or use the mlcycle version that wrote it"
            )
        try:
            numeric = {k: NumericProfile(**v) for k, v in data["numeric"].items()}
            categorical = {k: CategoricalProfile(**v) for k, v in data["categorical"].items()}
            prediction = NumericProfile(**data["prediction"]) if data.get("prediction") else None
            known = {"rows", "importance", "grid_size", "bins", "max_categories", "version"}
            fields = {k: v for k, v in data.items() if k in known}
            profile = cls(numeric=numeric, categorical=categorical, prediction=prediction, **fields)
        except (KeyError, TypeError) as exc:
            raise DriftError(
                f"reference profile is malformed ({exc}); rebuild it with build_profile"
            ) from None
        for fp in [*numeric.values(), *([prediction] if prediction else [])]:
            ok = len(fp.bin_counts) == len(fp.edges) + 1 and len(fp.cum_counts) == len(fp.cum_sums)
            ok = ok and len(fp.cum_counts) == (len(fp.grid) + 1 if fp.grid else 0)
            if not ok:
                raise DriftError(
                    f"reference profile of {fp.name!r} is inconsistent (grid {len(fp.grid)}, "
                    f"cumulative counts {len(fp.cum_counts)}, edges {len(fp.edges)}, bins {len(fp.bin_counts)}); "
                    "rebuild it with build_profile"
                )
        return profile


def _as_float(values: Any, name: str) -> np.ndarray:
    """A column as float64 with NaN for missing values (pandas nullable types included)."""
    import numpy as np
    import pandas as pd

    try:
        if isinstance(values, pd.Series):
            return values.to_numpy(dtype="float64", na_value=np.nan)
        return np.asarray(values, dtype="float64").ravel()
    except (TypeError, ValueError) as exc:
        dtype = getattr(values, "dtype", type(values).__name__)
        raise DriftError(
            f"column {name!r} is numeric in the drift profile but holds {dtype} values that are not "
            f"numbers ({exc}); fix the data or profile the column as categorical"
        ) from None


def _extended_grid(grid: list[float] | np.ndarray) -> np.ndarray:
    import numpy as np

    g = np.asarray(grid, dtype="float64")
    if not len(g):
        return g
    return np.concatenate(([np.nextafter(g[0], -np.inf)], g))


def _cumulate(xs: np.ndarray, t: np.ndarray, center: float) -> tuple[np.ndarray, np.ndarray, float, float]:
    """For sorted values ``xs``: count and centred sum of values ≤ each point of ``t``, plus the
    centred total and sum of squares.

    This is "searchsorted on the grid" turned around: sorting the chunk (a SIMD sort in
    numpy 2) and binary-searching the ~1,000 grid points in it gives the same counts as
    binary-searching 100,000 values in the grid, about 7x faster (0.9 ms against 6.3 ms per
    100,000 rows measured here), and the running sum gives the per-interval sums for free."""
    import numpy as np

    pos = np.searchsorted(xs, t, side="right")
    d = xs - center
    cs = np.empty(len(d) + 1)
    cs[0] = 0.0
    np.cumsum(d, out=cs[1:])
    return (
        pos.astype("int64"),
        cs[pos],
        float(cs[-1]),
        float(np.einsum("i,i->", d, d)),
    )  # BLAS dot threads badly on busy cores


def _bin_counts(
    name: str, t: np.ndarray, cum_counts: np.ndarray, total: int, edges: list[float]
) -> np.ndarray:
    """Counts per right-closed bin, read off the cumulative counts (every edge is a grid point)."""
    import numpy as np

    if not len(edges):
        return np.asarray([total], dtype="int64")
    e = np.asarray(edges, dtype="float64")
    idx = np.searchsorted(t, e, side="left")
    if idx[-1] >= len(t) or not np.array_equal(t[idx], e):
        raise DriftError(
            f"reference profile of {name!r}: bin edges are not points of its quantile grid; "
            "rebuild the profile with build_profile"
        )
    return np.diff(np.concatenate(([0], cum_counts[idx], [total]))).astype("int64")


def _numeric_profile(name: str, values: Any, grid_size: int, bins: int) -> NumericProfile:
    import numpy as np

    x = _as_float(values, name)
    rows = len(x)
    x = x[np.isfinite(x)]  # inf cannot be placed on a distance scale: it counts as missing
    n = len(x)
    if n == 0:
        return NumericProfile(
            name=name,
            rows=rows,
            nulls=rows,
            null_rate=1.0 if rows else 0.0,
            count=0,
            mean=None,
            std=None,
            min=None,
            max=None,
            grid=[],
            cum_counts=[],
            cum_sums=[],
            edges=[],
            bin_counts=[0],
        )
    xs = np.sort(x)
    lo, hi = float(xs[0]), float(xs[-1])
    constant = lo == hi
    # Exact for a constant column: a computed mean can be 1 ulp off and its std 1e-17, not 0.
    mean, std = (lo, 0.0) if constant else (float(xs.mean()), float(xs.std()))
    grid = np.quantile(xs, np.linspace(0.0, 1.0, grid_size))
    # Interpolation can round one point an ulp below its predecessor; the grid must be sorted.
    grid = np.maximum.accumulate(grid)
    t = _extended_grid(grid)
    cum_counts, cum_sums, _, _ = _cumulate(xs, t, mean)
    idx = np.unique(np.rint(np.arange(1, bins) * (grid_size - 1) / bins).astype("int64"))
    edges = np.unique(grid[idx])
    if edges[0] == lo:
        edges = np.concatenate(([t[0]], edges))
    edge_list = [float(e) for e in edges]
    return NumericProfile(
        name=name,
        rows=rows,
        nulls=rows - n,
        null_rate=(rows - n) / rows,
        count=n,
        mean=mean,
        std=std,
        min=lo,
        max=hi,
        grid=[float(g) for g in grid],
        cum_counts=[int(c) for c in cum_counts],
        cum_sums=[float(s) for s in cum_sums],
        edges=edge_list,
        bin_counts=[int(c) for c in _bin_counts(name, t, cum_counts, n, edge_list)],
    )


def _category_counts(series: pd.Series) -> tuple[list[str], np.ndarray, int]:
    """(category names as strings, their counts, non-null rows) of one column."""
    vc = series.value_counts(dropna=True)
    vc = vc[vc.to_numpy() > 0]  # a pandas Categorical also lists its unused categories
    keys = vc.index.astype(str)
    vals = vc.to_numpy(dtype="int64")
    return list(keys), vals, int(vals.sum())


def _categorical_profile(name: str, series: pd.Series, max_categories: int) -> CategoricalProfile:
    keys, vals, count = _category_counts(series)
    merged: dict[str, int] = {}
    for k, v in zip(keys, vals, strict=True):  # distinct values may share a string form (1 and "1")
        merged[k] = merged.get(k, 0) + int(v)
    ranked = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
    top, rest = ranked[:max_categories], ranked[max_categories:]
    rows = len(series)
    return CategoricalProfile(
        name=name,
        rows=rows,
        nulls=rows - count,
        null_rate=(rows - count) / rows if rows else 0.0,
        count=count,
        categories=dict(top),
        other=sum(v for _, v in rest),
        other_categories=len(rest),
    )


def build_profile(
    df: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    *,
    prediction: np.ndarray | None = None,
    importance: dict[str, float] | None = None,
    grid_size: int = 1001,
    bins: int = 10,
    max_categories: int = 50,
) -> Profile:
    """The reference profile of ``df`` (the training frame), built once at training time.

    ``prediction`` is the model's output on the holdout (the positive-class probability for a
    classifier), profiled as the numeric feature ``__prediction__``; it need not have as many
    rows as ``df``. ``importance`` (feature -> weight, e.g. permutation importance) weights the
    drifted-feature share; negative weights count as 0 when the share is computed.
    """
    if grid_size < 3:
        raise ValueError(f"grid_size must be at least 3, got {grid_size}")
    if not 2 <= bins <= grid_size - 1:
        raise ValueError(f"bins must be between 2 and grid_size - 1 ({grid_size - 1}), got {bins}")
    if max_categories < 1:
        raise ValueError(f"max_categories must be positive, got {max_categories}")
    features = [*numeric, *categorical]
    if both := sorted(set(numeric) & set(categorical)):
        raise DriftError(f"feature(s) {both} are listed as both numeric and categorical; keep one kind")
    if len(set(features)) != len(features):
        raise DriftError(f"feature list has duplicates: {features}")
    if PREDICTION in features:
        raise DriftError(f"{PREDICTION!r} is reserved for the prediction distribution; rename the feature")
    if missing := [c for c in features if c not in df.columns]:
        raise DriftError(f"training frame lacks feature column(s) {missing}; it has {list(df.columns)}")
    if importance is not None:
        if unknown := sorted(set(importance) - set(features)):
            raise DriftError(f"importance names unknown feature(s) {unknown}; known: {features}")
        if bad := sorted(k for k, v in importance.items() if not math.isfinite(float(v))):
            raise DriftError(f"importance of {bad} is not a finite number")
        importance = {k: float(v) for k, v in importance.items()}
    started = time.perf_counter()
    profile = Profile(
        rows=len(df),
        numeric={c: _numeric_profile(c, df[c], grid_size, bins) for c in numeric},
        categorical={c: _categorical_profile(c, df[c], max_categories) for c in categorical},
        prediction=None if prediction is None else _numeric_profile(PREDICTION, prediction, grid_size, bins),
        importance=importance,
        grid_size=grid_size,
        bins=bins,
        max_categories=max_categories,
    )
    log.info(
        "drift profile of %d rows: %d numeric, %d categorical features%s (%.2fs)",
        len(df),
        len(numeric),
        len(categorical),
        ", and the prediction" if prediction is not None else "",
        time.perf_counter() - started,
    )
    return profile


# --- streaming accumulation of a current window ---------------------------------------------------


@dataclass
class NumericCurrent:
    """A numeric column of the current window, reduced to O(grid) numbers."""

    center: float  # the reference mean: sums are of (value - center)
    cum_counts: np.ndarray  # current values ≤ each extended-grid point of the reference
    cum_sums: np.ndarray  # sum of (value - center) over those values
    rows: int = 0
    nulls: int = 0
    count: int = 0
    sum: float = 0.0  # of (value - center)
    sumsq: float = 0.0  # of (value - center)²
    min: float | None = None
    max: float | None = None

    @property
    def null_rate(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0

    @property
    def mean(self) -> float | None:
        return self.center + self.sum / self.count if self.count else None

    @property
    def std(self) -> float | None:
        if not self.count:
            return None
        m = self.sum / self.count
        return math.sqrt(max(self.sumsq / self.count - m * m, 0.0))


@dataclass
class CategoricalCurrent:
    """A categorical column of the current window: counts per reference category, the
    ``__other__`` bucket, and unseen categories (all counted, the first 20 names listed)."""

    counts: dict[str, int]
    rows: int = 0
    nulls: int = 0
    count: int = 0
    other: int = 0
    unseen: dict[str, int] = field(default_factory=dict)
    unseen_rows: int = 0
    unseen_truncated: bool = False  # more unseen names than MAX_UNSEEN_LISTED

    @property
    def null_rate(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0


@dataclass
class CurrentStats:
    """What an Accumulator gathered; ``prediction`` is None when no predictions were passed."""

    rows: int
    numeric: dict[str, NumericCurrent]
    categorical: dict[str, CategoricalCurrent]
    prediction: NumericCurrent | None


class _NumericState:
    def __init__(self, fp: NumericProfile) -> None:
        import numpy as np

        self.t = _extended_grid(fp.grid)
        self.cur = NumericCurrent(
            center=fp.mean if fp.mean is not None else 0.0,
            cum_counts=np.zeros(len(self.t), dtype="int64"),
            cum_sums=np.zeros(len(self.t)),
        )

    def add(self, x: np.ndarray) -> None:
        import numpy as np

        c = self.cur
        c.rows += len(x)
        finite = np.isfinite(x)
        if not finite.all():
            x = x[finite]
        c.nulls += len(finite) - len(x)
        if not len(x):
            return
        xs = np.sort(x)
        counts, sums, total, sumsq = _cumulate(xs, self.t, c.center)
        c.cum_counts += counts
        c.cum_sums += sums
        c.count += len(xs)
        c.sum += total
        c.sumsq += sumsq
        lo, hi = float(xs[0]), float(xs[-1])
        c.min = lo if c.min is None else min(c.min, lo)
        c.max = hi if c.max is None else max(c.max, hi)

    def result(self) -> NumericCurrent:
        c = self.cur
        return NumericCurrent(
            **{**asdict(c), "cum_counts": c.cum_counts.copy(), "cum_sums": c.cum_sums.copy()}
        )


class _CategoricalState:
    def __init__(self, cp: CategoricalProfile) -> None:
        import numpy as np
        import pandas as pd

        self.names = list(cp.categories)
        self.index = pd.Index(self.names, dtype=object)
        self.counts = np.zeros(len(self.names), dtype="int64")
        self.has_other = cp.other > 0
        self.cur = CategoricalCurrent(counts={})

    def add(self, series: pd.Series) -> None:
        import numpy as np
        import pandas as pd

        c = self.cur
        keys, vals, count = _category_counts(series)
        c.rows += len(series)
        c.count += count
        c.nulls += len(series) - count
        if not keys:
            return
        pos = self.index.get_indexer(keys)
        known = pos >= 0
        np.add.at(self.counts, pos[known], vals[known])
        if known.all():
            return
        rest = int(vals[~known].sum())
        if self.has_other:
            c.other += rest
            return
        c.unseen_rows += rest
        # Names already listed get their counts; new names are listed while there is room. Both
        # loops are bounded by the cap (the second stops when the list is full), not by the
        # column's cardinality. value_counts orders by frequency: the commonest get listed.
        unknown = pd.Index(np.asarray(keys, dtype=object)[~known])
        counts = vals[~known]
        listed = unknown.isin(list(c.unseen))
        for k, v in zip(unknown[listed], counts[listed], strict=True):
            c.unseen[k] += int(v)
        for k, v in zip(unknown[~listed], counts[~listed], strict=True):
            if k in c.unseen:  # two values with the same string form (1 and "1")
                c.unseen[k] += int(v)
            elif len(c.unseen) < MAX_UNSEEN_LISTED:
                c.unseen[k] = int(v)
            else:
                c.unseen_truncated = True
                break

    def result(self) -> CategoricalCurrent:
        c = self.cur
        counts = {name: int(n) for name, n in zip(self.names, self.counts, strict=True)}
        return CategoricalCurrent(**{**asdict(c), "counts": counts, "unseen": dict(c.unseen)})


class Accumulator:
    """Streams a current window chunk by chunk into O(grid + categories) statistics.

    ``update`` takes chunks of any size; the result depends on the rows, not on how they were
    cut (count-based statistics exactly; sums up to floating-point rounding). Pass the model's
    output for the chunk's rows as ``prediction`` to monitor prediction drift.
    """

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._numeric = {name: _NumericState(fp) for name, fp in profile.numeric.items()}
        self._categorical = {name: _CategoricalState(cp) for name, cp in profile.categorical.items()}
        self._prediction = _NumericState(profile.prediction) if profile.prediction else None
        self._prediction_seen = False
        self._rows = 0

    def update(self, chunk: pd.DataFrame, *, prediction: np.ndarray | None = None) -> None:
        """Add one chunk. The model's output for its rows comes as ``prediction`` or as a
        ``__prediction__`` column of the chunk. Everything is checked before anything is
        counted, so a refused chunk leaves the accumulator as it was."""
        if missing := [c for c in self.profile.features if c not in chunk.columns]:
            raise DriftError(
                f"chunk lacks profiled feature column(s) {missing}; it has {list(chunk.columns)}"
            )
        values = {name: _as_float(chunk[name], name) for name in self._numeric}
        if prediction is None and PREDICTION in chunk.columns:
            prediction = chunk[PREDICTION]
        p = None
        if prediction is not None:
            if self._prediction is None:
                raise DriftError(
                    "predictions were passed but the profile has no prediction distribution; "
                    "build the profile with prediction=<holdout scores>"
                )
            p = _as_float(prediction, PREDICTION)
            if len(p) != len(chunk):
                raise DriftError(
                    f"prediction has {len(p)} values for a chunk of {len(chunk)} rows; pass one per row"
                )
        for name, state in self._numeric.items():
            state.add(values[name])
        for name, cstate in self._categorical.items():
            cstate.add(chunk[name])
        if p is not None and self._prediction is not None:
            self._prediction.add(p)
            self._prediction_seen = True
        self._rows += len(chunk)

    def result(self) -> CurrentStats:
        """A snapshot: later updates do not change it."""
        return CurrentStats(
            rows=self._rows,
            numeric={name: s.result() for name, s in self._numeric.items()},
            categorical={name: s.result() for name, s in self._categorical.items()},
            prediction=self._prediction.result() if self._prediction and self._prediction_seen else None,
        )


def accumulate_parquet(
    source: Any,
    profile: Profile,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    *,
    prediction_column: str | None = None,
) -> CurrentStats:
    """Stream a Parquet file (a URI, a path object or an open binary file) through an
    Accumulator, reading only the profiled columns, ``chunk_rows`` rows at a time.

    ``prediction_column`` names a column holding the model's output for each row (e.g.
    ``proba_1`` of a scored batch), accumulated as the prediction distribution."""
    import pyarrow.parquet as pq

    from mlcycle import lake as lk
    from mlcycle.scoring import iter_chunks

    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    columns = profile.features + ([prediction_column] if prediction_column else [])
    started = time.perf_counter()
    acc = Accumulator(profile)
    chunks = 0
    opened = contextlib.nullcontext(source) if hasattr(source, "read") else lk.as_path(source).open("rb")
    with opened as fh:
        names = pq.ParquetFile(fh).schema_arrow.names
        if missing := [c for c in columns if c not in names]:
            raise DriftError(f"{source}: no column(s) {missing} to monitor; the file has {names}")
        for table in iter_chunks(fh, columns, chunk_rows):
            chunk = table.to_pandas()
            acc.update(chunk, prediction=chunk[prediction_column].to_numpy() if prediction_column else None)
            chunks += 1
    stats = acc.result()
    log.info(
        "accumulated %d rows of %s in %d chunk(s) (%.2fs)",
        stats.rows,
        source,
        chunks,
        time.perf_counter() - started,
    )
    return stats


# --- statistics -----------------------------------------------------------------------------------


def population_stability_index(reference: np.ndarray, current: np.ndarray, eps: float = PSI_EPSILON) -> float:
    """PSI = sum((cur - ref) * ln(cur / ref)) over buckets of two proportion vectors; empty
    buckets are lifted to ``eps`` first (see PSI_EPSILON)."""
    import numpy as np

    a = np.clip(np.asarray(reference, dtype="float64"), eps, None)
    b = np.clip(np.asarray(current, dtype="float64"), eps, None)
    return float(np.sum((b - a) * np.log(b / a)))


def jensen_shannon(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance with base 2 (in [0, 1]), as scipy.spatial.distance.jensenshannon."""
    import numpy as np
    from scipy.special import rel_entr

    p = np.asarray(reference, dtype="float64")
    q = np.asarray(current, dtype="float64")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2.0
    js = (np.sum(rel_entr(p, m)) + np.sum(rel_entr(q, m))) / np.log(2.0)
    return float(np.sqrt(max(js / 2.0, 0.0)))


def ks_pvalue(statistic: float, n: int, m: int) -> float:
    """Asymptotic two-sample KS p-value: the Kolmogorov distribution at
    (sqrt(en) + 0.12 + 0.11 / sqrt(en)) * D with en = n*m/(n+m) (Stephens' small-sample
    correction). Within 0.003 of scipy's ``kstwo.sf(D, round(en))`` for en ≥ 2,500, within
    0.015 at en = 50; it is reported, never used for a verdict."""
    from scipy.special import kolmogorov

    en = n * m / (n + m)
    s = math.sqrt(en)
    return float(min(max(kolmogorov((s + 0.12 + 0.11 / s) * statistic), 0.0), 1.0))


def chi2_test(observed: np.ndarray, reference: np.ndarray) -> tuple[float, float, int]:
    """Pearson chi-square goodness of fit of ``observed`` counts to ``reference`` proportions
    (all > 0); expected counts are scaled to the observed total, as scipy.stats.chisquare
    requires. Returns (statistic, p-value, degrees of freedom)."""
    import numpy as np
    from scipy.special import chdtrc

    obs = np.asarray(observed, dtype="float64")
    ref = np.asarray(reference, dtype="float64")
    exp = obs.sum() * ref / ref.sum()
    stat = float(np.sum((obs - exp) ** 2 / exp))
    dof = len(obs) - 1
    return stat, float(chdtrc(dof, stat)), dof


def _cdf_integrals(
    t: np.ndarray, cum_counts: np.ndarray, cum_sums: np.ndarray, *, count: int, total: float, center: float
) -> tuple[float, np.ndarray, float]:
    """∫F below t[0], ∫F over each interval (t[i-1], t[i]], and ∫(1 - F) above t[-1], exactly
    for the empirical CDF F of the values summarised by counts and centred sums at ``t``.

    A value x in (a, b] adds (b - x) to ∫_a^b of the count function, and every value ≤ a adds
    (b - a), so the per-interval integral needs only counts and sums."""
    import numpy as np

    c = cum_counts.astype("float64")
    below = c[0] * (t[0] - center) - cum_sums[0]
    areas = c[:-1] * np.diff(t) + np.diff(c) * (t[1:] - center) - np.diff(cum_sums)
    above = (total - cum_sums[-1]) - (count - c[-1]) * (t[-1] - center)
    return float(below) / count, areas / count, float(above) / count


def _wasserstein(fp: NumericProfile, cur: NumericCurrent) -> float:
    """W1 = ∫|F_ref - F_cur| dx. Outside the reference range it is exact (the reference CDF is
    0 below its minimum and 1 above its maximum); inside, each grid interval contributes
    |∫F_ref - ∫F_cur|, which is exact unless the two CDFs cross inside the interval (then it
    underestimates by at most the interval's width times the CDFs' rise across it)."""
    import numpy as np

    t = _extended_grid(fp.grid)
    center = fp.mean if fp.mean is not None else 0.0
    # Every reference value is ≤ the last grid point (its maximum): cum_sums[-1] is its total.
    ref_cc, ref_cs = np.asarray(fp.cum_counts), np.asarray(fp.cum_sums)
    rb, ra, rt = _cdf_integrals(t, ref_cc, ref_cs, count=fp.count, total=fp.cum_sums[-1], center=center)
    cb, ca, ct = _cdf_integrals(
        t, cur.cum_counts, cur.cum_sums, count=cur.count, total=cur.sum, center=center
    )
    return float(abs(rb - cb) + np.sum(np.abs(ra - ca)) + abs(rt - ct))


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
            stat = Statistic(override.get("statistic"))
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
    t = _extended_grid(fp.grid)
    ref_p = np.asarray(fp.bin_counts, dtype="float64") / n
    cur_p = _bin_counts(name, t, cur.cum_counts, m, fp.edges) / m
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
            raw = _wasserstein(fp, cur)
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
        if cur is not None and len(cur.cum_counts) != len(_extended_grid(fp.grid)):
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


# --- label-free performance estimate (confidence-based, like NannyML's CBPE) -----------------------


def _proba(proba_positive: Any) -> np.ndarray:
    import numpy as np

    p = np.asarray(proba_positive, dtype="float64")
    if p.ndim != 1 or not len(p):
        raise DriftError(
            f"expected a non-empty 1-D array of positive-class probabilities, got shape {p.shape}"
        )
    if not np.all((p >= 0.0) & (p <= 1.0)):  # also catches NaN
        bad = p[~((p >= 0.0) & (p <= 1.0))]
        raise DriftError(f"{len(bad)} probabilities are outside [0, 1] or missing (e.g. {bad[0]!r})")
    return p


def cbpe_accuracy(proba_positive: np.ndarray) -> float:
    """Expected accuracy of thresholding at 0.5, if the probabilities are calibrated: a row with
    probability p is right with probability max(p, 1 - p)."""
    import numpy as np

    p = _proba(proba_positive)
    return float(np.mean(np.maximum(p, 1.0 - p)))


def cbpe_roc_auc(proba_positive: np.ndarray) -> float:
    """Expected ROC AUC if the probabilities are calibrated: each row is a positive with weight
    p and a negative with weight 1 - p, and the AUC is the weighted share of (positive,
    negative) pairs ranked correctly, ties counting half. A row is never paired with itself
    (it cannot be both), which the self-pair terms p(1 - p) remove from both sums.
    NaN when no pair can be formed (every p is 0, or every p is 1)."""
    import numpy as np

    p = _proba(proba_positive)
    scores, inverse = np.unique(p, return_inverse=True)
    pos = np.bincount(inverse, weights=p, minlength=len(scores))
    neg = np.bincount(inverse, weights=1.0 - p, minlength=len(scores))
    neg_below = np.cumsum(neg) - neg
    self_pairs = float(np.sum(p * (1.0 - p)))
    numerator = float(np.einsum("i,i->", pos, neg_below + 0.5 * neg)) - 0.5 * self_pairs
    denominator = float(pos.sum() * neg.sum()) - self_pairs
    return numerator / denominator if denominator > 0 else float("nan")
