"""MLflow tracking and registry: runs, versions, tags and aliases (never stages).

Conventions: registered model name = model name; alias ``challenger`` = latest
candidate that passed validation and training; alias ``champion`` = the served model.
Every version carries tags for its data digest, the Airflow dag/run that made it,
the gate verdict and where its evidence lives.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mlcycle.core import settings
from mlcycle.core.errors import PromotionConflictError, RegistryError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from mlcycle.core.run import RunInfo

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
TAG_SUPERSEDED_BY = "promotion.superseded_by"  # passed its gate, but another version moved in first

ONNX_ARTIFACT = "onnx/model.onnx"  # in the run that logged the version
ONNX_REPORT = "onnx/parity.json"
PROFILE_ARTIFACT = "reference/profile.json"  # the drift reference, logged with every version

# The packages a served model needs, pinned to what trained it. Passing them
# explicitly saves MLflow ~3 s of requirement inference per logged model.
_MODEL_REQUIREMENTS = ("scikit-learn", "pandas", "numpy", "scipy", "skops", "mlflow")


def model_requirements() -> list[str]:
    """A logged model's pip requirements: ``_MODEL_REQUIREMENTS`` pinned to the installed versions."""
    reqs = []
    for name in _MODEL_REQUIREMENTS:
        try:
            reqs.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            reqs.append(name)
    return reqs


def client(tracking_uri: str | None = None) -> MlflowClient:
    """A client bound to ``tracking_uri`` (default ``MLFLOW_TRACKING_URI``). It sets nothing
    process-wide: pass it down to whatever talks to MLflow."""
    import mlflow

    uri = tracking_uri or settings.tracking_uri()
    if uri.startswith("sqlite:///"):
        from pathlib import Path

        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextmanager
