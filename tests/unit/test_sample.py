"""A training window above data.max_training_rows, read as a bounded stratified sample."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from mlcycle.core.spec import get_spec
from mlcycle.data import lake as lk
from mlcycle.data.sample import quotas, read_sample
from tests.conftest import write_batches


def bounded(model: str, rows: int, seed: int = 0):
    spec = get_spec(model)
    return spec.model_copy(
        update={"data": spec.data.model_copy(update={"max_training_rows": rows, "split_seed": seed})}
    )


@pytest.mark.parametrize(
    ("rows", "bound"), [([100, 300, 600], 100), ([7, 7, 7], 10), ([5, 1000], 999), ([3], 5)]
)
def test_quotas_are_proportional_and_add_up(rows, bound):
    kept = quotas(rows, bound)
    assert sum(kept) == min(bound, sum(rows)) and all(0 <= k <= r for k, r in zip(kept, rows, strict=True))
    for k, r in zip(kept, rows, strict=True):
        assert abs(k - r * min(bound, sum(rows)) / sum(rows)) < 1


def window(tmp_path, model: str, days: int = 4, rows: int = 1500):
    paths = [
        lk.as_path(str(p))
        for p in write_batches(str(tmp_path / "lake"), model, dt.date(2026, 11, 30), days, rows)
    ]
    return paths, [lk.file_sha256(p) for p in paths], [lk.count_rows([p]) for p in paths]


def test_a_classifier_window_keeps_each_batchs_share_and_class_mix(tmp_path):
    spec = bounded("churn", 2000)
    paths, digests, rows = window(tmp_path, "churn")
    sample = read_sample(spec, paths, digests, rows)
    assert len(sample.frame) == 2000 and sample.frame[spec.data.key_column].is_unique
    lineage = sample.lineage
    assert lineage["window_rows"] == 6000 and [b["kept"] for b in lineage["batches"]] == [500] * 4
    for path, batch in zip(paths, lineage["batches"], strict=True):
        full = pd.read_parquet(path)
        share = full[spec.data.target].value_counts(normalize=True)
        for cls, kept in batch["kept_per_class"].items():
            assert abs(kept - 500 * share[int(cls)]) < 1
        assert batch["sha256"] == lk.file_sha256(path)
        kept_keys = set(sample.frame[spec.data.key_column]) & set(full[spec.data.key_column])
        assert len(kept_keys) == 500  # every kept row is a row of its batch
    again = read_sample(spec, paths, digests, rows)
    assert again.lineage["keys_sha256"] == lineage["keys_sha256"]  # the same window, the same rows
    assert (
        read_sample(bounded("churn", 2000, seed=1), paths, digests, rows).lineage["keys_sha256"]
        != lineage["keys_sha256"]
    )


def test_a_regressor_window_is_sampled_uniformly(tmp_path):
    spec = bounded("demand", 1000)
    paths, digests, rows = window(tmp_path, "demand", days=3, rows=1000)
    sample = read_sample(spec, paths, digests, rows)
    assert len(sample.frame) == 1000 and "kept_per_class" not in sample.lineage["batches"][0]
    assert np.isclose(
        sample.frame["price"].mean(), pd.concat(map(pd.read_parquet, paths))["price"].mean(), rtol=0.05
    )
    with pytest.raises(ValueError, match=r"sets no data\.max_training_rows"):
        read_sample(get_spec("demand"), paths, digests, rows)


def test_training_above_the_bound_fits_the_sample_and_logs_its_composition(store):
    """train with data.max_training_rows: the fit sees the bound, the MLflow run records which
    rows (per batch, per class, the keys' digest), and the same window trains the same rows."""
    from mlcycle.core.run import RunInfo
    from mlcycle.flows import train as steps
    from mlcycle.store import registry

    spec = bounded("churn", 3000)
    write_batches(store.lake, "churn", dt.date(2026, 11, 30), days=4, rows=1500)
    run = RunInfo("train_churn", "bounded", reason="test")
    m = steps.resolve(spec, run, lake_root=store.lake, as_of=dt.date(2026, 11, 30))
    t = steps.train(spec, run, store.mlc, manifest_uri=m["manifest_uri"], lake_root=store.lake)
    mlflow_run = store.mlc.get_run(t["mlflow_run_id"])
    params = mlflow_run.data.params
    assert params["data.sampled_from_rows"] == "6000" and params["data.max_training_rows"] == "3000"
    assert int(params["data.train_rows"]) + int(params["data.holdout_rows"]) == 3000
    lineage = registry.load_run_json(store.mlc, t["mlflow_run_id"], steps.SAMPLE_ARTIFACT)
    assert lineage["rows"] == 3000 and len(lineage["batches"]) == 4
    assert lineage["keys_sha256"] == params["data.sample_keys_sha256"]
