"""Data contracts: Great Expectations suites (JSON in ``include/contracts/``) run on batches.

A contract is reviewed like code. Validation runs each batch on its own so that a
failure names the batch that broke it, and only that batch is quarantined.

Two validators give the same verdicts. ``ContractValidator`` runs GX on a whole in-memory
frame. ``ChunkedValidator`` reads one Parquet file in chunks (bounded memory), evaluates the
expectations vectorised per chunk and merges what needs the whole batch (counts for ``mostly``,
uniqueness of a key, means, extremes); expectations it has no vectorised form for run through
GX chunk by chunk where a row's verdict depends on that row only, and are refused otherwise.
Both run the cheap pass first and ask GX for the detail (SUMMARY) only of what failed.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
import logging
import math
import re
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.core.errors import SpecError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlcycle.data.lake import LakePath

log = logging.getLogger(__name__)

# Keys of an expectation's kwargs that describe the rule (the rest is GX plumbing).
_PLUMBING = {"batch_id", "result_format", "catch_exceptions", "include_config"}
EXAMPLES = 10  # sample unexpected values kept per failure
SHOWN_CHARS = 60  # characters of a long text value a message shows
# Text checks (``expect_column_values_to_not_match_regex``): a value that is empty or only
# whitespace, and one with a U+FFFD replacement character (bytes decoded with the wrong encoding)
# or a control character other than tab, newline and carriage return.
BLANK_REGEX = r"^\s*$"
ENCODING_REGEX = "[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
DEFAULT_CHUNK_ROWS = 100_000

# What the chunked validator evaluates itself (the rest of its vocabulary is below).
_ROWS = {  # a verdict per row, vectorised per chunk; counts merged
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_null",
    "expect_column_values_to_be_between",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set",
}
# Rules on text, vectorised per chunk (with GX's own pandas calls) when the column holds strings;
# GX runs them chunk by chunk on a column of another dtype.
_TEXT_ROWS = {
    "expect_column_value_lengths_to_be_between",
    "expect_column_values_to_match_regex",
    "expect_column_values_to_not_match_regex",
}
_AGGREGATES = {  # GX metric of the column, merged across chunks
    "expect_column_mean_to_be_between": "mean",
    "expect_column_sum_to_be_between": "sum",
    "expect_column_min_to_be_between": "min",
    "expect_column_max_to_be_between": "max",
    "expect_column_proportion_of_non_null_values_to_be_between": "non_null_proportion",
}
_UNIQUE = "expect_column_values_to_be_unique"
_TABLE = {"expect_column_to_exist", "expect_table_row_count_to_be_between", "expect_table_row_count_to_equal"}
# Depend on the column names and dtypes only: GX runs them once on an empty frame of the file's dtypes.
_SCHEMA = {
    "expect_table_columns_to_match_set",
    "expect_table_columns_to_match_ordered_list",
    "expect_table_column_count_to_equal",
    "expect_table_column_count_to_be_between",
    "expect_column_type_to_be",
}
# A row's verdict depends on that row alone: GX itself runs them chunk by chunk, counts merged.
_ROW_LOCAL = _ROWS | {
    "expect_column_values_to_be_of_type",
    "expect_column_values_to_be_in_type_list",
    "expect_column_values_to_match_regex",
    "expect_column_values_to_not_match_regex",
    "expect_column_values_to_match_regex_list",
    "expect_column_values_to_not_match_regex_list",
    "expect_column_values_to_match_like_pattern",
    "expect_column_values_to_not_match_like_pattern",
    "expect_column_values_to_match_like_pattern_list",
    "expect_column_values_to_not_match_like_pattern_list",
    "expect_column_values_to_match_strftime_format",
    "expect_column_values_to_be_dateutil_parseable",
    "expect_column_values_to_be_json_parseable",
    "expect_column_values_to_match_json_schema",
    "expect_column_value_lengths_to_be_between",
    "expect_column_value_lengths_to_equal",
    "expect_column_pair_values_to_be_equal",
    "expect_column_pair_values_a_to_be_greater_than_b",
    "expect_column_pair_values_to_be_in_set",
    "expect_multicolumn_sum_to_equal",
    "expect_select_column_values_to_be_unique_within_record",
}
CHUNKED_EXPECTATIONS = frozenset(_ROW_LOCAL | set(_AGGREGATES) | {_UNIQUE} | _TABLE | _SCHEMA)
"""Expectation types ``ChunkedValidator`` evaluates; a suite with any other is refused."""
# Compared with numeric bounds: text in such a column is a type problem, not an out-of-range value.
_NUMERIC_BOUNDED = {
    "expect_column_values_to_be_between",
    "expect_column_mean_to_be_between",
    "expect_column_sum_to_be_between",
    "expect_column_min_to_be_between",
    "expect_column_max_to_be_between",
    "expect_column_median_to_be_between",
    "expect_column_stdev_to_be_between",
}


def plain(value: Any) -> Any:
    """``value`` as JSON and a person read it: numpy and pandas scalars as Python numbers,
    NaN/NaT/NA as None, dates and timestamps in ISO form, containers element by element."""
    if value is None or type(value) in (bool, int, str):
        return value
    if isinstance(value, float):  # numpy's float64 is a float, and prints as np.float64(...)
        return None if math.isnan(value) else float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    import numpy as np
    import pandas as pd

    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, np.datetime64 | np.timedelta64):
        value = pd.Timestamp(value) if isinstance(value, np.datetime64) else pd.Timedelta(value)
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, dt.date | dt.time | pd.Timedelta):
        return value.isoformat()
    if isinstance(value, np.generic):
        return plain(value.item())
    return str(value)


@dataclass
class Failure:
    """One failed expectation for a person: the rule, what was seen, sample bad values or the error.

    ``problem`` is a diagnosis in plain words (missing columns, a column of the wrong type) that
    replaces GX's raw outcome in the description; the raw fields are kept beside it."""

    expectation: str
    kwargs: dict[str, Any]
    observed: Any = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    examples: list[Any] = field(default_factory=list)
    error: str | None = None
    problem: str | None = None

    def __post_init__(self) -> None:
        # GX hands back numpy scalars and timestamps: printed, they read `np.float64(0.0)`.
        self.kwargs = plain(self.kwargs)
        self.observed = plain(self.observed)
        self.examples = plain(self.examples)

    def describe(self) -> str:
        column = self.kwargs.get("column")
        rule = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items() if k != "column")
        head = (
            f"{self.expectation}({column + (', ' if rule else '') if isinstance(column, str) else ''}{rule})"
        )
        if self.problem:
            return f"{head}: {self.problem}"
        if self.error:
            return f"{head}: could not be evaluated: {self.error}"
        if self.unexpected_count is not None:
            pct = f" ({self.unexpected_percent:.2f}%)" if self.unexpected_percent is not None else ""
            sample = f", e.g. {examples_text(self.examples[:5])}" if self.examples else ""
            return f"{head}: {self.unexpected_count} unexpected values{pct}{sample}"
        return f"{head}: observed {self.observed!r}"


