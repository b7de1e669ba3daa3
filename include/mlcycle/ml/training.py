"""Training: the spec's scikit-learn Pipeline, a reproducible split, and the fit."""

from __future__ import annotations

import hashlib
import importlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlcycle.core.errors import SpecError
from mlcycle.core.spec import ModelSpec, Task

if TYPE_CHECKING:
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


def estimator_class(spec: ModelSpec) -> type:
    """The class named by ``estimator.class``, imported; ``SpecError`` if it cannot be."""
    module_name, _, cls_name = spec.estimator.class_.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError):
        raise SpecError(
            f"model {spec.name}: estimator.class {spec.estimator.class_!r} cannot be imported; "
            "check the module and class name against scikit-learn's API"
        ) from None


def build_pipeline(spec: ModelSpec, overrides: dict[str, Any] | None = None) -> Pipeline:
    """Preprocessing (impute + one-hot) and the spec's estimator, with optional param overrides."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    params = {**spec.estimator.params, **(overrides or {})}
    try:
        estimator = estimator_class(spec)(**params)
    except TypeError as exc:
        raise SpecError(
            f"model {spec.name}: estimator.params are not accepted by {spec.estimator.class_}: {exc}"
        ) from None
    transformers = []
    if spec.features.numeric:
        transformers.append(
            ("num", SimpleImputer(strategy="median", add_indicator=True), spec.features.numeric)
        )
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
    pre = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("preprocess", pre), ("model", estimator)])


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
            f"it has {sorted(df.columns)}"
        )


@dataclass
class TrainResult:
    """A fitted pipeline with the exact train/holdout frames, fit time (s) and ``model.*`` params."""

    pipeline: Pipeline
    train: pd.DataFrame
    holdout: pd.DataFrame
    seconds: float
    params: dict[str, Any]


def train(df: pd.DataFrame, spec: ModelSpec, overrides: dict[str, Any] | None = None) -> TrainResult:
    """Split ``df`` and fit the spec's pipeline; ``SpecError`` on missing columns, < 20 rows or one class."""
    check_columns(df, spec)
    train_df, holdout = split(df, spec)
    target = train_df[spec.data.target]
    if spec.task is Task.CLASSIFICATION and target.nunique() < 2:
        raise SpecError(
            f"model {spec.name}: the training data has a single class {target.unique()!r}; need both"
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
    pipeline.fit(train_df[spec.features.all], target)
    seconds = time.perf_counter() - started
    log.info("trained %s in %.2fs", spec.name, seconds)
    params = {f"model.{k}": v for k, v in pipeline.named_steps["model"].get_params().items()}
    return TrainResult(pipeline=pipeline, train=train_df, holdout=holdout, seconds=seconds, params=params)
