"""Data contracts: the shipped GX suites accept clean batches and name what a corrupted one broke."""

from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlcycle.core import settings
from mlcycle.core.errors import SpecError, UnreadableDataError
from mlcycle.data.contracts import (
    CHUNKED_EXPECTATIONS,
    ChunkedValidator,
    Failure,
    ValidationReport,
    _bytes_hash,
    load_suite_dict,
    validate_batches,
    validate_file,
    validate_paths,
)
from mlcycle.data.generators import GENERATORS, generate_batch

DAY = dt.date(2026, 3, 2)
ROWS = 400
# generate_batch(corrupt=True) breaks n = rows // 20 rows of the numeric column, nulls the
# key in n // 2 of them and writes "???" into the first categorical column in n // 3.
N_BROKEN = ROWS // 20
# (key column, corrupted numeric column, corrupted categorical column) per shipped model
CORRUPTED = {
    "churn": ("customer_id", "monthly_charges", "contract"),
    "demand": ("row_id", "price", "category"),
}


@pytest.fixture(scope="module", params=["churn", "demand"])
def report(request) -> ValidationReport:
    """One GX run per model over a clean and a corrupted batch (GX start-up is paid once)."""
    model = request.param
    suite = load_suite_dict(settings.contracts_dir() / f"{model}.json")
    batches = [
        (f"{model}/clean.parquet", generate_batch(model, DAY, ROWS)),
        (f"{model}/clean-drifted.parquet", generate_batch(model, DAY, ROWS, seed=3, drift=0.5)),
        (f"{model}/corrupt.parquet", generate_batch(model, DAY, ROWS, corrupt=True)),
    ]
    return validate_batches(suite, batches)


def test_shipped_contracts_pass_clean_batches(report):
    """Clean generated batches, even moderately drifted, pass every expectation."""
    clean = [b for b in report.batches if "clean" in b.uri]
    assert len(clean) == 2
    suite = load_suite_dict(settings.contracts_dir() / f"{report.contract}.json")
    for b in clean:
        assert b.success, [f.describe() for f in b.failures]
        assert b.failed == 0
        assert b.failures == []
        assert b.evaluated == len(suite["expectations"])
        assert b.rows == ROWS


def test_corrupted_batch_fails_naming_columns_and_counts(report):
    """The corrupted batch fails exactly on null keys, out-of-range values and unknown categories."""
    key, numeric, categorical = CORRUPTED[report.contract]
    assert GENERATORS[report.contract][1] == key
    assert GENERATORS[report.contract][3] == numeric
    assert not report.success
    assert [b.uri for b in report.failed_batches] == [f"{report.contract}/corrupt.parquet"]
    bad = report.failed_batches[0]
    found = {(f.expectation, f.kwargs["column"]): f for f in bad.failures}
    assert set(found) == {
        ("expect_column_values_to_not_be_null", key),
        ("expect_column_values_to_be_between", numeric),
        ("expect_column_values_to_be_in_set", categorical),
    }
    assert bad.failed == 3
    assert found["expect_column_values_to_not_be_null", key].unexpected_count == N_BROKEN // 2
    between = found["expect_column_values_to_be_between", numeric]
    assert between.unexpected_count == N_BROKEN
    assert between.unexpected_percent == pytest.approx(100 * N_BROKEN / ROWS)
    assert all(x < -1000 for x in between.examples)
    in_set = found["expect_column_values_to_be_in_set", categorical]
    assert in_set.unexpected_count == N_BROKEN // 3
    assert set(in_set.examples) == {"???"}


def test_summary_lists_each_failure(report):
    """The report summary names the failed batch, the counts and each broken column."""
    key, numeric, categorical = CORRUPTED[report.contract]
    text = report.summary()
    assert text.startswith(f"contract {report.contract!r} failed on 1 of 3 batch(es):")
    assert f"{report.contract}/corrupt.parquet: 3 of" in text
    assert f"expect_column_values_to_not_be_null({key}): {N_BROKEN // 2} unexpected values" in text
    assert f"expect_column_values_to_be_between({numeric}, min_value=" in text
    assert f"{categorical}, value_set=" in text
    # the report is JSON-serialisable for the lake
    assert json.loads(json.dumps(report.to_dict()))["success"] is False


