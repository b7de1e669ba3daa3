"""Landing a table in the lake: ``mlcycle ingest <model> FILE``.

Any Parquet or CSV table becomes the model's daily batches,
``<lake>/<model>/incoming/YYYY-MM-DD.parquet``: its rows are split by the UTC day of the time
column, or the whole file is one batch for a day given with ``--date``. The time column is
stored as a timezone-naive UTC timestamp (Great Expectations cannot compare timezone-aware
ones), and added from ``--date`` when the table has none, so every batch has the spec's time
column. Landing is all or nothing: every day is checked before any file is written, and a
day that already has a batch with other rows is refused unless ``replace`` is given.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mlcycle.core.errors import DataNotFoundError, MlcycleError, UnreadableDataError
from mlcycle.data import lake as lk

if TYPE_CHECKING:
    import datetime as dt
    from pathlib import Path

    import pandas as pd

    from mlcycle.core.spec import ModelSpec

log = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz")
USE_DATE = "or land the whole file as one day with --date YYYY-MM-DD"


class BatchConflictError(MlcycleError):
    """A day already has a batch in the lake with other rows than the one being landed."""


@dataclass(frozen=True)
class Landed:
    """One day's batch as ingest left it: ``new``, ``replaced``, or ``unchanged`` (same rows already there)."""

    day: dt.date
    rows: int
    path: str
    status: Literal["new", "replaced", "unchanged"]


def read_table(path: Path) -> pd.DataFrame:
    """The table in a Parquet or CSV file, by its suffix; ``DataNotFoundError`` for a missing file,
    ``UnreadableDataError`` naming the file and the problem for anything else that cannot be read."""
    import pandas as pd

    uri, name = str(path), path.name.lower()
    if not path.is_file():
        raise DataNotFoundError(
            f"{uri} does not exist or is not a file; give the path of a Parquet or CSV file"
        )
    try:
        if name.endswith(PARQUET_SUFFIXES):
            with lk.reading(uri):
                df = lk.read_parquet([path])
        elif name.endswith(CSV_SUFFIXES):
            df = pd.read_csv(path)
        else:
            raise lk.unreadable(
                uri,
                f"its type is unknown: ingest reads {', '.join(PARQUET_SUFFIXES + CSV_SUFFIXES)} files; "
                "export the table as Parquet or CSV",
            )
    except PermissionError:
        raise lk.unreadable(uri, "permission denied; make the file readable by this user") from None
    except pd.errors.EmptyDataError:
        raise lk.unreadable(uri, "the file is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise lk.unreadable(
            uri, f"it is not a readable UTF-8 CSV file ({first}); export it again as CSV or Parquet"
        ) from None
    if df.empty:
        raise lk.unreadable(uri, f"it has no rows (columns: {list(df.columns)}); nothing to land")
    return df


