"""``mlcycle contract suggest``: a Great Expectations suite proposed from a model's data.

The suggestion is read from batches that are known to be good (by default the model's
incoming batches that are not in quarantine), one batch at a time, and covers the columns the
spec names (key, time, features, target). It is printed as a unified diff against the current
contract so that a person reviews it like code before ``--write`` replaces the contract.

Rules (each bound is written in the expectation's ``meta.observed`` beside what was seen):

- every column: ``expect_column_to_exist`` and its type family (numbers: any int or float
  type, so a null that turns an int column into floats passes; text: ``str``; timestamps: any
  ``datetime64`` unit; booleans: ``bool``);
- nulls: the key, the time column and columns never null in the data may not be null; a
  column with nulls may have up to twice its worst batch's null rate plus 2 points (``mostly``);
- the key is unique within a batch;
- numbers: between the smallest and largest value seen widened by ``margin`` (default 50 %)
  of that range on each side; the lower bound stops at 0 when no negative value was seen;
  integer columns get integer bounds, others are rounded outward to 3 significant digits.
  The margin is wide on purpose: a contract refuses impossible values (sentinels, unit errors,
  corrupt rows); drift within a plausible range is the monitor's job, and a contract that
  quarantines drifted but valid data loses good data. Columns holding only 0/1 get the set
  {0, 1} instead;
- text with at most ``MAX_CATEGORIES`` distinct values (not the key): the set seen;
- free text (a ``features.text`` column, or text with more distinct values than
  ``MAX_CATEGORIES``, not the key): no value set but the text checks of
  ``mlcycle.data.contracts``: value lengths between the shortest and longest seen widened by the
  numbers' ``margin`` rule (integers, not below 0); empty or whitespace-only values up to twice
  the worst batch's share plus 2 points (``mostly``, as for nulls); and no U+FFFD replacement or
  control character (other than tab, newline and carriage return) in any value;
- the target of a classifier: the labels of ``data.labels`` (else {0, 1}), and for a 0/1
  target a positive rate between a quarter of the lowest batch rate and a quarter of the way
  from the highest to 1 (this catches a constant or missing label, not a shift);
- the time column: timestamps, none before a year ahead of the earliest seen and none later
  than a day after *now* at validation (GX's ``now()`` suite parameter). There is no bound
  on how old a batch may be: reruns and backfills of past nights must still validate;
- rows per batch: between a tenth of the smallest batch and ten times the largest.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlcycle.core.errors import DataNotFoundError, MlcycleError
from mlcycle.data import lake as lk
from mlcycle.data.contracts import BLANK_REGEX, ENCODING_REGEX

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    import pandas as pd

    from mlcycle.core.spec import ModelSpec

MARGIN = 0.5
MAX_CATEGORIES = 50
NULL_SLACK = 0.02
ROW_COUNT_FACTOR = 10
TIME_LOOKBACK = dt.timedelta(days=365)
NOT_IN_FUTURE = {"$PARAMETER": "now() + timedelta(days=1)"}
NUMERIC_TYPES = [
    *(f"int{b}" for b in (8, 16, 32, 64)),
    *(f"uint{b}" for b in (8, 16, 32, 64)),
    "float32",
    "float64",
]
DATETIME_TYPES = [f"datetime64[{unit}]" for unit in ("s", "ms", "us", "ns")]


@dataclass
class ColumnStats:
    """What the batches showed of one column, merged batch by batch."""

    kind: str | None = None  # numeric, bool, text, datetime or other; None while only nulls were seen
    first_seen: str = ""  # the batch that set ``kind``, for the error when another disagrees
    integer: bool = True
    rows: int = 0
    nulls: int = 0
    worst_null_rate: float = 0.0
    low: Any = None
    high: Any = None
    values: set[Any] | None = field(default_factory=set)  # distinct values, None beyond MAX_CATEGORIES
    duplicates: int = 0
    rates: list[float] = field(default_factory=list)  # per-batch mean of a 0/1 column
    shortest: int | None = None  # text: the fewest and most characters of a value
    longest: int | None = None
    worst_blank_rate: float = 0.0  # text: the worst batch's share of empty or whitespace-only values
    damaged: int = 0  # text: values with a replacement or control character (ENCODING_REGEX)

    def add(self, values: pd.Series, uri: str) -> None:
        """Merge one batch's values of the column."""
        import pandas as pd

        present = values[values.notna()]
        self.rows += len(values)
        self.nulls += len(values) - len(present)
        self.worst_null_rate = max(self.worst_null_rate, 1 - len(present) / len(values) if len(values) else 0)
        self.duplicates += int(present.duplicated().sum())
        if present.empty:
            return
        if pd.api.types.is_bool_dtype(present):
            kind = "bool"
        elif pd.api.types.is_numeric_dtype(present):
            kind = "numeric"
        elif pd.api.types.is_datetime64_any_dtype(present):
            kind = "datetime"
        elif pd.api.types.is_string_dtype(present):
            kind = "text"
        else:
            kind = "other"
        if self.kind is None:
            self.kind, self.first_seen = kind, uri
        elif kind != self.kind:
            raise MlcycleError(
                f"column {values.name!r} holds {self.kind} values in {self.first_seen} but {kind} values in "
                f"{uri}; fix the data, or suggest from consistent batches with --from"
            )
        if kind in ("numeric", "datetime"):
            low, high = present.min(), present.max()
            self.low = low if self.low is None else min(self.low, low)
            self.high = high if self.high is None else max(self.high, high)
        if kind == "numeric":
            self.integer = self.integer and bool((present % 1 == 0).all())
            self.rates.append(float(present.mean()))
        if kind == "text":  # as GX's checks read text: the values as str, the same regex engine
            text = present.astype(str)
            lengths = text.str.len()
            shortest, longest = int(lengths.min()), int(lengths.max())
            self.shortest = shortest if self.shortest is None else min(self.shortest, shortest)
            self.longest = longest if self.longest is None else max(self.longest, longest)
            blank = int(text.str.contains(BLANK_REGEX).sum())
            self.worst_blank_rate = max(self.worst_blank_rate, blank / len(text))
            self.damaged += int(text.str.contains(ENCODING_REGEX).sum())
        if self.values is not None and kind in ("numeric", "text", "bool"):
            self.values |= set(present.unique()[: MAX_CATEGORIES + 1].tolist())
            if len(self.values) > MAX_CATEGORIES:
                self.values = None


