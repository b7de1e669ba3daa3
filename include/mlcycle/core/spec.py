"""Model specs: one YAML file per model, validated by a typed schema.

Adding a model is adding ``include/models/<name>.yaml`` and its contract. This module
is imported at DAG parse time, so it imports only pydantic and yaml (both already
loaded by Airflow).
"""

from __future__ import annotations

import difflib
import functools
import importlib
import re
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlcycle.core.errors import SpecError

if TYPE_CHECKING:
    import pandas as pd

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
OPTION_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# Presets a cron timetable understands (``@once``/``@continuous`` are not schedules a nightly
# retraining or an hourly check can run on).
CRON_PRESETS = {"@hourly", "@daily", "@weekly", "@monthly", "@yearly"}


class Task(StrEnum):
    """The spec's ``task``: which metrics apply, and whether the estimator must classify or regress."""

    CLASSIFICATION = "classification"  # binary: class 1 is the positive class
    MULTICLASS = "multiclass"  # one of data.classes per row
    REGRESSION = "regression"

    @property
    def classifies(self) -> bool:
        """Binary or multi-class: the model has ``predict_proba`` and ``classes_``."""
        return self is not Task.REGRESSION


class Direction(StrEnum):
    """Which way a metric improves; the gate uses it to give gains and regressions their sign."""

    HIGHER = "higher"
    LOWER = "lower"


_BINARY, _MULTI, _REG = (
    frozenset({Task.CLASSIFICATION}),
    frozenset({Task.MULTICLASS}),
    frozenset({Task.REGRESSION}),
)

# Every metric the gate can use, the tasks it applies to and which way is better. A multi-class
# model also has one ``recall.<class>`` and ``precision.<class>`` per class (``metric_info``).
METRICS: dict[str, tuple[frozenset[Task], Direction]] = {
    "roc_auc": (_BINARY, Direction.HIGHER),
    "average_precision": (_BINARY, Direction.HIGHER),
    "accuracy": (_BINARY | _MULTI, Direction.HIGHER),
    "f1": (_BINARY, Direction.HIGHER),
    "log_loss": (_BINARY | _MULTI, Direction.LOWER),
    "brier": (_BINARY, Direction.LOWER),
    "balanced_accuracy": (_MULTI, Direction.HIGHER),
    "macro_f1": (_MULTI, Direction.HIGHER),
    "weighted_f1": (_MULTI, Direction.HIGHER),
    "roc_auc_ovr": (_MULTI, Direction.HIGHER),  # one-vs-rest, macro average over the classes
    "rmse": (_REG, Direction.LOWER),
    "mae": (_REG, Direction.LOWER),
    "r2": (_REG, Direction.HIGHER),
}
PER_CLASS_METRICS = ("recall", "precision")
CLASS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")  # a class becomes metric and column names


def metric_info(name: str) -> tuple[frozenset[Task], Direction] | None:
    """The tasks ``name`` applies to and its direction, for ``METRICS`` and the per-class
    ``recall.<class>`` / ``precision.<class>``; None for an unknown name."""
    if name in METRICS:
        return METRICS[name]
    kind, _, cls = name.partition(".")
    if kind in PER_CLASS_METRICS and CLASS_RE.match(cls):
        return _MULTI, Direction.HIGHER
    return None


def higher_is_better(name: str) -> bool:
    """Whether ``name`` (a ``metric_info`` name) improves upwards."""
    info = metric_info(name)
    return info is None or info[1] is Direction.HIGHER


def task_metrics(task: Task) -> list[str]:
    """The names of ``METRICS`` that apply to ``task``, sorted."""
    return sorted(m for m, (tasks, _) in METRICS.items() if task in tasks)