def fluent(mlc: MlflowClient) -> Iterator[None]:
    """Bind MLflow's fluent API to ``mlc``'s store for the duration of a block, then restore it.

    Model logging (``mlflow.<flavor>.log_model``) and registering a ``models:/m-…`` source exist
    only against the fluent store; this is the one place that lends it one. MLflow keeps that
    store in module globals *and* writes it into ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI``
    (and ``set_tracking_uri(None)`` deletes the variable), so all four are saved and put back
    exactly: nothing relies on, or is left with, a store from an earlier call."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_state
    from mlflow.tracking._tracking_service import utils as tracking_state

    env = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    state = (tracking_state._tracking_uri, registry_state._registry_uri)
    mlflow.set_tracking_uri(mlc.tracking_uri)
    mlflow.set_registry_uri(mlc.tracking_uri)
    try:
        yield
    finally:
        tracking_state._tracking_uri, registry_state._registry_uri = state
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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
    """Create registered model ``name`` unless it exists (safe against a concurrent create)."""
    from mlflow.exceptions import MlflowException

    try:
        mlc.get_registered_model(name)
    except MlflowException:
        try:
            mlc.create_registered_model(name, description=description)
        except MlflowException:
            mlc.get_registered_model(name)  # created concurrently: fine


def version_by_alias(mlc: MlflowClient, model: str, alias: str) -> ModelVersion | None:
    """The version ``alias`` points at, or None if the alias or model does not exist."""
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
    # A tracking server accepts a ``models:/m-…`` source only with the logged model's id (a local
    # store looks it up itself); MLflow resolves that source with a client of the process-wide store.
    model_id = source.removeprefix("models:/") if source.startswith("models:/m-") else None
    with fluent(mlc):
        mv = mlc.create_model_version(
            model, source=source, run_id=mlflow_run_id, tags=tags, model_id=model_id
        )
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
    """Set each tag on a version, values turned into strings and cut to 5,000 characters."""
    for key, value in tags.items():
        mlc.set_model_version_tag(model, version, key, str(value)[:5000])


def load_sklearn(mlc: MlflowClient, model: str, version: str) -> Any:
    """Load a version's scikit-learn model with skops, never with pickle, downloading it
    through ``mlc``'s store.

    Refused with a ``RegistryError`` before a byte of the model is deserialised: a version
    saved as pickle or cloudpickle (unpickling runs whatever code the artifact carries), and
    one whose skops file needs types that were not trusted when it was saved or that lie
    outside numpy, SciPy and scikit-learn (the trusted list is read from the artifact's own
    MLmodel, which a crafted artifact could fill with anything).

    The version's artifact location is asked of ``mlc`` first: MLflow resolves a
    ``models:/<name>/<version>`` URI against the process-wide registry, whatever store is
    passed to the download."""
    import skops.io

    with tempfile.TemporaryDirectory(prefix="mlcycle-model-") as tmp:
        path, trusted = download_skops(mlc, model, version, Path(tmp))
        try:
            return skops.io.load(path, trusted=trusted)
        except Exception as exc:
            raise RegistryError(f"cannot load models:/{model}/{version}: {exc}") from exc


def download_skops(mlc: MlflowClient, model: str, version: str, dst: Path) -> tuple[Path, list[str]]:
    """A version's skops file downloaded under ``dst`` (a directory), checked as ``load_sklearn``
    checks it without deserialising anything, and the types it needs (each one allowed): what
    ``skops.io.load(path, trusted=types)`` rebuilds the model from, here or in a deployment
    package. ``RegistryError`` for a version that cannot be downloaded or is refused."""
    import mlflow.artifacts

    try:
        source = mlc.get_model_version_download_uri(model, version)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(dst), tracking_uri=mlc.tracking_uri
        )
        return _skops_file(Path(local), f"models:/{model}/{version}")
    except RegistryError:
        raise
    except Exception as exc:
        raise RegistryError(f"cannot load models:/{model}/{version}: {exc}") from exc


def sklearn_file(mlc: MlflowClient, model: str, version: str) -> tuple[bytes, list[str]]:
    """A version's skops file and the types it needs, checked as ``download_skops`` checks them,
    for processes that load it without MLflow (Beam workers): pass both to ``load_skops_bytes``."""
    with tempfile.TemporaryDirectory(prefix="mlcycle-model-") as tmp:
        path, trusted = download_skops(mlc, model, version, Path(tmp))
        return path.read_bytes(), trusted


def load_skops_bytes(data: bytes, trusted: list[str], where: str) -> Any:
    """Load a skops file given by ``sklearn_file``, without MLflow. The types it needs are read
    from the data again and must all be in ``trusted`` and in the allowed packages, so a file
    swapped since is refused (``RegistryError``) before anything is deserialised."""
    import skops.io

    needed = skops.io.get_untrusted_types(data=data)
    refused = _refused_types(needed, trusted)
    if refused:
        raise RegistryError(f"{where} needs the skops types {refused}, which are not trusted; not loaded")
    return skops.io.loads(data, trusted=needed)


# Where the types a model may rebuild beyond skops' own safe defaults may come from, and this
# project's own (stateless, named one by one: nothing of them comes from the artifact but data).
_SKOPS_TRUSTED_PACKAGES = ("numpy.", "scipy.", "sklearn.")
_SKOPS_OWN_TYPES = frozenset({"mlcycle.ml.text.TextColumn"})


def _skops_file(local: Path, where: str) -> tuple[Path, list[str]]:
    """The skops file of a downloaded sklearn-flavor model and the types it needs, checked
    without deserialising anything (``RegistryError`` for any other format or type)."""
    import skops.io
    from mlflow.models import Model

    flavor = Model.load(str(local)).flavors.get("sklearn")
    if flavor is None:
        raise RegistryError(
            f"{where} has no scikit-learn flavor: mlcycle loads scikit-learn models saved with skops"
        )
    # MLflow reads a flavor without the key as pickle.
    fmt = flavor.get("serialization_format", "pickle")
    if fmt != "skops":
        raise RegistryError(
            f"{where} is saved as {fmt}, which is not loaded: unpickling runs whatever code the artifact "
            "carries. mlcycle loads models saved with skops only: retrain it (trigger the train DAG with "
            "force=true), or log it again with serialization_format='skops'"
        )
    path = local / flavor["pickled_model"]
    needed = skops.io.get_untrusted_types(file=path)
    refused = _refused_types(needed, flavor.get("skops_trusted_types") or ())
    if refused:
        raise RegistryError(
            f"{where} needs the skops types {refused}, which are not loaded: only types trusted when the "
            f"model was saved, from numpy, scipy or sklearn (or {sorted(_SKOPS_OWN_TYPES)}), are rebuilt. Retrain it with the train DAG, "
            "whose allow-list is mlcycle.ml.training.SKOPS_TRUSTED_TYPES"
        )
    return path, needed


def _refused_types(needed: list[str], recorded: Iterable[str]) -> list[str]:
    """The types of ``needed`` that are not rebuilt: not among those ``recorded`` as trusted when
    the model was saved, or outside the allowed packages and the project's own types."""
    recorded = set(recorded)
    return [
        t
        for t in needed
        if t not in recorded or not (t.startswith(_SKOPS_TRUSTED_PACKAGES) or t in _SKOPS_OWN_TYPES)
    ]


