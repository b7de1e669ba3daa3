"""The ONNX twin: both shipped pipelines convert, agree with scikit-learn within the spec's
tolerance on rows with missing values and unseen categories, score by chunks like the
whole frame, and a pipeline that cannot convert or does not agree is reported, not used."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from threadpoolctl import threadpool_limits

from mlcycle.core.errors import SpecError
from mlcycle.core.spec import ModelSpec, Task, get_spec, parse_spec
from mlcycle.data.generators import generate_batch
from mlcycle.ml import onnx_twin as onnx_engine
from mlcycle.ml import scoring
from mlcycle.ml import training as tr

MODELS = ["churn", "demand"]
DAY = dt.date(2026, 3, 10)


def spec_with(name: str, **changes: Any) -> ModelSpec:
    """A shipped spec with some sections replaced (``estimator=``, ``scoring=``)."""
    raw = get_spec(name).model_dump(by_alias=True)
    raw.update(changes)
    return parse_spec(raw, Path(f"{name}.yaml"))


@pytest.fixture(scope="module")
def fitted() -> dict[str, tuple[ModelSpec, Any, pd.DataFrame]]:
    """Each shipped pipeline fitted on 3 days, and its holdout."""
    out = {}
    with threadpool_limits(limits=1):
        for name in MODELS:
            spec = get_spec(name)
            df = pd.concat([generate_batch(name, DAY - dt.timedelta(days=i), 600) for i in range(1, 4)])
            result = tr.train(df, spec)
            out[name] = (spec, result.pipeline, result.holdout)
    return out


def messy_rows(spec: ModelSpec, n: int = 400) -> pd.DataFrame:
    """A new day's batch where a quarter of every feature is missing and categories never seen
    in training appear."""
    X = generate_batch(spec.name, DAY, n)[spec.features.all].copy()
    rng = np.random.default_rng(7)
    for col in spec.features.all:
        X.loc[rng.random(n) < 0.25, col] = None
    for col in spec.features.categorical:
        X.loc[rng.random(n) < 0.1, col] = "never-seen-in-training"
    X.iloc[0] = None  # one row with nothing at all
    return X


@pytest.mark.parametrize("name", MODELS)
def test_shipped_pipelines_convert_and_pass_parity_on_the_holdout(fitted, name):
    spec, pipeline, holdout = fitted[name]
    onnx_bytes, report = onnx_engine.export(pipeline, spec, holdout)
    assert onnx_bytes is not None
    assert report["status"] == "passed" and report["passed"] is True
    assert report["rows"] == len(holdout)
    assert report["max_scaled_diff"] <= spec.scoring.onnx_tolerance == report["tolerance"]
    assert report["size_mb"] == pytest.approx(len(onnx_bytes) / 1e6, abs=1e-4)
    if spec.task is Task.CLASSIFICATION:
        assert report["label_agreement"] == 1.0


@pytest.mark.parametrize("name", MODELS)
def test_the_twin_agrees_on_missing_values_and_unseen_categories(fitted, name):
    """NaN in numeric columns (median + indicator columns), None in categorical ones (the constant
    fill) and unknown categories (ignored by the one-hot encoder) all go through the graph."""
    spec, pipeline, _ = fitted[name]
    model = onnx_engine.OnnxModel(onnx_engine.convert(pipeline, spec), spec)
    X = messy_rows(spec)
    assert X.isna().any().all()
    tol = spec.scoring.onnx_tolerance
    if spec.task is Task.CLASSIFICATION:
        assert list(model.classes_) == list(pipeline.classes_)
        assert np.abs(model.predict_proba(X) - pipeline.predict_proba(X)).max() <= tol
        assert np.array_equal(model.predict(X), pipeline.predict(X))
    else:
        ref = pipeline.predict(X)
        assert (np.abs(model.predict(X) - ref) / np.maximum(np.abs(ref), 1.0)).max() <= tol
        with pytest.raises(TypeError, match="predict_proba needs a classifier"):
            model.predict_proba(X)
    report = onnx_engine.parity(pipeline, model, X, spec)
    assert report["passed"] and report["rows"] == len(X)


@pytest.mark.parametrize("name", MODELS)
def test_chunked_scoring_with_the_twin_equals_its_whole_frame(tmp_path, fitted, name):
    """The scoring path with the ONNX engine: chunks of 97 rows across row groups of 250 give,
    row for row, the twin's whole-frame scores."""
    spec, pipeline, _ = fitted[name]
    model = onnx_engine.OnnxModel(onnx_engine.convert(pipeline, spec), spec)
    src = generate_batch(name, DAY, 1000)
    path = tmp_path / "batch.parquet"
    pq.write_table(pa.Table.from_pandas(src, preserve_index=False), path, row_group_size=250)
    out_uri = str(tmp_path / "out.parquet")
    meta = scoring.output_meta(spec, "3", "champion", "manual__onnx")
    result = scoring.score_file(model, spec, str(path), out_uri, meta=meta, chunk_rows=97)
    assert (result.rows, result.chunks) == (1000, 12)
    out = pd.read_parquet(out_uri)
    key = spec.data.key_column
    assert out[key].tolist() == src[key].tolist()
    X = src[spec.features.all]
    if spec.task is Task.CLASSIFICATION:
        whole = model.predict_proba(X)
        for i, c in enumerate(model.classes_):
            assert np.array_equal(out[f"proba_{c}"].to_numpy(), whole[:, i])
        assert np.array_equal(out["prediction"].to_numpy(), model.predict(X))
    else:
        assert np.array_equal(out["prediction"].to_numpy(), model.predict(X))


