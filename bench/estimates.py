"""Label-free performance estimates: error against the realized metrics and alert precision and
recall, calibrated (monitor.performance) beside the uncalibrated estimate of before, on a
generated benchmark with miscalibrated scores and a known degradation; and the time of the
estimate per 100,000 rows beside the drift check's on the same rows.

The benchmark: a model whose true positive-class probability is sigmoid(a·x + b) with x ~ N(0, 1)
(ROC AUC about 0.97), whose scores are those probabilities through a power (same ranking,
miscalibrated, as boosted trees' are); a holdout of 50,000 rows (the reference); then 10 chunks
of 5,000 rows, 5 healthy and 5 degraded (the signal weakens: realized AUC about one point
lower). Labels are drawn from the true probabilities, so the realized metrics are the truth
an estimate is scored against.

    .venv/bin/python bench/estimates.py            # ~1 min
    .venv/bin/python bench/estimates.py --runs 1   # smoke
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c

SLOPE, INTERCEPT, POWER = 5.2, -3.0, 0.35
DEGRADED_SLOPE = 4.4
CHUNK, HOLDOUT, HEALTHY, DEGRADED = 5000, 50_000, 5, 5
FIXED_DROP = 0.05  # the rule before: an estimate this far below the holdout's


def draw(rng, n: int, slope: float):
    import numpy as np

    p = 1.0 / (1.0 + np.exp(-(slope * rng.normal(size=n) + INTERCEPT)))
    return p**POWER, (rng.random(n) < p).astype("float64")


def one_run(seed: int) -> dict:
    import numpy as np

    from mlcycle.core.spec import Task
    from mlcycle.monitor import calibration as mc
    from mlcycle.monitor import estimates as me
    from mlcycle.monitor import performance as mp

    rng = np.random.default_rng(seed)
    s, y = draw(rng, HOLDOUT, SLOPE)
    ref = mp.reference_performance(
        Task.CLASSIFICATION, y, s, threshold=0.5, chunk_rows=CHUNK, primary="roc_auc"
    )
    holdout_raw = me.cbpe_roc_auc(s)  # the uncalibrated estimate's own reference
    errors = {
        "calibrated": {m: [] for m in me.CLASSIFIER_METRICS},
        "uncalibrated": {m: [] for m in me.CLASSIFIER_METRICS},
    }
    alerts = {"calibrated": [], "uncalibrated": []}
    truth = [False] * HEALTHY + [True] * DEGRADED
    realized_auc = []
    for degraded in truth:
        sc, yc = draw(rng, CHUNK, DEGRADED_SLOPE if degraded else SLOPE)
        real = me.classifier_realized(yc, sc, 0.5)
        realized_auc.append(real["roc_auc"])
        calibrated = me.classifier_estimates(mc.calibrate(ref["calibration"], sc), sc >= 0.5)
        raw = me.classifier_estimates(sc, sc >= 0.5)
        for m in me.CLASSIFIER_METRICS:
            errors["calibrated"][m].append(abs(calibrated[m] - real[m]))
            errors["uncalibrated"][m].append(abs(raw[m] - real[m]))
        report = mp.assess(Task.CLASSIFICATION, ref, sc, np.full(CHUNK, np.nan), [], min_rows=100, k=3.0,
                           primary="roc_auc")  # fmt: skip
        alerts["calibrated"].append(any(a["metric"] == "roc_auc" for a in report["alerts"]))
        alerts["uncalibrated"].append(holdout_raw - raw["roc_auc"] > FIXED_DROP)
    out = {"realized_healthy": statistics.mean(realized_auc[:HEALTHY]),
           "realized_degraded": statistics.mean(realized_auc[HEALTHY:])}  # fmt: skip
    for kind in ("calibrated", "uncalibrated"):
        for m, errs in errors[kind].items():
            out[f"{kind}.{m}.mean"] = statistics.mean(errs)
            out[f"{kind}.{m}.max"] = max(errs)
        flagged = alerts[kind]
        out[f"{kind}.degraded_alerted"] = sum(f and t for f, t in zip(flagged, truth, strict=True))
        out[f"{kind}.healthy_alerted"] = sum(f and not t for f, t in zip(flagged, truth, strict=True))
    return out


def timing(seed: int, rows: int = 100_000) -> dict:
    """Seconds per ``rows`` rows: the performance assessment (calibration, five estimates for
    the window and each of its 5,000-row chunks, bands) and the drift check (accumulate the
    window's 10 features and the prediction, then assess), on the same rows."""
    import numpy as np
    import pandas as pd

    from mlcycle.core.spec import Task
    from mlcycle.monitor import performance as mp
    from mlcycle.monitor.profile import PREDICTION, build_profile
    from mlcycle.monitor.verdict import assess
    from mlcycle.monitor.window import Accumulator, native_threads

    rng = np.random.default_rng(seed)
    s, y = draw(rng, HOLDOUT, SLOPE)
    ref = mp.reference_performance(
        Task.CLASSIFICATION, y, s, threshold=0.5, chunk_rows=CHUNK, primary="roc_auc"
    )

    def frame(n: int) -> pd.DataFrame:
        cols = {f"num_{i}": rng.normal(size=n) for i in range(8)}
        cols |= {f"cat_{i}": rng.choice(list("abcdef"), n) for i in range(2)}
        return pd.DataFrame(cols)

    profile = build_profile(frame(HOLDOUT), [f"num_{i}" for i in range(8)], ["cat_0", "cat_1"], prediction=s)
    current, (sc, _) = frame(rows), draw(rng, rows, SLOPE)
    current[PREDICTION] = sc
    chunks = [(str(i), np.arange(i, min(i + CHUNK, rows))) for i in range(0, rows, CHUNK)]
    with native_threads(1):
        started = time.perf_counter()
        mp.assess(
            Task.CLASSIFICATION,
            ref,
            sc,
            np.full(rows, np.nan),
            chunks,
            min_rows=100,
            k=3.0,
            primary="roc_auc",
        )
        estimate_s = time.perf_counter() - started
        started = time.perf_counter()
        acc = Accumulator(profile)
        acc.update(current)
        assess(profile, acc.result())
        drift_s = time.perf_counter() - started
    return {"estimate_s": estimate_s, "drift_s": drift_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=int, default=5, help="seeds (each a whole benchmark); medians are printed"
    )
    args = parser.parse_args()
    print(f"revision {c.revision()}; {c.machine()}")
    c.print_header("label-free performance estimates (bench/estimates.py)")
    runs = [one_run(seed) for seed in range(args.runs)]
    times = [timing(seed) for seed in range(args.runs)]

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    print(f"\nrealized roc_auc: healthy {med('realized_healthy'):.4f}, degraded {med('realized_degraded'):.4f}"
          f" (median of {args.runs} runs of {HEALTHY}+{DEGRADED} chunks of {CHUNK:,} rows; holdout {HOLDOUT:,})\n")  # fmt: skip
    print(f"{'metric':<10} {'calibrated mean/max':>22} {'uncalibrated mean/max':>24}")
    for m in ("roc_auc", "accuracy", "precision", "recall", "f1"):
        cal = f"{med(f'calibrated.{m}.mean'):.4f} / {med(f'calibrated.{m}.max'):.4f}"
        raw = f"{med(f'uncalibrated.{m}.mean'):.4f} / {med(f'uncalibrated.{m}.max'):.4f}"
        print(f"{m:<10} {cal:>22} {raw:>24}")
    print(f"\n{'alerts (roc_auc), all runs':<30} {'degraded alerted':>17} {'healthy alerted':>16} {'precision':>10} {'recall':>7}")  # fmt: skip
    for kind, rule in (("calibrated", "calibrated, band k=3"), ("uncalibrated", f"uncalibrated, drop > {FIXED_DROP}")):  # fmt: skip
        tp = sum(r[f"{kind}.degraded_alerted"] for r in runs)
        fp = sum(r[f"{kind}.healthy_alerted"] for r in runs)
        precision = f"{tp / (tp + fp):.2f}" if tp + fp else "-"
        print(f"{rule:<30} {tp:>12}/{DEGRADED * len(runs):<4} {fp:>11}/{HEALTHY * len(runs):<4}"
              f" {precision:>10} {tp / (DEGRADED * len(runs)):>7.2f}")  # fmt: skip
    est = statistics.median(t["estimate_s"] for t in times)
    drift = statistics.median(t["drift_s"] for t in times)
    print(f"\nper 100,000 rows: estimate {est:.3f} s, drift check {drift:.3f} s, ratio {est / drift:.2f}"
          f" (target ≤ 2); peak RSS {c.maxrss_mb():.0f} MB")  # fmt: skip
    print("targets: roc_auc mean error ≤ 0.003; every degraded chunk alerted; no healthy chunk alerted")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
