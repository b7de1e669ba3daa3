"""Contracts on free text: not null, lengths, blank share and encoding, the same counts chunk by chunk
as GX gives on the whole frame, messages a person can act on, suggested checks for a text column,
and the shipped support_intent contract. Frames are built here (no generator)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlcycle.core import settings
from mlcycle.core.spec import FeaturesSpec, get_spec, parse_spec
from mlcycle.data import suggest as sg
from mlcycle.data.contracts import (
    BLANK_REGEX,
    ENCODING_REGEX,
    ChunkedValidator,
    Failure,
    _GxRows,
    _Rows,
    load_suite_dict,
    shown,
    validate_batches,
    validate_file,
    validate_paths,
)

ROWS = 400
DAY = dt.datetime(2026, 3, 2)
CHANNELS = ["email", "chat", "phone", "app", "social"]
PLANS = ["basic", "plus", "premium", "business"]
INTENTS = ["billing", "technical", "cancellation", "delivery", "account", "returns"]
# fmt: off
WORDS = ["my", "bill", "is", "wrong", "the", "app", "crashes", "where", "order", "refund", "please",
         "help", "café", "naïve", "日本", "🙂"]
# fmt: on
LONG = "word " * 500  # 2,500 characters


def questions(rows: int, seed: int = 0) -> list[str]:
    """Clean questions: words of several scripts, emoji, tabs and newlines (allowed), and values of
    exactly 3 and exactly 2,000 characters (the contract's bounds)."""
    rng = np.random.default_rng(seed)
    out = [" ".join(rng.choice(WORDS, int(rng.integers(2, 40)))) + "?" for _ in range(rows)]
    out[1] = "Hi,\n\tmy bill\r\nis wrong"
    out[2] = "why"
    out[3] = ("a" * 1999) + "?"
    return out


def tickets(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    """A clean support_intent batch of the documented schema."""
    rng = np.random.default_rng(seed)
    created = np.datetime64(DAY, "ms") + (np.arange(rows) * 60_000).astype("timedelta64[ms]")
    return pd.DataFrame(
        {
            "ticket_id": pd.Series([f"T{seed:02d}-{i:06d}" for i in range(rows)], dtype="str"),
            "created_at": pd.Series(created, dtype="datetime64[ms]"),
            "question": pd.Series(questions(rows, seed), dtype="str"),
            "channel": pd.Series(rng.choice(CHANNELS, rows), dtype="str"),
            "plan": pd.Series(rng.choice(PLANS, rows), dtype="str"),
            "tenure_days": rng.integers(0, 3651, rows).astype("int64"),
            "prior_tickets_30d": rng.poisson(1.5, rows).astype("int64"),
            "intent": pd.Series(rng.choice(INTENTS, rows), dtype="str"),
        }
    )


def damaged(df: pd.DataFrame, rows: list[int], value: object) -> pd.DataFrame:
    df = df.copy()
    df.loc[rows, "question"] = value
    return df


def write(df: pd.DataFrame, path: Path, group_rows: int = 150) -> Path:
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=group_rows)
    return path


NOT_NULL = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "question"}}
LENGTHS = {
    "type": "expect_column_value_lengths_to_be_between",
    "kwargs": {"column": "question", "min_value": 3, "max_value": 2000},
}
BLANK = {
    "type": "expect_column_values_to_not_match_regex",
    "kwargs": {"column": "question", "regex": BLANK_REGEX, "mostly": 0.99},
}
ENCODING = {
    "type": "expect_column_values_to_not_match_regex",
    "kwargs": {"column": "question", "regex": ENCODING_REGEX},
}
CHECKS = {"not_null": NOT_NULL, "lengths": LENGTHS, "blank": BLANK, "encoding": ENCODING}


def suite_of(*expectations: dict) -> dict:
    return {"name": "text", "expectations": list(expectations)}


def both(tmp_path: Path, suite: dict, df: pd.DataFrame) -> list:
    """The batch result of GX on the frame and of the chunked validator on its Parquet file read in
    chunks of 64 rows (row groups of 150)."""
    path = write(df, tmp_path / "batch.parquet")
    return [
        validate_batches(suite, [("frame", df)]).batches[0],
        validate_file(suite, path, chunk_rows=64),
    ]


@pytest.mark.parametrize("check", CHECKS.values(), ids=CHECKS.keys())
def test_text_checks_pass_on_clean_text(tmp_path, check):
    """Clean questions (any script, emoji, tabs and newlines, lengths at the bounds) pass each check."""
    df = tickets()
    for result in both(tmp_path, suite_of(check), df):
        assert result.success, [f.describe() for f in result.failures]