# Estimators a spec may name. A dotted path from YAML is imported and instantiated,
# so it is restricted to scikit-learn's own namespace.
ALLOWED_ESTIMATOR_PREFIX = "sklearn."


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Strict):
    """Validates the ``data`` section: key/time/target columns, training window, holdout split, batch size."""

    generator: str | None = Field(None, description="sample-data generator for demos and tests")
    key_column: str
    time_column: str
    target: str
    training_window_days: int = Field(30, ge=1, le=3650)
    holdout_fraction: float = Field(0.2, gt=0.0, lt=0.9)
    split: Literal["time", "hash"] = "time"
    split_seed: int = 0
    rows_per_batch: int = Field(2000, ge=10)
    # A bound on the rows a training holds (about 1 GB per million): above it, a stratified,
    # seeded sample of the window is read batch by batch (mlcycle.data.sample). None: all rows.
    max_training_rows: int | None = Field(None, ge=100)
    # Classifiers: the target's values as they appear in the data, each mapped to class 0 or 1
    # (1 is the positive class, the one roc_auc and f1 score). Without it the target must
    # already hold 0/1 (or true/false).
    labels: dict[str | int, int] | None = None
    # Multi-class: every value the target may hold, as it appears in the data. The model's
    # probability columns and the scoring output follow this list sorted (scikit-learn's order).
    classes: list[str] | None = None

    @field_validator("classes", mode="before")
    @classmethod
    def _classes_as_text(cls, value: Any) -> Any:
        # Integer classes (ratings 1-5) are read as the text the target's values become.
        if isinstance(value, list):
            if any(isinstance(v, bool) for v in value):
                raise ValueError(
                    "YAML read some classes as booleans (yes/no/on/off/true/false); quote every class "
                    "as it appears in the data, e.g. classes: ['yes', 'no', 'maybe']"
                )
            return [str(v) if isinstance(v, int) else v for v in value]
        return value

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if len(value) < 3:
            raise ValueError(
                f"{value} are {len(value)} classes; a multi-class target needs at least 3 (for two, "
                "use task: classification with data.labels)"
            )
        bad = [c for c in value if not CLASS_RE.match(c)]
        if bad:
            raise ValueError(
                f"{bad} cannot name metrics and columns; use letters, digits, _ and - (e.g. 'billing')"
            )
        if len(set(value)) != len(value):
            raise ValueError(f"{sorted(c for c in set(value) if value.count(c) > 1)} are listed twice")
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        if value is None:
            return value
        if not isinstance(value, dict):
            raise ValueError("give a mapping from each target value to 0 or 1, e.g. {'No': 0, 'Yes': 1}")
        if any(isinstance(k, bool) for k in value):
            # PyYAML reads unquoted yes/no/on/off/true/false as booleans, so `{No: 0, Yes: 1}`
            # would silently become {False: 0, True: 1} and match no value of a Yes/No column.
            raise ValueError(
                f"YAML read {sorted(str(k) for k in value if isinstance(k, bool))} as booleans; "
                "quote every label as it appears in the data, e.g. labels: {'No': 0, 'Yes': 1}"
            )
        bad = {k: v for k, v in value.items() if isinstance(v, bool) or v not in (0, 1)}
        if bad:
            raise ValueError(f"{bad} map to something else than 0 or 1; map each label to 0 or 1")
        missing = sorted({0, 1} - set(value.values()))
        if missing:
            raise ValueError(
                f"no label maps to class {missing}; a binary classifier needs labels for class 0 "
                "and class 1, e.g. {'No': 0, 'Yes': 1}"
            )
        return value


