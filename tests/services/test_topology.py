"""The distributed topology of docker-compose.yaml, run for real: PostgreSQL, Redis, an S3 server
(moto), the MLflow server with basic-auth and proxied artifacts on the bucket, and Airflow's
api-server, scheduler, dag-processor, triggerer and two Celery workers, all configured from
compose's own environment block (tests/services/topology.py). Driven as a client would, through
Airflow's REST API with a FAB login, and checked on the MLflow server and in the bucket.

The tests share one topology (module scope) and run in order: a first champion trained while one
worker is SIGKILLed mid-task, then scoring spread over both workers across a PostgreSQL restart,
then monitoring. Skipped, with what to install, where the services are missing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.services.topology import BUCKET, Topology, missing_services

pytestmark = [pytest.mark.slow, pytest.mark.integration]

MODEL = "churn"
TRAIN, SCORE, MONITOR = f"train_{MODEL}", f"score_{MODEL}", f"monitor_{MODEL}"

if missing := missing_services():
    pytest.skip(
        "the distributed topology needs " + "; ".join(missing) + " (.ci/run installs them)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def topo(tmp_path_factory):
    topo = Topology(
        tmp_path_factory.mktemp("topology"),
        # Quicker loops than production, for a test that waits on them.
        extra_env={"MLCYCLE_RETRY_DELAY_SECONDS": "5"},
    )
    saved = {k: os.environ.get(k) for k in topo.client_env()}
    os.environ.update(topo.client_env())
    try:
        topo.start()
        topo.wait_for_dags({TRAIN, SCORE, MONITOR})
        topo.wait_for_workers()
        yield topo
    finally:
        topo.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    for name, proc in list(topo.procs.items()):
        assert proc.poll() is not None, f"{name} (pid {proc.pid}) still runs"


def s3():
    import boto3

    return boto3.client("s3", region_name="us-east-1")


def keys(prefix: str) -> list[str]:
    pages = s3().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def mlflow_client(topo: Topology):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=topo.mlflow_uri, registry_uri=topo.mlflow_uri)


def trigger(topo: Topology, dag_id: str, conf: dict) -> str:
    topo.api.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    run = topo.api.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
    return run["dag_run_id"]


def task_instances(topo: Topology, dag_id: str, run_id: str) -> list[dict]:
    return topo.api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")[
        "task_instances"
    ]


def wait_for(topo: Topology, what: str, check, timeout: float, describe=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if found := check():
                return found
        except urllib.error.URLError:
            pass  # the api-server between two PostgreSQL lives
        time.sleep(1)
    # The scheduler's and the workers' logs first: they say why a task did not move.
    first = ("scheduler", "worker-1", "worker-2")
    paths = sorted((topo.root / "logs").glob("*.log"), key=lambda p: (p.stem not in first, p.name))
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in paths)
    state = describe() if describe else ""
    pytest.fail(f"{what} within {timeout:.0f} s {state}; restarted: {topo.restarts}\n{logs}")


def finished(topo: Topology, dag_id: str, run_id: str, timeout: float = 300) -> dict:
    def done():
        run = topo.api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        return run if run["state"] in ("success", "failed") else None

    def task_states() -> str:
        try:
            tis = task_instances(topo, dag_id, run_id)
        except urllib.error.URLError as exc:
            return f"(task states unavailable: {exc})"
        return str([(t["task_id"], t["map_index"], t["state"], t["hostname"]) for t in tis])

    run = wait_for(topo, f"{dag_id} {run_id} did not finish", done, timeout, task_states)
    states = {ti["task_id"]: ti["state"] for ti in task_instances(topo, dag_id, run_id)}
    assert run["state"] == "success", f"{dag_id} {run_id}: {states}"
    return run


def test_the_api_and_the_tracking_server_refuse_anonymous_clients(topo):
    """FAB guards Airflow's API, basic-auth guards MLflow: no credentials, no answer."""
    for url in (f"{topo.api.base}/api/v2/dags", f"{topo.mlflow_uri}/api/2.0/mlflow/experiments/search"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code in (401, 403), url
    with pytest.raises(urllib.error.HTTPError) as wrong:
        topo.api.login("admin", "not-" + topo.admin[1])
    assert wrong.value.code in (401, 403)
    topo.api.login(*topo.admin)


def test_a_worker_killed_mid_training_the_run_still_makes_one_champion(topo):
    from tests.conftest import write_batches

    today = dt.datetime.now(dt.UTC).date()
    batches = write_batches(f"s3://{BUCKET}/lake", MODEL, today, days=5)
    assert len(batches) == 5 and len(keys(f"lake/{MODEL}/incoming/")) == 5

    # Unpausing starts the nightly slot that was missed (catchup=False) beside the triggered run;
    # one run at a time: the first to train makes the champion, the other finds nothing new.
    run_id = trigger(topo, TRAIN, {"reason": "first champion on the distributed topology"})

    def training():
        for run in topo.api.call("GET", f"/api/v2/dags/{TRAIN}/dagRuns?limit=10")["dag_runs"]:
            for ti in task_instances(topo, TRAIN, run["dag_run_id"]):
                if ti["task_id"] == "train_model" and ti["state"] == "running" and ti["hostname"]:
                    return ti
        return None

    ti = wait_for(topo, "train_model did not start", training, 240)
    victim, killed_run = ti["hostname"], ti["dag_run_id"]
    assert victim in ("worker-1", "worker-2"), ti
    time.sleep(4)  # inside the task: imports, reading the batches from S3, the fit
    topo.kill(victim)  # SIGKILL to the worker and its task processes: a lost machine

    runs = topo.api.call("GET", f"/api/v2/dags/{TRAIN}/dagRuns?limit=10")["dag_runs"]
    assert {r["dag_run_id"] for r in runs} >= {run_id, killed_run} and len(runs) <= 2, runs
    for r in runs:
        finished(topo, TRAIN, r["dag_run_id"], timeout=420)
    tries = topo.api.call(
        "GET", f"/api/v2/dags/{TRAIN}/dagRuns/{killed_run}/taskInstances/train_model/tries"
    )["task_instances"]
    by_try = {t["try_number"]: t for t in tries}
    assert by_try[1]["state"] != "success" and by_try[1]["hostname"] == victim, tries
    last = by_try[max(by_try)]
    survivor = "worker-2" if victim == "worker-1" else "worker-1"
    assert last["state"] == "success" and last["hostname"] == survivor, tries
    other = [r["dag_run_id"] for r in runs if r["dag_run_id"] != killed_run]
    for rid in other:  # identical data: nothing to learn
        (train_ti,) = [t for t in task_instances(topo, TRAIN, rid) if t["task_id"] == "train_model"]
        assert train_ti["state"] == "skipped", train_ti

    # Exactly one version and one ledger row, though the task ran twice.
    mlc = mlflow_client(topo)
    versions = mlc.search_model_versions(f"name='{MODEL}'")
    assert [v.version for v in versions] == ["1"]
    assert mlc.get_model_version_by_alias(MODEL, "champion").version == "1"
    import psycopg2

    with psycopg2.connect(topo.pg_url("mlcycle")) as conn, conn.cursor() as cur:
        cur.execute("SELECT new_version, action, run_id FROM mlcycle_promotion_ledger")
        assert cur.fetchall() == [("1", "bootstrap", killed_run)]

    # The artifacts went through the MLflow server's proxy into the bucket, and come back from it.
    import mlflow.artifacts

    got = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{MODEL}/1", dst_path=str(topo.root / "dl"), tracking_uri=topo.mlflow_uri
        )
    )
    assert (got / "MLmodel").is_file()
    assert any(k.endswith("MLmodel") for k in keys("mlartifacts/"))
    # The evidence of the run sits in the lake's bucket.
    evidence = keys(f"lake/{MODEL}/runs/")
    for name in ("manifest.json", "validation.json", "verdict.html", "verdict.json"):
        assert any(k.endswith(name) for k in evidence), (name, evidence)
    assert keys(f"lake/{MODEL}/trusted/")

    topo.start_worker(1 if victim == "worker-1" else 2)  # the restart policy brings it back
    topo.wait_for_workers()