# (check, damage, unexpected count, words the message must hold)
BROKEN = {
    "nulls": (
        NOT_NULL,
        lambda df: damaged(df, [5, 70, 71, 150, 222, 300, 399], None),
        7,
        [r"'question' is null in 7 of 400 rows", r"fix the producer, or set mostly in the contract"],
    ),
    "too_short_or_long": (
        LENGTHS,
        lambda df: damaged(
            damaged(damaged(df, [4, 90, 91, 200, 350], ""), [8, 300], "x"), [12, 13, 399], LONG
        ),
        10,
        [
            r"column 'question': 10 of 400 non-null values \(2\.50%\) are shorter than 3 or longer than "
            r"2000 characters",
            r"e\.g\. \['', 'x', 'word word [^']*'… \(2,500 chars\)\]",
            r"; fix the producer or widen the bounds in the contract$",
        ],
    ),
    "blank_share": (
        BLANK,
        lambda df: damaged(damaged(df, list(range(0, 400, 80)), ""), [7, 17, 27], " \t\n "),
        8,
        [
            r"column 'question': 8 of 400 non-null values \(2\.00%\) are empty or only whitespace, more "
            r"than the 1% the contract allows \(mostly=0\.99\)",
            r"e\.g\. \['', ' \\t\\n '\]",
            r"fix the producer, which sends blank text, or lower mostly in the contract",
        ],
    ),
    "bad_encoding": (
        ENCODING,
        lambda df: damaged(
            damaged(damaged(df, [3, 160], "my bill is wr\ufffdng"), [161, 399], "nul\x00 and esc \x1b[0m"),
            [200],
            "a" * 1500 + "\ufffd" + "b" * 700,
        ),
        5,
        [
            r"column 'question': 5 of 400 non-null values \(1\.25%\) contain a U\+FFFD replacement "
            r"character \(text decoded with the wrong encoding\) or a control character",
            r"'my bill is wr\ufffdng'",
            r"'nul\\x00 and esc \\x1b\[0m'",
            r"…'a{30}\ufffdb{29}'… \(2,201 chars\)",  # around the bad character, not its start
            r"fix the producer: decode the source as UTF-8 and drop control characters$",
        ],
    ),
}


@pytest.mark.parametrize(("check", "damage", "count", "words"), BROKEN.values(), ids=BROKEN.keys())
def test_text_check_fails_on_damaged_text(tmp_path, check, damage, count, words):
    """Damaged questions fail the check with the right count, both ways, and a message that names
    the column, counts, shows a few values (long ones cut) and says what to do."""
    df = damage(tickets())
    for result in both(tmp_path, suite_of(check), df):
        (failure,) = result.failures
        assert failure.unexpected_count == count
        text = failure.describe()
        assert text.startswith(f"{check['type']}(question")
        for pattern in words:
            assert re.search(pattern, text), (pattern, text)
        assert len(text) < 700  # a 2,500-character value does not flood the log


def test_blank_share_within_mostly_passes(tmp_path):
    """Three blank questions of 400 (0.75 %) are within the 1 % the contract allows."""
    df = damaged(tickets(), [1, 2, 3], "  ")
    assert all(r.success for r in both(tmp_path, suite_of(BLANK), df))


# Every text check, as written and restricted by a row condition that selects every row (which GX
# evaluates chunk by chunk itself): the vectorised forms and GX's must count the same.
ALL_ROWS = {"row_condition": 'channel != "none"', "condition_parser": "pandas"}
COMPARED = [
    *CHECKS.values(),
    *({**c, "kwargs": {**c["kwargs"], **ALL_ROWS}} for c in CHECKS.values()),
    {
        "type": "expect_column_value_lengths_to_be_between",
        "kwargs": {"column": "question", "max_value": 2000},
    },
    {
        "type": "expect_column_value_lengths_to_be_between",
        "kwargs": {"column": "question", "min_value": 3, "max_value": 2000, "strict_min": True},
    },
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "question", "regex": r"\?$"}},
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "question", "regex": "([a-"}},
]


def mixed_damage(seed: int) -> pd.DataFrame:
    """Every kind of damage, scattered over the rows."""
    df = tickets(seed=seed)
    rng = np.random.default_rng(100 + seed)
    rows = rng.choice(ROWS, 60, replace=False).tolist()
    for i, value in zip(
        rows, [None, "", "x", " \t ", LONG, "bad \ufffd", "ctl\x07", "ok\x7f"] * 8, strict=False
    ):
        df.loc[i, "question"] = value
    return df


