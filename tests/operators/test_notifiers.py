"""Failure notifications (``mlcycle_airflow.notifiers``): whole ``train_churn`` runs with
``dag.test()`` send their mail to a real SMTP server on loopback (aiosmtpd), through an
Airflow SMTP connection, exactly as a deployment configures them."""

from __future__ import annotations

import email
import email.policy
import json
from urllib.parse import quote

import pytest

from tests.services.topology import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TO = "ml-oncall@example.com"


class Mailbox:
    """The messages an aiosmtpd server received, parsed."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd's handler hook
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"


@pytest.fixture
def mailbox(monkeypatch):
    """A local SMTP server, the ``smtp_default`` connection pointing at it, and the deployment
    variable that turns failure mails on. Listed before ``dags`` so the DAGs are built with it."""
    from aiosmtpd.controller import Controller

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    conn = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": controller.port,
        "extra": {"from_email": "airflow@example.com", "disable_tls": True, "disable_ssl": True},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("MLCYCLE_NOTIFY_EMAIL", TO)
    yield box
    controller.stop()


def body(message: email.message.EmailMessage) -> str:
    part = message.get_body(("html", "plain"))
    assert part is not None, message
    return str(part.get_content())


def log_link(dag_id: str, run_id: str, task_id: str) -> str:
    """Where the task's log is in the UI (``[api] base_url``, default http://localhost:8080/)."""
    return f"http://localhost:8080/dags/{dag_id}/runs/{quote(run_id)}/tasks/{task_id}"


def test_a_failed_task_sends_one_mail_naming_dag_task_run_error_and_log(mailbox, env, dags):
    dag = dags["train_churn"]
    assert [type(n).__name__ for n in dag.task_dict["resolve_data"].on_failure_callback] == ["FailureEmail"]

    dr = dag.test(run_conf={"reason": "notification test"})  # an empty lake: nothing to train on

    assert dr.state == "failed"
    assert len(mailbox.messages) == 1, [m["Subject"] for m in mailbox.messages]
    mail = mailbox.messages[0]
    assert mail["Subject"] == f"[mlcycle] task failed: train_churn.resolve_data, run {dr.run_id}"
    assert mail["X-Envelope-To"] == TO
    text = body(mail)
    assert "AirflowFailException: " in text and "churn" in text
    assert log_link("train_churn", dr.run_id, "resolve_data") in text


def test_a_refused_gate_sends_one_mail_saying_gate_refused(mailbox, champion_env, dags):
    dag = dags["train_churn"]
    # A crippled estimator (one stump) on the champion's own data: worse than the champion.
    dr = dag.test(
        run_conf={"reason": "notification test", "estimator_params": {"max_iter": 1, "max_leaf_nodes": 2}}
    )

    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    assert dr.state == "success" and states["gate"] == "success" and states["promote"] == "skipped", states
    assert len(mailbox.messages) == 1, [m["Subject"] for m in mailbox.messages]
    mail = mailbox.messages[0]
    assert mail["Subject"] == f"[mlcycle] gate refused: train_churn.gate, run {dr.run_id}"
    text = body(mail)
    assert "regression" in text and "roc_auc" in text and "champion unchanged (v1)" in text, text
    assert log_link("train_churn", dr.run_id, "gate") in text


def test_no_notifier_unless_the_deployment_asks(monkeypatch):
    from mlcycle_airflow.notifiers import failure_notifications

    monkeypatch.delenv("MLCYCLE_NOTIFY_EMAIL", raising=False)
    monkeypatch.delenv("MLCYCLE_NOTIFY_SLACK_CONN", raising=False)
    assert failure_notifications() == {}


def test_slack_without_its_provider_is_a_clear_error(monkeypatch):
    from mlcycle_airflow.notifiers import NotifierConfigError, failure_notifications

    try:  # the provider is not in requirements.txt: CI has this state
        import airflow.providers.slack  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("apache-airflow-providers-slack is installed here")
    monkeypatch.setenv("MLCYCLE_NOTIFY_SLACK_CONN", "slack_api_default")
    with pytest.raises(NotifierConfigError, match="apache-airflow-providers-slack is not installed"):
        failure_notifications()
