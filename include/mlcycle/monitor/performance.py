"""Performance monitoring with and without labels: the reference's spread per metric (alert
bands), the sampling error of every value for the rows it rests on, and the verdict per chunk
of a monitoring window.

At training time, ``reference_performance`` splits the holdout into chunks of the monitoring
chunk size (or, when that gives fewer than ``MIN_REFERENCE_CHUNKS``, draws bootstrap resamples
of it), measures every watched metric on each, and keeps their mean and standard deviation:
the band of a chunk of ``rows`` rows is ``mean ± k · std`` (NannyML's thresholds), and one of
``n`` rows ``mean ± k · std · sqrt(rows / n)``, widened by the uncertainty of the reference
mean itself, so that a million rows drawn like the reference do not alert on a band narrowed
to nothing. The standard deviation scaled to ``n`` rows is each value's sampling error.
Realized values are judged by the realized metric's spread, estimates by the estimate's own
(smaller: an estimate reads no labels, so the label noise of a chunk does not move it).

At monitoring time, ``assess`` estimates every metric per chunk and over the whole window
(calibrated CBPE for classifiers, DLE for regressors), measures it where labels exist, and
judges each against its band. An alert is a value on the worse side of its band for the whole
window or the newest chunk, or (where the spec sets ``max_performance_drop``) a drop larger
than that which is also outside the sampling error; the report names the rule that fired.
Values resting on too few rows (or too few of a class) are "too few rows to tell".

A multi-class model is watched through its top class: the stream is each row's confidence (the
largest class probability) and whether that class was right, so its calibrated confidence
estimates accuracy without labels (the same calibrator and bands as a binary model's).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mlcycle.core.spec import METRICS, Direction, Task
from mlcycle.monitor import calibration, estimates

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MIN_REFERENCE_CHUNKS = 6
BOOTSTRAP_RESAMPLES = 60
MIN_CLASS_ROWS = 10  # fewer positives (or negatives, or expected ones): too few rows to tell
TOO_FEW = "too few rows to tell"
BOUNDED = frozenset({*estimates.CLASSIFIER_METRICS, "average_precision", "brier"})  # within [0, 1]


MULTICLASS_METRICS = ("accuracy",)


def watched(task: Task) -> tuple[str, ...]:
    """The metrics estimated without labels."""
    if task is Task.MULTICLASS:
        return MULTICLASS_METRICS
    return estimates.CLASSIFIER_METRICS if task is Task.CLASSIFICATION else estimates.REGRESSOR_METRICS


def higher_is_better(metric: str) -> bool:
    """Precision and recall are not gate metrics (``METRICS``); like them, they improve upwards."""
    return metric not in METRICS or METRICS[metric][1] is Direction.HIGHER


def monitored_primary(task: Task, primary: str) -> str:
    """The metric the window's absolute drop rule reads: the gate's primary metric, except for a
    multi-class model, whose top-class stream carries accuracy only."""
    return MULTICLASS_METRICS[0] if task is Task.MULTICLASS else primary


def measured(task: Task, primary: str) -> tuple[str, ...]:
    """The metrics measured on labels: the estimated ones and the gate's primary metric."""
    if task is Task.MULTICLASS:
        return MULTICLASS_METRICS
    return (*watched(task), *([] if primary in watched(task) else [primary]))


