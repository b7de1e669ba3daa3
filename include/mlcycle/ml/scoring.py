"""Batch scoring: stream a Parquet batch through a model by chunks, write predictions
atomically, and compare a shadow model on the same rows.

Memory is bounded by the chunk size (and the input's row-group size), not by the
batch: rows are read with ``pyarrow.parquet.ParquetFile.iter_batches`` and written with
a ``ParquetWriter``. A large batch is cut into row ranges (partitions) that separate
workers can score in parallel; ``merge_parts`` stitches their outputs together.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mlcycle.core.spec import ModelSpec, Task
from mlcycle.data import lake as lk

if TYPE_CHECKING:
    from collections.abc import Iterator

    import numpy as np
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 50_000


@dataclass(frozen=True)
class Partition:
    """Rows ``[start, stop)`` of one input file: the share of one mapped scoring task."""

    index: int
    start: int  # first row (inclusive)
    stop: int  # last row (exclusive)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def plan_partitions(input_uri: str, rows_per_partition: int) -> list[Partition]:
    """Cut a Parquet file into row ranges of at most ``rows_per_partition`` rows."""
    import pyarrow.parquet as pq

    if rows_per_partition < 1:
        raise ValueError(f"rows_per_partition must be positive, got {rows_per_partition}")
    with lk.as_path(input_uri).open("rb") as fh:
        total = pq.ParquetFile(fh).metadata.num_rows
    starts = range(0, max(total, 1), rows_per_partition)
    return [Partition(i, s, min(s + rows_per_partition, total)) for i, s in enumerate(starts)]


def iter_chunks(
    fh: Any, columns: list[str], chunk_rows: int, start: int = 0, stop: int | None = None
) -> Iterator[pa.Table]:
    """Rows ``[start, stop)`` of an open Parquet file, as tables of at most ``chunk_rows`` rows.

    Only the row groups overlapping the range are decoded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(fh)
    meta = pf.metadata
    stop = meta.num_rows if stop is None else min(stop, meta.num_rows)
    offset = 0
    for rg in range(meta.num_row_groups):
        n = meta.row_group(rg).num_rows
        rg_start, rg_stop = offset, offset + n
        offset = rg_stop
        if rg_stop <= start or rg_start >= stop:
            continue
        lo, hi = max(start, rg_start) - rg_start, min(stop, rg_stop) - rg_start
        pos = 0
        for batch in pf.iter_batches(batch_size=chunk_rows, row_groups=[rg], columns=columns):
            b_lo, b_hi = max(lo - pos, 0), min(hi - pos, batch.num_rows)
            pos += batch.num_rows
            if b_hi > b_lo:
                yield pa.Table.from_batches([batch.slice(b_lo, b_hi - b_lo)])
            if pos >= hi:
                break


def predict_frame(model: Any, X: pd.DataFrame, task: Task) -> tuple[np.ndarray, np.ndarray | None, list[Any]]:
    """(prediction, class probabilities or None, class labels) for one chunk."""
    import numpy as np

    if task.classifies:
        proba = np.asarray(model.predict_proba(X))
        classes = list(model.classes_)
        return np.asarray(model.classes_)[proba.argmax(axis=1)], proba, classes
    return np.asarray(model.predict(X), dtype="float64"), None, []


def _output_table(
    spec: ModelSpec,
    *,
    keys: pa.Array,
    pred: np.ndarray,
    proba: np.ndarray | None,
    classes: list[Any],
    meta: dict[str, str],
) -> pa.Table:
    import pyarrow as pa

    cols: dict[str, Any] = {spec.data.key_column: keys}
    if spec.task.classifies and proba is not None:
        cols["prediction"] = pa.array(pred)
        for i, c in enumerate(classes):
            cols[f"proba_{c}"] = pa.array(proba[:, i], type=pa.float64())
    else:
        cols["prediction"] = pa.array(pred, type=pa.float64())
    n = len(pred)
    for name, value in meta.items():
        cols[name] = pa.repeat(pa.scalar(value, pa.string()), n)
    return pa.table(cols)