def test_passing_summary():
    """A passing report's summary gives batch, row and expectation counts."""
    suite = {
        "name": "tiny",
        "expectations": [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}}
        ],
    }
    rep = validate_batches(
        suite, [("a", generate_batch("churn", DAY, 50)), ("b", generate_batch("churn", DAY, 60))]
    )
    assert rep.success
    assert rep.summary().startswith(
        "contract 'tiny': 2 batch(es), 110 rows, 1 expectations each: all passed in "
    )


def test_missing_column_is_reported():
    """A batch without a column the contract needs fails once, naming it and the columns it has."""
    suite = {"name": "c", "expectations": [{"type": "expect_column_to_exist", "kwargs": {"column": "ghost"}}]}
    rep = validate_batches(suite, [("x", generate_batch("churn", DAY, 20))])
    assert not rep.success
    (failure,) = rep.batches[0].failures
    assert failure.expectation == "expect_column_to_exist"
    assert failure.kwargs == {"columns": ["ghost"]}
    assert "the batch has 12 column(s): ['customer_id', 'event_date'," in failure.describe()


@pytest.mark.parametrize(
    ("expectation", "words"),
    [
        ({"type": "expect_column_values_to_not_be_null", "kwargs": {}}, "column"),
        ({"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "bogus": 1}}, "bogus"),
    ],
    ids=["missing_kwarg", "unknown_kwarg"],
)
def test_invalid_expectation_kwargs_are_a_spec_error(expectation, words):
    """An expectation GX cannot build is refused when the suite is built, naming the suite and the field."""
    suite = {"name": "broken", "expectations": [expectation]}
    with pytest.raises(SpecError, match="contract 'broken' has an invalid expectation") as err:
        validate_batches(suite, [("x", generate_batch("churn", DAY, 20))])
    assert words in str(err.value)


def test_misspelt_expectation_type_is_a_spec_error():
    """A typo in an expectation type must not silently drop the rule (the batch would pass unchecked)."""
    suite = {
        "name": "typo",
        "expectations": [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}},
            {
                "type": "expect_colum_values_to_be_between",
                "kwargs": {"column": "age", "min_value": 0, "max_value": 1},
            },
        ],
    }
    with pytest.raises(SpecError, match="contract 'typo' has an invalid expectation"):
        validate_batches(suite, [("x", generate_batch("churn", DAY, 20))])


@pytest.mark.parametrize(
    ("failure", "text"),
    [
        (
            Failure(
                "expect_column_values_to_not_be_null",
                {"column": "id"},
                unexpected_count=2,
                unexpected_percent=20.0,
                examples=[None, None],
            ),
            "expect_column_values_to_not_be_null(id): 2 unexpected values (20.00%), e.g. [None, None]",
        ),
        (
            Failure("expect_table_row_count_to_be_between", {"min_value": 100}, observed=5),
            "expect_table_row_count_to_be_between(min_value=100): observed 5",
        ),
        (
            Failure("expect_column_mean_to_be_between", {"column": "y", "max_value": 1}, error="boom"),
            "expect_column_mean_to_be_between(y, max_value=1): could not be evaluated: boom",
        ),
    ],
)
def test_failure_describe(failure, text):
    """Failures read as one line: the rule, then counts, the observed value or the error."""
    assert failure.describe() == text


# --- loading suites -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["churn", "demand"])
def test_shipped_suites_load(model):
    """The shipped suites are well-formed and named after their model."""
    suite = load_suite_dict(settings.contracts_dir() / f"{model}.json")
    assert suite["name"] == model
    assert len(suite["expectations"]) > 20


