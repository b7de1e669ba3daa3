"""Batch scoring: chunked and partitioned scoring give exactly the whole-frame predictions, outputs
are replaced atomically, the shadow comparison is right, and the scoring steps work against a
real MLflow (SQLite in tmp_path)."""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from threadpoolctl import threadpool_limits

from mlcycle.core import settings
from mlcycle.core.errors import RegistryError
from mlcycle.core.run import RunInfo
from mlcycle.core.spec import ModelSpec, Task, get_spec, parse_spec
from mlcycle.data import lake as lk
from mlcycle.data.generators import generate_batch
from mlcycle.flows import score as scoring_steps
from mlcycle.flows import train as steps
from mlcycle.ml import scoring
from mlcycle.ml import training as tr
from mlcycle.store import registry
from tests.conftest import Env, write_batches

if TYPE_CHECKING:
    from collections.abc import Callable

# MLflow's own deprecation and hint warnings (pandas 4, SQLAlchemy, schema inference) are not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:::mlflow.*")

MODELS = ["churn", "demand"]
META_COLUMNS = ["model_name", "model_version", "model_alias", "run_id", "scored_at"]
TRAIN_END = dt.date(2026, 3, 9)
DAY = dt.date(2026, 3, 10)  # the scored batch: a day after the training data
# Parameters of a clearly weaker model of each kind, to run in shadow.
WEAKER: dict[str, dict[str, Any]] = {
    "churn": {"max_iter": 3, "max_leaf_nodes": 4},
    "demand": {"n_estimators": 5, "max_depth": 3},
}
TRAIN_RUNS = [
    RunInfo(dag_id="train_churn", run_id="manual__2026-03-09T00:00:00+00:00", trigger="test"),
    RunInfo(dag_id="train_churn", run_id="manual__2026-03-09T01:00:00+00:00", trigger="test"),
]
SCORE_RUN = RunInfo(dag_id="score_churn", run_id="manual__2026-03-10T06:00:00+00:00", trigger="test")
NEXT_SCORE_RUN = RunInfo(
    dag_id="score_churn", run_id="scheduled__2026-03-10T07:00:00+00:00", trigger="schedule"
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Fit and predict on one OpenMP thread: the data is tiny, and thread start-up and spin-waiting
    would dominate the runtime."""
    with threadpool_limits(limits=1):
        yield


# --- fitted models without MLflow -----------------------------------------------------------------


@dataclass(frozen=True)
class Fitted:
    """A shipped spec, its pipeline fitted with the shipped params, a weaker one, and a batch to score."""

    spec: ModelSpec
    model: Any
    weaker: Any
    batch: pd.DataFrame  # 2,000 rows of a day after the training data


@pytest.fixture(scope="module")
def fitted() -> dict[str, Fitted]:
    out = {}
    with threadpool_limits(limits=1):
        for name in MODELS:
            spec = get_spec(name)
            train = pd.concat(
                [generate_batch(name, TRAIN_END - dt.timedelta(days=i), 500) for i in range(3)],
                ignore_index=True,
            )
            out[name] = Fitted(
                spec=spec,
                model=tr.train(train, spec).pipeline,
                weaker=tr.train(train, spec, WEAKER[name]).pipeline,
                batch=generate_batch(name, DAY, 2000),
            )
    return out


class Recording:
    """A real fitted model behind a thin wrapper that records how many rows each call got and can
    fail on the n-th call (a model that breaks mid-batch). Predictions are the model's own."""

    def __init__(self, model: Any, fail_on_call: int | None = None) -> None:
        self.model = model
        self.fail_on_call = fail_on_call
        self.calls: list[int] = []

    @property
    def classes_(self) -> Any:
        return self.model.classes_

    def _call(self, method: str, X: pd.DataFrame) -> Any:
        self.calls.append(len(X))
        if len(self.calls) == self.fail_on_call:
            raise RuntimeError(f"model broke on call {len(self.calls)}")
        return getattr(self.model, method)(X)

    def predict(self, X: pd.DataFrame) -> Any:
        return self._call("predict", X)

    def predict_proba(self, X: pd.DataFrame) -> Any:
        return self._call("predict_proba", X)


def write_input(df: pd.DataFrame, path: Path, row_group_size: int | None = None) -> str:
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=row_group_size)
    return str(path)


def meta_for(spec: ModelSpec, run_id: str = "manual__test") -> dict[str, str]:
    return scoring.output_meta(spec, "7", registry.CHAMPION, run_id)


def primary(spec: ModelSpec, model: Any, X: pd.DataFrame) -> np.ndarray:
    """The score the shadow file compares: P(last class) for a classifier, the prediction otherwise."""
    if spec.task is Task.CLASSIFICATION:
        return model.predict_proba(X)[:, -1]
    return model.predict(X).astype("float64")


def assert_whole_frame(
    out: pd.DataFrame, src: pd.DataFrame, spec: ModelSpec, model: Any, meta: dict, *, atol: float = 1e-12
) -> None:
    """``out`` holds, row for row, what ``model`` predicts on the whole of ``src`` in one call
    (scores within ``atol``: another engine than ``model``'s may have scored it)."""
    X = src[spec.features.all]
    classes = list(model.classes_) if spec.task is Task.CLASSIFICATION else []
    assert list(out.columns) == scoring_steps.expected_columns(spec, classes)
    key = spec.data.key_column
    assert out[key].tolist() == src[key].tolist()
    if spec.task is Task.CLASSIFICATION:
        assert np.array_equal(out["prediction"].to_numpy(), model.predict(X))
        proba = model.predict_proba(X)
        for i, c in enumerate(classes):
            assert np.allclose(out[f"proba_{c}"].to_numpy(), proba[:, i], rtol=0, atol=atol)
    else:
        assert out["prediction"].dtype == "float64"
        assert np.allclose(out["prediction"].to_numpy(), model.predict(X), rtol=atol, atol=atol)
    for name in META_COLUMNS:
        assert out[name].tolist() == [meta[name]] * len(src), name


