"""Label-free performance estimates from a classifier's probabilities (confidence-based,
like NannyML's CBPE)."""

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


def cbpe_accuracy(proba_positive: np.ndarray) -> float:
    """Expected accuracy of thresholding at 0.5, if the probabilities are calibrated: a row with
    probability p is right with probability max(p, 1 - p)."""
    import numpy as np

    p = _proba(proba_positive)
    return float(np.mean(np.maximum(p, 1.0 - p)))


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
