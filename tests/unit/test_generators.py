"""Sample-data generators: reproducible per (day, seed); drift, corruption and shuffled labels on demand."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from mlcycle.core import settings
from mlcycle.core.spec import get_spec
from mlcycle.data.generators import GENERATORS, generate_batch

DAY = dt.date(2026, 3, 2)
MODELS = sorted(GENERATORS)


@pytest.mark.parametrize("model", MODELS)
def test_same_day_and_seed_is_identical(model):
    """The same (generator, day, seed) gives the same frame, byte for byte."""
    pd.testing.assert_frame_equal(generate_batch(model, DAY, 300), generate_batch(model, DAY, 300))
    pd.testing.assert_frame_equal(
        generate_batch(model, DAY, 300, seed=4, drift=0.3), generate_batch(model, DAY, 300, seed=4, drift=0.3)
    )


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("other_day", "other_seed"), [(DAY + dt.timedelta(days=1), 0), (DAY, 1)])
def test_other_day_or_seed_differs(model, other_day, other_seed):
    """Another day or another seed draws other values (and other keys for another day)."""
    _, key, target, numeric = GENERATORS[model]
    a = generate_batch(model, DAY, 300)
    b = generate_batch(model, other_day, 300, seed=other_seed)
    assert not np.array_equal(a[numeric].to_numpy(), b[numeric].to_numpy())
    assert not np.array_equal(a[target].to_numpy(), b[target].to_numpy())
    if other_day != DAY:
        assert set(a[key]).isdisjoint(b[key])


@pytest.mark.parametrize("model", MODELS)
def test_batch_matches_its_spec(model):
    """A batch has the key, time, target and every feature its shipped spec names, with unique keys."""
    spec = get_spec(model, settings.specs_dir())
    df = generate_batch(model, DAY, 250)
    assert len(df) == 250
    needed = {spec.data.key_column, spec.data.time_column, spec.data.target, *spec.features.all}
    assert needed <= set(df.columns)
    assert df[spec.data.key_column].is_unique
    assert (df[spec.data.time_column].dt.normalize() == pd.Timestamp(DAY)).all()  # within the day
    assert GENERATORS[model][1] == spec.data.key_column
    assert GENERATORS[model][2] == spec.data.target


@pytest.mark.parametrize(
    ("model", "column", "min_shift"), [("churn", "monthly_charges", 20.0), ("demand", "price", 0.6)]
)
def test_drift_shifts_the_distribution(model, column, min_shift):
    """drift=1 moves the mean of a key feature up well beyond sampling noise; drift=0 is the baseline."""
    base = generate_batch(model, DAY, 3000)[column]
    drifted = generate_batch(model, DAY, 3000, drift=1.0)[column]
    half = generate_batch(model, DAY, 3000, drift=0.5)[column]
    noise = 4 * base.std() / np.sqrt(len(base))
    assert drifted.mean() - base.mean() > max(min_shift, noise)
    assert base.mean() < half.mean() < drifted.mean()


def test_churn_drift_shifts_the_contract_mix():
    """Churn drift moves customers towards month-to-month contracts."""
    base = generate_batch("churn", DAY, 3000)
    drifted = generate_batch("churn", DAY, 3000, drift=1.0)
    share = {
        name: (df["contract"] == "month-to-month").mean() for name, df in (("base", base), ("drift", drifted))
    }
    assert share["drift"] - share["base"] > 0.15


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("rows", [20, 400, 1000])
def test_corrupt_injects_null_keys_and_bad_values(model, rows):
    """corrupt nulls the key in n//2 rows and pushes the numeric column negative in n = rows//20 rows."""
    _, key, _, numeric = GENERATORS[model]
    clean = generate_batch(model, DAY, rows)
    bad = generate_batch(model, DAY, rows, corrupt=True)
    n = max(1, rows // 20)
    assert clean[key].notna().all()
    assert bad[key].isna().sum() == max(1, n // 2)
    assert (clean[numeric] >= 0).all()
    assert (bad[numeric] < -1000).sum() == n
    assert (bad[numeric] == clean[numeric]).sum() == rows - n
    # the other rows keep their keys
    kept = bad[key].notna()
    assert (bad.loc[kept, key] == clean.loc[kept, key]).all()


@pytest.mark.parametrize("model", MODELS)
def test_corrupt_adds_an_unknown_category(model):
    """corrupt writes '???' into a categorical column, which no contract allows."""
    bad = generate_batch(model, DAY, 600, corrupt=True)
    marked = [c for c in bad.columns if (bad[c].astype("object") == "???").any()]
    assert len(marked) == 1
    assert (bad[marked[0]] == "???").sum() == max(1, (600 // 20) // 3)


@pytest.mark.parametrize("model", MODELS)
def test_shuffle_labels_keeps_the_label_distribution(model):
    """shuffle_labels permutes the target: same values and rate, other order, features untouched."""
    target = GENERATORS[model][2]
    clean = generate_batch(model, DAY, 1000)
    shuffled = generate_batch(model, DAY, 1000, shuffle_labels=True)
    assert sorted(shuffled[target]) == sorted(clean[target])  # hence the same rate of every value
    assert not np.array_equal(shuffled[target].to_numpy(), clean[target].to_numpy())
    features = [c for c in clean.columns if c != target]
    pd.testing.assert_frame_equal(shuffled[features], clean[features])


def test_shuffled_labels_lose_the_signal():
    """After shuffling, the strongest churn driver (contract) no longer predicts the label."""
    clean = generate_batch("churn", DAY, 3000)
    shuffled = generate_batch("churn", DAY, 3000, shuffle_labels=True)

    def gap(df: pd.DataFrame) -> float:
        rates = df.groupby("contract")["churned"].mean()
        return rates["month-to-month"] - rates["two-year"]

    assert gap(clean) > 0.15
    assert abs(gap(shuffled)) < 0.08


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        (
            ("fraud", DAY, 10),
            {},
            r"unknown generator 'fraud'; choose one of \['churn', 'demand', 'support_intent'\]",
        ),
        (("churn", DAY, 10), {"drift": 1.5}, "drift must be between 0 and 1, got 1.5"),
        (("churn", DAY, 10), {"drift": -0.1}, "drift must be between 0 and 1, got -0.1"),
        (("demand", DAY, 0), {}, "rows must be positive, got 0"),
        (("demand", DAY, -5), {}, "rows must be positive, got -5"),
    ],
)
def test_bad_arguments(args, options, message):
    """Unknown generators and out-of-range options are ValueErrors that say what is allowed."""
    with pytest.raises(ValueError, match=message):
        generate_batch(*args, **options)
