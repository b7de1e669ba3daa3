"""Drift monitoring: every statistic against scipy on known distributions, streaming that does not
depend on chunking, JSON round trips, each edge case with its reason, the dataset verdict on the
churn generator's stable and drifted batches, importance weighting, overrides and the label-free
performance estimate."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import roc_auc_score

from mlcycle.core.errors import DriftError
from mlcycle.data.generators import generate_batch
from mlcycle.monitor import estimates as me
from mlcycle.monitor import profile as mp
from mlcycle.monitor import statistics as ms
from mlcycle.monitor import verdict as mv
from mlcycle.monitor import window as mw

CHURN_NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls", "age"]
CHURN_CATEGORICAL = ["contract", "internet_service", "payment_method", "region"]


def accumulate(
    profile: mp.Profile, df: pd.DataFrame, chunk_rows: int | None = None, **kw: Any
) -> mw.CurrentStats:
    acc = mw.Accumulator(profile)
    step = chunk_rows or max(len(df), 1)
    for start in range(0, max(len(df), 1), step):
        acc.update(df.iloc[start : start + step], **kw)
    return acc.result()


def run(
    ref: pd.DataFrame,
    cur: pd.DataFrame,
    numeric: list[str] | None = None,
    categorical: list[str] | None = None,
    **assess_kw: Any,
) -> mv.DriftReport:
    profile = mp.build_profile(ref, numeric or [], categorical or [])
    return mv.assess(profile, accumulate(profile, cur), **assess_kw)


def one(report: mv.DriftReport, statistic: str, feature: str = "x") -> mv.FeatureResult:
    return report.feature(feature).result(statistic)


def samples(case: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(reference, current) samples of at least 5,000 rows each."""
    n, m = 6000, 5000
    if case == "normal, same":
        return rng.normal(0, 1, n), rng.normal(0, 1, m)
    if case == "normal, shifted":
        return rng.normal(0, 1, n), rng.normal(0.3, 1, m)
    if case == "normal, wider":
        return rng.normal(0, 1, n), rng.normal(0, 1.5, m)
    if case == "lognormal":
        return rng.lognormal(0, 1, n), rng.lognormal(0.2, 1.1, m)
    if case == "lognormal, same":
        return rng.lognormal(0, 1, n), rng.lognormal(0, 1, m)
    if case == "poisson (discrete)":
        return rng.poisson(3, n).astype(float), rng.poisson(3.4, m).astype(float)
    if case == "poisson, same":
        return rng.poisson(3, n).astype(float), rng.poisson(3, m).astype(float)
    if case == "wide integers":
        return rng.integers(0, 5000, n).astype(float), rng.integers(100, 5000, m).astype(float)
    raise AssertionError(case)


CASES = [
    "normal, same",
    "normal, shifted",
    "normal, wider",
    "lognormal",
    "lognormal, same",
    "poisson (discrete)",
    "poisson, same",
    "wide integers",
]


# --- the module stays cheap to import -------------------------------------------------------------


def test_import_does_not_load_heavy_libraries():
    """Airflow parses DAG files that import the library: numpy, pandas, scipy and pyarrow stay out."""
    code = (
        "import sys, mlcycle.monitor.verdict; "
        "print(sorted(m for m in ('numpy', 'pandas', 'scipy', 'pyarrow', 'airflow') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --- each statistic against scipy -----------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_ks_statistic_matches_scipy(case):
    """The grid KS reads both CDFs exactly at the grid points, so it never exceeds the exact
    two-sample statistic, and misses it by at most the reference mass between grid points."""
    ref, cur = samples(case, np.random.default_rng(1))
    report = run(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}), ["x"])
    ks = one(report, "ks")
    exact = stats.ks_2samp(ref, cur)
    assert ks.value == pytest.approx(exact.statistic, abs=0.01)
    assert ks.value <= exact.statistic + 1e-12
    assert ks.detail == {"n_reference": len(ref), "n_current": len(cur)}


@pytest.mark.parametrize(
    ("n", "m", "tol"), [(1000, 1000, 0.01), (6000, 5000, 0.005), (200_000, 50_000, 0.002)]
)
def test_ks_pvalue_matches_scipy_kstwo(n, m, tol):
    """The asymptotic p-value is scipy's kstwo at en = n*m/(n+m), within the documented tolerance."""
    en = n * m / (n + m)
    for dstat in np.linspace(0.2, 3.0, 15) / math.sqrt(en):  # p-values from ~1 down to ~1e-7
        assert ms.ks_pvalue(dstat, n, m) == pytest.approx(stats.kstwo.sf(dstat, round(en)), abs=tol)


