"""Model specs: one YAML file per model, validated by a typed schema.

Adding a model is adding ``include/models/<name>.yaml`` and its contract. This module
is imported at DAG parse time, so it imports only pydantic and yaml (both already
loaded by Airflow).
"""

from __future__ import annotations

import functools
import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlcycle.core.errors import SpecError

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# Presets a cron timetable understands (``@once``/``@continuous`` are not schedules a nightly
# retraining or an hourly check can run on).
CRON_PRESETS = {"@hourly", "@daily", "@weekly", "@monthly", "@yearly"}


class Task(StrEnum):
    """The spec's ``task``: which metrics apply, and whether the estimator must classify or regress."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class Direction(StrEnum):
    """Which way a metric improves; the gate uses it to give gains and regressions their sign."""

    HIGHER = "higher"
    LOWER = "lower"


# Every metric the gate can use, the task it belongs to and which way is better.
METRICS: dict[str, tuple[Task, Direction]] = {
    "roc_auc": (Task.CLASSIFICATION, Direction.HIGHER),
    "average_precision": (Task.CLASSIFICATION, Direction.HIGHER),
    "accuracy": (Task.CLASSIFICATION, Direction.HIGHER),
    "f1": (Task.CLASSIFICATION, Direction.HIGHER),
    "log_loss": (Task.CLASSIFICATION, Direction.LOWER),
    "brier": (Task.CLASSIFICATION, Direction.LOWER),
    "rmse": (Task.REGRESSION, Direction.LOWER),
    "mae": (Task.REGRESSION, Direction.LOWER),
    "r2": (Task.REGRESSION, Direction.HIGHER),
}

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


class FeaturesSpec(_Strict):
    """Validates the ``features`` section: numeric and categorical columns, at least one, none in both lists."""

    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty_no_overlap(self) -> FeaturesSpec:
        if not self.numeric and not self.categorical:
            raise ValueError("list at least one feature under numeric or categorical")
        both = sorted(set(self.numeric) & set(self.categorical))
        if both:
            raise ValueError(f"{both} are listed as both numeric and categorical; keep each in one list")
        return self

    @property
    def all(self) -> list[str]:
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


class ShadowSpec(_Strict):
    """Requirements on the candidate vs the champion scored on the newest production batch."""

    min_agreement: float | None = Field(None, ge=0.0, le=1.0)  # share of rows with the same class
    max_mean_abs_diff: float | None = Field(None, gt=0.0)  # mean |score difference|

    @property
    def required(self) -> bool:
        return self.min_agreement is not None or self.max_mean_abs_diff is not None


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

    @model_validator(mode="after")
    def _known_metrics(self) -> GateSpec:
        for section in ("thresholds", "max_regression", "min_improvement"):
            for metric in getattr(self, section):
                if metric not in METRICS:
                    raise ValueError(f"@{section}.{metric}: unknown metric; use one of {sorted(METRICS)}")
        for section in ("max_regression", "min_improvement"):
            for metric, value in getattr(self, section).items():
                if value < 0:
                    raise ValueError(
                        f"@{section}.{metric}: is {value}; give a non-negative amount "
                        "(the direction comes from the metric)"
                    )
        if self.primary_metric not in METRICS:
            raise ValueError(
                f"@primary_metric: {self.primary_metric!r} is unknown; use one of {sorted(METRICS)}"
            )
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


class MonitorSpec(_Strict):
    """Drift monitoring and the guardrails in front of a drift-triggered retrain."""

    schedule: str = "@hourly"
    window_days: int = Field(1, ge=1, le=365)  # recent batches compared with the reference
    min_rows: int = Field(100, ge=1)  # fewer non-null rows: a statistic is not computed
    drift_share_threshold: float = Field(0.3, gt=0.0, le=1.0)  # importance-weighted share of drifted features
    overrides: dict[str, FeatureDriftOverride] = Field(default_factory=dict)
    max_performance_drop: float | None = Field(0.05, gt=0.0)  # primary metric / CBPE estimate vs holdout
    # Guardrails: all must pass before a retrain is requested.
    cooldown_hours: float = Field(12.0, ge=0.0)
    min_new_rows: int = Field(1000, ge=0)
    max_retrains_per_week: int = Field(3, ge=0)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        return check_schedule(value)


class ScoringSpec(_Strict):
    """How batches are scored. ``auto``: with onnxruntime when the version's ONNX twin passed
    its parity check at training, else scikit-learn; ``sklearn``: never convert."""

    engine: Literal["auto", "sklearn"] = "auto"
    # Largest difference allowed between the engines on the holdout: absolute for scores
    # within [-1, 1] (probabilities), relative beyond.
    onnx_tolerance: float = Field(1e-4, gt=0.0, le=0.1)


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
        fitting = sorted(m for m, (t, _) in METRICS.items() if t is self.task)
        keys = [("primary_metric", self.gate.primary_metric)] + [
            (f"{section}.{m}", m)
            for section in ("thresholds", "max_regression", "min_improvement")
            for m in getattr(self.gate, section)
        ]
        if self.task is Task.REGRESSION and self.gate.shadow.min_agreement is not None:
            raise ValueError(
                "@gate.shadow.min_agreement: agreement of classes needs a classifier; use max_mean_abs_diff"
            )
        for key, metric in keys:
            if METRICS[metric][0] is not self.task:
                raise ValueError(f"@gate.{key}: {metric} does not apply to {self.task}; use one of {fitting}")
        reserved = {self.data.key_column, self.data.time_column, self.data.target}
        clash = sorted(reserved & set(self.features.all))
        if clash:
            raise ValueError(f"@features: {clash} are also the key, time or target column; remove them")
        expected = f"{self.estimator.class_.rsplit('.', 1)[1]}"
        if self.task is Task.CLASSIFICATION and "Regressor" in expected:
            raise ValueError(f"@estimator.class: {expected} is a regressor but task is classification")
        if self.task is Task.REGRESSION and "Classifier" in expected:
            raise ValueError(f"@estimator.class: {expected} is a classifier but task is regression")
        return self

    @property
    def train_dag_id(self) -> str:
        return f"train_{self.name}"


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
            msg = "unknown key; remove it or check its spelling"
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
    """What of the spec changes a model: features, estimator, target and split."""
    import hashlib
    import json

    relevant = spec.model_dump(mode="json", include={"features", "estimator", "data"}, by_alias=True)
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]
