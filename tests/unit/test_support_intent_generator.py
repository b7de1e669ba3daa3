"""The support_intent generator: seeded customer-service questions routed to intents, with drift,
a new intent and broken text on demand."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from mlcycle.data.generators import (
    DRIFT_PRODUCT,
    GENERATORS,
    NEW_INTENT,
    SUPPORT_INTENTS,
    SUPPORT_SHARES,
    generate_batch,
    support_intent_batch,
)

DAY = dt.date(2026, 12, 3)
NAME = "support_intent"
COLUMNS = {
    "ticket_id": "str",
    "created_at": "datetime64[ms]",
    "question": "str",
    "channel": "str",
    "plan": "str",
    "tenure_days": "int64",
    "prior_tickets_30d": "int64",
    "intent": "str",
}


def test_registered_with_key_target_and_numeric_column():
    """GENERATORS names the function, the key, the target and the numeric column corrupt breaks."""
    assert GENERATORS[NAME] == (support_intent_batch, "ticket_id", "intent", "tenure_days")


def test_same_day_and_seed_is_identical():
    """The same (day, seed, options) gives the same frame, text included."""
    pd.testing.assert_frame_equal(generate_batch(NAME, DAY, 500), generate_batch(NAME, DAY, 500))
    options = {"seed": 4, "drift": 0.3, "new_intent": 0.2, "corrupt": True}
    pd.testing.assert_frame_equal(
        generate_batch(NAME, DAY, 500, **options), generate_batch(NAME, DAY, 500, **options)
    )


@pytest.mark.parametrize(("other_day", "other_seed"), [(DAY + dt.timedelta(days=1), 0), (DAY, 1)])
def test_other_day_or_seed_differs(other_day, other_seed):
    """Another day or seed draws other questions and labels; another day has other keys."""
    a = generate_batch(NAME, DAY, 500)
    b = generate_batch(NAME, other_day, 500, seed=other_seed)
    assert (a["question"] != b["question"]).mean() > 0.9
    assert not np.array_equal(a["intent"].to_numpy(), b["intent"].to_numpy())
    assert not np.array_equal(a["tenure_days"].to_numpy(), b["tenure_days"].to_numpy())
    if other_day != DAY:
        assert set(a["ticket_id"]).isdisjoint(b["ticket_id"])


def test_schema_and_dtypes():
    """Exactly the agreed columns and dtypes; unique day-stamped keys; values in their domains."""
    df = generate_batch(NAME, DAY, 2000)
    assert list(df.columns) == list(COLUMNS)
    for column, dtype in COLUMNS.items():
        if dtype == "str":
            assert pd.api.types.is_string_dtype(df[column]), column
            assert df[column].map(type).eq(str).all(), column
        else:
            assert df[column].dtype == np.dtype(dtype), column
    assert df.notna().all().all()
    assert df["ticket_id"].is_unique
    assert df["ticket_id"].str.fullmatch(r"T20261203-\d{6}").all()
    assert df.loc[0, "ticket_id"] == "T20261203-000000"
    start = pd.Timestamp(DAY)
    assert ((df["created_at"] >= start) & (df["created_at"] < start + pd.Timedelta(days=1))).all()
    assert df["created_at"].dt.hour.nunique() == 24
    assert set(df["channel"]) == {"email", "chat", "phone", "app", "social"}
    assert set(df["plan"]) == {"basic", "plus", "premium", "business"}
    assert df["tenure_days"].between(0, 3650).all()
    assert df["prior_tickets_30d"].between(0, 20).all()
    assert set(df["intent"]) == set(SUPPORT_INTENTS)
    assert (df["question"].str.len() > 0).all()


def test_intent_shares_are_near_their_targets():
    """All six intents appear in 2,000 rows, each within a few points of its share."""
    shares = generate_batch(NAME, DAY, 2000)["intent"].value_counts(normalize=True)
    assert set(shares.index) == set(SUPPORT_INTENTS)
    for intent, target in zip(SUPPORT_INTENTS, SUPPORT_SHARES, strict=True):
        assert shares[intent] == pytest.approx(target, abs=0.035), intent
    assert sum(SUPPORT_SHARES) == pytest.approx(1.0)


def test_channel_and_history_carry_a_little_signal():
    """Billing comes by email more than technical does; cancellations follow more prior tickets."""
    df = generate_batch(NAME, DAY, 5000)
    email = df.groupby("intent")["channel"].apply(lambda c: (c == "email").mean())
    assert email["billing"] - email["technical"] > 0.1
    prior = df.groupby("intent")["prior_tickets_30d"].mean()
    assert prior["cancellation"] - prior["account"] > 0.3


def test_questions_are_varied_and_noisy():
    """Most questions are distinct; lengths range from a few words to long messages; casing varies."""
    q = generate_batch(NAME, DAY, 2000)["question"]
    assert q.nunique() / len(q) >= 0.6
    words = q.str.split().str.len()
    assert words.min() <= 4
    assert words.max() >= 40
    assert 12 <= words.median() <= 30
    lower = (q == q.str.lower()).mean()
    assert 0.1 < lower < 0.5
    assert (q == q.str.upper()).any()


def test_drift_brings_a_new_product_name_only_when_asked():
    """At drift 0 the new product never appears; at drift 0.5 about half the questions name it,
    in chat-style wording, while the intents keep their shares."""
    for day, seed in ((DAY, 0), (DAY - dt.timedelta(days=3), 2)):
        base = generate_batch(NAME, day, 2000, seed=seed)
        assert not base["question"].str.contains("nimbus", case=False).any()
    base = generate_batch(NAME, DAY, 2000)
    drifted = generate_batch(NAME, DAY, 2000, drift=0.5)
    named = drifted["question"].str.contains(DRIFT_PRODUCT.split()[0], case=False)
    assert 0.4 < named.mean() < 0.6
    chat = r"\b(?:pls|u|ur|thx|acct|pw|sub)\b"
    assert drifted.loc[named, "question"].str.contains(chat).mean() > 0.3
    assert base["question"].str.contains(chat).mean() < 0.05
    shares = drifted["intent"].value_counts(normalize=True)
    for intent, target in zip(SUPPORT_INTENTS, SUPPORT_SHARES, strict=True):
        assert shares[intent] == pytest.approx(target, abs=0.035), intent


@pytest.mark.parametrize("share", [0.0, 0.2, 0.5])
def test_new_intent_adds_warranty_questions(share):
    """new_intent turns that share of rows into warranty questions, worded as such."""
    df = generate_batch(NAME, DAY, 2000, new_intent=share)
    warranty = df["intent"] == NEW_INTENT
    assert warranty.mean() == pytest.approx(share, abs=0.03)
    if share:
        worded = df.loc[warranty, "question"].str.contains("warrant|guarantee|rma", case=False)
        assert worded.mean() > 0.8
        assert set(df["intent"]) == {*SUPPORT_INTENTS, NEW_INTENT}


def test_corrupt_breaks_the_text_too():
    """corrupt leaves empty, over-long and mojibake questions (U+FFFD, control characters), besides
    null keys, negative tenure and "???" in a real categorical column (never in the question)."""
    rows = 2000
    clean = generate_batch(NAME, DAY, rows)
    bad = generate_batch(NAME, DAY, rows, corrupt=True)
    n = rows // 20
    q = bad["question"]
    assert (q == "").sum() == pytest.approx(n / 3, abs=1)
    assert (q.str.len() > 2000).sum() == pytest.approx(n / 3, abs=1)
    mojibake = q.str.contains("\ufffd")
    assert mojibake.sum() == pytest.approx(n / 3, abs=1)
    assert q[mojibake].str.contains("[\x00-\x08\x0b-\x1f]", regex=True).all()
    assert (q != clean["question"]).sum() == n
    assert not clean["question"].str.contains("\ufffd").any()
    assert (clean["question"].str.len() < 1000).all()
    marked = [c for c in bad.columns if (bad[c].astype("object") == "???").any()]
    assert marked == ["channel"]
    assert bad["ticket_id"].isna().sum() == n // 2
    assert (bad["tenure_days"] < -1000).sum() == n
    assert pd.api.types.is_string_dtype(bad["question"])


def test_shuffle_labels_keeps_the_intent_counts():
    """shuffle_labels permutes the intents: same counts, other order, questions untouched."""
    clean = generate_batch(NAME, DAY, 1000)
    shuffled = generate_batch(NAME, DAY, 1000, shuffle_labels=True)
    assert sorted(shuffled["intent"]) == sorted(clean["intent"])
    assert (shuffled["intent"] != clean["intent"]).mean() > 0.5
    pd.testing.assert_series_equal(shuffled["question"], clean["question"])


@pytest.mark.parametrize(
    ("generator", "options", "message"),
    [
        (NAME, {"new_intent": 1.5}, "new_intent must be between 0 and 1, got 1.5"),
        (NAME, {"new_intent": -0.1}, "new_intent must be between 0 and 1, got -0.1"),
        (NAME, {"new_intent": float("nan")}, "new_intent must be between 0 and 1, got nan"),
        (NAME, {"drift": 2.0}, "drift must be between 0 and 1, got 2.0"),
        (
            NAME,
            {"degrade": 0.5},
            "degrade is a concept shift of the churn generator; 'support_intent' has none",
        ),
        (
            "churn",
            {"new_intent": 0.3},
            "new_intent adds an intent to the support_intent generator; 'churn' has none",
        ),
        ("demand", {"new_intent": 0.3}, "new_intent .* 'demand' has none"),
    ],
)
def test_bad_options(generator, options, message):
    """Out-of-range or misplaced options are ValueErrors naming the option."""
    with pytest.raises(ValueError, match=message):
        generate_batch(generator, DAY, 10, **options)


def test_cli_passes_new_intent_through():
    """``mlcycle generate --new-intent`` reaches generate_batch's new_intent."""
    from mlcycle.cli import build_parser

    assert build_parser().parse_args(["generate", "x", "--new-intent", "0.3"]).new_intent == 0.3
    assert build_parser().parse_args(["generate", "x"]).new_intent == 0.0


def test_text_model_learns_but_does_not_memorise():
    """TF-IDF + logistic regression trained on four days is clearly right, but not always, on a fifth."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    train = pd.concat([generate_batch(NAME, DAY - dt.timedelta(days=i), 2000) for i in range(1, 5)])
    test = generate_batch(NAME, DAY, 2000)
    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(max_iter=1000)
    )
    model.fit(train["question"], train["intent"])
    accuracy = (model.predict(test["question"]) == test["intent"]).mean()
    assert 0.75 < accuracy < 0.97, accuracy