def shadow_table(
    spec: ModelSpec,
    *,
    keys: pa.Array,
    served: tuple[np.ndarray, np.ndarray | None],
    shadow: tuple[np.ndarray, np.ndarray | None],
) -> pa.Table:
    """The row-level comparison of the served model and its shadow on the same rows: key, both
    scores (see ``_primary_score``), both predictions as text. ``served``/``shadow``: (prediction,
    probabilities or None) of each, as ``predict_frame`` returns them."""
    import pyarrow as pa

    (pred, proba), (s_pred, s_proba) = served, shadow
    return pa.table(
        {
            spec.data.key_column: keys,
            "score": pa.array(_primary_score(spec.task, pred, proba), type=pa.float64()),
            "shadow_score": pa.array(_primary_score(spec.task, s_pred, s_proba, proba), type=pa.float64()),
            "prediction": pa.array([str(p) for p in pred]),
            "shadow_prediction": pa.array([str(p) for p in s_pred]),
        }
    )


def output_schema(
    spec: ModelSpec, key_type: pa.DataType, classes: list[Any], meta: dict[str, str]
) -> pa.Schema:
    """The Arrow schema of a prediction file, as ``score_file`` writes it, for engines that need it
    before the first row (a writer declared up front)."""
    import numpy as np
    import pyarrow as pa

    classes = classes if spec.task.classifies else []
    return _output_table(
        spec,
        keys=pa.array([], type=key_type),
        pred=_empty(classes),
        proba=np.empty((0, len(classes))) if classes else None,
        classes=classes,
        meta=meta,
    ).schema


@dataclass
class ScoreResult:
    """What ``score_file`` wrote and how long it took (``shadow_uri`` None if no shadow rows)."""

    output_uri: str
    rows: int
    seconds: float
    chunks: int
    shadow_uri: str | None = None

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_second": round(self.rows_per_second, 1)}


def _primary_score(
    task: Task, pred: np.ndarray, proba: np.ndarray | None, served: np.ndarray | None = None
) -> np.ndarray:
    """The score a shadow comparison reads: a binary model's positive-class probability, a
    multi-class model's probability of the class the served model chose (``served``: the served
    model's probabilities; itself when None), a regressor's prediction."""
    import numpy as np

    if task is Task.MULTICLASS and proba is not None:
        chosen = (proba if served is None else served).argmax(axis=1)
        return np.asarray(proba[np.arange(len(proba)), chosen], dtype="float64")
    return (
        proba[:, -1]
        if task is Task.CLASSIFICATION and proba is not None
        else np.asarray(pred, dtype="float64")
    )


