"""The reference profile of a model's training data, built once at training time and stored
with the version: everything a later drift check compares against, so no check re-reads
training data.

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

import logging
import math
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from mlcycle.core.errors import DriftError

if TYPE_CHECKING:
    from collections.abc import Mapping

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
    """How a column is profiled, and so which drift statistics apply to it (``ALLOWED``)."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


class Statistic(StrEnum):
    """Drift statistics a result can carry; ``null_rate`` is computed for each feature and always counts."""

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


def as_float(values: Any, name: str) -> np.ndarray:
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


def extended_grid(grid: list[float] | np.ndarray) -> np.ndarray:
    """``grid`` with one point prepended just below its minimum, so mass below it gets a bin of its own."""
    import numpy as np

    g = np.asarray(grid, dtype="float64")
    if not len(g):
        return g
    return np.concatenate(([np.nextafter(g[0], -np.inf)], g))


def cumulate(xs: np.ndarray, t: np.ndarray, center: float) -> tuple[np.ndarray, np.ndarray, float, float]:
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


def bin_counts(
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

    x = as_float(values, name)
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
    t = extended_grid(grid)
    cum_counts, cum_sums, _, _ = cumulate(xs, t, mean)
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
        bin_counts=[int(c) for c in bin_counts(name, t, cum_counts, n, edge_list)],
    )


def category_counts(series: pd.Series) -> tuple[list[str], np.ndarray, int]:
    """(category names as strings, their counts, non-null rows) of one column."""
    vc = series.value_counts(dropna=True)
    vc = vc[vc.to_numpy() > 0]  # a pandas Categorical also lists its unused categories
    keys = vc.index.astype(str)
    vals = vc.to_numpy(dtype="int64")
    return list(keys), vals, int(vals.sum())


def _categorical_profile(name: str, series: pd.Series, max_categories: int) -> CategoricalProfile:
    keys, vals, count = category_counts(series)
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
