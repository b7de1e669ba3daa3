"""rollback_<model> with dag.test(): back to the previous champion, to a named version, refused
targets (never gated, unknown, no reason), each recorded in the ledger or changing nothing.

One registry per test: v1 champion (bootstrap), v2 promoted over it, v3 refused by its gate;
every version a real trained model (the checks load them)."""

from __future__ import annotations

import pytest

from tests.conftest import REPO, today, train_champion

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "churn"


@pytest.fixture
def dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag.dags[f"rollback_{MODEL}"]


@pytest.fixture
def three_versions(env):
    """v1 (bootstrap) then v2 (promoted) as champions, v3 refused by its gate; real models."""
    from mlcycle.core.run import RunInfo
    from mlcycle.flows import train as steps
    from mlcycle.store import registry

    spec = train_champion(env, MODEL, end=today(), days=3)
    mlc = env.mlc
    for version, verdict in (("2", "pass"), ("3", "fail")):
        run = RunInfo(f"train_{MODEL}", f"setup-v{version}", reason="test setup")
        m = steps.resolve(spec, run, lake_root=env.lake, as_of=today())
        t = steps.train(spec, run, mlc, manifest_uri=m["manifest_uri"], lake_root=env.lake, force=True)
        assert t["version"] == version
        registry.set_version_tags(mlc, MODEL, version, {registry.TAG_VERDICT: verdict})
    steps.promote(
        spec, RunInfo(f"train_{MODEL}", "setup-v2", reason="v2 passed"), mlc,
        verdict={"passed": True, "version": "2", "champion_version": "1", "bootstrap": False,
                 "summary": "PASS: v2 (test setup)", "report_uri": None},
        ledger_uri=env.ledger_uri, lake_root=env.lake,
    )  # fmt: skip
    assert champion(env) == "2"
    return env


def champion(env) -> str | None:
    from mlcycle.store import registry

    mv = registry.version_by_alias(env.mlc, MODEL, registry.CHAMPION)
    return str(mv.version) if mv else None


def moves(env) -> list[tuple[str | None, str, str]]:
    from mlcycle.store import ledger

    return [(e.previous_version, e.new_version, e.action) for e in ledger.history(MODEL, uri=env.ledger_uri)]


def test_back_to_the_previous_champion_recorded_with_who_and_why(dag, three_versions):
    env = three_versions
    dr = dag.test(run_conf={"reason": "v2 misroutes premium customers"})
    assert dr.state == "success"
    assert champion(env) == "1"
    assert moves(env)[0] == ("2", "1", "rollback")
    from mlcycle.store import ledger

    entry = ledger.history(MODEL, uri=env.ledger_uri)[0]
    assert entry.reason == "v2 misroutes premium customers" and entry.run_id == dr.run_id
    assert entry.actor.endswith(f":rollback_{MODEL}")
    out = dr.get_task_instance("rollback").xcom_pull(task_ids="rollback")
    assert out["version"] == "1" and out["previous_version"] == "2" and out["moved"] is True
    assert (
        any(c.startswith("gate: passed") for c in out["checks"])
        and "loads: the skops model loads" in out["checks"]
    )


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("3", r"v3 never passed a gate \(gate.verdict=fail\).*set force with a reason"),
        ("99", r"v99 does not exist \(versions: 1, 2, 3\); pick one of them"),
        ("2", r"v2 is already the champion; nothing to roll back"),
    ],
    ids=["never-gated", "unknown", "already-champion"],
)
def test_a_refused_target_says_why_and_changes_nothing(three_versions, version, message):
    from mlcycle.core.errors import RollbackError
    from mlcycle.core.run import RunInfo
    from mlcycle.core.spec import get_spec
    from mlcycle.flows import rollback

    env = three_versions
    before = moves(env)
    run = RunInfo(f"rollback_{MODEL}", "manual__bad", reason="try a bad target")
    with pytest.raises(RollbackError, match=message):
        rollback.rollback(get_spec(MODEL), run, env.mlc, version=version, ledger_uri=env.ledger_uri)
    assert champion(env) == "2" and moves(env) == before


def test_a_refused_rollback_run_fails_without_moving_anything(dag, three_versions):
    env = three_versions
    before = moves(env)
    dr = dag.test(run_conf={"reason": "try a version the gate refused", "version": 3})
    assert dr.state == "failed" and str(dr.get_task_instance("rollback").state) == "failed"
    assert champion(env) == "2" and moves(env) == before


def test_the_first_champion_has_no_previous_one(env):
    from mlcycle.core.errors import RollbackError
    from mlcycle.core.run import RunInfo
    from mlcycle.flows import rollback

    spec = train_champion(env, MODEL, end=today(), days=2)
    with pytest.raises(
        RollbackError, match=r"v1 is the first champion: there is no previous one; name the version"
    ):
        rollback.rollback(
            spec, RunInfo(f"rollback_{MODEL}", "r", reason="why not"), env.mlc, ledger_uri=env.ledger_uri
        )


