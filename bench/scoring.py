"""Batch scoring throughput and memory: sklearn on the whole frame vs the project's chunked path vs ONNX.

For each shipped model (``include/models/*.yaml``) a pipeline is trained once on
``--train-rows`` generated rows (``mlcycle.ml.training.train``) and saved with skops (with the
trusted types the project records) to a temporary directory. Input batches of 1,000,000
and 10,000,000 rows are generated with ``mlcycle.data.generators.generate_batch`` in chunks of
``--gen-chunk`` rows (one day and seed per chunk, so keys stay unique) and streamed through
a ``ParquetWriter`` in row groups of 262,144 rows; the 1M file is the first 1M rows of the
10M one. Generation never holds more than a chunk and a row group in memory.

Every measurement runs in a fresh interpreter, which imports pandas, pyarrow, scikit-learn
and mlcycle and loads the model first; its RSS at that point ("RSS before") and its peak
RSS (``ru_maxrss``) are reported, so the difference is the measurement's own. Paths:

``whole``
    plain scikit-learn: ``pd.read_parquet`` of the feature columns of the whole file, then
    ``predict_proba`` (classifier) or ``predict`` (regressor) on the whole frame. Writes
    nothing. Timed: read + predict (both reported).
``chunked``
    the project's path, ``mlcycle.ml.scoring.score_file(..., chunk_rows=--chunk-rows)``: reads
    key + features chunk by chunk and writes the predictions Parquet (key, prediction,
    probabilities, 5 metadata columns). Timed: the whole call; the child also times
    ``predict_frame``, ``_output_table`` and the ``ParquetWriter`` calls (wrapped, a few
    calls per chunk), so the time excluding output building and writing is reported too.
``onnx``
    the same ``score_file`` call with the project's ONNX engine: the pipeline's ONNX twin made
    at setup by ``mlcycle.ml.onnx_twin.export`` (as training does: conversion + parity check on
    the holdout) behind ``mlcycle.ml.onnx_twin.OnnxModel`` (onnxruntime with its default
    threads, as scoring runs it). Timed and split like ``chunked``.

Runs are interleaved round by round (1M first, then 10M; ``--sizes`` sets other batch sizes,
e.g. tiny ones for a smoke run). Median of ``--runs`` per cell at the smaller sizes; at the
largest (10M) ``--big-whole-runs`` (default 1: slow and memory-hungry) and
``--big-chunked-runs`` (default 2). Threading is left as the library sets it (OpenMP for
HistGradientBoosting, ``n_jobs`` from the spec for RandomForest); nproc, OMP_NUM_THREADS
and the 1-minute load average before each run are printed. ``--omp-threads 1`` sets
OMP_NUM_THREADS for the children: on a machine busy with other work (load above nproc)
OpenMP's two spinning threads made HistGradientBoosting's predict ~1.8x slower than one
thread, so compare both when the load is high.

Targets: (1) chunked peak RSS (either engine) at 10M rows <= 1.5x that at 1M rows (the
largest size against the smallest); (2) the
engine the project chooses for the model (``mlcycle.flows.score.engine_for``: ``onnx`` when
the twin passed parity, else ``sklearn`` = the chunked path) is at least as fast, in rows/s,
as sklearn on the whole frame.

Run from the repository root::

    .venv/bin/python bench/scoring.py                      # 1M and 10M rows, about 15-25 minutes
    .venv/bin/python bench/scoring.py --max-rows 1000000   # 1M only, a few minutes
    .venv/bin/python bench/scoring.py --models churn --runs 5
    .venv/bin/python bench/scoring.py --max-rows 1000000 --omp-threads 1
    .venv/bin/python bench/scoring.py --models churn --sizes 20000,50000 --runs 1 --big-chunked-runs 1

Everything (models, Parquet inputs and outputs) goes to a temporary directory under
``--tmp-dir`` (default /tmp), removed at the end; free disk space is checked first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# bench/ is on sys.path when a script runs
from _common import (
    SPECS_DIR,
    CappedChild,
    SampledRows,
    add_child_args,
    check_python,
    emit,
    fmt_rows,
    machine,
    maxrss_mb,
    parse_sizes,
    print_header,
    require_disk,
    revision,
    scratch_dir,
)

SIZES = (1_000_000, 10_000_000)  # the default batch sizes (--sizes)
ROW_GROUP_ROWS = 262_144
PATHS = ("whole", "chunked", "onnx")
RSS_TARGET = 1.5  # chunked peak RSS at 10M rows / at 1M rows
# Disk estimate (measured ~17 B/row for the inputs, ~20 B/row for an output), with margin.
INPUT_BYTES_PER_ROW = 40
OUTPUT_BYTES_PER_ROW = 60
DISK_MARGIN = 1 << 30


# --------------------------------------------------------------------------------------------
# Children (fresh interpreters). Each prints one result line (``_common.emit``).
# --------------------------------------------------------------------------------------------


def _load_model(job: dict[str, Any], engine: str = "sklearn") -> tuple[Any, Any]:
    """Imports shared by every measurement child, then the model: what "RSS before" contains."""
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import skops.io as sio

    import mlcycle.ml.scoring  # noqa: F401
    from mlcycle.core.spec import get_spec

    spec = get_spec(job["model"], SPECS_DIR)
    if engine == "onnx":
        from mlcycle.ml.onnx_twin import OnnxModel

        return spec, OnnxModel(Path(job["onnx_path"]).read_bytes(), spec)
    return spec, sio.load(job["model_path"], trusted=job["trusted"])


def _timed(fn: Any, timers: dict[str, float], key: str) -> Any:
    """``fn``, adding the time of each call to ``timers[key]``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            timers[key] += time.perf_counter() - t

    return wrapper


