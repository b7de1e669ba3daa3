"""Streaming accumulation of a current window against a reference profile: chunk by chunk,
to counts and sums at the reference grid points, so memory is O(grid size + categories)
whatever the number of rows."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from mlcycle.core.errors import DriftError
from mlcycle.monitor.profile import (
    DEFAULT_CHUNK_ROWS,
    MAX_UNSEEN_LISTED,
    PREDICTION,
    CategoricalProfile,
    NumericProfile,
    Profile,
    as_float,
    category_counts,
    cumulate,
    extended_grid,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)


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

        self.t = extended_grid(fp.grid)
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
        counts, sums, total, sumsq = cumulate(xs, self.t, c.center)
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
        keys, vals, count = category_counts(series)
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
        values = {name: as_float(chunk[name], name) for name in self._numeric}
        if prediction is None and PREDICTION in chunk.columns:
            prediction = chunk[PREDICTION]
        p = None
        if prediction is not None:
            if self._prediction is None:
                raise DriftError(
                    "predictions were passed but the profile has no prediction distribution; "
                    "build the profile with prediction=<holdout scores>"
                )
            p = as_float(prediction, PREDICTION)
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


def native_threads(limit: int) -> Any:
    """A context in which BLAS and OpenMP use at most ``limit`` threads. A check's sums run in
    one thread: on a busy worker, BLAS threads spinning for cores other tasks hold made the
    10M-row check slower than a plain loop (bench/README.md, drift.py)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=limit)


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

    from mlcycle.data import lake as lk
    from mlcycle.ml.scoring import iter_chunks

    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    columns = profile.features + ([prediction_column] if prediction_column else [])
    started = time.perf_counter()
    acc = Accumulator(profile)
    chunks = 0
    opened = contextlib.nullcontext(source) if hasattr(source, "read") else lk.as_path(source).open("rb")
    with opened as fh, native_threads(1):
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
