"""Evaluation: metrics, latency and size of a model on a holdout, and a paired bootstrap.

Candidate and champion are always scored on the same holdout rows, so their
difference is a paired comparison rather than two unrelated numbers.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from mlcycle.core.spec import METRICS, PER_CLASS_METRICS, Task, higher_is_better, task_metrics

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlcycle.core.spec import ModelSpec


def scores(model: Any, X: pd.DataFrame, task: Task) -> np.ndarray:
    """Positive-class probability for binary classifiers, every class's probability (one
    column per class, in ``model.classes_`` order) for multi-class, the prediction for
    regressors."""
    import numpy as np

    if task is Task.CLASSIFICATION:
        return np.asarray(model.predict_proba(X))[:, 1]
    if task is Task.MULTICLASS:
        return np.asarray(model.predict_proba(X), dtype="float64")
    return np.asarray(model.predict(X), dtype="float64")


def scores_of(output: np.ndarray, task: Task) -> np.ndarray:
    """``scores`` from a model's whole output (``predict_proba`` or ``predict``), already computed."""
    return output[:, 1] if task is Task.CLASSIFICATION else output


def score_shift(candidate: np.ndarray, champion: np.ndarray) -> np.ndarray:
    """Per row, the candidate's score minus the champion's: for a multi-class model, of the
    probability of the class the champion chooses (how much less sure the served decision gets)."""
    import numpy as np

    if np.ndim(champion) == 2:
        rows, chosen = np.arange(len(champion)), champion.argmax(axis=1)
        return np.asarray(candidate[rows, chosen] - champion[rows, chosen])
    return np.asarray(candidate - champion)


def classes_of(spec: ModelSpec) -> list[str] | None:
    """The column order of a multi-class model's probabilities (scikit-learn's ``classes_``:
    the spec's classes sorted, since training refuses a window that lacks one); None otherwise."""
    return sorted(spec.data.classes) if spec.task is Task.MULTICLASS and spec.data.classes else None


def _multiclass_value(name: str, y: np.ndarray, s: np.ndarray, classes: list[str]) -> float:
    import numpy as np
    from sklearn import metrics as m

    labels = np.asarray(classes, dtype=object)
    pred = labels[np.asarray(s).argmax(axis=1)]
    y = np.asarray(y, dtype=object)
    if not len(y):
        return float("nan")
    kind, _, cls = name.partition(".")
    if kind in PER_CLASS_METRICS and cls:
        # Undefined (NaN), never 0, without rows of the class (recall) or predictions of it
        # (precision): a rule then says "not measured" rather than "dropped to 0".
        actual, chosen = y == cls, pred == cls
        base = actual if kind == "recall" else chosen
        return float((actual & chosen).sum() / base.sum()) if base.any() else float("nan")
    if name == "accuracy":
        return float(np.mean(pred == y))
    if name == "balanced_accuracy":
        present = [c for c in classes if (y == c).any()]
        return float(np.mean([np.mean(pred[y == c] == c) for c in present]))
    if name in ("macro_f1", "weighted_f1"):
        # Over the classes present or predicted (scikit-learn's default): a class absent from
        # these rows and never chosen has no F1, and must not count as 0.
        average = name.partition("_")[0]
        return float(m.f1_score(y, pred, average=average, zero_division=0))
    if name == "log_loss":
        return float(m.log_loss(y, np.clip(s, 1e-15, 1.0), labels=classes))
    if name == "roc_auc_ovr":
        # One-vs-rest, macro over the classes present with both sides (NaN under two such).
        aucs = [
            m.roc_auc_score(y == c, s[:, i]) for i, c in enumerate(classes) if 0 < (y == c).sum() < len(y)
        ]
        return float(np.mean(aucs)) if len(aucs) >= 2 else float("nan")
    raise KeyError(f"{name!r} is not a multi-class metric; known: {task_metrics(Task.MULTICLASS)}")


def metric_value(
    name: str, y: np.ndarray, s: np.ndarray, *, threshold: float = 0.5, classes: list[str] | None = None
) -> float:
    """Metric ``name`` of scores ``s`` against labels ``y``; ``KeyError`` for an unknown name.

    accuracy and f1 cut probabilities at ``threshold`` (the spec's
    ``scoring.decision_threshold``); ``roc_auc`` is NaN when ``y`` holds one class. Multi-class
    scores (one column per class, ``classes`` naming them) decide by the most probable class."""
    import numpy as np
    from sklearn import metrics as m

    if np.ndim(s) == 2:
        if classes is None:
            raise ValueError("multi-class scores need the classes their columns are (classes_of(spec))")
        return _multiclass_value(name, y, s, classes)
    if name == "roc_auc":
        return float(m.roc_auc_score(y, s)) if len(np.unique(y)) > 1 else float("nan")
    if name == "average_precision":
        return float(m.average_precision_score(y, s))
    if name == "accuracy":
        return float(m.accuracy_score(y, s >= threshold))
    if name == "f1":
        return float(m.f1_score(y, s >= threshold, zero_division=0))
    if name == "log_loss":
        return float(m.log_loss(y, np.clip(s, 1e-15, 1 - 1e-15), labels=[0, 1]))
    if name == "brier":
        return float(m.brier_score_loss(y, s))
    if name == "rmse":
        return float(np.sqrt(m.mean_squared_error(y, s)))
    if name == "mae":
        return float(m.mean_absolute_error(y, s))
    if name == "r2":
        return float(m.r2_score(y, s))
    raise KeyError(f"unknown metric {name!r}; known: {sorted(METRICS)}")