@dataclass
class Profile:
    """Per-column statistics of the batches a suggestion is made from, and their sizes."""

    columns: dict[str, ColumnStats]
    batch_rows: list[int]
    sources: list[str]
    warnings: list[str] = field(default_factory=list)


def spec_columns(spec: ModelSpec) -> list[str]:
    """The columns a contract covers, in the order the suggestion lists them."""
    data = spec.data
    return [
        data.key_column,
        data.time_column,
        *spec.features.numeric,
        *spec.features.categorical,
        *_text_features(spec),
        data.target,
    ]


def _text_features(spec: ModelSpec) -> list[str]:
    """The spec's free-text features (``features.text``; none in a spec without that list)."""
    return list(getattr(spec.features, "text", None) or [])


def is_free_text(spec: ModelSpec, column: str, stats: ColumnStats) -> bool:
    """Whether ``column`` gets the text checks instead of a value set: a text feature of the spec,
    or text with more distinct values than ``MAX_CATEGORIES``; never the key or the time column."""
    if column in (spec.data.key_column, spec.data.time_column) or stats.kind != "text":
        return False
    return column in _text_features(spec) or stats.values is None


def profile_batches(spec: ModelSpec, batches: Iterable[tuple[str, pd.DataFrame]]) -> Profile:
    """Statistics of the spec's columns over ``(uri, frame)`` batches, which are read one at a time."""
    names = spec_columns(spec)
    profile = Profile(columns={c: ColumnStats() for c in names}, batch_rows=[], sources=[])
    for uri, df in batches:
        missing = [c for c in names if c not in df.columns]
        if missing:
            raise MlcycleError(
                f"{uri} lacks the columns {missing} that the spec of {spec.name} names (it has "
                f"{list(df.columns)}); fix the spec or suggest from other batches with --from"
            )
        for column in names:
            profile.columns[column].add(df[column], uri)
        profile.batch_rows.append(len(df))
        profile.sources.append(uri)
    if not profile.sources:
        raise DataNotFoundError(f"no batches to suggest a contract for {spec.name} from; land some first")
    return profile