def test_scoring_partitions_spread_over_both_workers_across_a_postgres_restart(topo):
    from tests.conftest import write_batches

    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    (batch,) = write_batches(f"s3://{BUCKET}/lake", MODEL, day, days=1, rows=4000, seed=11)
    uri = f"s3://{BUCKET}/lake/{MODEL}/incoming/{Path(str(batch)).name}"
    run_id = trigger(topo, SCORE, {"batch_uri": uri, "rows_per_partition": 1000})

    def validated():
        states = {ti["task_id"]: ti["state"] for ti in task_instances(topo, SCORE, run_id)}
        return states.get("validate_batch") == "success"

    wait_for(topo, "validate_batch did not succeed", validated, 240)
    topo.restart_postgres(down_s=5)  # between validation and scoring
    finished(topo, SCORE, run_id, timeout=300)
    # Components that lost the database exited and were started again by the restart policy
    # (compose: restart: unless-stopped); the run resumed where it was.

    parts = [ti for ti in task_instances(topo, SCORE, run_id) if ti["task_id"] == "score_partition"]
    assert len(parts) == 4 and all(ti["state"] == "success" for ti in parts)
    assert {ti["hostname"] for ti in parts} == {"worker-1", "worker-2"}, [ti["hostname"] for ti in parts]

    import pandas as pd

    predictions = keys(f"lake/{MODEL}/predictions/")
    assert len(predictions) == 1, predictions
    scored = pd.read_parquet(f"s3://{BUCKET}/{predictions[0]}")
    assert len(scored) == 4000 and set(scored["model_version"].astype(str)) == {"1"}


def test_monitoring_runs_on_the_topology(topo):
    as_of = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1, hours=13)).isoformat()
    run_id = trigger(topo, MONITOR, {"as_of": as_of})
    finished(topo, MONITOR, run_id, timeout=300)
    report = [k for k in keys(f"lake/{MODEL}/runs/") if k.endswith("drift.json")]
    assert report, "monitor_churn left no drift report in the bucket"
    drift = json.loads(s3().get_object(Bucket=BUCKET, Key=report[-1])["Body"].read())
    assert drift["model"] == MODEL
