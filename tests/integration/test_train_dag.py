"""Whole train_<model> runs with dag.test() on a migrated SQLite DB, real MLflow and GX.

Each test gets its own lake, MLflow store and ledger (the ``env`` fixture), so the
scenarios are independent; the Airflow metadata DB is shared.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tests.conftest import REPO, today, write_batches

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "churn"
DAG_ID = f"train_{MODEL}"


@pytest.fixture
def dag(airflow_db):
    """A freshly parsed DAG per test: dag.test() folds a run's conf into the DAG's params."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


def run_dag(dag, logical_date: dt.datetime | None = None, **conf):
    kwargs = {"run_conf": {"reason": "integration test", **conf}}
    if logical_date is not None:
        kwargs["logical_date"] = logical_date
    return dag.test(**kwargs)


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def mlflow_client(env):
    from mlcycle.store import registry

    return registry.client(env.tracking_uri)


def versions(env) -> list[str]:
    mlc = mlflow_client(env)
    return sorted((str(v.version) for v in mlc.search_model_versions(f"name = '{MODEL}'")), key=int)


def alias(env, name: str) -> str | None:
    from mlcycle.store import registry

    mv = registry.version_by_alias(mlflow_client(env), MODEL, name)
    return str(mv.version) if mv else None


def ledger_entries(env):
    from mlcycle.store import ledger

    return ledger.history(MODEL, uri=env.ledger_uri)


def run_dir(env, dag_run) -> Path:
    from mlcycle.core.run import run_key

    return Path(env.lake) / MODEL / "runs" / run_key(dag_run.run_id)


def bootstrap_champion(dag, env):
    write_batches(env.lake, MODEL, today(), days=5)
    dr = run_dag(dag)
    assert dr.state == "success", states(dr)
    assert alias(env, "champion") == "1"
    return dr


def test_first_run_creates_champion_v1(dag, env):
    dr = bootstrap_champion(dag, env)
    assert set(states(dr).values()) == {"success"}
    assert versions(env) == ["1"]
    assert alias(env, "challenger") == "1"

    mv = mlflow_client(env).get_model_version(MODEL, "1")
    assert mv.tags["airflow.dag_id"] == DAG_ID
    assert mv.tags["airflow.run_id"] == dr.run_id
    assert len(mv.tags["data.digest"]) == 64
    assert mv.tags["trigger.reason"] == "integration test"
    assert mv.tags["trigger.kind"] == "manual"
    assert mv.tags["gate.verdict"] == "pass"
    assert mv.tags["gate.evidence"].endswith("verdict.html")

    verdict = json.loads((run_dir(env, dr) / "verdict.json").read_text())
    assert verdict["bootstrap"] is True and verdict["passed"] is True
    skipped = {r["name"] for r in verdict["rules"] if r["outcome"] == "skipped"}
    assert "regression:roc_auc" in skipped and "improvement:roc_auc" in skipped
    assert "PASSED" in (run_dir(env, dr) / "verdict.html").read_text()

    (entry,) = ledger_entries(env)
    assert (entry.previous_version, entry.new_version, entry.action) == (None, "1", "bootstrap")
    assert entry.reason == "integration test" and entry.run_id == dr.run_id

    # XCom stays small: URIs, ids and metric dicts, never data.
    for ti in dr.get_task_instances():
        value = ti.xcom_pull(task_ids=ti.task_id)
        assert len(json.dumps(value)) < 4000, ti.task_id

    # The MLflow run carries the training data as a dataset with its digest.
    run = mlflow_client(env).get_run(mv.run_id)
    contexts = {inp.tags[0].value for inp in run.inputs.dataset_inputs}
    assert {"training", "holdout"} <= contexts
    assert "holdout_roc_auc" in run.data.metrics