class TextVectorSpec(_Strict):
    """Validates ``features.text_vectorizer``: how each text column becomes numbers. ``tfidf``:
    TF-IDF of word n-grams beside TF-IDF of character n-grams (within word boundaries, which
    absorb typos and new inflections), fitted on the training rows. ``hashing``: the same two
    views hashed into a fixed number of columns, stateless, so an incremental model can go on
    learning from new batches without refitting a vocabulary (and not convertible to ONNX)."""

    kind: Literal["tfidf", "hashing"] = "tfidf"
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] | None = (3, 5)  # None: words only
    max_features: int = Field(20_000, ge=100, le=2**22)  # per view (tfidf: the most frequent terms)
    min_df: int = Field(2, ge=1)  # tfidf: terms in fewer training rows are dropped
    sublinear_tf: bool = True
    lowercase: bool = True

    @field_validator("word_ngrams", "char_ngrams")
    @classmethod
    def _ngrams(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 1 <= value[0] <= value[1] <= 8:
            raise ValueError(
                f"{list(value)} is not an n-gram range; give [low, high] with 1 <= low <= high <= 8"
            )
        return value


class FeaturesSpec(_Strict):
    """Validates the ``features`` section: numeric, categorical and text columns, at least one,
    each in one list."""

    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    text: list[str] = Field(default_factory=list)  # free text, vectorised by text_vectorizer
    text_vectorizer: TextVectorSpec = Field(default_factory=TextVectorSpec)
    # Numeric columns after imputation: as they are (trees), or standardised (linear models and
    # SGD, whose fit depends on the columns' scales).
    numeric_scaling: Literal["none", "standard"] = "none"

    @model_validator(mode="after")
    def _not_empty_no_overlap(self) -> FeaturesSpec:
        if not self.all:
            raise ValueError("list at least one feature under numeric, categorical or text")
        both = sorted(c for c in set(self.all) if self.all.count(c) > 1)
        if both:
            raise ValueError(
                f"{both} are listed more than once (numeric, categorical, text); keep each in one list"
            )
        return self

    @property
    def all(self) -> list[str]:
        return [*self.numeric, *self.categorical, *self.text]

    @property
    def tabular(self) -> list[str]:
        """The numeric and categorical columns: what per-feature drift statistics read."""
        return [*self.numeric, *self.categorical]


class EstimatorSpec(_Strict):
    """Validates the ``estimator`` section: a ``sklearn.`` class path (key ``class``) and its ``params``."""

    class_: str = Field(alias="class")
    params: dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("class_")
    @classmethod
    def _sklearn_only(cls, value: str) -> str:
        if not value.startswith(ALLOWED_ESTIMATOR_PREFIX) or value.count(".") < 2:
            raise ValueError(
                f"{value!r} is not a scikit-learn estimator path; use e.g. "
                "'sklearn.ensemble.HistGradientBoostingClassifier'"
            )
        return value


class TrainingSpec(_Strict):
    """Validates the ``training`` section: how a candidate is made. ``full``: fitted from scratch
    on the whole window. ``incremental``: the champion's pipeline, preprocessing frozen, goes on
    learning (``partial_fit``) from only the batches that arrived since its data, then faces the
    same gate against that champion, its parent; every ``full_retrain_every`` updates, or when
    the last full training is ``full_retrain_after_days`` old, a full retrain resets the chain."""

    mode: Literal["full", "incremental"] = "full"
    full_retrain_every: int = Field(10, ge=1)  # incremental updates in a row, then a full retrain
    full_retrain_after_days: float = Field(7.0, gt=0)
    epochs: int = Field(1, ge=1, le=100)  # passes of partial_fit over the new rows


class Bound(_Strict):
    """Validates one entry of ``gate.thresholds``: ``min``, ``max`` or both, ``min`` not above ``max``."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class BudgetSpec(_Strict):
    """Validates ``gate.budgets``: ceilings on scoring latency (ms per 1,000 rows) and model size (MB)."""

    latency_ms_per_1k_rows: float | None = Field(None, gt=0)
    model_size_mb: float | None = Field(None, gt=0)
    # With a champion, latency is judged as candidate / champion, both timed interleaved in one
    # process (best of several runs), so machine load cancels out; the absolute ceiling above
    # then applies only to the first version. None: the absolute ceiling always applies.
    max_latency_ratio: float | None = Field(1.5, gt=0)


class ShadowSpec(_Strict):
    """Requirements on the candidate vs the champion scored on the newest production batch."""

    min_agreement: float | None = Field(None, ge=0.0, le=1.0)  # share of rows with the same class
    max_mean_abs_diff: float | None = Field(None, gt=0.0)  # mean |score difference|

    @property
    def required(self) -> bool:
        return self.min_agreement is not None or self.max_mean_abs_diff is not None


class SliceSpec(_Strict):
    """Validates ``gate.slices``: per-slice non-regression on the primary metric. For each value of
    each named categorical feature with at least ``min_rows`` holdout rows, the candidate may not
    be worse than the champion by more than ``tolerance`` (smaller slices are listed, not judged)."""

    columns: list[str] = Field(default_factory=list)
    min_rows: int = Field(200, ge=10)
    tolerance: float = Field(0.05, ge=0.0)


class TrustedSpec(_Strict):
    """Validates ``gate.trusted``: the trusted evaluation set (validated holdout rows of earlier
    champions) on which the candidate may not regress against the champion."""

    max_rows: int = Field(20_000, ge=100)  # the newest rows are kept
    max_rows_per_version: int = Field(5_000, ge=10)  # so one champion cannot crowd out the rest
    # Fewer usable rows (after leaving out rows the candidate trained on): the rule is skipped.
    min_rows: int = Field(200, ge=1)
    # Allowed worsening of the primary metric on the trusted set. None: twice the primary
    # metric's max_regression (0 without one). Looser than on the holdout on purpose: the
    # trusted rows are older, a candidate fitted to newer data may rightly do a little worse on
    # them, and the rule is there to catch gross damage the candidate's own holdout hides (a
    # model trained on permuted columns lost 0.06 roc_auc / 9 rmse there, clean retrains
    # moved by under 0.01 / 0.2).
    tolerance: float | None = Field(None, ge=0.0)

    @model_validator(mode="after")
    def _cap_within_total(self) -> TrustedSpec:
        if self.max_rows_per_version > self.max_rows:
            raise ValueError(
                f"@max_rows_per_version: {self.max_rows_per_version} is above max_rows {self.max_rows}"
            )
        return self


class DataShiftSpec(_Strict):
    """Validates ``gate.data_shift``: how far training data may depart from the champion's
    reference profile before a run is refused (``accept_data_shift`` overrides, with a reason)."""

    max_null_rate_increase: float = Field(0.10, gt=0.0, le=1.0)  # absolute, per feature
    # Relationships (association of each pair of columns, the target included) are compared
    # only with at least this many rows, and only for pairs associated at least
    # min_reference_association in the reference; a pair breaches below min_association_ratio
    # times its reference association.
    min_rows: int = Field(1000, ge=50)
    min_reference_association: float = Field(0.2, gt=0.0, le=1.0)
    min_association_ratio: float = Field(0.5, gt=0.0, lt=1.0)
    # A feature whose association with the target reaches this, where the reference's did not,
    # is refused as a likely leak of the label (a column filled from the outcome).
    max_target_association: float = Field(0.9, gt=0.0, le=1.0)
    # Marginal shift (PSI) is reported; it refuses only when set: a shift in the world is what
    # drift-triggered retraining is for.
    max_psi: float | None = Field(None, gt=0.0)


class ApprovalSpec(_Strict):
    """Validates ``gate.approval``: whether a person must approve a candidate that passed the
    gate before it is promoted (Airflow's human-in-the-loop approval, in the UI's Required
    Actions), who may, and how long the run waits. No answer in time is a rejection."""

    required: bool = False
    timeout_hours: float = Field(24.0, gt=0.0, le=24.0 * 14)
    # Airflow user ids allowed to answer (the simple auth manager's id is the username; FAB's is
    # the numeric user id). Empty: anyone allowed to act on the DAG's task instances.
    approvers: list[str] = Field(default_factory=list)


class GateSpec(_Strict):
    """Validates the ``gate`` section: metric rules (absolute, vs champion, confidence), budgets, shadow."""

    primary_metric: str
    thresholds: dict[str, Bound] = Field(default_factory=dict)
    max_regression: dict[str, float] = Field(default_factory=dict)
    min_improvement: dict[str, float] = Field(default_factory=dict)
    # Share of paired-bootstrap resamples of the holdout in which the candidate's
    # primary metric is at least the champion's (ignored when there is no champion).
    min_confidence: float | None = Field(None, ge=0.0, le=1.0)
    bootstrap_resamples: int = Field(200, ge=20, le=10000)
    budgets: BudgetSpec = Field(default_factory=BudgetSpec)
    shadow: ShadowSpec = Field(default_factory=ShadowSpec)
    trusted: TrustedSpec = Field(default_factory=TrustedSpec)
    slices: SliceSpec = Field(default_factory=SliceSpec)
    data_shift: DataShiftSpec = Field(default_factory=DataShiftSpec)
    approval: ApprovalSpec = Field(default_factory=ApprovalSpec)
    # @champion moved outside the pipeline (MLflow UI, a client), found at the start of every
    # scoring and monitoring run: always recorded in the ledger as "external"; "revert" also
    # moves it back to the last version the pipeline put there.
    external_moves: Literal["alert", "revert"] = "alert"
    # Multi-class: no class's recall on the holdout may fall below the champion's by more than
    # this (one rule per class). None: not judged per class.
    max_class_recall_drop: float | None = Field(None, ge=0.0, le=1.0)
    # A class with fewer holdout rows is listed, not judged: one row moves its recall by 1/rows.
    class_min_rows: int = Field(50, ge=1)

    @property
    def trusted_tolerance(self) -> float:
        """The allowed regression of the primary metric on the trusted set (see ``TrustedSpec``)."""
        if self.trusted.tolerance is not None:
            return self.trusted.tolerance
        return 2 * self.max_regression.get(self.primary_metric, 0.0)

    @model_validator(mode="after")
    def _known_metrics(self) -> GateSpec:
        known = f"use one of {sorted(METRICS)} (multi-class also recall.<class>, precision.<class>)"
        for section in ("thresholds", "max_regression", "min_improvement"):
            for metric in getattr(self, section):
                if metric_info(metric) is None:
                    raise ValueError(f"@{section}.{metric}: unknown metric; {known}")
        for section in ("max_regression", "min_improvement"):
            for metric, value in getattr(self, section).items():
                if value < 0:
                    raise ValueError(
                        f"@{section}.{metric}: is {value}; give a non-negative amount "
                        "(the direction comes from the metric)"
                    )
        if metric_info(self.primary_metric) is None:
            raise ValueError(f"@primary_metric: {self.primary_metric!r} is unknown; {known}")
        return self


def check_schedule(value: str) -> str:
    """``value`` if it is a ``CRON_PRESETS`` entry or a five-field cron expression, else ``ValueError``."""
    if value in CRON_PRESETS:
        return value
    from croniter import croniter  # already loaded by Airflow's timetables

    if len(value.split()) == 5 and croniter.is_valid(value):
        return value
    raise ValueError(f"{value!r} is not a cron expression; use five fields like '0 2 * * *' or @daily")


class FeatureDriftOverride(_Strict):
    """Validates a ``monitor.overrides`` entry: the statistic that alone decides a feature, and its bound."""

    statistic: Literal["psi", "ks", "js", "wasserstein", "chi2"]
    threshold: float = Field(gt=0)


PERIOD_RE = re.compile(r"^[1-9][0-9]*(min|h|D|W)$")  # monitor.chunk_period: 30min, 6h, 1D, 1W


class MonitorSpec(_Strict):
    """Drift monitoring and the guardrails in front of a drift-triggered retrain."""

    schedule: str = "@hourly"
    window_days: int = Field(1, ge=1, le=365)  # recent batches compared with the reference
    min_rows: int = Field(100, ge=1)  # fewer non-null rows: a statistic is not computed
    drift_share_threshold: float = Field(0.3, gt=0.0, le=1.0)  # importance-weighted share of drifted features
    overrides: dict[str, FeatureDriftOverride] = Field(default_factory=dict)
    # Performance (monitor.performance): estimated without labels, measured where labels exist,
    # per chunk of the window and over all of it, each against its band from the reference:
    # mean ± band_k · std of the metric over holdout chunks of chunk_rows rows.
    chunk_rows: int = Field(5000, ge=100)
    # Chunks by time instead ("30min", "6h", "1D", "1W" of the time column); None: by rows.
    chunk_period: str | None = None
    band_k: float = Field(3.0, gt=0.0, le=10.0)
    # An absolute limit besides the bands: the primary metric (measured, or estimated) this much
    # worse than on the holdout, and by more than its sampling error, alerts too. None: bands only.
    max_performance_drop: float | None = Field(0.05, gt=0.0)
    # Guardrails: all must pass before a retrain is requested.
    cooldown_hours: float = Field(12.0, ge=0.0)
    min_new_rows: int = Field(1000, ge=0)
    max_retrains_per_week: int = Field(3, ge=0)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        return check_schedule(value)

    @field_validator("chunk_period")
    @classmethod
    def _period(cls, value: str | None) -> str | None:
        if value is not None and not PERIOD_RE.match(value):
            raise ValueError(
                f"{value!r} is not a period; use a count and a unit of min, h, D or W, e.g. '6h' or '1D'"
            )
        return value


BEAM_RUNNERS = (
    "DirectRunner",
    "DataflowRunner",
    "FlinkRunner",
    "SparkRunner",
    "PortableRunner",
    "PrismRunner",
)
# Pipeline options the scoring job sets itself (from the job and the keys above): not in ``options``.
BEAM_RESERVED_OPTIONS = frozenset({"runner", "direct_num_workers", "direct_running_mode", "job"})


class BeamSpec(_Strict):
    """Validates ``scoring.beam``: the Apache Beam runner of ``engine: beam`` and its options.

    ``options`` are extra pipeline options (``--key=value``), e.g. a cluster runner's project,
    region or master; an Airflow connection named by ``connection_id`` may hold more in its
    extra JSON (including ``runner``), which override these at run time."""

    runner: str = "DirectRunner"
    direct_num_workers: int = Field(2, ge=1, le=64)  # DirectRunner only
    direct_running_mode: Literal["multi_processing", "multi_threading", "in_memory"] = "multi_processing"
    options: dict[str, str | int | float | bool | list[str]] = Field(default_factory=dict)
    connection_id: str | None = Field(None, min_length=1)

    @field_validator("runner")
    @classmethod
    def _known_runner(cls, value: str) -> str:
        if value not in BEAM_RUNNERS:
            close = difflib.get_close_matches(value, BEAM_RUNNERS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"unknown Beam runner {value!r}{hint}; use one of {list(BEAM_RUNNERS)}")
        return value

    @field_validator("options")
    @classmethod
    def _own_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        reserved = sorted(k for k in value if k.lstrip("-") in BEAM_RESERVED_OPTIONS)
        if reserved:
            raise ValueError(
                f"{reserved} are set by their own keys (scoring.beam.runner, direct_num_workers, "
                "direct_running_mode) or by the job; remove them from options"
            )
        bad = sorted(k for k in value if not OPTION_RE.match(k))
        if bad:
            raise ValueError(
                f"{bad} are not pipeline option names; give them without dashes, e.g. "
                "{temp_location: gs://bucket/tmp, region: europe-west1}"
            )
        return value


class ScoringSpec(_Strict):
    """How batches are scored. ``auto``: with onnxruntime when the version's ONNX twin passed
    its parity check at training, else scikit-learn; ``sklearn``: never convert; ``beam``: an
    Apache Beam pipeline (``beam``) scores the batch, with the model ``auto`` would choose."""

    engine: Literal["auto", "sklearn", "beam"] = "auto"
    beam: BeamSpec = Field(default_factory=BeamSpec)
    # Classifiers: the probability at or above which a row is acted on as positive. Monitoring
    # measures and estimates accuracy, precision, recall and F1 at it.
    decision_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    # Largest difference allowed between the engines on the holdout: absolute for scores
    # within [-1, 1] (probabilities), relative beyond.
    onnx_tolerance: float = Field(1e-4, gt=0.0, le=0.1)


GATE_OVERRIDE_KEYS = ("thresholds", "max_regression", "min_improvement", "min_confidence", "approval")


def _gate_metric_keys(gate: GateSpec) -> list[tuple[str, str]]:
    """(key, metric) of every metric a gate names: the primary one and each rule's."""
    return [("primary_metric", gate.primary_metric)] + [
        (f"{section}.{m}", m)
        for section in ("thresholds", "max_regression", "min_improvement")
        for m in getattr(gate, section)
    ]


def metric_problem(metric: str, task: Task, classes: list[str] | None) -> str | None:
    """Why ``metric`` cannot judge a ``task`` model (whose classes are ``classes``), or None."""
    info = metric_info(metric)
    if info is not None and task not in info[0]:
        more = " or recall.<class>, precision.<class>" if task is Task.MULTICLASS else ""
        return f"{metric} does not apply to {task}; use one of {task_metrics(task)}{more}"
    cls = metric.partition(".")[2]
    if info is not None and cls and classes and cls not in classes:
        return f"{cls!r} is not one of data.classes {classes}"
    return None


def gate_with_overrides(
    gate: GateSpec,
    overrides: dict[str, Any] | None,
    *,
    task: Task | None = None,
    classes: list[str] | None = None,
) -> GateSpec:
    """``gate`` with a run's one-off ``overrides`` (``thresholds``, ``max_regression`` and
    ``min_improvement`` merged per metric, ``approval`` per field, ``min_confidence`` replaced),
    checked like the spec (with ``task``, also that every metric applies to it and its ``classes``);
    a ``SpecError`` names what is wrong and what is allowed."""
    if not overrides:
        return gate
    unknown = sorted(set(overrides) - set(GATE_OVERRIDE_KEYS))
    if unknown:
        raise SpecError(
            f"gate_overrides: {unknown} cannot be overridden per run; use {list(GATE_OVERRIDE_KEYS)}"
        )
    raw = gate.model_dump()
    for key, value in overrides.items():
        if isinstance(raw.get(key), dict) and isinstance(value, dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    try:
        merged = GateSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SpecError(f"gate_overrides {overrides}: {problems}") from None
    if task is not None:
        wrong = [
            f"{key}: {p}" for key, m in _gate_metric_keys(merged) if (p := metric_problem(m, task, classes))
        ]
        if wrong:
            raise SpecError(f"gate_overrides {overrides}: {'; '.join(wrong)}")
    return merged


class ModelSpec(_Strict):
    """Validates a whole spec file (top level) and that its sections agree with ``task`` and each other."""

    name: str
    description: str
    owner: str = "ml-platform"
    task: Task
    schedule: str = "0 2 * * *"
    tags: list[str] = Field(default_factory=list)
    contract: str
    data: DataSpec
    features: FeaturesSpec
    estimator: EstimatorSpec
    gate: GateSpec
    monitor: MonitorSpec = Field(default_factory=MonitorSpec)
    scoring: ScoringSpec = Field(default_factory=ScoringSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(
                f"{value!r} is not a valid model name; use lower case letters, digits and _ "
                "(it becomes DAG ids and the registered model name)"
            )
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        return check_schedule(value)

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.task is Task.REGRESSION and self.gate.shadow.min_agreement is not None:
            raise ValueError(
                "@gate.shadow.min_agreement: agreement of classes needs a classifier; use max_mean_abs_diff"
            )
        for key, metric in _gate_metric_keys(self.gate):
            if problem := metric_problem(metric, self.task, self.data.classes):
                raise ValueError(f"@gate.{key}: {problem}")
        if self.gate.max_class_recall_drop is not None and self.task is not Task.MULTICLASS:
            raise ValueError(
                "@gate.max_class_recall_drop: per-class recall needs task: multiclass; remove it"
            )
        if self.task is Task.MULTICLASS and self.data.classes is None:
            raise ValueError(
                "@data.classes: a multi-class target needs its classes listed as they appear in the "
                "data, e.g. classes: [billing, technical, delivery]"
            )
        if self.task is not Task.MULTICLASS and self.data.classes is not None:
            raise ValueError(f"@data.classes: only a multi-class target lists classes (task is {self.task})")
        reserved = {self.data.key_column, self.data.time_column, self.data.target}
        clash = sorted(reserved & set(self.features.all))
        if clash:
            raise ValueError(f"@features: {clash} are also the key, time or target column; remove them")
        not_categorical = [c for c in self.gate.slices.columns if c not in self.features.categorical]
        if not_categorical:
            raise ValueError(
                f"@gate.slices.columns: {not_categorical} are not categorical features; slice on one of "
                f"{self.features.categorical}"
            )
        if self.task is not Task.CLASSIFICATION and self.data.labels is not None:
            raise ValueError(
                f"@data.labels: labels map a binary target to 0/1; a {self.task} target "
                + ("lists data.classes instead" if self.task is Task.MULTICLASS else "is a number")
                + "; remove labels"
            )
        expected = f"{self.estimator.class_.rsplit('.', 1)[1]}"
        if self.task.classifies and "Regressor" in expected:
            raise ValueError(f"@estimator.class: {expected} is a regressor but task is {self.task}")
        if self.task is Task.REGRESSION and "Classifier" in expected:
            raise ValueError(f"@estimator.class: {expected} is a classifier but task is regression")
        return self

    @property
    def train_dag_id(self) -> str:
        return f"train_{self.name}"


def _keys_at(loc: list[str]) -> list[str]:
    """The keys the spec schema allows in the mapping that holds ``loc[-1]`` (empty if unknown)."""
    import types
    import typing

    node: Any = ModelSpec
    for part in [*loc[:-1], None]:
        if typing.get_origin(node) in (typing.Union, types.UnionType):
            node = next((a for a in typing.get_args(node) if a is not type(None)), node)
        if typing.get_origin(node) is dict:
            node = typing.get_args(node)[1]  # ``part`` is a key of the mapping, e.g. a metric name
            continue
        if not (isinstance(node, type) and issubclass(node, BaseModel)):
            return []
        fields = {f.alias or name: f for name, f in node.model_fields.items()}
        if part is None:
            return sorted(fields)
        if part not in fields:
            return []
        node = fields[part].annotation
    return []


def _unknown_key(loc: list[str]) -> str:
    """ "unknown key" with the closest valid key (a misspelling is the usual cause) and the valid ones."""
    import difflib

    valid = _keys_at(loc)
    close = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.6) if loc else []
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    if valid:
        return f"unknown key; remove it or use one of {valid}"
    return "unknown key; remove it or check its spelling"


def _format_error(path: Path, exc: ValidationError) -> str:
    lines = [f"invalid model spec {path}:"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        msg = err["msg"].removeprefix("Value error, ")
        if msg.startswith("@"):
            # A whole-section validator names the exact key below its section: "@sub.key: why".
            sub, _, msg = msg[1:].partition(": ")
            loc.append(sub)
        key = ".".join(loc) or "<top level>"
        if err["type"] == "missing":
            msg = "required key is missing; add it"
        elif err["type"] == "extra_forbidden":
            msg = _unknown_key(loc)
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def parse_spec(raw: Any, path: Path) -> ModelSpec:
    """Validate a YAML document loaded from ``path``; ``SpecError`` names every bad key (and a wrong name)."""
    if not isinstance(raw, dict):
        raise SpecError(
            f"invalid model spec {path}: the file must hold a YAML mapping, got {type(raw).__name__}"
        )
    try:
        spec = ModelSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(_format_error(path, exc)) from None
    if spec.name != path.stem:
        raise SpecError(
            f"invalid model spec {path}:\n  name: is {spec.name!r} but the file is {path.name}; "
            f"rename the file to {spec.name}.yaml or fix the name"
        )
    return spec


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate one spec file, uncached; ``SpecError`` when it is missing, not YAML or invalid."""
    path = Path(path)
    try:
        # The C loader when PyYAML has it: 8x faster, and this runs at every DAG parse.
        raw = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except FileNotFoundError:
        raise SpecError(f"model spec {path} does not exist; add it or fix MLCYCLE_SPECS_DIR") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid model spec {path}: not valid YAML ({exc})") from None
    return parse_spec(raw, path)


def load_specs(directory: str | Path) -> list[ModelSpec]:
    """Every ``*.yaml`` spec in ``directory``, sorted by name. All errors are reported together.

    Parsed once per process while the files are unchanged (by name, size and mtime): each DAG
    file of a folder asks for them, and specs are immutable."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SpecError(f"model spec folder {directory} does not exist; set MLCYCLE_SPECS_DIR")
    paths = sorted(directory.glob("*.yaml"))
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    return list(_load_specs(directory.resolve(), stamp))


@functools.lru_cache(maxsize=8)
def _load_specs(directory: Path, stamp: tuple[tuple[str, int, int], ...]) -> tuple[ModelSpec, ...]:
    specs, errors = [], []
    for path in (directory / name for name, _, _ in stamp):
        try:
            specs.append(load_spec(path))
        except SpecError as exc:
            errors.append(str(exc))
    if errors:
        raise SpecError("\n".join(errors))
    return tuple(specs)


def get_spec(name: str, directory: str | Path | None = None) -> ModelSpec:
    """The spec named ``name`` from ``directory`` (default ``MLCYCLE_SPECS_DIR``), read from disk on every
    call; ``SpecError`` listing the known models when there is no such file."""
    if directory is None:
        from mlcycle.core.settings import specs_dir

        directory = specs_dir()
    path = Path(directory) / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in Path(directory).glob("*.yaml"))
        raise SpecError(f"no model spec {path}; known models: {known}")
    return load_spec(path)


def spec_digest(spec: ModelSpec) -> str:
    """What of the spec changes a model trained on given data: features, estimator, the key, time
    and target columns, the label mapping and the split. Not the window (the data digest covers
    what it selects) nor the demo generator's settings: changing those retrains nothing."""
    import hashlib
    import json

    data = {"key_column", "time_column", "target", "holdout_fraction", "split", "split_seed"}
    data |= {k for k in ("labels", "classes") if getattr(spec.data, k) is not None}
    relevant = spec.model_dump(
        mode="json", include={"features": True, "estimator": True, "data": data}, by_alias=True
    )
    # Options at their defaults leave out: the digest of a model that does not use them stays.
    features = relevant["features"]
    if not spec.features.text:
        del features["text"], features["text_vectorizer"]
    if spec.features.numeric_scaling == "none":
        del features["numeric_scaling"]
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


# --- the estimator and the target, checked against the libraries and the data --------------------
# Called by training and by ``mlcycle check``/``models``, never at DAG parse time: they import
# scikit-learn and pandas.


def _close(word: str, options: list[str]) -> str:
    import difflib

    match = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def _estimator_or_problem(class_path: str) -> tuple[type | None, str]:
    """(the class named ``class_path``, "") or (None, why it cannot be imported, with the closest name)."""
    module_name, _, cls_name = class_path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        import pkgutil

        import sklearn

        modules = [f"sklearn.{m.name}" for m in pkgutil.iter_modules(sklearn.__path__) if m.name[0] != "_"]
        return None, f"estimator.class: module {module_name!r} does not exist{_close(module_name, modules)}"
    cls = getattr(module, cls_name, None)
    if not isinstance(cls, type):
        classes = [n for n in dir(module) if not n.startswith("_") and isinstance(getattr(module, n), type)]
        return None, f"estimator.class: {module_name} has no class {cls_name!r}{_close(cls_name, classes)}"
    if not (hasattr(cls, "fit") and hasattr(cls, "get_params")):
        return (
            None,
            f"estimator.class: {class_path} is not a scikit-learn estimator (it has no fit/get_params)",
        )
    return cls, ""


def estimator_class(spec: ModelSpec) -> type:
    """The class named by ``estimator.class``, imported; ``SpecError`` naming the closest valid name."""
    cls, problem = _estimator_or_problem(spec.estimator.class_)
    if cls is None:
        raise SpecError(
            f"model {spec.name}: estimator.class {spec.estimator.class_!r} cannot be imported; check the "
            f"module and class name ({problem.removeprefix('estimator.class: ')})"
        )
    return cls


def estimator_problems(spec: ModelSpec) -> list[str]:
    """Every reason the spec's estimator cannot be built: a class that cannot be imported, a
    parameter its constructor does not take (with the closest one it does), a value it refuses,
    or a classifier/regressor that does not fit ``task``. Empty when it can be built."""
    import inspect

    from sklearn.base import is_classifier, is_regressor

    cls, problem = _estimator_or_problem(spec.estimator.class_)
    if cls is None:
        return [problem]
    short = cls.__name__
    accepted = [
        name
        for name, p in inspect.signature(cls).parameters.items()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    unknown = [name for name in spec.estimator.params if name not in accepted]
    if unknown:
        return [
            f"estimator.params.{name}: {short} takes no parameter {name!r}{_close(name, accepted)}"
            for name in unknown
        ]
    try:
        estimator = cls(**spec.estimator.params)
        # scikit-learn checks types and ranges only in fit(); its own validator runs them now.
        validate = getattr(estimator, "_validate_params", None)
        if validate is not None:
            validate()
    except (TypeError, ValueError) as exc:
        return [f"estimator.params: {short} refuses them: {exc}"]
    if spec.task.classifies and not (is_classifier(estimator) and hasattr(estimator, "predict_proba")):
        return [
            f"estimator.class: {short} is not a classifier with predict_proba, but task is {spec.task} "
            "(some classifiers need a parameter for it, e.g. SVC's probability: true)"
        ]
    if spec.task is Task.REGRESSION and not is_regressor(estimator):
        return [f"estimator.class: {short} is not a regressor, but task is regression"]
    if spec.training.mode == "incremental" and not hasattr(estimator, "partial_fit"):
        return [
            f"estimator.class: {short} has no partial_fit, but training.mode is incremental; use one "
            "that learns in steps (SGDClassifier with loss log_loss, SGDRegressor, MultinomialNB, "
            "MLPClassifier, MLPRegressor) or training.mode: full"
        ]
    return []


def _some(values: list[Any], limit: int = 10) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"


def encode_target(spec: ModelSpec, values: pd.Series) -> pd.Series:
    """The target as the estimator and the metrics need it. A multi-class target keeps its values
    as text (each must be one of ``data.classes``). A classifier's values become class
    0/1 through ``data.labels`` (without it they must already be 0/1 or booleans); a regressor's
    must be numbers. Missing values stay missing (the result is then float64). ``SpecError``
    naming the values seen and the spec key to set."""
    import pandas as pd

    name = spec.data.target
    present = values[values.notna()]
    if spec.task is Task.REGRESSION:
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            raise SpecError(
                f"model {spec.name}: the target {name!r} of a regression must be numeric; it holds "
                f"{values.dtype} values such as {_some(list(present.unique()), 5)}: fix the data or the task"
            )
        return values
    if spec.task is Task.MULTICLASS:
        classes = spec.data.classes or []
        if pd.api.types.is_float_dtype(values) and bool((present == present.round()).all()):
            values = values.astype("Int64")  # whole numbers made floats by a null: 5.0 is class "5"
            present = values[values.notna()]
        text = values.astype("object").where(values.isna(), values.astype("string"))
        unknown = sorted(set(present.astype("string").unique().tolist()) - set(classes))
        if unknown:
            raise SpecError(
                f"model {spec.name}: the target {name!r} holds {_some(unknown)}, which data.classes "
                f"does not list (it lists {classes}); add them to data.classes in the spec if they "
                "are new classes, or fix the data"
            )
        return text
    labels = spec.data.labels
    if labels is None:
        seen = sorted(present.unique().tolist(), key=repr)
        if any(isinstance(v, str) or v not in (0, 1) for v in seen):
            example = ", ".join(f"{v!r}: {i}" for i, v in enumerate(seen[:2]))
            raise SpecError(
                f"model {spec.name}: the target {name!r} holds {_some(seen)}, not the classes 0 and 1; "
                f"map them in the spec with data.labels (1 is the positive class), e.g. labels: {{{example}}}"
            )
        codes = values.astype("float64")
    else:
        codes = values.map(labels).astype("float64")
        unknown = sorted(present[codes[values.notna()].isna()].unique().tolist(), key=repr)
        if unknown:
            raise SpecError(
                f"model {spec.name}: the target {name!r} holds {_some(unknown)}, which data.labels "
                f"does not map (it maps {_some(list(labels))}; the data holds "
                f"{_some(sorted(present.unique().tolist(), key=repr))}); add them to data.labels "
                "in the spec or fix the data"
            )
    return codes if codes.isna().any() else codes.astype("int64")
