"""A scoring request, parsed and checked against the served version's schema before the model
sees it: MLflow's JSON input formats in, a typed DataFrame (or every problem found) out.

Accepted bodies (MLflow's scoring protocol)::

    {"dataframe_split": {"columns": [...], "data": [[...], ...]}, "params": {...}}
    {"dataframe_records": [{"col": value, ...}, ...]}
    {"inputs": {"col": [values], ...}}        or  {"inputs": [{"col": value, ...}, ...]}
                                                  ("instances" is read like "inputs")

Everything wrong with a request is reported at once, each problem naming its field (a feature,
a param or a part of the body), the first rows where it occurs and what was expected. Nothing
is coerced: a string is never read as a number, a number never as a category.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlcycle.core.errors import MlcycleError
from mlcycle.ml.schema import NUMBER, Feature, Schema

if TYPE_CHECKING:
    import pandas as pd

    from mlcycle.core.spec import Task

INPUT_KEYS = ("dataframe_split", "dataframe_records", "inputs", "instances")
# Every param a request may set; all are booleans, false unless given.
PARAMS: dict[str, str] = {
    "probabilities": "add each row's class probabilities and the class labels (classifiers only)",
    "ignore_extra_columns": "drop columns the model does not use (listed in warnings) instead of refusing",
    "allow_unseen_categories": (
        "score categories the model never saw (listed in warnings; the model reads one as none of "
        "the known categories) instead of refusing"
    ),
}
EXAMPLE = '{"dataframe_split": {"columns": ["a", "b"], "data": [[1.5, "x"]]}}'
MAX_ROWS_LISTED = 5
MAX_VALUES_LISTED = 10
MAX_CATEGORIES_LISTED = 50
MAX_PROBLEMS_LISTED = 20  # in the message; ``errors`` has them all
_ABSENT = object()  # a record without the key (not the same as an explicit null)
# Far more than any model takes, and low enough that a body of many distinct names cannot make
# the column checks slow.
MAX_COLUMNS = 1000


@dataclass
class Problem:
    """One thing wrong with a request (or, in ``warnings``, scored anyway): the field it is about,
    a machine-readable kind, what was wrong and what to do, and where."""

    field: str
    kind: str
    detail: str
    # The first few rows where it occurs (0-based positions in the request) and how many in all.
    rows: list[int] = dataclasses.field(default_factory=list)
    rows_total: int = 0
    values: list[Any] = dataclasses.field(default_factory=list)  # a sample of the offending values
    known: list[Any] | None = None  # the known categories, for an unseen one

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "problem": self.kind, "detail": self.detail}
        if self.rows_total:
            out |= {"rows": self.rows, "rows_total": self.rows_total}
        if self.values:
            out["values"] = self.values
        if self.known is not None:
            out["known"] = self.known
        return out

    def sentence(self) -> str:
        where = ""
        if self.rows_total:
            more = f" and {self.rows_total - len(self.rows)} more" if self.rows_total > len(self.rows) else ""
            where = f" (row{'s' if self.rows_total > 1 else ''} {', '.join(map(str, self.rows))}{more})"
        return f"{self.field}: {self.detail}{where}"


class RequestRefused(MlcycleError):
    """A request the server does not score: the HTTP ``status`` and every problem found."""

    def __init__(self, status: int, problems: list[Problem], error_code: str = "BAD_REQUEST") -> None:
        self.status, self.problems, self.error_code = status, problems, error_code
        count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
        listed = "; ".join(p.sentence() for p in problems[:MAX_PROBLEMS_LISTED])
        more = len(problems) - MAX_PROBLEMS_LISTED
        super().__init__(
            f"request refused, {count}: {listed}" + (f"; and {more} more in errors" if more > 0 else "")
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body: MLflow's ``error_code`` and ``message``, plus one entry per problem."""
        return {
            "error_code": self.error_code,
            "message": str(self),
            "errors": [p.to_dict() for p in self.problems],
        }


