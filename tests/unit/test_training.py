"""Training: the spec's pipeline, a reproducible split, the fit, and the skops allow-list."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from threadpoolctl import threadpool_limits

from mlcycle.core import settings
from mlcycle.core.errors import SpecError
from mlcycle.core.spec import ModelSpec, Task, get_spec, parse_spec
from mlcycle.data.generators import generate_batch
from mlcycle.ml import training as tr


@pytest.fixture(autouse=True)
def _one_thread():
    """Fit on one thread: the data is tiny, and OpenMP thread start-up and spin-waiting would
    dominate the runtime (by 10x or more on a busy machine)."""
    with threadpool_limits(limits=1):
        yield


def make_spec(model: str = "churn", **changes: Any) -> ModelSpec:
    """The shipped spec with top-level sections replaced or updated (dicts are merged one level)."""
    raw = yaml.safe_load((settings.specs_dir() / f"{model}.yaml").read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return parse_spec(raw, Path(f"{model}.yaml"))


def frames(model: str, days: int, rows: int, **options: Any) -> pd.DataFrame:
    start = dt.date(2026, 2, 1)
    return pd.concat(
        [generate_batch(model, start + dt.timedelta(days=i), rows, **options) for i in range(days)],
        ignore_index=True,
    )


# --- pipeline -------------------------------------------------------------------------------------


def test_build_pipeline_uses_spec_params():
    """Without overrides the estimator gets exactly the spec's params, behind the preprocessing."""
    spec = make_spec()
    pipe = tr.build_pipeline(spec)
    assert [name for name, _ in pipe.steps] == ["preprocess", "model"]
    model = pipe.named_steps["model"]
    assert type(model).__name__ == "HistGradientBoostingClassifier"
    assert model.get_params()["max_iter"] == 150
    assert model.get_params()["learning_rate"] == 0.08
    columns = {name: cols for name, _, cols in pipe.named_steps["preprocess"].transformers}
    assert columns == {"num": spec.features.numeric, "cat": spec.features.categorical}


def test_build_pipeline_respects_overrides():
    """Overrides replace single params and keep the rest of the spec's params."""
    spec = make_spec()
    model = tr.build_pipeline(spec, {"max_iter": 7, "learning_rate": 0.5}).named_steps["model"]
    assert model.get_params()["max_iter"] == 7
    assert model.get_params()["learning_rate"] == 0.5
    assert model.get_params()["max_leaf_nodes"] == 31
    assert spec.estimator.params["max_iter"] == 150  # the spec itself is unchanged


def test_only_categorical_features():
    """A spec with only categorical features builds a single one-hot branch."""
    spec = make_spec(features={"numeric": [], "categorical": ["contract", "region"]})
    transformers = tr.build_pipeline(spec).named_steps["preprocess"].transformers
    assert [name for name, _, _ in transformers] == ["cat"]


def test_bad_override_is_a_spec_error():
    """A parameter the estimator does not take is a SpecError naming the model and the class."""
    with pytest.raises(
        SpecError,
        match=r"model churn: the estimator cannot be built: estimator\.params\.n_trees: "
        r"HistGradientBoostingClassifier takes no parameter 'n_trees'\. Fix the run's estimator_params",
    ):
        tr.build_pipeline(make_spec(), {"n_trees": 10})


def test_bad_spec_param_is_a_spec_error():
    """The same check applies to params written in the spec."""
    spec = make_spec(
        estimator={"class": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"depth": 3}}
    )
    with pytest.raises(SpecError, match=r"estimator\.params\.depth: .* takes no parameter 'depth'"):
        tr.build_pipeline(spec)


@pytest.mark.parametrize("cls", ["sklearn.ensemble.NoSuchClassifier", "sklearn.nosuchmodule.ThingClassifier"])
def test_estimator_that_cannot_be_imported(cls):
    """A class path inside sklearn that does not exist is a SpecError, not an ImportError."""
    spec = make_spec(estimator={"class": cls, "params": {}})
    with pytest.raises(SpecError, match=r"cannot be imported; check the module and class name"):
        tr.build_pipeline(spec)


# --- split ----------------------------------------------------------------------------------------


def test_time_split_puts_latest_rows_in_holdout():
    """Time split: the holdout is the latest rows (ties broken by key), whatever the input order."""
    spec = make_spec()
    df = frames("churn", days=5, rows=40).sample(frac=1.0, random_state=3)
    train, holdout = tr.split(df, spec)
    assert len(holdout) == round(200 * 0.2)
    assert len(train) + len(holdout) == 200
    assert train["event_date"].max() <= holdout["event_date"].min()
    # 40 holdout rows = the whole last day
    assert set(holdout["event_date"]) == {pd.Timestamp("2026-02-05")}
    assert list(holdout["customer_id"]) == sorted(holdout["customer_id"])
    assert set(train["customer_id"]).isdisjoint(holdout["customer_id"])


def test_time_split_within_a_day_uses_the_key():
    """With one day only, the holdout is the rows with the largest keys (a stable, total order)."""
    spec = make_spec(data={"holdout_fraction": 0.25})
    df = generate_batch("churn", dt.date(2026, 2, 1), 40)
    _, holdout = tr.split(df.iloc[::-1], spec)
    assert list(holdout["customer_id"]) == sorted(df["customer_id"])[30:]


