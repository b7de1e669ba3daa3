"""MLflow tracking and registry: runs, versions, tags and aliases (never stages).

Conventions: registered model name = model name; alias ``challenger`` = latest
candidate that passed validation and training; alias ``champion`` = the served model.
Every version carries tags for its data digest, the Airflow dag/run that made it,
the gate verdict and where its evidence lives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from mlcycle import settings
from mlcycle.errors import PromotionConflictError, RegistryError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"

TAG_DAG_ID = "airflow.dag_id"
TAG_RUN_ID = "airflow.run_id"
TAG_DIGEST = "data.digest"
TAG_ROWS = "data.rows"
TAG_SOURCE = "data.source"
TAG_REASON = "trigger.reason"
TAG_TRIGGER = "trigger.kind"
TAG_SIZE = "model.size_mb"
TAG_SPEC = "model.spec_digest"
TAG_HOLDOUT = "data.holdout_uri"
TAG_LAST_BATCH = "data.last_batch_date"  # newest daily batch the version was trained on
TAG_VERDICT = "gate.verdict"
TAG_VERDICT_SUMMARY = "gate.summary"
TAG_EVIDENCE = "gate.evidence"
TAG_ONNX = "onnx.status"  # passed | failed | not_convertible | disabled
TAG_ONNX_REASON = "onnx.reason"
TAG_ONNX_DIFF = "onnx.max_diff"

ONNX_ARTIFACT = "onnx/model.onnx"  # in the run that logged the version
ONNX_REPORT = "onnx/parity.json"

# The packages a served model needs, pinned to what trained it. Passing them
# explicitly saves MLflow ~3 s of requirement inference per logged model.
_MODEL_REQUIREMENTS = ("scikit-learn", "pandas", "numpy", "scipy", "skops", "mlflow")


def model_requirements() -> list[str]:
    reqs = []
    for name in _MODEL_REQUIREMENTS:
        try:
            reqs.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            reqs.append(name)
    return reqs


def client(tracking_uri: str | None = None) -> MlflowClient:
    """A client bound to ``tracking_uri`` (also set as the process default for fluent calls)."""
    import mlflow

    uri = tracking_uri or settings.tracking_uri()
    if uri.startswith("sqlite:///"):
        from pathlib import Path

        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(mlc: MlflowClient, name: str) -> str:
    """Get or create an experiment; local stores get artifacts under MLCYCLE_ARTIFACT_ROOT."""
    existing = mlc.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    uri = mlc.tracking_uri
    location = None
    if not uri.startswith(("http://", "https://", "databricks")):
        location = f"{settings.artifact_root().rstrip('/')}/{name}"
    try:
        return mlc.create_experiment(name, artifact_location=location)
    except Exception:
        # A concurrent task may have created it between the lookup and the create.
        existing = mlc.get_experiment_by_name(name)
        if existing is None:
            raise
        return existing.experiment_id


def ensure_registered_model(mlc: MlflowClient, name: str, description: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mlc.get_registered_model(name)
    except MlflowException:
        try:
            mlc.create_registered_model(name, description=description)
        except MlflowException:
            mlc.get_registered_model(name)  # created concurrently: fine


def version_by_alias(mlc: MlflowClient, model: str, alias: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return mlc.get_model_version_by_alias(model, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def version_for_run(mlc: MlflowClient, model: str, dag_id: str, run_id: str) -> ModelVersion | None:
    """The version an Airflow run already registered, so a rerun does not make a second one."""
    query = (
        f"name = '{model}' and tags.`{TAG_DAG_ID}` = '{dag_id}' and tags.`{TAG_RUN_ID}` = '{_quote(run_id)}'"
    )
    found = mlc.search_model_versions(query, max_results=10)
    return max(found, key=lambda v: int(v.version)) if found else None


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


@dataclass(frozen=True)
class LoggedVersion:
    version: str
    mlflow_run_id: str
    experiment_id: str
    model_uri: str
    created: bool  # False when an earlier try of the same Airflow run had made it


def register_version(
    mlc: MlflowClient,
    *,
    model: str,
    description: str,
    source: str,
    mlflow_run_id: str,
    tags: dict[str, str],
) -> str:
    """Create the version with its identifying tags in one call, so a crash cannot
    leave a version that a rerun would fail to recognise."""
    ensure_registered_model(mlc, model, description)
    mv = mlc.create_model_version(model, source=source, run_id=mlflow_run_id, tags=tags)
    return str(mv.version)


def set_alias(
    mlc: MlflowClient, model: str, alias: str, version: str, *, expected: str | object | None = ...
) -> str | None:
    """Point ``alias`` at ``version``; with ``expected``, refuse if the alias has moved
    since the caller looked (compare-and-set). Returns the previous version."""
    current = version_by_alias(mlc, model, alias)
    previous = str(current.version) if current else None
    if expected is not ... and previous not in (expected, version):
        raise PromotionConflictError(
            f"{model}@{alias} is v{previous}, but this promotion was decided against v{expected}; "
            "the champion moved in between. Re-run the gate against the current champion."
        )
    if previous != version:
        mlc.set_registered_model_alias(model, alias, version)
    return previous


def set_version_tags(mlc: MlflowClient, model: str, version: str, tags: dict[str, Any]) -> None:
    for key, value in tags.items():
        mlc.set_model_version_tag(model, version, key, str(value)[:5000])


def load_sklearn(model_uri: str) -> Any:
    """Load with the skops trusted types recorded at save time (never arbitrary pickles)."""
    import mlflow.sklearn

    try:
        return mlflow.sklearn.load_model(model_uri)
    except Exception as exc:
        raise RegistryError(f"cannot load {model_uri}: {exc}") from exc


def log_metrics(mlc: MlflowClient, run_id: str, metrics: dict[str, float]) -> None:
    """All of a run's metrics in one write (a SQL store pays a round trip per ``log_metric``)."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    mlc.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])