def test_force_rolls_back_to_a_version_that_never_passed(dag, three_versions):
    env = three_versions
    dr = dag.test(
        run_conf={"reason": "v3 is the only one trained on the new schema", "version": 3, "force": True}
    )
    assert dr.state == "success" and champion(env) == "3"
    from mlcycle.store import ledger

    entry = ledger.history(MODEL, uri=env.ledger_uri)[0]
    assert (entry.new_version, entry.action) == ("3", "rollback") and entry.reason.endswith("(forced)")


def test_a_rollback_needs_a_reason(dag):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="is too short"):
        dag.params.get_param("reason").resolve("")


def test_a_retry_after_the_move_but_before_its_record_records_it(three_versions):
    """A try that moved @champion and stopped before its ledger row committed (a killed worker):
    the retry finds the alias at its target and records the move instead of refusing."""
    from mlcycle.core.run import RunInfo
    from mlcycle.core.spec import get_spec
    from mlcycle.flows import rollback
    from mlcycle.store import registry

    env = three_versions
    registry.set_alias(env.mlc, MODEL, registry.CHAMPION, "1")  # what the stopped try did
    run = RunInfo(f"rollback_{MODEL}", "manual__retried", reason="v2 misroutes premium customers")
    out = rollback.rollback(get_spec(MODEL), run, env.mlc, ledger_uri=env.ledger_uri)
    assert (out["version"], out["previous_version"], out["moved"], out["ledger_recorded"]) == (
        "1",
        "2",
        False,
        True,
    )
    assert "not recorded (from v2): recorded now" in out["checks"][-1]
    assert moves(env)[0] == ("2", "1", "rollback") and champion(env) == "1"


def test_the_previous_champion_of_one_set_outside_the_pipeline_is_the_last_gated_one(three_versions):
    from mlcycle.core.run import RunInfo
    from mlcycle.core.spec import get_spec
    from mlcycle.flows import guard, rollback
    from mlcycle.store import registry

    env = three_versions
    registry.set_alias(env.mlc, MODEL, registry.CHAMPION, "3")  # by hand: v3 failed its gate
    guard.guard_champion(get_spec(MODEL), RunInfo(f"guard_{MODEL}", "g1"), env.mlc, ledger_uri=env.ledger_uri)
    assert moves(env)[0] == ("2", "3", "external")
    run = RunInfo(f"rollback_{MODEL}", "manual__undo", reason="undo the move made by hand")
    out = rollback.rollback(get_spec(MODEL), run, env.mlc, ledger_uri=env.ledger_uri)
    assert (out["version"], out["previous_version"], out["moved"]) == ("2", "3", True)
    assert champion(env) == "2" and moves(env)[0] == ("3", "2", "rollback")


def test_the_model_page_shows_verdicts_flags_an_external_move_and_offers_rollback(dag, three_versions):
    import re

    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from mlcycle.store import registry
    from mlcycle_airflow.webapp import create_app

    env = three_versions
    app = create_app()
    app.dependency_overrides[get_user] = object
    app.dependency_overrides[app.state.dag_reader] = lambda: lambda dag_id: True
    ui = TestClient(app)

    page = ui.get(f"/models/{MODEL}").text
    rows = re.findall(r'<tr class="version (\w+)( champion)?">\s*<td><a [^>]*>v(\d+)</a>', page)
    assert rows == [("fail", "", "3"), ("pass", " champion", "2"), ("pass", "", "1")]
    assert "as the ledger recorded" in page and "MOVED OUTSIDE" not in page
    assert re.findall(r'data-version="(\d+)"', page) == ["1"]  # gated and not the champion
    assert 'data-dag="rollback_churn"' in page and "<svg" in page  # the rollback form, a metric chart

    registry.set_alias(env.mlc, MODEL, registry.CHAMPION, "3")  # behind the pipeline's back
    page = ui.get(f"/models/{MODEL}").text
    assert "MOVED OUTSIDE THE PIPELINE" in page
    assert "@champion is v3 but the pipeline last moved it to v2" in page

    registry.set_alias(env.mlc, MODEL, registry.CHAMPION, "2")
    dr = dag.test(run_conf={"reason": "v2 misroutes premium customers", "version": 1})
    assert dr.state == "success"
    page = ui.get(f"/models/{MODEL}").text
    assert "@champion is v1, as the ledger recorded" in page and "v2 misroutes premium customers" in page
    assert (
        ui.get("/dags/train_churn/model", follow_redirects=False).headers["location"]
        == "/mlcycle/models/churn"
    )
    assert ui.get("/dags/example_bash_operator/model").status_code == 404
    assert "no model 'nope'" in ui.get("/models/nope").text
    assert 'href="/mlcycle/models/churn"' in ui.get("/models").text
