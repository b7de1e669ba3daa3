"""Beam batch inference vs the built-in chunked engine: rows/s and peak RSS on one machine.

A churn pipeline is trained once on ``--train-rows`` generated rows, its ONNX twin exported and
checked as training does (``bench/scoring.py``'s setup child), and a batch of ``--rows``
(default 1,000,000) generated rows written in row groups of 262,144. Then, in the same run,
interleaved round by round, each in a fresh interpreter:

``chunked``
    the built-in engine: ``mlcycle.ml.scoring.score_file`` with the engine scoring chooses
    (the ONNX twin when it passed parity: onnxruntime with its default threads, one per core),
    ``chunk_rows`` ``--chunk-rows``; reads, scores and writes the predictions Parquet.
``beam``
    ``mlcycle.ml.beam_scoring.run`` on the DirectRunner in multi-process mode
    (``--direct_num_workers`` ``--workers``, default 2; one model thread per worker, so both
    use the machine's cores), the same model file, batches of ``--chunk-rows`` rows, the same
    output columns, plus the row check and the dead-letter output. Timed: pipeline start to
    the renamed output (worker start-up included: a run pays it).

Peak RSS: the parent interpreter's ``ru_maxrss`` and, for Beam, the largest worker's
(``RUSAGE_CHILDREN``). The outputs are compared: the same keys and the same predictions.

The built-in engine is expected to be faster here: one process, no workers to start, no
runner passing bundles between stages. The DirectRunner is Beam's local correctness path; the point of the Beam engine is
that the same pipeline scales out on a cluster runner (Dataflow, Flink, Spark).

Run from the repository root::

    .venv/bin/python bench/beam_scoring.py                 # 1M rows, 3 runs each, ~3-4 minutes
    .venv/bin/python bench/beam_scoring.py --rows 50000 --runs 1   # smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

# bench/ is on sys.path when a script runs
from _common import (
    SPECS_DIR,
    CappedChild,
    add_child_args,
    check_python,
    emit,
    fmt_rows,
    load_average,
    machine,
    maxrss_mb,
    median,
    print_header,
    revision,
    scratch_dir,
)

MODEL = "churn"


def _spec() -> Any:
    from mlcycle.core.spec import get_spec

    return get_spec(MODEL, SPECS_DIR)


def child_setup(job: dict[str, Any]) -> dict[str, Any]:
    """Train + export + generate the input (``bench/scoring.py``'s setup), then the input schema."""
    import skops.io as sio
    from scoring import child_setup as scoring_setup

    from mlcycle.ml.schema import schema_of

    out = scoring_setup(job)
    schema = schema_of(sio.load(out["model_path"], trusted=out["trusted"]), _spec())
    out["features"] = [f.to_dict() for f in schema.features]
    out["classes"] = list(schema.classes or [])
    return out


def child_chunked(job: dict[str, Any]) -> dict[str, Any]:
    import skops.io as sio

    from mlcycle.ml import scoring
    from mlcycle.ml.onnx_twin import OnnxModel

    spec = _spec()
    if job["engine"] == "onnx":
        model: Any = OnnxModel(Path(job["onnx_path"]).read_bytes(), spec)
    else:
        model = sio.load(job["model_path"], trusted=job["trusted"])
    meta = scoring.output_meta(spec, "1", "champion", "bench-beam")
    rss_before = maxrss_mb()
    started = time.perf_counter()
    result = scoring.score_file(
        model, spec, job["input"], job["output"], meta=meta, chunk_rows=job["chunk_rows"]
    )
    seconds = time.perf_counter() - started
    return {"rows": result.rows, "seconds": seconds, "rss_before_mb": rss_before, "peak_rss_mb": maxrss_mb()}


def child_beam(job: dict[str, Any]) -> dict[str, Any]:
    from mlcycle.ml import beam_scoring
    from mlcycle.ml.beam_job import BeamJob, ModelFile

    spec = _spec()
    out = Path(job["output"])
    from mlcycle.ml import scoring

    engine = job["engine"]
    model = (
        ModelFile("onnx", job["onnx_path"], "1")
        if engine == "onnx"
        else ModelFile("sklearn", job["model_path"], "1", job["trusted"])
    )
    beam_job = BeamJob(
        input_uri=job["input"],
        output_uri=str(out),
        dead_letter_uri=str(out.with_suffix(".dead.parquet")),
        metrics_uri=str(out.with_suffix(".metrics.json")),
        spec=spec.model_dump(mode="json", by_alias=True),
        features=job["features"],
        classes=job["classes"],
        model=model,
        meta=scoring.output_meta(spec, "1", "champion", "bench-beam"),
        batch_rows=job["chunk_rows"],
        model_threads=1,
    )
    job_path = out.with_suffix(".job.json")
    job_path.write_text(json.dumps(beam_job.to_dict()))
    rss_before = maxrss_mb()
    started = time.perf_counter()
    metrics = beam_scoring.run(
        [
            f"--job={job_path}",
            "--runner=DirectRunner",
            "--direct_running_mode=multi_processing",
            f"--direct_num_workers={job['workers']}",
        ]
    )
    seconds = time.perf_counter() - started
    return {
        "rows": metrics["counters"].get("rows_scored", 0),
        "failed": metrics["counters"].get("rows_failed", 0),
        "seconds": seconds,
        "rss_before_mb": rss_before,
        "peak_rss_mb": maxrss_mb(),
        "worker_peak_rss_mb": maxrss_mb(children=True),
        "batch_latency_ms": metrics["distributions"].get("batch_latency_ms"),
    }


def child_compare(job: dict[str, Any]) -> dict[str, Any]:
    """The two outputs hold the same keys with the same predictions (Beam's rows in any order)."""
    import pandas as pd

    key = _spec().data.key_column
    a = pd.read_parquet(job["chunked"], columns=[key, "prediction"]).sort_values(key, ignore_index=True)
    b = pd.read_parquet(job["beam"], columns=[key, "prediction"]).sort_values(key, ignore_index=True)
    same_keys = a[key].equals(b[key])
    return {
        "rows": [len(a), len(b)],
        "same_keys": bool(same_keys),
        "same_predictions": bool(same_keys and (a["prediction"] == b["prediction"]).all()),
    }


CHILDREN = {"setup": child_setup, "chunked": child_chunked, "beam": child_beam, "compare": child_compare}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the batch (default 1,000,000)")
    parser.add_argument(
        "--runs", type=int, default=3, help="runs per engine (default 3; the median is shown)"
    )
    parser.add_argument("--workers", type=int, default=2, help="DirectRunner worker processes (default 2)")
    parser.add_argument(
        "--chunk-rows", type=int, default=50_000, help="rows per chunk / Beam batch (default 50,000)"
    )
    parser.add_argument("--train-rows", type=int, default=50_000, help="training rows (default 50,000)")
    parser.add_argument("--gen-chunk", type=int, default=100_000, help="rows per generate_batch call")
    parser.add_argument("--time-limit", type=float, default=30, help="minutes for the whole run")
    add_child_args(parser, CHILDREN)
    args = parser.parse_args(argv)
    if not args.child and min(args.rows, args.runs, args.workers, args.chunk_rows) < 1:
        parser.error("counts must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        emit(CHILDREN[args.child](json.loads(args.job)))
        return 0
    check_python(args.python, "apache_beam, mlcycle.ml.scoring, skops.io, onnxruntime")
    t0 = time.perf_counter()
    import os

    child = CappedChild(
        Path(__file__), args.python, time.monotonic() + args.time_limit * 60, dict(os.environ)
    )
    samples: dict[str, list[dict[str, Any]]] = {"chunked": [], "beam": []}
    loads: list[str] = []
    with scratch_dir("mlcycle-bench-beam-", keep=args.keep, parent=args.tmp_dir) as tmp:
        print(f"{machine()}; project at {revision()}; state in {tmp}")
        batch = tmp / f"{MODEL}-{args.rows}.parquet"
        setup = child.run(
            "setup",
            {
                "model": MODEL,
                "dir": str(tmp),
                "inputs": {str(args.rows): str(batch)},
                "train_rows": args.train_rows,
                "gen_chunk": args.gen_chunk,
            },
            capped=False,
        )
        if "error" in setup:
            sys.exit(f"error: setup: {setup['error']}")
        print(
            f"  {MODEL} ({setup['estimator']}) trained in {setup['train_s']:.1f} s, engine {setup['engine']} "
            f"({setup['engine_reason']}); {fmt_rows(args.rows)} rows generated in {setup['gen_s']:.0f} s",
            flush=True,
        )
        job = {
            "input": str(batch),
            "engine": setup["engine"],
            "onnx_path": setup["onnx_path"],
            "model_path": setup["model_path"],
            "trusted": setup["trusted"],
            "features": setup["features"],
            "classes": setup["classes"],
            "chunk_rows": args.chunk_rows,
            "workers": args.workers,
        }
        for run in range(args.runs):
            for engine in ("chunked", "beam"):
                loads.append(load_average().split()[0])
                out = tmp / f"out-{engine}-{run}.parquet"
                got = child.run(engine, {**job, "output": str(out)})
                if "error" in got:
                    print(f"  {engine} run {run + 1}: {got['error']}", flush=True)
                    continue
                samples[engine].append(got)
                print(
                    f"  {engine} run {run + 1}: {got['rows']:,} rows in {got['seconds']:.2f} s "
                    f"({got['rows'] / got['seconds']:,.0f} rows/s)",
                    flush=True,
                )
        compare = child.run(
            "compare",
            {"chunked": str(tmp / "out-chunked-0.parquet"), "beam": str(tmp / "out-beam-0.parquet")},
        )

    print()
    print(
        f"Batch scoring of {fmt_rows(args.rows)} churn rows ({setup['estimator']}, {setup['engine']} model), "
        f"median of {args.runs} run(s) each, fresh interpreter per run, chunk/batch {args.chunk_rows:,} rows; "
        f"{machine()}; load1 before runs {min(loads, default='-')}-{max(loads, default='-')}; "
        f"project at {revision()}"
    )
    header = f"{'engine':<44} {'rows/s':>10} {'seconds':>8} {'peak RSS MB':>12} {'worker peak MB':>15}"
    print_header(header)
    labels = {
        "chunked": "built-in chunked (score_file, 1 process)",
        "beam": f"Beam DirectRunner multi_processing x{args.workers}",
    }
    rates = {}
    for engine, label in labels.items():
        got = samples[engine]
        if not got:
            print(f"{label:<44} {'-':>10}")
            continue
        seconds = median(s["seconds"] for s in got) or float("nan")
        rates[engine] = got[0]["rows"] / seconds
        peak = max(s["peak_rss_mb"] for s in got)
        worker = max((s.get("worker_peak_rss_mb") or 0 for s in got), default=0)
        print(
            f"{label:<44} {rates[engine]:>10,.0f} {seconds:>8.2f} {peak:>12,.0f} "
            f"{(f'{worker:,.0f}' if engine == 'beam' else '-'):>15}"
        )
    if "error" not in compare:
        print(
            f"outputs: {compare['rows'][0]:,} vs {compare['rows'][1]:,} rows, same keys {compare['same_keys']}, "
            f"same predictions {compare['same_predictions']}"
        )
    if len(rates) == 2:
        print(
            f"\nThe built-in engine scored {rates['chunked'] / rates['beam']:.1f}x as many rows/s as Beam's "
            f"DirectRunner on this machine (one process, no worker start-up, no runner between the stages). The point of the "
            f"Beam engine is scale-out: the same pipeline runs on a cluster runner (Dataflow, Flink, Spark) "
            f"with as many workers as the batch needs, where one machine's rows/s is the ceiling of the built-in one."
        )
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