def tmp_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


# --- output_meta ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("alias", "stored"), [("champion", "champion"), (None, "")])
def test_output_meta(alias, stored):
    spec = get_spec("churn")
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    meta = scoring.output_meta(spec, "3", alias, "manual__x")
    after = dt.datetime.now(dt.UTC)
    assert list(meta) == META_COLUMNS
    assert (meta["model_name"], meta["model_version"], meta["model_alias"], meta["run_id"]) == (
        "churn",
        "3",
        stored,
        "manual__x",
    )
    scored_at = dt.datetime.fromisoformat(meta["scored_at"])
    assert scored_at.utcoffset() == dt.timedelta(0)
    assert before <= scored_at <= after


# --- chunks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    ("chunk_rows", "rows"),
    # Per-call overhead (RandomForest starts n_jobs threads per call) keeps the tiny chunks on small files.
    [(1, 40), (7, 300), (333, 2000), (5000, 2000)],
    ids=["chunk1", "chunk7", "chunk333", "chunk-bigger-than-file"],
)
def test_chunked_scoring_equals_whole_frame(tmp_path, fitted, model, chunk_rows, rows):
    """Any chunk size gives the whole-frame predictions in the input's row order, in chunks of at
    most ``chunk_rows`` rows (memory is bounded by the chunk, not the batch)."""
    f = fitted[model]
    src = f.batch.head(rows)
    batch = tmp_path / "batch.parquet"
    lk.write_parquet(src, batch)  # as batches land in the lake: one row group
    meta = meta_for(f.spec)
    recorder = Recording(f.model)
    out_uri = str(tmp_path / "out" / "pred.parquet")

    result = scoring.score_file(recorder, f.spec, str(batch), out_uri, meta=meta, chunk_rows=chunk_rows)

    assert_whole_frame(pd.read_parquet(out_uri), src, f.spec, f.model, meta)
    assert result.rows == rows
    assert result.output_uri == out_uri
    assert result.shadow_uri is None
    assert result.chunks == len(recorder.calls) == math.ceil(rows / chunk_rows)
    assert max(recorder.calls) <= chunk_rows
    assert sum(recorder.calls) == rows
    assert result.to_dict()["rows"] == rows
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["pred.parquet"]


@pytest.mark.parametrize(
    ("start", "stop", "chunk_rows"),
    [
        (0, None, 1000),
        (0, None, 2000),
        (0, 1000, 97),
        (0, 1000, 50),
        (96, 98, 1),  # two rows on either side of a row-group boundary
        (95, 300, 7),
        (100, 101, 64),
        (990, 5000, 64),  # stop past the end
        (500, 500, 10),  # empty range
        (1000, 1200, 10),  # range after the end
    ],
)
def test_iter_chunks_yields_exactly_the_range(tmp_path, start, stop, chunk_rows):
    """Rows [start, stop) across row groups of 97 rows, in order, each chunk at most chunk_rows rows."""
    path = tmp_path / "rows.parquet"
    table = pa.table({"i": pa.array(range(1000), type=pa.int64()), "s": [f"r{i}" for i in range(1000)]})
    pq.write_table(table, path, row_group_size=97)
    with path.open("rb") as fh:
        chunks = list(scoring.iter_chunks(fh, ["i"], chunk_rows, start, stop))
    got = [v for c in chunks for v in c.column("i").to_pylist()]
    assert got == list(range(start, min(stop if stop is not None else 1000, 1000)))
    assert all(0 < c.num_rows <= chunk_rows for c in chunks)
    assert all(c.column_names == ["i"] for c in chunks)


# --- partitions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "rows_per_partition"),
    [(1000, 1), (1000, 100), (1000, 333), (1000, 1000), (1000, 1001), (999, 100), (1, 5)],
)
def test_plan_partitions_covers_every_row_once(tmp_path, rows, rows_per_partition):
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"i": list(range(rows))}), path, row_group_size=97)
    parts = scoring.plan_partitions(str(path), rows_per_partition)
    assert len(parts) == math.ceil(rows / rows_per_partition)
    assert [p.index for p in parts] == list(range(len(parts)))
    covered = [i for p in parts for i in range(p.start, p.stop)]
    assert covered == list(range(rows))  # every row, once, in order
    assert all(0 < p.stop - p.start <= rows_per_partition for p in parts)
    assert scoring_steps.plan(str(path), rows_per_partition) == [p.to_dict() for p in parts]
    assert [scoring.Partition(**p.to_dict()) for p in parts] == parts


def test_plan_partitions_of_an_empty_file(tmp_path):
    """An empty batch still gets one (empty) partition, so the scoring has one task to run."""
    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"i": pa.array([], type=pa.int64())}), path)
    assert scoring.plan_partitions(str(path), 100) == [scoring.Partition(0, 0, 0)]


@pytest.mark.parametrize("rows_per_partition", [0, -1, -1000])
def test_plan_partitions_refuses_non_positive_sizes(tmp_path, rows_per_partition):
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"i": list(range(10))}), path)
    with pytest.raises(ValueError, match=rf"rows_per_partition must be positive, got {rows_per_partition}$"):
        scoring.plan_partitions(str(path), rows_per_partition)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("row_group_size", "rows_per_partition"), [(97, 64), (250, 300), (128, 450)])