def test_missing_suite_file(tmp_path):
    """A contract file that does not exist names the path and the spec key to fix."""
    path = tmp_path / "nope.json"
    with pytest.raises(
        SpecError, match=r"nope\.json does not exist; add the GX suite or fix the spec's `contract`"
    ):
        load_suite_dict(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[]", "must be a GX suite: an object with `name` and a list `expectations`"),
        ('{"expectations": []}', "must be a GX suite"),
        ('{"name": "", "expectations": []}', "must be a GX suite"),
        ('{"name": "x"}', "must be a GX suite"),
        ('{"name": "x", "expectations": {}}', "must be a GX suite"),
        ('{"name": "x", "expectations": [{"kwargs": {}}]}', r"expectations\[0\] needs a `type`"),
        ('{"name": "x", "expectations": [{"type": "a"}, "b"]}', r"expectations\[1\] needs a `type`"),
    ],
)
def test_bad_suite_files(tmp_path, content, message):
    """Malformed suites are SpecErrors naming the file and what is wrong."""
    path = tmp_path / "suite.json"
    path.write_text(content)
    with pytest.raises(SpecError, match=message) as err:
        load_suite_dict(path)
    assert str(path) in str(err.value)


# --- chunked validation: the same verdicts as GX on the whole frame -----------------------------

# Beyond the shipped churn contract: every other kind of rule the chunked validator evaluates
# (its own vectorised forms, GX chunk by chunk, GX on the schema), passing on clean batches
# unless noted, so that a wrong merge shows as a verdict that differs from GX's.
EXTRA = [
    {"type": "expect_column_values_to_not_be_in_set", "kwargs": {"column": "region", "value_set": ["mars"]}},
    {
        "type": "expect_column_values_to_be_in_set",
        "kwargs": {"column": "contract", "value_set": ["month-to-month", "one-year"], "mostly": 0.7},
    },
    {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "age", "max_value": 85, "mostly": 0.97},
    },
    {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "monthly_charges", "min_value": 18, "strict_min": True},  # fails: 18 occurs
    },
    {"type": "expect_column_values_to_be_null", "kwargs": {"column": "total_charges", "mostly": 0.01}},
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "tenure_months", "mostly": 0.1}},
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "event_date"}},  # fails: one day
    {
        "type": "expect_column_min_to_be_between",
        "kwargs": {"column": "tenure_months", "min_value": 0, "max_value": 5},
    },
    {
        "type": "expect_column_max_to_be_between",
        "kwargs": {"column": "age", "min_value": 60, "max_value": 90},
    },
    {"type": "expect_column_sum_to_be_between", "kwargs": {"column": "support_calls", "min_value": 100}},
    {
        "type": "expect_column_mean_to_be_between",
        "kwargs": {"column": "monthly_charges", "min_value": 40, "max_value": 90},
    },
    {
        "type": "expect_column_proportion_of_non_null_values_to_be_between",
        "kwargs": {"column": "age", "min_value": 0.9},
    },
    {"type": "expect_column_values_to_be_of_type", "kwargs": {"column": "support_calls", "type_": "int64"}},
    {
        "type": "expect_column_values_to_be_in_type_list",
        "kwargs": {"column": "age", "type_list": ["float64", "int64"]},
    },
    {"type": "expect_column_type_to_be", "kwargs": {"column": "tenure_months", "type_": "int64"}},
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "customer_id", "regex": "^C\\d+$"}},
    {
        "type": "expect_column_pair_values_a_to_be_greater_than_b",
        "kwargs": {
            "column_A": "total_charges",
            "column_B": "monthly_charges",
            "or_equal": True,
            "mostly": 0.9,
        },
    },
    {
        "type": "expect_column_values_to_be_between",
        "kwargs": {
            "column": "support_calls",
            "min_value": 0,
            "max_value": 4,
            "mostly": 0.9,
            "row_condition": 'contract == "two-year"',
            "condition_parser": "pandas",
        },
    },
    {
        "type": "expect_table_columns_to_match_set",
        "kwargs": {"column_set": ["customer_id", "age"], "exact_match": False},
    },
    {"type": "expect_table_column_count_to_be_between", "kwargs": {"min_value": 12, "max_value": 12}},
    {"type": "expect_table_row_count_to_equal", "kwargs": {"value": ROWS}},
    {"type": "expect_column_to_exist", "kwargs": {"column": "event_date", "column_index": 1}},
    # suite parameters, evaluated as GX does when it validates
    {
        "type": "expect_column_values_to_be_between",
        "kwargs": {
            "column": "event_date",
            "min_value": "2026-01-01T00:00:00",
            "max_value": {"$PARAMETER": "now() + timedelta(days=1)"},
        },
    },
    {
        "type": "expect_column_max_to_be_between",
        "kwargs": {"column": "event_date", "min_value": {"$PARAMETER": "now() - timedelta(days=36500)"}},
    },
]