def score_file(
    model: Any,
    spec: ModelSpec,
    input_uri: str,
    output_uri: str,
    *,
    meta: dict[str, str],
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    partition: Partition | None = None,
    shadow_model: Any = None,
    shadow_uri: str | None = None,
    threads: int | None = 1,
) -> ScoreResult:
    """Score ``input_uri`` (or one partition of it) by chunks into ``output_uri``.

    With ``shadow_model``, the same chunks are also scored by it and a row-level
    comparison (key, both scores, both predictions) is written to ``shadow_uri``.
    Both outputs are written to a temporary name and renamed at the end, so a rerun
    replaces its own output and a reader never sees half a file.

    ``threads`` caps the native thread pools (OpenMP, BLAS) while scoring. One by default:
    partitions already run in parallel, and on small chunks HistGradientBoosting opens one
    OpenMP region per tree per call, which stalls on busy cores (bench/scoring.py: churn
    chunked 0.84x of whole-frame speed with default threads, 1.2-1.4x with one).
    ``None`` leaves the libraries' defaults.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from threadpoolctl import threadpool_limits

    features, key = spec.features.all, spec.data.key_column
    started = time.perf_counter()
    rows = chunks = 0
    writer = shadow_writer = None
    start, stop = (partition.start, partition.stop) if partition else (0, None)
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(lk.as_path(input_uri).open("rb"))
        out = stack.enter_context(lk.atomic_write(lk.as_path(output_uri)))
        shadow_out = (
            stack.enter_context(lk.atomic_write(lk.as_path(shadow_uri)))
            if shadow_model is not None and shadow_uri is not None
            else None
        )
        stack.enter_context(threadpool_limits(limits=threads))
        # Writers close before the files publish (callbacks run last-in, first-out), so a
        # file that appears is complete; on an error nothing appears.
        stack.callback(lambda: shadow_writer.close() if shadow_writer is not None else None)
        stack.callback(lambda: writer.close() if writer is not None else None)
        for table in iter_chunks(src, [key, *features], chunk_rows, start, stop):
            X = table.select(features).to_pandas()
            pred, proba, classes = predict_frame(model, X, spec.task)
            scored = _output_table(
                spec,
                keys=table.column(key).combine_chunks(),
                pred=pred,
                proba=proba,
                classes=classes,
                meta=meta,
            )
            if writer is None:
                writer = pq.ParquetWriter(out.fh, scored.schema)
            writer.write_table(scored)
            if shadow_out is not None:
                cmp = shadow_table(
                    spec,
                    keys=table.column(key).combine_chunks(),
                    served=(pred, proba),
                    shadow=predict_frame(shadow_model, X, spec.task)[:2],
                )
                if shadow_writer is None:
                    shadow_writer = pq.ParquetWriter(shadow_out.fh, cmp.schema)
                shadow_writer.write_table(cmp)
            rows += scored.num_rows
            chunks += 1
        if writer is None:  # an empty range still gets a well-formed output, same columns
            classes = list(getattr(model, "classes_", [])) if spec.task.classifies else []
            empty = _output_table(
                spec,
                keys=pa.array([], type=pa.string()),
                pred=_empty(classes),
                proba=_empty([0.0]).reshape(0, len(classes)) if classes else None,
                classes=classes,
                meta=meta,
            )
            writer = pq.ParquetWriter(out.fh, empty.schema)
        if shadow_out is not None and shadow_writer is None:
            shadow_out.abandon()
    seconds = time.perf_counter() - started
    log.info(
        "scored %d rows in %d chunk(s) in %.2fs (%.0f rows/s) -> %s",
        rows,
        chunks,
        seconds,
        rows / max(seconds, 1e-9),
        output_uri,
    )
    return ScoreResult(
        output_uri=output_uri,
        rows=rows,
        seconds=seconds,
        chunks=chunks,
        shadow_uri=shadow_uri if shadow_writer else None,
    )


def _empty(classes: list[Any]) -> np.ndarray:
    import numpy as np

    return np.asarray([], dtype=np.asarray(classes).dtype if classes else "float64")


def merge_parts(part_uris: list[str], output_uri: str) -> int:
    """Concatenate part files in order into ``output_uri`` (atomically); returns rows."""
    import pyarrow.parquet as pq

    rows = 0
    writer = None
    with lk.atomic_write(lk.as_path(output_uri)) as out:
        try:
            for uri in part_uris:
                with lk.as_path(uri).open("rb") as src:
                    pf = pq.ParquetFile(src)
                    for rg in range(pf.metadata.num_row_groups):
                        table = pf.read_row_group(rg)
                        if writer is None:
                            writer = pq.ParquetWriter(out.fh, table.schema)
                        writer.write_table(table)
                        rows += table.num_rows
                    if writer is None:
                        writer = pq.ParquetWriter(out.fh, pf.schema_arrow)
        finally:
            if writer is not None:
                writer.close()
    return rows


def shadow_summary(shadow_uris: list[str], task: Task, max_flips: int = 1000) -> dict[str, Any]:
    """Agreement and score shift between the served model and its shadow, over all parts."""
    import numpy as np

    frames = [lk.read_parquet([lk.as_path(u)]) for u in shadow_uris if lk.as_path(u).exists()]
    if not frames:
        return {"rows": 0}
    import pandas as pd

    df = pd.concat(frames, ignore_index=True)
    diff = (df["score"] - df["shadow_score"]).abs().to_numpy()
    out: dict[str, Any] = {"rows": len(df)}
    if len(diff):
        out |= {
            "mean_abs_diff": float(diff.mean()),
            "p50_abs_diff": float(np.quantile(diff, 0.5)),
            "p90_abs_diff": float(np.quantile(diff, 0.9)),
            "p99_abs_diff": float(np.quantile(diff, 0.99)),
            "max_abs_diff": float(diff.max()),
        }
    if task.classifies and len(df):
        # Agreement is about decisions, so it only means something for classes.
        flips = df[df["prediction"] != df["shadow_prediction"]]
        out["agreement"] = float(1.0 - len(flips) / len(df))
        out["flipped_rows"] = len(flips)
        out["flips_sample"] = flips.head(max_flips).to_dict(orient="records")
    return out


def output_meta(spec: ModelSpec, version: str, alias: str | None, run_id: str) -> dict[str, str]:
    """Provenance columns stamped on every prediction row: model, version, alias, run id and UTC time."""
    return {
        "model_name": spec.name,
        "model_version": str(version),
        "model_alias": alias or "",
        "run_id": run_id,
        "scored_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
