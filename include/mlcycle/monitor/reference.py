"""The reference a drift check compares against, computed at training time from the fitted
pipeline, its training rows and its holdout, and logged with the version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlcycle.core.spec import ModelSpec, Task

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def reference_profile(
    spec: ModelSpec,
    pipeline: Any,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    scores: np.ndarray | None = None,
) -> dict[str, Any]:
    """Profile of the training data, the holdout's prediction distribution, the model's
    feature importance, its reference performance (measured, and what estimating it without
    labels needs: the calibrator or the loss models, and the alert bands) and the association of each pair of columns — everything a later
    check compares against. ``scores``: the pipeline's ``evaluation.scores`` on the holdout, if
    the caller already has them."""
    import numpy as np

    from mlcycle.ml import evaluation as ev
    from mlcycle.monitor import performance
    from mlcycle.monitor.profile import build_profile
    from mlcycle.monitor.shift import associations

    if scores is None:
        scores = ev.scores(pipeline, holdout[spec.features.all], spec.task)
    y = holdout[spec.data.target].to_numpy()
    classes = ev.classes_of(spec)
    reference: dict[str, Any] = {
        "metrics": ev.all_metrics(
            spec.task, y, scores, threshold=spec.scoring.decision_threshold, classes=classes
        )
    }
    # Monitoring reads one score per row: a multi-class model's top-class confidence, with
    # whether that class was right as its label (``performance.top_class``).
    watched_scores, watched_labels = (
        performance.top_class(scores, y, classes) if classes is not None else (np.asarray(scores), y)
    )
    importance = feature_importance(spec, pipeline, holdout)
    profile = build_profile(
        train,
        spec.features.numeric,
        spec.features.categorical,
        prediction=watched_scores,
        # Text columns have their own drift (below); the importance-weighted share is the others'.
        importance={f: importance[f] for f in spec.features.tabular},
    ).to_dict()
    if classes is not None:
        profile["predicted_classes"] = predicted_classes(np.asarray(scores), classes)
    if spec.features.text:
        from mlcycle.monitor.text import text_profile

        profile["text"] = {
            c: {**text_profile(train[c]), "importance": importance[c]} for c in spec.features.text
        }
    # Chunks of the holdout in time order, as a monitoring window comes.
    order = np.argsort(holdout[spec.data.time_column].to_numpy(), kind="stable")
    reference["estimation"] = performance.reference_performance(
        spec.task,
        np.asarray(watched_labels, dtype="float64")[order],
        np.asarray(watched_scores)[order],
        threshold=spec.scoring.decision_threshold,
        chunk_rows=spec.monitor.chunk_rows,
        # The loss models of a regressor read the features; a classifier's estimate does not.
        frame=holdout.iloc[order] if spec.task is Task.REGRESSION else None,
        numeric=spec.features.numeric,
        categorical=spec.features.categorical,
        primary=spec.gate.primary_metric,
        k=spec.monitor.band_k,
    )
    profile["reference_performance"] = reference
    # How strongly each pair of columns (the target included) goes together: the pre-training
    # check of the next candidate (``monitor.shift``) compares its data with these.
    profile["associations"] = associations(spec, train)
    return profile


def predicted_classes(proba: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """How often a multi-class model chooses each class (``classes``: its columns), and on how
    many rows: the reference of the predicted class distribution's drift."""
    import numpy as np

    counts = (
        np.bincount(proba.argmax(axis=1), minlength=len(classes)) if len(proba) else np.zeros(len(classes))
    )
    return {"classes": classes, "counts": [int(c) for c in counts], "rows": len(proba)}


PERMUTATION_REPEATS = 3


def feature_importance(
    spec: ModelSpec, pipeline: Any, holdout: pd.DataFrame, max_rows: int = 2000
) -> dict[str, float]:
    """Permutation importance on (a sample of) the holdout, clipped at 0 and normalised."""
    sample = (
        holdout.sample(min(len(holdout), max_rows), random_state=0) if len(holdout) > max_rows else holdout
    )
    means = permutation_importance_batched(
        pipeline, sample[spec.features.all], sample[spec.data.target].to_numpy(), spec.task
    )
    raw = {f: max(float(v), 0.0) for f, v in zip(spec.features.all, means, strict=True)}
    total = sum(raw.values())
    return {f: (v / total if total else 1.0 / len(raw)) for f, v in raw.items()}


def permutation_importance_batched(
    pipeline: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    task: Task,
    *,
    n_repeats: int = PERMUTATION_REPEATS,
    seed: int = 0,
) -> np.ndarray:
    """``sklearn.inspection.permutation_importance(pipeline, X, y, scoring=roc_auc or
    neg_root_mean_squared_error, n_repeats, random_state=seed).importances_mean``, computed
    with one prediction over every permuted copy stacked instead of one call per copy.

    The permutations are scikit-learn's own (the same seed drawn the same way, the same
    in-place shuffles, each repeat permuting the column further), and a pipeline's rows are
    scored independently, so the result is the same (a test holds it to scikit-learn's): at
    2,000 rows x 9 features x 3 repeats the per-call overhead of 28 small predictions was
    0.7 s of every training (bench/train_step.py)."""
    import numpy as np
    import pandas as pd
    from sklearn import metrics

    n = len(X)
    seed_for_columns = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    copies = [X]
    for column in X.columns:
        rng = np.random.RandomState(seed_for_columns)
        values = X[column].to_numpy()
        shuffling_idx = np.arange(n)
        for _ in range(n_repeats):
            rng.shuffle(shuffling_idx)
            values = values[shuffling_idx]
            copies.append(X.assign(**{column: values}))
    stacked = pd.concat(copies, ignore_index=True)
    if task.classifies:
        out = np.asarray(pipeline.predict_proba(stacked))
        out = out[:, 1] if task is Task.CLASSIFICATION else out
    else:
        out = np.asarray(pipeline.predict(stacked), dtype="float64")
    blocks = out.reshape(len(copies), n, *out.shape[1:])
    labels = list(getattr(pipeline, "classes_", []))

    def score(s: np.ndarray) -> float:
        if task is Task.CLASSIFICATION:
            return float(metrics.roc_auc_score(y, s))
        if task is Task.MULTICLASS:  # multi-class: the log loss, smooth where accuracy is a step
            return -float(metrics.log_loss(y, np.clip(s, 1e-15, 1.0), labels=labels))
        return -float(metrics.root_mean_squared_error(y, s))

    baseline = score(blocks[0])
    permuted = np.array([score(b) for b in blocks[1:]]).reshape(len(X.columns), n_repeats)
    return np.asarray(baseline - permuted.mean(axis=1))