def _thue_morse(bits: int) -> tuple[str, str]:
    """Two different strings of 2**bits characters with the same polynomial hash modulo 2**64."""
    word = [0]
    for _ in range(bits):
        word += [1 - x for x in word]
    return "".join("ab"[x] for x in word), "".join("ba"[x] for x in word)


def _set(df: pd.DataFrame, column: str, rows: list[int], value: object) -> pd.DataFrame:
    df.loc[rows, column] = value
    return df


def _as_text(df: pd.DataFrame) -> pd.DataFrame:
    df["age"] = df["age"].map(lambda v: "unknown" if pd.isna(v) else str(int(v)))
    df["tenure_months"] = df["tenure_months"].astype(str)
    return df


def _all_null(df: pd.DataFrame) -> pd.DataFrame:
    df["age"] = np.nan
    df["support_calls"] = np.nan
    return df


def _colliding_keys(df: pd.DataFrame) -> pd.DataFrame:
    a, b = _thue_morse(11)
    return _set(_set(df, "customer_id", [7], a), "customer_id", [390], b)


# (case, frame made from a clean churn batch of ROWS rows)
CASES = {
    "good": lambda df: df,
    "nulls_over_mostly": lambda df: _set(df, "total_charges", list(range(0, ROWS, 5)), np.nan),
    "out_of_range": lambda df: _set(df, "monthly_charges", [3, 200, 399], -5.0),
    "unseen_category": lambda df: _set(df, "contract", [10, 250], "weekly"),
    "duplicate_key": lambda df: _set(
        _set(df, "customer_id", [399], df.loc[0, "customer_id"]),
        "customer_id",
        [300],
        df.loc[100, "customer_id"],
    ),
    "missing_column": lambda df: df.drop(columns=["age", "region"]),
    "wrong_type": _as_text,
    "row_count_too_low": lambda df: df.head(50),
    "empty": lambda df: df.head(0),
    "all_null": _all_null,
    "int_with_nulls": lambda df: _set(df.astype({"support_calls": "float64"}), "support_calls", [5], np.nan),
    "mean_out_of_range": lambda df: df.assign(churned=1),
    "colliding_keys": _colliding_keys,
    "columns_reordered": lambda df: df[df.columns[::-1]],
    "dates_in_the_future": lambda df: _set(df, "event_date", [5, 333], pd.Timestamp("2100-01-01")),
    # GX reads the rules' columns ignoring case; only expect_column_to_exist fails
    "column_upper_cased": lambda df: _set(df, "age", [9], 200.0).rename(columns={"age": "AGE"}),
    "bad_pattern_pairs_and_condition": lambda df: _set(
        df.assign(total_charges=df["monthly_charges"] - 1, support_calls=9, contract="two-year"),
        "customer_id",
        [1, 2],
        "X",
    ),
}
# (chunk_rows, Parquet row group size): chunks within row groups, and row groups within chunks.
CHUNKING = {"chunks_of_64_in_groups_of_150": (64, 150), "groups_of_200_in_chunks_of_1000": (1000, 200)}


@pytest.fixture(scope="module")
def validators() -> dict[int, ChunkedValidator]:
    suite = load_suite_dict(settings.contracts_dir() / "churn.json")
    suite = {"name": "churn-and-more", "expectations": suite["expectations"] + EXTRA}
    return {rows: ChunkedValidator(suite, chunk_rows=rows) for rows, _ in CHUNKING.values()}


@pytest.fixture(scope="module")
def reference(validators) -> dict[str, tuple[pd.DataFrame, list[Failure | None]]]:
    """Per case: the frame, and GX's outcome of each expectation on it as today's path reads
    it (the file read whole into pandas; the row group size does not change that frame)."""
    out = {}
    for case, make in CASES.items():
        df = make(generate_batch("churn", DAY, ROWS))
        whole = pa.Table.from_pandas(df, preserve_index=False).to_pandas()
        out[case] = df, validators[64].gx.outcomes(whole)
    return out


