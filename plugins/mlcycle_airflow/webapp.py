"""The plugin's web app: the promotion ledger and run evidence, behind Airflow's login.

- ``GET /mlcycle/ledger``: the ledger as an HTML table (``?model=churn&action=promote`` to
  filter), with links to the MLflow versions, the Airflow runs and the verdicts.
- ``GET /mlcycle/ledger.json``: the same as JSON.
- ``GET /mlcycle/evidence/<path>``: a report file from the lake (``.html``, ``.json``),
  only below ``<lake root>/<model>/runs|quarantine/``.
- ``GET /mlcycle/models``: the model pages; ``GET /mlcycle/models/<model>``: one model at a glance
  (champion, versions with verdicts, metric, drift and performance history, ledger, rollback
  form); ``GET /mlcycle/dags/<dag_id>/model``: the model page of a DAG (the DAG page's tab).
- ``POST /mlcycle/webhooks/mlflow``: MLflow's registry webhook (``model_version_alias.created``),
  authenticated by its HMAC signature (``MLCYCLE_MLFLOW_WEBHOOK_SECRET``), not by an Airflow login:
  a move of ``@champion`` becomes an event of the asset ``mlcycle://<model>/champion_moved``, which
  runs ``guard_<model>``.
- ``GET /mlcycle/tasks/<dag_id>/<run_id>/<task_id>/<map_index>``: a task instance's evidence,
  the page the UI's **Evidence** tab embeds: a redirect to the report the task pushed, else a
  page with its state, why it was skipped, and the run's reports.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

if TYPE_CHECKING:
    from collections.abc import Callable

SERVED_SUFFIXES = {".html": "text/html; charset=utf-8", ".json": "application/json"}
SERVED_AREAS = {"runs", "quarantine"}


def _task_instance(
    dag_id: str, run_id: str, task_id: str, map_index: int
) -> tuple[str | None, dict[str, Any]]:
    """The state of a task instance and its XComs by key, read from Airflow's metadata DB
    (this app runs in the api-server, which owns it)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        state = session.scalar(
            select(TaskInstance.state).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                TaskInstance.task_id == task_id,
                TaskInstance.map_index == map_index,
            )
        )
        rows = session.execute(
            select(XComModel.key, XComModel.value).where(
                XComModel.dag_id == dag_id,
                XComModel.run_id == run_id,
                XComModel.task_id == task_id,
                XComModel.map_index == map_index,
            )
        ).all()
    return (str(state) if state else None), {row.key: XComModel.deserialize_value(row) for row in rows}


def _run_pages(model: str, run_id: str) -> list[tuple[str, str]]:
    """The report pages (``.html``) a run left in the lake, as (name in the run folder, URL)."""
    from mlcycle.core import settings
    from mlcycle.core.run import run_key
    from mlcycle.data import lake as lk
    from mlcycle_airflow.links import evidence_url

    root = settings.lake_root()
    folder = lk.Lake(root, model).run_dir(run_key(run_id))
    if not folder.exists():
        return []
    # A run folder holds files and one level of folders (scoring/).
    entries = [(p.name, p) for p in folder.iterdir()]
    entries += [(f"{name}/{q.name}", q) for name, p in list(entries) if p.is_dir() for q in p.iterdir()]
    return sorted((name, evidence_url(root, lk.uri_of(p))) for name, p in entries if name.endswith(".html"))


def _ledger_rows(model: str | None, can_read: Callable[[str], bool]) -> list[dict[str, Any]]:
    """The ledger's rows (of ``model``), only of the models whose train DAG the user may read."""
    from mlcycle.store import ledger

    return [e.to_dict() for e in ledger.history(model) if can_read(f"train_{e.model}")]


def _spec(model: str) -> Any:
    """The spec of ``model``, or 404 naming the models there are."""
    from mlcycle.core import settings
    from mlcycle.core.spec import load_specs

    specs = {s.name: s for s in load_specs(settings.specs_dir())}
    if model not in specs:
        raise HTTPException(404, f"no model {model!r}; the models are {sorted(specs)}")
    return specs[model]


def _post_asset_event(uri: str, extra: dict[str, Any]) -> int | None:
    """Record an event of the asset ``uri`` as Airflow's REST API does (this app runs in the
    api-server); its id, or None when no DAG declares the asset."""
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.uri == uri).limit(1))
        if asset is None:
            return None
        event = asset_manager.register_asset_change(
            asset=asset, timestamp=dt.datetime.now(dt.UTC), extra=extra, source_is_api=True, session=session
        )
        return event.id if event else None


class LazyApp:
    """The web app as an ASGI callable that builds itself on its first request.

    Every Airflow process imports the plugin (task runners included), but only the API
    server serves it; building it imports Airflow's API security modules (~0.6 s)."""

    def __init__(self) -> None:
        self._app: FastAPI | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            self._app = create_app()
        await self._app(scope, receive, send)


