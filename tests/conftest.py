"""Test-wide settings: every test runs against throw-away state, never the developer's.

Airflow reads its configuration when first imported, so the environment is set here,
at import time, before any test module imports ``airflow``.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STATE = Path(tempfile.mkdtemp(prefix="mlcycle-tests-"))

os.environ.update(
    {
        "AIRFLOW_HOME": str(STATE / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{STATE / 'airflow' / 'airflow.db'}",
        "GX_ANALYTICS_ENABLED": "false",
        # One OpenMP thread: on a busy 2-core CI box, HistGradientBoosting's thread pool
        # spins and makes fits and latency budgets 10x slower and noisy.
        "OMP_NUM_THREADS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLCYCLE_HOME": str(REPO),
        "MLCYCLE_LAKE_ROOT": str(STATE / "lake"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{STATE / 'mlflow.db'}",
        "MLCYCLE_ARTIFACT_ROOT": str(STATE / "mlartifacts"),
        "MLCYCLE_LEDGER_URI": f"sqlite:///{STATE / 'ledger.db'}",
    }
)
(STATE / "airflow").mkdir(parents=True, exist_ok=True)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(STATE, ignore_errors=True)


@dataclass
class Env:
    """One isolated lake + MLflow store + ledger."""

    root: Path
    lake: str
    tracking_uri: str
    ledger_uri: str


@pytest.fixture
def env(tmp_path, monkeypatch) -> Env:
    """Fresh lake, MLflow store and ledger for one test (settings are read at call time)."""
    e = Env(
        root=tmp_path,
        lake=str(tmp_path / "lake"),
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        ledger_uri=f"sqlite:///{tmp_path / 'ledger.db'}",
    )
    monkeypatch.setenv("MLCYCLE_LAKE_ROOT", e.lake)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", e.tracking_uri)
    monkeypatch.setenv("MLCYCLE_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    monkeypatch.setenv("MLCYCLE_LEDGER_URI", e.ledger_uri)
    return e


def write_batches(lake: str, model: str, end: dt.date, days: int, rows: int = 1500, **options) -> list[Path]:
    """Generate ``days`` daily batches ending at ``end`` into the lake's incoming area."""
    from mlcycle import lake as lk
    from mlcycle.generators import generate_batch

    paths = []
    L = lk.Lake(lake, model)
    for i in range(days):
        day = end - dt.timedelta(days=i)
        path = L.batch_path(day)
        lk.write_parquet(generate_batch(model, day, rows, **options), path)
        paths.append(Path(str(path)))
    return paths


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata DB (SQLite), made once per session."""
    airflow = Path(sys.executable).parent / "airflow"
    done = subprocess.run(
        [str(airflow), "db", "migrate"], capture_output=True, text=True, env=os.environ.copy(), check=False
    )
    assert done.returncode == 0, f"airflow db migrate failed:\n{done.stdout}\n{done.stderr}"
    return STATE / "airflow" / "airflow.db"


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@pytest.fixture
def dags(airflow_db):
    """The project's DAGs, freshly parsed per test: dag.test() folds a run's conf into a
    DAG's params, so a DAG object must not be shared between tests."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag.dags


def train_champion(env: Env, model: str, *, end: dt.date, days: int, rows: int = 1500):
    """Land ``days`` batches ending at ``end`` and make v1 the champion with the plain steps
    (no Airflow): the fast way to set up a registry for scoring, serving and monitoring tests."""
    from mlcycle import steps
    from mlcycle.spec import get_spec

    spec = get_spec(model)
    write_batches(env.lake, model, end, days=days, rows=rows)
    run = steps.RunInfo(f"train_{model}", "setup", reason="test setup")
    m = steps.resolve(spec, run, lake_root=env.lake, as_of=end)
    t = steps.train(spec, run, manifest_uri=m["manifest_uri"], lake_root=env.lake)
    e = steps.evaluate(spec, run, version=t["version"], holdout_uri=t["holdout_uri"], lake_root=env.lake)
    steps.promote(spec, run, verdict=steps.gate(spec, run, evaluation=e, lake_root=env.lake))
    return spec