def test_comparable_run_follows_the_gate_policy(dag, env):
    from mlcycle.core.spec import get_spec

    bootstrap_champion(dag, env)
    write_batches(env.lake, MODEL, today() - dt.timedelta(days=5), days=1, seed=1)  # one more day, new digest
    dr = run_dag(dag)
    assert versions(env) == ["1", "2"]

    verdict = json.loads((run_dir(env, dr) / "verdict.json").read_text())
    policy = get_spec(MODEL).gate
    cand, champ = verdict["candidate_metrics"], verdict["champion_metrics"]
    sign = 1  # roc_auc: higher is better
    assert verdict["champion_version"] == "1" and verdict["bootstrap"] is False
    # Recompute the comparison rules from the numbers, independently of the gate code.
    expected = (
        cand["roc_auc"] >= policy.thresholds["roc_auc"].min
        and cand["log_loss"] <= policy.thresholds["log_loss"].max
        and cand["roc_auc"] - champ["roc_auc"] >= -policy.max_regression["roc_auc"]
        and champ["log_loss"] - cand["log_loss"] >= -policy.max_regression["log_loss"]
        and cand["roc_auc"] - champ["roc_auc"] >= policy.min_improvement["roc_auc"]
        and verdict["confidence"]["prob_not_worse"] >= policy.min_confidence
        and verdict["shadow"]["agreement"] >= policy.shadow.min_agreement
        and all(r["outcome"] != "fail" for r in verdict["rules"] if r["kind"] == "budget")
        and all(
            sign * (c["candidate"] - c["champion"]) >= -policy.slices.tolerance
            for c in verdict["slices"]
            if c["rows"] >= policy.slices.min_rows
            and c["candidate"] is not None
            and c["champion"] is not None
        )
    )
    judged = [r for r in verdict["rules"] if r["kind"] == "slice" and r["outcome"] != "skipped"]
    assert {r["name"].split("=")[0] for r in judged} == {f"slice:{c}" for c in policy.slices.columns}
    assert verdict["passed"] is expected
    assert alias(env, "champion") == ("2" if expected else "1")
    assert alias(env, "challenger") == "2"
    assert dr.state == "success"  # a refusal is an outcome: promote is skipped, nothing failed
    assert states(dr)["promote"] == ("success" if expected else "skipped")
    assert len(ledger_entries(env)) == (2 if expected else 1)


def test_corrupted_batch_is_quarantined_and_nothing_changes(dag, env, tmp_path):
    from mlcycle.data.generators import generate_batch
    from mlcycle.data.lake import write_parquet

    bootstrap_champion(dag, env)
    bad = tmp_path / "incoming-bad.parquet"
    write_parquet(generate_batch(MODEL, today(), 1500, corrupt=True), bad)

    dr = run_dag(dag, batch_uri=str(bad))
    assert dr.state == "failed"
    s = states(dr)
    assert s["resolve_data"] == "success"
    assert s["validate_data"] == "failed"
    assert {s[t] for t in ("train_model", "evaluate_model", "gate", "promote")} == {"upstream_failed"}
    assert versions(env) == ["1"]
    assert alias(env, "champion") == "1" and alias(env, "challenger") == "1"
    assert len(ledger_entries(env)) == 1

    from mlcycle.core.run import run_key

    quarantine = Path(env.lake) / MODEL / "quarantine" / run_key(dr.run_id)
    assert (quarantine / bad.name).read_bytes() == bad.read_bytes()
    result = json.loads((quarantine / "validation_result.json").read_text())
    assert result["success"] is False
    failures = result["batches"][0]["failures"]
    columns = {f["kwargs"].get("column") for f in failures}
    assert {"monthly_charges", "customer_id", "contract"} <= columns
    assert all(f["unexpected_count"] for f in failures if f["kwargs"].get("column") == "monthly_charges")


def _shuffled_batch(tmp_path) -> dict:
    from mlcycle.data.generators import generate_batch
    from mlcycle.data.lake import write_parquet

    worse = tmp_path / "shuffled.parquet"
    write_parquet(generate_batch(MODEL, today(), 6000, shuffle_labels=True, seed=3), worse)
    # The pre-training check refuses shuffled labels; accept the shift to test the gate.
    return {"batch_uri": str(worse), "accept_data_shift": True}


@pytest.mark.parametrize(
    ("make_conf", "must_fail"),
    [
        # Labels shuffled: no signal left, the absolute thresholds refuse it.
        (_shuffled_batch, {"threshold:roc_auc", "trusted:roc_auc"}),
        # A crippled estimator (one stump) on good data: worse than the champion on the same holdout.
        (lambda _: {"estimator_params": {"max_iter": 1, "max_leaf_nodes": 2}}, {"regression:roc_auc"}),
    ],
    ids=["labels-shuffled", "crippled-estimator"],
)
def test_worse_candidate_is_registered_but_not_promoted(dag, env, tmp_path, make_conf, must_fail):
    bootstrap_champion(dag, env)
    dr = run_dag(dag, **make_conf(tmp_path))
    s = states(dr)
    # A refusal is an outcome, not a crash: the gate succeeds, promote is skipped with the verdict.
    assert dr.state == "success"
    assert s["train_model"] == "success" and s["gate"] == "success" and s["promote"] == "skipped"
    gate_out = dr.get_task_instance("gate").xcom_pull(task_ids="gate")
    assert gate_out["passed"] is False and gate_out["summary"].startswith("FAIL: v2")
    assert versions(env) == ["1", "2"]
    assert alias(env, "champion") == "1"
    assert alias(env, "challenger") == "2"
    mv = mlflow_client(env).get_model_version(MODEL, "2")
    assert mv.tags["gate.verdict"] == "fail"
    assert mv.tags["gate.summary"].startswith("FAIL: v2")
    verdict = json.loads((run_dir(env, dr) / "verdict.json").read_text())
    failed = {r["name"] for r in verdict["rules"] if r["outcome"] == "fail"}
    assert must_fail <= failed
    assert len(ledger_entries(env)) == 1