def refused(field: str, kind: str, detail: str, status: int = 400) -> RequestRefused:
    """A ``RequestRefused`` with one problem that has no rows."""
    return RequestRefused(status, [Problem(field, kind, detail)])


@dataclass
class ScoringRequest:
    """A request that passed every check: the rows as the model takes them, the params, and what
    was scored despite a problem because a param allowed it."""

    frame: pd.DataFrame
    params: dict[str, bool]
    warnings: list[Problem]


def describe(value: Any) -> str:
    """A JSON value as a client would name it: ``string 'lots'``, ``integer 3``, ``boolean true``."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    if isinstance(value, int):
        return f"integer {value}" if abs(value) < 10**20 else "a huge integer"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, dict):
        return "an object"
    return "an array" if isinstance(value, list) else type(value).__name__


def parse_request(body: bytes, schema: Schema, task: Task) -> ScoringRequest:
    """The request in ``body`` checked against ``schema``; ``RequestRefused`` lists every problem."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise refused(
            "body", "malformed_json", f"not valid JSON ({str(exc)[:200]}); send an object like {EXAMPLE}"
        ) from None
    return check_request(doc, schema, task)


def check_request(doc: Any, schema: Schema, task: Task) -> ScoringRequest:
    """A request body already decoded from JSON (an AWS Lambda direct invoke hands the handler
    one) checked against ``schema``; ``RequestRefused`` lists every problem."""
    if not isinstance(doc, dict):
        raise refused("body", "bad_body", f"is {describe(doc)}, not a JSON object; send one like {EXAMPLE}")
    shape = f"give exactly one of {list(INPUT_KEYS)} and optionally params"
    unknown = [k for k in doc if k not in (*INPUT_KEYS, "params")]
    if unknown:
        raise RequestRefused(
            400, [Problem(k, "bad_body", f"unknown key in the body; {shape}") for k in unknown]
        )
    given = [k for k in INPUT_KEYS if k in doc]
    if len(given) != 1:
        raise refused("body", "bad_body", f"has {len(given)} input formats {given}; {shape}")
    problems: list[Problem] = []
    params = _params(doc.get("params"), task, problems)
    columns, rows = _columns(given[0], doc[given[0]], set(schema.names))
    if rows == 0:
        raise refused(given[0], "empty_input", "holds no rows; send at least one row to score")
    warnings = _check_columns(columns, schema, params, problems)
    for feature in schema.features:
        if feature.name in columns:
            _check_values(feature, columns[feature.name], params, problems, warnings)
    if problems:
        raise RequestRefused(400, problems)
    return ScoringRequest(frame=_frame(columns, schema), params=params, warnings=warnings)


def _params(raw: Any, task: Task, problems: list[Problem]) -> dict[str, bool]:
    allowed = f"{list(PARAMS)}, each true or false (GET /metadata says what each does)"
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(Problem("params", "bad_param", f"is {describe(raw)}; send an object of {allowed}"))
        return {}
    params: dict[str, bool] = {}
    for name, value in raw.items():
        if name not in PARAMS:
            problems.append(
                Problem(name, "unknown_param", f"is not a param of this server; allowed: {allowed}")
            )
        elif not isinstance(value, bool):
            problems.append(Problem(name, "bad_param", f"must be true or false, got {describe(value)}"))
        else:
            params[name] = value
    if params.get("probabilities") and not task.classifies:
        problems.append(
            Problem(
                "probabilities",
                "bad_param",
                f"applies to classifiers, and this model is a {task} model; leave it out",
            )
        )
    return params