def onnx_tags(report: dict[str, Any]) -> dict[str, str]:
    """The version tags that carry an ONNX export report (``mlcycle.onnx_engine.export``)."""
    diff = report.get("max_scaled_diff")
    return {
        TAG_ONNX: report["status"],
        TAG_ONNX_REASON: report.get("reason", "")[:500],
        TAG_ONNX_DIFF: "" if diff is None else f"{diff:.3g}",
    }


def load_onnx(mlc: MlflowClient, model: str, version: str) -> bytes:
    """The ONNX twin logged with a version (``RegistryError`` if there is none)."""
    import tempfile
    from pathlib import Path

    mv = mlc.get_model_version(model, version)
    try:
        with tempfile.TemporaryDirectory(prefix="mlcycle-onnx-") as tmp:
            return Path(mlc.download_artifacts(mv.run_id, ONNX_ARTIFACT, tmp)).read_bytes()
    except Exception as exc:
        raise RegistryError(f"cannot load the ONNX twin of {model} v{version}: {exc}") from exc


def run_for_airflow_run(
    mlc: MlflowClient, experiment: str, *, dag_id: str, run_id: str, run_name: str, tags: dict[str, str]
) -> str:
    """The MLflow run recording one Airflow run in ``experiment``: found again on a rerun,
    created otherwise. Returns its id."""
    experiment_id = ensure_experiment(mlc, experiment)
    found = mlc.search_runs(
        [experiment_id], filter_string=f"tags.`{TAG_RUN_ID}` = '{_quote(run_id)}'", max_results=1
    )
    if found:
        return found[0].info.run_id
    created = mlc.create_run(
        experiment_id, run_name=run_name, tags={TAG_DAG_ID: dag_id, TAG_RUN_ID: run_id, **tags}
    )
    return created.info.run_id


def run_url(experiment_id: str, run_id: str) -> str:
    return f"{settings.mlflow_ui_url()}/#/experiments/{experiment_id}/runs/{run_id}"


def version_url(model: str, version: str) -> str:
    return f"{settings.mlflow_ui_url()}/#/models/{model}/versions/{version}"
