"""Text drift: the tokeniser against scikit-learn's, the JS distances against scipy, the honest
OOV baseline by hand, no alarm on fresh same-distribution samples of 300 to 20,000 texts, an
alarm on a new product name, a new topic, longer questions and more empty ones, the too-few-rows
path, nulls, JSON size and the errors a caller sees.

Texts come from a small seeded generator of customer-service questions written here, so the
tests depend on nothing else in the tree."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon

from mlcycle.core.errors import DriftError
from mlcycle.monitor import text as mt

# --- a seeded question generator ---------------------------------------------------------------

PRODUCTS = ["router", "modem", "smartwatch", "tablet", "headphones", "camera", "speaker", "charger"]
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august"]
TOPICS: dict[str, tuple[float, list[str]]] = {
    "billing": (
        0.35,
        [
            "Why was I charged twice for my {product} subscription in {month}?",
            "Can I get a refund for the {amount} charge on my last invoice?",
            "How do I update the credit card on my account?",
            "My bill for {month} is higher than usual, why?",
            "Where can I download the invoice for order {order}?",
        ],
    ),
    "delivery": (
        0.30,
        [
            "Where is my order {order}? It was supposed to arrive in {month}.",
            "My {product} was delivered to the wrong address.",
            "Can I change the delivery address for order {order}?",
            "The tracking number for my {product} does not work.",
            "How long does express shipping take?",
        ],
    ),
    "returns": (
        0.15,
        [
            "How do I return a faulty {product}?",
            "I want to exchange my {product} for a different colour.",
            "Is there a return label for order {order}?",
        ],
    ),
    "technical": (
        0.20,
        [
            "My {product} will not turn on after the update.",
            "How do I reset my {product} to factory settings?",
            "The {product} keeps disconnecting from wifi, what can I do?",
            "Is the {product} compatible with my phone?",
        ],
    ),
}
TEMPLATES = [t for _, pool in TOPICS.values() for t in pool]
WEIGHTS = np.array([w / len(pool) for w, pool in TOPICS.values() for _ in pool])
WITH_PRODUCT = [i for i, t in enumerate(TEMPLATES) if "{product}" in t]
OPENERS = ["", "", "", "Hi, ", "Hello, ", "Please help: "]
CLOSERS = ["", "", "", " Thanks.", " Thank you!", " Regards"]
NEW_PRODUCT = "zephyrix"
CRYPTO = [
    "Can I pay with bitcoin or another cryptocurrency?",
    "My crypto wallet withdrawal has been pending for days.",
    "Do you accept ethereum for order {order}?",
]
REF_ROWS = 30_000


def _one_question_each(
    rng: np.random.Generator, rows: int, new_product: float, new_topic: float
) -> list[str]:
    template = rng.choice(len(TEMPLATES), size=rows, p=WEIGHTS / WEIGHTS.sum())
    product = np.minimum(rng.geometric(0.35, rows) - 1, len(PRODUCTS) - 1)
    names = np.asarray(PRODUCTS, dtype=object)[product]
    mention = rng.random(rows) < new_product  # these rows ask about the new product
    template[mention] = rng.choice(WITH_PRODUCT, int(mention.sum()))
    names[mention] = NEW_PRODUCT
    topical = rng.random(rows) < new_topic
    crypto = rng.integers(0, len(CRYPTO), rows)
    month = rng.integers(0, len(MONTHS), rows)
    order = rng.integers(100_000, 1_000_000, rows)
    dollars, cents = rng.integers(5, 500, rows), rng.integers(0, 100, rows)
    opener, closer = rng.integers(0, len(OPENERS), rows), rng.integers(0, len(CLOSERS), rows)
    return [
        OPENERS[opener[i]]
        + (CRYPTO[crypto[i]] if topical[i] else TEMPLATES[template[i]]).format(
            product=names[i],
            month=MONTHS[month[i]],
            order=f"#{order[i]}",
            amount=f"${dollars[i]}.{cents[i]:02d}",
        )
        + CLOSERS[closer[i]]
        for i in range(rows)
    ]


def questions(
    rows: int,
    seed: int,
    *,
    new_product: float = 0.0,
    new_topic: float = 0.0,
    empty: float = 0.02,
    repeat: int = 1,
) -> pd.Series:
    """``rows`` questions; ``new_product`` of them about a product the reference never saw,
    ``new_topic`` of them about paying in crypto, ``empty`` of them empty or blank, each made
    of ``repeat`` whole questions (``repeat=3``: three times longer, same words)."""
    rng = np.random.default_rng(seed)
    parts = [_one_question_each(rng, rows, new_product, new_topic) for _ in range(repeat)]
    out = [" ".join(p) for p in zip(*parts, strict=True)]
    blank = np.flatnonzero(rng.random(rows) < empty)
    for i in blank:
        out[i] = "" if i % 2 else "   "
    return pd.Series(out, name="question")


@pytest.fixture(scope="module")
def profile() -> dict[str, Any]:
    return mt.text_profile(questions(REF_ROWS, seed=1))


# --- tokens and statistics against references --------------------------------------------------


def test_tokens_are_scikit_learns() -> None:
    from sklearn.feature_extraction.text import CountVectorizer

    analyzer = CountVectorizer().build_analyzer()
    for text in [
        "Why was I charged TWICE for order #48213?",
        "Café au lait, s'il vous plaît: my_account_2 isn't working!",
        "Größe 42 — über 3 Tage, 東京 order a1 b 7",
        "",
        "   ",
    ]:
        assert mt.tokens(text) == analyzer(text)
    assert mt.TOKEN_RE.pattern == CountVectorizer().token_pattern


def test_js_distances_match_scipy(profile: dict[str, Any]) -> None:
    cur = questions(2_000, seed=7, new_product=0.3)
    result = mt.text_drift(profile, cur)

    counts = Counter(t for text in cur if text.strip() for t in mt.tokens(text))
    top = profile["top_terms"]
    q = [counts.get(t, 0) for t in top]
    q.append(sum(counts.values()) - sum(q))
    p = [*top.values(), profile["other_share"]]
    assert result["vocabulary_js"]["value"] == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)

    lengths = np.array([len(t) for t in cur if t.strip()])
    edges = profile["length"]["edges"]
    shares = [
        ((lengths > lo) & (lengths <= hi)).sum()
        for lo, hi in zip([-np.inf, *edges], [*edges, np.inf], strict=True)
    ]
    expected = jensenshannon(profile["length"]["shares"], shares, base=2)
    assert result["length_js"]["value"] == pytest.approx(expected, abs=1e-12)

    oov = sum(c for t, c in counts.items() if t not in set(profile["vocabulary"]))
    assert result["oov_rate"]["value"] == pytest.approx(oov / sum(counts.values()))
    assert result["oov_increase"]["value"] == pytest.approx(
        oov / sum(counts.values()) - profile["oov"]["baseline"]
    )


def test_oov_baseline_is_first_half_vocabulary_on_second_half() -> None:
    ref = questions(1_000, seed=3)
    prof = mt.text_profile(ref, top_terms=20, vocabulary=200)
    texts = list(ref)
    first = Counter(t for x in texts[:500] for t in mt.tokens(x))
    assert len(first) > 200  # the cap applies
    vocab = {t for t, _ in sorted(first.items(), key=lambda tc: (-tc[1], tc[0]))[:200]}
    second = [t for x in texts[500:] for t in mt.tokens(x)]
    assert prof["oov"]["baseline"] == pytest.approx(sum(t not in vocab for t in second) / len(second))
    assert set(prof["vocabulary"]) == vocab  # the vocabulary checked against is the one measured
    # Order numbers are new in every question that has one: the baseline is far from the 0
    # that measuring the reference against its own vocabulary would give.
    assert prof["oov"]["baseline"] > 0.01
    # The top terms, for the JS, come from all rows.
    everything = Counter(t for x in texts for t in mt.tokens(x))
    ranked = sorted(everything.items(), key=lambda tc: (-tc[1], tc[0]))[:20]
    total = sum(everything.values())
    assert prof["top_terms"] == pytest.approx({t: c / total for t, c in ranked})


# --- verdicts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [300, 2_000, 20_000])
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_same_distribution_is_not_flagged(profile: dict[str, Any], rows: int, seed: int) -> None:
    result = mt.text_drift(profile, questions(rows, seed=seed))
    assert result["status"] == "checked"
    assert result["drifted"] is False, result["summary"]
    assert result["drifted_statistics"] == []
    for stat in ("vocabulary_js", "oov_increase", "length_js", "empty_share"):
        assert result[stat]["drifted"] is False
        assert result[stat]["threshold"] == max(result[stat]["floor"], result[stat]["allowance"])


def test_thresholds_follow_sample_size(profile: dict[str, Any]) -> None:
    def threshold(rows: int, stat: str) -> float:
        return float(mt.text_drift(profile, questions(rows, seed=5))[stat]["threshold"])

    # Sampling noise dominates small windows, the floor large ones.
    assert threshold(100, "vocabulary_js") > threshold(300, "vocabulary_js") >= mt.JS_FLOOR
    assert threshold(20_000, "vocabulary_js") == mt.JS_FLOOR
    assert threshold(100, "length_js") > threshold(2_000, "length_js") == mt.JS_FLOOR
    assert threshold(20_000, "oov_increase") == mt.OOV_FLOOR


@pytest.mark.parametrize("rows", [300, 2_000])
def test_new_product_name_is_flagged_and_named(profile: dict[str, Any], rows: int) -> None:
    result = mt.text_drift(profile, questions(rows, seed=21, new_product=0.3))
    assert result["drifted"] is True
    assert {"vocabulary_js", "oov_increase"} & set(result["drifted_statistics"])
    assert result["oov_rate"]["drifted"] is result["oov_increase"]["drifted"]
    first = result["top_new_terms"][0]
    assert first["term"] == NEW_PRODUCT
    assert first["texts"] == pytest.approx(0.3 * rows, rel=0.2)
    assert NEW_PRODUCT in result["summary"]


def test_new_topic_is_flagged(profile: dict[str, Any]) -> None:
    result = mt.text_drift(profile, questions(2_000, seed=22, new_topic=0.3))
    assert result["vocabulary_js"]["drifted"] is True
    assert result["oov_increase"]["drifted"] is True
    # Each crypto question is asked by ~200 texts: the listed terms are theirs, not noise.
    named = [t["term"] for t in result["top_new_terms"]]
    assert len(named) == mt.MAX_NEW_TERMS
    assert set(named) <= {w for q in CRYPTO for w in mt.tokens(q)}
    assert "bitcoin" in named


def test_three_times_longer_questions_flag_length_only(profile: dict[str, Any]) -> None:
    result = mt.text_drift(profile, questions(2_000, seed=23, repeat=3))
    assert result["drifted_statistics"] == ["length_js"]
    assert result["length_js"]["value"] > 0.5
    ratio = result["length_js"]["median_chars"] / result["length_js"]["reference_median_chars"]
    assert ratio == pytest.approx(3.0, rel=0.15)


def test_empty_share_is_reported_and_judged(profile: dict[str, Any]) -> None:
    assert profile["empty_share"] == pytest.approx(0.02, abs=0.005)  # "" and "   " both count
    result = mt.text_drift(profile, questions(2_000, seed=24, empty=0.2))
    share = result["empty_share"]
    assert share["value"] == pytest.approx(0.2, abs=0.03)
    assert share["reference"] == profile["empty_share"]
    assert share["change"] == pytest.approx(share["value"] - share["reference"])
    assert result["drifted_statistics"] == ["empty_share"]
    assert f"empty_share {share['change']:+.3f}" in result["summary"]
    assert mt.text_drift(profile, questions(2_000, seed=24, empty=0.0))["empty_share"]["drifted"] is False


def test_too_few_rows_gives_no_numbers(profile: dict[str, Any]) -> None:
    result = mt.text_drift(profile, questions(99, seed=30))
    assert result["status"] == "too_few_rows"
    assert result["drifted"] is False
    assert result["texts"] == 99 and result["min_rows"] == 100
    assert not {"vocabulary_js", "oov_rate", "oov_increase", "length_js", "empty_share"} & set(result)
    # Nulls do not count towards min_rows.
    padded = pd.concat([questions(80, seed=31), pd.Series([None] * 500)], ignore_index=True)
    assert mt.text_drift(profile, padded)["status"] == "too_few_rows"
    assert mt.text_drift(profile, questions(99, seed=30), min_rows=50)["status"] == "checked"


def test_nulls_are_ignored(profile: dict[str, Any]) -> None:
    cur = questions(2_000, seed=40, new_product=0.3)
    # 2,000 nulls of three kinds scattered among the texts, which keep their order.
    at = np.sort(np.random.default_rng(41).choice(4_000, 2_000, replace=False))
    mixed = np.array([None, np.nan, pd.NA] * 1_334, dtype=object)[:4_000]
    mixed[at] = cur.to_numpy()
    with_nulls = pd.Series(mixed, dtype=object)
    plain, nulled = mt.text_drift(profile, cur), mt.text_drift(profile, with_nulls)
    assert (nulled["rows"], nulled["nulls"], nulled["texts"]) == (4_000, 2_000, 2_000)
    for stat in ("vocabulary_js", "oov_increase", "length_js", "empty_share"):
        assert nulled[stat] == plain[stat]
    assert nulled["top_new_terms"] == plain["top_new_terms"]
    # The string dtypes give the same numbers as object columns.
    assert mt.text_drift(profile, cur.astype("string"))["vocabulary_js"] == plain["vocabulary_js"]
    ref = pd.concat([questions(1_000, seed=3), pd.Series([None] * 300)], ignore_index=True)
    prof = mt.text_profile(ref)
    assert (prof["rows"], prof["nulls"], prof["texts"]) == (1_300, 300, 1_000)


def test_profile_is_json_small_and_reproducible() -> None:
    # Over 11,000 distinct 14-letter words, so the 5,000-term vocabulary is full of long terms.
    rng = np.random.default_rng(50)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = ["".join(w) for w in rng.choice(letters, size=(12_000, 14))]
    picks = rng.integers(0, len(words), size=(5_000, 8))
    ref = pd.Series([" ".join(words[j] for j in row) for row in picks])
    prof = mt.text_profile(ref, vocabulary=5_000)
    encoded = json.dumps(prof, allow_nan=False)
    assert len(prof["vocabulary"]) == 5_000
    assert len(encoded.encode()) < 200_000
    assert json.loads(encoded) == prof
    assert mt.text_profile(ref, vocabulary=5_000) == prof  # the resampling is seeded
    # A profile read back from JSON checks exactly as the one in memory.
    cur = pd.Series(ref.sample(500, random_state=1).tolist())
    assert mt.text_drift(json.loads(encoded), cur) == mt.text_drift(prof, cur)


def test_import_does_not_load_heavy_libraries() -> None:
    """Airflow parses DAG files that import the library: numpy, pandas, scipy and Airflow stay out."""
    code = (
        "import sys, mlcycle.monitor.text; "
        "print(sorted(m for m in ('numpy', 'pandas', 'scipy', 'pyarrow', 'airflow') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        pd.Series(np.arange(500), name="question"),
        pd.Series(np.linspace(0.0, 1.0, 500)),
        pd.Series(["a question about billing"] * 499 + [42], dtype=object),
        pd.Series([b"bytes are not text"] * 500),
    ],
)
def test_non_strings_are_a_clear_value_error(profile: dict[str, Any], values: pd.Series) -> None:
    with pytest.raises(ValueError, match=r"not strings .*e\.g\..*astype\('string'\)"):
        mt.text_profile(values)
    with pytest.raises(ValueError, match=r"current text column .*not strings"):
        mt.text_drift(profile, values)


def test_bad_arguments_and_profiles(profile: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="at least 200"):
        mt.text_profile(questions(150, seed=60))
    with pytest.raises(ValueError, match="words in both halves"):
        mt.text_profile(pd.Series(["", "a"] * 300))
    with pytest.raises(ValueError, match="top_terms must be positive"):
        mt.text_profile(questions(300, seed=60), top_terms=0)
    with pytest.raises(ValueError, match=r"vocabulary .* at least top_terms"):
        mt.text_profile(questions(300, seed=60), top_terms=50, vocabulary=10)
    with pytest.raises(ValueError, match="min_rows must be positive"):
        mt.text_drift(profile, questions(300, seed=60), min_rows=0)
    with pytest.raises(DriftError, match="not a text profile"):
        mt.text_drift({"kind": "numeric"}, questions(300, seed=60))
    with pytest.raises(DriftError, match="version"):
        mt.text_drift({**profile, "version": 99}, questions(300, seed=60))
    with pytest.raises(DriftError, match="lacks"):
        mt.text_drift({k: v for k, v in profile.items() if k != "vocabulary"}, questions(300, seed=60))