def _columns(key: str, value: Any, wanted: set[str]) -> tuple[dict[str, list[Any]], int]:
    """The input as {column: values} (values only of the ``wanted`` columns, for records) and its
    row count; ``RequestRefused`` for a malformed shape."""
    if key == "dataframe_split":
        return _split(value)
    if key in ("inputs", "instances") and isinstance(value, dict):
        if not all(isinstance(v, list) for v in value.values()):
            raise refused(key, "bad_body", 'must map each column to a list of values: {"col": [1, 2]}')
        _at_most_max_columns(key, len(value))
        lengths = {c: len(v) for c, v in value.items()}
        if len(set(lengths.values())) > 1:
            raise refused(
                key, "bad_body", f"columns have different lengths {lengths}; give each the same rows"
            )
        return dict(value), next(iter(lengths.values()), 0)
    return _records(key, value, wanted)


def _at_most_max_columns(field: str, count: int) -> None:
    if count > MAX_COLUMNS:
        raise refused(
            field, "bad_body", f"names {count} columns, more than the {MAX_COLUMNS} this server reads"
        )


def _split(value: Any) -> tuple[dict[str, list[Any]], int]:
    shape = 'an object {"columns": [names], "data": [[row values], ...]}'
    if not isinstance(value, dict) or not set(value) <= {"columns", "data", "index"}:
        extra = sorted(set(value) - {"columns", "data", "index"}) if isinstance(value, dict) else []
        got = f"has unknown keys {extra}" if extra else f"is {describe(value)}"
        raise refused("dataframe_split", "bad_body", f"{got}; send {shape}")
    columns, data = value.get("columns"), value.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise refused("dataframe_split.columns", "bad_body", "must be a list of column names (strings)")
    _at_most_max_columns("dataframe_split.columns", len(columns))
    dupes = sorted(c for c, n in collections.Counter(columns).items() if n > 1)
    if dupes:
        raise refused("dataframe_split.columns", "bad_body", f"names {dupes} more than once; name each once")
    if not isinstance(data, list):
        raise refused("dataframe_split.data", "bad_body", f"is {describe(data)}; send a list of rows")
    bad = [i for i, row in enumerate(data) if not isinstance(row, list) or len(row) != len(columns)]
    if bad:
        raise RequestRefused(
            400,
            [
                Problem(
                    "dataframe_split.data",
                    "bad_body",
                    f"rows must be lists of {len(columns)} values, one per column",
                    rows=bad[:MAX_ROWS_LISTED],
                    rows_total=len(bad),
                )
            ],
        )
    return {c: [row[j] for row in data] for j, c in enumerate(columns)}, len(data)


def _records(key: str, value: Any, wanted: set[str]) -> tuple[dict[str, list[Any]], int]:
    if not isinstance(value, list):
        raise refused(
            key, "bad_body", f'is {describe(value)}; send a list of records [{{"col": value}}, ...]'
        )
    bad = [i for i, rec in enumerate(value) if not isinstance(rec, dict)]
    if bad:
        raise RequestRefused(
            400,
            [
                Problem(
                    key,
                    "bad_body",
                    'records must be objects {"col": value, ...}',
                    rows=bad[:MAX_ROWS_LISTED],
                    rows_total=len(bad),
                )
            ],
        )
    names = list(dict.fromkeys(k for rec in value for k in rec))
    _at_most_max_columns(key, len(names))
    # Only the model's columns are gathered: the others are refused or ignored by name, and
    # gathering them would cost (distinct names x records).
    return {c: [rec.get(c, _ABSENT) for rec in value] if c in wanted else [] for c in names}, len(value)


def _check_columns(
    columns: dict[str, list[Any]], schema: Schema, params: dict[str, bool], problems: list[Problem]
) -> list[Problem]:
    """Missing and extra columns into ``problems``; extra ones into the returned warnings instead
    when ``ignore_extra_columns`` is set."""
    warnings = []
    for name in schema.names:
        if name not in columns:
            problems.append(
                Problem(name, "missing_column", f"missing; the model takes the columns {schema.names}")
            )
    for name in columns:
        if name in schema.names:
            continue
        if params.get("ignore_extra_columns"):
            warnings.append(Problem(name, "extra_column", "not a feature of the model; ignored"))
        else:
            problems.append(
                Problem(
                    name,
                    "extra_column",
                    f"not a feature of the model (it takes {schema.names}); remove it, or pass "
                    "params.ignore_extra_columns=true to have it ignored",
                )
            )
    return warnings