def rerun_every_task(dag, dag_run) -> dict[str, str]:
    """Clear every task of an existing run and run it again, in order: the same run id, a
    new try (what "Clear" in the UI or a retry does). ``dag.test()`` always makes a new run."""
    from airflow import settings
    from airflow.models import TaskInstance
    from airflow.sdk.definitions.dag import _run_task
    from sqlalchemy import select

    session = settings.Session()
    for task in dag.topological_sort():
        ti = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag.dag_id,
                TaskInstance.run_id == dag_run.run_id,
                TaskInstance.task_id == task.task_id,
            )
        ).one()
        ti.try_number += 1
        ti.state = None
        session.commit()
        _run_task(ti=ti, task=task)
        session.expire_all()
    return {
        ti.task_id: str(ti.state)
        for ti in session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == dag_run.run_id
            )
        )
    }


def test_rerun_of_the_same_run_creates_no_duplicate(dag, env):
    dr = bootstrap_champion(dag, env)
    mlc = mlflow_client(env)
    run_ids_before = {
        r.info.run_id for r in mlc.search_runs([mlc.get_experiment_by_name(MODEL).experiment_id])
    }

    again = rerun_every_task(dag, dr)

    assert set(again.values()) == {"success"}, again
    assert versions(env) == ["1"]
    assert alias(env, "champion") == "1" and alias(env, "challenger") == "1"
    assert len(ledger_entries(env)) == 1
    run_ids_after = {
        r.info.run_id for r in mlc.search_runs([mlc.get_experiment_by_name(MODEL).experiment_id])
    }
    assert run_ids_after == run_ids_before, "a rerun must not log a second MLflow training run"


def test_identical_data_is_not_retrained_unless_forced(dag, env):
    bootstrap_champion(dag, env)
    again = run_dag(dag)
    assert again.state == "success"
    assert states(again)["train_model"] == "skipped"
    assert versions(env) == ["1"]

    forced = run_dag(dag, force=True)
    assert states(forced)["train_model"] == "success"
    assert versions(env) == ["1", "2"]


def test_a_rerun_by_logical_date_reads_the_window_of_that_night(dag, env):
    """``airflow dags test train_churn 2026-11-25T03:00:00+00:00`` (here ``dag.test(logical_date=)``)
    resolves the window ending on the logical date's day, not on the day the rerun happens; later
    batches already in the lake are left out. Only resolve_data runs (the rest is marked success)."""
    from mlcycle.flows import train

    write_batches(env.lake, MODEL, dt.date(2026, 11, 30), days=10, rows=50)
    logical = dt.datetime(2026, 11, 25, 3, tzinfo=dt.UTC)
    dr = dag.test(
        logical_date=logical, run_conf={"reason": "rerun"}, mark_success_pattern=r"(?!resolve_data$).*"
    )
    assert dr.state == "success", states(dr)
    manifest = train.read_manifest(str(run_dir(env, dr) / "manifest.json"))
    assert manifest.window_end == logical.date().isoformat() == "2026-11-25" != today().isoformat()
    days = [Path(b).name for b in manifest.batches]
    assert days[-1] == "2026-11-25.parquet" and "2026-11-26.parquet" not in days


def test_a_runs_gate_overrides_decide_and_are_recorded(dag, env):
    """A one-off stricter threshold from the form refuses what the spec would pass, and says so."""
    write_batches(env.lake, MODEL, today(), days=5)
    dr = run_dag(dag, gate_overrides={"thresholds": {"roc_auc": {"min": 0.99}}})
    s = states(dr)
    assert dr.state == "success" and s["gate"] == "success" and s["promote"] == "skipped", s
    verdict = json.loads((run_dir(env, dr) / "verdict.json").read_text())
    assert verdict["overrides"] == {"thresholds": {"roc_auc": {"min": 0.99}}}
    rule = next(r for r in verdict["rules"] if r["name"] == "threshold:roc_auc")
    assert (rule["outcome"], rule["limit"]) == ("fail", 0.99)
    tags = mlflow_client(env).get_model_version(MODEL, "1").tags
    assert tags["gate.verdict"] == "fail" and "gate overrides of this run" in tags["gate.summary"]
    assert alias(env, "champion") is None and ledger_entries(env) == []
