"""Failure and refusal notifications through Airflow's notifier API, configured by the deployment.

A task that fails for good (after its retries) sends one message naming the DAG, the task
and the run, with the error and a link to the task's log. A refused candidate is no failure:
the gate task succeeds and ``promote`` is skipped with the refusal as its reason; that skip
sends a message saying "gate refused" (with the verdict and the gate's log), so a refusal is
neither missed nor mistaken for an outage.

Channels, each on only when its variable is set (no variable: no notifier, no import):

- ``MLCYCLE_NOTIFY_EMAIL``: comma-separated addresses. Sent with the SMTP provider's
  ``SmtpNotifier`` through the Airflow connection ``MLCYCLE_NOTIFY_SMTP_CONN`` (default
  ``smtp_default``: host, port, login/password, ``extra.from_email``, ``extra.disable_tls``);
  ``MLCYCLE_NOTIFY_FROM`` overrides the sender.
- ``MLCYCLE_NOTIFY_SLACK_CONN``: the id of a Slack API connection; needs
  ``apache-airflow-providers-slack`` (not installed by default), else the DAGs fail to import
  with a message saying so.

The log link is built from ``[api] base_url`` (``AIRFLOW__API__BASE_URL``): set it to the
address people open the UI at.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlcycle.core.errors import MlcycleError

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.sdk import BaseNotifier, Context

EMAIL_ENV = "MLCYCLE_NOTIFY_EMAIL"
SMTP_CONN_ENV = "MLCYCLE_NOTIFY_SMTP_CONN"
FROM_ENV = "MLCYCLE_NOTIFY_FROM"
SLACK_CONN_ENV = "MLCYCLE_NOTIFY_SLACK_CONN"


class NotifierConfigError(MlcycleError):
    """A notification channel is configured but cannot be used as configured."""


@dataclass(frozen=True)
class Failure:
    """What a failure message says: where it happened, why, and where the log is."""

    dag_id: str
    task_id: str
    run_id: str
    try_number: int
    error: str
    log_url: str
    gate_refused: bool

    @property
    def subject(self) -> str:
        what = "gate refused" if self.gate_refused else "task failed"
        return f"[mlcycle] {what}: {self.dag_id}.{self.task_id}, run {self.run_id}"

    def text(self) -> str:
        """Plain text (chat)."""
        return f"{self.subject}\n{self.error}\nLog (try {self.try_number}): {self.log_url}"

    def html(self) -> str:
        """HTML (e-mail)."""
        esc = html.escape
        return (
            f"<p><b>{esc(self.subject)}</b></p>"
            f"<p>DAG <code>{esc(self.dag_id)}</code>, task <code>{esc(self.task_id)}</code>, "
            f"run <code>{esc(self.run_id)}</code>, try {self.try_number}.</p>"
            f"<pre>{esc(self.error)}</pre>"
            f'<p><a href="{esc(self.log_url, quote=True)}">Task log</a>: {esc(self.log_url)}</p>'
        )


def failure_of(context: Context) -> Failure:
    """The failure a task's callback context describes."""
    ti = context["ti"]
    exc = context.get("exception")
    chain: list[BaseException] = []
    while isinstance(exc, BaseException) and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return Failure(
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=ti.run_id,
        try_number=int(ti.try_number or 0),
        error=(f"{type(chain[0]).__name__}: {chain[0]}" if chain else "no exception was recorded"),
        log_url=ti.log_url,
        gate_refused=False,
    )


SKIP_REASON_KEY = "skip_reason"
"""The XCom key under which a task that skips itself pushes why (read by :func:`refusal_of`)."""


DECIDED_BY_KEY = "skip_decided_by"
"""The XCom key of the upstream task whose outcome made ``promote`` skip (the gate, or the approval)."""


def refusal_of(context: Context) -> Failure:
    """The refusal a skipped ``promote`` task's callback context describes: the reason it pushed,
    pointing at the task that decided (the gate, whose log lists every rule, or the approval)."""
    ti, task = context["ti"], context["task"]
    gate = ti.xcom_pull(task_ids=ti.task_id, key=DECIDED_BY_KEY) or next(
        iter(sorted(task.upstream_task_ids)), ti.task_id
    )
    reason = ti.xcom_pull(task_ids=ti.task_id, key=SKIP_REASON_KEY)
    return Failure(
        dag_id=ti.dag_id,
        task_id=gate,
        run_id=ti.run_id,
        try_number=int(ti.try_number or 0),
        error=str(reason or "the gate refused the candidate (no reason was recorded)"),
        log_url=f"{ti.log_url.split('/tasks/')[0]}/tasks/{gate}",
        gate_refused=True,
    )


def _email(to: list[str], describe: Callable[[Context], Failure]) -> BaseNotifier:
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    class FailureEmail(SmtpNotifier):
        """``SmtpNotifier`` with the subject and body of ``failure_of`` (plain Python, no
        templates: an error message may well contain ``{{``)."""

        def notify(self, context: Context) -> None:
            failure = describe(context)
            self.subject, self.html_content = failure.subject, failure.html()
            super().notify(context)

    return FailureEmail(
        to=to,
        from_email=os.environ.get(FROM_ENV) or None,
        smtp_conn_id=os.environ.get(SMTP_CONN_ENV) or "smtp_default",
    )


def _slack(conn_id: str, describe: Callable[[Context], Failure]) -> BaseNotifier:
    try:
        from airflow.providers.slack.notifications.slack import SlackNotifier  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise NotifierConfigError(
            f"{SLACK_CONN_ENV}={conn_id} asks for Slack notifications, but apache-airflow-providers-slack "
            f"is not installed: install it in the Airflow environment, or unset {SLACK_CONN_ENV}"
        ) from exc

    class FailureSlack(SlackNotifier):
        """``SlackNotifier`` with the text of ``failure_of``."""

        def notify(self, context: Context) -> None:
            self.text = describe(context).text()
            super().notify(context)

    return FailureSlack(slack_conn_id=conn_id, text="")


def _notifiers(describe: Callable[[Context], Failure]) -> list[BaseNotifier]:
    """One notifier per configured channel (none configured: none, and nothing imported)."""
    notifiers = []
    if to := [a.strip() for a in os.environ.get(EMAIL_ENV, "").split(",") if a.strip()]:
        notifiers.append(_email(to, describe))
    if slack := os.environ.get(SLACK_CONN_ENV, "").strip():
        notifiers.append(_slack(slack, describe))
    return notifiers


def failure_notifications() -> dict[str, Any]:
    """``default_args`` entries that notify on task failure: ``{"on_failure_callback": [...]}``
    with one notifier per configured channel, or ``{}`` when none is configured."""
    notifiers = _notifiers(failure_of)
    return {"on_failure_callback": notifiers} if notifiers else {}


def refusal_notifications() -> dict[str, Any]:
    """Arguments of the ``promote`` task that notify when it is skipped because the gate refused:
    ``{"on_skipped_callback": [...]}``, or ``{}`` when no channel is configured."""
    notifiers = _notifiers(refusal_of)
    return {"on_skipped_callback": notifiers} if notifiers else {}
