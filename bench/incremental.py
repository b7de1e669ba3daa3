"""Incremental update vs full retrain on the same data.

support_intent as the online learner of ``tests/integration/test_incremental.py`` (hashed word
and character n-grams, standard scaling, ``SGDClassifier(log_loss)``, ``training.mode:
incremental``, 3 epochs). Setup (one child, seeded, not timed against anything): a window of
``data.training_window_days`` (14) daily batches of ``data.rows_per_batch`` (1,000) rows, a
parent fitted fully on it (``mlcycle.ml.training.train``) and saved once with skops; 10,000 new
rows (10x the shipped batch) from the days after; a common evaluation batch of 5,000 rows from a
later day that no model sees.

Then, each run a fresh interpreter, alternating round by round:

- ``full``: ``train(window + new, spec)``, the same online spec, from scratch;
- ``update``: the parent loaded with ``skops.io.load`` (types from ``trusted_types_for``) before
  the timer, then ``update(parent, new, spec)``: a copy of the parent, preprocessing frozen,
  ``partial_fit`` on the training part of the new rows;
- ``shipped`` (``--also-shipped``): ``train(window + new)`` with the shipped spec (TF-IDF +
  LogisticRegression), a reference.

Imports, reading the Parquet files and loading the parent happen before the timer and the RSS
baseline (``mark_before`` resets VmHWM); the peak reported is the child's whole VmHWM, i.e. with
the imports, the data and the loaded parent included. Every model is scored on the same
evaluation batch with ``mlcycle.ml.evaluation`` (macro F1, accuracy).

    .venv/bin/python bench/incremental.py                              # ~2-3 min
    .venv/bin/python bench/incremental.py --also-shipped --runs 1
    .venv/bin/python bench/incremental.py --runs 1 --new-rows 2000 --eval-rows 1000   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c

SHIPPED = c.SPECS_DIR / "support_intent.yaml"
START = "2026-11-01"  # first day of the window
METRICS = ("macro_f1", "accuracy")
MODES = {
    "full": "full retrain, online spec: train(window + new)",
    "update": "incremental: update(parent, new)",
    "shipped": "full retrain, shipped spec (TF-IDF + LogisticRegression): train(window + new)",
}


# --------------------------------------------------------------------------------------------
# Children (fresh interpreters). Each prints one result line (``_common.emit``).
# --------------------------------------------------------------------------------------------


def _spec(kind: str) -> Any:
    """The shipped support_intent spec, or (``online``) the test's incremental variant of it."""
    import yaml

    from mlcycle.core.spec import parse_spec

    raw = yaml.safe_load(SHIPPED.read_text())
    if kind == "online":
        raw["features"]["text_vectorizer"] = {"kind": "hashing", "word_ngrams": [1, 2], "char_ngrams": [3, 4],
                                              "max_features": 2**16}  # fmt: skip
        raw["features"]["numeric_scaling"] = "standard"
        raw["estimator"] = {
            "class": "sklearn.linear_model.SGDClassifier",
            "params": {"loss": "log_loss", "alpha": 1e-4, "max_iter": 15, "tol": None, "random_state": 0},
        }
        raw["training"] = {"mode": "incremental", "epochs": 3}
    return parse_spec(raw, SHIPPED)


def _evaluate(pipeline: Any, frame: Any, spec: Any) -> tuple[dict[str, float], str]:
    """macro F1 and accuracy on ``frame``, as the project's evaluation computes them, and which
    rows the model gets right (one "0"/"1" per row, for the paired comparison)."""
    import numpy as np

    from mlcycle.core.spec import encode_target
    from mlcycle.ml.evaluation import classes_of, metric_value, scores

    y = encode_target(spec, frame[spec.data.target]).to_numpy()
    s = scores(pipeline, frame[spec.features.all], spec.task)
    classes = classes_of(spec)
    right = np.asarray(classes, dtype=object)[s.argmax(axis=1)] == y
    return {m: metric_value(m, y, s, classes=classes) for m in METRICS}, "".join("01"[int(b)] for b in right)


def _seen(pipeline: Any) -> int | None:
    """Rows an SGD estimator has taken in, counting every pass (scikit-learn's ``t_`` - 1)."""
    t = getattr(pipeline.named_steps["model"], "t_", None)
    return None if t is None else round(t) - 1


