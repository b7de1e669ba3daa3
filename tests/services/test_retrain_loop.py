"""The drift → retrain loop on a real Airflow: `airflow standalone` (scheduler, dag-processor,
api-server, LocalExecutor) in a throw-away home, driven through the REST API.

A drifted batch lands; monitor_churn (triggered through the API) asks for a retrain with
an asset event; the scheduler starts train_churn from that event; the new version records
that an asset started it and why.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, train_champion, write_batches
from tests.services.topology import Api, free_port

pytestmark = [pytest.mark.slow, pytest.mark.integration]

MODEL = "churn"


@pytest.fixture
def airflow(env, tmp_path):
    """`airflow standalone` on a free port, with this test's lake, MLflow store and ledger."""
    home = tmp_path / "airflow-home"
    home.mkdir()
    port = free_port()
    bindir = Path(sys.executable).parent
    child_env = {
        **os.environ,
        "PATH": f"{bindir}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO / "plugins"),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    }
    log = (tmp_path / "standalone.log").open("w")
    proc = subprocess.Popen(
        [str(bindir / "airflow"), "standalone"], env=child_env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    api = Api(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 240
        passwords = home / "simple_auth_manager_passwords.json.generated"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(
                    f"airflow standalone exited:\n{(tmp_path / 'standalone.log').read_text()[-4000:]}"
                )
            try:
                if passwords.exists():
                    pw = json.loads(passwords.read_text())["admin"]
                    api.token = api.call("POST", "/auth/token", {"username": "admin", "password": pw})[
                        "access_token"
                    ]
                    dags = {d["dag_id"] for d in api.call("GET", "/api/v2/dags?limit=100")["dags"]}
                    if {f"monitor_{MODEL}", f"train_{MODEL}"} <= dags:
                        break
            except (OSError, urllib.error.URLError, KeyError, json.JSONDecodeError):
                pass
            time.sleep(2)
        else:
            pytest.fail(f"Airflow did not come up:\n{(tmp_path / 'standalone.log').read_text()[-4000:]}")
        yield api
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def wait_for_run(api: Api, dag_id: str, *, run_type: str | None = None, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=-run_after&limit=5")["dag_runs"]
        runs = [r for r in runs if run_type is None or r["run_type"] == run_type]
        if runs and runs[0]["state"] in ("success", "failed"):
            return runs[0]
        time.sleep(3)
    pytest.fail(f"no finished {run_type or ''} run of {dag_id} within {timeout:.0f} s")


def test_drift_asks_for_a_retrain_and_the_scheduler_starts_it(airflow, env):
    from mlcycle.store import registry

    today = dt.datetime.now(dt.UTC).date()
    train_champion(env, MODEL, end=today - dt.timedelta(days=1), days=5)
    # Unpausing train_churn makes the scheduler run its latest missed cron slot (catchup=False):
    # that run sees the champion's own data and skips training. Let it finish first.
    airflow.call("PATCH", f"/api/v2/dags/train_{MODEL}", {"is_paused": False})
    nightly = wait_for_run(airflow, f"train_{MODEL}", run_type="scheduled")
    assert nightly["state"] == "success"

    write_batches(env.lake, MODEL, today, days=1, rows=3000, drift=1.0, seed=5)
    airflow.call("PATCH", f"/api/v2/dags/monitor_{MODEL}", {"is_paused": False})
    as_of = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=13)).isoformat()
    airflow.call(
        "POST", f"/api/v2/dags/monitor_{MODEL}/dagRuns", {"logical_date": None, "conf": {"as_of": as_of}}
    )
    monitor = wait_for_run(airflow, f"monitor_{MODEL}", run_type="manual")
    assert monitor["state"] == "success"

    train = wait_for_run(airflow, f"train_{MODEL}", run_type="asset_triggered")
    assert train["state"] in ("success", "failed")  # the gate may refuse the drifted candidate
    mlc = registry.client(env.tracking_uri)
    v2 = registry.version_for_run(mlc, MODEL, f"train_{MODEL}", train["dag_run_id"])
    assert v2 is not None, "the asset-triggered run registered no version"
    assert v2.tags["trigger.kind"] == "asset"
    assert v2.tags["trigger.reason"].startswith("retrain requested: drift")

    # The plugin's pages are served by the api-server, behind its login.
    moves = airflow.call("GET", f"/mlcycle/ledger.json?model={MODEL}")
    assert moves[-1]["new_version"] == "1" and moves[-1]["action"] == "bootstrap"