def test_partitions_across_row_groups_merge_to_whole_frame(
    tmp_path, fitted, model, row_group_size, rows_per_partition
):
    """Partitions that start and stop inside row groups, scored separately (chunks of 50) and merged,
    give exactly the whole-frame result; each part holds exactly its own rows."""
    f = fitted[model]
    src = f.batch.head(1000)
    batch = write_input(src, tmp_path / "batch.parquet", row_group_size=row_group_size)
    assert pq.ParquetFile(batch).metadata.num_row_groups == math.ceil(1000 / row_group_size)
    parts = scoring.plan_partitions(batch, rows_per_partition)
    assert any(p.start % row_group_size for p in parts)  # some cut falls inside a row group
    meta = meta_for(f.spec)

    part_uris = []
    for p in parts:
        uri = str(tmp_path / "parts" / f"part-{p.index:05d}.parquet")
        result = scoring.score_file(f.model, f.spec, batch, uri, meta=meta, chunk_rows=50, partition=p)
        assert result.rows == p.stop - p.start
        assert_whole_frame(pd.read_parquet(uri), src.iloc[p.start : p.stop], f.spec, f.model, meta)
        part_uris.append(uri)
    merged = str(tmp_path / "merged.parquet")

    assert scoring.merge_parts(part_uris, merged) == 1000
    assert_whole_frame(pd.read_parquet(merged), src, f.spec, f.model, meta)
    assert tmp_leftovers(tmp_path) == []


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("case", ["empty-range", "empty-batch"])
def test_empty_range_gives_a_readable_empty_file(tmp_path, fitted, model, case):
    """No rows to score: an empty, readable output (with the key, prediction and meta columns) that
    merges into an empty file; with a shadow model, no shadow file."""
    f = fitted[model]
    if case == "empty-range":
        batch = write_input(f.batch.head(1000), tmp_path / "batch.parquet", row_group_size=250)
        partition = scoring.Partition(3, 500, 500)
    else:
        batch = write_input(f.batch.head(0), tmp_path / "batch.parquet")
        (partition,) = scoring.plan_partitions(batch, 300)
    out = tmp_path / "parts" / "part-00003.parquet"
    shadow = tmp_path / "parts" / "shadow-00003.parquet"

    result = scoring.score_file(
        f.model,
        f.spec,
        batch,
        str(out),
        meta=meta_for(f.spec),
        partition=partition,
        shadow_model=f.weaker,
        shadow_uri=str(shadow),
    )

    assert (result.rows, result.chunks, result.shadow_uri) == (0, 0, None)
    assert pq.ParquetFile(out).metadata.num_rows == 0
    df = pd.read_parquet(out)
    assert len(df) == 0
    assert list(df.columns[:2]) == [f.spec.data.key_column, "prediction"]
    assert list(df.columns[-5:]) == META_COLUMNS
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no shadow file, no .tmp
    assert scoring.merge_parts([str(out)], str(tmp_path / "merged.parquet")) == 0
    assert len(pd.read_parquet(tmp_path / "merged.parquet")) == 0
    assert scoring.shadow_summary([str(shadow)], f.spec.task) == {"rows": 0}


@pytest.mark.parametrize("model", MODELS)
def test_empty_output_has_the_columns_of_a_scored_output(tmp_path, fitted, model):
    """An empty output is read alongside the other prediction files, so it must have the same
    columns and types as a scored one (``expected_columns``: a classifier's proba_<class> columns
    and class-typed prediction)."""
    f = fitted[model]
    batch = write_input(f.batch.head(100), tmp_path / "batch.parquet")
    meta = meta_for(f.spec)
    scored, empty = tmp_path / "scored.parquet", tmp_path / "empty.parquet"
    scoring.score_file(f.model, f.spec, batch, str(scored), meta=meta)
    scoring.score_file(f.model, f.spec, batch, str(empty), meta=meta, partition=scoring.Partition(0, 50, 50))
    classes = list(f.model.classes_) if f.spec.task is Task.CLASSIFICATION else []
    expected = scoring_steps.expected_columns(f.spec, classes)
    full, none = pd.read_parquet(scored), pd.read_parquet(empty)
    assert list(full.columns) == expected
    assert list(none.columns) == expected
    assert none.dtypes.to_dict() == full.dtypes.to_dict()


# --- atomic outputs -------------------------------------------------------------------------------


@pytest.mark.parametrize("second_rows", [300, 100], ids=["same-rows", "fewer-rows"])
def test_scoring_twice_replaces_the_output(tmp_path, fitted, second_rows):
    """A rerun to the same output (and shadow) leaves one file each, holding the second run's rows
    once: replaced, never appended."""
    f = fitted["churn"]
    src = f.batch.head(300)
    batch = write_input(src, tmp_path / "batch.parquet")
    out, shadow = tmp_path / "out" / "pred.parquet", tmp_path / "out" / "shadow.parquet"

    def score(run_id: str, partition: scoring.Partition | None) -> dict[str, str]:
        meta = meta_for(f.spec, run_id)
        scoring.score_file(
            f.model,
            f.spec,
            batch,
            str(out),
            meta=meta,
            chunk_rows=64,
            partition=partition,
            shadow_model=f.weaker,
            shadow_uri=str(shadow),
        )
        return meta

    score("first", None)
    meta = score("second", scoring.Partition(0, 0, second_rows))

    assert sorted(p.name for p in out.parent.iterdir()) == ["pred.parquet", "shadow.parquet"]
    assert_whole_frame(pd.read_parquet(out), src.head(second_rows), f.spec, f.model, meta)
    cmp = pd.read_parquet(shadow)
    assert cmp["customer_id"].tolist() == src["customer_id"].head(second_rows).tolist()


def _fail_in_served(f: Fitted, batch: str, out: Path, shadow: Path) -> None:
    scoring.score_file(
        Recording(f.model, fail_on_call=2),
        f.spec,
        batch,
        str(out),
        meta=meta_for(f.spec, "broken"),
        chunk_rows=50,
        shadow_model=f.weaker,
        shadow_uri=str(shadow),
    )