@dataclass
class BatchResult:
    """The contract's outcome on one batch (``uri``), so a failure names the batch to quarantine."""

    uri: str
    success: bool
    evaluated: int
    failed: int
    rows: int
    failures: list[Failure] = field(default_factory=list)


@dataclass
class ValidationReport:
    """The contract's outcome on every batch of a run; ``success`` only if each batch passed."""

    contract: str
    success: bool
    batches: list[BatchResult]
    seconds: float

    @property
    def failed_batches(self) -> list[BatchResult]:
        return [b for b in self.batches if not b.success]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        total = sum(b.rows for b in self.batches)
        if self.success:
            n = self.batches[0].evaluated if self.batches else 0
            return (
                f"contract {self.contract!r}: {len(self.batches)} batch(es), {total} rows, "
                f"{n} expectations each: all passed in {self.seconds:.2f}s"
            )
        lines = [
            f"contract {self.contract!r} failed on {len(self.failed_batches)} of {len(self.batches)} batch(es):"
        ]
        for b in self.failed_batches:
            lines.append(f"  {b.uri}: {b.failed} of {b.evaluated} expectations failed")
            lines.extend(f"    - {f.describe()}" for f in b.failures)
        return "\n".join(lines)


def load_suite_dict(path: str | Path) -> dict[str, Any]:
    """A GX suite from its JSON file, shape checked; ``SpecError`` if it is missing, not JSON or malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(
            f"contract {path} does not exist; add the GX suite or fix the spec's `contract` key"
        ) from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"contract {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("expectations"), list) or not data.get("name"):
        raise SpecError(
            f"contract {path} must be a GX suite: an object with `name` and a list `expectations`"
        )
    for i, exp in enumerate(data["expectations"]):
        if not isinstance(exp, dict) or "type" not in exp:
            raise SpecError(
                f"contract {path}: expectations[{i}] needs a `type` (e.g. expect_column_values_to_not_be_null)"
            )
    return data


# --- messages -------------------------------------------------------------------------------


def _rule(raw: dict[str, Any]) -> dict[str, Any]:
    """The kwargs of a suite expectation that describe the rule, as the contract writes them."""
    return {k: v for k, v in (raw.get("kwargs") or {}).items() if k not in _PLUMBING}


def _exception_message(info: Any) -> str | None:
    """The message of what GX raised evaluating an expectation: its exception info is either one
    record or a record per metric that failed."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "an exception")
    for record in info.values():
        if isinstance(record, dict) and record.get("raised_exception"):
            return str(record.get("exception_message") or "an exception")
    return None


def _gx_failure(raw: dict[str, Any], outcome: Any) -> Failure:
    """A ``Failure`` from GX's result of one expectation (an ``ExpectationValidationResult``)."""
    result = outcome.result or {}
    return Failure(
        expectation=raw["type"],
        kwargs=_rule(raw),
        observed=result.get("observed_value"),
        unexpected_count=result.get("unexpected_count"),
        unexpected_percent=result.get("unexpected_percent"),
        examples=list(result.get("partial_unexpected_list") or [])[:EXAMPLES],
        error=_exception_message(outcome.exception_info),
    )


def _columns_of(kwargs: dict[str, Any]) -> list[str]:
    """The columns an expectation reads (``column``, ``column_A``/``column_B``, ``column_list``)."""
    cols = [kwargs[k] for k in ("column", "column_A", "column_B") if isinstance(kwargs.get(k), str)]
    listed = kwargs.get("column_list")
    cols += [c for c in listed if isinstance(c, str)] if isinstance(listed, list) else []
    return cols


def _resolve(name: str, present: list[str]) -> str | None:
    """The batch column GX reads for ``name``: the first whose name matches ignoring case (GX
    matches pandas columns so; only ``expect_column_to_exist`` wants the exact name)."""
    return next((c for c in present if c == name or c.casefold() == name.casefold()), None)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def type_problem(column: str, values: pd.Series) -> str | None:
    """Why ``values`` (a column, or a sample of it) cannot be compared with numeric bounds, naming
    the column and a few offending values; None when they are numbers."""
    import pandas as pd
    from pandas.api import types as pdt

    if pdt.is_numeric_dtype(values.dtype):
        return None
    nonnull = values.dropna().head(100_000)
    if pdt.is_string_dtype(values.dtype):
        words = nonnull.map(lambda v: not _is_number(v))
        text = nonnull[words.astype(bool)]
        if text.empty and values.dtype == object:
            return None  # an object column of numbers: nothing wrong with its type
        unparsed = text[pd.to_numeric(text, errors="coerce").isna()]
        shown, what = (unparsed, "text") if len(unparsed) else (text, "numbers stored as text")
    else:
        shown, what = nonnull, f"{values.dtype} values"
    sample = plain(shown.drop_duplicates().head(5).tolist())
    return (
        f"type problem: column {column!r} holds {what} (dtype {values.dtype}), not numbers"
        + (f", e.g. {sample}" if sample else "")
        + "; cast it to a number upstream or fix the contract"
    )