def child_setup(job: dict[str, Any]) -> dict[str, Any]:
    """Generate the window, the new rows and the evaluation batch; fit, save and score the parent."""
    import datetime as dt

    import pandas as pd
    import skops.io as sio

    from mlcycle.data.generators import generate_batch
    from mlcycle.ml import training as tr

    out = Path(job["dir"])
    spec = _spec("online")
    per_batch, days = spec.data.rows_per_batch, spec.data.training_window_days
    start = dt.date.fromisoformat(START)

    def batches(first: int, rows: int) -> pd.DataFrame:
        frames, i = [], first
        while rows > 0:
            n = min(per_batch, rows)
            frames.append(generate_batch("support_intent", start + dt.timedelta(days=i), n, seed=i))
            rows, i = rows - n, i + 1
        return pd.concat(frames, ignore_index=True)

    window = batches(0, days * per_batch)
    new = batches(days, job["new_rows"])
    new_days = -(-job["new_rows"] // per_batch)
    eval_day = start + dt.timedelta(days=days + new_days + 1)  # a day after the new rows' last
    held = generate_batch("support_intent", eval_day, job["eval_rows"], seed=10_000)
    for name, frame in (("window", window), ("new", new), ("eval", held)):
        frame.to_parquet(out / f"{name}.parquet", index=False)
    started = time.perf_counter()
    parent = tr.train(window, spec)
    fit_s = time.perf_counter() - started
    path = out / "parent.skops"
    sio.dump(parent.pipeline, path)
    metrics, right = _evaluate(parent.pipeline, held, spec)
    return {
        "parent": str(path),
        "parent_bytes": path.stat().st_size,
        "trusted": tr.trusted_types_for(parent.pipeline, spec),
        "window_rows": len(window),
        "window_days": f"{start} .. {start + dt.timedelta(days=days - 1)}",
        "new_rows": len(new),
        "new_days": f"{start + dt.timedelta(days=days)} .. {start + dt.timedelta(days=days + new_days - 1)}",
        "eval_rows": len(held),
        "eval_day": str(eval_day),
        "per_batch": per_batch,
        "parent_fit_s": fit_s,
        "parent_learned": len(parent.train),
        "parent_seen": _seen(parent.pipeline),
        "parent_metrics": metrics,
        "parent_right": right,
    }


def child_measure(job: dict[str, Any]) -> dict[str, Any]:
    """One measurement of ``job["mode"]``: everything but the call itself before the timer."""
    import gc

    import pandas as pd

    from mlcycle.ml import training as tr
    from mlcycle.ml.evaluation import scores  # noqa: F401  (imported before the timer)

    d = Path(job["dir"])
    mode = job["mode"]
    spec = _spec("shipped" if mode == "shipped" else "online")
    tr.build_pipeline(spec)  # imports the pipeline's scikit-learn modules before the timer
    load_s, parent, seen_before = None, None, 0
    if mode == "update":
        import skops.io as sio

        df = pd.read_parquet(d / "new.parquet")
        started = time.perf_counter()
        parent = sio.load(job["parent"], trusted=job["trusted"])
        load_s = time.perf_counter() - started
        seen_before = _seen(parent) or 0
    else:
        df = pd.concat([pd.read_parquet(d / "window.parquet"), pd.read_parquet(d / "new.parquet")],
                       ignore_index=True)  # fmt: skip
    gc.collect()
    before = c.mark_before()
    started = time.perf_counter()
    result = tr.update(parent, df, spec) if mode == "update" else tr.train(df, spec)
    seconds = time.perf_counter() - started
    peak = c.peak_mb()
    seen = _seen(result.pipeline)
    held = pd.read_parquet(d / "eval.parquet")
    metrics, right = _evaluate(result.pipeline, held, spec)
    out = {
        "mode": mode,
        "seconds": seconds,
        "fit_seconds": result.seconds,
        "load_seconds": load_s,
        "rss_before_mb": before["rss_before_mb"],
        "peak_reset": before["peak_reset"],
        "op_peak_mb": peak,
        "peak_mb": max(peak, before["peak_before_mb"]),
        "rows_in": len(df),
        "learned": len(result.train),
        "seen": None if seen is None else seen - seen_before,
        "metrics": metrics,
        "right": right,
        "load1": os.getloadavg()[0],
    }
    if parent is not None:  # the loaded parent scores as the one the setup fitted
        out["parent_metrics"] = _evaluate(parent, held, spec)[0]
    return out


CHILDREN = {"setup": child_setup, "measure": child_measure}


# --------------------------------------------------------------------------------------------
# The parent: setup, rounds, table.
# --------------------------------------------------------------------------------------------


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def summary(mode: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
    med = lambda key: statistics.median(s[key] for s in samples)  # noqa: E731
    return {
        "mode": mode,
        "runs": len(samples),
        "seconds": med("seconds"),
        "min": min(s["seconds"] for s in samples),
        "max": max(s["seconds"] for s in samples),
        "fit": med("fit_seconds"),
        "load": c.median(s["load_seconds"] for s in samples),
        "rss_before": med("rss_before_mb"),
        "peak": med("peak_mb"),
        "op_peak": med("op_peak_mb"),
        "learned": samples[0]["learned"],
        "seen": samples[0]["seen"],
        "rows_in": samples[0]["rows_in"],
        "metrics": samples[0]["metrics"],
        "right": samples[0]["right"],
        "same_metrics": all(s["metrics"] == samples[0]["metrics"] for s in samples),
    }


def print_table(setup: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
    print(row(["mode", "runs", "rows in", "rows learned", "row passes", "wall s median", "min–max",
               "of which fit s", "RSS before MB", "peak RSS MB", "macro_f1", "accuracy"]))  # fmt: skip
    print(row(["---", "---:", "---:", "---:", "---:", "---:", "---", "---:", "---:", "---:", "---:", "---:"]))
    pm = setup["parent_metrics"]
    print(row([f"parent (window only; where the update starts; setup, {setup['parent_fit_s']:.2f} s)", "1",
               f"{setup['window_rows']:,}", f"{setup['parent_learned']:,}", f"{setup['parent_seen']:,}",
               "", "", "", "", "", f"{pm['macro_f1']:.4f}", f"{pm['accuracy']:.4f}"]))  # fmt: skip
    for mode, r in results.items():
        name = MODES[mode] + (f" (+ {r['load']:.2f} s skops load before the timer)" if r["load"] else "")
        print(row([name, str(r["runs"]), f"{r['rows_in']:,}", f"{r['learned']:,}",
                   "-" if r["seen"] is None else f"{r['seen']:,}", f"**{r['seconds']:.2f}**",
                   f"{r['min']:.2f}–{r['max']:.2f}", f"{r['fit']:.2f}", f"{r['rss_before']:.0f}",
                   f"**{r['peak']:.0f}**", f"**{r['metrics']['macro_f1']:.4f}**",
                   f"{r['metrics']['accuracy']:.4f}"]))  # fmt: skip


def paired(a: str, b: str) -> tuple[float, float, int]:
    """Accuracy of ``a`` minus that of ``b`` on the same rows (their "0"/"1" strings), the half-width
    of its paired 95 % interval (1.96 standard errors of the per-row difference), and the number of
    rows one gets right and the other wrong."""
    d = [int(x) - int(y) for x, y in zip(a, b, strict=True)]
    return statistics.fmean(d), 1.96 * statistics.stdev(d) / len(d) ** 0.5, sum(map(abs, d))


def conclusion(setup: dict[str, Any], results: dict[str, dict[str, Any]]) -> str:
    full, upd = results.get("full"), results.get("update")
    if full is None or upd is None:
        return "conclusion: a mode has no result"
    f1_full, f1_upd = full["metrics"]["macro_f1"], upd["metrics"]["macro_f1"]
    f1_parent = setup["parent_metrics"]["macro_f1"]
    load = upd["load"] or 0.0
    line = (
        f"conclusion: the update is {full['seconds'] / upd['seconds']:.1f}x faster than the full retrain "
        f"({full['seconds'] / (upd['seconds'] + load):.1f}x counting its skops load), its child peaks at "
        f"{upd['peak'] / full['peak']:.2f}x the full retrain's RSS ({upd['peak']:.0f} vs {full['peak']:.0f} MB; "
        f"{upd['op_peak'] - upd['rss_before']:+.0f} vs {full['op_peak'] - full['rss_before']:+.0f} MB during "
        f"the call), macro_f1 {f1_upd - f1_full:+.4f} vs the full retrain ({f1_upd:.4f} vs {f1_full:.4f}; "
        f"{f1_upd - f1_parent:+.4f} vs its parent's {f1_parent:.4f})"
    )
    for other, right in (("full retrain", full["right"]), ("parent", setup["parent_right"])):
        diff, half, rows = paired(upd["right"], right)
        line += (
            f"; accuracy vs the {other} {diff:+.4f} ± {half:.4f} (paired 95 %, {rows} of "
            f"{len(right):,} rows right in one and wrong in the other)"
        )
    if (shipped := results.get("shipped")) is not None:
        f1_s = shipped["metrics"]["macro_f1"]
        line += (
            f"; the shipped TF-IDF + LogisticRegression retrain takes {shipped['seconds'] / upd['seconds']:.1f}x "
            f"the update's time, {shipped['peak'] / upd['peak']:.2f}x its peak RSS, macro_f1 {f1_s:.4f} "
            f"({f1_upd - f1_s:+.4f} for the update)"
        )
    return line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh interpreters per mode (default 3)")
    parser.add_argument("--also-shipped", action="store_true",
                        help="add a full retrain of the shipped spec (TF-IDF + LogisticRegression)")  # fmt: skip
    parser.add_argument(
        "--new-rows", type=int, default=10_000, help="new rows the update learns (10x a batch)"
    )
    parser.add_argument("--eval-rows", type=int, default=5_000, help="rows of the common evaluation batch")
    parser.add_argument(
        "--omp-threads", default="1", help="OMP/OpenBLAS threads of the children (0 = default)"
    )
    parser.add_argument("--time-limit", type=float, default=15, help="minutes for the whole run")
    c.add_child_args(parser, CHILDREN)
    args = parser.parse_args(argv)
    if not args.child and min(args.runs, args.new_rows, args.eval_rows) < 1:
        parser.error("--runs, --new-rows and --eval-rows must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        c.emit(CHILDREN[args.child](json.loads(args.job)))
        return 0
    c.check_python(args.python, "mlcycle.ml.training, skops.io")
    if args.omp_threads != "0":
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = args.omp_threads
    t0 = time.perf_counter()
    child = c.CappedChild(
        Path(__file__), args.python, time.monotonic() + args.time_limit * 60, dict(os.environ)
    )
    modes = ["full", "update"] + (["shipped"] if args.also_shipped else [])
    with c.scratch_dir("mlcycle-bench-incremental-", keep=args.keep, parent=args.tmp_dir) as tmp:
        print(f"{c.machine()}; project at {c.revision()}")
        setup = child.run("setup", {"dir": str(tmp), "new_rows": args.new_rows, "eval_rows": args.eval_rows},
                          capped=False)  # fmt: skip
        if "error" in setup:
            sys.exit(f"error: setup: {setup['error']}")
        print(
            f"window {setup['window_rows']:,} rows ({setup['window_days']}, {setup['per_batch']:,} a day), "
            f"new {setup['new_rows']:,} rows ({setup['new_days']}), evaluation {setup['eval_rows']:,} rows "
            f"({setup['eval_day']}); parent fitted in {setup['parent_fit_s']:.2f} s, "
            f"skops file {setup['parent_bytes'] / 2**20:.1f} MB",
            flush=True,
        )
        job = {"dir": str(tmp), "parent": setup["parent"], "trusted": setup["trusted"]}
        samples: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
        for i in range(args.runs):
            for mode in modes:
                got = child.run("measure", {**job, "mode": mode})
                if "error" in got:
                    print(f"  round {i + 1} {mode}: {got['error']}", flush=True)
                    continue
                samples[mode].append(got)
                print(f"  round {i + 1} {mode}: {got['seconds']:.2f} s, peak {got['peak_mb']:.0f} MB, "
                      f"macro_f1 {got['metrics']['macro_f1']:.4f} (load1 {got['load1']:.2f})", flush=True)  # fmt: skip
    results = {m: summary(m, s) for m, s in samples.items() if s}
    print()
    print(f"Incremental update vs full retrain, support_intent; {c.machine()}; project at {c.revision()}")
    print("Each run a fresh interpreter; imports, reading the data and loading the parent before the timer; "
          "peak RSS = the child's VmHWM (imports, data and the loaded parent included), median of the runs; "
          "row passes = rows the SGD took in, every epoch counted")  # fmt: skip
    print()
    print_table(setup, results)
    print()
    for mode, r in results.items():
        if not r["same_metrics"]:
            print(f"note: {mode}'s metrics differ between runs (the first run's are shown)")
    for s in samples.get("update", []):
        if s.get("parent_metrics") != setup["parent_metrics"]:
            print(
                f"MISMATCH: the parent loaded with skops scores {s['parent_metrics']}, fitted {setup['parent_metrics']}"
            )
            break
    print(conclusion(setup, results))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0 if all(samples.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
