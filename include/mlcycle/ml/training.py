"""Training: the spec's scikit-learn Pipeline, a reproducible split, and the fit."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlcycle.core.errors import SpecError
from mlcycle.core.spec import ModelSpec, Task, encode_target, estimator_class, estimator_problems

if TYPE_CHECKING:
    from collections.abc import Iterator

    import numpy as np
    import pandas as pd
    from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)

# Types skops may rebuild when a model is loaded, beyond its own safe defaults.
# Kept explicit: loading must never run arbitrary code from an artifact.
SKOPS_TRUSTED_TYPES = [
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "mlcycle.ml.text.TextColumn",  # text features' documents (this project's own, no code run)
]


def trusted_types_for(pipeline: Pipeline, spec: ModelSpec) -> list[str]:
    """The skops types this fitted pipeline needs, refused unless all are on the allow-list."""
    import skops.io as sio

    needed = sorted(sio.get_untrusted_types(data=sio.dumps(pipeline)))
    unknown = [t for t in needed if t not in SKOPS_TRUSTED_TYPES]
    if unknown:
        raise SpecError(
            f"model {spec.name}: {spec.estimator.class_} saves types {unknown} that skops does not trust; "
            "review them and add them to mlcycle.ml.training.SKOPS_TRUSTED_TYPES, or choose another estimator"
        )
    return needed


def build_pipeline(spec: ModelSpec, overrides: dict[str, Any] | None = None) -> Pipeline:
    """Preprocessing (impute + one-hot) and the spec's estimator, with optional param overrides."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    estimator_cls = estimator_class(spec)  # an unknown class keeps its own message
    params = {**spec.estimator.params, **(overrides or {})}
    # Checked here (names, with the closest valid one, and values), not left to fit(): a wrong
    # value would otherwise surface as a raw scikit-learn error that Airflow retries.
    checked = spec.model_copy(update={"estimator": spec.estimator.model_copy(update={"params": params})})
    if problems := estimator_problems(checked):
        where = "the run's estimator_params or " if overrides else ""
        raise SpecError(
            f"model {spec.name}: the estimator cannot be built: {'; '.join(problems)}. "
            f"Fix {where}estimator.params in include/models/{spec.name}.yaml"
        )
    estimator = estimator_cls(**params)
    transformers = []
    if spec.features.numeric:
        numeric: Any = SimpleImputer(strategy="median", add_indicator=True)
        if spec.features.numeric_scaling == "standard":
            from sklearn.preprocessing import StandardScaler

            numeric = Pipeline([("impute", numeric), ("scale", StandardScaler())])
        transformers.append(("num", numeric, spec.features.numeric))
    if spec.features.categorical:
        transformers.append(
            (
                "cat",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
                        (
                            "onehot",
                            OneHotEncoder(handle_unknown="ignore", min_frequency=0.005, sparse_output=False),
                        ),
                    ]
                ),
                spec.features.categorical,
            )
        )
    if spec.features.text:
        from mlcycle.ml.text import vectorizer

        # One branch per column (named text_<column>, which the evidence's top terms read).
        transformers += [
            (f"text_{c}", vectorizer(spec.features.text_vectorizer), [c]) for c in spec.features.text
        ]
    pre = ColumnTransformer(
        transformers,
        remainder="drop",
        # Text branches' term names stay prefixed, so two text columns' terms never collide.
        verbose_feature_names_out=bool(spec.features.text),
        # Sparse text stays sparse to the estimator when most of the matrix is zeros.
        sparse_threshold=0.3,
    )
    return Pipeline([("preprocess", pre), ("model", estimator)])


@contextlib.contextmanager
def refused_by_estimator(spec: ModelSpec) -> Iterator[None]:
    """A ``ValueError`` of scikit-learn's fit (e.g. MultinomialNB given the negative values of
    standardised columns) as a ``SpecError`` naming the model and what to change: no retry of
    the same data and spec can succeed."""
    try:
        yield
    except ValueError as exc:
        raise SpecError(
            f"model {spec.name}: {spec.estimator.class_} refused the training data: {exc}. Change the "
            f"estimator, its params or the features (e.g. numeric_scaling) in include/models/{spec.name}.yaml"
        ) from exc


