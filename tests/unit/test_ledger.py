"""The promotion ledger: append-only, newest first, idempotent per move, durable across processes."""

from __future__ import annotations

import datetime as dt

import pytest

from mlcycle.store import ledger


def entry(model: str = "churn", new: str = "1", previous: str | None = None, **fields) -> ledger.Entry:
    values = {
        "model": model,
        "alias": "champion",
        "previous_version": previous,
        "new_version": new,
        "action": "promote" if previous else "bootstrap",
        "actor": "airflow:train_churn",
        "reason": "gate passed",
        "evidence_uri": f"/lake/{model}/runs/r{new}/verdict.html",
        "verdict": "PASS",
        "dag_id": f"train_{model}",
        "run_id": f"manual__run{new}",
    }
    values.update(fields)
    return ledger.Entry(**values)


def test_append_then_history_newest_first(env):
    """Moves come back newest first, with every field as written and an id and a timestamp."""
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert ledger.append(entry(new="1"))
    assert ledger.append(entry(new="2", previous="1"))
    assert ledger.append(entry(new="3", previous="2"))
    rows = ledger.history("churn")
    assert [(r.previous_version, r.new_version) for r in rows] == [("2", "3"), ("1", "2"), (None, "1")]
    assert [r.action for r in rows] == ["promote", "promote", "bootstrap"]
    assert rows[0].id > rows[1].id > rows[2].id
    newest = rows[0]
    assert newest.evidence_uri == "/lake/churn/runs/r3/verdict.html"
    assert newest.run_id == "manual__run3"
    assert newest.created_at.replace(tzinfo=None) >= before - dt.timedelta(seconds=1)
    assert newest.to_dict()["created_at"] == newest.created_at.isoformat()


def test_history_limit(env):
    """``limit`` keeps the newest rows."""
    for v in range(1, 6):
        ledger.append(entry(new=str(v)))
    assert [r.new_version for r in ledger.history("churn", limit=2)] == ["5", "4"]


@pytest.mark.parametrize("run_id", ["manual__2026-01-01T00:00:00+00:00", None])
def test_append_is_idempotent(env, run_id):
    """The same move of the same run (or of no run) is recorded once; the retry returns False."""
    assert ledger.append(entry(new="4", previous="3", run_id=run_id)) is True
    assert ledger.append(entry(new="4", previous="3", run_id=run_id, reason="retry")) is False
    rows = ledger.history("churn")
    assert len(rows) == 1
    assert rows[0].reason == "gate passed"


@pytest.mark.parametrize(
    "change",
    [{"run_id": "manual__other"}, {"action": "rollback"}, {"alias": "challenger"}, {"new_version": "5"}],
)
def test_a_different_move_is_recorded(env, change):
    """A move differing in run, action, alias or version is a new row."""
    assert ledger.append(entry(new="4", previous="3"))
    assert ledger.append(entry(new="4", previous="3", **change))
    assert len(ledger.history("churn")) == 2


def test_history_filters_by_model(env):
    """history(model) returns only that model's moves; history() returns all."""
    ledger.append(entry("churn", new="1"))
    ledger.append(entry("demand", new="1"))
    ledger.append(entry("churn", new="2", previous="1"))
    assert [r.new_version for r in ledger.history("churn")] == ["2", "1"]
    assert [r.model for r in ledger.history("demand")] == ["demand"]
    assert [r.model for r in ledger.history()] == ["churn", "demand", "churn"]
    assert ledger.history("fraud") == []


def test_survives_a_new_engine(env):
    """Rows persist in the database: a fresh engine (a new process) reads them and keeps idempotency."""
    ledger.append(entry(new="1"))
    ledger.append(entry(new="2", previous="1"))
    ledger._engine.cache_clear()
    rows = ledger.history("churn")
    assert [r.new_version for r in rows] == ["2", "1"]
    assert ledger.append(entry(new="2", previous="1")) is False
    assert ledger.append(entry(new="3", previous="2")) is True
    assert [r.new_version for r in ledger.history("churn")] == ["3", "2", "1"]


def test_explicit_uri_is_used(env, tmp_path):
    """An explicit uri writes to that database, not the configured one."""
    other = f"sqlite:///{tmp_path / 'elsewhere' / 'ledger.db'}"
    ledger.append(entry(new="9"), other)
    assert [r.new_version for r in ledger.history("churn", other)] == ["9"]
    assert ledger.history("churn") == []
    assert (tmp_path / "elsewhere" / "ledger.db").is_file()


@pytest.mark.parametrize(
    ("champion", "moved_to", "ok", "detail"),
    [
        (None, [], True, "no champion yet"),
        ("2", ["1", "2"], True, "@champion is v2, as the ledger recorded"),
        ("3", [], False, "@champion is v3 but the pipeline never moved it"),
        ("3", ["1", "2"], False, "@champion is v3 but the pipeline last moved it to v2"),
        (None, ["1"], False, "@champion is unset but the pipeline last moved it to v1"),
    ],
    ids=["nothing", "as-recorded", "never-moved", "moved-outside", "deleted-outside"],
)
def test_the_alias_check_tells_a_move_outside_the_pipeline(champion, moved_to, ok, detail):
    from mlcycle.flows.guard import alias_check

    entries = [
        ledger.Entry(
            model="churn", alias="champion", previous_version=None, new_version=v, action="promote",
            actor="t", reason="r", evidence_uri=None, verdict=None, dag_id=None, run_id=None,
        )
        for v in reversed(moved_to)  # newest first, as ledger.history returns them
    ]  # fmt: skip
    superseded = ledger.Entry(
        model="churn", alias="champion", previous_version=None, new_version="9", action="superseded",
        actor="t", reason="lost the race", evidence_uri=None, verdict=None, dag_id=None, run_id=None,
    )  # fmt: skip
    check = alias_check(champion, [superseded, *entries])
    assert check["ok"] is ok and check["detail"].startswith(detail)
