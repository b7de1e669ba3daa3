"""Deployment settings, read from environment variables with repo-local defaults.

Every location the library touches has one variable; nothing else is hard-coded:

- ``MLCYCLE_HOME``: the project folder (default: found from this package's location).
- ``MLCYCLE_SPECS_DIR``: model specs (default ``$MLCYCLE_HOME/include/models``).
- ``MLCYCLE_CONTRACTS_DIR``: GX suites (default ``$MLCYCLE_HOME/include/contracts``).
- ``MLCYCLE_LAKE_ROOT``: data lake root, a folder or any fsspec URI (default ``$MLCYCLE_HOME/lake``).
- ``MLFLOW_TRACKING_URI``: MLflow (default ``sqlite:///$MLCYCLE_HOME/.local/mlflow.db``).
- ``MLCYCLE_ARTIFACT_ROOT``: artifact root of new experiments when MLflow is a local
  database (default ``$MLCYCLE_HOME/.local/mlartifacts``); ignored for an MLflow server.
- ``MLCYCLE_LEDGER_URI``: SQLAlchemy URI of the promotion ledger
  (default ``sqlite:///$MLCYCLE_HOME/.local/ledger.db``).
- ``MLCYCLE_MLFLOW_UI_URL``: where people open MLflow, for links (default ``http://localhost:5000``).
- ``MLCYCLE_ALLOWED_INPUTS``: where a run may read batches besides the lake root (``batch_uri``):
  comma-separated absolute folders and ``s3://bucket/prefix`` or ``gs://bucket/prefix`` URIs
  (default none: only the lake root).
- ``MLCYCLE_RETRY_DELAY_SECONDS``: the first wait before a task that met an outage is retried
  (default 60; each later retry waits twice as long, at most 15 minutes).
"""

from __future__ import annotations

import os
from pathlib import Path

from mlcycle.core.errors import MlcycleError


def project_home() -> Path:
    """The repo root: ``MLCYCLE_HOME``, else found above this package; ``MlcycleError`` if neither works."""
    if env := os.environ.get("MLCYCLE_HOME"):
        return Path(env).expanduser().resolve()
    for parent in Path(__file__).resolve().parents:
        if (parent / "include" / "models").is_dir() and (parent / "pyproject.toml").is_file():
            return parent
    raise MlcycleError(
        "cannot find the project folder (one holding include/models and pyproject.toml) "
        f"above {Path(__file__).resolve()}; set MLCYCLE_HOME to the repository root"
    )


def _path_setting(name: str, default: str) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else project_home() / default


def specs_dir() -> Path:
    """Folder of the model specs: ``MLCYCLE_SPECS_DIR``, default ``$MLCYCLE_HOME/include/models``."""
    return _path_setting("MLCYCLE_SPECS_DIR", "include/models")


def contracts_dir() -> Path:
    """Folder of the GX suites: ``MLCYCLE_CONTRACTS_DIR``, default ``$MLCYCLE_HOME/include/contracts``."""
    return _path_setting("MLCYCLE_CONTRACTS_DIR", "include/contracts")


def lake_root() -> str:
    """The lake root as a URI string (a plain absolute path for a local folder)."""
    value = os.environ.get("MLCYCLE_LAKE_ROOT")
    if value and "://" in value:
        return value.rstrip("/")
    return str(Path(value).expanduser().resolve() if value else project_home() / "lake")


def local_state_dir() -> Path:
    """``$MLCYCLE_HOME/.local``: default SQLite databases and MLflow artifacts; no variable of its own."""
    return project_home() / ".local"


def tracking_uri() -> str:
    """MLflow tracking URI: ``MLFLOW_TRACKING_URI``, default SQLite ``.local/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{local_state_dir() / 'mlflow.db'}"


def artifact_root() -> str:
    """Artifact root of new local-store experiments: ``MLCYCLE_ARTIFACT_ROOT`` (``.local/mlartifacts``)."""
    value = os.environ.get("MLCYCLE_ARTIFACT_ROOT")
    return value if value else str(local_state_dir() / "mlartifacts")


def ledger_uri() -> str:
    """SQLAlchemy URI of the promotion ledger: ``MLCYCLE_LEDGER_URI``, default SQLite ``.local/ledger.db``."""
    return os.environ.get("MLCYCLE_LEDGER_URI") or f"sqlite:///{local_state_dir() / 'ledger.db'}"


def mlflow_ui_url() -> str:
    """MLflow UI base for links: ``MLCYCLE_MLFLOW_UI_URL``, default ``http://localhost:5000`` (no final /)."""
    return (os.environ.get("MLCYCLE_MLFLOW_UI_URL") or "http://localhost:5000").rstrip("/")


# Schemes a deployment may list in MLCYCLE_ALLOWED_INPUTS: object stores, never fetchers of
# arbitrary URLs (http, ftp, ...), which would let a run parameter reach any host.
ALLOWED_INPUT_SCHEMES = ("s3", "gs")


def allowed_inputs() -> list[str]:
    """Locations a run may read besides the lake root: ``MLCYCLE_ALLOWED_INPUTS`` (comma-separated
    absolute folders, resolved, and ``s3://``/``gs://`` bucket prefixes without a final /).

    ``MlcycleError`` for an entry of another scheme, without a bucket, or a relative folder."""
    allowed = []
    for raw in os.environ.get("MLCYCLE_ALLOWED_INPUTS", "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        scheme, sep, rest = entry.partition("://")
        if sep:
            if scheme not in ALLOWED_INPUT_SCHEMES or not rest.split("/", 1)[0]:
                raise MlcycleError(
                    f"MLCYCLE_ALLOWED_INPUTS: {entry!r} is not allowed; list absolute folders and "
                    f"{' or '.join(f'{s}://bucket/prefix' for s in ALLOWED_INPUT_SCHEMES)} URIs, comma-separated"
                )
            allowed.append(entry.rstrip("/"))
            continue
        folder = Path(entry).expanduser()
        if not folder.is_absolute():
            raise MlcycleError(
                f"MLCYCLE_ALLOWED_INPUTS: {entry!r} is a relative folder; give absolute folders, comma-separated"
            )
        allowed.append(str(folder.resolve()))
    return allowed


def retry_delay_s() -> int:
    """Seconds before the first retry of a task: ``MLCYCLE_RETRY_DELAY_SECONDS``, default 60.

    ``MlcycleError`` for anything but a whole number of seconds from 1 to 900."""
    raw = os.environ.get("MLCYCLE_RETRY_DELAY_SECONDS", "").strip() or "60"
    if not raw.isdigit() or not 1 <= int(raw) <= 900:
        raise MlcycleError(
            f"MLCYCLE_RETRY_DELAY_SECONDS={raw!r}: give a whole number of seconds from 1 to 900 (default 60)"
        )
    return int(raw)
