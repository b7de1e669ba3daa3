"""A window above data.max_training_rows streamed into an estimator with partial_fit: every row
outside the holdout is learned, one batch in memory at a time (mlcycle.ml.training.stream)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from mlcycle.core.spec import parse_spec
from mlcycle.data import lake as lk
from mlcycle.data.sample import read_sample
from mlcycle.ml import evaluation as ev
from mlcycle.ml import training as tr
from tests.conftest import REPO, write_batches

MODEL = "support_intent"
END = dt.date(2026, 11, 30)


def online_spec(**data):
    raw = yaml.safe_load((REPO / "include" / "models" / f"{MODEL}.yaml").read_text())
    raw["features"]["text_vectorizer"] = {"kind": "hashing", "char_ngrams": None, "max_features": 2**14}
    raw["estimator"] = {
        "class": "sklearn.linear_model.SGDClassifier",
        "params": {"loss": "log_loss", "alpha": 1e-4, "random_state": 0},
    }
    raw["data"].update(max_training_rows=1000, **data)
    raw["training"] = {"epochs": 2}
    return parse_spec(raw, Path(f"{MODEL}.yaml"))


@pytest.fixture(scope="module")
def window(tmp_path_factory):
    lake = str(tmp_path_factory.mktemp("lake"))
    paths = sorted(write_batches(lake, MODEL, END, days=6, rows=700))
    return [lk.as_path(str(p)) for p in paths]


def sampled(spec, paths):
    rows = [lk.count_rows([p]) for p in paths]
    return read_sample(spec, paths, [lk.file_sha256(p) for p in paths], rows).frame


@pytest.mark.parametrize("split", ["time", "hash"])
def test_every_row_outside_the_holdout_is_learned(window, split):
    spec = online_spec(split=split)
    assert tr.streams(spec)
    sample = sampled(spec, window)
    assert len(sample) == 1000
    fitted = tr.stream(spec, sample, window)
    whole = lk.read_parquet(window)
    if split == "time":
        # Out of time like a full training: only rows before the holdout's first time are learned.
        cut = fitted.holdout[spec.data.time_column].min()
        expected = int((whole[spec.data.time_column] < cut).sum())
    else:
        # Every row whose key hashes into the holdout share stays out (the sample's holdout among them).
        hashed = tr._hash_fraction(whole[spec.data.key_column], spec.data.split_seed)
        expected = int((hashed >= spec.data.holdout_fraction).sum())
        assert (tr._hash_fraction(fitted.holdout[spec.data.key_column], spec.data.split_seed) < 0.2).all()
    assert fitted.rows_learned == expected
    assert expected > 3 * len(sample)  # far more than the sample a bounded full fit would see
    model = fitted.pipeline.named_steps["model"]
    assert int(model.t_) - 1 == 2 * expected  # two epochs, each row once per epoch
    holdout = fitted.holdout
    s = ev.scores(fitted.pipeline, holdout[spec.features.all], spec.task)
    macro_f1 = ev.metric_value(
        "macro_f1", holdout[spec.data.target].to_numpy(), s, classes=ev.classes_of(spec)
    )
    assert macro_f1 > 0.75


def test_an_estimator_without_partial_fit_is_sampled_not_streamed():
    spec = online_spec()
    spec = spec.model_copy(
        update={
            "estimator": spec.estimator.model_copy(
                update={"class_": "sklearn.linear_model.LogisticRegression", "params": {}}
            )
        }
    )
    assert not tr.streams(spec)


def test_a_streamed_batch_with_an_unlisted_class_is_refused(window, tmp_path):
    import pandas as pd

    from mlcycle.core.errors import SpecError

    spec = online_spec()
    odd = lk.read_parquet([window[0]])
    odd.loc[odd.index[:5], spec.data.target] = "warranty"
    path = lk.as_path(str(tmp_path / "odd.parquet"))
    lk.write_parquet(pd.DataFrame(odd), path)
    with pytest.raises(SpecError, match=r"'warranty'.*data\.classes"):
        tr.stream(spec, sampled(spec, window), [path, *window[1:]])