def test_chunked_counts_equal_gx_on_the_whole_frame(tmp_path):
    """Per check, over two files read in chunks of 80 rows within row groups of 150: the chunked
    validator (vectorised, and GX chunk by chunk) gives GX's counts, percentages, examples and
    errors on each whole frame."""
    validator = ChunkedValidator(suite_of(*COMPARED), chunk_rows=80)
    kinds = []
    for seed in range(2):
        df = mixed_damage(seed)
        path = write(df, tmp_path / f"b{seed}.parquet")
        assert pq.ParquetFile(path).metadata.num_row_groups > 1
        whole = validator.gx.outcomes(pq.read_table(path).to_pandas())
        chunked = validator.outcomes(path)
        assert any(f is not None and f.unexpected_count for f in whole)
        for raw, gx, ch in zip(COMPARED, whole, chunked, strict=True):
            assert (gx is None) == (ch is None), raw
            if gx is not None and ch is not None:
                assert (gx.unexpected_count, gx.examples) == (ch.unexpected_count, ch.examples), raw
                assert gx.unexpected_percent == pytest.approx(ch.unexpected_percent), raw
                assert (gx.error is None) == (ch.error is None), raw
        with validator._evaluated(path, str(path)) as run:
            kinds = [type(c) for c in run.checks]
    # The text rules on a string column are vectorised; with a row condition GX runs them.
    assert kinds[: len(CHECKS)] == [_Rows] * len(CHECKS)
    assert kinds[len(CHECKS) : 2 * len(CHECKS)] == [_GxRows] * len(CHECKS)


def test_counts_add_up_over_files(tmp_path):
    """validate_paths: each file's count is its own (damage in file 2 only shows there)."""
    paths = [write(tickets(seed=s), tmp_path / f"{s}.parquet") for s in range(3)]
    write(damaged(tickets(seed=1), [0, 1, 2, 3, 4], "bill \ufffd?"), paths[1])
    report = validate_paths(suite_of(*CHECKS.values()), [str(p) for p in paths], chunk_rows=50)
    assert [b.success for b in report.batches] == [True, False, True]
    (failure,) = report.batches[1].failures
    assert failure.kwargs["regex"] == ENCODING_REGEX
    assert failure.unexpected_count == 5
    assert "5 of 400 non-null values (1.25%) contain a U+FFFD" in report.summary()


def test_an_invalid_regex_is_an_error_both_ways(tmp_path):
    """A regex the engine refuses is reported as an error by both validators, not as a crash."""
    bad = {
        "type": "expect_column_values_to_not_match_regex",
        "kwargs": {"column": "question", "regex": "[a-"},
    }
    for result in both(tmp_path, suite_of(bad), tickets()):
        (failure,) = result.failures
        assert failure.error and "could not be evaluated" in failure.describe()


def test_long_values_are_cut_in_every_message():
    """A long example reads as its first characters and its length, in any failure's message."""
    failure = Failure(
        "expect_column_values_to_be_in_set",
        {"column": "question", "value_set": ["a"]},
        unexpected_count=1,
        unexpected_percent=50.0,
        examples=[LONG, "b"],
    )
    text = failure.describe()
    assert text.endswith(f"1 unexpected values (50.00%), e.g. [{LONG[:60]!r}… (2,500 chars), 'b']")
    assert shown("short") == "'short'"
    assert shown(None) == "None"


# --- suggestion -------------------------------------------------------------------------------------


def text_spec(listed_as: str):
    """A binary spec over the ticket columns with ``question`` listed as ``listed_as``."""
    raw = get_spec("churn").model_dump(by_alias=True)
    raw["name"] = "tickets"
    raw["data"].update(key_column="ticket_id", time_column="created_at", target="escalated", labels=None)
    features = {"numeric": ["tenure_days", "prior_tickets_30d"], "categorical": ["channel", "plan"]}
    features.setdefault(listed_as, []).append("question")
    raw["features"] = {**raw["features"], **features}
    raw["gate"]["slices"]["columns"] = ["channel"]
    return parse_spec(raw, Path("tickets.yaml"))


def frames_for_suggest() -> list[tuple[str, pd.DataFrame]]:
    out = []
    for seed in range(2):
        df = tickets(seed=seed).assign(escalated=lambda d: (d["prior_tickets_30d"] > 2).astype("int64"))
        df.loc[[10, 11], "question"] = "   "  # 0.5 % blank in this batch
        out.append((f"/lake/tickets/2026-03-0{seed + 1}.parquet", df))
    return out


LISTED = ["categorical"] + (["text"] if "text" in FeaturesSpec.model_fields else [])


