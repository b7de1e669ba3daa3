"""Batch scoring as an Apache Beam pipeline (``scoring.engine: beam``).

    row ranges → spread → read → check rows ─┬─ valid → RunInference (ONNX twin or skops) → predictions
                                             └─ dead letters (row, key, column, reason, value)

The same output as the built-in engine (``mlcycle.ml.scoring.score_file``): the columns of
``scoring._output_table`` with the provenance of ``scoring.output_meta``, and the shadow
comparison of ``scoring.shadow_table``. Rows are not in input order (workers score batches in
parallel); the key column identifies them.

A row the model cannot score goes to the dead-letter file with its reason instead of failing the
batch: a feature column missing from the file, a value of the wrong type, a null where the model
saw none at training (``mlcycle.ml.schema``, as the REST server refuses it), an infinite
number. A batch the model itself fails on lands there too, every row with the error. A category
the model never saw is no error (the encoder ignores it, as the built-in engine does): it is
counted (``rows_unseen_category``).

Models are loaded from files named in the job (``mlcycle.ml.beam_job.BeamJob``), never through
MLflow and never with pickle: the ONNX twin with onnxruntime, or the skops file with its checked
types. Workers write their shards (one per bundle) beside each output; at the end they are
merged into the output atomically, so a reader sees the old file or the whole new one.

Metrics (namespace ``mlcycle``): counters ``rows_read``, ``rows_scored``, ``rows_failed``,
``rows_unseen_category``; distributions ``batch_latency_ms`` and ``row_latency_us`` (per batch).
They are logged and written to the job's ``metrics_uri`` as JSON.

Run with ``python include/mlcycle/ml/beam_launch.py --job=<job.json> [pipeline options]`` (what
the Airflow task runs) or ``run(argv)``; the DoFns live here, in the package, not in a script's
``__main__``, so that multi-process and cluster workers import them by name.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from mlcycle.core.spec import ModelSpec
from mlcycle.data import lake as lk
from mlcycle.ml import scoring
from mlcycle.ml.beam_job import DEAD_LETTER_COLUMNS, METRICS_NAMESPACE, BeamJob, ModelFile

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

log = logging.getLogger(__name__)

DEAD = "dead"
DEAD_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("key", pa.string()),
        ("column", pa.string()),
        ("reason", pa.string()),
        ("value", pa.string()),
    ]
)
assert tuple(DEAD_SCHEMA.names) == DEAD_LETTER_COLUMNS
# The model handler's own metrics (load time, inference latency) land in this namespace.
HANDLER_NAMESPACE = "mlcycle_model"

Chunk = tuple[int, pa.Table]  # (position of its first row in the file, rows)
PIECE_BATCHES = 2  # model batches per row range a worker reads


# --- read ------------------------------------------------------------------------------------


def row_ranges(input_uri: str, piece_rows: int) -> list[tuple[int, int]]:
    """The file's rows as ``[start, stop)`` ranges of about ``piece_rows`` rows within row groups:
    the units the workers read and score. pandas writes up to a million rows in one row group,
    so a row group is cut in pieces; a piece decodes its row group from the start (Parquet has
    no row index), which costs far less than shipping the rows between workers."""
    import pyarrow.parquet as pq

    with lk.as_path(input_uri).open("rb") as fh:
        meta = pq.ParquetFile(fh).metadata
    ranges, start = [], 0
    for rg in range(meta.num_row_groups):
        n = meta.row_group(rg).num_rows
        pieces = max(1, round(n / max(piece_rows, 1)))
        bounds = [start + n * i // pieces for i in range(pieces + 1)]
        ranges += [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
        start += n
    return ranges


class ReadRange(beam.DoFn):
    """Rows ``[start, stop)`` of the file, in tables of at most ``batch_rows`` rows, each with
    the position of its first row (what a dead letter records)."""

    def __init__(self, input_uri: str, columns: list[str], batch_rows: int) -> None:
        self._uri, self._columns, self._batch_rows = input_uri, columns, batch_rows
        self._rows = Metrics.counter(METRICS_NAMESPACE, "rows_read")

    def process(self, element: tuple[int, int]) -> Iterator[Chunk]:
        start, stop = element
        position = start
        with lk.as_path(self._uri).open("rb") as fh:
            for table in scoring.iter_chunks(fh, self._columns, self._batch_rows, start, stop):
                self._rows.inc(table.num_rows)
                yield position, table
                position += table.num_rows


# --- check -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Problems:
    """The first problem of each row of a table (None: the row is fine)."""

    column: np.ndarray
    reason: np.ndarray

    @classmethod
    def of(cls, n: int) -> _Problems:
        return cls(np.full(n, None, dtype=object), np.full(n, None, dtype=object))

    def mark(self, rows: np.ndarray, column: str, reason: str) -> None:
        rows = rows & (self.reason == None)  # noqa: E711 (element-wise)
        self.column[rows] = column
        self.reason[rows] = reason

    @property
    def bad(self) -> np.ndarray:
        return self.reason != None  # noqa: E711 (element-wise)


def _as_numbers(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(values as float64 with NaN for nulls, rows whose value is not a number at all)."""
    t = col.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t):
        values = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
        return np.asarray(values, dtype="float64"), np.zeros(len(values), dtype=bool)
    values, wrong = np.full(len(col), np.nan), np.zeros(len(col), dtype=bool)
    for i, v in enumerate(col.to_pylist()):  # text that may hold numbers ("12.5"): slow, and rare
        if v is None:
            continue
        try:
            values[i] = float(v)
        except (TypeError, ValueError):
            wrong[i] = True
    return values, wrong


