"""Label-free performance estimates: from a classifier's (calibrated) probabilities, the
expected confusion matrix and the metrics read off it (confidence-based, like NannyML's CBPE);
for a regressor, a small model of its error trained on the holdout (direct loss estimation,
like NannyML's DLE). The realized metrics beside them use the same definitions, so an estimate
and the value labels later give are comparable."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlcycle.core.errors import DriftError

if TYPE_CHECKING:
    import numpy as np


# --- label-free performance estimate (confidence-based, like NannyML's CBPE) -----------------------


def _proba(proba_positive: Any) -> np.ndarray:
    import numpy as np

    p = np.asarray(proba_positive, dtype="float64")
    if p.ndim != 1 or not len(p):
        raise DriftError(
            f"expected a non-empty 1-D array of positive-class probabilities, got shape {p.shape}"
        )
    if not np.all((p >= 0.0) & (p <= 1.0)):  # also catches NaN
        bad = p[~((p >= 0.0) & (p <= 1.0))]
        raise DriftError(f"{len(bad)} probabilities are outside [0, 1] or missing (e.g. {bad[0]!r})")
    return p


def cbpe_roc_auc(proba_positive: np.ndarray) -> float:
    """Expected ROC AUC if the probabilities are calibrated: each row is a positive with weight
    p and a negative with weight 1 - p, and the AUC is the weighted share of (positive,
    negative) pairs ranked correctly, ties counting half. A row is never paired with itself
    (it cannot be both), which the self-pair terms p(1 - p) remove from both sums.
    NaN when no pair can be formed (every p is 0, or every p is 1)."""
    import numpy as np

    p = _proba(proba_positive)
    scores, inverse = np.unique(p, return_inverse=True)
    pos = np.bincount(inverse, weights=p, minlength=len(scores))
    neg = np.bincount(inverse, weights=1.0 - p, minlength=len(scores))
    neg_below = np.cumsum(neg) - neg
    self_pairs = float(np.sum(p * (1.0 - p)))
    numerator = float(np.einsum("i,i->", pos, neg_below + 0.5 * neg)) - 0.5 * self_pairs
    denominator = float(pos.sum() * neg.sum()) - self_pairs
    return numerator / denominator if denominator > 0 else float("nan")


CLASSIFIER_METRICS = ("roc_auc", "accuracy", "precision", "recall", "f1")
REGRESSOR_METRICS = ("mae", "rmse")


def expected_confusion(proba_positive: Any, predicted: Any) -> dict[str, float]:
    """The confusion matrix expected if the (calibrated) probabilities are right: a row
    ``predicted`` positive is a true positive with probability p and a false positive with
    probability 1 - p, and likewise for a row predicted negative. ``predicted`` is the model's
    own decision (its raw score at the decision threshold), not the calibrated probability's."""
    import numpy as np

    p = _proba(proba_positive)
    predicted = np.asarray(predicted, dtype=bool)
    if predicted.shape != p.shape:
        raise DriftError(f"expected one decision per probability, got {predicted.shape} and {p.shape}")
    tp = float(np.sum(p, where=predicted))
    fp = float(np.sum(1.0 - p, where=predicted))
    fn = float(np.sum(p, where=~predicted))
    tn = float(np.sum(1.0 - p, where=~predicted))
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def _from_confusion(c: dict[str, float]) -> dict[str, float]:
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    nan = float("nan")
    return {
        "accuracy": (tp + tn) / (tp + fp + fn + tn),
        "precision": tp / (tp + fp) if tp + fp > 0 else nan,
        "recall": tp / (tp + fn) if tp + fn > 0 else nan,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else nan,
    }


def classifier_estimates(proba_positive: Any, predicted: Any) -> dict[str, Any]:
    """Estimated ROC AUC, accuracy, precision, recall and F1 of the decisions ``predicted``
    (the raw scores at the decision threshold), from the calibrated probabilities, and the
    expected confusion matrix they come from."""
    confusion = expected_confusion(proba_positive, predicted)
    return {"roc_auc": cbpe_roc_auc(proba_positive), **_from_confusion(confusion), "confusion": confusion}


def classifier_realized(labels: Any, proba_positive: Any, threshold: float) -> dict[str, Any]:
    """The same metrics measured on labels (NaN where a class is missing), and the confusion matrix."""
    import numpy as np

    from mlcycle.ml.evaluation import metric_value

    y = np.asarray(labels, dtype="float64") == 1.0
    p = np.asarray(proba_positive, dtype="float64")
    predicted = p >= threshold
    confusion = {
        "tp": float(np.sum(predicted & y)),
        "fp": float(np.sum(predicted & ~y)),
        "fn": float(np.sum(~predicted & y)),
        "tn": float(np.sum(~predicted & ~y)),
    }
    return {"roc_auc": metric_value("roc_auc", y, p), **_from_confusion(confusion), "confusion": confusion}