def _round_out(value: float, up: bool, integer: bool) -> float | int:
    """``value`` rounded away from the data: to an integer, or to 3 significant digits."""
    if integer:
        return int(math.ceil(value) if up else math.floor(value))
    if value == 0 or not math.isfinite(value):
        return float(value)
    step = 10 ** (math.floor(math.log10(abs(value))) - 2)
    return float(round((math.ceil if up else math.floor)(value / step) * step, 12))


def numeric_bounds(low: float, high: float, integer: bool, margin: float) -> tuple[float | int, float | int]:
    """``[low, high]`` widened by ``margin`` of its width on each side (of the value itself for a
    constant column), not below 0 when ``low`` is not negative, rounded outward."""
    width = (high - low) or max(abs(low), 1.0)
    lower, upper = low - margin * width, high + margin * width
    if low >= 0:
        lower = max(lower, 0.0)
    return _round_out(lower, False, integer), _round_out(upper, True, integer)


def _exp(kind: str, column: str | None = None, observed: Any = None, **kwargs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": f"expect_{kind}", "kwargs": {"column": column, **kwargs}}
    if column is None:
        del out["kwargs"]["column"]
    if observed is not None:
        out["meta"] = {"observed": observed}
    return out


def _py(value: Any) -> Any:
    """A JSON-friendly Python scalar (numpy numbers and pandas timestamps are not)."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def _column_expectations(
    spec: ModelSpec, column: str, stats: ColumnStats, margin: float
) -> list[dict[str, Any]]:
    data = spec.data
    out: list[dict[str, Any]] = []
    kind = "datetime" if column == data.time_column else stats.kind
    if kind == "numeric":
        out.append(_exp("column_values_to_be_in_type_list", column, type_list=NUMERIC_TYPES))
    elif kind == "datetime":
        out.append(_exp("column_values_to_be_in_type_list", column, type_list=DATETIME_TYPES))
    elif kind == "text":
        out.append(_exp("column_values_to_be_of_type", column, type_="str"))
    elif kind == "bool":
        out.append(_exp("column_values_to_be_of_type", column, type_="bool"))
    rate = round(stats.worst_null_rate, 4)
    if column in (data.key_column, data.time_column) or stats.nulls == 0:
        out.append(_exp("column_values_to_not_be_null", column))
    else:
        mostly = math.floor((1 - min(1.0, 2 * stats.worst_null_rate + NULL_SLACK)) * 100) / 100
        if mostly > 0:
            out.append(
                _exp("column_values_to_not_be_null", column, {"worst_batch_null_rate": rate}, mostly=mostly)
            )
    if column == data.key_column:
        out.append(_exp("column_values_to_be_unique", column))
        return out
    if column == data.time_column:
        if stats.kind == "datetime":
            earliest = (stats.low.to_pydatetime() - TIME_LOOKBACK).replace(
                hour=0, minute=0, second=0, microsecond=0
            )
            seen = [_py(stats.low), _py(stats.high)]
            # Row by row (not the column's min/max): a failure counts and shows the bad rows.
            out.append(
                _exp(
                    "column_values_to_be_between",
                    column,
                    seen,
                    min_value=earliest.isoformat(),
                    max_value=NOT_IN_FUTURE,
                )
            )
        return out
    binary = kind == "numeric" and stats.integer and stats.values is not None and stats.values <= {0, 1}
    if column == data.target and spec.task.classifies:
        labels: list[Any] = [0, 1]
        if data.classes or data.labels:
            labels = list(data.classes or data.labels or [])
        out.append(_exp("column_values_to_be_in_set", column, value_set=labels))
        if binary and stats.rates:
            low, high = min(stats.rates), max(stats.rates)
            bounds = math.floor(low / 4 * 100) / 100, math.ceil((1 - (1 - high) / 4) * 100) / 100
            out.append(
                _exp(
                    "column_mean_to_be_between",
                    column,
                    [round(low, 4), round(high, 4)],
                    min_value=bounds[0],
                    max_value=bounds[1],
                )
            )
    elif binary:
        out.append(_exp("column_values_to_be_in_set", column, value_set=[0, 1]))
    elif kind == "numeric" and stats.low is not None:
        lower, upper = numeric_bounds(float(stats.low), float(stats.high), stats.integer, margin)
        seen = [_py(stats.low), _py(stats.high)]
        out.append(_exp("column_values_to_be_between", column, seen, min_value=lower, max_value=upper))
    elif is_free_text(spec, column, stats):
        out += _text_expectations(column, stats, margin)
    elif kind == "text" and stats.values is not None:
        out.append(_exp("column_values_to_be_in_set", column, value_set=sorted(stats.values)))
    return out


def _text_expectations(column: str, stats: ColumnStats, margin: float) -> list[dict[str, Any]]:
    """The text checks of a free-text column (see the module docstring)."""
    if stats.shortest is None or stats.longest is None:
        return []
    lower, upper = numeric_bounds(stats.shortest, stats.longest, True, margin)
    out = [
        _exp(
            "column_value_lengths_to_be_between",
            column,
            [stats.shortest, stats.longest],
            min_value=int(lower),
            max_value=int(upper),
        )
    ]
    mostly = math.floor((1 - min(1.0, 2 * stats.worst_blank_rate + NULL_SLACK)) * 100) / 100
    if mostly > 0:
        observed = {"worst_batch_blank_rate": round(stats.worst_blank_rate, 4)}
        out.append(
            _exp("column_values_to_not_match_regex", column, observed, regex=BLANK_REGEX, mostly=mostly)
        )
    damaged = {"damaged_values": stats.damaged} if stats.damaged else None
    out.append(_exp("column_values_to_not_match_regex", column, damaged, regex=ENCODING_REGEX))
    return out


def suggest_suite(
    spec: ModelSpec, profile: Profile, *, margin: float = MARGIN, meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The GX suite (as its JSON document) the rules of the module docstring give for ``profile``.
    ``meta`` (e.g. the current contract's owner and notes) is kept, with where the bounds came from."""
    columns = spec_columns(spec)
    expectations = [_exp("column_to_exist", c) for c in columns]
    rows = profile.batch_rows
    expectations.append(
        _exp(
            "table_row_count_to_be_between",
            None,
            [min(rows), max(rows)],
            min_value=max(1, min(rows) // ROW_COUNT_FACTOR),
            max_value=max(rows) * ROW_COUNT_FACTOR,
        )
    )
    for column in columns:
        expectations += _column_expectations(spec, column, profile.columns[column], margin)
    suggested = {
        "batches": len(rows),
        "rows": sum(rows),
        "margin": margin,
        "first": lk.as_path(profile.sources[0]).name,
        "last": lk.as_path(profile.sources[-1]).name,
    }
    return {
        "name": spec.name,
        "meta": {**(meta or {}), "suggested_from": suggested},
        "expectations": expectations,
    }


def data_warnings(spec: ModelSpec, profile: Profile) -> list[str]:
    """What in the data itself the suggested contract refuses (it would quarantine such batches)."""
    data, stats = spec.data, profile.columns
    found = []
    for column in (data.key_column, data.time_column):
        if stats[column].nulls:
            found.append(f"{column!r} has {stats[column].nulls} null(s)")
    if stats[data.key_column].duplicates:
        found.append(f"the key {data.key_column!r} has {stats[data.key_column].duplicates} duplicate(s)")
    for column, column_stats in stats.items():
        if column_stats.damaged and is_free_text(spec, column, column_stats):
            found.append(
                f"{column!r} has {column_stats.damaged} value(s) with a U+FFFD replacement character or a "
                "control character (text decoded with the wrong encoding)"
            )
    if stats[data.time_column].kind not in (None, "datetime"):
        found.append(
            f"the time column {data.time_column!r} holds {stats[data.time_column].kind} values, not timestamps "
            f"(land files with `mlcycle ingest {spec.name}`, which stores UTC timestamps)"
        )
    return found


def default_sources(lake: lk.Lake) -> list[lk.LakePath]:
    """The model's incoming batches whose content is not in quarantine, oldest first."""
    quarantined = lake.quarantine_index()
    return [p for _, p in lake.batches() if quarantined.find(p) is None]


def suggest(
    spec: ModelSpec,
    sources: list[lk.LakePath],
    *,
    current: dict[str, Any] | None = None,
    margin: float = MARGIN,
) -> tuple[dict[str, Any], list[str]]:
    """(the suggested suite, warnings about the data) from the Parquet batches ``sources``,
    read one at a time with only the spec's columns. The current contract's ``meta`` is kept."""
    if not 0 <= margin <= 10:
        raise MlcycleError(
            f"margin {margin} is not a share of the range between 0 and 10; e.g. 0.5 widens by half"
        )
    if not sources:
        raise DataNotFoundError(
            f"no batches of {spec.name} to suggest a contract from; land some with "
            f"`mlcycle ingest {spec.name} FILE` or name them with --from"
        )

    import pyarrow.parquet as pq

    def frames() -> Iterable[tuple[str, pd.DataFrame]]:
        for path in sources:
            uri = lk.uri_of(path)
            with lk.reading(uri):
                with path.open("rb") as fh:
                    names = set(pq.read_schema(fh).names)
                # Only the spec's columns: a missing one is reported by profile_batches, by name.
                df = lk.read_parquet([path], columns=[c for c in spec_columns(spec) if c in names])
            yield uri, df

    profile = profile_batches(spec, frames())
    meta = {k: v for k, v in (current or {}).get("meta", {}).items() if k != "suggested_from"}
    suite = suggest_suite(spec, profile, margin=margin, meta=meta)
    # A value set the current contract already has keeps its order there: no diff to review.
    before = {_key(e): e.get("kwargs", {}).get("value_set") for e in (current or {}).get("expectations", [])}
    for exp in suite["expectations"]:
        old = before.get(_key(exp))
        if isinstance(old, list) and sorted(map(repr, old)) == sorted(
            map(repr, exp["kwargs"].get("value_set", []))
        ):
            exp["kwargs"]["value_set"] = old
    return suite, data_warnings(spec, profile)


def suite_text(suite: dict[str, Any]) -> str:
    """The suite as its file holds it: indented JSON with a final newline."""
    return json.dumps(suite, indent=2) + "\n"


def _key(exp: dict[str, Any]) -> tuple[str, str]:
    return exp.get("type", "?"), str((exp.get("kwargs") or {}).get("column", ""))


def diff_summary(current: dict[str, Any] | None, suggested: dict[str, Any]) -> str:
    """One line per kind of change, by (expectation type, column): added, removed, changed."""
    old = {_key(e): e for e in (current or {}).get("expectations", [])}
    new = {_key(e): e for e in suggested["expectations"]}

    def names(keys: Iterable[tuple[str, str]]) -> str:
        return ", ".join(
            f"{t.removeprefix('expect_')}({c})" if c else t.removeprefix("expect_") for t, c in keys
        )

    added = [k for k in new if k not in old]
    removed = [k for k in old if k not in new]
    changed = [k for k in new if k in old and new[k].get("kwargs") != old[k].get("kwargs")]
    kept = len(new) - len(added) - len(changed)
    lines = [f"{len(suggested['expectations'])} expectations suggested: {kept} unchanged"]
    for label, keys in (("added", added), ("changed", changed), ("removed", removed)):
        if keys:
            lines.append(f"  {len(keys)} {label}: {names(keys)}")
    return "\n".join(lines)


def unified_diff(path: Path, current_text: str | None, suggested: dict[str, Any]) -> str:
    """The suggested suite as a unified diff against the file's current text (None: no file yet)."""
    return "".join(
        difflib.unified_diff(
            (current_text or "").splitlines(keepends=True),
            suite_text(suggested).splitlines(keepends=True),
            fromfile=f"{path} (current)" if current_text is not None else "/dev/null",
            tofile=f"{path} (suggested)",
        )
    )