def _same(gx: Failure | None, chunked: Failure | None) -> bool:
    """The same verdict, and for a failure the same counts, sample and observed value."""
    if gx is None or chunked is None:
        return gx is chunked
    observed = gx.observed == chunked.observed or (
        isinstance(gx.observed, float) and chunked.observed == pytest.approx(gx.observed, rel=1e-12)
    )
    return (
        observed
        and gx.unexpected_count == chunked.unexpected_count
        and gx.examples == chunked.examples
        and (gx.error is None) == (chunked.error is None)
    )


@pytest.mark.parametrize("chunking", CHUNKING.values(), ids=CHUNKING.keys())
@pytest.mark.parametrize("case", CASES.keys())
def test_chunked_verdicts_match_gx_on_the_whole_frame(validators, reference, tmp_path, case, chunking):
    """Per expectation, the chunked validator on the Parquet file and GX on the whole frame
    agree: success, unexpected counts, sample values and observed values."""
    chunk_rows, group_rows = chunking
    df, whole = reference[case]
    path = tmp_path / "batch.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=group_rows)
    if len(df) > max(chunk_rows, group_rows):  # merging across chunks and row groups is exercised
        assert pq.ParquetFile(path).metadata.num_row_groups > 1
    validator = validators[chunk_rows]
    chunked = validator.outcomes(path)
    differ = [
        (raw["type"], raw["kwargs"], gx, ch)
        for (raw, _), gx, ch in zip(validator.gx.expectations, whole, chunked, strict=True)
        if not _same(gx, ch)
    ]
    assert differ == []


def test_the_cases_exercise_every_rule(validators, reference):
    """Each added expectation passes on some case and fails on another, so the equivalence test
    compares both outcomes of every kind of rule."""
    for j, (raw, _) in enumerate(validators[64].gx.expectations):
        seen = {outcomes[j] is None for _, outcomes in reference.values()}
        if raw in EXTRA:
            assert seen == {True, False}, raw


def test_colliding_hashes_do_not_fail_a_unique_key(tmp_path):
    """Two different keys with the same 64-bit hash: uniqueness is decided on the values."""
    a, b = _thue_morse(11)
    assert a != b
    assert len(set(_bytes_hash(pa.array([a, b])).tolist())) == 1
    suite = {
        "name": "u",
        "expectations": [{"type": "expect_column_values_to_be_unique", "kwargs": {"column": "k"}}],
    }
    path = tmp_path / "k.parquet"
    pq.write_table(pa.table({"k": [a, "x", b, None, "y"]}), path, row_group_size=2)
    assert validate_file(suite, path, chunk_rows=2).success
    pq.write_table(pa.table({"k": [a, "x", b, a, None]}), path, row_group_size=2)
    result = validate_file(suite, path, chunk_rows=2)
    assert not result.success
    (failure,) = result.failures
    assert failure.unexpected_count == 2
    assert failure.unexpected_percent == pytest.approx(50.0)
    assert failure.examples == [a, a]


@pytest.mark.parametrize("model", ["churn", "demand"])
def test_shipped_contracts_chunked_match_gx(tmp_path, model):
    """The shipped contracts give the same verdicts both ways on a clean and a corrupted batch."""
    validator = ChunkedValidator(load_suite_dict(settings.contracts_dir() / f"{model}.json"), chunk_rows=50)
    for corrupt in (False, True):
        path = tmp_path / f"{corrupt}.parquet"
        df = generate_batch(model, DAY, ROWS, corrupt=corrupt)
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=120)
        whole = validator.gx.outcomes(pq.read_table(path).to_pandas())
        chunked = validator.outcomes(path)
        assert [f is None for f in chunked] == [f is None for f in whole]
        assert all(_same(w, c) for w, c in zip(whole, chunked, strict=True))
        assert any(f is not None for f in chunked) == corrupt