@pytest.mark.parametrize("case", CASES)
def test_wasserstein_matches_scipy(case):
    """Un-normalised W1 within 5 % of scipy's (or 0.005 reference stds when near 0); the value
    used for thresholds is that distance in reference stds."""
    ref, cur = samples(case, np.random.default_rng(2))
    w = one(run(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}), ["x"]), "wasserstein")
    exact = stats.wasserstein_distance(ref, cur)
    assert w.detail["distance"] == pytest.approx(exact, rel=0.05, abs=0.005 * ref.std())
    assert w.detail["scale"] == pytest.approx(ref.std())
    assert w.value == pytest.approx(w.detail["distance"] / ref.std())
    assert w.decisive is False  # reported, not deciding, by default


@pytest.mark.parametrize("case", CASES)
def test_psi_and_js_on_the_reference_bins(case):
    """Streamed bin counts equal counting the raw samples on the profile's right-closed edges;
    PSI is the textbook sum with empty bins lifted to 1e-4; JS equals scipy's (base 2)."""
    ref, cur = samples(case, np.random.default_rng(3))
    profile = mp.build_profile(pd.DataFrame({"x": ref}), ["x"], [])
    report = mv.assess(profile, accumulate(profile, pd.DataFrame({"x": cur}), chunk_rows=777))
    edges = profile.numeric["x"].edges

    def props(values: np.ndarray) -> np.ndarray:
        # side="left": a value equal to an edge belongs to the bin that edge closes
        return np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1) / len(
            values
        )

    psi, js = one(report, "psi"), one(report, "js")
    assert psi.histogram.reference == pytest.approx(props(ref), abs=1e-15)
    assert psi.histogram.current == pytest.approx(props(cur), abs=1e-15)
    a, b = np.clip(props(ref), 1e-4, None), np.clip(props(cur), 1e-4, None)
    assert psi.value == pytest.approx(float(np.sum((b - a) * np.log(b / a))), rel=1e-12)
    assert js.value == pytest.approx(jensenshannon(props(ref), props(cur), base=2), rel=1e-12)


def test_psi_of_a_known_shift():
    """All current rows in one reference decile: nine bins lose 0.1 each (to 1e-4), one gains 0.9."""
    ref = np.random.default_rng(4).uniform(0, 1, 10_000)
    cur = np.full(1000, 0.55)
    psi = one(run(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}), ["x"]), "psi")
    expected = (1.0 - 0.1) * math.log(1.0 / 0.1) + 9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert psi.value == pytest.approx(expected, rel=1e-3)
    assert psi.drifted is True


@pytest.mark.parametrize("seed", range(4))
def test_jensen_shannon_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    p, q = rng.random(12), rng.random(12)
    p[seed] = 0.0  # a bucket empty on one side is well defined (no epsilon)
    assert ms.jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q, base=2), rel=1e-12)


@pytest.mark.parametrize(
    ("ref_p", "cur_p"),
    [
        ([0.5, 0.3, 0.2], [0.5, 0.3, 0.2]),
        ([0.5, 0.3, 0.2], [0.3, 0.3, 0.4]),
        ([0.7, 0.2, 0.1], [0.2, 0.2, 0.6]),
    ],
)
def test_categorical_psi_js_chi2_against_scipy(ref_p, cur_p):
    rng = np.random.default_rng(5)
    cats = np.array(["a", "b", "c"])
    ref = pd.DataFrame({"c": rng.choice(cats, 20_000, p=ref_p)})
    cur = pd.DataFrame({"c": rng.choice(cats, 5_000, p=cur_p)})
    report = run(ref, cur, categorical=["c"])
    ref_counts = ref["c"].value_counts().reindex(cats).to_numpy()
    cur_counts = cur["c"].value_counts().reindex(cats).to_numpy()
    chi2 = one(report, "chi2", "c")
    expected = stats.chisquare(cur_counts, ref_counts / ref_counts.sum() * cur_counts.sum())
    assert chi2.detail["statistic"] == pytest.approx(expected.statistic, rel=1e-9)
    assert chi2.value == chi2.p_value == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-300)
    assert chi2.detail["dof"] == 2
    js = one(report, "js", "c")
    assert js.value == pytest.approx(jensenshannon(ref_counts, cur_counts, base=2), rel=1e-12)
    a, b = ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()
    assert one(report, "psi", "c").value == pytest.approx(float(np.sum((b - a) * np.log(b / a))), rel=1e-12)
    # effect sizes decide; chi-square only reports (at these sizes it flags much smaller shifts)
    feature = report.feature("c")
    assert feature.drifted is (ref_p != cur_p)
    assert chi2.decisive is False