def _fail_in_shadow(f: Fitted, batch: str, out: Path, shadow: Path) -> None:
    scoring.score_file(
        f.model,
        f.spec,
        batch,
        str(out),
        meta=meta_for(f.spec, "broken"),
        chunk_rows=50,
        shadow_model=Recording(f.weaker, fail_on_call=2),
        shadow_uri=str(shadow),
    )


def _fail_in_merge(f: Fitted, batch: str, out: Path, shadow: Path) -> None:
    part = out.parent / "part-00000.parquet"
    scoring.score_file(f.model, f.spec, batch, str(part), meta=meta_for(f.spec, "broken"))
    scoring.merge_parts([str(part), str(out.parent / "part-00001.parquet")], str(out))  # 2nd is missing


FAILURES: dict[str, tuple[Callable[[Fitted, str, Path, Path], None], type[Exception], str]] = {
    "served-model-fails": (_fail_in_served, RuntimeError, "model broke on call 2"),
    "shadow-model-fails": (_fail_in_shadow, RuntimeError, "model broke on call 2"),
    "merge-part-missing": (_fail_in_merge, FileNotFoundError, "part-00001.parquet"),
}


@dataclass
class FailedRerun:
    folder: Path  # the output folder
    batch: Path
    before: dict[Path, bytes] = field(repr=False)  # the good files' bytes before the failed rerun


@pytest.fixture
def failed_rerun(request, tmp_path, fitted) -> FailedRerun:
    """A good output (and shadow), then a rerun that fails part-way (``request.param`` of FAILURES)."""
    f = fitted["churn"]
    batch = write_input(f.batch.head(300), tmp_path / "batch.parquet")
    out, shadow = tmp_path / "out" / "pred.parquet", tmp_path / "out" / "shadow.parquet"
    scoring.score_file(
        f.model,
        f.spec,
        batch,
        str(out),
        meta=meta_for(f.spec, "good"),
        shadow_model=f.weaker,
        shadow_uri=str(shadow),
    )
    before = {p: p.read_bytes() for p in (out, shadow)}
    fail, exc, message = FAILURES[request.param]
    with pytest.raises(exc, match=message):
        fail(f, batch, out, shadow)
    return FailedRerun(out.parent, Path(batch), before)


@pytest.mark.parametrize("failed_rerun", list(FAILURES), indirect=True)
def test_failed_rerun_keeps_the_previous_output(failed_rerun):
    """A reader never sees half a file: after a failed rerun the previous output is intact."""
    for path, data in failed_rerun.before.items():
        assert path.read_bytes() == data, path.name
    pred = pd.read_parquet(failed_rerun.folder / "pred.parquet")
    assert set(pred["run_id"]) == {"good"}
    assert pred["customer_id"].tolist() == pd.read_parquet(failed_rerun.batch)["customer_id"].tolist()


@pytest.mark.parametrize("failed_rerun", list(FAILURES), indirect=True)
def test_failed_rerun_leaves_no_tmp_file(failed_rerun):
    """A failure cleans up its temporary files: only finished outputs (and parts) stay in the folder."""
    assert tmp_leftovers(failed_rerun.folder) == []


# --- shadow ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_shadow_of_the_same_model_agrees_everywhere(tmp_path, fitted, model):
    """Shadow file: key, score, shadow_score, prediction, shadow_prediction per row, in the input's
    order; the same model in shadow gives zero differences (and agreement 1.0 for classes)."""
    f = fitted[model]
    src = f.batch.head(500)
    batch = write_input(src, tmp_path / "batch.parquet", row_group_size=200)
    out, shadow = tmp_path / "pred.parquet", tmp_path / "shadow.parquet"

    result = scoring.score_file(
        f.model,
        f.spec,
        batch,
        str(out),
        meta=meta_for(f.spec),
        chunk_rows=128,
        shadow_model=f.model,
        shadow_uri=str(shadow),
    )

    assert result.shadow_uri == str(shadow)
    key = f.spec.data.key_column
    cmp, pred = pd.read_parquet(shadow), pd.read_parquet(out)
    assert list(cmp.columns) == [key, "score", "shadow_score", "prediction", "shadow_prediction"]
    assert cmp[key].tolist() == src[key].tolist()
    expected_score = pred["proba_1"] if f.spec.task is Task.CLASSIFICATION else pred["prediction"]
    assert np.allclose(cmp["score"], expected_score, rtol=0, atol=1e-12)
    assert np.allclose(cmp["score"], primary(f.spec, f.model, src[f.spec.features.all]), atol=1e-12)
    assert cmp["prediction"].tolist() == [str(p) for p in pred["prediction"]]
    if f.spec.task is Task.CLASSIFICATION:
        assert cmp["shadow_prediction"].tolist() == cmp["prediction"].tolist()
    else:  # RandomForest with n_jobs=2 sums its trees in thread order: equal up to the last bits
        assert np.allclose(
            cmp["shadow_prediction"].astype(float), cmp["prediction"].astype(float), rtol=1e-12, atol=0
        )

    summary = scoring.shadow_summary([str(shadow)], f.spec.task)
    diffs = {k: v for k, v in summary.items() if k.endswith("_abs_diff")}
    assert set(diffs) == {"mean_abs_diff", "p50_abs_diff", "p90_abs_diff", "p99_abs_diff", "max_abs_diff"}
    assert summary["rows"] == 500
    assert np.allclose(list(diffs.values()), 0.0, atol=1e-12)
    if f.spec.task is Task.CLASSIFICATION:
        assert summary["agreement"] == 1.0
        assert summary["flipped_rows"] == 0
        assert summary["flips_sample"] == []
    else:
        assert set(summary) == {"rows", *diffs}


