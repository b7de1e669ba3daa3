"""The drift → retrain loop on a real Airflow: `airflow standalone` (scheduler, dag-processor,
api-server, LocalExecutor) in a throw-away home, driven through the REST API.

A drifted batch lands; monitor_churn (triggered through the API) asks for a retrain with
an asset event; the scheduler starts train_churn from that event; the new version records
that an asset started it and why.
"""

from __future__ import annotations

import datetime as dt

import pytest

from tests.conftest import train_champion, write_batches
from tests.services.standalone import Standalone, wait_for_run

pytestmark = [pytest.mark.slow, pytest.mark.integration]

MODEL = "churn"


@pytest.fixture
def airflow(env, tmp_path):
    """`airflow standalone` on a free port, with this test's lake, MLflow store and ledger (the
    ``env`` fixture put them in the environment the children inherit)."""
    stack = Standalone(tmp_path, dag_ids={f"train_{MODEL}", f"monitor_{MODEL}"})
    try:
        yield stack.start(timeout=240)
    finally:
        stack.stop()


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