def load_run_json(mlc: MlflowClient, run_id: str, artifact: str) -> Any:
    """A JSON artifact of a run, read through ``mlc``'s store."""
    with tempfile.TemporaryDirectory(prefix="mlcycle-artifact-") as tmp:
        return json.loads(Path(mlc.download_artifacts(run_id, artifact, tmp)).read_text())


def run_of(mv: ModelVersion) -> str:
    """The MLflow run that logged a version (every version mlcycle registers has one)."""
    if not mv.run_id:
        raise RegistryError(f"{mv.name} v{mv.version} has no MLflow run: it was not registered by mlcycle")
    return str(mv.run_id)


def load_profile(mlc: MlflowClient, mv: ModelVersion) -> dict[str, Any]:
    """The reference profile logged with a version at training time."""
    try:
        profile: dict[str, Any] = load_run_json(mlc, run_of(mv), PROFILE_ARTIFACT)
    except Exception as exc:
        raise RegistryError(
            f"{mv.name} v{mv.version} has no reference profile ({PROFILE_ARTIFACT}); "
            "it was trained before profiles existed: retrain it (trigger the train DAG with force=true)"
        ) from exc
    return profile


def log_params(mlc: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    """All of a run's params in one write."""
    from mlflow.entities import Param

    mlc.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])


def log_metrics(mlc: MlflowClient, run_id: str, metrics: dict[str, float]) -> None:
    """All of a run's metrics in one write (a SQL store pays a round trip per ``log_metric``)."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    mlc.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])


def onnx_tags(report: dict[str, Any]) -> dict[str, str]:
    """The version tags that carry an ONNX export report (``mlcycle.ml.onnx_twin.export``)."""
    diff = report.get("max_scaled_diff")
    return {
        TAG_ONNX: report["status"],
        TAG_ONNX_REASON: report.get("reason", "")[:500],
        TAG_ONNX_DIFF: "" if diff is None else f"{diff:.3g}",
    }


def load_onnx(mlc: MlflowClient, model: str, version: str) -> bytes:
    """The ONNX twin logged with a version (``RegistryError`` if there is none)."""
    mv = mlc.get_model_version(model, version)
    try:
        with tempfile.TemporaryDirectory(prefix="mlcycle-onnx-") as tmp:
            return Path(mlc.download_artifacts(run_of(mv), ONNX_ARTIFACT, tmp)).read_bytes()
    except Exception as exc:
        raise RegistryError(f"cannot load the ONNX twin of {model} v{version}: {exc}") from exc


def run_for_airflow_run(
    mlc: MlflowClient, experiment: str, run: RunInfo, kind: str, tags: dict[str, str] | None = None
) -> tuple[str, str]:
    """The MLflow run recording one Airflow run in ``experiment`` (named ``<kind>/<run key>``):
    found again on a rerun, created otherwise. Returns (experiment id, run id)."""
    experiment_id = ensure_experiment(mlc, experiment)
    found = mlc.search_runs(
        [experiment_id], filter_string=f"tags.`{TAG_RUN_ID}` = '{_quote(run.run_id)}'", max_results=1
    )
    if found:
        return experiment_id, found[0].info.run_id
    created = mlc.create_run(
        experiment_id,
        run_name=f"{kind}/{run.key}",
        tags={TAG_DAG_ID: run.dag_id, TAG_RUN_ID: run.run_id, **(tags or {})},
    )
    return experiment_id, created.info.run_id


def experiment_of(mlc: MlflowClient, run_id: str) -> str:
    """The id of the experiment that MLflow run ``run_id`` belongs to."""
    return str(mlc.get_run(run_id).info.experiment_id)


# --- where people open what MLflow holds (the one home of MLflow UI URLs) ----------------------


def ui_base(tracking_uri: str, ui_url: str | None = None) -> str:
    """The MLflow UI for a store: ``ui_url`` if given, the server itself for an http(s)
    tracking URI, else ``MLCYCLE_MLFLOW_UI_URL``."""
    if ui_url:
        return ui_url.rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return settings.mlflow_ui_url()


def run_url(ui: str, experiment_id: str, run_id: str) -> str:
    """A run's page in the MLflow UI at ``ui`` (see ``ui_base``)."""
    return f"{ui}/#/experiments/{experiment_id}/runs/{run_id}"


