"""The plugin's web app: the promotion ledger and run evidence, behind Airflow's login.

- ``GET /mlcycle/ledger``: the ledger as an HTML table (``?model=churn`` to filter).
- ``GET /mlcycle/ledger.json``: the same as JSON.
- ``GET /mlcycle/evidence/<path>``: a report file from the lake (``.html``, ``.json``),
  only below ``<lake root>/<model>/runs|quarantine/``.
"""

from __future__ import annotations

import html
import json
from pathlib import PurePosixPath
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

SERVED_SUFFIXES = {".html": "text/html; charset=utf-8", ".json": "application/json"}
SERVED_AREAS = {"runs", "quarantine", "reports"}


def _require_user() -> Any:
    """Airflow's own authentication dependency (JWT header or the UI's cookie)."""
    from airflow.api_fastapi.core_api.security import get_user

    return Depends(get_user)


def _ledger_rows(model: str | None) -> list[dict[str, Any]]:
    from mlcycle import ledger

    return [e.to_dict() for e in ledger.history(model)]


def render_ledger(rows: list[dict[str, Any]], model: str | None) -> str:
    esc = html.escape
    cols = [
        "created_at",
        "model",
        "alias",
        "previous_version",
        "new_version",
        "action",
        "actor",
        "reason",
        "verdict",
    ]
    body = "\n".join(
        "<tr>"
        + "".join(f"<td>{esc(str(r.get(c) if r.get(c) is not None else '-'))}</td>" for c in cols)
        + (
            f"<td><a href='/mlcycle/evidence/{esc(_lake_relative(r['evidence_uri']))}'>verdict</a></td>"
            if r.get("evidence_uri")
            else "<td>-</td>"
        )
        + "</tr>"
        for r in rows
    )
    title = f"Promotion ledger{': ' + esc(model) if model else ''}"
    head = "".join(f"<th>{c.replace('_', ' ')}</th>" for c in [*cols, "evidence"])
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #d0d7de;padding:.3em .6em;text-align:left;vertical-align:top}}th{{background:#f6f8fa}}</style>
</head><body><h1>{title}</h1><p>Every move of a model alias (promotion, bootstrap, rollback), newest first.
<a href="/mlcycle/ledger.json{"?model=" + esc(model) if model else ""}">JSON</a></p>
<table><tr>{head}</tr>{body or '<tr><td colspan="10">no moves yet</td></tr>'}</table></body></html>"""


def _lake_relative(uri: str) -> str:
    from mlcycle import settings

    root = settings.lake_root().rstrip("/")
    return uri[len(root) :].lstrip("/") if uri.startswith(root) else uri


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
    app = FastAPI(title="mlcycle", description="Promotion ledger and run evidence of mlcycle models")
    user = _require_user()

    @app.get("/ledger", response_class=HTMLResponse, dependencies=[user])
    def ledger_page(model: str | None = Query(None, pattern=r"^[a-z][a-z0-9_]*$")) -> str:
        return render_ledger(_ledger_rows(model), model)

    @app.get("/ledger.json", dependencies=[user])
    def ledger_json(model: str | None = Query(None, pattern=r"^[a-z][a-z0-9_]*$")) -> JSONResponse:
        return JSONResponse(_ledger_rows(model))

    @app.get("/evidence/{path:path}", dependencies=[user])
    def evidence(path: str) -> Response:
        from mlcycle import lake as lk
        from mlcycle import settings

        rel = PurePosixPath(path)
        parts = rel.parts
        if ".." in parts or rel.is_absolute() or len(parts) < 3 or parts[1] not in SERVED_AREAS:
            raise HTTPException(404, f"{path!r} is not a report under <model>/{{runs,quarantine,reports}}/")
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