def utc_times(values: pd.Series, column: str, uri: str, fix: str = USE_DATE) -> pd.Series:
    """``values`` as timezone-naive UTC timestamps: datetimes as they are (naive ones are taken as
    UTC, aware ones converted), strings parsed (ISO 8601, with or without a time or an offset).
    ``UnreadableDataError`` naming the values that are missing, numbers or not dates, ending
    with ``fix``."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(values):
        times = values
    elif pd.api.types.is_numeric_dtype(values):
        # Epoch seconds, milliseconds or days cannot be told apart: refuse rather than guess.
        raise lk.unreadable(
            uri,
            f"the time column {column!r} holds numbers ({values.dtype}), not dates; store it as dates "
            f"or ISO 8601 text, {fix}",
        )
    else:
        text = values.astype("str").where(values.notna())
        try:
            times = pd.to_datetime(text, utc=True)  # one inferred format: fast
        except (ValueError, TypeError, OverflowError):
            times = pd.to_datetime(text, utc=True, format="mixed", errors="coerce")
        bad = values.notna() & times.isna()
        if bad.any():
            examples = values[bad].unique()[:5].tolist()
            raise lk.unreadable(
                uri,
                f"{int(bad.sum())} value(s) of the time column {column!r} are not dates, e.g. {examples}; "
                f"fix them, {fix}",
            )
    if getattr(times.dt, "tz", None) is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    if missing := int(times.isna().sum()):
        raise lk.unreadable(
            uri,
            f"{missing} row(s) have no value in the time column {column!r}, so they belong to no day; "
            f"fill them, {fix}",
        )
    return times


def split_days(
    df: pd.DataFrame, spec: ModelSpec, uri: str, *, time_column: str | None = None, day: dt.date | None = None
) -> dict[dt.date, pd.DataFrame]:
    """The table's rows per UTC day of ``time_column`` (default the spec's), in file order, or all
    of them for ``day``. The spec's time column is stored as UTC timestamps (added from ``day`` or
    ``time_column`` when the table lacks it)."""
    import pandas as pd

    spec_column = spec.data.time_column
    column = time_column or spec_column
    if day is None and column not in df.columns:
        raise lk.unreadable(
            uri,
            f"it has no time column {column!r} to split it into days (columns: {list(df.columns)}); "
            "name the column with --time-column, or land the whole file as one day with --date YYYY-MM-DD",
        )
    out = df.reset_index(drop=True)
    if column in out.columns:
        fix = (
            USE_DATE if day is None else f"or drop the column: --date then fills {spec_column!r} with the day"
        )
        times = utc_times(out[column], column, uri, fix)
        out[column] = times
        if spec_column not in out.columns:
            out[spec_column] = times
    if day is not None:
        if spec_column not in out.columns:
            out[spec_column] = pd.Series(pd.Timestamp(day), index=out.index, dtype="datetime64[ms]")
        return {day: out}
    days = out[column].dt.normalize()
    return {stamp.date(): part.reset_index(drop=True) for stamp, part in out.groupby(days, sort=True)}


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def _same_rows(path: lk.LakePath, data: bytes, df: pd.DataFrame) -> bool:
    """Whether the batch at ``path`` holds ``df``: the same bytes, or (written by another version
    of the writer) the same frame."""
    with path.open("rb") as fh:
        if fh.read() == data:
            return True
    try:
        with lk.reading(lk.uri_of(path)):
            return bool(lk.read_parquet([path]).equals(df))
    except UnreadableDataError:
        return False  # a damaged batch holds other rows: replacing it needs ``replace``


def ingest(
    spec: ModelSpec,
    lake: lk.Lake,
    source: Path,
    *,
    time_column: str | None = None,
    day: dt.date | None = None,
    replace: bool = False,
) -> list[Landed]:
    """Land the table at ``source`` as ``spec``'s daily batches in ``lake`` (see the module docstring).

    Re-landing the same rows changes nothing; a day whose batch holds other rows raises
    ``BatchConflictError`` (nothing is written) unless ``replace``."""
    uri = str(source)
    parts = split_days(read_table(source), spec, uri, time_column=time_column, day=day)
    plan = []
    conflicts = []
    for when, part in parts.items():
        path = lake.batch_path(when)
        data = _parquet_bytes(part)
        existed = path.exists()
        same = existed and _same_rows(path, data, part)
        if existed and not same and not replace:
            conflicts.append(f"{when} ({lk.uri_of(path)}, {lk.count_rows([path])} rows)")
        status: Literal["new", "replaced", "unchanged"] = (
            "unchanged" if same else "replaced" if existed else "new"
        )
        plan.append((when, part, path, data, status))
    if conflicts:
        raise BatchConflictError(
            f"{uri}: {len(conflicts)} day(s) already have a batch with other rows: {', '.join(conflicts)}; "
            "nothing was landed. Pass --replace to overwrite them, or remove those rows from the file"
        )
    landed = []
    for when, part, path, data, status in plan:
        if status != "unchanged":
            lk.write_bytes_atomic(path, data)
        log.info("%s: %s batch %s with %d rows", spec.name, status, lk.uri_of(path), len(part))
        landed.append(Landed(day=when, rows=len(part), path=lk.uri_of(path), status=status))
    return landed
