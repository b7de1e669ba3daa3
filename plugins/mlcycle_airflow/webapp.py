"""The plugin's web app: the promotion ledger and run evidence, behind Airflow's login.

- ``GET /mlcycle/ledger``: the ledger as an HTML table (``?model=churn`` to filter).
- ``GET /mlcycle/ledger.json``: the same as JSON.
- ``GET /mlcycle/evidence/<path>``: a report file from the lake (``.html``, ``.json``),
  only below ``<lake root>/<model>/runs|quarantine/``.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

SERVED_SUFFIXES = {".html": "text/html; charset=utf-8", ".json": "application/json"}
SERVED_AREAS = {"runs", "quarantine"}


def _require_user() -> Any:
    """Airflow's own authentication dependency (JWT header or the UI's cookie)."""
    from airflow.api_fastapi.core_api.security import get_user

    return Depends(get_user)


def _ledger_rows(model: str | None) -> list[dict[str, Any]]:
    from mlcycle.store import ledger

    return [e.to_dict() for e in ledger.history(model)]


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
    """The FastAPI app: ledger pages and lake evidence, every route behind Airflow's authentication."""
    app = FastAPI(title="mlcycle", description="Promotion ledger and run evidence of mlcycle models")
    user = _require_user()

    @app.get("/ledger", response_class=HTMLResponse, dependencies=[user])
    def ledger_page(model: str | None = Query(None, pattern=r"^[a-z][a-z0-9_]*$")) -> str:
        from mlcycle.core import settings
        from mlcycle.reports import pages
        from mlcycle_airflow.links import evidence_url

        root = settings.lake_root()
        return pages.ledger_page(
            _ledger_rows(model), model, evidence_href=lambda uri: evidence_url(root, uri)
        )

    @app.get("/ledger.json", dependencies=[user])
    def ledger_json(model: str | None = Query(None, pattern=r"^[a-z][a-z0-9_]*$")) -> JSONResponse:
        return JSONResponse(_ledger_rows(model))

    @app.get("/evidence/{path:path}", dependencies=[user])
    def evidence(path: str) -> Response:
        from mlcycle.core import settings
        from mlcycle.data import lake as lk

        rel = PurePosixPath(path)
        parts = rel.parts
        if ".." in parts or rel.is_absolute() or len(parts) < 3 or parts[1] not in SERVED_AREAS:
            raise HTTPException(404, f"{path!r} is not a report under <model>/{{runs,quarantine}}/")
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