def _time_preprocess(model: Any, timers: dict[str, float]) -> None:
    """Time the pipeline's preprocessing step apart (Pipeline calls ``step.transform``; an instance
    attribute takes precedence), so predict time splits into preprocessing and the estimator."""
    step = model.named_steps["preprocess"]
    step.transform = _timed(step.transform, timers, "preprocess_s")


def child_setup(job: dict[str, Any]) -> dict[str, Any]:
    """Train, save the model and write the input files of one model (not timed against anything)."""
    import datetime as dt

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import skops.io as sio

    from mlcycle.core.spec import get_spec
    from mlcycle.data.generators import generate_batch
    from mlcycle.flows.score import engine_for
    from mlcycle.ml import onnx_twin as onnx_engine
    from mlcycle.ml.training import train, trusted_types_for
    from mlcycle.store import registry

    spec = get_spec(job["model"], SPECS_DIR)
    gen = spec.data.generator or spec.name
    started = time.perf_counter()
    per_day = spec.data.rows_per_batch
    first_train_day = dt.date(2024, 1, 1)
    days = -(-job["train_rows"] // per_day)
    df = pd.concat(
        [generate_batch(gen, first_train_day + dt.timedelta(days=d), per_day, seed=d) for d in range(days)],
        ignore_index=True,
    )
    result = train(df, spec)
    trusted = trusted_types_for(result.pipeline, spec)
    model_path = Path(job["dir"]) / f"{spec.name}.skops"
    sio.dump(result.pipeline, model_path)
    train_s = time.perf_counter() - started
    # The ONNX twin as training makes it, and the engine scoring would choose for such a version.
    onnx_bytes, onnx = onnx_engine.export(result.pipeline, spec, result.holdout)
    onnx_path = None
    if onnx_bytes is not None:
        onnx_path = Path(job["dir"]) / f"{spec.name}.onnx"
        onnx_path.write_bytes(onnx_bytes)
    engine, why = engine_for(spec, registry.onnx_tags(onnx), "(bench)")
    del df, result

    started = time.perf_counter()
    targets = sorted((int(n), Path(p)) for n, p in job["inputs"].items())
    writers: dict[int, Any] = {}
    pending: dict[int, list[pa.Table]] = {n: [] for n, _ in targets}
    pending_rows = dict.fromkeys(pending, 0)
    schema = None
    written = 0
    chunk = job["gen_chunk"]
    first_day = dt.date(2025, 1, 1)  # one day per chunk: the generators' keys are unique within a day
    try:
        for i in range(-(-targets[-1][0] // chunk)):
            rows = min(chunk, targets[-1][0] - written)
            table = pa.Table.from_pandas(
                generate_batch(gen, first_day + dt.timedelta(days=i), rows, seed=1000 + i),
                preserve_index=False,
            )
            schema = schema or table.schema
            table = table.cast(schema)
            for n, path in targets:
                take = min(rows, n - written)
                if take <= 0:
                    continue
                pending[n].append(table.slice(0, take))
                pending_rows[n] += take
                if n not in writers:
                    writers[n] = pq.ParquetWriter(path, schema)
                if pending_rows[n] >= ROW_GROUP_ROWS or written + take == n:
                    buf = pa.concat_tables(pending[n])
                    full = len(buf) if written + take == n else len(buf) // ROW_GROUP_ROWS * ROW_GROUP_ROWS
                    if full:
                        writers[n].write_table(buf.slice(0, full), row_group_size=ROW_GROUP_ROWS)
                    rest = buf.slice(full)
                    pending[n], pending_rows[n] = ([rest] if len(rest) else []), len(rest)
            written += rows
            del table
    finally:
        for w in writers.values():
            w.close()
    files = {}
    for n, path in targets:
        meta = pq.ParquetFile(path).metadata
        if meta.num_rows != n:
            raise SystemExit(f"error: {path} has {meta.num_rows} rows, expected {n}")
        files[str(n)] = {
            "bytes": path.stat().st_size,
            "row_groups": meta.num_row_groups,
            "max_row_group": max(meta.row_group(i).num_rows for i in range(meta.num_row_groups)),
        }
    return {
        "model_path": str(model_path),
        "trusted": trusted,
        "estimator": spec.estimator.class_.rsplit(".", 1)[1],
        "train_s": train_s,
        "gen_s": time.perf_counter() - started,
        "files": files,
        "engine": engine,
        "engine_reason": why,
        "onnx": onnx,
        "onnx_path": str(onnx_path) if onnx_path else None,
        "peak_rss_mb": maxrss_mb(),
    }


def _primary(spec: Any, out: Any) -> Any:
    """The score a checksum is taken of: P(last class) for a classifier, the prediction otherwise."""
    return out[:, -1] if spec.task == "classification" else out


def child_whole(job: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd

    spec, model = _load_model(job)
    timers = {"preprocess_s": 0.0}
    _time_preprocess(model, timers)
    rss_before = maxrss_mb()
    started = time.perf_counter()
    df = pd.read_parquet(job["input"], columns=spec.features.all)
    read_s = time.perf_counter() - started
    out = model.predict_proba(df) if spec.task == "classification" else model.predict(df)
    seconds = time.perf_counter() - started
    peak = maxrss_mb()
    return {
        "rows": len(df),
        "seconds": seconds,
        "read_s": read_s,
        "predict_s": seconds - read_s,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak,
        "checksum": float(_primary(spec, out).sum()),
        **timers,
    }


def child_chunked(job: dict[str, Any], engine: str = "sklearn") -> dict[str, Any]:
    import pyarrow.parquet as pq

    from mlcycle.ml import scoring

    spec, model = _load_model(job, engine)
    timers = {"predict_s": 0.0, "preprocess_s": 0.0, "output_table_s": 0.0, "write_s": 0.0}
    if engine == "sklearn":
        _time_preprocess(model, timers)

    class TimedWriter(pq.ParquetWriter):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            t = time.perf_counter()
            super().__init__(*args, **kwargs)
            timers["write_s"] += time.perf_counter() - t

        def write_table(self, *args: Any, **kwargs: Any) -> None:
            t = time.perf_counter()
            super().write_table(*args, **kwargs)
            timers["write_s"] += time.perf_counter() - t

        def close(self) -> None:
            t = time.perf_counter()
            super().close()
            timers["write_s"] += time.perf_counter() - t

    # score_file looks these up at call time, so wrapping them times the real code path.
    scoring.predict_frame = _timed(scoring.predict_frame, timers, "predict_s")
    scoring._output_table = _timed(scoring._output_table, timers, "output_table_s")
    pq.ParquetWriter = TimedWriter
    meta = scoring.output_meta(spec, "1", "champion", "bench-scoring")
    rss_before = maxrss_mb()
    started = time.perf_counter()
    result = scoring.score_file(
        model, spec, job["input"], job["output"], meta=meta, chunk_rows=job["chunk_rows"]
    )
    seconds = time.perf_counter() - started
    peak = maxrss_mb()
    # After the peak is taken: checksum of the written scores, streamed.
    pf = pq.ParquetFile(job["output"])
    column = f"proba_{model.classes_[-1]}" if spec.task == "classification" else "prediction"
    checksum = sum(
        float(b.column(0).to_numpy().sum()) for b in pf.iter_batches(batch_size=1 << 20, columns=[column])
    )
    out = {
        "rows": result.rows,
        "chunks": result.chunks,
        "seconds": seconds,
        "output_rows": pf.metadata.num_rows,
        "output_bytes": Path(job["output"]).stat().st_size,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak,
        "checksum": checksum,
        **timers,
    }
    Path(job["output"]).unlink()
    return out


CHILDREN = {
    "setup": child_setup,
    "whole": child_whole,
    "chunked": child_chunked,
    "onnx": lambda job: child_chunked(job, "onnx"),
}


def child_main(kind: str, job_json: str) -> int:
    emit(CHILDREN[kind](json.loads(job_json)))
    return 0


# --------------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------------


@dataclass
class Cell(SampledRows):
    model: str
    rows: int
    path: str
    runs: int
    samples: list[dict[str, Any]] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    note: str = ""


def check_disk(base: Path, sizes: list[int], models: int) -> None:
    need = models * max(sizes) * INPUT_BYTES_PER_ROW + max(sizes) * OUTPUT_BYTES_PER_ROW + DISK_MARGIN
    if len(sizes) > 1:
        need += models * sum(sizes[:-1]) * INPUT_BYTES_PER_ROW
    hint = (
        "(inputs, one output at a time, margin); free space, pass --tmp-dir elsewhere or --max-rows 1000000"
    )
    free = require_disk(base, need, hint)
    print(f"disk: {free / 2**30:.1f} GiB free in {base}, about {need / 2**30:.1f} GiB needed")


def mb(x: float) -> str:
    return f"{x:,.0f}"


def schedule(cells: list[Cell], sizes: list[int]) -> list[list[Cell]]:
    """Rounds per size, smallest size first; within a round every model and path once (chunked first)."""
    order = {"chunked": 0, "whole": 1, "onnx": 2}
    out = []
    for size in sizes:
        group = sorted((c for c in cells if c.rows == size), key=lambda c: (order[c.path], c.model))
        out.extend([c for c in group if r < c.runs] for r in range(max((c.runs for c in group), default=0)))
    return out


def measure(
    cells: list[Cell], sizes: list[int], child: CappedChild, jobs: dict[tuple[str, int], dict], t0: float
):
    for i, round_cells in enumerate(schedule(cells, sizes), 1):
        for cell in round_cells:
            if cell.note:
                continue
            load = os.getloadavg()[0]
            job = {**jobs[cell.model, cell.rows], "run": len(cell.samples)}
            job["output"] = str(Path(job["dir"]) / f"out-{cell.model}-{cell.rows}-{job['run']}.parquet")
            result = child.run(cell.path, job)
            if "error" in result:
                cell.note = result["error"][:100]
                print(f"  {cell.model} {fmt_rows(cell.rows)} {cell.path}: {result['error']}", flush=True)
                continue
            if result["rows"] != cell.rows:
                sys.exit(f"error: {cell.path} scored {result['rows']} rows of {cell.rows}")
            cell.samples.append(result)
            cell.loads.append(load)
            print(
                f"  round {i}: {cell.model:<7} {fmt_rows(cell.rows):>4} {cell.path:<8} {result['seconds']:7.2f} s "
                f"peak {mb(result['peak_rss_mb']):>6} MB  (load1 before {load:.2f}, "
                f"{time.perf_counter() - t0:.0f} s elapsed)",
                flush=True,
            )


def print_table(cells: list[Cell], setups: dict[str, dict[str, Any]], models: list[str]) -> None:
    print_header(
        f"{'model':<7} {'rows':>4} {'path':<8} {'runs':>4} {'median s':>9} {'rows/s':>10} "
        f"{'RSS before MB':>13} {'peak RSS MB':>11} {'Δ MB':>7} {'load1':>11}  note"
    )
    for model in models:
        for cell in (c for c in cells if c.model == model):
            if not cell.samples:
                if cell.path != "onnx":
                    print(f"{model:<7} {fmt_rows(cell.rows):>4} {cell.path:<8} {0:>4}  {cell.note}")
                continue
            before = cell.median("rss_before_mb")
            peak = max(s["peak_rss_mb"] for s in cell.samples)
            loads = f"{min(cell.loads):.1f}-{max(cell.loads):.1f}"
            print(
                f"{model:<7} {fmt_rows(cell.rows):>4} {cell.path:<8} {len(cell.samples):>4} "
                f"{cell.median('seconds'):>9.2f} {cell.rows_per_s:>10,.0f} {mb(before):>13} {mb(peak):>11} "
                f"{mb(peak - before):>7} {loads:>11}  {cell.note}"
            )
        onnx = setups[model]["onnx"]
        if onnx["status"] != "passed":
            print(f"{model:<7} {'all':>4} {'onnx':<8} {'-':>4}  ONNX twin {onnx['status']}: {onnx['reason']}")


def details(cells: list[Cell]) -> None:
    print("\nWhere the time goes (medians):")
    for cell in cells:
        if not cell.samples:
            continue
        name = f"  {cell.model} {fmt_rows(cell.rows)} {cell.path}:"
        if cell.path == "whole":
            pre = cell.median("preprocess_s")
            print(
                f"{name} read_parquet {cell.median('read_s'):.2f} s, predict {cell.median('predict_s'):.2f} s "
                f"= preprocess {pre:.2f} s + estimator {cell.median('predict_s') - pre:.2f} s "
                f"(predict alone {cell.rows / cell.median('predict_s'):,.0f} rows/s)"
            )
        else:
            total = cell.median("seconds")
            pred, table, write = (cell.median(k) for k in ("predict_s", "output_table_s", "write_s"))
            pre = cell.median("preprocess_s")
            rest = total - pred - table - write
            s = cell.samples[0]
            print(
                f"{name} {s['chunks']} chunks; read+to_pandas+loop {rest:.2f} s ({rest / total:.0%}), predict_frame "
                f"{pred:.2f} s ({pred / total:.0%}"
                + (
                    f"; preprocess {pre:.2f} s + estimator {pred - pre:.2f} s), "
                    if pre
                    else ", onnxruntime), "
                )
                + f"_output_table {table:.2f} s ({table / total:.0%}), "
                f"ParquetWriter {write:.2f} s ({write / total:.0%}); without output building and writing "
                f"{cell.rows / (total - table - write):,.0f} rows/s; output {s['output_bytes'] / 2**20:.0f} MB"
            )


def checksums(cells: list[Cell]) -> list[str]:
    """The paths must agree on the sum of the primary score (same rows, same model)."""
    problems = []
    for cell in cells:
        ref = next((c for c in cells if (c.model, c.rows, c.path) == (cell.model, cell.rows, "whole")), None)
        if cell.path == "whole" or not cell.samples or ref is None or not ref.samples:
            continue
        a, b = ref.samples[0]["checksum"], cell.samples[0]["checksum"]
        rel = 1e-3 if cell.path == "onnx" else 1e-9
        if abs(a - b) > rel * max(1.0, abs(a)):
            problems.append(
                f"{cell.model} {fmt_rows(cell.rows)}: {cell.path} score sum {b:.6g} != whole {a:.6g}"
            )
    return problems


def targets(
    cells: list[Cell], models: list[str], setups: dict[str, dict[str, Any]], sizes: list[int]
) -> bool:
    """Print both targets on the sizes measured (target 1: the largest against the smallest)."""

    def get(model: str, rows: int, path: str) -> Cell | None:
        c = next((c for c in cells if (c.model, c.rows, c.path) == (model, rows, path)), None)
        return c if c is not None and c.samples else None

    ok = True
    small, big = sizes[0], sizes[-1]
    print(
        f"\nTarget 1: chunked peak RSS at {fmt_rows(big)} rows <= {RSS_TARGET}x that at {fmt_rows(small)} rows"
    )
    for model in models if len(sizes) > 1 else []:
        for path in ("chunked", "onnx"):
            a, b = get(model, small, path), get(model, big, path)
            if a is None or b is None:
                print(f"  {model} {path}: not measured")
                continue
            pa_, pb = (max(s["peak_rss_mb"] for s in c.samples) for c in (a, b))
            da, db = (max(s["peak_rss_mb"] - s["rss_before_mb"] for s in c.samples) for c in (a, b))
            ratio = pb / pa_
            ok &= ratio <= RSS_TARGET
            print(
                f"  {model} {path}: {mb(pb)} / {mb(pa_)} MB = {ratio:.2f}x  "
                f"{'PASS' if ratio <= RSS_TARGET else 'FAIL'}  (own growth beyond RSS before: {mb(db)} vs {mb(da)} MB)"
            )
    print("\nTarget 2: the engine the project chooses for the model (rows/s) >= sklearn whole-frame rows/s")
    for model in models:
        engine = setups[model]["engine"]
        path = "onnx" if engine == "onnx" else "chunked"
        print(f"  {model}: engine {engine} ({setups[model]['engine_reason']}) -> the {path} path")
        for rows in sizes:
            eng, whole = get(model, rows, path), get(model, rows, "whole")
            if eng is None or whole is None:
                if eng is not None or whole is not None:
                    print(f"  {model} {fmt_rows(rows)}: not measured on both paths")
                continue
            ratio = eng.rows_per_s / whole.rows_per_s
            ok &= ratio >= 1.0
            line = (
                f"  {model} {fmt_rows(rows)}: {eng.rows_per_s:,.0f} vs {whole.rows_per_s:,.0f} rows/s = "
                f"{ratio:.2f}x  {'PASS' if ratio >= 1.0 else 'FAIL'}"
            )
            if ratio < 1.0:
                line += f" ({1 - ratio:.1%} slower)"
            total = eng.median("seconds")
            out = eng.median("output_table_s") + eng.median("write_s")
            bare = rows / (total - out)
            line += (
                f"; output building+writing {out / total:.0%} of its time, which whole-frame does not do; "
                f"without it {bare:,.0f} rows/s = {bare / whole.rows_per_s:.2f}x"
            )
            print(line)
    return ok


def print_onnx(setups: dict[str, dict[str, Any]]) -> None:
    import importlib.metadata as md

    versions = ", ".join(f"{p} {md.version(p)}" for p in ("skl2onnx", "onnx", "onnxruntime"))
    print(f"\nONNX twins (mlcycle.ml.onnx_twin.export at setup; {versions}):")
    for model, setup in setups.items():
        r = setup["onnx"]
        if r["status"] != "passed":
            print(f"  {model}: {r['status']}: {r['reason']}")
            continue
        print(
            f"  {model}: passed parity on {r['rows']:,} holdout rows (max difference {r['max_scaled_diff']:.2g}, "
            f"tolerance {r['tolerance']:g}); converted + checked in {r['convert_seconds']:.2f} s; {r['size_mb']:.2f} MB"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default="churn,demand", help="comma-separated specs (default churn,demand)"
    )
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, SIZES)),
        help="comma-separated batch sizes in rows (default 1000000,10000000; the largest gets the big-* runs)",
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        default=None,
        help="measure only the sizes up to this: 1000000 for a quick check (default: all of --sizes)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per cell at 1M rows (default 3)")
    parser.add_argument("--big-whole-runs", type=int, default=1, help="whole-frame runs at 10M (default 1)")
    parser.add_argument(
        "--big-chunked-runs", type=int, default=2, help="chunked/ONNX runs at 10M (default 2)"
    )
    parser.add_argument(
        "--chunk-rows", type=int, default=100_000, help="score_file chunk_rows (default 100,000)"
    )
    parser.add_argument("--train-rows", type=int, default=50_000, help="training rows (default 50,000)")
    parser.add_argument("--gen-chunk", type=int, default=100_000, help="rows per generate_batch call")
    parser.add_argument(
        "--time-limit", type=float, default=30, help="minutes for the whole run; later runs are skipped"
    )
    parser.add_argument(
        "--omp-threads",
        type=int,
        default=0,
        help="OMP_NUM_THREADS for the children (default 0: leave the environment's setting)",
    )
    add_child_args(parser, CHILDREN)
    args = parser.parse_args(argv)
    if not args.child:
        args.sizes = parse_sizes(parser, args.sizes)
        if args.max_rows is None:
            args.max_rows = args.sizes[-1]
        if args.max_rows not in args.sizes:
            parser.error(f"--max-rows must be one of --sizes {args.sizes}")
        if min(args.runs, args.big_whole_runs, args.big_chunked_runs, args.chunk_rows, args.gen_chunk) < 1:
            parser.error("counts must be positive")
        if args.train_rows < 100 or args.time_limit <= 0 or args.omp_threads < 0:
            parser.error("--train-rows must be >= 100, --time-limit positive, --omp-threads >= 0")
        unknown = [m for m in args.models.split(",") if not (SPECS_DIR / f"{m}.yaml").exists()]
        if unknown:
            parser.error(f"no spec include/models/<name>.yaml for {unknown}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args.child, args.job)

    models = args.models.split(",")
    sizes = [n for n in args.sizes if n <= args.max_rows]
    largest = args.sizes[-1] if len(args.sizes) > 1 else None  # gets the big-* run counts
    check_python(args.python, "mlcycle.ml.scoring, sklearn, skops.io, pyarrow.parquet")
    check_disk(args.tmp_dir, sizes, len(models))
    t0 = time.perf_counter()
    if args.omp_threads:
        os.environ["OMP_NUM_THREADS"] = str(args.omp_threads)  # for the children and machine()
    env = dict(os.environ)
    if args.omp_threads:
        env["OMP_NUM_THREADS"] = str(args.omp_threads)
    child = CappedChild(Path(__file__), args.python, time.monotonic() + args.time_limit * 60, env)
    with scratch_dir("mlcycle-bench-scoring-", keep=args.keep, parent=args.tmp_dir) as tmp:
        print(f"{machine()}; project at {revision()}; state in {tmp}")
        jobs: dict[tuple[str, int], dict[str, Any]] = {}
        setups: dict[str, dict[str, Any]] = {}
        for model in models:
            inputs = {str(n): str(tmp / f"{model}-{n}.parquet") for n in sizes}
            setup = child.run(
                "setup",
                {
                    "model": model,
                    "dir": str(tmp),
                    "inputs": inputs,
                    "train_rows": args.train_rows,
                    "gen_chunk": args.gen_chunk,
                },
                capped=False,
            )
            if "error" in setup:
                sys.exit(f"error: setting up {model}: {setup['error']}")
            setups[model] = setup
            files = ", ".join(
                f"{fmt_rows(int(n))} rows {f['bytes'] / 2**20:.0f} MB in {f['row_groups']} row groups "
                f"of <= {f['max_row_group']:,}"
                for n, f in setup["files"].items()
            )
            print(
                f"  {model} ({setup['estimator']}): trained on {args.train_rows:,} rows + saved in "
                f"{setup['train_s']:.1f} s; inputs generated in {setup['gen_s']:.0f} s ({files}); "
                f"generator peak RSS {mb(setup['peak_rss_mb'])} MB",
                flush=True,
            )
            base = {
                "model": model,
                "dir": str(tmp),
                "model_path": setup["model_path"],
                "trusted": setup["trusted"],
                "chunk_rows": args.chunk_rows,
                "onnx_path": setup["onnx_path"],
            }
            for n in sizes:
                jobs[model, n] = {**base, "input": inputs[str(n)]}
        print(f"  setup done ({time.perf_counter() - t0:.0f} s, not timed); measuring:", flush=True)

        cells = []
        for model in models:
            for n in sizes:
                big = n == largest
                cells.append(Cell(model, n, "chunked", args.big_chunked_runs if big else args.runs))
                cells.append(Cell(model, n, "whole", args.big_whole_runs if big else args.runs))
                if setups[model]["onnx_path"]:
                    cells.append(Cell(model, n, "onnx", args.big_chunked_runs if big else args.runs))
        measure(cells, sizes, child, jobs, t0)

    print()
    runs = f"median of {args.runs} runs at {', '.join(fmt_rows(n) for n in sizes if n != largest)} rows"
    if largest in sizes:
        runs += (
            f"; at {fmt_rows(largest)} rows {args.big_whole_runs} whole-frame run(s) (slow, memory-hungry) "
            f"and {args.big_chunked_runs} chunked run(s)"
        )
    print(
        f"Batch scoring, fresh interpreter per run; {runs}; chunk_rows {args.chunk_rows:,}; input row groups "
        f"{ROW_GROUP_ROWS:,} rows; {machine()}; project at {revision()}"
    )
    print(
        "whole = pd.read_parquet(features) + predict_proba/predict, no output; chunked = mlcycle.ml.scoring."
        "score_file incl. writing the predictions Parquet; onnx = the same with the ONNX engine; "
        "peak RSS = max over runs; Δ = peak - RSS before; "
        "load1 = 1-min load average before the runs (min-max)"
    )
    print_table(cells, setups, models)
    details(cells)
    print_onnx(setups)
    problems = checksums(cells)
    for p in problems:
        print(f"MISMATCH: {p}")
    ok = True
    if sizes == args.sizes:
        ok = targets(cells, models, setups, sizes)
    else:
        print(
            f"\n(--max-rows {args.max_rows:,}: target 1 needs {fmt_rows(args.sizes[-1])} rows; "
            f"target 2 at {', '.join(fmt_rows(n) for n in sizes)} only)"
        )
        targets(cells, models, setups, sizes)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0 if ok and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
