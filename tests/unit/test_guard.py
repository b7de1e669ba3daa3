"""@champion moved outside the pipeline: found, recorded once as external, reverted when the spec
says so; a move the pipeline made (and recorded under the alias lock) is never flagged."""

from __future__ import annotations

import pytest

from mlcycle.core.run import RunInfo
from mlcycle.store import ledger, registry

MODEL = "churn"


def actions(env) -> list[tuple[str | None, str, str]]:
    return [(e.previous_version, e.new_version, e.action) for e in ledger.history(MODEL, uri=env.ledger_uri)]


@pytest.fixture
def moved_outside(champion_env):
    """v1 champion through the pipeline; v2 registered by hand and made champion by hand."""
    env = champion_env
    v1 = env.mlc.get_model_version(MODEL, "1")
    v2 = env.mlc.create_model_version(MODEL, source=v1.source, run_id=v1.run_id)
    env.mlc.set_registered_model_alias(MODEL, registry.CHAMPION, v2.version)
    return env


def guard(env, spec=None, run_id: str = "scheduled__1"):
    from mlcycle.core.spec import get_spec
    from mlcycle.flows.guard import guard_champion

    return guard_champion(
        spec or get_spec(MODEL), RunInfo(f"score_{MODEL}", run_id), env.mlc, ledger_uri=env.ledger_uri
    )


def test_a_champion_the_pipeline_put_there_passes(champion_env):
    before = actions(champion_env)
    out = guard(champion_env)
    assert out["ok"] is True and out["action"] is None and actions(champion_env) == before


def test_a_move_outside_the_pipeline_is_recorded_once_and_alerted(moved_outside):
    env = moved_outside
    out = guard(env)
    assert (out["ok"], out["action"]) == (False, "alert")
    assert (
        out["detail"]
        == "@champion is v2 but the pipeline last moved it to v1: it was moved outside the pipeline"
    )
    assert actions(env)[0] == ("1", "2", "external")
    entry = ledger.history(MODEL, uri=env.ledger_uri)[0]
    assert entry.actor == f"outside the pipeline:score_{MODEL}" and entry.run_id == "scheduled__1"
    guard(env, run_id="scheduled__2")  # the next run sees the same move: not recorded twice
    assert [a for a in actions(env) if a[2] == "external"] == [("1", "2", "external")]
    assert str(registry.version_by_alias(env.mlc, MODEL, registry.CHAMPION).version) == "2"  # left there


def test_the_spec_may_revert_it_to_the_last_gated_champion(moved_outside):
    from mlcycle.core.spec import get_spec

    env, spec = moved_outside, get_spec(MODEL)
    reverting = spec.model_copy(update={"gate": spec.gate.model_copy(update={"external_moves": "revert"})})
    out = guard(env, reverting)
    assert out["action"] == "revert" and out["detail"].endswith("; reverted to v1")
    assert str(registry.version_by_alias(env.mlc, MODEL, registry.CHAMPION).version) == "1"
    assert actions(env)[:2] == [("2", "1", "revert"), ("1", "2", "external")]
    assert guard(env, reverting, run_id="scheduled__2")["ok"] is True  # settled


def test_the_spec_names_only_alert_or_revert():
    from pydantic import ValidationError

    from mlcycle.core.spec import GateSpec

    with pytest.raises(ValidationError, match="'alert' or 'revert'"):
        GateSpec(primary_metric="roc_auc", external_moves="ignore")


def test_mlcycle_champion_warns_of_a_move_outside_the_pipeline(moved_outside, capsys):
    import json

    from mlcycle.cli import main

    assert main(["champion", MODEL, "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["alias_check"]["ok"] is False
    assert "WARNING: churn: @champion is v2 but the pipeline last moved it to v1" in out.err


def test_mlcycle_webhook_registers_one_webhook_per_url(env, monkeypatch, capsys):
    from mlcycle.cli import main

    url = "http://127.0.0.1:8080/mlcycle/webhooks/mlflow"
    # MLflow refuses webhooks to private addresses and plain http unless told (its SSRF guard).
    monkeypatch.setenv("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https")
    monkeypatch.setenv("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
    monkeypatch.setenv("MLCYCLE_MLFLOW_WEBHOOK_SECRET", "short")
    assert main(["webhook", url]) == 2 and "at least 16 characters" in capsys.readouterr().err
    monkeypatch.setenv("MLCYCLE_MLFLOW_WEBHOOK_SECRET", "s" * 32)
    assert main(["webhook", url]) == 0 and main(["webhook", url]) == 0  # again: updated, not doubled
    (hook,) = [w for w in env.mlc.list_webhooks() if w.url == url]
    assert [f"{e.entity.value}.{e.action.value}" for e in hook.events] == ["model_version_alias.created"]
