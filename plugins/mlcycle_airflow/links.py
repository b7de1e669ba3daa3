"""Extra links: buttons on a task instance that open what the task created.

Operators push the target URL to XCom under the link's key *before* doing the slow
work, so the link works even when the task fails half-way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey

# Served by the plugin's FastAPI app (see plugin.py): files under the lake root.
EVIDENCE_PREFIX = "/mlcycle/evidence"


class XComLink(BaseOperatorLink):
    """A button whose URL the operator pushed to XCom under ``key``; empty until it has."""

    key = ""

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        return XCom.get_value(ti_key=ti_key, key=self.key) or ""

    @classmethod
    def push(cls, context: Context, url: str) -> None:
        context["ti"].xcom_push(key=cls.key, value=url)


class MLflowRunLink(XComLink):
    """Opens the MLflow run the task logs to."""

    name = "MLflow run"
    key = "mlflow_run_url"


class MLflowModelVersionLink(XComLink):
    """Opens the model version the task registered, gated, promoted or scores with."""

    name = "Model version"
    key = "mlflow_version_url"


class EvidenceLink(XComLink):
    """Opens the task's report from the lake (validation, verdict, scoring or drift) via the plugin."""

    name = "Evidence"
    key = "evidence_url"


def evidence_url(lake_root: str, uri: str) -> str:
    """A URL of the plugin's evidence endpoint for a file under the lake root."""
    from urllib.parse import quote

    root = lake_root.rstrip("/")
    rel = uri[len(root) :].lstrip("/") if uri.startswith(root) else uri
    return f"{EVIDENCE_PREFIX}/{quote(rel)}"


ALL_LINKS: list[Any] = [MLflowRunLink(), MLflowModelVersionLink(), EvidenceLink()]