def _hash_fraction(keys: pd.Series, seed: int) -> pd.Series:
    import pandas as pd

    def frac(value: object) -> float:
        digest = hashlib.blake2b(f"{seed}:{value}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    return pd.Series([frac(v) for v in keys], index=keys.index)


def _time_order(df: pd.DataFrame, time_column: str, key_column: str) -> np.ndarray:
    """Row positions sorted by time, then key, ties in file order: what a stable
    ``sort_values([time, key])`` gives, from ``np.lexsort`` (5-8x faster on a million string
    keys). Columns with nulls take pandas' path, which places them last."""
    import numpy as np

    time, key = df[time_column], df[key_column]
    if time.isna().any() or key.isna().any():
        ordered = df.sort_values([time_column, key_column], kind="stable")
        return np.asarray(df.index.get_indexer(ordered.index))
    return np.lexsort((key.to_numpy(), time.to_numpy()))


def split(df: pd.DataFrame, spec: ModelSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train/holdout split. ``time``: the latest rows are the holdout (out-of-time, like
    production); ``hash``: a stable hash of the key decides, so a row never changes side."""
    data = spec.data
    if len(df) < 20:
        raise SpecError(f"model {spec.name}: only {len(df)} rows; training needs at least 20")
    if data.split == "time":
        ordered = df.take(_time_order(df, data.time_column, data.key_column))
        cut = round(len(ordered) * (1 - data.holdout_fraction))
        train, holdout = ordered.iloc[:cut], ordered.iloc[cut:]
    else:
        in_holdout = _hash_fraction(df[data.key_column], data.split_seed) < data.holdout_fraction
        train, holdout = df[~in_holdout], df[in_holdout]
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def check_columns(df: pd.DataFrame, spec: ModelSpec) -> None:
    """Raise ``SpecError`` naming the spec's feature and target columns that ``df`` lacks."""
    needed = [*spec.features.all, spec.data.target]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise SpecError(
            f"model {spec.name}: the data lacks columns {missing} named in the spec; "
            f"it has {sorted(df.columns)}. Add them to the batches (and the contract), or remove "
            f"them from the spec's features in include/models/{spec.name}.yaml"
        )


def _labelled(df: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """``df`` with its target encoded (``encode_target``); ``SpecError`` on missing columns or a
    row without a label (every training row needs one)."""
    check_columns(df, spec)
    labels = encode_target(spec, df[spec.data.target])
    if unlabelled := int(labels.isna().sum()):
        raise SpecError(
            f"model {spec.name}: {unlabelled} of {len(df)} rows have no value in the target "
            f"{spec.data.target!r}; every training row needs one. Fix the data (or wait for its labels), or "
            f"require it in the contract (expect_column_values_to_not_be_null on {spec.data.target!r}) so such "
            "batches are quarantined"
        )
    return df.assign(**{spec.data.target: labels})


@dataclass
class TrainResult:
    """A fitted pipeline with the exact train/holdout frames, fit time (s) and ``model.*`` params."""

    pipeline: Pipeline
    train: pd.DataFrame
    holdout: pd.DataFrame
    seconds: float
    params: dict[str, Any]
    rows_learned: int | None = None  # when not len(train): a streamed window (``stream``)


def train(df: pd.DataFrame, spec: ModelSpec, overrides: dict[str, Any] | None = None) -> TrainResult:
    """Encode the target (``encode_target``), split ``df`` and fit the spec's pipeline; ``SpecError`` on
    missing columns, target values the spec does not map, rows without a label, < 20 rows or one class."""
    # The frames returned (and the holdout written from them) carry the target as class 0/1:
    # every later reader (evaluation, reference profile) scores them without the spec's labels.
    train_df, holdout = split(_labelled(df, spec), spec)
    target = train_df[spec.data.target]
    if spec.task is Task.CLASSIFICATION and target.nunique() < 2:
        raise SpecError(
            f"model {spec.name}: the training data has a single class {target.unique()!r}; need both"
        )
    if spec.task is Task.MULTICLASS:
        absent = [c for c in spec.data.classes or [] if c not in set(target.unique().tolist())]
        if absent:
            raise SpecError(
                f"model {spec.name}: classes {absent} of data.classes have no row in the training part "
                f"of the window ({len(train_df)} rows); every class needs examples. Widen "
                "data.training_window_days, or remove a class that no longer occurs from data.classes"
            )
    pipeline = build_pipeline(spec, overrides)
    log.info(
        "training %s on %d rows (%d holdout), %d features, estimator %s",
        spec.name,
        len(train_df),
        len(holdout),
        len(spec.features.all),
        spec.estimator.class_,
    )
    started = time.perf_counter()
    with refused_by_estimator(spec):
        pipeline.fit(train_df[spec.features.all], target)
    if spec.features.text:
        from mlcycle.ml.text import drop_stop_words

        drop_stop_words(pipeline)
    seconds = time.perf_counter() - started
    log.info("trained %s in %.2fs", spec.name, seconds)
    params = {f"model.{k}": v for k, v in pipeline.named_steps["model"].get_params().items()}
    return TrainResult(pipeline=pipeline, train=train_df, holdout=holdout, seconds=seconds, params=params)


def update(parent: Pipeline, df: pd.DataFrame, spec: ModelSpec) -> TrainResult:
    """An incremental candidate: a copy of the fitted ``parent`` whose preprocessing stays as it
    was (vocabulary, categories, medians: the columns the estimator knows do not move) and whose
    estimator learns the training part of ``df`` with ``partial_fit``, ``training.epochs``
    passes in a seeded order. ``df`` is only the rows the parent has not seen; it is split like a
    full training's window, so the candidate is judged on new rows it did not learn."""
    import copy

    import numpy as np

    train_df, holdout = split(_labelled(df, spec), spec)
    candidate = copy.deepcopy(parent)
    model = candidate.named_steps["model"]
    if not hasattr(model, "partial_fit"):
        raise SpecError(
            f"model {spec.name}: the champion's {type(model).__name__} has no partial_fit, so it cannot be "
            "updated; train it fully once with the incremental estimator (force=true)"
        )
    X = candidate[:-1].transform(train_df[spec.features.all])
    y = train_df[spec.data.target].to_numpy()
    classes = getattr(model, "classes_", None)
    unknown = sorted(set(np.unique(y).tolist()) - set(classes.tolist())) if classes is not None else []
    if unknown:
        raise SpecError(
            f"model {spec.name}: the new rows hold classes {unknown} the champion never learned; an "
            "incremental update cannot add a class. Retrain fully (force=true) with it in the spec"
        )
    rng = np.random.default_rng(0)
    log.info(
        "updating %s with %d new rows (%d holdout), %d epoch(s)",
        spec.name,
        len(train_df),
        len(holdout),
        spec.training.epochs,
    )
    started = time.perf_counter()
    for _ in range(spec.training.epochs):
        order = rng.permutation(len(y))
        with refused_by_estimator(spec):
            model.partial_fit(X[order], y[order], **({"classes": classes} if classes is not None else {}))
    seconds = time.perf_counter() - started
    params = {f"model.{k}": v for k, v in model.get_params().items()}
    return TrainResult(pipeline=candidate, train=train_df, holdout=holdout, seconds=seconds, params=params)


def streams(spec: ModelSpec) -> bool:
    """Whether a window above ``data.max_training_rows`` is streamed into the estimator
    (``stream``) instead of fitted on a sample: when the estimator learns in steps."""
    return spec.data.max_training_rows is not None and hasattr(estimator_class(spec), "partial_fit")


def stream(
    spec: ModelSpec, sample: pd.DataFrame, paths: list[Any], overrides: dict[str, Any] | None = None
) -> TrainResult:
    """A full training on a window larger than memory, for an estimator with ``partial_fit``:
    the preprocessing is fitted on the training part of ``sample`` (the bounded, stratified
    sample of the window, ``data.sample``), then the estimator learns every row of every batch of
    ``paths``, one batch in memory at a time, ``training.epochs`` passes. The holdout is the
    sample's: with ``split: time`` every streamed row before its first time (out-of-time, like
    a full training's), with ``split: hash`` every row whose key does not hash into it."""
    import numpy as np

    from mlcycle.data import lake as lk

    check_columns(sample, spec)
    encoded = sample.assign(**{spec.data.target: encode_target(spec, sample[spec.data.target])})
    train_s, holdout = split(encoded, spec)
    pipeline = build_pipeline(spec, overrides)
    with refused_by_estimator(spec):
        pipeline[:-1].fit(train_s[spec.features.all], train_s[spec.data.target])
    model = pipeline.named_steps["model"]
    classes: dict[str, Any] = {}
    if spec.task.classifies:
        classes["classes"] = np.asarray(
            sorted(spec.data.classes) if spec.data.classes else [0, 1],
            dtype=object if spec.data.classes else "int64",
        )
    cut = holdout[spec.data.time_column].min() if spec.data.split == "time" and len(holdout) else None
    learned = 0
    started = time.perf_counter()
    for epoch in range(spec.training.epochs):
        for path in paths:
            batch = lk.read_parquet(
                [path],
                columns=[spec.data.key_column, spec.data.time_column, spec.data.target, *spec.features.all],
            )
            if cut is not None:
                batch = batch[batch[spec.data.time_column] < cut]
            else:
                in_holdout = (
                    _hash_fraction(batch[spec.data.key_column], spec.data.split_seed)
                    < spec.data.holdout_fraction
                )
                batch = batch[~in_holdout]
            y = encode_target(spec, batch[spec.data.target])
            batch, y = batch[y.notna()], y[y.notna()]
            if not len(batch):
                continue
            with refused_by_estimator(spec):
                model.partial_fit(pipeline[:-1].transform(batch[spec.features.all]), y.to_numpy(), **classes)
            learned += len(batch) if epoch == 0 else 0
    seconds = time.perf_counter() - started
    log.info(
        "streamed %d rows of %d batch(es) into %s, %d epoch(s), in %.2fs",
        learned,
        len(paths),
        spec.name,
        spec.training.epochs,
        seconds,
    )
    params = {f"model.{k}": v for k, v in model.get_params().items()}
    return TrainResult(pipeline, train_s, holdout, seconds, params, rows_learned=learned)