@pytest.mark.parametrize("model", MODELS)
def test_shadow_summary_of_a_different_model(tmp_path, fitted, model):
    """A weaker model in shadow, over partitions: the summary's score-shift percentiles equal numpy's
    on the whole frame; for classes, agreement and flipped rows match the differing predictions."""
    f = fitted[model]
    src = f.batch.head(1000)
    batch = write_input(src, tmp_path / "batch.parquet", row_group_size=256)
    shadow_uris = []
    for p in scoring.plan_partitions(batch, 300):
        shadow = str(tmp_path / f"shadow-{p.index:05d}.parquet")
        result = scoring.score_file(
            f.model,
            f.spec,
            batch,
            str(tmp_path / f"part-{p.index:05d}.parquet"),
            meta=meta_for(f.spec),
            chunk_rows=128,
            partition=p,
            shadow_model=f.weaker,
            shadow_uri=shadow,
        )
        assert result.shadow_uri == shadow
        shadow_uris.append(shadow)

    summary = scoring.shadow_summary(shadow_uris, f.spec.task, max_flips=5)

    X = src[f.spec.features.all]
    diff = np.abs(primary(f.spec, f.model, X) - primary(f.spec, f.weaker, X))
    assert summary["rows"] == 1000
    assert summary["max_abs_diff"] > 0
    expected = {
        "mean_abs_diff": diff.mean(),
        "p50_abs_diff": np.quantile(diff, 0.5),
        "p90_abs_diff": np.quantile(diff, 0.9),
        "p99_abs_diff": np.quantile(diff, 0.99),
        "max_abs_diff": diff.max(),
    }
    for name, value in expected.items():
        assert summary[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    if f.spec.task is Task.CLASSIFICATION:
        flipped = f.model.predict(X) != f.weaker.predict(X)
        flips = int(flipped.sum())
        assert 5 < flips < 1000  # the models differ on some rows, not all
        assert summary["flipped_rows"] == flips
        assert summary["agreement"] == pytest.approx(1 - flips / 1000)
        sample = summary["flips_sample"]
        assert len(sample) == 5  # max_flips
        flipped_keys = set(src.loc[flipped, "customer_id"])
        assert all(r["customer_id"] in flipped_keys for r in sample)
        assert all(r["prediction"] != r["shadow_prediction"] for r in sample)
    else:
        assert set(summary) == {"rows", *expected}  # no agreement for a regressor


def test_shadow_summary_without_shadow_files(tmp_path):
    assert scoring.shadow_summary([], Task.CLASSIFICATION) == {"rows": 0}
    assert scoring.shadow_summary([str(tmp_path / "missing.parquet")], Task.REGRESSION) == {"rows": 0}


# --- scoring steps against a real MLflow ----------------------------------------------------------


def quick_churn_spec() -> ModelSpec:
    """The shipped churn spec, quick to fit: 3-day window, 20 boosting rounds."""
    raw = yaml.safe_load((settings.specs_dir() / "churn.yaml").read_text())
    raw["data"]["training_window_days"] = 3
    raw["estimator"]["params"]["max_iter"] = 20
    return parse_spec(raw, Path("churn.yaml"))


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory) -> Path:
    """An MLflow store where ``steps.train`` registered churn v1 and a weaker v2 (challenger), made
    once; each test works on its own copy (the model artifacts stay here, shared)."""
    root = tmp_path_factory.mktemp("registry")
    spec, lake = quick_churn_spec(), str(root / "lake")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    mlc = registry.client(tracking_uri)
    with pytest.MonkeyPatch.context() as mp, threadpool_limits(limits=1):
        # Still needed: MLflow's SQLite registry resolves a `models:/m-<id>` version source
        # with a bare MlflowClient(), i.e. the process-wide tracking URI.
        mp.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        mp.setenv("MLCYCLE_ARTIFACT_ROOT", str(root / "mlartifacts"))
        write_batches(lake, "churn", TRAIN_END, days=3, rows=300)
        manifest = steps.resolve(spec, TRAIN_RUNS[0], lake_root=lake, as_of=TRAIN_END)["manifest_uri"]
        v1 = steps.train(spec, TRAIN_RUNS[0], mlc, manifest_uri=manifest, lake_root=lake)
        v2 = steps.train(
            spec, TRAIN_RUNS[1], mlc, manifest_uri=manifest, lake_root=lake, overrides=WEAKER["churn"]
        )
    assert (v1["version"], v2["version"]) == ("1", "2")
    return root / "mlflow.db"


@pytest.fixture
def mlc(env, trained_store):
    """A client on this test's own copy of the trained store (``env.tracking_uri``): churn v1 and
    v2, v2 aliased challenger, no champion."""
    shutil.copy(trained_store, env.root / "mlflow.db")
    client = env.mlc
    assert client.tracking_uri == env.tracking_uri
    return client


@pytest.fixture
def spec() -> ModelSpec:
    return quick_churn_spec()


def set_aliases(mlc, champion: str | None, challenger: str | None) -> None:
    for alias, version in ((registry.CHAMPION, champion), (registry.CHALLENGER, challenger)):
        if version is None:
            if registry.version_by_alias(mlc, "churn", alias) is not None:
                mlc.delete_registered_model_alias("churn", alias)
        else:
            registry.set_alias(mlc, "churn", alias, version)


