"""Evaluation: the gate's metrics equal scikit-learn's, and the paired bootstrap reads a
better, equal or worse candidate correctly whatever the metric's direction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.dummy import DummyClassifier, DummyRegressor

from mlcycle.core.spec import METRICS, Task
from mlcycle.ml.evaluation import all_metrics, latency_ms_per_1k, metric_value, paired_bootstrap, scores

# A tiny classification example whose numbers can be checked by hand.
Y_CLS = np.array([0, 0, 1, 1])
S_CLS = np.array([0.1, 0.4, 0.35, 0.8])
# scikit-learn's documented regression example.
Y_REG = np.array([3.0, -0.5, 2.0, 7.0])
P_REG = np.array([2.5, 0.0, 2.0, 8.0])


def test_classification_metrics_match_sklearn():
    """Every classification metric equals scikit-learn on the same scores (0.5 cut for labels)."""
    got = all_metrics(Task.CLASSIFICATION, Y_CLS, S_CLS)
    assert set(got) == {m for m, (t, _) in METRICS.items() if Task.CLASSIFICATION in t}
    labels = (S_CLS >= 0.5).astype(int)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(Y_CLS, S_CLS))
    assert got["average_precision"] == pytest.approx(skm.average_precision_score(Y_CLS, S_CLS))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(Y_CLS, labels))
    assert got["f1"] == pytest.approx(skm.f1_score(Y_CLS, labels))
    assert got["log_loss"] == pytest.approx(skm.log_loss(Y_CLS, S_CLS))
    assert got["brier"] == pytest.approx(skm.brier_score_loss(Y_CLS, S_CLS))
    # and by hand: one of four positive/negative pairs is mis-ordered (0.35 < 0.4)
    assert got["roc_auc"] == pytest.approx(0.75)
    assert got["accuracy"] == pytest.approx(0.75)  # only 0.35 falls on the wrong side of 0.5
    assert got["brier"] == pytest.approx((0.1**2 + 0.4**2 + 0.65**2 + 0.2**2) / 4)


def test_regression_metrics_match_sklearn():
    """rmse, mae and r2 equal scikit-learn (and the documented example values)."""
    got = all_metrics(Task.REGRESSION, Y_REG, P_REG)
    assert set(got) == {"rmse", "mae", "r2"}
    assert got["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(Y_REG, P_REG)))
    assert got["rmse"] == pytest.approx(math.sqrt(0.375))
    assert got["mae"] == pytest.approx(0.5)
    assert got["r2"] == pytest.approx(skm.r2_score(Y_REG, P_REG))


def test_log_loss_is_finite_for_certain_wrong_scores():
    """Scores of exactly 0 or 1 are clipped, so a confident mistake costs a lot but stays finite."""
    value = metric_value("log_loss", np.array([1, 0]), np.array([0.0, 1.0]))
    assert math.isfinite(value)
    assert value > 30


def test_roc_auc_of_one_class_is_nan():
    """AUC is undefined with a single class; it is NaN (which the gate fails as 'not measured')."""
    assert math.isnan(metric_value("roc_auc", np.array([1, 1, 1]), np.array([0.2, 0.5, 0.9])))


def test_unknown_metric():
    """Asking for a metric that does not exist names the known ones."""
    with pytest.raises(KeyError, match="unknown metric 'auc'"):
        metric_value("auc", Y_CLS, S_CLS)


def test_scores_and_latency_use_the_task():
    """Classifiers are scored by positive-class probability, regressors by prediction; latency is positive."""
    import pandas as pd

    X = pd.DataFrame({"a": np.arange(10.0)})
    clf = DummyClassifier(strategy="prior").fit(X, [0] * 7 + [1] * 3)
    np.testing.assert_allclose(scores(clf, X, Task.CLASSIFICATION), np.full(10, 0.3))
    reg = DummyRegressor(strategy="constant", constant=4.5).fit(X, np.zeros(10))
    np.testing.assert_allclose(scores(reg, X, Task.REGRESSION), np.full(10, 4.5))
    assert latency_ms_per_1k(reg, X, Task.REGRESSION, repeats=2) > 0


# --- paired bootstrap -----------------------------------------------------------------------------


def classification_case(n: int = 400, seed: int = 1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    good = np.clip(0.5 + 0.35 * (2 * y - 1) + rng.normal(0, 0.15, n), 0.01, 0.99)  # separates classes well
    bad = rng.uniform(0.01, 0.99, n)  # coin flip
    return y, good, bad


def regression_case(n: int = 400, seed: int = 2):
    rng = np.random.default_rng(seed)
    y = rng.normal(50, 10, n)
    return y, y + rng.normal(0, 1, n), y + rng.normal(0, 8, n)


CASES = {
    "roc_auc": classification_case,  # higher is better
    "log_loss": classification_case,  # lower is better
    "rmse": regression_case,  # lower is better
    "r2": regression_case,  # higher is better
}


@pytest.mark.parametrize("metric", list(CASES))
def test_bootstrap_clearly_better_candidate(metric):
    """A much better candidate is not worse in (nearly) every resample, with a positive gain interval."""
    y, good, bad = CASES[metric]()
    out = paired_bootstrap(metric, y, good, bad, n=100)
    assert out["prob_not_worse"] >= 0.99
    assert out["gain_p05"] > 0
    assert out["gain_p95"] >= out["gain_p05"]
    assert out["resamples"] == 100


@pytest.mark.parametrize("metric", list(CASES))
def test_bootstrap_clearly_worse_candidate(metric):
    """A much worse candidate is not worse in (almost) no resample, with a negative gain interval."""
    y, good, bad = CASES[metric]()
    out = paired_bootstrap(metric, y, bad, good, n=100)
    assert out["prob_not_worse"] <= 0.01
    assert out["gain_p95"] < 0


@pytest.mark.parametrize("metric", list(CASES))
def test_bootstrap_identical_models(metric):
    """Identical scores are never worse: probability exactly 1 and a zero gain interval."""
    y, good, _ = CASES[metric]()
    out = paired_bootstrap(metric, y, good, good.copy(), n=50)
    assert out["prob_not_worse"] == 1.0
    assert out["gain_p05"] == 0.0
    assert out["gain_p95"] == 0.0


def test_bootstrap_is_reproducible_by_seed():
    """The same seed gives the same result; another seed resamples differently."""
    y, good, _ = classification_case(n=100)
    noisy = np.clip(good + np.random.default_rng(5).normal(0, 0.3, len(y)), 0, 1)
    a = paired_bootstrap("roc_auc", y, noisy, good, n=60, seed=7)
    assert a == paired_bootstrap("roc_auc", y, noisy, good, n=60, seed=7)
    assert a != paired_bootstrap("roc_auc", y, noisy, good, n=60, seed=8)


def test_bootstrap_without_any_valid_resample_is_nan():
    """When no resample can be scored (one-class holdout for AUC) the result is NaN, not '0 % not worse'.

    The gate turns a NaN probability into 'not measured'; 0.0 would claim the candidate
    lost every one of zero comparisons.
    """
    y = np.ones(30, dtype=int)
    out = paired_bootstrap("roc_auc", y, np.linspace(0, 1, 30), np.linspace(1, 0, 30), n=20)
    assert out["resamples"] == 0
    assert math.isnan(out["gain_p05"])
    assert math.isnan(out["prob_not_worse"])


def test_slice_metrics_measure_both_models_on_the_same_rows_of_each_slice():
    import numpy as np
    import pandas as pd

    from mlcycle.ml.evaluation import metric_value, slice_metrics

    rng = np.random.default_rng(0)
    n = 1000
    frame = pd.DataFrame({"region": rng.choice(["north", "south", "east"], n, p=[0.6, 0.35, 0.05])})
    frame.loc[:9, "region"] = None
    y = rng.integers(0, 2, n)
    good, bad = np.clip(y * 0.6 + rng.random(n) * 0.4, 0, 1), rng.random(n)
    out = slice_metrics("roc_auc", y, frame, columns=["region"], candidate=good, champion=bad, min_rows=100)
    assert [s["value"] for s in out][:2] == ["north", "south"]  # largest first
    by = {s["value"]: s for s in out}
    north = (frame["region"] == "north").to_numpy()
    assert by["north"]["rows"] == north.sum()
    assert by["north"]["candidate"] == pytest.approx(metric_value("roc_auc", y[north], good[north]))
    assert by["north"]["champion"] == pytest.approx(metric_value("roc_auc", y[north], bad[north]))
    assert by["east"]["rows"] < 100 and by["east"]["candidate"] is None  # listed, not measured
    assert by["<missing>"]["rows"] == 10
    alone = slice_metrics(
        "roc_auc", y, frame, columns=["region"], candidate=good, champion=None, min_rows=100
    )
    assert all(s["champion"] is None for s in alone)