@pytest.mark.parametrize("listed_as", LISTED)
def test_suggested_suite_has_text_checks_for_a_text_column(listed_as):
    """A free-text column gets lengths (the data's, widened by the margin rule), a blank share and
    the encoding check, and no value set; the categorical columns keep theirs; the suggestion
    accepts the batches it came from."""
    spec = text_spec(listed_as)
    batches = frames_for_suggest()
    profile = sg.profile_batches(spec, batches)
    suite = sg.suggest_suite(spec, profile)
    on = {}
    for exp in suite["expectations"]:
        on.setdefault(exp["kwargs"].get("column"), []).append(exp)
    question = {(e["type"], e["kwargs"].get("regex")): e for e in on["question"]}
    assert "expect_column_values_to_be_in_set" not in {t for t, _ in question}
    lengths = question["expect_column_value_lengths_to_be_between", None]
    seen = [
        min(len(q) for _, df in batches for q in df["question"]),
        max(len(q) for _, df in batches for q in df["question"]),
    ]
    assert lengths["meta"]["observed"] == seen == [3, 2000]
    assert (lengths["kwargs"]["min_value"], lengths["kwargs"]["max_value"]) == sg.numeric_bounds(
        3, 2000, True, sg.MARGIN
    )
    blank = question["expect_column_values_to_not_match_regex", BLANK_REGEX]
    assert blank["kwargs"]["mostly"] == 0.97  # 1 - (2 x 0.5 % + 2 points)
    assert blank["meta"]["observed"] == {"worst_batch_blank_rate": 0.005}
    encoding = question["expect_column_values_to_not_match_regex", ENCODING_REGEX]
    assert "mostly" not in encoding["kwargs"]
    assert ("expect_column_values_to_not_be_null", None) in question
    assert ("expect_column_values_to_be_of_type", None) in question
    assert [e["kwargs"]["value_set"] for e in on["channel"] if "value_set" in e["kwargs"]] == [
        sorted(CHANNELS)
    ]
    assert sg.data_warnings(spec, profile) == []
    assert validate_batches(suite, batches).success


def test_damaged_text_in_the_data_is_a_warning():
    """The suggestion refuses text with replacement characters: the data itself is named."""
    spec = text_spec("categorical")
    batches = frames_for_suggest()
    batches[1][1].loc[[3, 4], "question"] = "\ufffd\ufffd"
    warnings = sg.data_warnings(spec, sg.profile_batches(spec, batches))
    assert warnings == [
        "'question' has 2 value(s) with a U+FFFD replacement character or a control character "
        "(text decoded with the wrong encoding)"
    ]


# --- the shipped support_intent contract -----------------------------------------------------------


@pytest.fixture(scope="module")
def support_suite() -> dict:
    return load_suite_dict(settings.contracts_dir() / "support_intent.json")


def test_support_intent_contract_covers_every_column(support_suite):
    """Every column exists; the rules the schema asks for are there."""
    rules = {(e["type"], e["kwargs"].get("column")) for e in support_suite["expectations"]}
    assert {c for t, c in rules if t == "expect_column_to_exist"} == set(tickets(10).columns)
    assert support_suite["meta"]["owner"] and support_suite["meta"]["notes"]
    for rule in [
        ("expect_column_values_to_be_unique", "ticket_id"),
        ("expect_column_values_to_not_be_null", "ticket_id"),
        ("expect_column_values_to_not_be_null", "created_at"),
        ("expect_column_values_to_not_be_null", "intent"),
        ("expect_column_values_to_not_be_null", "question"),
        ("expect_column_value_lengths_to_be_between", "question"),
        ("expect_column_values_to_not_match_regex", "question"),
        *(("expect_column_values_to_be_in_set", c) for c in ("channel", "plan", "intent")),
        *(("expect_column_values_to_be_between", c) for c in ("tenure_days", "prior_tickets_30d")),
        *(("expect_column_values_to_not_be_null", c) for c in ("tenure_days", "prior_tickets_30d")),
    ]:
        assert rule in rules, rule
    assert ChunkedValidator(support_suite).name == "support_intent"


def test_support_intent_contract_accepts_a_clean_batch(tmp_path, support_suite):
    for result in both(tmp_path, support_suite, tickets()):
        assert result.success, [f.describe() for f in result.failures]
        assert result.evaluated == len(support_suite["expectations"])


def test_support_intent_contract_refuses_five_percent_damaged_questions(tmp_path, support_suite):
    """20 of 400 questions damaged (empty, over 2,000 characters, mojibake): the batch fails on
    the question's checks only, each with its count."""
    df = tickets()
    rows = np.random.default_rng(7).choice(ROWS, 20, replace=False).tolist()
    for j, i in enumerate(rows):
        df.loc[i, "question"] = [
            "",
            df.loc[i, "question"] + " log: " + "ERR timeout; " * 200,
            "caf\ufffd\x00?",
        ][j % 3]
    for result in both(tmp_path, support_suite, df):
        assert not result.success
        found = {(f.expectation, f.kwargs.get("regex")): f for f in result.failures}
        assert {f.kwargs["column"] for f in result.failures} == {"question"}
        assert found["expect_column_value_lengths_to_be_between", None].unexpected_count == 7 + 7
        assert found["expect_column_values_to_not_match_regex", BLANK_REGEX].unexpected_count == 7
        assert found["expect_column_values_to_not_match_regex", ENCODING_REGEX].unexpected_count == 6
        assert len(result.failures) == 3
        assert all("fix the producer" in f.describe() for f in result.failures)