@pytest.mark.parametrize(
    "aliases",
    # (champion, challenger, expected shadow)
    [("1", "2", "2"), ("2", "1", "1"), ("1", "1", None), ("2", None, None)],
    ids=["challenger-newer", "challenger-older", "same-version", "no-challenger"],
)
@pytest.mark.parametrize("alias", ["champion", None])
def test_choose_model_champion_with_challenger_in_shadow(env, mlc, spec, aliases, alias):
    """The champion is served (also when no alias is given); a different challenger runs in shadow."""
    champion, challenger, shadow = aliases
    set_aliases(mlc, champion, challenger)
    chosen = scoring_steps.choose_model(spec, mlc, alias=alias)
    assert without_reason(chosen) == {
        "version": champion,
        "alias": "champion",
        "engine": "onnx",
        "shadow_version": shadow,
        "shadow_engine": "onnx" if shadow else None,
        "batch_engine": "chunked",
    }
    assert chosen["engine_reason"].startswith("its ONNX twin passed parity at training (max difference ")


def without_reason(chosen: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in chosen.items() if k != "engine_reason"}


def test_choose_model_serving_the_challenger_has_no_shadow(mlc, spec):
    set_aliases(mlc, "1", "2")
    assert without_reason(scoring_steps.choose_model(spec, mlc, alias="challenger")) == {
        "version": "2",
        "alias": "challenger",
        "engine": "onnx",
        "shadow_version": None,
        "shadow_engine": None,
        "batch_engine": "chunked",
    }


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("alias", ["champion", "challenger", None])
def test_choose_model_explicit_version_wins_without_shadow(mlc, spec, version, alias):
    set_aliases(mlc, "1", "2")
    chosen = scoring_steps.choose_model(spec, mlc, alias=alias, version=version)
    assert without_reason(chosen) == {
        "version": version,
        "alias": None,
        "engine": "onnx",
        "shadow_version": None,
        "shadow_engine": None,
        "batch_engine": "chunked",
    }


@pytest.mark.parametrize(
    ("model", "alias"),
    [("churn", "champion"), ("churn", "challenger"), ("demand", "champion")],
    ids=["no-champion", "no-challenger", "model-never-registered"],
)
def test_choose_model_missing_alias_names_model_and_fix(mlc, model, alias):
    set_aliases(mlc, None, None)
    spec = quick_churn_spec() if model == "churn" else get_spec("demand")
    with pytest.raises(
        RegistryError,
        match=rf"^{model}@{alias} is not set: nothing to score with\. "
        rf"Train a model first \(trigger train_{model}\) or pass a version\.$",
    ):
        scoring_steps.choose_model(spec, mlc, alias=alias)


def test_choose_model_missing_version_names_model_and_fix(mlc, spec):
    set_aliases(mlc, "1", "2")
    with pytest.raises(RegistryError, match=r"^churn has no version 9; see `mlcycle champion churn`$"):
        scoring_steps.choose_model(spec, mlc, version="9")


def score_batch(
    env: Env, spec: ModelSpec, run: RunInfo, batch: Path, model: dict[str, Any]
) -> list[dict[str, Any]]:
    """Plan 1,000 rows into partitions of 300 and score each in chunks of 128, as the DAG's mapped tasks do."""
    mlc = env.mlc
    return [
        scoring_steps.score_partition(
            spec, run, mlc, batch_uri=str(batch), partition=p, model=model, lake_root=env.lake, chunk_rows=128
        )
        for p in scoring_steps.plan(str(batch), 300)
    ]


def finalize(
    env: Env, spec: ModelSpec, run: RunInfo, batch: Path, *, parts: list[dict[str, Any]], model: dict
) -> dict[str, Any]:
    return scoring_steps.finalize(
        spec, run, env.mlc, batch_uri=str(batch), parts=parts, model=model, lake_root=env.lake
    )


def scoring_runs(mlc) -> list:
    experiment = mlc.get_experiment_by_name("churn-scoring")
    return [] if experiment is None else mlc.search_runs([experiment.experiment_id])


@pytest.fixture
def batch(env) -> Path:
    (path,) = write_batches(env.lake, "churn", DAY, days=1, rows=1000)
    return path


