"""Human approval of a promotion: Airflow's human-in-the-loop ``ApprovalOperator``, asked only
when the gate passed and its policy (``gate.approval`` of the spec, or the run's
``require_approval`` / ``gate_overrides``) asks for a person.

The task sits between ``gate`` and ``promote``. It never skips anything itself: it returns an
``ApprovalResult`` and ``promote`` decides (promote on approval, skip with the rejection as its
reason otherwise), so a rejected or timed-out candidate looks like a refused one in the grid
(gate and approve green, promote skipped) and the reason is one click away.

- Not required, or the gate refused: succeeds at once, ``approved`` None (nobody asked).
- Required: the task waits in ``awaiting_input`` (Airflow 3.3: no triggerer involved) with a
  subject, a body giving the verdict and links to its evidence, and a ``comment`` field, for the
  spec's ``approvers`` (anyone allowed to act on the DAG when empty). Approve or Reject in the
  UI's Required Actions (or ``PATCH .../taskInstances/approve/-1/hitlDetails``). No answer within
  ``timeout_hours``: Airflow applies the default, Reject.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, cast

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict

from mlcycle_airflow.links import evidence_url

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from mlcycle.core import results


def _not_asked(detail: str) -> results.ApprovalResult:
    return {
        "required": False, "approved": None, "by": None, "comment": None,
        "timed_out": False, "responded_at": None, "detail": detail,
    }  # fmt: skip


class ApprovePromotionOperator(ApprovalOperator):
    """Ask a person to approve promoting the candidate a gate passed (see the module docstring).

    :param model: the model's name.
    :param verdict: the ``GateResult`` of ``GateOperator`` (its ``approval`` is the policy).
    :param lake_root: the data lake root, for the evidence link (default ``MLCYCLE_LAKE_ROOT``).
    :param mlflow_conn_id: the Airflow connection of the MLflow tracking server, for the version link.
    """

    template_fields: Sequence[str] = (*HITLOperator.template_fields, "verdict")
    ui_color = "#fff4ce"

    def __init__(
        self,
        *,
        model: str,
        verdict: results.GateResult | str,
        lake_root: str | None = None,
        mlflow_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        # Airflow hands the DAG's params in (merged); the form shows only the task's own ("task").
        params = kwargs.pop("params", None)
        params = params if isinstance(params, ParamsDict) else ParamsDict(params or {})
        params["comment"] = Param(
            None,
            type=["null", "string"],
            maxLength=500,
            title="Comment",
            description="Why you approve or reject: recorded in the ledger with your name.",
            source="task",
        )
        super().__init__(
            subject=f"Promote {model}?",
            defaults=ApprovalOperator.REJECT,  # what no answer in time means
            params=params,
            **kwargs,
        )
        self.model = model
        self.verdict = cast("results.GateResult", verdict)  # rendered before execute
        self.lake_root = lake_root
        self.mlflow_conn_id = mlflow_conn_id

    def _body(self) -> str:
        from mlcycle.core import settings
        from mlcycle.store import registry
        from mlcycle_airflow.hooks import MLflowHook

        v = self.verdict
        hook = MLflowHook(**({"mlflow_conn_id": self.mlflow_conn_id} if self.mlflow_conn_id else {}))
        lines = [
            f"**{self.model} v{v['version']}** passed its gate; the champion is "
            f"{'v' + str(v['champion_version']) if v.get('champion_version') else 'not set yet'}.",
            "",
            f"> {v['summary']}",
            "",
            f"- [Gate verdict with plots]({evidence_url(self.lake_root or settings.lake_root(), v['report_uri'])})",
            f"- [Version in MLflow]({registry.version_url(hook.ui_url, self.model, str(v['version']))})",
            f"- [Model page](/mlcycle/models/{self.model})",
            "",
            "Approve to make it the champion; Reject (or no answer in time) keeps it registered and "
            "the champion unchanged.",
        ]
        return "\n".join(lines)

    def execute(self, context: Context) -> Any:
        verdict = self.verdict
        policy = verdict.get("approval") or {}
        if not verdict.get("passed"):
            return _not_asked("not asked: the gate refused the candidate")
        if not policy.get("required"):
            return _not_asked("not asked: the gate does not require approval")
        self.subject = f"Promote {self.model} v{verdict['version']} to champion?"
        self.body = self._body()
        self.response_timeout = dt.timedelta(hours=float(policy["timeout_hours"]))
        self.assigned_users = [{"id": u, "name": u} for u in policy.get("approvers") or []] or None
        return super().execute(context)  # waits in awaiting_input; resumes in execute_complete

    def execute_complete(self, context: Context, event: dict[str, Any]) -> results.ApprovalResult:
        # HITLOperator's, not ApprovalOperator's: a rejection skips nothing here, promote decides.
        answer = HITLOperator.execute_complete(self, context, event)
        approved = answer["chosen_options"] == [ApprovalOperator.APPROVE]
        user = answer["responded_by_user"] or {}
        by = user.get("name") or user.get("id")
        comment = (answer["params_input"] or {}).get("comment") or None
        timed_out = bool(event.get("timedout"))
        timeout = (self.verdict.get("approval") or {}).get("timeout_hours")
        if timed_out:
            detail = f"no answer within {timeout:g} h: rejected by default"
        else:
            detail = f"{'approved' if approved else 'rejected'} by {by or 'an unknown user'}"
            detail += f": {comment}" if comment else " (no comment)"
        self.log.info("Promotion of %s v%s: %s", self.model, self.verdict["version"], detail)
        return {
            "required": True, "approved": approved and not timed_out, "by": by, "comment": comment,
            "timed_out": timed_out, "responded_at": answer["responded_at"].isoformat(), "detail": detail,
        }  # fmt: skip