# A churn contract of fixed content (the shipped one is regenerated from data): every column must
# exist, and the rules the corrupted batch and the messages below break.
CHURN_COLUMNS = list(generate_batch("churn", DAY, 1).columns)
SMALL_SUITE = {
    "name": "churn-small",
    "expectations": [
        *({"type": "expect_column_to_exist", "kwargs": {"column": c}} for c in CHURN_COLUMNS),
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 100}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}},
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "age", "min_value": 16, "max_value": 110},
        },
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age", "mostly": 0.85}},
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "tenure_months", "min_value": 0, "max_value": 120},
        },
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "monthly_charges", "min_value": 0, "max_value": 500},
        },
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "contract", "value_set": ["month-to-month", "one-year", "two-year"]},
        },
        {
            "type": "expect_column_mean_to_be_between",
            "kwargs": {"column": "churned", "min_value": 0.02, "max_value": 0.8},
        },
    ],
}


def test_validate_paths_validates_each_file(tmp_path):
    """One result per file, in order, the failing one named; the report reads like GX's."""
    suite = SMALL_SUITE
    paths = []
    for name, corrupt in (("a", False), ("b", True)):
        paths.append(tmp_path / f"{name}.parquet")
        df = generate_batch("churn", DAY, ROWS, corrupt=corrupt)
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), paths[-1])
    report = validate_paths(suite, [str(p) for p in paths], chunk_rows=100)
    assert not report.success
    assert [b.uri for b in report.batches] == [str(p) for p in paths]
    assert [b.rows for b in report.batches] == [ROWS, ROWS]
    assert [b.uri for b in report.failed_batches] == [str(paths[1])]
    assert report.failed_batches[0].failed == 3
    assert (
        f"expect_column_values_to_not_be_null(customer_id): {N_BROKEN // 2} unexpected values"
        in report.summary()
    )
    assert json.loads(json.dumps(report.to_dict()))["batches"][1]["success"] is False


def test_unreadable_file_is_named(tmp_path):
    """A CSV named .parquet is a data error naming the file, not a pyarrow traceback."""
    path = tmp_path / "2026-03-02.parquet"
    path.write_text("customer_id,age\nC1,40\n")
    suite = load_suite_dict(settings.contracts_dir() / "churn.json")
    with pytest.raises(UnreadableDataError, match=r"2026-03-02\.parquet"):
        validate_paths(suite, [str(path)])


@pytest.mark.parametrize(
    ("expectation", "words"),
    [
        (
            {"type": "expect_column_median_to_be_between", "kwargs": {"column": "age", "min_value": 1}},
            "median",
        ),
        (
            {
                "type": "expect_column_values_to_be_unique",
                "kwargs": {"column": "age", "row_condition": "age > 3"},
            },
            "unique",
        ),
    ],
    ids=["whole_column_statistic", "row_condition_on_uniqueness"],
)
def test_rules_without_a_chunked_form_are_refused(expectation, words):
    """What cannot be merged across chunks is refused when the validator is built, never passed."""
    suite = {"name": "big", "expectations": [expectation]}
    with pytest.raises(SpecError, match=f"contract 'big': .*{words}.* cannot be validated chunk by chunk"):
        ChunkedValidator(suite)
    assert "expect_column_values_to_be_unique" in CHUNKED_EXPECTATIONS


def test_a_parameter_gx_cannot_evaluate_is_a_spec_error():
    """GX would raise in the middle of a validation; the suite is refused when it is built."""
    bad = {"column": "age", "min_value": {"$PARAMETER": "bogus"}}
    suite = {"name": "p", "expectations": [{"type": "expect_column_values_to_be_between", "kwargs": bad}]}
    with pytest.raises(
        SpecError, match=r"contract 'p' has an invalid expectation: .*No value found for .*bogus"
    ):
        ChunkedValidator(suite)


# --- messages ---------------------------------------------------------------------------------


def _both(tmp_path, df: pd.DataFrame) -> list:
    """The batch result from GX on the frame and from the chunked validator on its file."""
    path = tmp_path / "batch.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    suite = SMALL_SUITE
    return [validate_batches(suite, [("x", df)]).batches[0], validate_file(suite, path, chunk_rows=64)]