# --- streaming ------------------------------------------------------------------------------------


def mixed_frame(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1, rows)
    x[rng.random(rows) < 0.05] = np.nan
    c = rng.choice(["a", "b", "c", "d"], rows, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    c[rng.random(rows) < 0.03] = None
    return pd.DataFrame({"x": x, "k": rng.poisson(2 + shift, rows), "c": c})


@pytest.mark.parametrize("chunk_rows", [997, 4000, 1])
def test_chunk_size_does_not_change_the_result(chunk_rows):
    """Count-based statistics are identical whatever the chunking; sums (mean, std, Wasserstein)
    may differ only by floating-point rounding of the additions."""
    ref, cur = mixed_frame(6000, 0), mixed_frame(5000 if chunk_rows > 1 else 700, 1, shift=0.2)
    profile = mp.build_profile(ref, ["x", "k"], ["c"])
    whole = mv.assess(profile, accumulate(profile, cur))
    chunked = mv.assess(profile, accumulate(profile, cur, chunk_rows=chunk_rows))
    assert whole.dataset_drift == chunked.dataset_drift
    for fw, fc in zip(whole.features, chunked.features, strict=True):
        assert fw.drifted == fc.drifted
        for rw, rc in zip(fw.results, fc.results, strict=True):
            if rw.statistic == "wasserstein":
                assert rc.value == pytest.approx(rw.value, rel=1e-9)
            else:
                assert rc.value == rw.value
                assert rc.histogram == rw.histogram
        for key in ("rows", "count", "null_rate", "min", "max", "categories"):
            assert fc.current.get(key) == fw.current.get(key)
        for key in ("mean", "std") if fw.kind == "numeric" else ():
            assert fc.current.get(key) == pytest.approx(fw.current.get(key), rel=1e-9)


def test_memory_does_not_grow_with_rows():
    """The state is the reference grid's size, whatever was streamed through it."""
    ref = mixed_frame(3000, 0)
    profile = mp.build_profile(ref, ["x", "k"], ["c"], grid_size=201)
    acc = mw.Accumulator(profile)
    for seed in range(5):
        acc.update(mixed_frame(20_000, seed))
    st = acc.result()
    assert st.rows == 100_000
    assert len(st.numeric["x"].cum_counts) == len(st.numeric["x"].cum_sums) == 202
    assert st.categorical["c"].counts.keys() == {"a", "b", "c", "d"}


def test_accumulate_parquet_equals_in_memory(tmp_path):
    ref, cur = mixed_frame(4000, 0), mixed_frame(5000, 1)
    cur["score"] = np.random.default_rng(2).random(len(cur))
    profile = mp.build_profile(ref, ["x", "k"], ["c"], prediction=np.random.default_rng(3).random(1000))
    path = tmp_path / "batch.parquet"
    pq.write_table(pa.Table.from_pandas(cur), path, row_group_size=1500)
    streamed = mw.accumulate_parquet(str(path), profile, chunk_rows=700, prediction_column="score")
    in_memory = accumulate(profile, cur, prediction=cur["score"].to_numpy())
    assert streamed.rows == in_memory.rows == 5000
    np.testing.assert_array_equal(streamed.numeric["x"].cum_counts, in_memory.numeric["x"].cum_counts)
    assert streamed.categorical["c"] == in_memory.categorical["c"]
    np.testing.assert_array_equal(streamed.prediction.cum_counts, in_memory.prediction.cum_counts)
    # the prediction as a __prediction__ column of the chunk is the same as passing it
    as_column = accumulate(profile, cur.rename(columns={"score": mp.PREDICTION}))
    np.testing.assert_array_equal(as_column.prediction.cum_counts, in_memory.prediction.cum_counts)
    # an open file works as well as a URI
    with path.open("rb") as fh:
        assert mw.accumulate_parquet(fh, profile).rows == 5000
    with pytest.raises(DriftError, match=r"no column\(s\) \['nope'\] to monitor"):
        mw.accumulate_parquet(str(path), profile, prediction_column="nope")


# --- JSON round trips -----------------------------------------------------------------------------


def test_profile_and_report_round_trip_through_strict_json():
    ref, cur = mixed_frame(4000, 0), mixed_frame(3000, 1, shift=0.5)
    profile = mp.build_profile(
        ref, ["x", "k"], ["c"], prediction=np.linspace(0, 1, 500), importance={"x": 2.0, "k": 1.0, "c": 0.5}
    )
    # allow_nan=False: no NaN or Infinity, which strict JSON readers refuse
    text = json.dumps(profile.to_dict(), allow_nan=False)
    restored = mp.Profile.from_dict(json.loads(text))
    assert restored == profile
    # what a caller stores next to the profile is left alone
    assert mp.Profile.from_dict({**json.loads(text), "reference_performance": {"roc_auc": 0.8}}) == profile
    report = mv.assess(restored, accumulate(restored, cur, prediction=np.linspace(0.2, 1, len(cur))))
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["summary"] == report.summary()
    assert mv.DriftReport.from_dict(data) == report
    assert report == mv.assess(profile, accumulate(profile, cur, prediction=np.linspace(0.2, 1, len(cur))))


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda p: p.update(version=99), r"version 99, this library reads version 1"),
        (lambda p: p.pop("numeric"), r"malformed"),
        (lambda p: p["numeric"]["x"]["edges"].pop(), r"'x' is inconsistent"),
    ],
)
def test_bad_profile_json_is_refused(mutate, match):
    data = mp.build_profile(mixed_frame(500, 0), ["x"], ["c"]).to_dict()
    mutate(data)
    with pytest.raises(DriftError, match=match):
        mp.Profile.from_dict(data)