def all_metrics(
    task: Task, y: np.ndarray, s: np.ndarray, *, threshold: float = 0.5, classes: list[str] | None = None
) -> dict[str, float]:
    """Every metric of ``METRICS`` that applies to ``task``, by name; a multi-class model's also
    ``recall.<class>`` and ``precision.<class>`` of each class."""
    names = task_metrics(task)
    if task is Task.MULTICLASS:
        names += [f"{kind}.{c}" for c in classes or [] for kind in PER_CLASS_METRICS]
    return {name: metric_value(name, y, s, threshold=threshold, classes=classes) for name in names}


# Rows a latency measurement scores: short runs are more likely to fall between bursts of
# other work on the machine, and the per-call overhead is still small beside 2,000 rows.
LATENCY_ROWS = 2000
LATENCY_REPEATS = 7


def latency_ms_per_1k(model: Any, X: pd.DataFrame, task: Task, repeats: int = LATENCY_REPEATS) -> float:
    """Wall time to score 1,000 rows, measured on up to ``LATENCY_ROWS`` holdout rows.

    The best of ``repeats`` runs: other work on the machine only ever adds time, so the
    minimum is the stable estimate a budget can be checked against."""
    return latencies_interleaved([model], X, task, repeats=repeats)[0]


def latencies_interleaved(
    models: list[Any], X: pd.DataFrame, task: Task, repeats: int = LATENCY_REPEATS
) -> list[float]:
    """``latency_ms_per_1k`` of each model, timed in turns in this process (A B, then B A, ...),
    best of ``repeats`` runs each: a burst of load slows whichever model runs during it, and in
    turns every model gets runs outside the burst, so the ratio of two models is far steadier
    than either absolute number. The order flips every round so neither model always runs on
    the caches the other warmed."""
    sample = X.iloc[: min(len(X), LATENCY_ROWS)]
    best = [float("inf")] * len(models)
    for round_ in range(repeats):
        order = list(range(len(models)))
        for i in order if round_ % 2 == 0 else reversed(order):
            started = time.perf_counter()
            scores(models[i], sample, task)
            best[i] = min(best[i], (time.perf_counter() - started) * 1000 / max(len(sample), 1) * 1000)
    return best


def row_fingerprints(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """A 64-bit hash of each row's values in ``columns``, equal for equal rows whatever their
    dtypes (numbers compared as float64, everything else as text), so rows read from different
    files can be matched: the trusted set leaves out the rows a candidate trained on."""
    import numpy as np
    import pandas as pd

    normal = pd.DataFrame(
        {
            c: (
                df[c].astype("float64")
                if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
                else df[c].astype("string").fillna("\x00null")
            )
            for c in columns
        }
    )
    return np.asarray(pd.util.hash_pandas_object(normal, index=False), dtype="uint64")


def slice_metrics(
    metric: str,
    y: np.ndarray,
    frame: pd.DataFrame,
    *,
    columns: list[str],
    candidate: np.ndarray,
    champion: np.ndarray | None,
    min_rows: int,
    threshold: float = 0.5,
    classes: list[str] | None = None,
) -> list[dict[str, Any]]:
    """``metric`` of each model on the rows of each value of each of ``columns`` (the same rows for
    both), largest slices first. A slice under ``min_rows`` rows, or one where the metric is
    undefined (one class only, for AUC), gets None: it is listed, never judged."""
    import numpy as np

    out: list[dict[str, Any]] = []
    for column in columns:
        values = frame[column].astype("string").fillna("<missing>").to_numpy()
        kinds, counts = np.unique(values, return_counts=True)
        for value, rows in sorted(zip(kinds, counts, strict=True), key=lambda vc: (-vc[1], vc[0])):
            mask = values == value
            measured: dict[str, float | None] = {"candidate": None, "champion": None}
            if rows >= min_rows:
                for who, s in (("candidate", candidate), ("champion", champion)):
                    if s is not None:
                        v = metric_value(metric, y[mask], s[mask], threshold=threshold, classes=classes)
                        measured[who] = None if np.isnan(v) else v
            out.append({"column": column, "value": str(value), "rows": int(rows), **measured})
    return out


def _rounded(value: float) -> float | None:
    import math

    return None if math.isnan(value) else round(value, 4)


CURVE_POINTS = 60
BOOTSTRAP_BINS = 20
SCATTER_POINTS = 300


def _thin(xs: np.ndarray, ys: np.ndarray, n: int = CURVE_POINTS) -> list[list[float]]:
    """At most ``n`` points of a curve, first and last kept, rounded for a small JSON file."""
    import numpy as np

    idx = np.unique(np.linspace(0, len(xs) - 1, min(n, len(xs))).round().astype(int))
    return [[round(float(xs[i]), 4), round(float(ys[i]), 4)] for i in idx]


def _calibration(confidence: np.ndarray, correct: np.ndarray) -> list[list[float]]:
    """10 equal-width bins of ``confidence``: [mean confidence, observed frequency, rows] each."""
    import numpy as np

    edges = np.linspace(0, 1, 11)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, 9)
    return [
        [
            round(float(confidence[which == b].mean()), 4),
            round(float(correct[which == b].mean()), 4),
            int((which == b).sum()),
        ]
        for b in range(10)
        if (which == b).any()
    ]