class CheckRows(beam.DoFn):
    """Split a table into the rows the model can score (main output, with numeric columns as
    numbers) and dead letters (tagged ``dead``), by the version's input schema."""

    def __init__(self, features: list[dict[str, Any]], key: str) -> None:
        self._features, self._key = features, key
        self._failed = Metrics.counter(METRICS_NAMESPACE, "rows_failed")
        self._unseen = Metrics.counter(METRICS_NAMESPACE, "rows_unseen_category")

    def process(self, element: Chunk) -> Iterator[Any]:
        position, table = element
        n = table.num_rows
        problems = _Problems.of(n)
        unseen = np.zeros(n, dtype=bool)
        for f in self._features:
            name = f["name"]
            if name not in table.column_names:
                problems.mark(np.ones(n, dtype=bool), name, "missing column: the batch has no column " + name)
                continue
            col = table.column(name)
            if f["type"] == "number":
                values, wrong = _as_numbers(col)
                problems.mark(wrong, name, "wrong type: not a number")
                if f["kind"] == "numeric":
                    problems.mark(np.isinf(values), name, "non-finite value: the model takes finite numbers")
                    missing = np.isnan(values) & ~wrong
                else:
                    missing = np.asarray(col.is_null().to_numpy(zero_copy_only=False))
                    if not pa.types.is_floating(col.type):  # as the model takes them (bad rows go)
                        table = table.set_column(table.column_names.index(name), name, pa.array(values))
            else:
                if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
                    problems.mark(
                        np.ones(n, dtype=bool),
                        name,
                        f"wrong type: {col.type} values where the model takes text",
                    )
                    continue
                missing = np.asarray(col.is_null().to_numpy(zero_copy_only=False))
            if f["required"]:
                problems.mark(
                    missing, name, "null: the model saw no missing value in this column at training"
                )
            if f["kind"] == "categorical" and f.get("categories"):
                known = pa.array(list(f["categories"]))
                looked = col if col.type == known.type else col.cast(known.type, safe=False)
                seen = pc.is_in(looked, value_set=known).to_numpy(zero_copy_only=False)
                unseen |= ~np.asarray(seen) & ~missing
        bad = problems.bad
        if bad.any():
            self._failed.inc(int(bad.sum()))
            keys = table.column(self._key).to_pylist() if self._key in table.column_names else [None] * n
            for i in np.flatnonzero(bad):
                column = str(problems.column[i])
                value = table.column(column)[int(i)].as_py() if column in table.column_names else None
                yield beam.pvalue.TaggedOutput(
                    DEAD,
                    {
                        "row": position + int(i),
                        "key": None if keys[i] is None else str(keys[i]),
                        "column": column,
                        "reason": str(problems.reason[i]),
                        "value": None if value is None else repr(value),
                    },
                )
        self._unseen.inc(int((unseen & ~bad).sum()))
        if (~bad).any():
            yield position, table.filter(pa.array(~bad)) if bad.any() else table