def top_class(proba: np.ndarray, labels: Any, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A multi-class model's stream for monitoring: per row the confidence (largest class
    probability) and 1.0 where that class is the label, 0.0 where not, NaN without a label."""
    import numpy as np
    import pandas as pd

    chosen = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    known = pd.notna(labels)
    correct = np.where(known, chosen == np.asarray(labels, dtype=object), np.nan).astype("float64")
    return proba.max(axis=1), correct


def realized(
    task: Task, y: np.ndarray, s: np.ndarray, threshold: float, names: tuple[str, ...]
) -> dict[str, Any]:
    """``names`` measured on labels ``y`` (and, for a classifier, the confusion matrix)."""
    from mlcycle.ml import evaluation as ev

    if task is Task.MULTICLASS:  # y: 1.0 where the top class was right (``top_class``)
        return {"accuracy": float(y.mean()) if len(y) else float("nan")}
    out = (
        estimates.classifier_realized(y, s, threshold)
        if task is Task.CLASSIFICATION
        else estimates.regressor_realized(y, s)
    )
    single_class = task is Task.CLASSIFICATION and (not len(y) or y.min() == y.max())
    for name in names:
        if name not in out:
            out[name] = float("nan") if single_class else ev.metric_value(name, y, s, threshold=threshold)
    return out


def reference_samples(n: int, chunk_rows: int, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """Row indices of the reference chunks: consecutive chunks of ``chunk_rows`` (the holdout
    is in time order, as a monitoring window is), or bootstrap resamples when that gives too
    few chunks to measure a spread."""
    import numpy as np

    if n // chunk_rows >= MIN_REFERENCE_CHUNKS:
        return [np.arange(i * chunk_rows, (i + 1) * chunk_rows) for i in range(n // chunk_rows)], "chunks"
    rng = np.random.default_rng(seed)
    size = min(chunk_rows, n)
    return [rng.integers(0, n, size) for _ in range(BOOTSTRAP_RESAMPLES)], "bootstrap"


def reference_performance(
    task: Task,
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    threshold: float,
    chunk_rows: int,
    frame: pd.DataFrame | None = None,
    numeric: list[str] | None = None,
    categorical: list[str] | None = None,
    primary: str | None = None,
    k: float = 3.0,
    seed: int = 0,
) -> dict[str, Any]:
    """What monitoring needs to estimate and judge performance, as data: the calibrator (with
    the expected calibration error before and after it) or the loss models, and per metric
    the mean and spread over reference chunks, beside how far the estimate was from the
    realized value on them. ``frame``/``numeric``/``categorical``: the holdout's features, for
    a regressor's loss models."""
    import numpy as np

    y = np.asarray(labels, dtype="float64")
    s = np.asarray(scores, dtype="float64")
    names = measured(task, primary or watched(task)[0])
    samples, method = reference_samples(len(y), chunk_rows, seed)
    out: dict[str, Any] = {
        "threshold": threshold,
        "chunk_rows": chunk_rows,
        "rows": len(y),
        "samples": method,
    }
    if task.classifies:
        out["positive_rate"] = float(y.mean())
        cal = calibration.fit_calibrator(s, y)
        honest = calibration.cross_fitted(s, y, seed=seed)  # each row calibrated without itself
        out["calibration"] = {
            **cal,
            "ece_before": calibration.expected_calibration_error(s, y),
            "ece_after": calibration.expected_calibration_error(honest, y),
        }

        def measure(idx: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
            return realized(task, y[idx], s[idx], threshold, names), _estimates(
                task, honest[idx], s[idx], threshold
            )
    else:
        if frame is None:
            raise ValueError("a regressor's reference performance needs the holdout's features (frame=)")
        dle = estimates.fit_dle(frame, numeric or [], categorical or [], labels=y, predictions=s, seed=seed)
        losses = estimates.dle_losses(dle, estimates.dle_inputs(dle, frame, s))
        out["dle"] = dle

        def measure(idx: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
            return realized(task, y[idx], s[idx], threshold, names), estimates.regressor_estimates(
                losses[idx]
            )

    values = [measure(idx) for idx in samples]
    bands = {}
    for metric in names:
        real = np.array([r[metric] for r, _ in values], dtype="float64")
        est = np.array([e.get(metric, np.nan) for _, e in values], dtype="float64")
        ok = np.isfinite(real)
        if ok.sum() < 2:
            continue
        bands[metric] = {
            "mean": float(real[ok].mean()),
            "std": float(real[ok].std(ddof=1)),
            "rows": len(samples[0]),
        }
        both = ok & np.isfinite(est)
        if both.sum() >= 2:  # the estimate's own spread, and how far it was from the truth
            bands[metric]["estimate_mean"] = float(est[both].mean())
            bands[metric]["estimate_std"] = float(est[both].std(ddof=1))
            bands[metric]["estimate_mae"] = float(np.abs(est[both] - real[both]).mean())
    out["bands"] = bands
    for metric, b in bands.items():  # the bands of a reference-sized chunk, for the record
        size = int(b["rows"])
        realized_band = band(out, metric, size, k)
        b.update(k=k, lower=realized_band["lower"], upper=realized_band["upper"])
        if "estimate_std" in b:
            estimated_band = band(out, metric, size, k, source="estimated")
            b.update(estimate_lower=estimated_band["lower"], estimate_upper=estimated_band["upper"])
    return out


def _estimates(task: Task, p: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """A classifier's label-free estimates from calibrated probabilities ``p``: CBPE for a binary
    model; the mean calibrated confidence (expected accuracy) for a multi-class one."""
    if task is Task.MULTICLASS:
        return {"accuracy": float(p.mean()) if len(p) else float("nan")}
    return estimates.classifier_estimates(p, scores >= threshold)


def band(
    reference: dict[str, Any],
    metric: str,
    rows: int,
    k: float,
    *,
    source: str = "realized",
    positives: float | None = None,
) -> dict[str, float]:
    """The band of a ``source`` (realized or estimated) value of ``metric`` resting on ``rows``
    rows (``positives`` of them, or expected to be, for a classifier), and its sampling error.
    A realized value varies with the labels drawn; an estimate only with the rows (it reads no
    labels), so each is judged by its own spread over the reference chunks. The error grows
    as 1/sqrt(rows), and as the classes get more unequal than in the reference (17 positives
    in 500 rows tell less than 100). Both bands are widened by the uncertainty of the
    reference itself (the realized spread at the reference's size: what its mean and the
    calibrator rest on)."""
    b = reference["bands"][metric]
    estimated = source == "estimated" and "estimate_std" in b
    center, spread = (b["estimate_mean"], b["estimate_std"]) if estimated else (b["mean"], b["std"])
    effective = float(rows)
    if positives is not None and reference.get("positive_rate"):
        q = min(max(positives / rows, 1.0 / rows), 1.0 - 1.0 / rows)
        q_ref = reference["positive_rate"]
        effective = rows * (q * (1.0 - q)) / (q_ref * (1.0 - q_ref))
    error = spread * math.sqrt(b["rows"] / effective)
    of_reference = b["std"] * math.sqrt(b["rows"] / reference["rows"])
    half = k * math.hypot(error, of_reference)
    lower, upper = center - half, center + half
    if metric in BOUNDED:
        lower, upper = max(lower, 0.0), min(upper, 1.0)
    elif metric in ("mae", "rmse", "log_loss"):
        lower = max(lower, 0.0)
    return {"lower": lower, "upper": upper, "sampling_error": error}


def judge(
    reference: dict[str, Any],
    metric: str,
    value: float,
    rows: int,
    k: float,
    *,
    source: str = "realized",
    positives: float | None = None,
) -> dict[str, Any]:
    """One value against its band: where it lies, and whether that is worse than the reference."""
    if metric not in reference["bands"] or not math.isfinite(value):
        return {"value": value if math.isfinite(value) else None, "status": TOO_FEW}
    b = band(reference, metric, rows, k, source=source, positives=positives)
    worse_below = higher_is_better(metric)
    if value < b["lower"]:
        status = "worse" if worse_below else "better"
    elif value > b["upper"]:
        status = "better" if worse_below else "worse"
    else:
        status = "within"
    return {"value": value, **b, "status": status}


def _enough(rows: int, positives: float | None, min_rows: int) -> bool:
    """Whether a value on ``rows`` rows (``positives`` of them, or expected to be, for a
    classifier) can be told from the reference at all."""
    if rows < min_rows:
        return False
    return positives is None or min(positives, rows - positives) >= MIN_CLASS_ROWS


def _scope(
    task: Task,
    reference: dict[str, Any],
    label: str,
    *,
    p: np.ndarray,
    losses: np.ndarray | None,
    y: np.ndarray,
    scores: np.ndarray,
    min_rows: int,
    k: float,
    names: tuple[str, ...],
) -> dict[str, Any]:
    """The estimated and (on the labelled rows) realized metrics of one chunk or the window."""
    import numpy as np

    threshold = reference["threshold"]
    rows = len(p)
    out: dict[str, Any] = {"label": label, "rows": rows, "estimated": {}, "realized": {}}
    classifier = task.classifies
    expected = float(p.sum()) if classifier else None
    if _enough(rows, expected, min_rows):
        est = (
            _estimates(task, p, scores, threshold) if classifier else estimates.regressor_estimates(losses)  # type: ignore[arg-type]
        )
        out["expected_confusion"] = est.pop("confusion", None)
        out["estimated"] = {
            m: judge(reference, m, est[m], rows, k, source="estimated", positives=expected)
            for m in watched(task)
        }
    else:
        out["estimated"] = {m: {"value": None, "status": TOO_FEW} for m in watched(task)}
    labelled = np.isfinite(y)
    out["labelled_rows"] = int(labelled.sum())
    if out["labelled_rows"]:
        yl, sl = y[labelled], scores[labelled]
        positives = float(yl.sum()) if classifier else None
        if _enough(len(yl), positives, min_rows):
            real = realized(task, yl, sl, threshold, names)
            out["confusion"] = real.pop("confusion", None)
            out["realized"] = {
                m: judge(reference, m, real[m], len(yl), k, positives=positives) for m in names
            }
        else:
            out["realized"] = {m: {"value": None, "status": TOO_FEW} for m in names}
    return out


def assess(
    task: Task,
    reference: dict[str, Any],
    scores: np.ndarray,
    labels: np.ndarray,
    chunks: list[tuple[str, np.ndarray]],
    *,
    losses: np.ndarray | None = None,
    min_rows: int,
    k: float,
    primary: str,
    holdout_value: float | None = None,
    max_drop: float | None = None,
    batches: list[tuple[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """The performance report of a window: ``scores`` (raw model output per row), ``labels``
    (NaN where a row has none), ``chunks`` as (label, row indices) in time order, and for a
    regressor the loss models' ``losses`` per row. ``batches`` (label, row indices) are
    measured too (for the history of estimates against realized values), never alerted on."""
    import numpy as np

    s = np.asarray(scores, dtype="float64")
    y = np.asarray(labels, dtype="float64")
    p = calibration.calibrate(reference.get("calibration"), s) if task.classifies else s
    names = measured(task, primary)

    def scope(label: str, idx: Any) -> dict[str, Any]:
        return _scope(task, reference, label, p=p[idx], losses=None if losses is None else losses[idx], y=y[idx],
                      scores=s[idx], min_rows=min_rows, k=k, names=names)  # fmt: skip

    window = scope("window", slice(None))
    per_chunk = [scope(label, idx) for label, idx in chunks]
    per_batch = [scope(label, idx) for label, idx in batches or []]
    alerts = []
    judged = [window, *per_chunk[-1:]] if len(per_chunk) > 1 else [window]
    for part in judged:
        for source in ("estimated", "realized"):
            for metric, v in part[source].items():
                if v["status"] == "worse":
                    alerts.append({
                        "rule": "band", "scope": part["label"], "source": source, "metric": metric,
                        "value": v["value"], "lower": v["lower"], "upper": v["upper"], "rows": part["rows"],
                    })  # fmt: skip
    if max_drop is not None and holdout_value is not None:
        sign = 1.0 if higher_is_better(primary) else -1.0
        for source in ("realized", "estimated"):
            v = window[source].get(primary) or {}
            if v.get("value") is None or "sampling_error" not in v:
                continue
            drop = sign * (holdout_value - v["value"])
            if drop > max_drop and drop > k * v["sampling_error"]:
                alerts.append({
                    "rule": "max_performance_drop", "scope": "window", "source": source, "metric": primary,
                    "value": v["value"], "reference": holdout_value, "drop": drop, "limit": max_drop,
                    "rows": window["rows"],
                })  # fmt: skip
    told = [v for part in judged for src in ("estimated", "realized") for v in part[src].values()]
    return {
        "primary_metric": primary,
        "threshold": reference.get("threshold"),
        "calibration": (reference.get("calibration") or {}).get("method"),
        "k": k,
        "window": window,
        "chunks": per_chunk,
        "batches": per_batch,
        "alerts": alerts,
        "degraded": bool(alerts),
        "too_few_rows": bool(told) and all(v["status"] == TOO_FEW for v in told),
    }


def alert_text(alert: dict[str, Any]) -> str:
    """One fired rule, as the report and the summary say it."""
    what = f"{alert['source']} {alert['metric']} {alert['value']:.4f}"
    where = "the window" if alert["scope"] == "window" else f"chunk {alert['scope']}"
    if alert["rule"] == "band":
        return f"{what} outside its band [{alert['lower']:.4f}, {alert['upper']:.4f}] on {where} ({alert['rows']:,} rows)"
    return (
        f"{what} is {alert['drop']:.4f} worse than the holdout's {alert['reference']:.4f}, more than "
        f"max_performance_drop {alert['limit']} and than its sampling error, on {where}"
    )