# --- edge cases, each with its reason -------------------------------------------------------------


def test_too_few_non_null_rows_is_not_computed_and_left_out_of_the_share():
    rng = np.random.default_rng(6)
    ref = pd.DataFrame({"x": rng.normal(size=3000), "y": rng.normal(size=3000)})
    x = np.full(1000, np.nan)
    x[:37] = rng.normal(size=37)
    cur = pd.DataFrame({"x": x, "y": rng.normal(2, 1, 1000)})
    report = run(ref, cur, ["x", "y"])
    fx = report.feature("x")
    assert fx.result("psi").value is None
    assert fx.result("ks").reason == "only 37 non-null rows; need 100"
    # ... but 96 % nulls against 0 % is its own drift signal
    null = fx.result("null_rate")
    assert null.value == pytest.approx(0.963)
    assert null.drifted is True
    assert fx.drifted is True
    # with the default min_rows the same window without the null jump is simply not computed
    report = run(ref, cur.iloc[:37], ["x", "y"])
    assert report.feature("x").reason == "only 37 non-null rows; need 100"
    assert report.not_computed == ["x", "y"]
    assert report.feature("x").result("null_rate").reason == "only 37 rows; need 100"
    assert report.share is None
    assert report.dataset_drift is False
    assert "no feature could be assessed" in report.summary()


def test_not_computed_features_leave_the_denominator():
    rng = np.random.default_rng(7)
    ref = pd.DataFrame({c: rng.normal(size=3000) for c in "abc"})
    cur = pd.DataFrame({"a": rng.normal(3, 1, 500), "b": rng.normal(size=500), "c": rng.normal(size=500)})
    report = run(ref, cur, list("abc"), min_rows=1000)  # nothing computable
    assert report.not_computed == ["a", "b", "c"]
    report = run(ref, cur, list("abc"), min_rows=400)
    assert report.not_computed == []
    assert report.drifted == ["a"]
    assert report.share == pytest.approx(1 / 3)
    # a window where b has too few values: 1 drifted of the 2 computed
    cur.loc[50:, "b"] = np.nan
    report = run(ref, cur, list("abc"), min_rows=400)
    assert report.feature("b").drifted is True  # 90 % nulls: the null-rate jump decides
    # b is 95 % null in the reference and all null now: no jump, and nothing to compare
    cur.loc[:, "b"] = np.nan
    ref.loc[:, "b"] = np.where(rng.random(3000) < 0.95, np.nan, ref["b"])
    report = run(ref, cur, list("abc"), min_rows=100)
    assert report.feature("b").reason == "all 500 current rows are null"
    assert report.not_computed == ["b"]
    assert report.share == pytest.approx(1 / 2)