def failed_batch_rows(element: tuple[Any, Exception], key: str) -> Iterator[dict[str, Any]]:
    """Every row of a batch the model failed on, as dead letters with the error."""
    batch, error = element
    position, table = batch
    Metrics.counter(METRICS_NAMESPACE, "rows_failed").inc(table.num_rows)
    reason = f"model error: {type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"
    keys = table.column(key).to_pylist() if key in table.column_names else [None] * table.num_rows
    for i, k in enumerate(keys):
        yield {
            "row": position + i,
            "key": None if k is None else str(k),
            "column": None,
            "reason": reason,
            "value": None,
        }


# --- score -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    """One scored batch: its predictions and (with a shadow model) the comparison rows."""

    predictions: pa.Table
    shadow: pa.Table | None


@dataclass
class Models:
    """What a worker loaded: the served model, the shadow (or None), the spec."""

    served: Any
    shadow: Any
    spec: ModelSpec


def _load(model: ModelFile, spec: ModelSpec, threads: int | None) -> Any:
    if model.engine == "onnx":
        from mlcycle.ml.onnx_twin import OnnxModel

        return OnnxModel(_read(model.uri), spec, threads=threads)
    from mlcycle.store import registry

    return registry.load_skops_bytes(_read(model.uri), model.trusted, model.uri)


def _read(uri: str) -> bytes:
    with lk.as_path(uri).open("rb") as fh:
        return fh.read()


