"""Label-free performance estimates (monitor.calibration, monitor.estimates) and their bands
(monitor.performance), on simulated data where the truth is known: labels drawn from known
probabilities, scores that rank like them but are miscalibrated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from mlcycle.core.errors import DriftError
from mlcycle.core.spec import Task
from mlcycle.monitor import calibration as mc
from mlcycle.monitor import estimates as me
from mlcycle.monitor import performance as mp


def draw(rng: np.random.Generator, n: int, *, slope: float = 3.0, power: float = 0.4):
    """(miscalibrated scores, labels, true probabilities): labels come from the true
    probabilities; the scores are those pushed through a power (same order, wrong values)."""
    x = rng.normal(0.0, 1.0, n)
    p = 1.0 / (1.0 + np.exp(-(slope * x - 2.5)))
    y = (rng.random(n) < p).astype("float64")
    return p**power, y, p


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_calibration_brings_the_auc_estimate_to_the_realized_auc(rng):
    s, y, _ = draw(rng, 40_000)
    cal = mc.fit_calibrator(s, y)
    assert cal["method"] == "isotonic"
    calibrated, raw = [], []
    for _ in range(8):
        s2, y2, _ = draw(rng, 50_000)
        realized = roc_auc_score(y2, s2)
        calibrated.append(abs(me.cbpe_roc_auc(mc.calibrate(cal, s2)) - realized))
        raw.append(abs(me.cbpe_roc_auc(s2) - realized))
    assert np.mean(calibrated) < 0.005
    assert np.mean(raw) > 5 * np.mean(calibrated)  # the uncalibrated estimate is far off
    # The expected calibration error says calibration was needed, and that it worked.
    assert mc.expected_calibration_error(s, y) > 0.1
    assert mc.expected_calibration_error(mc.cross_fitted(s, y), y) < 0.02


def test_the_calibrator_is_data_and_falls_back_on_small_holdouts(rng):
    s, y, _ = draw(rng, 400)
    small = mc.fit_calibrator(s, y)
    assert small["method"] == "sigmoid" and set(small) >= {"a", "b"}
    import json

    assert json.loads(json.dumps(small)) == small  # stored in the profile's JSON
    assert np.all(np.diff(mc.calibrate(small, np.linspace(0, 1, 50))) >= 0)
    tiny = mc.fit_calibrator(np.array([0.1, 0.2, 0.9]), np.array([0.0, 0.0, 1.0]))
    assert tiny["method"] == "none" and "rarer class" in tiny["reason"]
    assert np.array_equal(mc.calibrate(tiny, [0.3, 0.7]), [0.3, 0.7])
    with pytest.raises(DriftError, match="0 or 1"):
        mc.fit_calibrator([0.2, 0.4], [0, 2])
    with pytest.raises(DriftError, match="unknown calibration method"):
        mc.calibrate({"method": "magic"}, [0.5])


def test_isotonic_data_predicts_like_scikit_learn(rng):
    from sklearn.isotonic import IsotonicRegression

    s, y, _ = draw(rng, 5000)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y)
    probe = np.concatenate([rng.random(1000), [-0.5, 1.5]])
    assert np.allclose(mc.calibrate(mc.fit_calibrator(s, y), probe), iso.predict(probe))


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_every_estimated_metric_matches_the_realized_one(rng, threshold):
    """Labels drawn from calibrated probabilities: the expected confusion matrix is the
    realized one up to sampling error, at any decision threshold."""
    _, y, p = draw(rng, 200_000)
    predicted = p >= threshold
    est = me.classifier_estimates(p, predicted)
    real = me.classifier_realized(y, p, threshold)
    assert real["precision"] == pytest.approx(precision_score(y, predicted))
    assert real["recall"] == pytest.approx(recall_score(y, predicted))
    assert real["f1"] == pytest.approx(f1_score(y, predicted))
    for metric in me.CLASSIFIER_METRICS:
        assert est[metric] == pytest.approx(real[metric], abs=0.006), metric
    for cell in ("tp", "fp", "fn", "tn"):
        assert est["confusion"][cell] == pytest.approx(real["confusion"][cell], rel=0.03, abs=50)


def test_the_band_holds_the_reference_chunks_and_excludes_a_degraded_period(rng):
    s, y, _ = draw(rng, 50_000)
    ref = mp.reference_performance(
        Task.CLASSIFICATION, y, s, threshold=0.5, chunk_rows=5000, primary="roc_auc"
    )
    assert ref["samples"] == "chunks" and ref["calibration"]["ece_after"] < ref["calibration"]["ece_before"]
    auc = ref["bands"]["roc_auc"]
    assert auc["lower"] < auc["mean"] < auc["upper"] and auc["k"] == 3.0
    assert auc["estimate_lower"] < auc["estimate_mean"] < auc["estimate_upper"]
    for idx in mp.reference_samples(len(y), 5000)[0]:
        assert mp.judge(ref, "roc_auc", roc_auc_score(y[idx], s[idx]), 5000, 3.0)["status"] == "within"
    # A degraded period: the model's scores carry less signal (the same miscalibration).
    for _ in range(5):
        sd, _, _ = draw(rng, 5000, slope=2.2)
        estimate = me.cbpe_roc_auc(mc.calibrate(ref["calibration"], sd))
        out = mp.judge(ref, "roc_auc", estimate, 5000, 3.0, source="estimated")
        assert out["status"] == "worse", out


def test_small_holdouts_are_bootstrapped_and_a_small_sample_is_too_few_rows_to_tell(rng):
    s, y, _ = draw(rng, 3000)
    ref = mp.reference_performance(
        Task.CLASSIFICATION, y, s, threshold=0.5, chunk_rows=5000, primary="roc_auc"
    )
    assert ref["samples"] == "bootstrap" and ref["bands"]["roc_auc"]["rows"] == 3000
    # 500 labelled rows with a handful of positives: a lower AUC is not a verdict.
    s2, y2, _ = draw(rng, 500, slope=2.6)
    report = mp.assess(Task.CLASSIFICATION, ref, s2, y2, [("all", np.arange(500))], min_rows=100, k=3.0,
                       primary="roc_auc", holdout_value=ref["bands"]["roc_auc"]["mean"], max_drop=0.01)  # fmt: skip
    realized = report["window"]["realized"]["roc_auc"]
    assert realized["status"] == "within" and realized["sampling_error"] > 0.01
    assert report["alerts"] == []  # the drop is inside 3 sampling errors: neither rule fires
    few = mp.assess(Task.CLASSIFICATION, ref, s2[:50], y2[:50], [], min_rows=100, k=3.0, primary="roc_auc")
    assert few["too_few_rows"] and few["window"]["estimated"]["roc_auc"]["status"] == mp.TOO_FEW


def test_an_estimate_alert_names_its_rule_and_scope(rng):
    s, y, _ = draw(rng, 50_000)
    ref = mp.reference_performance(
        Task.CLASSIFICATION, y, s, threshold=0.5, chunk_rows=5000, primary="roc_auc"
    )
    healthy, _, _ = draw(rng, 15_000)
    degraded, _, _ = draw(rng, 5000, slope=2.2)
    scores = np.concatenate([healthy, degraded])  # the drop starts in the last chunk
    chunks = [(f"c{i}", np.arange(i * 5000, (i + 1) * 5000)) for i in range(4)]
    unlabelled = np.full(len(scores), np.nan)
    report = mp.assess(
        Task.CLASSIFICATION, ref, scores, unlabelled, chunks, min_rows=100, k=3.0, primary="roc_auc"
    )
    assert [c["estimated"]["roc_auc"]["status"] for c in report["chunks"]] == ["within"] * 3 + ["worse"]
    fired = {(a["rule"], a["scope"], a["source"]) for a in report["alerts"]}
    assert ("band", "c3", "estimated") in fired
    assert all(a["source"] == "estimated" for a in report["alerts"])
    assert "outside its band" in mp.alert_text(report["alerts"][0])


def test_the_exported_loss_model_predicts_like_scikit_learn(rng):
    X = rng.normal(size=(3000, 4))
    target = np.abs(X[:, 0]) + rng.normal(0, 0.1, 3000)
    gb = GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=0).fit(X, target)
    probe = rng.normal(size=(500, 4))
    assert np.allclose(me._predict(me._export(gb), probe), gb.predict(probe))


def test_dle_follows_heteroscedastic_noise(rng):
    """The error of a regressor grows with x; a window of larger x has a larger error, and the
    loss models estimate it without labels."""

    def frame(n: int, lo: float, hi: float):
        x = rng.uniform(lo, hi, n)
        region = rng.choice(["a", "b"], n)
        y = 2.0 * x + rng.normal(0.0, 0.2 + x, n) + (region == "b")
        prediction = 2.0 * x + 0.5
        return pd.DataFrame({"x": x, "region": region}), y, prediction

    f, y, pred = frame(20_000, 0.0, 2.0)
    ref = mp.reference_performance(Task.REGRESSION, y, pred, threshold=0.5, chunk_rows=2000, frame=f,
                                   numeric=["x"], categorical=["region"], primary="rmse")  # fmt: skip
    for metric in ("mae", "rmse"):
        assert ref["bands"][metric]["estimate_mae"] < 0.05 * ref["bands"][metric]["mean"]
    f2, y2, pred2 = frame(10_000, 1.0, 2.0)  # noisier rows only
    losses = me.dle_losses(ref["dle"], me.dle_inputs(ref["dle"], f2, pred2))
    est, real = me.regressor_estimates(losses), me.regressor_realized(y2, pred2)
    assert est["mae"] == pytest.approx(real["mae"], rel=0.05)
    assert est["rmse"] == pytest.approx(real["rmse"], rel=0.05)
    report = mp.assess(Task.REGRESSION, ref, pred2, np.full(len(y2), np.nan), [], losses=losses, min_rows=100,
                       k=3.0, primary="rmse")  # fmt: skip
    assert {(a["metric"], a["source"]) for a in report["alerts"]} == {
        ("mae", "estimated"),
        ("rmse", "estimated"),
    }


def test_a_million_rows_like_the_reference_raise_no_alert_and_a_small_shift_is_caught(rng):
    """No false alarms at scale: the band of a whole window does not shrink below the
    uncertainty of the reference itself, and the feature verdicts stay on effect sizes."""
    from mlcycle.monitor.profile import build_profile
    from mlcycle.monitor.verdict import assess
    from mlcycle.monitor.window import Accumulator

    def features(n: int, shift: float = 0.0) -> pd.DataFrame:
        return pd.DataFrame({
            "a": rng.normal(shift, 1.0, n), "b": rng.gamma(2.0, 3.0, n),
            "c": rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2]),
        })  # fmt: skip

    profile = build_profile(features(20_000), ["a", "b"], ["c"])
    big = 1_000_000
    acc = Accumulator(profile)
    for _ in range(0, big, 200_000):
        acc.update(features(200_000))
    assert not assess(profile, acc.result()).dataset_drift
    assert not [f for f in assess(profile, acc.result()).features if f.drifted]
    shifted = Accumulator(profile)
    shifted.update(features(200_000, shift=0.35))
    assert "a" in [f.feature for f in assess(profile, shifted.result()).features if f.drifted]

    s, y, _ = draw(rng, 20_000)
    ref = mp.reference_performance(
        Task.CLASSIFICATION, y, s, threshold=0.5, chunk_rows=5000, primary="roc_auc"
    )
    s_big, _, _ = draw(rng, big)
    chunks = [(f"c{i}", np.arange(i * 5000, (i + 1) * 5000)) for i in range(big // 5000)]
    report = mp.assess(Task.CLASSIFICATION, ref, s_big, np.full(big, np.nan), chunks, min_rows=100, k=3.0,
                       primary="roc_auc", holdout_value=ref["bands"]["roc_auc"]["mean"], max_drop=0.05)  # fmt: skip
    assert report["alerts"] == [], report["alerts"]
    s_worse, _, _ = draw(rng, big, slope=2.6)  # about a point and a half of AUC lower
    worse = mp.assess(Task.CLASSIFICATION, ref, s_worse, np.full(big, np.nan), chunks, min_rows=100, k=3.0,
                      primary="roc_auc")  # fmt: skip
    assert ("band", "window", "estimated", "roc_auc") in {
        (a["rule"], a["scope"], a["source"], a["metric"]) for a in worse["alerts"]
    }


def test_the_sampling_error_grows_with_fewer_rows_and_fewer_positives(rng):
    s, y, _ = draw(rng, 50_000)
    ref = mp.reference_performance(
        Task.CLASSIFICATION, y, s, threshold=0.5, chunk_rows=5000, primary="roc_auc"
    )
    at = {n: mp.band(ref, "roc_auc", n, 3.0)["sampling_error"] for n in (500, 5000, 50_000)}
    assert at[500] == pytest.approx(at[5000] * np.sqrt(10)) and at[5000] == pytest.approx(
        at[50_000] * np.sqrt(10)
    )
    balanced = ref["positive_rate"] * 500
    rare = mp.band(ref, "roc_auc", 500, 3.0, positives=17)["sampling_error"]
    assert rare > 1.5 * mp.band(ref, "roc_auc", 500, 3.0, positives=balanced)["sampling_error"]


def test_chunks_by_rows_or_by_time_and_a_profile_without_estimation():
    import datetime as dt

    from mlcycle.core.spec import get_spec
    from mlcycle.flows import monitor

    spec = get_spec("churn")
    times = np.array(
        [np.datetime64(dt.datetime(2026, 12, 1, h)) for h in (0, 1, 7, 13, 23, 23)], dtype="datetime64[ns]"
    )
    streamed = {"rows": 6, "times": times}
    by_rows = monitor.chunk_indices(
        spec.model_copy(update={"monitor": spec.monitor.model_copy(update={"chunk_rows": 4})}), streamed
    )
    assert [(label, idx.tolist()) for label, idx in by_rows] == [
        ("rows 0-3", [0, 1, 2, 3]),
        ("rows 4-5", [4, 5]),
    ]
    six_hours = spec.model_copy(update={"monitor": spec.monitor.model_copy(update={"chunk_period": "6h"})})
    by_time = monitor.chunk_indices(six_hours, streamed)
    assert [(label, idx.tolist()) for label, idx in by_time] == [
        ("2026-12-01 00:00", [0, 1]), ("2026-12-01 06:00", [2]), ("2026-12-01 12:00", [3]),
        ("2026-12-01 18:00", [4, 5]),
    ]  # fmt: skip
    old = monitor.performance(spec, {"reference_performance": {"metrics": {"roc_auc": 0.8}}}, streamed)
    assert "predates performance estimation: retrain it" in old["note"]