def curves(
    task: Task, y: np.ndarray, by_version: dict[str, np.ndarray], *, classes: list[str] | None = None
) -> dict[str, Any]:
    """What the gate page plots, per model version on the same holdout rows: for a classifier the
    ROC and precision-recall curves and a 10-bin calibration curve; for a multi-class model the
    confusion matrix, per-class recall and precision and the calibration of its top class; for a
    regressor predicted vs actual (a sample of rows) and the residuals' quantiles. Small: a few
    hundred numbers each."""
    import numpy as np
    from sklearn import metrics as m

    out: dict[str, Any] = {"task": str(task), "rows": len(y), "models": {}}
    if classes is not None:
        out["classes"] = classes
    for version, s in by_version.items():
        if task is Task.MULTICLASS and classes is not None:
            labels = np.asarray(classes, dtype=object)
            pred = labels[s.argmax(axis=1)]
            out["models"][version] = {
                "confusion": m.confusion_matrix(y, pred, labels=classes).tolist(),
                "per_class": {
                    c: {k: _rounded(_multiclass_value(f"{k}.{c}", y, s, classes)) for k in PER_CLASS_METRICS}
                    for c in classes
                },
                "calibration": _calibration(s.max(axis=1), (pred == y).astype("float64")),
            }
        elif task is Task.CLASSIFICATION:
            if len(np.unique(y)) < 2:
                continue
            fpr, tpr, _ = m.roc_curve(y, s)
            precision, recall, _ = m.precision_recall_curve(y, s)
            out["models"][version] = {
                "roc": _thin(fpr, tpr),
                "pr": _thin(recall[::-1], precision[::-1]),
                "calibration": _calibration(s, y.astype("float64")),
            }
        else:
            rng = np.random.default_rng(0)
            pick = rng.choice(len(y), min(len(y), SCATTER_POINTS), replace=False)
            residual = s - y
            out["models"][version] = {
                "predicted_vs_actual": [[round(float(y[i]), 4), round(float(s[i]), 4)] for i in pick],
                "residual_quantiles": [
                    round(float(q), 4) for q in np.quantile(residual, np.linspace(0, 1, 21))
                ],
            }
    return out


def paired_bootstrap(
    metric: str,
    y: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    *,
    n: int = 200,
    seed: int = 0,
    threshold: float = 0.5,
    classes: list[str] | None = None,
) -> dict[str, Any]:
    """Resample holdout rows (the same rows for both models) and report how often the
    candidate is at least as good as the champion, and a 90 % interval of the gain
    (positive = better, whatever the metric's direction)."""
    import numpy as np

    sign = 1.0 if higher_is_better(metric) else -1.0
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        c = metric_value(metric, y[idx], candidate[idx], threshold=threshold, classes=classes)
        b = metric_value(metric, y[idx], champion[idx], threshold=threshold, classes=classes)
        if not (np.isnan(c) or np.isnan(b)):
            gains.append(sign * (c - b))
    if not gains:  # e.g. a single-class holdout: AUC is undefined on every resample
        nan = float("nan")
        return {"prob_not_worse": nan, "gain_p05": nan, "gain_p95": nan, "resamples": 0}
    arr = np.asarray(gains)
    counts, edges = np.histogram(arr, bins=BOOTSTRAP_BINS)
    return {
        "prob_not_worse": float(np.mean(arr >= 0)),
        "gain_p05": float(np.quantile(arr, 0.05)),
        "gain_p95": float(np.quantile(arr, 0.95)),
        "resamples": len(gains),
        # The distribution of the gain, for the verdict page's plot.
        "histogram": {"counts": counts.tolist(), "edges": [float(e) for e in edges]},
    }