def regressor_realized(labels: Any, predictions: Any) -> dict[str, float]:
    """MAE and RMSE measured on labels."""
    import numpy as np

    from mlcycle.ml.evaluation import metric_value

    y, p = np.asarray(labels, dtype="float64"), np.asarray(predictions, dtype="float64")
    return {name: metric_value(name, y, p) for name in REGRESSOR_METRICS}


# --- direct loss estimation for regressors --------------------------------------------------------

DLE_TREES = 100
DLE_DEPTH = 3
DLE_LEARNING_RATE = 0.1


def dle_inputs(dle_or_columns: dict[str, Any], frame: Any, predictions: Any) -> np.ndarray:
    """The matrix a loss model reads: the prediction, each numeric feature (missing values at
    the holdout's median) and each categorical feature as the rank of its category in the
    holdout (an unseen one is -1)."""
    import numpy as np

    columns = dle_or_columns.get("inputs", dle_or_columns)
    out = [np.asarray(predictions, dtype="float64")]
    for name, median in columns["numeric"].items():
        x = np.asarray(frame[name].to_numpy(dtype="float64", na_value=np.nan), dtype="float64")
        out.append(np.where(np.isfinite(x), x, median))
    for name, categories in columns["categorical"].items():
        codes = {c: i for i, c in enumerate(categories)}
        out.append(frame[name].astype(str).map(codes).fillna(-1).to_numpy(dtype="float64"))
    return np.column_stack(out)


def _export(gb: Any) -> dict[str, Any]:
    """A fitted GradientBoostingRegressor as data: its constant start and each tree's arrays."""
    trees = []
    for (tree,) in gb.estimators_:
        t = tree.tree_
        trees.append(
            {
                "left": t.children_left.tolist(),
                "right": t.children_right.tolist(),
                "feature": t.feature.tolist(),
                "threshold": t.threshold.tolist(),
                "value": t.value[:, 0, 0].tolist(),
            }
        )
    return {"init": float(gb.init_.constant_[0, 0]), "learning_rate": gb.learning_rate, "trees": trees}


def _predict(model: dict[str, Any], X: np.ndarray) -> np.ndarray:
    """``GradientBoostingRegressor.predict`` from the exported arrays (a test holds them equal)."""
    import numpy as np

    out = np.full(len(X), model["init"])
    rows = np.arange(len(X))
    for tree in model["trees"]:
        left, right = np.asarray(tree["left"]), np.asarray(tree["right"])
        feature, threshold = np.asarray(tree["feature"]), np.asarray(tree["threshold"])
        node = np.zeros(len(X), dtype="int64")
        while True:
            inner = left[node] != -1
            if not inner.any():
                break
            go_left = X[rows, np.maximum(feature[node], 0)] <= threshold[node]
            node = np.where(inner, np.where(go_left, left[node], right[node]), node)
        out += model["learning_rate"] * np.asarray(tree["value"])[node]
    return out


def fit_dle(frame: Any, numeric: list[str], categorical: list[str], *, labels: Any, predictions: Any,
            seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Two small gradient-boosted models, of the absolute and of the squared error of
    ``predictions`` against ``labels`` on the holdout ``frame``, stored as data."""
    import numpy as np
    from sklearn.ensemble import GradientBoostingRegressor

    inputs = {
        "numeric": {c: float(np.nanmedian(frame[c].to_numpy(dtype="float64", na_value=np.nan)))
                    if frame[c].notna().any() else 0.0 for c in numeric},
        "categorical": {c: [str(k) for k in frame[c].astype(str).value_counts().index] for c in categorical},
    }  # fmt: skip
    X = dle_inputs(inputs, frame, predictions)
    err = np.asarray(predictions, dtype="float64") - np.asarray(labels, dtype="float64")
    models = {}
    for name, target in (("abs", np.abs(err)), ("sq", err * err)):
        gb = GradientBoostingRegressor(
            n_estimators=DLE_TREES, max_depth=DLE_DEPTH, learning_rate=DLE_LEARNING_RATE,
            subsample=0.8, min_samples_leaf=20, random_state=seed,
        ).fit(X, target)  # fmt: skip
        models[name] = _export(gb)
    return {"inputs": inputs, **models}


def dle_losses(dle: dict[str, Any], X: np.ndarray) -> np.ndarray:
    """Each row's predicted absolute and squared error (columns 0 and 1), from ``dle_inputs``."""
    import numpy as np

    return np.column_stack(
        [np.maximum(_predict(dle["abs"], X), 0.0), np.maximum(_predict(dle["sq"], X), 0.0)]
    )


def regressor_estimates(losses: np.ndarray) -> dict[str, float]:
    """Estimated MAE and RMSE of rows whose predicted losses are ``losses`` (``dle_losses``)."""
    import numpy as np

    return {
        "mae": float(losses[:, 0].mean(dtype="float64")),
        "rmse": float(np.sqrt(losses[:, 1].mean(dtype="float64"))),
    }