def test_all_null_current_column_reports_the_null_rate_jump():
    rng = np.random.default_rng(8)
    ref = pd.DataFrame({"x": rng.normal(size=2000), "c": rng.choice(["a", "b"], 2000)})
    cur = pd.DataFrame({"x": np.full(500, np.nan), "c": pd.Series([None] * 500, dtype=object)})
    report = run(ref, cur, ["x"], ["c"])
    for name, stats_ in (("x", ["psi", "ks", "wasserstein", "js"]), ("c", ["psi", "js", "chi2"])):
        f = report.feature(name)
        assert [r.reason for r in f.results if r.statistic != "null_rate"] == [
            "all 500 current rows are null"
        ] * len(stats_)
        null = f.result("null_rate")
        assert (null.value, null.drifted) == (1.0, True)
        assert null.histogram.current == [1.0, 0.0]
        assert f.drifted is True
    assert report.dataset_drift is True


@pytest.mark.parametrize(
    ("current", "ks", "psi_drifted", "distance"),
    [
        (5.0, 0.0, False, 0.0),  # the same constant
        (7.5, 1.0, True, 2.5),  # above it
        (4.0, 1.0, True, 1.0),  # below it: a bin of its own, not merged with "= 5"
    ],
)
def test_constant_reference_column(current, ks, psi_drifted, distance):
    ref = pd.DataFrame({"x": np.full(1000, 5.0)})
    profile = mp.build_profile(ref, ["x"], [])
    fp = profile.numeric["x"]
    assert fp.std == 0.0
    assert fp.bin_counts == [0, 1000, 0]  # below / at / above the constant
    report = mv.assess(profile, accumulate(profile, pd.DataFrame({"x": np.full(400, current)})))
    assert one(report, "ks").value == ks
    assert one(report, "psi").drifted is psi_drifted
    assert one(report, "psi").histogram.labels == ["< 5", "= 5", "> 5"]
    w = one(report, "wasserstein")
    assert w.detail["scale"] == 1.0
    assert w.value == pytest.approx(distance)
    assert "reference is constant" in w.note


def test_unseen_categories_are_counted_listed_and_bucketed():
    rng = np.random.default_rng(9)
    ref = pd.DataFrame({"c": rng.choice(["a", "b", "c"], 5000)})
    unseen = [f"new{i:02d}" for i in range(25)]
    values = np.concatenate([rng.choice(["a", "b", "c"], 900), np.repeat(unseen, 4)])
    report = run(ref, pd.DataFrame({"c": values}), categorical=["c"])
    f = report.feature("c")
    assert len(f.unseen) == mp.MAX_UNSEEN_LISTED
    assert set(f.unseen) <= set(unseen)
    assert all(v == 4 for v in f.unseen.values())
    psi = f.result("psi")
    # reference categories (most frequent first), then unseen; no __other__: it is empty on both sides
    assert sorted(psi.histogram.labels[:3]) == ["a", "b", "c"]
    assert psi.histogram.labels[3:] == [mp.UNSEEN]
    assert psi.histogram.current[-1] == pytest.approx(100 / 1000)
    assert psi.histogram.reference[-1] == 0.0
    assert "100 rows in unseen categories" in psi.note
    assert psi.note.endswith(f", ...), bucketed as {mp.UNSEEN}")  # more than 20 names: the list is cut
    chi2 = f.result("chi2")
    assert chi2.detail["excluded_unseen_rows"] == 100
    counts = [int((values == c).sum()) for c in "abc"]
    ref_counts = [int((ref["c"] == c).sum()) for c in "abc"]
    expected = stats.chisquare(counts, np.array(ref_counts) / 5000 * sum(counts))
    assert chi2.detail["statistic"] == pytest.approx(expected.statistic, rel=1e-9)


def test_categories_beyond_the_top_go_to_other_not_unseen():
    rng = np.random.default_rng(10)
    ref = pd.DataFrame(
        {"c": rng.permutation(list("a" * 40 + "b" * 30 + "c" * 12 + "d" * 8 + "e" * 5 + "f" * 5))}
    )
    profile = mp.build_profile(ref, [], ["c"], max_categories=3)
    cp = profile.categorical["c"]
    assert cp.categories == {"a": 40, "b": 30, "c": 12}
    assert (cp.other, cp.other_categories) == (18, 3)
    cur = accumulate(profile, pd.DataFrame({"c": ["e"] * 50 + ["zzz"] * 50 + ["a"] * 100}))
    assert cur.categorical["c"].other == 100  # "zzz" cannot be told from a rare reference category
    assert cur.categorical["c"].unseen_rows == 0


