"""The reference a drift check compares against, computed at training time from the fitted
pipeline, its training rows and its holdout, and logged with the version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlcycle.core.spec import ModelSpec, Task

if TYPE_CHECKING:
    import pandas as pd


def reference_profile(
    spec: ModelSpec, pipeline: Any, train: pd.DataFrame, holdout: pd.DataFrame
) -> dict[str, Any]:
    """Profile of the training data, the holdout's prediction distribution, the model's
    feature importance and its reference performance (measured and, for classifiers, the
    confidence-based estimate) — everything a later check compares against."""
    import numpy as np

    from mlcycle.ml import evaluation as ev
    from mlcycle.monitor import estimates
    from mlcycle.monitor.profile import build_profile

    X_hold = holdout[spec.features.all]
    scores = ev.scores(pipeline, X_hold, spec.task)
    profile = build_profile(
        train,
        spec.features.numeric,
        spec.features.categorical,
        prediction=scores,
        importance=feature_importance(spec, pipeline, holdout),
    ).to_dict()
    y = holdout[spec.data.target].to_numpy()
    reference: dict[str, Any] = {"metrics": ev.all_metrics(spec.task, y, scores)}
    if spec.task is Task.CLASSIFICATION:
        reference["cbpe_accuracy"] = estimates.cbpe_accuracy(np.asarray(scores))
        reference["cbpe_roc_auc"] = estimates.cbpe_roc_auc(np.asarray(scores))
    profile["reference_performance"] = reference
    return profile


def feature_importance(
    spec: ModelSpec, pipeline: Any, holdout: pd.DataFrame, max_rows: int = 2000
) -> dict[str, float]:
    """Permutation importance on (a sample of) the holdout, clipped at 0 and normalised."""
    from sklearn.inspection import permutation_importance

    sample = (
        holdout.sample(min(len(holdout), max_rows), random_state=0) if len(holdout) > max_rows else holdout
    )
    scoring = "roc_auc" if spec.task is Task.CLASSIFICATION else "neg_root_mean_squared_error"
    result = permutation_importance(
        pipeline,
        sample[spec.features.all],
        sample[spec.data.target],
        scoring=scoring,
        n_repeats=3,
        random_state=0,
    )
    raw = {f: max(float(v), 0.0) for f, v in zip(spec.features.all, result.importances_mean, strict=True)}
    total = sum(raw.values())
    return {f: (v / total if total else 1.0 / len(raw)) for f, v in raw.items()}
