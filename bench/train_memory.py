"""Peak memory of a training against the rows of its window: the whole window read as one frame
(today's default) beside ``data.max_training_rows`` (a stratified sample read batch by batch),
in the same run.

Each measurement is a fresh interpreter that reads the window of generated churn batches
(100,000 rows a day) and fits the shipped churn pipeline on it (``mlcycle.ml.training.train``:
split, fit), and reports its peak RSS (VmHWM) and wall time.

    .venv/bin/python bench/train_memory.py                      # ~4 min: 0.5M, 1M, 2M rows
    .venv/bin/python bench/train_memory.py --rows 200000 --runs 1  # smoke
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c

DAY_ROWS = 100_000
BOUND = 200_000


def child(lake: str, days: int, bound: int | None) -> None:
    import time

    from mlcycle.core.spec import get_spec
    from mlcycle.data import lake as lk
    from mlcycle.data.sample import read_sample
    from mlcycle.ml import training as tr

    spec = get_spec("churn")
    spec = spec.model_copy(update={"data": spec.data.model_copy(update={"max_training_rows": bound})})
    paths = [p for _, p in lk.Lake(lake, "churn").batches()][:days]
    started = time.perf_counter()
    if bound is None:
        df = lk.read_parquet(paths)
    else:
        df = read_sample(
            spec, paths, [lk.file_sha256(p) for p in paths], [lk.count_rows([p]) for p in paths]
        ).frame
    fitted = tr.train(df, spec)
    c.emit({"rows": len(df), "seconds": time.perf_counter() - started, "peak_mb": c.peak_mb(),
            "holdout_rows": len(fitted.holdout)})  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="500000,1000000,2000000", help="window sizes, comma-separated")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        lake, days, bound = args.child
        child(lake, int(days), None if bound == "none" else int(bound))
        return 0
    sizes = [int(x) for x in args.rows.split(",")]
    print(f"revision {c.revision()}; {c.machine()}")
    with c.scratch_dir("bench-train-memory-") as tmp:
        from mlcycle.data import lake as lk
        from mlcycle.data.generators import generate_batch

        days = max(sizes) // DAY_ROWS
        store = lk.Lake(str(tmp / "lake"), "churn")
        for i in range(days):
            day = dt.date(2026, 11, 1) + dt.timedelta(days=i)
            lk.write_parquet(generate_batch("churn", day, DAY_ROWS, seed=i), store.batch_path(day))
        c.print_header(
            f"{'window rows':>12} {'mode':<34} {'rows fitted':>11} {'median s':>9} {'peak RSS MB':>12}"
        )
        for rows in sizes:
            for mode, bound in (
                ("whole window (today)", "none"),
                (f"max_training_rows {BOUND:,}", str(BOUND)),
            ):
                results = []
                for _ in range(args.runs):
                    run = c.run_child(
                        [
                            sys.executable,
                            __file__,
                            "--child",
                            str(tmp / "lake"),
                            str(rows // DAY_ROWS),
                            bound,
                        ],
                        timeout=1800,
                    )
                    if run.result is None:
                        print(c.tail(run.stdout + run.stderr))
                        return 1
                    results.append(run.result)
                print(f"{c.fmt_rows(rows):>12} {mode:<34} {c.fmt_rows(results[0]['rows']):>11}"
                      f" {statistics.median(r['seconds'] for r in results):>9.1f}"
                      f" {statistics.median(r['peak_mb'] for r in results):>12.0f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
