"""Validation at scale: GX on the whole in-memory frame vs the project's chunked validator.

Churn batches of 1,000,000 and 10,000,000 rows are generated with
``mlcycle.data.generators.generate_batch`` in chunks of ``--gen-chunk`` rows (one day and seed per
chunk, the days ending today, so keys stay unique and dates are recent) and written to Parquet,
one row group per chunk; the 1M file is the first 1M rows of the 10M one. The contract is the
shipped ``include/contracts/churn.json`` (or ``--contract``) with the upper bound of its row-count
expectation raised to the largest batch (the shipped bound is for daily batches), so the batches pass.

Every measurement runs in a fresh interpreter that imports pandas, pyarrow, Great Expectations
and mlcycle and builds its validator first; its RSS at that point ("RSS before") and its peak RSS
(``ru_maxrss``) are reported. Paths:

``gx``
    today's path: ``mlcycle.data.lake.read_parquet`` of the whole file, then
    ``ContractValidator.validate`` on the frame (GX BOOLEAN_ONLY for every expectation, SUMMARY
    for those that failed). Timed: read + validate (both reported).
``chunked``
    ``ChunkedValidator.validate_file`` with ``--chunk-rows``: reads the file chunk by chunk,
    evaluates the expectations vectorised and merges what needs the whole batch.

Both must reach the same verdict (success, failed expectations and their descriptions); the
script exits 1 when they do not. Runs are interleaved (1M first, chunked then gx, ``--runs``
rounds; at the largest size ``--big-chunked-runs`` and ``--big-gx-runs``).

Targets: (1) chunked peak RSS at 10M rows <= 1.5x that at 1M rows; (2) chunked throughput (rows/s)
at least GX's own at each size.

Run from the repository root::

    .venv/bin/python bench/validate.py                        # 1M and 10M rows, about 4-6 minutes
    .venv/bin/python bench/validate.py --sizes 1000000 --runs 5
    .venv/bin/python bench/validate.py --sizes 20000,50000 --runs 1 --big-gx-runs 1   # smoke, ~1 min

The Parquet files go to a temporary directory under ``--tmp-dir`` (default /tmp), removed at the
end; free disk space is checked first.
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
    REPO,
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

SIZES = (1_000_000, 10_000_000)
PATHS = ("chunked", "gx")
RSS_TARGET = 1.5
BYTES_PER_ROW = 40  # measured ~20 B/row for a churn file, with margin
CONTRACT = REPO / "include" / "contracts" / "churn.json"


# --------------------------------------------------------------------------------------------
# Children (fresh interpreters). Each prints one result line (``_common.emit``).
# --------------------------------------------------------------------------------------------


def _suite(path: str, max_rows: int) -> dict[str, Any]:
    """The contract at ``path``, its row-count bound raised to ``max_rows``."""
    from mlcycle.data.contracts import load_suite_dict

    suite = load_suite_dict(path)
    for exp in suite["expectations"]:
        if exp["type"] == "expect_table_row_count_to_be_between":
            exp["kwargs"]["max_value"] = max(max_rows, exp["kwargs"].get("max_value") or 0)
    return suite


def child_setup(job: dict[str, Any]) -> dict[str, Any]:
    """Write the input files (not timed against anything)."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlcycle.data.generators import generate_batch

    started = time.perf_counter()
    targets = sorted((int(n), Path(p)) for n, p in job["inputs"].items())
    largest, chunk = targets[-1][0], job["gen_chunk"]
    chunks = -(-largest // chunk)
    first_day = dt.date.today() - dt.timedelta(days=chunks - 1)
    writers: dict[int, Any] = {}
    schema = None
    written = 0
    try:
        for i in range(chunks):
            rows = min(chunk, largest - written)
            df = generate_batch("churn", first_day + dt.timedelta(days=i), rows, seed=1000 + i)
            table = pa.Table.from_pandas(df, preserve_index=False)
            schema = schema or table.schema
            table = table.cast(schema)
            for n, path in targets:
                take = min(rows, n - written)
                if take > 0:
                    if n not in writers:
                        writers[n] = pq.ParquetWriter(path, schema)
                    writers[n].write_table(table.slice(0, take))
            written += rows
    finally:
        for w in writers.values():
            w.close()
    files = {}
    for n, path in targets:
        meta = pq.ParquetFile(path).metadata
        if meta.num_rows != n:
            raise SystemExit(f"error: {path} has {meta.num_rows} rows, expected {n}")
        files[str(n)] = {"bytes": path.stat().st_size, "row_groups": meta.num_row_groups}
    return {"seconds": time.perf_counter() - started, "files": files, "peak_rss_mb": maxrss_mb()}


def _verdict(result: Any) -> dict[str, Any]:
    return {
        "success": result.success,
        "evaluated": result.evaluated,
        "failed": result.failed,
        "failures": [f.describe() for f in result.failures],
    }


def child_gx(job: dict[str, Any]) -> dict[str, Any]:
    from mlcycle.data import lake as lk
    from mlcycle.data.contracts import ContractValidator

    validator = ContractValidator(_suite(job["contract"], job["max_rows"]))
    rss_before = maxrss_mb()
    started = time.perf_counter()
    df = lk.read_parquet([Path(job["input"])])
    read_s = time.perf_counter() - started
    result = validator.validate(df, job["input"])
    seconds = time.perf_counter() - started
    return {
        "rows": result.rows,
        "seconds": seconds,
        "read_s": read_s,
        "validate_s": seconds - read_s,
        "rss_before_mb": rss_before,
        "peak_rss_mb": maxrss_mb(),
        **_verdict(result),
    }


def child_chunked(job: dict[str, Any]) -> dict[str, Any]:
    from mlcycle.data.contracts import ChunkedValidator

    validator = ChunkedValidator(_suite(job["contract"], job["max_rows"]), chunk_rows=job["chunk_rows"])
    rss_before = maxrss_mb()
    started = time.perf_counter()
    result = validator.validate_file(job["input"])
    seconds = time.perf_counter() - started
    return {
        "rows": result.rows,
        "seconds": seconds,
        "rss_before_mb": rss_before,
        "peak_rss_mb": maxrss_mb(),
        **_verdict(result),
    }


CHILDREN = {"setup": child_setup, "gx": child_gx, "chunked": child_chunked}


# --------------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------------


@dataclass
class Cell(SampledRows):
    rows: int
    path: str
    runs: int
    samples: list[dict[str, Any]] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def peak(self) -> float:
        return max(s["peak_rss_mb"] for s in self.samples)


def mb(x: float) -> str:
    return f"{x:,.0f}"


def measure(cells: list[Cell], child: CappedChild, jobs: dict[int, dict[str, Any]], t0: float) -> None:
    """Round by round, smallest size first; within a round chunked, then gx."""
    for size in sorted({c.rows for c in cells}):
        group = [c for c in cells if c.rows == size]
        for r in range(max(c.runs for c in group)):
            for cell in (c for c in group if r < c.runs and not c.note):
                load = os.getloadavg()[0]
                result = child.run(cell.path, jobs[size])
                if "error" in result:
                    cell.note = result["error"][:100]
                    print(f"  {fmt_rows(size)} {cell.path}: {result['error']}", flush=True)
                    continue
                if result["rows"] != size:
                    sys.exit(f"error: {cell.path} validated {result['rows']} rows of {size}")
                cell.samples.append(result)
                cell.loads.append(load)
                print(
                    f"  round {r + 1}: {fmt_rows(size):>4} {cell.path:<8} {result['seconds']:7.2f} s "
                    f"peak {mb(result['peak_rss_mb']):>6} MB  (load1 before {load:.2f}, "
                    f"{time.perf_counter() - t0:.0f} s elapsed)",
                    flush=True,
                )


def print_table(cells: list[Cell]) -> None:
    print_header(
        f"{'rows':>4} {'path':<8} {'runs':>4} {'median s':>9} {'rows/s':>11} "
        f"{'RSS before MB':>13} {'peak RSS MB':>11} {'Δ MB':>7} {'load1':>9}  note"
    )
    for cell in cells:
        if not cell.samples:
            print(f"{fmt_rows(cell.rows):>4} {cell.path:<8} {0:>4}  {cell.note}")
            continue
        before = cell.median("rss_before_mb")
        loads = f"{min(cell.loads):.1f}-{max(cell.loads):.1f}"
        note = cell.note
        if cell.path == "gx":
            note = f"read {cell.median('read_s'):.2f} s + validate {cell.median('validate_s'):.2f} s {note}"
        print(
            f"{fmt_rows(cell.rows):>4} {cell.path:<8} {len(cell.samples):>4} {cell.median('seconds'):>9.2f} "
            f"{cell.rows_per_s:>11,.0f} {mb(before):>13} {mb(cell.peak):>11} {mb(cell.peak - before):>7} "
            f"{loads:>9}  {note}"
        )


def verdicts(cells: list[Cell]) -> list[str]:
    """Both paths must reach the same verdict on the same file, run after run."""
    problems = []
    keys = ("success", "evaluated", "failed", "failures")
    for size in sorted({c.rows for c in cells}):
        seen = [(c.path, {k: s[k] for k in keys}) for c in cells if c.rows == size for s in c.samples]
        if any(v != seen[0][1] for _, v in seen):
            problems.append(f"{fmt_rows(size)}: verdicts differ: {seen}")
    return problems


def targets(cells: list[Cell], sizes: list[int]) -> bool:
    def get(rows: int, path: str) -> Cell | None:
        c = next((c for c in cells if (c.rows, c.path) == (rows, path)), None)
        return c if c is not None and c.samples else None

    ok = True
    small, big = sizes[0], sizes[-1]
    print(
        f"\nTarget 1: chunked peak RSS at {fmt_rows(big)} rows <= {RSS_TARGET}x that at {fmt_rows(small)} rows"
    )
    a, b = get(small, "chunked"), get(big, "chunked")
    if len(sizes) < 2 or a is None or b is None:
        print("  not measured (needs two sizes, both measured)")
        ok = False
    else:
        ratio = b.peak / a.peak
        ok &= ratio <= RSS_TARGET
        growth = (b.peak - b.median("rss_before_mb"), a.peak - a.median("rss_before_mb"))
        print(
            f"  {mb(b.peak)} / {mb(a.peak)} MB = {ratio:.2f}x  {'PASS' if ratio <= RSS_TARGET else 'FAIL'}  "
            f"(own growth beyond RSS before: {mb(growth[0])} vs {mb(growth[1])} MB)"
        )
    print("\nTarget 2: chunked rows/s >= GX's own (whole frame, read included) at each size")
    for rows in sizes:
        ch, gx = get(rows, "chunked"), get(rows, "gx")
        if ch is None or gx is None:
            print(f"  {fmt_rows(rows)}: not measured on both paths")
            ok = False
            continue
        ratio = ch.rows_per_s / gx.rows_per_s
        ok &= ratio >= 1.0
        bare = rows / gx.median("validate_s")
        print(
            f"  {fmt_rows(rows)}: {ch.rows_per_s:,.0f} vs {gx.rows_per_s:,.0f} rows/s = {ratio:.2f}x  "
            f"{'PASS' if ratio >= 1.0 else 'FAIL'}; against GX's validation alone (read not counted) "
            f"{ch.rows_per_s / bare:.2f}x; peak RSS {mb(ch.peak)} vs {mb(gx.peak)} MB"
        )
    return ok


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, SIZES)),
        help="comma-separated batch sizes in rows (default 1000000,10000000; the largest gets the big-* runs)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per path at the smaller sizes (default 3)")
    parser.add_argument("--big-chunked-runs", type=int, default=2, help="chunked runs at the largest size")
    parser.add_argument(
        "--big-gx-runs",
        type=int,
        default=1,
        help="GX runs at the largest size (default 1: slow, memory-hungry)",
    )
    parser.add_argument(
        "--contract",
        type=Path,
        default=CONTRACT,
        help="a churn GX suite (default include/contracts/churn.json)",
    )
    parser.add_argument("--chunk-rows", type=int, default=100_000, help="chunked validator's chunk_rows")
    parser.add_argument(
        "--gen-chunk", type=int, default=100_000, help="rows per generate_batch call and row group"
    )
    parser.add_argument(
        "--time-limit", type=float, default=20, help="minutes for the whole run; later runs are skipped"
    )
    add_child_args(parser, CHILDREN)
    args = parser.parse_args(argv)
    if not args.child:
        args.sizes = parse_sizes(parser, args.sizes)
        if min(args.runs, args.big_chunked_runs, args.big_gx_runs, args.chunk_rows, args.gen_chunk) < 1:
            parser.error("counts must be positive")
        if args.time_limit <= 0:
            parser.error("--time-limit must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        emit(CHILDREN[args.child](json.loads(args.job)))
        return 0

    sizes = args.sizes
    largest = sizes[-1]
    check_python(args.python, "mlcycle.data.contracts, great_expectations, pyarrow.parquet")
    need = sum(sizes) * BYTES_PER_ROW + (1 << 30)
    free = require_disk(args.tmp_dir, need, "free space or pass --tmp-dir elsewhere, or smaller --sizes")
    print(f"disk: {free / 2**30:.1f} GiB free in {args.tmp_dir}, about {need / 2**30:.1f} GiB needed")
    t0 = time.perf_counter()
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false"}
    child = CappedChild(Path(__file__), args.python, time.monotonic() + args.time_limit * 60, env)
    with scratch_dir("mlcycle-bench-validate-", keep=args.keep, parent=args.tmp_dir) as tmp:
        print(f"{machine()}; project at {revision()}; state in {tmp}")
        inputs = {str(n): str(tmp / f"churn-{n}.parquet") for n in sizes}
        setup = child.run("setup", {"inputs": inputs, "gen_chunk": args.gen_chunk}, capped=False)
        if "error" in setup:
            sys.exit(f"error: generating the inputs: {setup['error']}")
        files = ", ".join(
            f"{fmt_rows(int(n))} rows {f['bytes'] / 2**20:.0f} MB in {f['row_groups']} row groups"
            for n, f in setup["files"].items()
        )
        print(f"  inputs generated in {setup['seconds']:.0f} s ({files}); measuring:", flush=True)
        jobs = {
            n: {
                "input": inputs[str(n)],
                "contract": str(args.contract),
                "max_rows": largest,
                "chunk_rows": args.chunk_rows,
            }
            for n in sizes
        }
        cells = []
        for n in sizes:
            big = n == largest and len(sizes) > 1
            cells.append(Cell(n, "chunked", args.big_chunked_runs if big else args.runs))
            cells.append(Cell(n, "gx", args.big_gx_runs if big else args.runs))
        measure(cells, child, jobs, t0)

    print()
    print(
        f"Validation of churn batches against {args.contract} (row-count bound raised to "
        f"{largest:,}), fresh interpreter per run; median of the runs; chunk_rows {args.chunk_rows:,}, "
        f"row groups of {args.gen_chunk:,} rows; {machine()}; project at {revision()}"
    )
    print(
        "gx = lake.read_parquet + ContractValidator.validate (BOOLEAN_ONLY, SUMMARY for failures); "
        "chunked = ChunkedValidator.validate_file; peak RSS = max over runs; Δ = peak - RSS before; "
        "load1 = 1-min load average before the runs (min-max)"
    )
    print_table(cells)
    sample = next((s for c in cells for s in c.samples), None)
    if sample is not None:
        outcome = "passed" if sample["success"] else f"failed {sample['failed']}: {sample['failures']}"
        print(f"verdict: {sample['evaluated']} expectations, {outcome}")
    problems = verdicts(cells)
    for p in problems:
        print(f"MISMATCH: {p}")
    ok = targets(cells, sizes)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0 if ok and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
