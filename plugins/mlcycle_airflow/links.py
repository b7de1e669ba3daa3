"""Extra links: buttons on a task instance that open what the task created.

Operators push the target URL to XCom under the link's key *before* doing the slow
work, so the link works even when the task fails half-way.

A link is never empty: Airflow's REST API turns an empty URL into ``null``, which the
official ``apache-airflow-client`` cannot parse. Until (or unless) the task pushed its URL,
for a skipped task say, a link opens the task's **Evidence** tab instead (the plugin's
``task_instance`` view, embedded in the Airflow UI): the task's state, why it was skipped,
and the run's report pages. The **Evidence** link always opens that tab, which shows the
task's report inside the UI rather than replacing it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Served by the plugin's FastAPI app (see mlcycle_plugin.py): files under the lake root.
EVIDENCE_PREFIX = "/mlcycle/evidence"
# The task-instance tab of the plugin (its external view) and the page it embeds.
EVIDENCE_TAB = "mlcycle-evidence"
TASK_EVIDENCE_HREF = "/mlcycle/tasks/{DAG_ID}/{RUN_ID}/{TASK_ID}/{MAP_INDEX}"


def evidence_tab(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """The Airflow UI address of a task instance's Evidence tab."""
    from urllib.parse import quote

    mapped = f"/mapped/{map_index}" if map_index is not None and map_index >= 0 else ""
    return f"/dags/{dag_id}/runs/{quote(run_id, safe='')}/tasks/{task_id}{mapped}/plugin/{EVIDENCE_TAB}"


def _tab_of(ti_key: TaskInstanceKey) -> str:
    return evidence_tab(ti_key.dag_id, ti_key.run_id, ti_key.task_id, ti_key.map_index)


class XComLink(BaseOperatorLink):
    """A button whose URL the operator pushed to XCom under ``key``; the task's Evidence tab
    until it has (never an empty link)."""

    key = ""

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        return XCom.get_value(ti_key=ti_key, key=self.key) or _tab_of(ti_key)

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
    """Opens the task's Evidence tab in the Airflow UI, which embeds the task's report from the
    lake (validation, verdict, scoring or drift). The report's own URL (pushed under ``key``) is
    what the tab shows."""

    name = "Evidence"
    key = "evidence_url"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return _tab_of(ti_key)


def evidence_url(lake_root: str, uri: str) -> str:
    """A URL of the plugin's evidence endpoint for a file under the lake root."""
    from urllib.parse import quote

    root = lake_root.rstrip("/")
    rel = uri[len(root) :].lstrip("/") if uri.startswith(root) else uri
    return f"{EVIDENCE_PREFIX}/{quote(rel)}"


ALL_LINKS: list[Any] = [MLflowRunLink(), MLflowModelVersionLink(), EvidenceLink()]


class DropNullLinks:
    """ASGI middleware: the REST API's extra-links answer without its ``null`` entries.

    Airflow computes the links of a task that never ran (skipped or upstream-failed before it
    started) from XComs that were never pushed, and answers ``{"Evidence": null}``; the official
    ``apache-airflow-client`` then fails to parse the whole answer. A link that does not exist is
    left out instead, which the API's schema allows (and the UI already ignores nulls). Only
    ``GET …/taskInstances/<task>[/<map_index>]/links`` is touched; its answer is small, so it
    is asked for uncompressed and rewritten whole."""

    PATH = re.compile(r"^/api/v2/dags/[^/]+/dagRuns/[^/]+/taskInstances/[^/]+(/-?\d+)?/links$")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not self.PATH.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"accept-encoding"]
        start: dict[str, Any] = {}
        body = bytearray()

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            data = bytes(body)
            if start.get("status") == 200:
                data = _without_nulls(data)
            fixed = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*fixed, (b"content-length", str(len(data)).encode())]})
            await send({"type": "http.response.body", "body": data})

        await self.app({**scope, "headers": headers}, receive, capture)


def _without_nulls(data: bytes) -> bytes:
    import json

    try:
        answer = json.loads(data)
    except ValueError:
        return data
    links = answer.get("extra_links") if isinstance(answer, dict) else None
    if not isinstance(links, dict):
        return data
    kept = {name: url for name, url in links.items() if url is not None}
    return json.dumps({**answer, "extra_links": kept, "total_entries": len(kept)}).encode()
