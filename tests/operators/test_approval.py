"""The approval step between gate and promote: who is asked, what they see, what their answer
(or no answer) does to promote and the ledger. The wait itself, in Airflow's Required Actions,
is exercised in a real browser (tests/ui/test_control_room.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from mlcycle_airflow.approval import ApprovePromotionOperator
from mlcycle_airflow.operators import PromoteModelOperator
from tests.operators.test_operators import MODEL, task_context

POLICY = {"required": True, "timeout_hours": 0.5, "approvers": ["alice"]}


def verdict(passed: bool = True, approval: dict | None = POLICY) -> dict:
    return {
        "passed": passed, "version": "2", "champion_version": "1", "bootstrap": False,
        "summary": "PASS: v2 roc_auc 0.86 (champion 0.85)" if passed else "FAIL: v2 roc_auc 0.61 below 0.7",
        "verdict_uri": "/lake/churn/runs/r/verdict.json", "report_uri": "/lake/churn/runs/r/verdict.html",
        "overrides": None, "approval": approval if passed else None,
    }  # fmt: skip


def answer(option: str | None, *, by: str | None = "alice", comment: str | None = None) -> dict:
    """What Airflow resumes the task with (``HITLDetail.as_resume_event_payload``): a person's
    answer, or (``option`` None) the timeout sweep applying the default."""
    return {
        "chosen_options": [option or "Reject"],
        "params_input": {"comment": comment},
        "responded_at": dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC),
        "responded_by_user": {"id": by, "name": by} if option and by else None,
        "timedout": option is None,
    }


def operator(v: dict) -> ApprovePromotionOperator:
    return ApprovePromotionOperator(task_id="approve", model=MODEL, verdict=v, lake_root="/lake")


@pytest.mark.parametrize(
    ("v", "detail"),
    [
        (verdict(approval={"required": False, "timeout_hours": 24, "approvers": []}), "does not require"),
        (verdict(passed=False), "the gate refused"),
    ],
    ids=["not-required", "refused"],
)
def test_nobody_is_asked_when_the_gate_does_not_require_it_or_refused(v, detail):
    out = operator(v).execute(task_context())
    assert out["required"] is False and out["approved"] is None and detail in out["detail"]


def test_the_form_has_only_a_comment_and_rejects_by_default():
    op = operator(verdict())
    assert op.options == ["Approve", "Reject"] and op.defaults == ["Reject"]
    assert list(op.serialized_params) == ["comment"]  # none of the DAG's own params


def test_the_question_gives_the_verdict_and_links_to_its_evidence(env):
    body = operator(verdict())._body()
    assert "**churn v2** passed its gate; the champion is v1" in body
    assert "PASS: v2 roc_auc 0.86" in body
    assert "(/mlcycle/evidence/churn/runs/r/verdict.html)" in body
    assert "/#/models/churn/versions/2)" in body and "(/mlcycle/models/churn)" in body


@pytest.mark.parametrize(
    ("event", "approved", "detail"),
    [
        (answer("Approve", comment="checked the slices"), True, "approved by alice: checked the slices"),
        (answer("Reject"), False, "rejected by alice (no comment)"),
        (answer(None), False, "no answer within 0.5 h: rejected by default"),
    ],
    ids=["approve", "reject", "timeout"],
)
def test_an_answer_becomes_an_approval_result(event, approved, detail):
    out = operator(verdict()).execute_complete(task_context(), event)
    assert out["required"] is True and out["approved"] is approved and out["detail"] == detail
    assert out["timed_out"] is (event["responded_by_user"] is None)
    assert out["responded_at"] == "2026-12-02T12:00:00+00:00"


@pytest.mark.parametrize(
    ("approval", "message"),
    [
        (operator(verdict()).execute_complete(task_context(), answer("Reject", comment="slice drop")),
         "passed its gate but was not approved: rejected by alice: slice drop"),
        (operator(verdict()).execute_complete(task_context(), answer(None)),
         "not approved: no answer within 0.5 h: rejected by default"),
        (None, "not approved: the approval step did not run"),
    ],
    ids=["rejected", "timed-out", "no-answer-at-all"],
)  # fmt: skip
def test_promote_skips_a_candidate_nobody_approved_and_moves_nothing(env, approval, message):
    from mlcycle.store import ledger

    c = task_context(run_id="manual__rejected")
    op = PromoteModelOperator(task_id="promote", model=MODEL, verdict=verdict(), approval=approval)
    with pytest.raises(AirflowSkipException, match=message) as skipped:
        op.execute(c)
    assert "v2 stays registered but is not promoted; champion unchanged (v1)" in str(skipped.value)
    assert c["ti"].pushed["skip_reason"] == str(skipped.value)
    assert ledger.history(MODEL, uri=env.ledger_uri) == []


def test_an_approved_promotion_records_the_approver_and_their_comment(champion_env):
    from mlcycle.core.run import RunInfo
    from mlcycle.core.spec import get_spec
    from mlcycle.flows import train as steps
    from mlcycle.store import ledger, registry

    env, spec = champion_env, get_spec(MODEL)
    run = RunInfo(f"train_{MODEL}", "manual__approved", reason="weekly retrain", actor="bob")
    m = steps.resolve(spec, run, lake_root=env.lake, as_of=dt.date.today())
    t = steps.train(spec, run, env.mlc, manifest_uri=m["manifest_uri"], lake_root=env.lake, force=True)
    v = {**verdict(), "version": t["version"]}
    approval = operator(v).execute_complete(task_context(), answer("Approve", comment="slices fine"))
    steps.promote(
        spec, run, env.mlc, verdict=v, approval=approval, ledger_uri=env.ledger_uri, lake_root=env.lake
    )
    assert str(registry.version_by_alias(env.mlc, MODEL, registry.CHAMPION).version) == t["version"]
    entry = ledger.history(MODEL, uri=env.ledger_uri)[0]
    assert entry.actor == f"alice:train_{MODEL}"
    assert entry.reason == "weekly retrain; approved by alice: slices fine"