class _Rows:
    """Row positions and sample values of one kind of problem in one column."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.total = 0
        self.values: list[Any] = []

    def add(self, row: int, value: Any = _ABSENT) -> None:
        self.total += 1
        if len(self.rows) < MAX_ROWS_LISTED:
            self.rows.append(row)
        if value is not _ABSENT and len(self.values) < MAX_VALUES_LISTED and value not in self.values:
            self.values.append(value)

    def problem(self, feature: str, kind: str, detail: str, known: list[Any] | None = None) -> Problem:
        return Problem(feature, kind, detail, self.rows, self.total, self.values, known)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)  # JSON true is no number


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond float64
        return False


def _check_values(
    feature: Feature,
    values: list[Any],
    params: dict[str, bool],
    problems: list[Problem],
    warnings: list[Problem],
) -> None:
    """Type, null, finiteness and category problems of one column."""
    absent, nulls, wrong, infinite, unseen = _Rows(), _Rows(), _Rows(), _Rows(), _Rows()
    known = set(feature.categories)
    numeric = feature.type == NUMBER
    for i, v in enumerate(values):
        if v is _ABSENT:
            absent.add(i)
        elif v is None or (isinstance(v, float) and math.isnan(v)):
            if feature.required:
                nulls.add(i)
        elif not (_is_number(v) if numeric else isinstance(v, str)):
            wrong.add(i, describe(v))
        elif numeric and not _finite(v):
            infinite.add(i, describe(v))
        elif feature.kind == "categorical" and v not in known:
            unseen.add(i, v)
    expected = "a number" if numeric else "a string"
    if feature.kind == "categorical":
        expected += " (a category)"
    if absent.total:
        problems.append(
            absent.problem(
                feature.name,
                "missing_value",
                "absent from these records; give every record every feature"
                + ("" if feature.required else " (null where the value is unknown)"),
            )
        )
    if nulls.total:
        problems.append(
            nulls.problem(
                feature.name,
                "null_in_required",
                f"null in a required feature (it had no nulls in training); send {expected}",
            )
        )
    if wrong.total:
        got = ", ".join(wrong.values)
        problems.append(wrong.problem(feature.name, "wrong_type", f"expected {expected}, got {got}"))
    if infinite.total:
        problems.append(
            infinite.problem(
                feature.name, "not_finite", f"expected a finite number, got {', '.join(infinite.values)}"
            )
        )
    if unseen.total:
        listed = list(feature.categories[:MAX_CATEGORIES_LISTED])
        if params.get("allow_unseen_categories"):
            warnings.append(
                unseen.problem(
                    feature.name,
                    "unseen_category",
                    f"categories the model never saw: {unseen.values}; scored as none of the known ones",
                    listed,
                )
            )
        else:
            problems.append(
                unseen.problem(
                    feature.name,
                    "unseen_category",
                    f"categories the model never saw: {unseen.values}; known: {listed}. Send a known "
                    "category, or pass params.allow_unseen_categories=true to score these rows anyway",
                    listed,
                )
            )


def _frame(columns: dict[str, list[Any]], schema: Schema) -> pd.DataFrame:
    """The checked columns in the model's order and dtypes: numbers as float64 (null = NaN),
    string categories as pandas strings (what a Parquet batch gives the model at training)."""
    import pandas as pd

    data = {}
    for f in schema.features:
        if f.kind == "numeric":
            data[f.name] = pd.Series(columns[f.name], dtype="float64")
        elif f.type == NUMBER:  # integer category codes keep their integer dtype when they can
            data[f.name] = pd.Series(columns[f.name])
        else:
            data[f.name] = pd.Series(columns[f.name], dtype="str")
    return pd.DataFrame(data, columns=schema.names)