def test_numeric_profile_bins():
    rng = np.random.default_rng(11)
    ref = pd.DataFrame({"x": rng.normal(size=10_000), "k": rng.poisson(1.2, 10_000)})
    profile = mp.build_profile(ref, ["x", "k"], [])
    x, k = profile.numeric["x"], profile.numeric["k"]
    assert len(x.edges) == 9
    assert x.bin_counts == [1000] * 10  # deciles of a continuous column
    assert len(x.grid) == 1001
    assert (x.grid[0], x.grid[-1]) == (x.min, x.max)
    # a discrete column: deduplicated deciles, and the point mass at 0 gets "< 0" and "= 0" bins
    assert k.edges[1:] == pytest.approx(sorted(set(np.quantile(ref["k"], np.arange(1, 10) / 10))))
    assert k.edges[0] == math.nextafter(0.0, -math.inf)
    assert sum(k.bin_counts) == 10_000
    assert k.bin_counts[0] == 0
    assert k.bin_counts[1] == int((ref["k"] == 0).sum())


# --- the dataset verdict --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def churn_profile() -> mp.Profile:
    ref = generate_batch("churn", dt.date(2026, 3, 1), 20_000)
    return mp.build_profile(ref, CHURN_NUMERIC, CHURN_CATEGORICAL)


def churn_stats(profile: mp.Profile, drift: float, **kw: Any) -> mw.CurrentStats:
    cur = generate_batch("churn", dt.date(2026, 3, 10), 5000, drift=drift)
    return accumulate(profile, cur, chunk_rows=1234, **kw)


def test_stable_churn_batch_does_not_drift(churn_profile):
    report = mv.assess(churn_profile, churn_stats(churn_profile, 0.0))
    assert report.dataset_drift is False
    assert report.drifted == []
    assert report.not_computed == []
    assert report.summary() == "no drift: 0 of 9 features drifted (share 0.00 ≤ 0.30)"


def test_drifted_churn_batch_names_the_shifted_features(churn_profile):
    """generators.churn_batch with drift=1 shifts the contract mix, halves tenure, adds 25 to
    monthly charges and raises support calls; total charges (monthly x tenure) moves with them.
    Internet service, payment method, region and age do not change."""
    report = mv.assess(churn_profile, churn_stats(churn_profile, 1.0))
    assert set(report.drifted) == {
        "contract",
        "tenure_months",
        "monthly_charges",
        "support_calls",
        "total_charges",
    }
    assert report.share == pytest.approx(5 / 9)
    assert report.dataset_drift is True
    assert report.summary() == "drift: 5 of 9 features drifted (share 0.56 > 0.30)"
    assert "psi" in report.feature("contract").detail


def test_importance_weights_the_share(churn_profile):
    stats_ = churn_stats(churn_profile, 1.0)
    drifted = {"contract", "tenure_months", "monthly_charges", "support_calls", "total_charges"}
    # age (stable) carries most of the importance: the weighted share falls under 0.3
    importance = dict.fromkeys(CHURN_NUMERIC + CHURN_CATEGORICAL, 1.0) | {"age": 10.0, "region": -0.5}
    weighted = mp.Profile.from_dict({**churn_profile.to_dict(), "importance": importance})
    report = mv.assess(weighted, stats_)
    # region's negative importance counts as 0
    expected = len(drifted) / (len(drifted) + 10.0 + 2 * 1.0 + 0.0)
    assert report.share == pytest.approx(expected)
    assert report.weighted is True
    assert report.dataset_drift is False
    assert f"(weighted share {expected:.2f} ≤ 0.30)" in report.summary()
    # the same weights on a drifted feature push it up
    importance = importance | {"age": 1.0, "contract": 10.0}
    report = mv.assess(mp.Profile.from_dict({**churn_profile.to_dict(), "importance": importance}), stats_)
    assert report.share == pytest.approx((4 + 10.0) / (4 + 10.0 + 3.0))
    # only zero weights among computed features: equal weights instead
    zero = mp.Profile.from_dict({**churn_profile.to_dict(), "importance": dict.fromkeys(importance, 0.0)})
    report = mv.assess(zero, stats_)
    assert (report.weighted, report.share) == (False, pytest.approx(5 / 9))