class TableModelHandler(ModelHandler[Any, PredictionResult, Models]):
    """Loads the served model (and shadow) from the job's files and scores whole Arrow tables:
    the batching is the reader's (``batch_rows``), so RunInference runs it ``with_no_batching``."""

    def __init__(self, job: BeamJob, schema: pa.Schema) -> None:
        super().__init__()
        self._job, self._schema = job, schema

    def load_model(self) -> Models:
        spec = ModelSpec.model_validate(self._job.spec)
        threads = self._job.model_threads
        served = _load(self._job.model, spec, threads)
        shadow = _load(self._job.shadow, spec, threads) if self._job.shadow else None
        return Models(served, shadow, spec)

    def run_inference(
        self, batch: Sequence[Any], model: Models, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        """Score one chunk. ``with_no_batching``: ``batch`` is the element itself, not a list."""
        from threadpoolctl import threadpool_limits

        position, table = cast("Chunk", batch)
        spec, started = model.spec, time.perf_counter()
        with threadpool_limits(limits=self._job.model_threads):
            X = table.select(spec.features.all).to_pandas()
            pred, proba, classes = scoring.predict_frame(model.served, X, spec.task)
            keys = table.column(spec.data.key_column).combine_chunks()
            out = scoring._output_table(
                spec, keys=keys, pred=pred, proba=proba, classes=classes, meta=self._job.meta
            ).cast(self._schema)
            shadow = (
                scoring.shadow_table(
                    spec,
                    keys=keys,
                    served=(pred, proba),
                    shadow=scoring.predict_frame(model.shadow, X, spec.task)[:2],
                )
                if model.shadow is not None
                else None
            )
        elapsed = time.perf_counter() - started
        Metrics.counter(METRICS_NAMESPACE, "rows_scored").inc(out.num_rows)
        Metrics.distribution(METRICS_NAMESPACE, "batch_latency_ms").update(round(elapsed * 1e3))
        Metrics.distribution(METRICS_NAMESPACE, "row_latency_us").update(
            round(elapsed * 1e6 / max(out.num_rows, 1))
        )
        return [PredictionResult(position, Scored(out, shadow))]

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        return int(cast("Chunk", batch)[1].nbytes)

    def get_metrics_namespace(self) -> str:
        return HANDLER_NAMESPACE


# --- pipeline --------------------------------------------------------------------------------


def shards_dir(uri: str) -> lk.LakePath:
    """The folder where Beam's workers write the shards of ``uri`` before they are merged into it."""
    path = lk.as_path(uri)
    return path.parent / f".{path.name}.beam-shards"


def _write(pcoll: Any, label: str, uri: str, schema: pa.Schema, *, batched: bool) -> None:
    """Write ``pcoll`` as Parquet shards (one per bundle: no shuffle to a single writer, which a
    fixed shard count would cost) into ``shards_dir(uri)``; ``publish`` merges them into ``uri``."""
    prefix = lk.uri_of(shards_dir(uri) / "part")
    sink = beam.io.WriteToParquetBatched if batched else beam.io.WriteToParquet
    _ = pcoll | label >> sink(prefix, schema, file_name_suffix=".parquet", num_shards=0)


def _shards(uri: str) -> list[lk.LakePath]:
    folder = shards_dir(uri)
    if not folder.exists():
        return []
    found = [f for f in folder.iterdir() if f.name.startswith("part") and f.name.endswith(".parquet")]
    return sorted(found, key=lambda f: f.name)


def publish(uri: str, schema: pa.Schema) -> int:
    """Merge the shards of ``uri`` into it, in shard order, atomically (an empty file with
    ``schema`` when there are none), then remove them; returns the rows written."""
    shards = _shards(uri)
    if shards:
        rows = scoring.merge_parts([lk.uri_of(s) for s in shards], uri)
    else:
        _empty_parquet(uri, schema)
        rows = 0
    for shard in shards:
        shard.unlink()
    folder = shards_dir(uri)
    if isinstance(folder, Path):  # an object store has no folders to remove
        with contextlib.suppress(OSError):
            folder.rmdir()
    return rows


def shadow_schema(spec: ModelSpec, key_type: pa.DataType) -> pa.Schema:
    """The schema of ``scoring.shadow_table``."""
    return pa.schema(
        [
            (spec.data.key_column, key_type),
            ("score", pa.float64()),
            ("shadow_score", pa.float64()),
            ("prediction", pa.string()),
            ("shadow_prediction", pa.string()),
        ]
    )


def build(p: beam.Pipeline, job: BeamJob) -> dict[str, pa.Schema]:
    """The scoring graph of ``job`` on pipeline ``p`` (see the module docstring); returns the
    outputs it writes (URI: schema) for ``publish``."""
    import pyarrow.parquet as pq

    spec = ModelSpec.model_validate(job.spec)
    key = spec.data.key_column
    with lk.as_path(job.input_uri).open("rb") as fh:
        file_schema = pq.ParquetFile(fh).schema_arrow
    present = [c for c in [key, *spec.features.all] if c in file_schema.names]
    key_type = file_schema.field(key).type if key in file_schema.names else pa.string()
    schema = scoring.output_schema(spec, key_type, job.classes, job.meta)

    chunks = (
        p
        | "Row ranges" >> beam.Create(row_ranges(job.input_uri, PIECE_BATCHES * job.batch_rows))
        # Spread the ranges, not the rows: each worker reads what it scores (on a cluster runner,
        # straight from the lake), and no table crosses a process boundary before it is scored.
        | "Spread" >> beam.Reshuffle()
        | "Read" >> beam.ParDo(ReadRange(job.input_uri, present, job.batch_rows))
    )
    checked = chunks | "Check rows" >> beam.ParDo(CheckRows(job.features, key)).with_outputs(
        DEAD, main="valid"
    )
    scored, failed = (
        checked.valid
        | "Score" >> RunInference(TableModelHandler(job, schema).with_no_batching()).with_exception_handling()
    )
    model_failed = failed.failed_inferences | "Failed batches" >> beam.FlatMap(failed_batch_rows, key)
    results = scored | "Results" >> beam.Map(lambda r: r.inference)
    outputs = {job.output_uri: schema, job.dead_letter_uri: DEAD_SCHEMA}
    predictions = results | "Predictions" >> beam.Map(lambda s: s.predictions)
    _write(predictions, "Write predictions", job.output_uri, schema, batched=True)
    dead = (checked[DEAD], model_failed) | "Dead letters" >> beam.Flatten()
    _write(dead, "Write dead letters", job.dead_letter_uri, DEAD_SCHEMA, batched=False)
    if job.shadow is not None and job.shadow_uri:
        outputs[job.shadow_uri] = shadow_schema(spec, key_type)
        shadow = results | "Shadow rows" >> beam.FlatMap(lambda s: [s.shadow] if s.shadow is not None else [])
        _write(shadow, "Write shadow", job.shadow_uri, outputs[job.shadow_uri], batched=True)
    return outputs


def collect_metrics(result: Any) -> dict[str, Any]:
    """The pipeline's ``mlcycle`` metrics (and the model handler's) as a JSON-ready document."""
    out: dict[str, Any] = {"counters": {}, "distributions": {}, "model_handler": {}}
    for namespace, target in ((METRICS_NAMESPACE, None), (HANDLER_NAMESPACE, "model_handler")):
        found = result.metrics().query(MetricsFilter().with_namespace(namespace))
        for c in found["counters"]:
            value = c.committed if c.committed is not None else c.attempted
            bucket = out[target] if target else out["counters"]
            bucket[c.key.metric.name] = bucket.get(c.key.metric.name, 0) + int(value or 0)
        for d in found["distributions"]:
            r = d.committed if d.committed is not None else d.attempted
            if r is None or not r.count:
                continue
            doc = {"count": r.count, "sum": r.sum, "min": r.min, "max": r.max, "mean": round(r.mean, 3)}
            (out[target] if target else out["distributions"])[d.key.metric.name] = doc
    return out


def _empty_parquet(uri: str, schema: pa.Schema) -> None:
    import pyarrow.parquet as pq

    with lk.atomic_write(lk.as_path(uri)) as out:
        pq.ParquetWriter(out.fh, schema).close()


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the scoring pipeline of ``--job`` (a JSON ``BeamJob``) with the remaining arguments as
    Beam pipeline options; returns the metrics document (also written to the job's metrics_uri)."""
    parser = argparse.ArgumentParser(description="Score a Parquet batch with an Apache Beam pipeline.")
    parser.add_argument("--job", required=True, help="the JSON job document (mlcycle.ml.beam_job.BeamJob)")
    known, beam_args = parser.parse_known_args(argv)
    job = BeamJob.from_dict(json.loads(_read(known.job)))
    options = PipelineOptions(beam_args)
    runner = options.get_all_options().get("runner") or "DirectRunner"
    spec = ModelSpec.model_validate(job.spec)
    log.info(
        "scoring %s with %s v%s (%s) on %s -> %s",
        job.input_uri,
        spec.name,
        job.model.version,
        job.model.engine,
        runner,
        job.output_uri,
    )
    started = time.perf_counter()
    p = beam.Pipeline(options=options)
    for uri in [job.output_uri, job.dead_letter_uri, job.shadow_uri]:  # a retry starts clean
        for stale in _shards(uri) if uri else []:
            stale.unlink()
    outputs = build(p, job)
    result = p.run()
    state = result.wait_until_finish()
    seconds = time.perf_counter() - started
    if str(state) != "DONE":
        raise RuntimeError(f"the Beam pipeline ended {state}, not DONE; see the log above")
    for uri, schema in outputs.items():
        publish(uri, schema)
    metrics = collect_metrics(result) | {"runner": runner, "seconds": round(seconds, 3), "state": str(state)}
    counters = metrics["counters"]
    metrics["rows_per_second"] = round(counters.get("rows_scored", 0) / seconds, 1) if seconds else None
    lk.write_json(metrics, lk.as_path(job.metrics_uri))
    latency = metrics["distributions"].get("batch_latency_ms") or {}
    log.info(
        "Beam metrics: %d rows read, %d scored, %d failed (dead letters -> %s), %d with an unseen category; "
        "batch latency ms mean %s min %s max %s over %s batches; %.2fs (%s rows/s)",
        counters.get("rows_read", 0),
        counters.get("rows_scored", 0),
        counters.get("rows_failed", 0),
        job.dead_letter_uri,
        counters.get("rows_unseen_category", 0),
        latency.get("mean"),
        latency.get("min"),
        latency.get("max"),
        latency.get("count"),
        seconds,
        metrics["rows_per_second"],
    )
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    """``run``, logging to stdout: the Beam hook logs a subprocess's stdout lines as INFO and its
    stderr lines as WARNING in the task log. Beam's own chatter is kept to warnings."""
    import sys

    # force: importing apache_beam already configured the root logger (WARNING, stderr).
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout, force=True
    )
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    run(argv)