def test_hash_split_is_stable_and_order_independent():
    """Hash split: the same keys land in the holdout across calls and whatever the row order."""
    spec = make_spec("demand")
    df = frames("demand", days=2, rows=500)
    _, first = tr.split(df, spec)
    _, again = tr.split(df, spec)
    _, shuffled = tr.split(df.sample(frac=1.0, random_state=11), spec)
    assert list(first["row_id"]) == list(again["row_id"])
    assert set(first["row_id"]) == set(shuffled["row_id"])
    assert 0.15 < len(first) / len(df) < 0.25


def test_hash_split_keeps_a_row_on_its_side_as_data_grows():
    """Adding rows never moves an old row between train and holdout."""
    spec = make_spec("demand")
    small = frames("demand", days=1, rows=300)
    big = frames("demand", days=3, rows=300)
    _, h_small = tr.split(small, spec)
    _, h_big = tr.split(big, spec)
    assert set(h_small["row_id"]) == set(h_big["row_id"]) & set(small["row_id"])


def test_hash_split_seed_changes_the_holdout():
    """Another split_seed draws another holdout."""
    df = frames("demand", days=1, rows=500)
    _, a = tr.split(df, make_spec("demand"))
    _, b = tr.split(df, make_spec("demand", data={"split_seed": 1}))
    assert set(a["row_id"]) != set(b["row_id"])


def test_split_needs_twenty_rows():
    """Fewer than 20 rows cannot be trained on."""
    with pytest.raises(SpecError, match="only 19 rows; training needs at least 20"):
        tr.split(generate_batch("churn", dt.date(2026, 2, 1), 19), make_spec())


# --- fit ------------------------------------------------------------------------------------------


def test_train_fits_a_useful_model():
    """A small window trains a model that beats chance on the holdout and records its params."""
    from mlcycle.ml.evaluation import metric_value, scores

    spec = make_spec()
    result = tr.train(frames("churn", days=3, rows=300), spec, {"max_iter": 30})
    assert len(result.train) == 720
    assert len(result.holdout) == 180
    assert result.params["model.max_iter"] == 30
    s = scores(result.pipeline, result.holdout[spec.features.all], spec.task)
    assert metric_value("roc_auc", result.holdout["churned"].to_numpy(), s) > 0.65


def test_train_missing_column():
    """Data without a spec column is refused, naming the missing column."""
    df = frames("churn", days=1, rows=50).drop(columns=["age"])
    with pytest.raises(SpecError, match=r"lacks columns \['age'\] named in the spec"):
        tr.train(df, make_spec())


def test_train_single_class():
    """A classifier cannot learn from one class."""
    df = frames("churn", days=1, rows=50)
    df["churned"] = 0
    with pytest.raises(SpecError, match="single class"):
        tr.train(df, make_spec())


# --- skops allow-list -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "params", "expected"),
    [
        ("churn", {"max_iter": 5}, "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"),
        ("demand", {"n_estimators": 3}, "sklearn.tree._tree.Tree"),
    ],
)
def test_trusted_types_of_shipped_models(model, params, expected):
    """The shipped estimators need only allow-listed skops types, and their tree type is among them."""
    spec = make_spec(model)
    result = tr.train(frames(model, days=1, rows=200), spec, params)
    trusted = tr.trusted_types_for(result.pipeline, spec)
    assert expected in trusted
    assert set(trusted) <= set(tr.SKOPS_TRUSTED_TYPES)
    assert trusted == sorted(trusted)


def test_trusted_types_refuses_a_type_outside_the_allow_list():
    """MLPClassifier saves its Adam optimiser, which is not allow-listed: a SpecError names it."""
    spec = make_spec(estimator={"class": "sklearn.neural_network.MLPClassifier", "params": {"max_iter": 5}})
    df = frames("churn", days=1, rows=200)
    pipe = tr.build_pipeline(spec)
    with warnings.catch_warnings():  # too few iterations to converge, on purpose
        warnings.simplefilter("ignore")
        pipe.fit(df[spec.features.all], df["churned"])
    with pytest.raises(
        SpecError, match=r"sklearn\.neural_network\._stochastic_optimizers\.AdamOptimizer"
    ) as err:
        tr.trusted_types_for(pipe, spec)
    assert "SKOPS_TRUSTED_TYPES" in str(err.value)
    assert "model churn" in str(err.value)


@pytest.mark.parametrize("model", ["churn", "demand"])
def test_batched_permutation_importance_equals_scikit_learns(model):
    """One stacked prediction gives what scikit-learn's permutation_importance gives."""
    from sklearn.inspection import permutation_importance

    from mlcycle.monitor.reference import PERMUTATION_REPEATS, permutation_importance_batched

    spec = get_spec(model)
    df = generate_batch(model, dt.date(2026, 3, 1), 1200, seed=3)
    result = tr.train(df, spec)
    sample = result.holdout.head(300)
    X, y = sample[spec.features.all], sample[spec.data.target]
    scoring = "roc_auc" if spec.task is Task.CLASSIFICATION else "neg_root_mean_squared_error"
    expected = permutation_importance(
        result.pipeline, X, y, scoring=scoring, n_repeats=PERMUTATION_REPEATS, random_state=0
    ).importances_mean
    got = permutation_importance_batched(result.pipeline, X, y.to_numpy(), spec.task)
    assert got == pytest.approx(expected, abs=1e-12)
    assert np.abs(got).max() > 0  # a model that uses its features: the check is not vacuous