def test_prediction_drift_is_reported_apart_and_decides_alone():
    rng = np.random.default_rng(12)
    ref = pd.DataFrame({"x": rng.normal(size=4000)})
    profile = mp.build_profile(ref, ["x"], [], prediction=rng.beta(2, 5, 2000))
    cur = pd.DataFrame({"x": rng.normal(size=3000)})
    report = mv.assess(profile, accumulate(profile, cur, prediction=rng.beta(5, 2, 3000)))
    assert report.drifted == []  # the prediction is not one of the features...
    assert report.share == 0.0
    assert report.prediction.drifted is True
    assert report.dataset_drift is True  # ... but a drifted prediction is dataset drift on its own
    psi = report.prediction.result("psi").value
    assert report.summary().endswith(
        f"prediction drifted: PSI {psi:.2f}, KS {report.prediction.result('ks').value:.2f}"
    )
    # stable predictions
    report = mv.assess(profile, accumulate(profile, cur, prediction=rng.beta(2, 5, 3000)))
    assert (report.prediction.drifted, report.dataset_drift) == (False, False)
    # no predictions passed: not computed, and said so
    report = mv.assess(profile, accumulate(profile, cur))
    assert report.prediction.drifted is None
    assert "prediction not computed (no predictions were given to the accumulator)" in report.summary()


def test_overrides_change_statistic_and_threshold():
    rng = np.random.default_rng(13)
    ref = pd.DataFrame({"x": rng.normal(size=20_000), "c": rng.choice(["a", "b"], 20_000, p=[0.5, 0.5])})
    cur = pd.DataFrame(
        {"x": rng.normal(0.12, 1, 20_000), "c": rng.choice(["a", "b"], 20_000, p=[0.53, 0.47])}
    )
    profile = mp.build_profile(ref, ["x"], ["c"])
    current = accumulate(profile, cur)
    default = mv.assess(profile, current)
    ks = default.feature("x").result("ks")
    assert ks.value < 0.1  # a 0.12-std shift stays under the KS default ...
    assert default.feature("x").drifted is False
    tight = mv.assess(profile, current, overrides={"x": {"statistic": "ks", "threshold": ks.value / 2}})
    fx = tight.feature("x")
    assert fx.drifted is True  # ... and over a tighter one
    assert [r.statistic for r in fx.results if r.decisive] == ["null_rate", "ks"]
    assert fx.result("ks").threshold == ks.value / 2
    assert fx.result("psi").decisive is False
    # Wasserstein decides with its default threshold (0.1 std): the shift is ~0.12 std
    w = mv.assess(profile, current, overrides={"x": {"statistic": "wasserstein"}}).feature("x")
    assert [r.statistic for r in w.results if r.decisive] == ["null_rate", "wasserstein"]
    assert w.drifted is True
    # chi2 on a 3-point shift of 20,000 rows: significant, though no effect size flags it
    assert default.feature("c").drifted is False
    chi = mv.assess(profile, current, overrides={"c": {"statistic": "chi2", "threshold": 0.01}}).feature("c")
    assert chi.result("chi2").value < 0.01
    assert chi.drifted is True


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"nope": {"statistic": "ks"}}, r"unknown feature 'nope'"),
        ({"x": {"statistic": "chi2"}}, r"numeric feature 'x': statistic 'chi2' is not one of"),
        ({"c": {"statistic": "ks"}}, r"categorical feature 'c': statistic 'ks'"),
        ({"x": {"threshold": 0.2}}, r"statistic None is not one of"),
        ({"x": {"statistic": "ks", "threshold": -1}}, r"threshold must be a positive number"),
        ({"x": {"statistic": "ks", "limit": 1}}, r"keys 'statistic' and optional 'threshold'"),
        ({"c": {"statistic": "chi2", "threshold": 5}}, r"p-value below 1"),
    ],
)
def test_invalid_overrides_are_refused(overrides, match):
    ref = mixed_frame(500, 0)
    profile = mp.build_profile(ref, ["x"], ["c"])
    with pytest.raises(DriftError, match=match):
        mv.assess(profile, accumulate(profile, ref), overrides=overrides)


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"numeric": ["x", "nope"]}, DriftError, r"lacks feature column\(s\) \['nope'\]"),
        ({"numeric": ["x"], "categorical": ["x"]}, DriftError, r"both numeric and categorical"),
        ({"numeric": ["c"], "categorical": []}, DriftError, r"'c' is numeric in the drift profile but holds"),
        ({"importance": {"zz": 1.0}}, DriftError, r"importance names unknown feature\(s\) \['zz'\]"),
        ({"grid_size": 2}, ValueError, r"grid_size must be at least 3"),
        ({"bins": 1}, ValueError, r"bins must be between 2"),
    ],
)
def test_build_profile_errors(kwargs, error, match):
    kwargs = {"numeric": ["x"], "categorical": ["c"]} | kwargs
    with pytest.raises(error, match=match):
        mp.build_profile(mixed_frame(200, 0), kwargs.pop("numeric"), kwargs.pop("categorical"), **kwargs)