def shown(value: Any, pattern: str | None = None, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` for a message: a string longer than ``limit`` characters cut to ``limit`` of
    them (around the first match of ``pattern`` when it has one, else its start) and its length."""
    if not isinstance(value, str) or len(value) <= limit:
        return repr(value)
    start = 0
    if pattern:
        try:
            found = re.search(pattern, value)
        except (re.error, TypeError):
            found = None
        start = max(0, min(found.start() - limit // 2, len(value) - limit)) if found else 0
    end = start + limit
    return (
        f"{'…' if start else ''}{value[start:end]!r}{'…' if end < len(value) else ''} ({len(value):,} chars)"
    )


def examples_text(examples: list[Any], pattern: str | None = None) -> str:
    """Sample values as a list reads, long strings cut (see ``shown``)."""
    return "[" + ", ".join(shown(v, pattern) for v in examples) + "]"


def _matches(regex: str, text: str) -> bool:
    try:
        return re.search(regex, text) is not None
    except (re.error, TypeError):
        return False


def _regex_words(regex: str) -> tuple[str, str]:
    """(what the values a forbidden ``regex`` matches are, what to do), in plain words for the
    usual text checks (blank text, broken encoding) and generic for any other pattern."""
    if _matches(regex, "") and _matches(regex, " \t") and not _matches(regex, "a"):
        return "are empty or only whitespace", "fix the producer, which sends blank text"
    if (_matches(regex, "\ufffd") or _matches(regex, "\x00")) and not any(
        _matches(regex, ok) for ok in ("a", "é", " ", "\t", "\n")
    ):
        return (
            "contain a U+FFFD replacement character (text decoded with the wrong encoding) or a "
            "control character",
            "fix the producer: decode the source as UTF-8 and drop control characters",
        )
    return f"match the pattern {regex!r}, which the contract forbids", "fix the producer or the regex"


def _length_words(kwargs: dict[str, Any]) -> str:
    """The values a length rule refuses: 'shorter than 3 or longer than 2000 characters'."""
    lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
    words = []
    if lo is not None:
        words.append(f"{lo} characters or shorter" if kwargs.get("strict_min") else f"shorter than {lo}")
    if hi is not None:
        words.append(f"{hi} characters or longer" if kwargs.get("strict_max") else f"longer than {hi}")
    text = " or ".join(words)
    return text if text.endswith(("shorter", "longer")) else f"{text} characters"


def count_problem(f: Failure) -> str | None:
    """A failed row check on text, or any failed not-null check, in plain words: the column, how
    many of how many values, sample values (long ones cut) and what to do; None for others."""
    column, n, pct = f.kwargs.get("column"), f.unexpected_count, f.unexpected_percent
    if f.error or not n or pct is None or not isinstance(column, str):
        return None
    total = round(n * 100 / pct) if pct else None
    mostly = f.kwargs.get("mostly")
    allowed = ""
    if isinstance(mostly, int | float) and _is_number(mostly) and mostly < 1:
        allowed = f", more than the {round((1 - mostly) * 100, 4):g}% the contract allows (mostly={mostly})"
    partly = bool(allowed)
    if f.expectation == "expect_column_values_to_not_be_null":
        rows = f"{n:,} of {total:,} rows" if total else f"{n:,} rows"
        mostly_hint = "lower mostly" if partly else "set mostly"
        return (
            f"{n} unexpected values ({pct:.2f}%): {column!r} is null in {rows}{allowed}; fix the "
            f"producer, or {mostly_hint} in the contract if that many nulls are valid"
        )
    regex = f.kwargs.get("regex") if isinstance(f.kwargs.get("regex"), str) else None
    if f.expectation == "expect_column_value_lengths_to_be_between":
        what = f"are {_length_words(f.kwargs)}"
        hint = f"fix the producer or {'lower mostly' if partly else 'widen the bounds'} in the contract"
    elif f.expectation == "expect_column_values_to_not_match_regex" and regex is not None:
        what, hint = _regex_words(regex)
        hint += ", or lower mostly in the contract if that many are valid" if partly else ""
    elif f.expectation == "expect_column_values_to_match_regex" and regex is not None:
        what, hint = f"do not match the pattern {regex!r}", "fix the producer or the regex in the contract"
    else:
        return None
    share = f"{n:,} of {total:,} non-null values ({pct:.2f}%)" if total else f"{n:,} values"
    distinct = list({repr(v): v for v in f.examples}.values())[:5]
    sample = f", e.g. {examples_text(distinct, regex)}" if distinct else ""
    return f"column {column!r}: {share} {what}{allowed}{sample}; {hint}"


def _explain(
    failures: list[Failure], present: list[str], sample: Callable[[str], pd.Series]
) -> list[Failure]:
    """Failures as a person reads them: every missing column reported once (with the columns the
    batch has and a hint when only the case differs) in place of each expectation it broke, text
    in a column compared with numbers reported as a type problem with sample values, and failed
    checks of nulls, text lengths and patterns with their counts and what to do (``count_problem``)."""
    have = set(present)
    missing: list[str] = []
    folded = 0
    kept: list[Failure] = []
    for f in failures:
        exact = f.expectation == "expect_column_to_exist"
        gone = [
            c for c in _columns_of(f.kwargs) if (c not in have if exact else _resolve(c, present) is None)
        ]
        if not gone:
            kept.append(f)
            continue
        missing.extend(c for c in gone if c not in missing)
        folded += not exact
    for f in kept:
        column = f.kwargs.get("column")
        bounds = [f.kwargs.get("min_value"), f.kwargs.get("max_value")]
        if f.expectation in _NUMERIC_BOUNDED and isinstance(column, str) and any(map(_is_number, bounds)):
            found = _resolve(column, present)
            f.problem = f.problem or (type_problem(found, sample(found)) if found else None)
        f.problem = f.problem or count_problem(f)
    if not missing:
        return kept
    cased = [f"{_resolve(m, present)!r} for {m!r}" for m in missing if _resolve(m, present)]
    text = f"{len(missing)} column(s) missing; the batch has {len(present)} column(s): {present}"
    if cased:
        text += f"; they differ only in case ({', '.join(cased)}): rename them upstream or fix the contract"
    else:
        text += "; add them upstream or fix the contract"
    if folded:
        text += f"; {folded} other expectation(s) on them could not be evaluated"
    return [Failure("expect_column_to_exist", {"columns": missing}, problem=text), *kept]


# --- GX on a whole frame ----------------------------------------------------------------------


class ContractValidator:
    """One ephemeral GX context and suite, reused for every batch of a run."""

    def __init__(self, suite: dict[str, Any]) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.name = suite["name"]
        self._context = gx.get_context(mode="ephemeral")
        # tqdm bars would otherwise fill the task logs.
        self._context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = self._context.data_sources.add_pandas("mlcycle").add_dataframe_asset(name="batch")
        self._batch_definition = asset.add_batch_definition_whole_dataframe("whole")
        try:
            self._suite = self._context.suites.add(
                gx.ExpectationSuite(
                    name=suite["name"], expectations=suite["expectations"], meta=suite.get("meta")
                )
            )
        except Exception as exc:
            raise SpecError(f"contract {suite['name']!r} has an invalid expectation: {exc}") from exc
        # GX logs and drops an expectation whose type it does not know; a typo would
        # silently remove a rule, so count what it kept.
        kept = {e.expectation_type for e in self._suite.expectations}
        dropped = sorted({e["type"] for e in suite["expectations"]} - kept)
        if dropped:
            raise SpecError(
                f"contract {suite['name']!r} has an invalid expectation: unknown type(s) {dropped}; "
                "check the spelling against the Great Expectations gallery"
            )
        self.expectation_count = len(self._suite.expectations)
        # The suite's expectations in its order, each with the dict the contract wrote.
        self.expectations: list[tuple[dict[str, Any], Any]] = list(
            zip(suite["expectations"], self._suite.expectations, strict=True)
        )
        for raw, exp in self.expectations:
            try:
                _substituted(exp)
            except Exception as exc:  # GX would raise it in the middle of a validation
                raise SpecError(
                    f"contract {suite['name']!r} has an invalid expectation: {raw['type']} "
                    f"{_rule(raw)}: {exc}; a $PARAMETER may only use now(), timedelta() and arithmetic"
                ) from exc

    def batch(self, df: pd.DataFrame) -> Any:
        """A GX batch of ``df`` (GX fingerprints the frame here, once per batch)."""
        return self._batch_definition.get_batch(batch_parameters={"dataframe": df})

    def outcomes(self, df: pd.DataFrame) -> list[Failure | None]:
        """Each expectation's outcome on ``df``, in the suite's order (None: passed): BOOLEAN_ONLY
        for all (about half the cost of SUMMARY), then SUMMARY for those that failed."""
        batch = self.batch(df)
        quick = batch.validate(self._suite, result_format="BOOLEAN_ONLY")
        failed = {r.expectation_config.id for r in quick.results if not r.success}
        return [
            _gx_failure(raw, batch.validate(exp, result_format="SUMMARY")) if exp.id in failed else None
            for raw, exp in self.expectations
        ]

    def validate(self, df: pd.DataFrame, uri: str) -> BatchResult:
        """The contract on ``df``, its failures explained (see ``outcomes``)."""
        outcomes = self.outcomes(df)
        failures = [f for f in outcomes if f is not None]
        return BatchResult(
            uri=uri,
            success=not failures,
            evaluated=len(outcomes),
            failed=len(failures),
            rows=len(df),
            failures=_explain(failures, [str(c) for c in df.columns], lambda c: df[c]),
        )


def validate_batches(suite: dict[str, Any], batches: list[tuple[str, pd.DataFrame]]) -> ValidationReport:
    """Validate each ``(uri, frame)`` against ``suite``; never raises on a data failure."""
    started = time.perf_counter()
    validator = ContractValidator(suite)
    results = []
    for uri, df in batches:
        result = validator.validate(df, uri)
        log.info(
            "validated %s: %d rows, %d expectations, %d failed",
            uri,
            result.rows,
            result.evaluated,
            result.failed,
        )
        results.append(result)
    return ValidationReport(
        contract=validator.name,
        success=all(r.success for r in results),
        batches=results,
        seconds=time.perf_counter() - started,
    )


# --- chunk by chunk ---------------------------------------------------------------------------


@dataclass
class _Chunk:
    """Rows of one file as Arrow and as the pandas frame GX would see for them."""

    index: int
    table: pa.Table
    frame: pd.DataFrame
    gx: ContractValidator
    _batch: Any = None

    def batch(self) -> Any:
        if self._batch is None:
            self._batch = self.gx.batch(self.frame)
        return self._batch


def _mostly_success(considered: int, unexpected: int, mostly: float) -> bool:
    """GX's rule for a map expectation: vacuously true without rows to consider."""
    if considered == 0:
        return True
    return (float(considered) - float(unexpected)) / float(considered) >= mostly


class _Check:
    """One expectation of the suite as the chunked validator evaluates it on one file: fed each
    chunk of the first pass, then (if it asks) each chunk of a second pass; ``failure`` is None
    once it passed."""

    columns: tuple[str, ...] = ()

    def __init__(self, raw: dict[str, Any], exp: Any) -> None:
        self.raw = raw
        self.exp = exp
        self.failure: Failure | None = None

    def fail(self, **fields: Any) -> None:
        self.failure = Failure(self.raw["type"], _rule(self.raw), **fields)

    def update(self, chunk: _Chunk) -> None:
        """Take in one chunk of the first pass."""

    def finish(self) -> None:
        """Decide, or prepare the second pass, once every chunk was seen."""

    def revisit_columns(self) -> tuple[str, ...]:
        """The columns a second pass must read for this check; empty when it needs none."""
        return ()

    def revisit(self, chunk: _Chunk) -> None:
        """Take in one chunk of the second pass."""

    def conclude(self) -> None:
        """Decide after the second pass."""


class _Decided(_Check):
    """Decided from the file's footer and schema alone."""


class _Rows(_Check):
    """A verdict per row, vectorised per chunk with the pandas operations GX uses; the counts are
    merged for ``mostly``; GX's own SUMMARY on the chunks that had unexpected rows gives the sample."""

    def __init__(self, raw: dict[str, Any], exp: Any, column: str, *, text_vs_numbers: bool = False) -> None:
        super().__init__(raw, exp)
        self.column = column
        self.columns = (column,)
        self.kind = raw["type"]
        # Text compared with numeric bounds: GX raises on the first non-null value.
        self.text_vs_numbers = text_vs_numbers
        self.element = self.nonnull = self.unexpected = 0
        self.bad_chunks: list[int] = []
        self.examples: list[Any] = []
        self.error: str | None = None
        lo, hi = getattr(exp, "min_value", None), getattr(exp, "max_value", None)
        if (
            self.kind == "expect_column_values_to_be_between"
            and lo is not None
            and hi is not None
            and lo > hi
        ):
            self.error = "min_value cannot be greater than max_value"  # GX's words
        self.bounds = [_as_numpy_bound(b) for b in (lo, hi)]

    def _expected(self, s: pd.Series) -> np.ndarray:
        import numpy as np

        exp = self.exp
        if self.kind in _TEXT_ROWS:
            return _text_expected(self.kind, exp, s)
        if self.kind == "expect_column_values_to_be_between":
            values, (lo, hi) = s.to_numpy(), self.bounds
            ok = np.ones(len(values), dtype=bool)
            if lo is not None:
                ok &= values > lo if exp.strict_min else values >= lo
            if hi is not None:
                ok &= values < hi if exp.strict_max else values <= hi
            return ok
        if exp.value_set is None:  # GX: vacuously expected
            return np.ones(len(s), dtype=bool)
        hit = s.isin(list(exp.value_set)).to_numpy()
        return hit if self.kind == "expect_column_values_to_be_in_set" else ~hit

    def update(self, chunk: _Chunk) -> None:
        if self.error:
            return
        s = chunk.frame[self.column]
        isnull = s.isna().to_numpy()
        self.element += len(s)
        if self.kind == "expect_column_values_to_not_be_null":
            bad = int(isnull.sum())
        elif self.kind == "expect_column_values_to_be_null":
            bad = int(len(s) - isnull.sum())
        else:
            self.nonnull += int(len(s) - isnull.sum())
            if self.text_vs_numbers:
                bad = int(len(s) - isnull.sum())
            else:
                try:
                    expected = self._expected(s)
                except Exception as exc:  # an invalid regex: GX reports what pandas raised
                    if self.kind not in _TEXT_ROWS:
                        raise
                    self.error = str(exc)
                    return
                bad = int((~expected & ~isnull).sum())
        self.unexpected += bad
        if bad:
            self.bad_chunks.append(chunk.index)

    def finish(self) -> None:
        if self.error:
            self.fail(error=self.error)
            return
        # The null checks count every row (GX reports no missing values for them).
        nulls = self.kind in ("expect_column_values_to_not_be_null", "expect_column_values_to_be_null")
        considered = self.element if nulls else self.nonnull
        if _mostly_success(considered, self.unexpected, self.exp.mostly):
            return
        if self.text_vs_numbers:
            self.fail(
                error="Column values, min_value, and max_value must either be None or of the same type."
            )
            return
        self.fail(
            unexpected_count=self.unexpected,
            unexpected_percent=self.unexpected / considered * 100,
        )

    def revisit_columns(self) -> tuple[str, ...]:
        if self.failure is None or self.failure.unexpected_count is None:
            return ()
        return self.columns

    def revisit(self, chunk: _Chunk) -> None:
        if chunk.index in self.bad_chunks and len(self.examples) < EXAMPLES:
            outcome = chunk.batch().validate(self.exp, result_format="SUMMARY")
            self.examples.extend((outcome.result or {}).get("partial_unexpected_list") or [])

    def conclude(self) -> None:
        if self.failure is not None and self.examples:
            self.failure.examples = plain(self.examples[:EXAMPLES])


def _text_expected(kind: str, exp: Any, s: pd.Series) -> np.ndarray:
    """Which rows of ``s`` meet a rule on text (nulls count as expected: the caller excludes them),
    computed as GX's pandas metrics compute it: on the non-null values as ``str``, their
    ``str.len()`` against the bounds or ``str.contains(regex)``, so the same regex engine decides."""
    import numpy as np

    notnull = s.notna().to_numpy()
    values = s[notnull].astype(str)
    if kind == "expect_column_value_lengths_to_be_between":
        lengths, lo, hi = values.str.len(), exp.min_value, exp.max_value
        if lo is not None and hi is not None:
            inclusive = {(False, False): "both", (True, False): "right", (False, True): "left"}.get(
                (bool(exp.strict_min), bool(exp.strict_max)), "neither"
            )
            hit = lengths.between(lo, hi, inclusive=inclusive)
        elif hi is not None:
            hit = lengths < hi if exp.strict_max else lengths <= hi
        else:
            hit = lengths > lo if exp.strict_min else lengths >= lo
    else:
        hit = values.str.contains(exp.regex)
        if kind == "expect_column_values_to_not_match_regex":
            hit = ~hit
    ok = np.ones(len(s), dtype=bool)
    ok[notnull] = hit.to_numpy(dtype=bool)
    return ok


def _as_numpy_bound(bound: Any) -> Any:
    """A bound as numpy compares it with a column: a datetime as ``datetime64`` (exact, any unit)."""
    import numpy as np

    return np.datetime64(bound) if isinstance(bound, dt.datetime) else bound


class _GxRows(_Check):
    """A row-local expectation without a vectorised form here: GX evaluates it on each chunk and
    the counts are merged (a dtype-level verdict, e.g. of a column type, is the same on each)."""

    def __init__(self, raw: dict[str, Any], exp: Any, columns: list[str]) -> None:
        super().__init__(raw, exp)
        self.columns = tuple(columns)
        self.element = self.missing = self.unexpected = 0
        self.counted = True
        self.success = True
        self.observed: Any = None
        self.examples: list[Any] = []
        self.error: str | None = None

    def update(self, chunk: _Chunk) -> None:
        outcome = chunk.batch().validate(self.exp, result_format="BASIC")
        result = outcome.result or {}
        self.error = self.error or _exception_message(outcome.exception_info)
        self.success &= bool(outcome.success)
        if result.get("unexpected_count") is None:
            self.counted = False
            self.observed = result.get("observed_value", self.observed)
            return
        self.element += int(result.get("element_count") or 0)
        self.missing += int(result.get("missing_count") or 0)
        self.unexpected += int(result["unexpected_count"])
        self.examples.extend((result.get("partial_unexpected_list") or [])[: EXAMPLES - len(self.examples)])

    def finish(self) -> None:
        if self.error:
            self.fail(error=self.error)
        elif not self.counted:
            if not self.success:
                self.fail(observed=self.observed)
        else:
            considered = self.element - self.missing
            if self.element and not _mostly_success(considered, self.unexpected, self.exp.mostly):
                self.fail(
                    unexpected_count=self.unexpected,
                    unexpected_percent=self.unexpected / considered * 100,
                    examples=self.examples,
                )


class _Aggregate(_Check):
    """A column metric merged across chunks (sums and counts for the mean, extremes), judged by
    GX's own comparison of a metric with its bounds."""

    def __init__(self, raw: dict[str, Any], exp: Any, column: str, dtype: Any) -> None:
        import numpy as np

        super().__init__(raw, exp)
        self.column = column
        self.columns = (column,)
        self.metric = _AGGREGATES[raw["type"]]
        self.numeric = isinstance(dtype, np.dtype) and dtype.kind in "iufb"
        self.rows = self.count = 0
        self.total: Any = 0
        self.extreme: Any = None
        self.error: str | None = None
        if not self.numeric and self.metric in ("mean", "sum"):
            self.error = f"the {self.metric} of a column of dtype {dtype} cannot be taken"

    def update(self, chunk: _Chunk) -> None:
        if self.error:
            return
        s = chunk.frame[self.column]
        self.rows += len(s)
        if self.metric == "non_null_proportion":
            self.count += int(s.notna().sum())
            return
        values = s.dropna()
        if values.empty:
            return
        self.count += len(values)
        if self.metric in ("mean", "sum"):
            arr = values.to_numpy()
            self.total += arr.sum(dtype="float64") if self.metric == "mean" else arr.sum()
            return
        low = values.min() if self.metric == "min" else values.max()
        try:
            if self.extreme is None or (low < self.extreme if self.metric == "min" else low > self.extreme):
                self.extreme = low
        except TypeError as exc:
            self.error = str(exc)

    def value(self) -> Any:
        """The metric as GX computes it on the whole column (None for an empty one)."""
        if self.metric == "non_null_proportion":
            return self.count / self.rows if self.rows else 0
        if self.metric == "sum":
            return self.total
        if not self.count:
            return None
        return self.total / self.count if self.metric == "mean" else self.extreme

    def finish(self) -> None:
        if self.error:
            self.fail(error=self.error)
            return
        value = self.value()
        value = value.item() if hasattr(value, "item") and not hasattr(value, "isoformat") else value
        try:
            verdict = self.exp._validate_metric_value_between(metric_name="m", metrics={"m": value})
        except Exception as exc:  # GX turns an error in a comparison into a failed expectation
            self.fail(error=str(exc))
            return
        if not verdict["success"]:
            self.fail(observed=verdict["result"]["observed_value"])


class _Unique(_Check):
    """Uniqueness across the whole file in 8 bytes per row: a key per non-null value (the value
    itself for numbers and times, a 64-bit hash of the bytes for text) sorted once; a second pass
    re-reads the values whose key repeats, so a hash collision can never fail a unique column."""

    def __init__(
        self, raw: dict[str, Any], exp: Any, column: str, *, arrow_type: pa.DataType, dtype: Any, rows: int
    ) -> None:
        import numpy as np
        import pyarrow as pa

        super().__init__(raw, exp)
        self.column = column
        self.columns = (column,)
        self.rows = rows
        if isinstance(dtype, np.dtype) and dtype.kind in "iufmM":
            self.how = "value"
        elif (
            pa.types.is_string(arrow_type)
            or pa.types.is_large_string(arrow_type)
            or pa.types.is_binary(arrow_type)
            or pa.types.is_large_binary(arrow_type)
        ):
            self.how = "bytes"
        else:
            self.how = "pandas"
        self.keys: np.ndarray | None = None
        self.n = self.element = self.nonnull = 0
        self.candidates: np.ndarray | None = None
        self.pieces: list[pd.Series] = []

    def _keys(self, chunk: _Chunk) -> tuple[np.ndarray, np.ndarray]:
        """(mask of the non-null rows, their keys) of one chunk."""
        import pandas as pd

        s = chunk.frame[self.column]
        notnull = s.notna().to_numpy()
        if self.how == "value":
            values = s.to_numpy()[notnull]
            return notnull, values.view("int64") if values.dtype.kind in "mM" else values
        if self.how == "bytes":
            return notnull, _bytes_hash(chunk.table.column(self.column).combine_chunks().drop_null())
        return notnull, pd.util.hash_pandas_object(s[notnull], index=False).to_numpy()

    def update(self, chunk: _Chunk) -> None:
        import numpy as np

        notnull, keys = self._keys(chunk)
        self.element += len(notnull)
        if self.keys is None:
            self.keys = np.empty(self.rows, dtype=keys.dtype)
        self.keys[self.n : self.n + len(keys)] = keys
        self.n += len(keys)

    def finish(self) -> None:
        import numpy as np

        self.nonnull = self.n
        if self.keys is None:
            return
        keys = self.keys[: self.n]
        keys.sort()  # in place: no second copy of the keys
        repeated = keys[1:][keys[1:] == keys[:-1]]
        self.keys = None
        if len(repeated):
            self.candidates = np.unique(repeated)

    def revisit_columns(self) -> tuple[str, ...]:
        return self.columns if self.candidates is not None else ()

    def revisit(self, chunk: _Chunk) -> None:
        import numpy as np

        assert self.candidates is not None  # revisited only when some key repeats
        notnull, keys = self._keys(chunk)
        hit = np.isin(keys, self.candidates)
        if hit.any():
            self.pieces.append(chunk.frame[self.column][notnull][hit])

    def conclude(self) -> None:
        import pandas as pd

        if self.candidates is None:
            return
        # Every row whose value repeats has a repeated key, so this is GX's condition on the rows
        # that could repeat; the others are unique.
        values = pd.concat(self.pieces, ignore_index=True)
        repeats = values[values.duplicated(keep=False).to_numpy()]
        self.pieces = []
        if _mostly_success(self.nonnull, len(repeats), self.exp.mostly):
            return
        self.fail(
            unexpected_count=len(repeats),
            unexpected_percent=len(repeats) / self.nonnull * 100,
            examples=repeats.head(EXAMPLES).tolist(),
        )


_HASH_BASE = 0x100000001B3  # odd, so every power is a distinct unit modulo 2**64


@functools.cache
def _hash_powers(n: int) -> np.ndarray:
    """BASE**0 .. BASE**(n - 1) modulo 2**64 (numpy's unsigned products wrap, as intended)."""
    import numpy as np

    powers = np.full(n, _HASH_BASE, dtype=np.uint64)
    powers[0] = 1
    return np.cumprod(powers, dtype=np.uint64)


def _bytes_hash(arr: pa.Array) -> np.ndarray:
    """A 64-bit polynomial hash of each value of a string or binary array without nulls, computed
    on Arrow's buffers with numpy (four times faster than pandas' hash of Python strings)."""
    import numpy as np
    import pyarrow as pa

    arr = arr.cast(pa.large_binary())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    lengths = np.diff(offsets)
    out = lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    if not len(arr) or offsets[-1] == offsets[0]:
        return out
    powers = _hash_powers(1 << max(6, int(lengths.max() - 1).bit_length()))
    lo, hi = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[lo:hi]
    # Each byte (+1, so that zero bytes count) times BASE to the power of its distance from the
    # end of its value, summed per value.
    width = int(lengths[0])
    if (lengths == width).all():  # keys often have one width: a matrix, no index arrays
        terms = (data.reshape(-1, width).astype(np.uint64) + np.uint64(1)) * powers[width - 1 :: -1]
        return out ^ terms.sum(axis=1, dtype=np.uint64)
    position = np.repeat(offsets[1:] - lo, lengths) - np.arange(1, hi - lo + 1)
    terms = (data.astype(np.uint64) + np.uint64(1)) * powers[position]
    filled = lengths > 0
    out[filled] ^= np.add.reduceat(terms, (offsets[:-1] - lo)[filled])
    return out


class _FileRun:
    """The chunked validation of one open Parquet file."""

    def __init__(self, validator: ChunkedValidator, pf: pq.ParquetFile, uri: str) -> None:
        import numpy as np
        import pyarrow as pa

        self.gx = validator.gx
        self.chunk_rows = validator.chunk_rows
        self.pf = pf
        self.uri = uri
        self.rows = int(pf.metadata.num_rows)
        schema = pf.schema_arrow
        # The columns and dtypes of the frame GX would get from reading the whole file: pandas'
        # metadata applies; an integer or boolean column becomes float or object if it has a null.
        empty = schema.empty_table().to_pandas()
        self.present = [str(c) for c in empty.columns]
        self.pinned: dict[str, Any] = {}
        for name in self.present:
            dtype = empty[name].dtype
            if isinstance(dtype, np.dtype) and dtype.kind in "iub" and self._has_nulls(name):
                self.pinned[name] = pa.array([None], type=schema.field(name).type).to_pandas().dtype
        self.empty = self._pin(empty)
        self.dtypes = dict(self.empty.dtypes.items())
        self._empty: Any = None
        self.checks = [self._plan(raw, exp) for raw, exp in self.gx.expectations]
        self.chunks = 0

    def _empty_batch(self) -> Any:
        """A GX batch of no rows with the file's columns and dtypes, for rules on the schema."""
        if self._empty is None:
            self._empty = self.gx.batch(self.empty)
        return self._empty

    def _has_nulls(self, name: str) -> bool:
        meta = self.pf.metadata
        leaf = next((j for j in range(meta.num_columns) if meta.schema.column(j).path == name), None)
        if leaf is not None:
            stats = [meta.row_group(g).column(leaf).statistics for g in range(meta.num_row_groups)]
            if all(s is not None and s.has_null_count for s in stats):
                return any(s.null_count for s in stats)
        return any(b.column(0).null_count for b in self.pf.iter_batches(batch_size=1 << 20, columns=[name]))

    def _pin(self, frame: pd.DataFrame) -> pd.DataFrame:
        for name, dtype in self.pinned.items():
            if name in frame and frame[name].dtype != dtype:
                frame[name] = frame[name].astype(dtype)
        return frame

    def _plan(self, raw: dict[str, Any], exp: Any) -> _Check:
        """How one expectation is evaluated on this file (its dtypes decide the vectorised form)."""
        import numpy as np
        import pandas as pd

        kind = raw["type"]
        check: _Check
        columns = _columns_of(_rule(raw))
        exp = _substituted(exp)  # evaluated per file, as GX does per validation
        if kind == "expect_column_to_exist":
            check = _Decided(raw, exp)
            index = exp.column_index
            if index:  # GX's test: a column_index of 0 only asks for the column to exist
                try:
                    found = self.present[index] == exp.column
                except IndexError:
                    found = False
            else:
                found = exp.column in self.present
            if not found:
                check.fail()
            return check
        if kind == "expect_table_row_count_to_be_between":
            check = _Decided(raw, exp)
            verdict = exp._validate_metric_value_between(metric_name="m", metrics={"m": self.rows})
            if not verdict["success"]:
                check.fail(observed=self.rows)
            return check
        if kind == "expect_table_row_count_to_equal":
            check = _Decided(raw, exp)
            if self.rows != exp.value:
                check.fail(observed=self.rows)
            return check
        if kind in _SCHEMA:
            check = _Decided(raw, exp)
            outcome = self._empty_batch().validate(exp, result_format="SUMMARY")
            if not outcome.success:
                check.failure = _gx_failure(raw, outcome)
            return check
        resolved = [_resolve(c, self.present) for c in columns]
        gone = [c for c, r in zip(columns, resolved, strict=True) if r is None]
        if gone:
            check = _Decided(raw, exp)
            check.fail(error=f"column(s) {gone} not in the batch")
            return check
        if _filters_rows(exp):
            return _GxRows(raw, exp, self.present)
        column = next((c for c in resolved if c is not None), "")
        dtype = self.dtypes.get(column)
        if kind == "expect_column_values_to_be_between":
            bounds = [b for b in (exp.min_value, exp.max_value) if b is not None]
            kind_of = dtype.kind if isinstance(dtype, np.dtype) else ""
            if all(map(_is_number, bounds)):
                if kind_of and kind_of in "iuf":
                    return _Rows(raw, exp, column)
                if isinstance(dtype, pd.StringDtype):
                    return _Rows(raw, exp, column, text_vs_numbers=True)
            naive = all(isinstance(b, dt.datetime) and b.tzinfo is None for b in bounds)
            if kind_of == "M" and naive:  # timestamps without a time zone, like the bounds
                return _Rows(raw, exp, column)
            return _GxRows(raw, exp, [column])
        if kind in _ROWS or (
            kind in _TEXT_ROWS and (dtype == np.dtype(object) or isinstance(dtype, pd.StringDtype))
        ):
            return _Rows(raw, exp, column)
        if kind == _UNIQUE:
            arrow_type = self.pf.schema_arrow.field(column).type
            return _Unique(raw, exp, column, arrow_type=arrow_type, dtype=dtype, rows=self.rows)
        if kind in _AGGREGATES:
            return _Aggregate(raw, exp, column, dtype)
        if kind in ("expect_column_values_to_be_of_type", "expect_column_values_to_be_in_type_list") and (
            dtype != np.dtype(object)
        ):
            # GX judges a non-object column by its dtype alone: once, on the empty frame.
            check = _Decided(raw, exp)
            outcome = self._empty_batch().validate(exp, result_format="SUMMARY")
            if not outcome.success:
                check.failure = _gx_failure(raw, outcome)
            return check
        return _GxRows(raw, exp, [c for c in resolved if c is not None])

    def _chunks(self, columns: list[str]) -> Iterator[_Chunk]:
        """The file's rows in chunks of at most ``chunk_rows``, one row group at a time, as GX
        would see them (dtypes pinned to the whole file's); one empty chunk for an empty file."""
        import pyarrow as pa

        index = 0
        for group in range(self.pf.metadata.num_row_groups):
            for batch in self.pf.iter_batches(
                batch_size=self.chunk_rows, row_groups=[group], columns=columns
            ):
                if not batch.num_rows:
                    continue
                table = pa.Table.from_batches([batch])
                yield _Chunk(index, table, self._pin(table.to_pandas()), self.gx)
                index += 1
        if index == 0:
            table = self.pf.schema_arrow.empty_table().select(columns)
            yield _Chunk(0, table, self.empty[columns], self.gx)

    def _sample(self, column: str, limit: int = 1000) -> pd.Series:
        """Up to ``limit`` non-null values of a column, from the start of the file."""
        import pandas as pd

        parts: list[pd.Series] = []
        for chunk in self._chunks([column]):
            parts.append(chunk.frame[column].dropna())
            if sum(map(len, parts)) >= limit:
                break
        return pd.concat(parts).head(limit) if parts else self.empty[column]

    def evaluate(self) -> None:
        """Every check over the file: the first pass, then a second one for the checks that ask."""
        columns = _union(c.columns for c in self.checks)
        if columns:
            for chunk in self._chunks(columns):
                self.chunks += 1
                for check in self.checks:
                    if check.columns:
                        check.update(chunk)
        for check in self.checks:
            check.finish()
        again = [c for c in self.checks if c.revisit_columns()]
        if again:
            for chunk in self._chunks(_union(c.revisit_columns() for c in again)):
                for check in again:
                    check.revisit(chunk)
            for check in again:
                check.conclude()

    def result(self) -> BatchResult:
        failures = [c.failure for c in self.checks if c.failure is not None]
        return BatchResult(
            uri=self.uri,
            success=not failures,
            evaluated=len(self.checks),
            failed=len(failures),
            rows=self.rows,
            failures=_explain(failures, self.present, self._sample),
        )


def _union(groups: Iterator[tuple[str, ...]] | Any) -> list[str]:
    return list(dict.fromkeys(c for group in groups for c in group))


def _filters_rows(exp: Any) -> bool:
    """Whether an expectation applies to the rows a ``row_condition`` selects, which only GX
    evaluates (chunk by chunk, for a rule on each row)."""
    return bool(getattr(exp, "row_condition", None))


def _substituted(exp: Any) -> Any:
    """``exp`` with its suite parameters (``{"$PARAMETER": "now() - timedelta(days=2)"}``)
    evaluated as GX evaluates them when it validates; ``exp`` itself when it has none."""
    if not any(isinstance(v, dict) and "$PARAMETER" in v for v in exp.configuration.kwargs.values()):
        return exp
    config = copy.deepcopy(exp.configuration)
    config.process_suite_parameters({}, interactive_evaluation=True)
    return config.to_domain_obj()


class ChunkedValidator:
    """The contract on Parquet files, one file and one chunk of rows at a time: memory depends on
    ``chunk_rows`` (and 8 bytes per row for each uniqueness check), not on the file's size."""

    def __init__(self, suite: dict[str, Any], *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
        self.gx = ContractValidator(suite)
        self.name = self.gx.name
        self.chunk_rows = chunk_rows
        refused = sorted(
            {
                raw["type"]
                for raw, exp in self.gx.expectations
                if raw["type"] not in CHUNKED_EXPECTATIONS
                or (_filters_rows(exp) and raw["type"] not in _ROW_LOCAL)
            }
        )
        if refused:
            raise SpecError(
                f"contract {self.name!r}: {refused} cannot be validated chunk by chunk (they need the "
                "whole batch in memory, or a row_condition on a statistic of the whole batch); "
                f"use expectations of these types instead: {sorted(CHUNKED_EXPECTATIONS)}"
            )

    @contextmanager
    def _evaluated(self, path: str | LakePath, uri: str) -> Iterator[_FileRun]:
        import pyarrow.parquet as pq

        from mlcycle.data import lake as lk

        with lk.reading(uri), lk.as_path(path).open("rb") as fh:
            run = _FileRun(self, pq.ParquetFile(fh), uri)
            run.evaluate()
            yield run

    def outcomes(self, path: str | LakePath) -> list[Failure | None]:
        """Each expectation's outcome on one file, in the suite's order (None: passed)."""
        with self._evaluated(path, _uri(path)) as run:
            return [c.failure for c in run.checks]

    def validate_file(self, path: str | LakePath, uri: str | None = None) -> BatchResult:
        """The contract on one Parquet file (a local path or a URI), which is closed afterwards.

        A file that is not readable Parquet raises ``UnreadableDataError`` naming it, a missing
        one ``DataNotFoundError`` (``mlcycle.data.lake.reading``)."""
        uri = uri or _uri(path)
        started = time.perf_counter()
        with self._evaluated(path, uri) as run:
            result = run.result()
        log.info(
            "validated %s: %d rows in %d chunk(s), %d expectations, %d failed (%.2fs)",
            uri,
            result.rows,
            run.chunks,
            result.evaluated,
            result.failed,
            time.perf_counter() - started,
        )
        return result


def _uri(path: str | LakePath) -> str:
    from mlcycle.data import lake as lk

    return path if isinstance(path, str) else lk.uri_of(path)


def validate_file(
    suite: dict[str, Any], path: str | LakePath, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> BatchResult:
    """``suite`` on one Parquet file, read in chunks of ``chunk_rows`` rows (see ``ChunkedValidator``)."""
    return ChunkedValidator(suite, chunk_rows=chunk_rows).validate_file(path)


def validate_paths(
    suite: dict[str, Any], paths: list[str] | list[LakePath], *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> ValidationReport:
    """Validate each Parquet file against ``suite``, one at a time and each released before the
    next is opened; never raises on a data failure (a file that cannot be read raises)."""
    started = time.perf_counter()
    validator = ChunkedValidator(suite, chunk_rows=chunk_rows)
    results = [validator.validate_file(p) for p in paths]
    return ValidationReport(
        contract=validator.name,
        success=all(r.success for r in results),
        batches=results,
        seconds=time.perf_counter() - started,
    )
