"""Test-wide settings: every test runs against throw-away state, never the developer's.

Airflow reads its configuration when first imported, so the environment is set here,
at import time, before any test module imports ``airflow``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mlflow import MlflowClient

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

    @property
    def mlc(self) -> MlflowClient:
        """A client of this test's MLflow store (what the operators' hook hands the flows)."""
        from mlcycle.store import registry

        return registry.client(self.tracking_uri)


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
    # Tests land hand-made batches beside the lake and send them by batch_uri.
    monkeypatch.setenv("MLCYCLE_ALLOWED_INPUTS", str(tmp_path))
    return e


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory) -> Path:
    """An empty, migrated MLflow SQLite store, made once per session (migrating takes seconds)."""
    from mlcycle.store import registry

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlc = registry.client(f"sqlite:///{path}")
    mlc.search_experiments()
    mlc.search_registered_models()
    return path


@pytest.fixture
def store(env, migrated_db) -> Env:
    """``env`` with its MLflow store a copy of the migrated template."""
    shutil.copy(migrated_db, env.root / "mlflow.db")
    return env


def write_batches(lake: str, model: str, end: dt.date, days: int, rows: int = 1500, **options) -> list[Path]:
    """Generate ``days`` daily batches ending at ``end`` into the lake's incoming area."""
    from mlcycle.data import lake as lk
    from mlcycle.data.generators import generate_batch

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
    from mlcycle.core.run import RunInfo
    from mlcycle.core.spec import get_spec
    from mlcycle.flows import train as steps

    spec = get_spec(model)
    write_batches(env.lake, model, end, days=days, rows=rows)
    run, mlc = RunInfo(f"train_{model}", "setup", reason="test setup"), env.mlc
    m = steps.resolve(spec, run, lake_root=env.lake, as_of=end)
    t = steps.train(spec, run, mlc, manifest_uri=m["manifest_uri"], lake_root=env.lake)
    assert not t["skipped"]
    e = steps.evaluate(spec, run, mlc, version=t["version"], holdout_uri=t["holdout_uri"], lake_root=env.lake)
    steps.promote(spec, run, mlc, verdict=steps.gate(spec, run, mlc, evaluation=e, lake_root=env.lake))
    return spec


# --- one trained store per session, copied per test --------------------------------------------

GOLDEN_MODEL = "churn"
GOLDEN_DAYS = 7


def golden_end() -> dt.date:
    """The last day of the golden store's batches: yesterday, so a test's own batch is "today"."""
    return today() - dt.timedelta(days=1)


def env_at(root: Path) -> Env:
    """The lake, MLflow store and ledger laid out under ``root`` (as the ``env`` fixture does)."""
    return Env(
        root=root,
        lake=str(root / "lake"),
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        ledger_uri=f"sqlite:///{root / 'ledger.db'}",
    )


@pytest.fixture(scope="session")
def golden_store(tmp_path_factory) -> Path:
    """A lake, MLflow store and ledger where churn v1 was trained on a week of batches (ending
    yesterday) and promoted champion, made once per session: every test that only needs "a
    champion" copies it (``champion_env``) instead of training one."""
    root = tmp_path_factory.mktemp("golden")
    with pointed_at(root) as golden:
        train_champion(golden, GOLDEN_MODEL, end=golden_end(), days=GOLDEN_DAYS)
    return root


@contextlib.contextmanager
def pointed_at(root: Path) -> Iterator[Env]:
    """The store under ``root`` (``env_at``), with the lake, MLflow, artifact and ledger settings
    pointing at it until the block ends: for stores built once per session or module."""
    env = env_at(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLCYCLE_LAKE_ROOT", env.lake)
        mp.setenv("MLFLOW_TRACKING_URI", env.tracking_uri)
        mp.setenv("MLCYCLE_ARTIFACT_ROOT", str(root / "mlartifacts"))
        mp.setenv("MLCYCLE_LEDGER_URI", env.ledger_uri)
        yield env


def relocate(src: Path, dst: Path) -> None:
    """Copy a store made under ``src`` to ``dst`` and point every absolute path it holds (MLflow's
    artifact locations and tags, the ledger's evidence URIs, the lake's manifests and reports) at
    the copy, so the copy is independent of the original."""
    import sqlite3

    old, new = str(src), str(dst)
    for name in ("lake", "mlartifacts"):
        shutil.copytree(src / name, dst / name, dirs_exist_ok=True)
    for db in ("mlflow.db", "ledger.db"):
        shutil.copy2(src / db, dst / db)
        with sqlite3.connect(dst / db) as conn:
            tables = [r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")]
            for table in tables:
                columns = [
                    r[1]
                    for r in conn.execute(f'pragma table_info("{table}")')
                    if "CHAR" in r[2].upper() or "TEXT" in r[2].upper()
                ]
                for column in columns:
                    conn.execute(
                        f'update "{table}" set "{column}" = replace("{column}", ?, ?) where instr("{column}", ?) > 0',
                        (old, new, old),
                    )
    for path in (dst / "lake").rglob("*"):
        if path.suffix in (".json", ".html") and old in (text := path.read_text()):
            path.write_text(text.replace(old, new))


@pytest.fixture
def champion_env(env: Env, golden_store: Path) -> Env:
    """This test's isolated store, holding a copy of the golden store (churn v1 champion)."""
    relocate(golden_store, env.root)
    return env