def test_accumulator_and_assess_errors():
    ref = mixed_frame(500, 0)
    profile = mp.build_profile(ref, ["x"], ["c"])
    acc = mw.Accumulator(profile)
    with pytest.raises(DriftError, match=r"chunk lacks profiled feature column\(s\) \['c'\]"):
        acc.update(ref[["x"]])
    with pytest.raises(DriftError, match=r"'x' is numeric in the drift profile but holds"):
        acc.update(pd.DataFrame({"x": ["a", "b"], "c": ["a", "b"]}))
    with pytest.raises(DriftError, match=r"profile has no prediction distribution"):
        acc.update(ref, prediction=np.zeros(len(ref)))
    with_pred = mp.build_profile(ref, ["x"], ["c"], prediction=np.zeros(10))
    with pytest.raises(DriftError, match=r"prediction has 3 values for a chunk of 500 rows"):
        mw.Accumulator(with_pred).update(ref, prediction=np.zeros(3))
    other = mp.build_profile(ref, ["x", "k"], ["c"])
    with pytest.raises(DriftError, match=r"accumulated against a different profile"):
        mv.assess(other, accumulate(profile, ref))
    with pytest.raises(ValueError, match=r"drift_share_threshold must be in \(0, 1\]"):
        mv.assess(profile, accumulate(profile, ref), drift_share_threshold=0)


# --- label-free performance estimate --------------------------------------------------------------


@pytest.mark.parametrize(
    "draw",
    [
        lambda rng, n: rng.beta(2, 5, n),  # mostly confident negatives
        lambda rng, n: 1 / (1 + np.exp(-rng.normal(0, 2, n))),  # a logistic model's scores
        lambda rng, n: rng.uniform(0, 1, n),
    ],
)
def test_cbpe_matches_realized_metrics_when_calibrated(draw):
    """Labels drawn as Bernoulli(p) make p calibrated by construction: the estimates match what
    the labels then show."""
    rng = np.random.default_rng(14)
    p = draw(rng, 20_000)
    y = (rng.random(len(p)) < p).astype(int)
    assert me.classifier_estimates(p, p >= 0.5)["accuracy"] == pytest.approx(
        np.mean((p >= 0.5) == y), abs=0.02
    )
    assert me.cbpe_roc_auc(p) == pytest.approx(roc_auc_score(y, p), abs=0.02)


def test_cbpe_edge_values():
    assert me.classifier_estimates(np.full(100, 0.5), np.full(100, True))["accuracy"] == 0.5
    assert me.cbpe_roc_auc(np.full(100, 0.5)) == pytest.approx(0.5)  # all ties: half credit
    assert me.classifier_estimates(np.array([0.0, 1.0]), np.array([False, True]))["accuracy"] == 1.0
    assert me.cbpe_roc_auc(np.array([0.0, 1.0, 1.0])) == 1.0  # certain and right
    # two rows: (0.9 positive, 0.2 negative) is ranked right with weight 0.9 * 0.8, the reverse
    # pair wrong with weight 0.2 * 0.1; a row is never paired with itself
    assert me.cbpe_roc_auc(np.array([0.2, 0.9])) == pytest.approx(0.72 / (0.72 + 0.02))
    assert math.isnan(me.cbpe_roc_auc(np.zeros(10)))  # no positives can exist: undefined
    with pytest.raises(DriftError, match=r"1 probabilities are outside \[0, 1\] or missing"):
        me.expected_confusion(np.array([0.2, np.nan]), np.array([False, False]))
    with pytest.raises(DriftError, match=r"non-empty 1-D array"):
        me.cbpe_roc_auc(np.zeros((3, 2)))


def test_report_is_small_enough_to_log(churn_profile):
    """The report carries proportions per bin, not rows: a few kB per feature."""
    report = mv.assess(churn_profile, churn_stats(churn_profile, 1.0))
    buf = io.StringIO()
    json.dump(report.to_dict(), buf)
    assert len(buf.getvalue()) < 5_000 * len(report.features)