def test_finalize_writes_predictions_report_and_mlflow_run(env, mlc, spec, batch):
    """Champion v1 served with challenger v2 in shadow, over 4 partitions: one prediction file equal to
    v1 on the whole batch, report.json/html in the run's scoring folder, one MLflow run with metrics."""
    set_aliases(mlc, "1", "2")
    model = scoring_steps.choose_model(spec, mlc)
    parts = score_batch(env, spec, SCORE_RUN, batch, model)
    assert [p["index"] for p in parts] == [0, 1, 2, 3]
    assert [p["rows"] for p in parts] == [300, 300, 300, 100]
    assert all(p["shadow_uri"] for p in parts)

    report = finalize(env, spec, SCORE_RUN, batch, parts=list(reversed(parts)), model=model)

    base = Path(env.lake) / "churn"
    out = base / "predictions" / batch.name
    assert report["output_uri"] == str(out)
    assert sorted(p.name for p in out.parent.iterdir()) == [batch.name]
    src = pd.read_parquet(batch)
    X = src[spec.features.all]
    v1, v2 = registry.load_sklearn(mlc, "churn", "1"), registry.load_sklearn(mlc, "churn", "2")
    meta = {
        "model_name": "churn",
        "model_version": "1",
        "model_alias": "champion",
        "run_id": SCORE_RUN.run_id,
    }
    pred = pd.read_parquet(out)
    # Each partition stamps its own scoring time; they are all valid UTC timestamps.
    assert all(dt.datetime.fromisoformat(t).utcoffset() == dt.timedelta(0) for t in pred["scored_at"])
    pred["scored_at"] = meta["scored_at"] = pred["scored_at"].iloc[0]
    # Scored by v1's ONNX twin: the scikit-learn scores within the spec's parity tolerance.
    assert (model["engine"], model["shadow_engine"]) == ("onnx", "onnx")
    assert_whole_frame(pred, src, spec, v1, meta, atol=spec.scoring.onnx_tolerance)

    scoring_dir = base / "runs" / SCORE_RUN.key / "scoring"
    assert not list(scoring_dir.glob("part-*"))  # merged, then cleaned up
    assert len(list(scoring_dir.glob("shadow-*.parquet"))) == 4
    assert tmp_leftovers(base) == []
    written = json.loads((scoring_dir / "report.json").read_text())
    assert written == {k: v for k, v in report.items() if k not in ("report_uri", "mlflow_run_id")}
    assert report["report_uri"] == str(scoring_dir / "report.html")
    assert (report["version"], report["alias"], report["shadow_version"]) == ("1", "champion", "2")
    assert (report["rows"], report["partitions"], report["run_id"]) == (1000, 4, SCORE_RUN.run_id)
    assert (report["engine"], report["shadow_engine"]) == ("onnx", "onnx")
    assert report["engine_reason"] == model["engine_reason"]
    assert report["batch_uri"] == str(batch)

    flipped = v1.predict(X) != v2.predict(X)
    flips = int(flipped.sum())
    assert flips > 0
    shadow = report["shadow"]
    assert shadow["rows"] == 1000
    assert shadow["flipped_rows"] == flips
    assert shadow["agreement"] == pytest.approx(1 - flips / 1000)
    assert shadow["mean_abs_diff"] == pytest.approx(
        np.abs(v1.predict_proba(X)[:, 1] - v2.predict_proba(X)[:, 1]).mean(), abs=spec.scoring.onnx_tolerance
    )
    flips_sample = json.loads((scoring_dir / "shadow_flips.json").read_text())
    assert sorted(r["customer_id"] for r in flips_sample) == sorted(src.loc[flipped, "customer_id"])
    html = (scoring_dir / "report.html").read_text()
    assert "Scoring of <code>churn</code> with v1 (champion)" in html
    assert "challenger v2 on the same rows" in html
    assert "Rows that flip class" in html

    (run,) = scoring_runs(mlc)
    assert run.info.run_id == report["mlflow_run_id"]
    assert run.info.status == "FINISHED"
    assert run.data.tags[registry.TAG_RUN_ID] == SCORE_RUN.run_id
    assert run.data.tags[registry.TAG_DAG_ID] == "score_churn"
    assert run.data.tags["model.version"] == "1"
    assert run.data.metrics["rows"] == 1000
    assert run.data.metrics["shadow_flipped_rows"] == flips
    assert run.data.metrics["shadow_agreement"] == pytest.approx(shadow["agreement"])
    assert [a.path for a in mlc.list_artifacts(run.info.run_id, "scoring")] == ["scoring/report.json"]


@pytest.mark.parametrize("rerun", ["finalize-again", "score-and-finalize-again"])
def test_finalize_rerun_reuses_the_mlflow_run(env, mlc, spec, batch, rerun):
    """A retry of the same Airflow run (finalize alone, after it cleaned up its parts, or the whole
    scoring) logs to the same MLflow run and leaves one prediction file with each row once."""
    set_aliases(mlc, "1", "2")
    model = scoring_steps.choose_model(spec, mlc)
    parts = score_batch(env, spec, SCORE_RUN, batch, model)
    first = finalize(env, spec, SCORE_RUN, batch, parts=parts, model=model)
    if rerun == "score-and-finalize-again":
        parts = score_batch(env, spec, SCORE_RUN, batch, model)

    second = finalize(env, spec, SCORE_RUN, batch, parts=parts, model=model)

    assert second["mlflow_run_id"] == first["mlflow_run_id"]
    assert [r.info.run_id for r in scoring_runs(mlc)] == [first["mlflow_run_id"]]
    assert second["rows"] == first["rows"] == 1000
    assert second["shadow"] == first["shadow"]
    predictions = Path(env.lake) / "churn" / "predictions"
    assert sorted(p.name for p in predictions.iterdir()) == [batch.name]
    pred = pd.read_parquet(predictions / batch.name)
    assert pred["customer_id"].tolist() == pd.read_parquet(batch)["customer_id"].tolist()
    assert tmp_leftovers(Path(env.lake)) == []


def test_finalize_of_another_run_replaces_predictions_and_logs_a_new_run(env, mlc, spec, batch):
    set_aliases(mlc, "1", "2")
    model = scoring_steps.choose_model(spec, mlc)
    first_parts = score_batch(env, spec, SCORE_RUN, batch, model)
    first = finalize(env, spec, SCORE_RUN, batch, parts=first_parts, model=model)
    second_parts = score_batch(env, spec, NEXT_SCORE_RUN, batch, model)
    second = finalize(env, spec, NEXT_SCORE_RUN, batch, parts=second_parts, model=model)
    assert second["mlflow_run_id"] != first["mlflow_run_id"]
    assert len(scoring_runs(mlc)) == 2
    predictions = Path(env.lake) / "churn" / "predictions"
    assert sorted(p.name for p in predictions.iterdir()) == [batch.name]
    pred = pd.read_parquet(predictions / batch.name)
    assert len(pred) == 1000
    assert set(pred["run_id"]) == {NEXT_SCORE_RUN.run_id}


def test_finalize_with_a_pinned_version_has_no_shadow(env, mlc, spec, batch):
    set_aliases(mlc, "1", "2")
    model = scoring_steps.choose_model(spec, mlc, version="2")
    parts = score_batch(env, spec, SCORE_RUN, batch, model)
    assert all(p["shadow_uri"] is None for p in parts)

    report = finalize(env, spec, SCORE_RUN, batch, parts=parts, model=model)

    assert (report["version"], report["alias"], report["shadow"]) == ("2", None, None)
    pred = pd.read_parquet(report["output_uri"])
    assert set(pred["model_version"]) == {"2"}
    assert set(pred["model_alias"]) == {""}
    scoring_dir = Path(env.lake) / "churn" / "runs" / SCORE_RUN.key / "scoring"
    assert sorted(p.name for p in scoring_dir.iterdir()) == ["report.html", "report.json"]
    html = (scoring_dir / "report.html").read_text()
    assert "with v2 (pinned version)" in html
    assert "No challenger ran in shadow." in html
    (run,) = scoring_runs(mlc)
    assert run.data.metrics["rows"] == 1000
    assert not [k for k in run.data.metrics if k.startswith("shadow_")]