def version_url(ui: str, model: str, version: str) -> str:
    """A model version's page in the MLflow UI at ``ui`` (see ``ui_base``)."""
    return f"{ui}/#/models/{model}/versions/{version}"


def model_url(ui: str, model: str) -> str:
    """A registered model's page in the MLflow UI at ``ui`` (see ``ui_base``)."""
    return f"{ui}/#/models/{model}"


def log_dataset(
    mlc: MlflowClient,
    run_id: str,
    *,
    name: str,
    digest: str,
    source_uri: str,
    sample: pd.DataFrame,
    rows: int,
    context: str,
) -> None:
    """Record a dataset a run used by reference: its source URI, our content digest, the schema
    (from a sample) and its size. ``mlflow.data.from_pandas`` would hash and profile the whole
    frame again, which costs more than the fit at a million rows (bench/train_step.py)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.models import infer_signature

    source = resolve_dataset_source(source_uri)
    schema = infer_signature(sample).inputs
    entity = Dataset(
        name=name,
        digest=digest[:32],
        source_type=source._get_source_type(),
        source=source.to_json(),
        schema=json.dumps({"mlflow_colspec": schema.to_dict()}),
        profile=json.dumps({"num_rows": rows, "num_elements": rows * len(sample.columns)}),
    )
    mlc.log_inputs(run_id, datasets=[DatasetInput(entity, tags=[InputTag("mlflow.data.context", context)])])


# --- registry webhooks ------------------------------------------------------------------------------

WEBHOOK_ENV = "MLCYCLE_MLFLOW_WEBHOOK_SECRET"
WEBHOOK_EVENT: Final = "model_version_alias.created"
WEBHOOK_MAX_AGE_S = 300  # older deliveries are refused as replays


def verify_webhook(
    secret: str, *, delivery_id: str, timestamp: str, payload: bytes, signature: str, now: float
) -> str | None:
    """Why a delivery of MLflow's registry webhook is not genuine, or None when it is: the
    ``X-MLflow-Signature`` must be ``v1,<base64 HMAC-SHA256 of "<delivery id>.<timestamp>.<body>">``
    under ``secret``, and the timestamp at most ``WEBHOOK_MAX_AGE_S`` old."""
    import base64
    import hashlib
    import hmac

    if not (delivery_id and timestamp and signature):
        return "the X-MLflow-Delivery-Id, X-MLflow-Timestamp and X-MLflow-Signature headers are required"
    try:
        age = now - int(timestamp)
    except ValueError:
        return f"X-MLflow-Timestamp {timestamp!r} is not a Unix time"
    if abs(age) > WEBHOOK_MAX_AGE_S:
        return f"the delivery is {age:.0f} s old (at most {WEBHOOK_MAX_AGE_S} s): refused as a replay"
    signed = f"{delivery_id}.{timestamp}.".encode() + payload
    expected = "v1," + base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(expected, signature):
        return "the signature does not match: wrong secret, or the body was changed"
    return None


def create_webhook(mlc: MlflowClient, url: str, secret: str) -> str:
    """Register (or update) the webhook that tells ``url`` of every alias set in the registry;
    returns its id. One webhook per URL: running it again updates the secret."""
    existing = [w for w in mlc.list_webhooks() if w.url == url]
    if existing:
        mlc.update_webhook(existing[0].webhook_id, secret=secret, events=[WEBHOOK_EVENT], status="ACTIVE")
        return str(existing[0].webhook_id)
    hook = mlc.create_webhook(
        name="mlcycle-alias-guard",
        url=url,
        events=[WEBHOOK_EVENT],
        description="mlcycle: catch @champion moves made outside the pipeline",
        secret=secret,
    )
    return str(hook.webhook_id)