def test_an_estimator_without_a_converter_is_reported_not_convertible(fitted):
    spec = spec_with("churn", estimator={"class": "sklearn.neighbors.NearestCentroid", "params": {}})
    _, _, holdout = fitted["churn"]
    df = pd.concat([generate_batch("churn", DAY - dt.timedelta(days=i), 300) for i in range(1, 3)])
    pipeline = tr.train(df, spec).pipeline
    with pytest.raises(
        onnx_engine.NotConvertible, match=r"^skl2onnx: MissingShapeCalculator: .*NearestCentroid"
    ):
        onnx_engine.convert(pipeline, spec)
    onnx_bytes, report = onnx_engine.export(pipeline, spec, holdout)
    assert onnx_bytes is None
    assert report["status"] == "not_convertible"
    assert "NearestCentroid" in report["reason"]


def test_a_twin_outside_the_tolerance_is_refused(fitted):
    """float32 inputs move the forest's predictions by ~1e-7 relative: a tolerance below that fails."""
    _, pipeline, holdout = fitted["demand"]
    strict = spec_with("demand", scoring={"engine": "auto", "onnx_tolerance": 1e-12})
    onnx_bytes, report = onnx_engine.export(pipeline, strict, holdout)
    assert onnx_bytes is None
    assert report["status"] == "failed"
    assert report["passed"] is False
    assert report["max_scaled_diff"] > 1e-12
    assert report["reason"] == f"max difference {report['max_scaled_diff']:.3g} > tolerance 1e-12"


def test_no_holdout_rows_cannot_pass(fitted):
    spec, pipeline, holdout = fitted["churn"]
    onnx_bytes, report = onnx_engine.export(pipeline, spec, holdout.head(0))
    assert onnx_bytes is None
    assert (report["status"], report["reason"]) == ("failed", "no holdout rows to check it on")


@pytest.mark.parametrize(
    ("scoring_section", "message"),
    [
        ({"engine": "onnxruntime"}, r"scoring\.engine: Input should be 'auto', 'sklearn' or 'beam'"),
        ({"onnx_tolerance": 0}, r"scoring\.onnx_tolerance: Input should be greater than 0"),
        ({"onnx_tolerance": 0.5}, r"scoring\.onnx_tolerance: Input should be less than or equal to 0\.1"),
    ],
)
def test_a_bad_scoring_section_names_the_key(scoring_section, message):
    with pytest.raises(SpecError, match=rf"^invalid model spec churn\.yaml:\n  {message}"):
        spec_with("churn", scoring=scoring_section)


def test_categorical_values_reach_the_graph_as_strings_and_missing_as_the_sentinel(fitted):
    """String columns pass as they are; other dtypes (integer codes) become their str(); missing
    values of either become MISSING_CATEGORY."""
    spec, pipeline, _ = fitted["churn"]
    model = onnx_engine.OnnxModel(onnx_engine.convert(pipeline, spec), spec)
    X = generate_batch("churn", DAY, 3)[spec.features.all].copy()
    first, second = spec.features.categorical[:2]
    X[first] = pd.Series(["a", None, "c"], dtype="str")
    X[second] = pd.Series([7, None, 9], dtype="Int64")
    feed = model._feed(X)
    assert feed[first].ravel().tolist() == ["a", onnx_engine.MISSING_CATEGORY, "c"]
    assert feed[second].ravel().tolist() == ["7", onnx_engine.MISSING_CATEGORY, "9"]
    assert all(feed[c].shape == (3, 1) for c in spec.features.all)
    assert model.predict_proba(X).shape == (3, 2)
