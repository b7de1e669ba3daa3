"""A classifier's probabilities made calibrated before any label-free estimate reads them.

A confidence-based estimate (``estimates``) assumes that among rows scored p, a share p are
positives. Most models' scores are not like that (boosted trees and regularised models push
them towards the middle or the ends), and the estimate is then off by more than the drop it
should see. So, as NannyML's CBPE does, a calibrator is fitted at training time from the
holdout's scores to its labels, stored as data in the reference profile (the isotonic
breakpoints or the two Platt coefficients: no pickle), and applied to every score first.

::

    cal = fit_calibrator(holdout_scores, holdout_labels)   # a JSON-able dict
    p = calibrate(cal, scores)                              # what the estimates read

Isotonic regression (scikit-learn's ``IsotonicRegression``) when the holdout has enough of
each class for a step function not to follow noise; Platt scaling (a one-feature
``LogisticRegression`` on the score's log-odds) below that; none when a class barely exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlcycle.core.errors import DriftError

if TYPE_CHECKING:
    import numpy as np

# Isotonic needs this many rows of each class; Platt needs MIN_PLATT_CLASS_ROWS.
MIN_ISOTONIC_CLASS_ROWS = 100
MIN_PLATT_CLASS_ROWS = 10
ECE_BINS = 10
CROSS_FIT_FOLDS = 5
_LOGIT_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    import numpy as np

    q = np.clip(np.asarray(p, dtype="float64"), _LOGIT_EPS, 1.0 - _LOGIT_EPS)
    return np.log(q / (1.0 - q))


def fit_calibrator(scores: Any, labels: Any) -> dict[str, Any]:
    """A calibrator from ``scores`` (positive-class probabilities) to ``labels`` (0/1), as data:
    ``{"method": "isotonic", "x": [...], "y": [...]}``, ``{"method": "sigmoid", "a": .., "b": ..}``
    or ``{"method": "none", "reason": ...}``, each with the class counts it rests on."""
    import numpy as np

    s = np.asarray(scores, dtype="float64")
    y = np.asarray(labels, dtype="float64")
    if s.shape != y.shape or s.ndim != 1:
        raise DriftError(f"calibration needs one score per label; got {s.shape} scores and {y.shape} labels")
    if not np.all(np.isin(y, (0.0, 1.0))):
        raise DriftError("calibration labels must be 0 or 1 (encode the target first)")
    positives = int(y.sum())
    counts = {"rows": len(y), "positives": positives}
    smaller = min(positives, len(y) - positives)
    if smaller >= MIN_ISOTONIC_CLASS_ROWS:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y)
        x_points, y_points = iso.X_thresholds_, iso.y_thresholds_
        return {"method": "isotonic", "x": x_points.tolist(), "y": y_points.tolist(), **counts}
    if smaller >= MIN_PLATT_CLASS_ROWS:
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e6).fit(_logit(s).reshape(-1, 1), y.astype("int64"))
        return {"method": "sigmoid", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0]), **counts}
    return {
        "method": "none",
        "reason": f"{smaller} row(s) of the rarer class in the holdout, fewer than {MIN_PLATT_CLASS_ROWS}",
        **counts,
    }


def calibrate(calibrator: dict[str, Any] | None, scores: Any) -> np.ndarray:
    """``scores`` through ``calibrator`` (``fit_calibrator``'s output); unchanged without one."""
    import numpy as np

    s = np.asarray(scores, dtype="float64")
    method = (calibrator or {}).get("method", "none")
    if method == "isotonic":
        # IsotonicRegression.predict with out_of_bounds="clip" is this linear interpolation.
        return np.interp(s, calibrator["x"], calibrator["y"])  # type: ignore[index]
    if method == "sigmoid":
        z = calibrator["a"] * _logit(s) + calibrator["b"]  # type: ignore[index]
        return 1.0 / (1.0 + np.exp(-z))
    if method == "none":
        return s
    raise DriftError(f"unknown calibration method {method!r} in the reference profile; retrain the model")


def expected_calibration_error(scores: Any, labels: Any, bins: int = ECE_BINS) -> float:
    """ECE: the row-weighted mean gap between the mean score and the share of positives, over
    ``bins`` equal-width score bins (0 for perfectly calibrated scores)."""
    import numpy as np

    s = np.asarray(scores, dtype="float64")
    y = np.asarray(labels, dtype="float64")
    if not len(s):
        return float("nan")
    idx = np.minimum((s * bins).astype("int64"), bins - 1)
    gap = np.abs(np.bincount(idx, weights=s, minlength=bins) - np.bincount(idx, weights=y, minlength=bins))
    return float(gap.sum() / len(s))


def cross_fitted(scores: Any, labels: Any, folds: int = CROSS_FIT_FOLDS, seed: int = 0) -> np.ndarray:
    """Each row's score calibrated by a calibrator fitted on the other folds: what calibration
    does on rows it has not seen, for honest reference estimates and the ECE after it."""
    import numpy as np

    s = np.asarray(scores, dtype="float64")
    y = np.asarray(labels, dtype="float64")
    fold = np.random.default_rng(seed).permutation(len(s)) % folds
    out = np.empty_like(s)
    for k in range(folds):
        test = fold == k
        out[test] = calibrate(fit_calibrator(s[~test], y[~test]), s[test])
    return out
