"""Data contracts: the shipped GX suites accept clean batches and name what a corrupted one broke."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from mlcycle.core import settings
from mlcycle.core.errors import SpecError
from mlcycle.data.contracts import Failure, ValidationReport, load_suite_dict, validate_batches
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
    """A batch without a column the contract needs fails on that column."""
    suite = {"name": "c", "expectations": [{"type": "expect_column_to_exist", "kwargs": {"column": "ghost"}}]}
    rep = validate_batches(suite, [("x", generate_batch("churn", DAY, 20))])
    assert not rep.success
    (failure,) = rep.batches[0].failures
    assert failure.expectation == "expect_column_to_exist"
    assert failure.kwargs == {"column": "ghost"}


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