def create_app() -> FastAPI:
    """The FastAPI app: model pages, ledger and lake evidence, every page behind Airflow's
    authentication and its per-DAG read permission (``dag_reader``); the MLflow webhook is
    authenticated by its signature instead."""
    from airflow.api_fastapi.core_api.security import get_user

    app = FastAPI(title="mlcycle", description="Promotion ledger and run evidence of mlcycle models")
    user = Depends(get_user)

    def dag_reader(who: Any = user) -> Callable[[str], bool]:
        """Whether the signed-in user may read a DAG, as Airflow's auth manager says (its per-DAG
        permissions). A model's pages, ledger rows and evidence need read access to train_<model>."""
        from airflow.api_fastapi.app import get_auth_manager
        from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

        manager = get_auth_manager()
        return lambda dag_id: manager.is_authorized_dag(method="GET", user=who, details=DagDetails(id=dag_id))

    app.state.dag_reader = dag_reader  # tests override it by this name
    reader = Depends(dag_reader)

    def readable(can_read: Callable[[str], bool], dag_id: str) -> None:
        if not can_read(dag_id):
            raise HTTPException(
                403, f"you may not read the DAG {dag_id}: ask an Airflow admin for access to it"
            )

    @app.get("/ledger", response_class=HTMLResponse)
    def ledger_page(
        model: str | None = Query(None, pattern=r"^[a-z][a-z0-9_]*$"),
        action: str | None = Query(None, pattern=r"^[a-z]+$"),
        can_read: Callable[[str], bool] = reader,
    ) -> str:
        from urllib.parse import quote

        from mlcycle.core import settings
        from mlcycle.core.spec import load_specs
        from mlcycle.reports import pages
        from mlcycle.store import registry
        from mlcycle_airflow.hooks import MLflowHook
        from mlcycle_airflow.links import evidence_url

        root, ui = settings.lake_root(), MLflowHook().ui_url
        return pages.ledger_page(
            _ledger_rows(model, can_read),
            model,
            action=action,
            models=[s.name for s in load_specs(settings.specs_dir()) if can_read(f"train_{s.name}")],
            evidence_href=lambda uri: evidence_url(root, uri),
            version_href=lambda name, version: registry.version_url(ui, name, version),
            run_href=lambda dag_id, run_id: f"/dags/{dag_id}/runs/{quote(run_id, safe='')}",
        )

    @app.get("/models", response_class=HTMLResponse)
    def models_page(can_read: Callable[[str], bool] = reader) -> str:
        from mlcycle.core import settings
        from mlcycle.core.spec import load_specs
        from mlcycle.reports import pages

        specs = load_specs(settings.specs_dir())
        return pages.models_page(
            [
                {"name": s.name, "description": s.description, "href": f"/mlcycle/models/{s.name}"}
                for s in specs
                if can_read(f"train_{s.name}")
            ]
        )

    @app.get("/models/{model}", response_class=HTMLResponse)
    def model_page(model: str, can_read: Callable[[str], bool] = reader) -> str:
        from urllib.parse import quote

        from mlcycle.core import settings
        from mlcycle.flows.overview import model_overview
        from mlcycle.reports import pages
        from mlcycle.store import registry
        from mlcycle_airflow.hooks import MLflowHook
        from mlcycle_airflow.links import evidence_url

        spec = _spec(model)
        readable(can_read, f"train_{spec.name}")
        hook = MLflowHook()
        root, ui = settings.lake_root(), hook.ui_url
        return pages.model_page(
            model_overview(spec, hook.get_conn()),
            evidence_href=lambda uri: evidence_url(root, uri),
            version_href=lambda name, version: registry.version_url(ui, name, version),
            run_href=lambda dag_id, run_id: f"/dags/{dag_id}/runs/{quote(run_id, safe='')}",
            rollback_dag=f"rollback_{spec.name}",
            ledger_href=f"/mlcycle/ledger?model={spec.name}",
        )

    @app.get("/dags/{dag_id}/model")
    def dag_model(dag_id: str, can_read: Callable[[str], bool] = reader) -> RedirectResponse:
        from mlcycle.core.spec import NAME_RE

        readable(can_read, dag_id)
        kind, _, model = dag_id.partition("_")
        if kind not in ("train", "score", "monitor", "rollback") or not NAME_RE.match(model):
            raise HTTPException(
                404, f"{dag_id} is not an mlcycle DAG (train_|score_|monitor_|rollback_<model>)"
            )
        return RedirectResponse(f"/mlcycle/models/{_spec(model).name}", status_code=307)

    @app.get("/tasks/{dag_id}/{run_id}/{task_id}/{map_index}", response_model=None)
    def task_evidence(
        dag_id: str, run_id: str, task_id: str, map_index: str, can_read: Callable[[str], bool] = reader
    ) -> Response:
        from mlcycle.core.spec import NAME_RE
        from mlcycle.reports import pages
        from mlcycle_airflow.links import EVIDENCE_PREFIX, EvidenceLink
        from mlcycle_airflow.notifiers import SKIP_REASON_KEY

        readable(can_read, dag_id)
        # The UI fills {MAP_INDEX} in only for a mapped task instance; otherwise it stays literal.
        index = int(map_index) if re.fullmatch(r"-?\d+", map_index) else -1
        state, xcoms = _task_instance(dag_id, run_id, task_id, index)
        url = str(xcoms.get(EvidenceLink.key) or "")
        if url.startswith(f"{EVIDENCE_PREFIX}/"):  # only to this app's own evidence: no open redirect
            return RedirectResponse(url, status_code=307)
        _, _, model = dag_id.partition("_")
        model = model if NAME_RE.match(model) else ""
        page = pages.task_page(
            dag_id=dag_id,
            run_id=run_id,
            task_id=task_id,
            state=state,
            reason=str(xcoms.get(SKIP_REASON_KEY) or "") or None,
            model=model or None,
            pages=_run_pages(model, run_id) if model else [],
        )
        return HTMLResponse(page)

    @app.post("/webhooks/mlflow", status_code=202)
    async def mlflow_webhook(request: Request) -> dict[str, Any]:
        import os
        import time

        from mlcycle.core import settings
        from mlcycle.core.spec import load_specs
        from mlcycle.store import registry

        secret = os.environ.get(registry.WEBHOOK_ENV, "")
        if not secret:
            raise HTTPException(
                503, f"{registry.WEBHOOK_ENV} is not set in the api-server: webhooks are refused"
            )
        body = await request.body()
        headers = request.headers
        wrong = registry.verify_webhook(
            secret,
            delivery_id=headers.get("X-MLflow-Delivery-Id", ""),
            timestamp=headers.get("X-MLflow-Timestamp", ""),
            payload=body,
            signature=headers.get("X-MLflow-Signature", ""),
            now=time.time(),
        )
        if wrong:
            raise HTTPException(401, wrong)
        try:
            event = json.loads(body)
            entity, action, data = event["entity"], event["action"], event["data"]
        except (ValueError, KeyError, TypeError):
            raise HTTPException(400, "not an MLflow webhook payload (entity, action, data)") from None
        if f"{entity}.{action}" != registry.WEBHOOK_EVENT or data.get("alias") != registry.CHAMPION:
            return {"ignored": f"{entity}.{action} of @{data.get('alias')}: only @champion moves are guarded"}
        model = str(data.get("name"))
        if model not in {s.name for s in load_specs(settings.specs_dir())}:
            return {"ignored": f"{model!r} is not a model of this deployment"}
        uri = f"mlcycle://{model}/champion_moved"
        extra = {"version": str(data.get("version")), "delivery_id": headers["X-MLflow-Delivery-Id"]}
        event_id = _post_asset_event(uri, extra)
        if event_id is None:
            raise HTTPException(409, f"no DAG declares the asset {uri}: is guard_{model} deployed?")
        return {"asset_event_id": event_id, "asset": uri, **extra}

    @app.get("/ledger.json")
    def ledger_json(
        model: str | None = Query(None, pattern=r"^[a-z][a-z0-9_]*$"),
        action: str | None = Query(None, pattern=r"^[a-z]+$"),
        can_read: Callable[[str], bool] = reader,
    ) -> JSONResponse:
        rows = _ledger_rows(model, can_read)
        return JSONResponse([row for row in rows if not action or row["action"] == action])

    @app.get("/evidence/{path:path}")
    def evidence(path: str, can_read: Callable[[str], bool] = reader) -> Response:
        from mlcycle.core import settings
        from mlcycle.data import lake as lk

        rel = PurePosixPath(path)
        parts = rel.parts
        if ".." in parts or rel.is_absolute() or len(parts) < 3 or parts[1] not in SERVED_AREAS:
            raise HTTPException(404, f"{path!r} is not a report under <model>/{{runs,quarantine}}/")
        readable(can_read, f"train_{parts[0]}")
        media = SERVED_SUFFIXES.get(rel.suffix)
        if media is None:
            raise HTTPException(404, f"only {sorted(SERVED_SUFFIXES)} files are served")
        target = lk.as_path(settings.lake_root())
        for part in parts:
            target = target / part
        if not target.exists():
            raise HTTPException(404, f"{path} does not exist in the lake (yet)")
        with target.open("rb") as fh:
            data = fh.read()
        if rel.suffix == ".json":
            json.loads(data)  # never serve something that is not what it claims to be
        return Response(content=data, media_type=media)

    return app