def test_finalize_refuses_a_row_count_mismatch(env, mlc, spec, batch):
    """If the merged file does not hold the rows the parts reported, nothing is reported or logged."""
    set_aliases(mlc, "1", None)
    model = scoring_steps.choose_model(spec, mlc)
    parts = score_batch(env, spec, SCORE_RUN, batch, model)
    parts[1] = {**parts[1], "rows": parts[1]["rows"] - 1}
    with pytest.raises(
        RegistryError, match=r"^merged 1000 rows but the parts scored 999; rerun the scoring$"
    ):
        finalize(env, spec, SCORE_RUN, batch, parts=parts, model=model)
    assert not (Path(env.lake) / "churn" / "runs" / SCORE_RUN.key / "scoring" / "report.json").exists()
    assert scoring_runs(mlc) == []


# --- the ONNX twin: logged with the version, chosen by tag, loaded from the registry ---------------


def test_training_logs_an_onnx_twin_that_passed_parity(mlc, spec, tmp_path):
    """steps.train converted v1, checked it on the holdout and logged model + report with the version."""
    mv = mlc.get_model_version("churn", "1")
    assert mv.tags[registry.TAG_ONNX] == "passed"
    assert mv.tags[registry.TAG_ONNX_REASON] == ""
    assert 0.0 <= float(mv.tags[registry.TAG_ONNX_DIFF]) <= spec.scoring.onnx_tolerance
    logged = {a.path for a in mlc.list_artifacts(mv.run_id, "onnx")}
    assert logged == {registry.ONNX_ARTIFACT, registry.ONNX_REPORT}
    report = json.loads(
        Path(mlc.download_artifacts(mv.run_id, registry.ONNX_REPORT, str(tmp_path))).read_text()
    )
    assert report["status"] == "passed" and report["passed"] is True
    assert report["rows"] == int(mlc.get_run(mv.run_id).data.params["data.holdout_rows"])
    assert mlc.get_run(mv.run_id).data.metrics["onnx_max_diff"] == pytest.approx(report["max_scaled_diff"])

    from mlcycle.ml.onnx_twin import OnnxModel

    twin = OnnxModel(registry.load_onnx(mlc, "churn", "1"), spec)
    X = generate_batch("churn", DAY, 500)[spec.features.all]
    sk = registry.load_sklearn(mlc, "churn", "1")
    assert list(twin.classes_) == list(sk.classes_)
    assert np.abs(twin.predict_proba(X) - sk.predict_proba(X)).max() <= spec.scoring.onnx_tolerance


def test_choose_model_uses_sklearn_when_the_spec_says_so(mlc):
    set_aliases(mlc, "1", "2")
    raw = quick_churn_spec().model_dump(by_alias=True)
    raw["scoring"] = {"engine": "sklearn"}
    chosen = scoring_steps.choose_model(parse_spec(raw, Path("churn.yaml")), mlc)
    assert (chosen["engine"], chosen["shadow_engine"]) == ("sklearn", "sklearn")
    assert chosen["engine_reason"] == "the spec sets scoring.engine: sklearn"


@pytest.mark.parametrize(
    ("tags", "reason"),
    [
        (
            {registry.TAG_ONNX: "failed", registry.TAG_ONNX_REASON: "max difference 0.2 > tolerance 0.0001"},
            "ONNX twin failed: max difference 0.2 > tolerance 0.0001",
        ),
        (
            {
                registry.TAG_ONNX: "not_convertible",
                registry.TAG_ONNX_REASON: "skl2onnx: MissingShapeCalculator",
            },
            "ONNX twin not_convertible: skl2onnx: MissingShapeCalculator",
        ),
        ({}, "v2 has no ONNX twin (trained before ONNX export)"),
    ],
    ids=["parity-failed", "not-convertible", "no-tag"],
)
def test_choose_model_falls_back_to_sklearn_and_says_why(mlc, spec, tags, reason):
    for key in (registry.TAG_ONNX, registry.TAG_ONNX_REASON):
        mlc.delete_model_version_tag("churn", "2", key)
    for key, value in tags.items():
        mlc.set_model_version_tag("churn", "2", key, value)
    chosen = scoring_steps.choose_model(spec, mlc, version="2")
    assert (chosen["engine"], chosen["engine_reason"]) == ("sklearn", reason)


def test_finalize_with_the_sklearn_engine_is_exactly_whole_frame(env, mlc, spec, batch):
    """The fallback engine: scikit-learn scores every row exactly as one whole-frame call does."""
    set_aliases(mlc, "1", None)
    model = {**scoring_steps.choose_model(spec, mlc), "engine": "sklearn", "engine_reason": "test"}
    report = finalize(
        env, spec, SCORE_RUN, batch, parts=score_batch(env, spec, SCORE_RUN, batch, model), model=model
    )
    assert (report["engine"], report["engine_reason"]) == ("sklearn", "test")
    pred = pd.read_parquet(report["output_uri"])
    meta = {
        **scoring.output_meta(spec, "1", "champion", SCORE_RUN.run_id),
        "scored_at": pred["scored_at"].iloc[0],
    }
    pred["scored_at"] = meta["scored_at"]
    assert_whole_frame(pred, pd.read_parquet(batch), spec, registry.load_sklearn(mlc, "churn", "1"), meta)
