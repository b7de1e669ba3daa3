"""monitor_<model> with dag.test(): stable data, drift, cooldown, a batch that fails validation.

The champion is trained with the plain steps (fast, no Airflow needed); the monitoring
runs are real DAG runs. ``as_of`` moves the guardrails' clock forward past the cooldown
without waiting 12 hours.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tests.conftest import today, write_batches

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "churn"
DAG_ID = f"monitor_{MODEL}"


def later(hours: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)).isoformat()


@pytest.fixture
def champion(champion_env):
    """A champion trained on last week's batches, with its reference profile (a copy of the
    session's golden store)."""
    return champion_env


def land(env, **options) -> Path:
    (path,) = write_batches(env.lake, MODEL, today(), days=1, rows=3000, seed=5, **options)
    return path


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def check_result(dag_run) -> dict:
    (ti,) = [t for t in dag_run.get_task_instances() if t.task_id == "check_drift"]
    return ti.xcom_pull(task_ids="check_drift")


def retrain_events(dag_run=None) -> list:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = (
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == f"mlcycle://{MODEL}/retrain")
        )
        if dag_run is not None:
            query = query.where(AssetEvent.source_run_id == dag_run.run_id)
        events = session.scalars(query).all()
        return [(e.extra, e.source_run_id) for e in events]


def test_stable_batch_requests_no_retrain(dags, champion):
    land(champion)
    dr = dags[DAG_ID].test(run_conf={"as_of": later(13)})
    assert dr.state == "success", states(dr)
    out = check_result(dr)
    assert out["retrain"] is False
    assert out["blocked_by"] == ["drift"]
    assert out["reason"].startswith("no retrain:")
    assert states(dr)["request_retrain"] == "skipped"
    assert retrain_events(dr) == []

    from mlcycle.store import ledger

    (decision,) = ledger.decisions(MODEL, uri=champion.ledger_uri)
    assert decision.requested is False and decision.run_id == dr.run_id


def test_drifted_batch_requests_a_retrain_with_its_reason(dags, champion):
    land(champion, drift=1.0)
    dr = dags[DAG_ID].test(run_conf={"as_of": later(13)})
    assert dr.state == "success", states(dr)
    out = check_result(dr)
    assert out["retrain"] is True, out
    assert states(dr)["request_retrain"] == "success"
    ((extra, source),) = retrain_events(dr)
    assert source == dr.run_id
    assert extra["reason"].startswith("retrain requested: ") and "drift" in extra["reason"]
    assert extra["monitor_run_id"] == dr.run_id

    from mlcycle.core.run import run_key

    report = json.loads(
        (Path(champion.lake) / MODEL / "runs" / run_key(dr.run_id) / "drift.json").read_text()
    )
    drifted = {f["feature"] for f in report["drift"]["features"] if f.get("drifted")}
    assert {"contract", "monthly_charges"} & drifted, drifted
    assert "DRIFT" in (Path(champion.lake) / MODEL / "runs" / run_key(dr.run_id) / "drift.html").read_text()

    from mlcycle.store import registry

    mlc = registry.client(champion.tracking_uri)
    exp = mlc.get_experiment_by_name(f"{MODEL}-monitoring")
    (run,) = mlc.search_runs([exp.experiment_id], filter_string=f"tags.`airflow.run_id` = '{dr.run_id}'")
    assert run.data.metrics["retrain_requested"] == 1.0


def test_the_same_drift_inside_the_cooldown_requests_nothing(dags, champion):
    land(champion, drift=1.0)
    first = dags[DAG_ID].test(run_conf={"as_of": later(13)})
    assert check_result(first)["retrain"] is True
    # The champion was trained minutes ago in real time: at "now" the 12 h cooldown holds.
    second = dags[DAG_ID].test(run_conf={"as_of": None})  # explicit: dag.test() keeps the last conf
    out = check_result(second)
    assert out["retrain"] is False
    assert out["blocked_by"] == ["cooldown"]
    assert retrain_events(second) == []

    # The model page's monitoring history: both checks, oldest first, with what they measured.
    from mlcycle.core.spec import get_spec
    from mlcycle.flows.overview import model_overview
    from mlcycle.store import registry

    checks = model_overview(
        get_spec(MODEL), registry.client(champion.tracking_uri), ledger_uri=champion.ledger_uri
    )["checks"]
    assert [c["run_id"] for c in checks] == [first.run_id, second.run_id]
    assert [c["retrain"] for c in checks] == [True, False]
    assert checks[0]["drift_share"] > 0 and checks[0]["champion_version"] == "1"


def test_weekly_cap_blocks_after_the_allowed_retrains(dags, champion):
    from mlcycle.core.spec import get_spec

    cap = get_spec(MODEL).monitor.max_retrains_per_week
    land(champion, drift=1.0)
    outcomes = [
        check_result(dags[DAG_ID].test(run_conf={"as_of": later(13)}))["retrain"] for _ in range(cap + 1)
    ]
    assert outcomes == [True] * cap + [False]


def test_a_batch_that_fails_validation_never_triggers_a_retrain(dags, champion, tmp_path):
    land(champion, drift=1.0, corrupt=True)
    dr = dags[DAG_ID].test(run_conf={"as_of": later(13)})
    s = states(dr)
    assert s["validate_newest"] == "failed"
    assert s["check_drift"] == "success"  # runs anyway, to record why nothing happens
    out = check_result(dr)
    assert out["retrain"] is False
    assert "newest_batch_valid" in out["blocked_by"]
    assert retrain_events(dr) == []
