"""Drift of a free-text feature (customer-service questions): a small reference profile built
once from the training texts, and a check of a current sample against it.

::

    profile = text_profile(train["question"])               # JSON, stored with the version
    report = text_drift(profile, window["question"])
    report["drifted"], report["top_new_terms"]              # e.g. a product launched last week

Four statistics, each with its own threshold and verdict:

* ``vocabulary_js``: Jensen-Shannon distance (base 2) between the reference's and the current
  shares of all tokens over the reference's ``top_terms`` most frequent terms plus one
  ``__other__`` bucket (every other token, new words included);
* ``oov_rate``: the share of current tokens outside the reference vocabulary, judged by
  ``oov_increase``, the rise over the reference's own out-of-vocabulary rate. The vocabulary
  is the ``vocabulary`` most frequent terms of the first half of the reference rows (by
  position) and the baseline is its OOV rate on the second half, so the baseline is exactly
  what a sample the vocabulary never saw shows (order numbers, amounts, names, typos). A
  vocabulary from all rows would be a little larger, but nothing would be left to measure its
  baseline on: a same-distribution sample shows less OOV against it than the half-split
  baseline, and the bias hides real rises (measured: with a 2,000-row reference, a fresh
  sample read about one point below it, so a new product named in 30 % of the questions
  read +2.0 points instead of about +3);
* ``length_js``: JS distance over the reference's length bins (characters, quantile edges)
  of the non-empty texts;
* ``empty_share``: the share of empty or whitespace-only texts, judged by its absolute change.

Nulls are left out of everything (they are counted and reported); empty texts count for the
empty share only, since they have no tokens and would only blur the length distribution.

The threshold rule, so that neither a 300-row window of the same questions is flagged nor a
real shift missed: every statistic drifts when it exceeds ``max(floor, allowance(n))``, where
``n`` is the current sample's non-null rows and ``allowance(n)`` is what sampling alone makes
the statistic reach:

* at profile time the reference rows are resampled with replacement (30 to 200 draws at each
  of ``RESAMPLE_SIZES`` rows, seeded) and each statistic's mean and standard deviation are
  stored per size. Rows are resampled, not tokens, because the tokens of one question are not
  independent (they come together from one topic): a multinomial formula over tokens would
  ignore that and underestimate the spread;
* at check time the mean and spread are read at ``n``: both scale as ``1 / sqrt(n)`` (a JS
  distance under multinomial noise is a scaled chi over ``k - 1`` degrees of freedom, a rate's
  standard error is ``sqrt(p (1 - p) / n)``), so ``value * sqrt(size)`` is interpolated
  between the stored sizes (held constant beyond them) and divided by ``sqrt(n)``;
* a resample of the reference only varies around the reference, while a current sample and
  the reference are two independent samples: for small differences the squared JS distances
  (the divergences) add, so JS mean and spread are multiplied by ``sqrt(1 + n / N)`` for a
  reference of ``N`` rows; the OOV baseline's own spread (at the second half's ``N / 2``
  rows) is added in quadrature;
* ``allowance(n) = mean(n) + SPREAD_K * std(n)`` for the JS distances, ``SPREAD_K *
  std(n)`` for the OOV increase (its mean under resampling is the baseline itself), and
  ``SPREAD_K * sqrt(p (1 - p) (1/n + 1/N))`` for the empty share (rows are independent, so
  the two-proportion formula needs no resampling; ``p`` pooled).

The floors are effect sizes below which a change is not worth an alarm whatever the sample
size (``JS_FLOOR``, ``OOV_FLOOR``, ``EMPTY_FLOOR``). Under ``min_rows`` non-null rows no
statistic is computed at all: the result says ``too_few_rows`` and is never drifted.

Nothing here imports Airflow, and importing this module does not import numpy or pandas.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import re
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from mlcycle.core.errors import DriftError
from mlcycle.core.text import TOKEN_PATTERN
from mlcycle.monitor.statistics import jensen_shannon

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

TEXT_PROFILE_VERSION = 1
# The vectorizer's tokens (core.text.TOKEN_PATTERN), matched on the lower-cased text.
TOKEN_RE = re.compile(TOKEN_PATTERN)

LENGTH_BINS = 10  # quantile bins of the text length in characters (fewer when lengths tie)
TOKEN_QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)  # of tokens per text, reported
MIN_REFERENCE_ROWS = 200  # both halves of the OOV baseline get at least a check's min_rows
MAX_NEW_TERMS = 10  # new terms listed in a result

# Resampling at profile time: the sizes span the windows a check sees (beyond them the
# 1/sqrt(n) law extrapolates). Each size draws about RESAMPLE_ROWS rows in all, between
# RESAMPLE_MIN and RESAMPLE_MAX draws: small windows, where the allowance exceeds the floors,
# get the most draws, because the JS distance of 100 texts is skewed: 30 draws put its spread
# a third low and flagged 10 of 300 same-distribution windows of 100 texts, 200 draws none of
# 3,000 (measured). 200 draws pin a standard deviation to about ±5 %, 30 to about ±13 %.
RESAMPLE_SIZES = (100, 300, 1_000, 3_000, 10_000)
RESAMPLE_ROWS = 100_000
RESAMPLE_MIN, RESAMPLE_MAX = 30, 200
RESAMPLE_SEED = 0
# Standard deviations above the resampling mean before sampling error is ruled out. Four
# keeps the false alarms of four statistics per check rare with the spread itself estimated
# (measured on fresh same-distribution windows: 5 of 3,000 windows of 100 texts flagged, 4 of
# them on the empty share, whose count of a 2 % event in 100 rows is skewed; none of 1,500
# windows of 300 texts).
SPREAD_K = 4.0
JS_FLOOR = 0.1  # JS distance, base 2, as the categorical default of ``monitor.profile``
# Absolute rise of the token share outside the vocabulary. With questions of about ten tokens,
# 1.5 points is one new word in about one question in seven: a new product or topic, not
# noise. Two points left too thin a margin (measured: 30 % of questions naming a new product
# rose 2.3 to 2.5 points, since they displaced questions with order numbers, themselves new).
OOV_FLOOR = 0.015
# Absolute change of the empty share: an empty question is usually a capture fault (a form
# or an export dropping the text), worth an alarm sooner than the 10 % of a null rate.
EMPTY_FLOOR = 0.05


class TextColumnError(DriftError, ValueError):
    """A text column cannot be profiled or checked as given (not strings, too few texts, no
    words). A ValueError too, so callers validating input can catch it as one."""


# --- tokens ---------------------------------------------------------------------------------------


def tokens(text: str) -> list[str]:
    """The tokens of one text as every function here counts them: ``TOKEN_RE`` on the
    lower-cased text (as scikit-learn's CountVectorizer with its defaults)."""
    return TOKEN_RE.findall(text.lower())


def _texts(values: pd.Series, role: str) -> tuple[list[str], int]:
    """The non-null values of a text column as a list of str, and the column's row count.

    Raises TextColumnError when a non-null value is not a string: numbers silently turned
    into "12.5" would profile as words, and a column mix-up is likelier than numeric text."""
    import pandas as pd

    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    kept = series.dropna()
    kind = pd.api.types.infer_dtype(kept, skipna=True)
    if kind not in ("string", "empty"):
        example = next((v for v in kept if not isinstance(v, str)), None)
        name = f" {series.name!r}" if series.name is not None else ""
        raise TextColumnError(
            f"{role} text column{name} holds {series.dtype} values inferred as {kind!r}, not strings "
            f"(e.g. {example!r} of type {type(example).__name__}); pass the raw text column, or "
            "convert it with .astype('string') if these values really are text (missing values "
            "must stay missing, not become the word 'nan')"
        )
    return [str(v) for v in kept.tolist()], len(series)


def _tokenised(texts: list[str]) -> tuple[list[list[str]], np.ndarray]:
    """Each text's tokens, and the number of tokens per text."""
    import numpy as np

    findall = TOKEN_RE.findall
    per_text = [findall(t.lower()) for t in texts]
    return per_text, np.fromiter(map(len, per_text), dtype="int64", count=len(per_text))


def _ranked(freq: np.ndarray, alphabetical: np.ndarray) -> np.ndarray:
    """Indices of the terms with a positive count, most frequent first, ties alphabetically
    (``alphabetical`` is the argsort of the term names)."""
    import numpy as np

    order = alphabetical[np.argsort(-freq[alphabetical], kind="stable")]
    return order[freq[order] > 0]


def _length_bins(lengths: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each length's bin: right-closed ``(-inf, e1], (e1, e2], ..., (ek, +inf)``, as ``profile``."""
    import numpy as np

    return np.searchsorted(edges, lengths, side="left")


# --- the reference profile ------------------------------------------------------------------------


def _spread(values: list[float]) -> tuple[float, float] | None:
    """Mean and sample standard deviation of a statistic's resampled values."""
    if len(values) < 2:
        return None
    mean = math.fsum(values) / len(values)
    var = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def _resampling(
    *,
    counts: np.ndarray,
    buckets: np.ndarray,
    term_shares: np.ndarray,
    length_bin: np.ndarray,
    length_shares: np.ndarray,
    half_counts: np.ndarray,
    half_oov: np.ndarray,
) -> dict[str, Any]:
    """Mean and spread of each statistic over seeded resamples of the reference rows.

    ``buckets`` is each token's top-term index (``len(term_shares) - 1`` for ``__other__``) in
    row order, ``counts`` the tokens per row; ``length_bin`` is -1 for an empty text. The OOV
    rate is resampled from the second half's rows (``half_counts`` tokens, ``half_oov`` of
    them outside the first half's vocabulary). A size keeps only draws with something to
    measure (a draw of empty texts has no tokens); a statistic lists the sizes it has."""
    import numpy as np

    rng = np.random.default_rng(RESAMPLE_SEED)
    rows, half_rows = len(counts), len(half_counts)
    offsets = np.concatenate(([0], np.cumsum(counts)))[:-1]
    k, bins = len(term_shares), len(length_shares)
    replicates = [min(RESAMPLE_MAX, max(RESAMPLE_MIN, RESAMPLE_ROWS // size)) for size in RESAMPLE_SIZES]
    out: dict[str, Any] = {"sizes": list(RESAMPLE_SIZES), "replicates": replicates, "rows": rows}
    tables: dict[str, dict[str, list[float]]] = {
        s: {"sizes": [], "mean": [], "std": []} for s in ("vocabulary_js", "length_js", "oov_rate")
    }
    for size, draws_at_size in zip(RESAMPLE_SIZES, replicates, strict=True):
        draws: dict[str, list[float]] = {s: [] for s in tables}
        for _ in range(draws_at_size):
            idx = rng.integers(0, rows, size)
            lens = counts[idx]
            # Positions of the drawn rows' tokens in the row-ordered stream (a CSR gather).
            starts = np.repeat(offsets[idx] - (np.cumsum(lens) - lens), lens)
            q = np.bincount(buckets[starts + np.arange(int(lens.sum()))], minlength=k)
            if q.sum():
                draws["vocabulary_js"].append(jensen_shannon(term_shares, q))
            lb = length_bin[idx]
            lq = np.bincount(lb[lb >= 0], minlength=bins)
            if lq.sum():
                draws["length_js"].append(jensen_shannon(length_shares, lq))
            hidx = rng.integers(0, half_rows, size)
            tok = int(half_counts[hidx].sum())
            if tok:
                draws["oov_rate"].append(float(half_oov[hidx].sum()) / tok)
        for stat, table in tables.items():
            if (spread := _spread(draws[stat])) is not None:
                table["sizes"].append(size)
                table["mean"].append(spread[0])
                table["std"].append(spread[1])
    out.update(tables)
    return out


def text_profile(values: pd.Series, *, top_terms: int = 50, vocabulary: int = 5000) -> dict[str, Any]:
    """The reference profile of one text column, as a small JSON-serialisable dict.

    It holds the row, null and empty counts; the length distribution of the non-empty texts
    (``LENGTH_BINS`` quantile bins in characters, right-closed, with the reference's share
    per bin); quantiles of the tokens per non-empty text; the ``top_terms`` most frequent terms
    with their share of all tokens and the share of every other token; the vocabulary (the
    ``vocabulary`` most frequent terms of the first half of the rows, ties alphabetically) and
    its OOV rate on the second half, the baseline; and the resampled mean and spread of each
    statistic (the module docstring says how a check turns them into thresholds). Needs at
    least ``MIN_REFERENCE_ROWS`` non-null texts, with words in both halves.

    The top terms and the length bins come from all rows, the vocabulary from the first half
    only (the module docstring says why). The resampling is seeded: the same texts give the
    same profile."""
    import numpy as np
    import pandas as pd

    if top_terms < 1:
        raise ValueError(f"top_terms must be positive, got {top_terms}")
    if vocabulary < top_terms:
        raise ValueError(
            f"vocabulary ({vocabulary}) must be at least top_terms ({top_terms}): a smaller vocabulary "
            "would call terms new that the vocabulary JS counts among the reference's most frequent"
        )
    started = time.perf_counter()
    texts, rows = _texts(values, "reference")
    n = len(texts)
    if n < MIN_REFERENCE_ROWS:
        raise TextColumnError(
            f"reference text column has {n} non-null texts of {rows} rows; a text profile needs at "
            f"least {MIN_REFERENCE_ROWS} to measure its own sampling spread; profile more rows"
        )
    per_text, counts = _tokenised(texts)
    total = int(counts.sum())
    half = n // 2
    cut = int(counts[:half].sum())  # tokens of the first half
    if cut in (0, total):
        raise TextColumnError(
            f"reference text column has {total} tokens, all in one half of its {n} texts (or none); "
            "the OOV baseline needs words in both halves; pass real texts, in no particular order"
        )
    stream = np.fromiter(itertools.chain.from_iterable(per_text), dtype=object, count=total)
    codes, names = pd.factorize(stream)
    freq = np.bincount(codes, minlength=len(names))
    alphabetical = np.argsort(names, kind="stable")
    order = _ranked(freq, alphabetical)
    top = order[:top_terms]
    other = total - int(freq[top].sum())
    term_shares = np.concatenate((freq[top], [other])) / total

    # Every token's top-term bucket (len(top) for __other__), for the resampling.
    bucket_of = np.full(len(names), len(top), dtype="int64")
    bucket_of[top] = np.arange(len(top))

    lengths = np.fromiter(map(len, texts), dtype="int64", count=n)
    empty = np.fromiter((not t.strip() for t in texts), dtype=bool, count=n)
    filled = lengths[~empty]  # not empty: some text has tokens
    edges = np.unique(np.quantile(filled, np.linspace(0.0, 1.0, LENGTH_BINS + 1)[1:-1]))
    length_bin = np.full(n, -1, dtype="int64")
    length_bin[~empty] = _length_bins(filled, edges)
    length_shares = np.bincount(length_bin[~empty], minlength=len(edges) + 1) / len(filled)

    # The vocabulary: the first half's most frequent terms; the OOV baseline: the second half's tokens.
    vocab = _ranked(np.bincount(codes[:cut], minlength=len(names)), alphabetical)[:vocabulary]
    in_vocab = np.zeros(len(names), dtype=bool)
    in_vocab[vocab] = True
    oov_token = ~in_vocab[codes[cut:]]
    half_counts = counts[half:]
    half_oov = np.bincount(
        np.repeat(np.arange(n - half), half_counts), weights=oov_token, minlength=n - half
    ).astype("int64")
    baseline = float(oov_token.sum()) / (total - cut)

    profile = {
        "kind": "text",
        "version": TEXT_PROFILE_VERSION,
        "token_pattern": TOKEN_RE.pattern,
        "name": None if getattr(values, "name", None) is None else str(values.name),
        "rows": rows,
        "nulls": rows - n,
        "texts": n,
        "empty": int(empty.sum()),
        "empty_share": float(empty.mean()),
        "tokens": total,
        "distinct_terms": len(names),
        "length": {
            "edges": [float(e) for e in edges],
            "shares": [float(s) for s in length_shares],
            "median": float(np.median(filled)),
        },
        "token_counts": {
            "probabilities": list(TOKEN_QUANTILES),
            "values": [float(v) for v in np.quantile(counts[~empty], TOKEN_QUANTILES)],
        },
        "top_terms": {str(names[i]): float(freq[i]) / total for i in top},
        "other_share": other / total,
        "vocabulary": [str(names[i]) for i in vocab],
        "oov": {
            "baseline": baseline,
            "vocabulary_rows": half,
            "measured_rows": n - half,
            "measured_tokens": total - cut,
        },
        "resampling": _resampling(
            counts=counts,
            buckets=bucket_of[codes],
            term_shares=term_shares,
            length_bin=length_bin,
            length_shares=length_shares,
            half_counts=half_counts,
            half_oov=half_oov,
        ),
        "settings": {"top_terms": top_terms, "vocabulary": vocabulary, "length_bins": LENGTH_BINS},
    }
    log.info(
        "text profile of %d texts (%d tokens, %d distinct terms, OOV baseline %.3f) in %.2fs",
        n,
        total,
        len(names),
        baseline,
        time.perf_counter() - started,
    )
    return profile


# --- the check ------------------------------------------------------------------------------------

_REQUIRED = (
    "texts",
    "empty",
    "empty_share",
    "length",
    "top_terms",
    "other_share",
    "vocabulary",
    "oov",
    "resampling",
)


def _checked(profile: Mapping[str, Any]) -> None:
    if not isinstance(profile, dict) or profile.get("kind") != "text":
        kind = profile.get("kind") if isinstance(profile, dict) else type(profile).__name__
        raise DriftError(f"not a text profile (kind {kind!r}); build one with text_profile")
    if profile.get("version") != TEXT_PROFILE_VERSION:
        raise DriftError(
            f"text profile has version {profile.get('version')!r}, this library reads version "
            f"{TEXT_PROFILE_VERSION}; rebuild it with text_profile"
        )
    if missing := [k for k in _REQUIRED if k not in profile]:
        raise DriftError(f"text profile lacks {missing}; rebuild it with text_profile")
    if profile.get("token_pattern") != TOKEN_RE.pattern:
        raise DriftError(
            f"text profile was tokenised with {profile.get('token_pattern')!r}, this library uses "
            f"{TOKEN_RE.pattern!r}; rebuild it with text_profile"
        )


def _at(table: Mapping[str, list[float]], key: str, n: float) -> float:
    """A resampled mean or spread read at ``n`` rows: ``value * sqrt(size)`` interpolated over
    log size (constant beyond the stored sizes), divided by ``sqrt(n)``."""
    import numpy as np

    sizes = np.asarray(table["sizes"], dtype="float64")
    if not len(sizes):
        return 0.0
    scaled = np.asarray(table[key], dtype="float64") * np.sqrt(sizes)
    return float(np.interp(math.log(n), np.log(sizes), scaled)) / math.sqrt(n)


def _verdict(value: float | None, floor: float, allowance: float, **extra: Any) -> dict[str, Any]:
    threshold = max(floor, allowance)
    drifted = value is not None and value > threshold
    return {
        "value": value,
        "threshold": threshold,
        "floor": floor,
        "allowance": allowance,
        "drifted": bool(drifted),
        **extra,
    }


def text_drift(profile: dict[str, Any], values: pd.Series, *, min_rows: int = 100) -> dict[str, Any]:
    """A current sample of one text column against its reference profile (``text_profile``).

    Returns a JSON-serialisable dict: ``status`` (``checked``), ``rows``, ``nulls``,
    ``texts`` (non-null rows, the ``n`` of the thresholds), ``tokens``; per statistic
    (``vocabulary_js``, ``oov_rate``, ``oov_increase``, ``length_js``, ``empty_share``) its
    ``value``, ``threshold`` = max(``floor``, ``allowance``) and ``drifted`` (the rule is in
    the module docstring); ``drifted`` overall and ``drifted_statistics``; ``top_new_terms``,
    the most frequent current terms outside the reference vocabulary with their token and
    text counts (what to look at first: a new product, a new topic); and a ``summary``.

    With fewer than ``min_rows`` non-null texts it returns ``status`` ``too_few_rows``,
    ``drifted`` False and no statistic at all: from a handful of texts any number would be
    noise that reads like a verdict."""
    import numpy as np

    if min_rows < 1:
        raise ValueError(f"min_rows must be positive, got {min_rows}")
    _checked(profile)
    texts, rows = _texts(values, "current")
    n = len(texts)
    result: dict[str, Any] = {"kind": "text", "rows": rows, "nulls": rows - n, "texts": n}
    if n < min_rows:
        return {
            **result,
            "status": "too_few_rows",
            "min_rows": min_rows,
            "drifted": False,
            "summary": (
                f"text drift not checked: {n} non-null texts, fewer than min_rows={min_rows}, "
                "too few to tell a shift from sampling noise; check a longer window"
            ),
        }
    per_text, counts = _tokenised(texts)
    freq = Counter(itertools.chain.from_iterable(per_text))
    total = int(counts.sum())
    ref_rows = int(profile["texts"])
    resampling = profile["resampling"]
    no_tokens = None if total else "the current texts have no tokens"

    # Vocabulary: shares of all tokens over the reference's top terms and __other__.
    top: dict[str, float] = profile["top_terms"]
    p = np.asarray([*top.values(), profile["other_share"]], dtype="float64")
    top_counts = [freq.get(t, 0) for t in top]
    q = np.asarray([*top_counts, total - sum(top_counts)], dtype="float64")
    inflate = math.sqrt(1.0 + n / ref_rows)  # two independent samples, not a resample of one
    table = resampling["vocabulary_js"]
    allowance = inflate * (_at(table, "mean", n) + SPREAD_K * _at(table, "std", n))
    vocabulary_js = _verdict(jensen_shannon(p, q) if total else None, JS_FLOOR, allowance)

    # Out of vocabulary: the rise over the reference's honest baseline.
    vocab = set(profile["vocabulary"])
    new = [(t, c) for t, c in freq.items() if t not in vocab]
    oov = sum(c for _, c in new)
    baseline = float(profile["oov"]["baseline"])
    table = resampling["oov_rate"]
    spread = math.hypot(_at(table, "std", n), _at(table, "std", int(profile["oov"]["measured_rows"])))
    rate = oov / total if total else None
    increase = _verdict(None if rate is None else rate - baseline, OOV_FLOOR, SPREAD_K * spread)
    oov_rate = {
        "value": rate,
        "reference": baseline,
        "threshold": baseline + increase["threshold"],
        "drifted": increase["drifted"],
    }

    # Length of the non-empty texts over the reference's bins.
    lengths = np.fromiter(map(len, texts), dtype="int64", count=n)
    empty = np.fromiter((not t.strip() for t in texts), dtype=bool, count=n)
    filled = lengths[~empty]
    length = profile["length"]
    edges = np.asarray(length["edges"], dtype="float64")
    table = resampling["length_js"]
    allowance = inflate * (_at(table, "mean", n) + SPREAD_K * _at(table, "std", n))
    value = None
    if len(filled):
        shares = np.bincount(_length_bins(filled, edges), minlength=len(edges) + 1)
        value = jensen_shannon(np.asarray(length["shares"], dtype="float64"), shares)
    length_js = _verdict(
        value,
        JS_FLOOR,
        allowance,
        median_chars=float(np.median(filled)) if len(filled) else None,
        reference_median_chars=float(length["median"]),
    )

    # Empty share: two independent proportions, pooled.
    empties = int(empty.sum())
    reference_empty = float(profile["empty_share"])
    pooled = (empties + int(profile["empty"])) / (n + ref_rows)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n + 1.0 / ref_rows))
    change = empties / n - reference_empty
    judged = _verdict(abs(change), EMPTY_FLOOR, SPREAD_K * se)  # a fall is a change too
    empty_share = {**judged, "value": empties / n, "reference": reference_empty, "change": change}

    statistics = {
        "vocabulary_js": vocabulary_js,
        "oov_increase": increase,
        "length_js": length_js,
        "empty_share": empty_share,
    }
    if no_tokens:
        for s in ("vocabulary_js", "oov_increase"):
            statistics[s]["detail"] = no_tokens
    drifted = [s for s, v in statistics.items() if v["drifted"]]
    listed = heapq.nsmallest(MAX_NEW_TERMS, new, key=lambda tc: (-tc[1], tc[0]))
    new_terms = _with_texts(listed, per_text)
    result.update(
        status="checked",
        tokens=total,
        vocabulary_js=vocabulary_js,
        oov_rate=oov_rate,
        oov_increase=increase,
        length_js=length_js,
        empty_share=empty_share,
        drifted=bool(drifted),
        drifted_statistics=drifted,
        top_new_terms=new_terms,
        summary=_summary(n, statistics, drifted, new_terms),
    )
    return result


def _with_texts(new: list[tuple[str, int]], per_text: list[list[str]]) -> list[dict[str, Any]]:
    """The listed new terms with their token count and the number of texts that use them."""
    wanted = {t for t, _ in new}
    used: Counter[str] = Counter()
    for toks in per_text:
        if not wanted.isdisjoint(toks):  # a C-level scan; most texts use none of the terms
            used.update(wanted.intersection(toks))
    return [{"term": t, "count": c, "texts": used[t]} for t, c in new]


def _summary(
    n: int, statistics: dict[str, dict[str, Any]], drifted: list[str], new: list[dict[str, Any]]
) -> str:
    if not drifted:
        return f"no text drift in {n} texts"
    parts = "; ".join(
        f"{s} {statistics[s]['change']:+.3f} beyond ±{statistics[s]['threshold']:.3f}"
        if s == "empty_share"
        else f"{s} {statistics[s]['value']:.3f} > {statistics[s]['threshold']:.3f}"
        for s in drifted
    )
    terms = ", ".join(f"{t['term']} ({t['texts']} texts)" for t in new[:5])
    return f"text drift in {n} texts: {parts}" + (f"; most frequent new terms: {terms}" if terms else "")