def test_text_in_a_numeric_column_is_a_type_problem(tmp_path):
    """Strings where the contract compares numbers: the column, its type and sample values."""
    df = _as_text(generate_batch("churn", DAY, ROWS))
    for result in _both(tmp_path, df):
        found = {(f.expectation, f.kwargs.get("column")): f.describe() for f in result.failures}
        age = found["expect_column_values_to_be_between", "age"]
        assert re.match(
            r"expect_column_values_to_be_between\(age, min_value=\d+, max_value=\d+\): type problem: "
            r"column 'age' holds text \(dtype str\), not numbers, e.g. \['unknown'\]; cast it",
            age,
        ), age
        tenure = found["expect_column_values_to_be_between", "tenure_months"]
        assert (
            "column 'tenure_months' holds numbers stored as text (dtype str), not numbers, e.g. ['" in tenure
        )
        assert "observed None" not in "\n".join(found.values())


def test_missing_columns_are_reported_once_with_a_case_hint(tmp_path):
    """Upper-cased column names: one failure listing the missing and the present columns. (GX
    reads a rule's column ignoring case, so the rules on the data still run, and pass here.)"""
    df = generate_batch("churn", DAY, ROWS)
    df.columns = [c.upper() for c in df.columns]
    for result in _both(tmp_path, df):
        assert result.failed == len(CHURN_COLUMNS)  # each expect_column_to_exist
        (failure,) = result.failures
        text = failure.describe()
        assert text.startswith("expect_column_to_exist(columns=['customer_id', 'event_date', ")
        assert "12 column(s) missing; the batch has 12 column(s): ['CUSTOMER_ID', 'EVENT_DATE'," in text
        assert (
            "they differ only in case ('CUSTOMER_ID' for 'customer_id', 'EVENT_DATE' for 'event_date',"
            in text
        )
        assert "could not be evaluated" not in text


def test_missing_column_without_a_case_twin(tmp_path):
    """A column that is simply absent: named once, with what the batch has, no case hint."""
    df = generate_batch("churn", DAY, ROWS).drop(columns=["age"])
    for result in _both(tmp_path, df):
        missing = [f for f in result.failures if "columns" in f.kwargs]
        assert len(missing) == 1
        text = missing[0].describe()
        assert "1 column(s) missing; the batch has 11 column(s)" in text
        folded = re.search(r"add them upstream or fix the contract; (\d+) other expectation\(s\)", text)
        assert folded and int(folded.group(1)) >= 1, text
        assert all(f.kwargs.get("column") != "age" for f in result.failures)


@pytest.mark.parametrize(
    ("failure", "text"),
    [
        (
            Failure(
                "expect_column_mean_to_be_between",
                {"column": "y", "min_value": np.int64(1)},
                observed=np.float64(0.0),
            ),
            "expect_column_mean_to_be_between(y, min_value=1): observed 0.0",
        ),
        (
            Failure(
                "expect_column_values_to_be_in_set",
                {"column": "c"},
                unexpected_count=np.int64(2),
                unexpected_percent=np.float64(50.0),
                examples=[np.int64(7), pd.Timestamp("2026-03-02"), np.nan],
            ),
            "expect_column_values_to_be_in_set(c): 2 unexpected values (50.00%), e.g. [7, '2026-03-02T00:00:00', None]",
        ),
    ],
    ids=["numpy_observed", "numpy_examples"],
)
def test_values_are_printed_plainly(failure, text):
    """numpy and pandas scalars read as plain numbers, timestamps in ISO form, NaN as None."""
    assert failure.describe() == text
    assert json.loads(json.dumps(failure.kwargs | {"examples": failure.examples}))


def test_gx_observed_values_are_plain(tmp_path):
    """A mean GX computes (a numpy float) is printed as a number by both validators."""
    df = generate_batch("churn", DAY, ROWS).assign(churned=1)
    for result in _both(tmp_path, df):
        (failure,) = result.failures
        assert failure.describe() == (
            "expect_column_mean_to_be_between(churned, min_value=0.02, max_value=0.8): observed 1.0"
        )
