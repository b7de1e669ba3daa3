"""The REST scoring server: one registered version (an alias resolved at start, or a pinned
version), loaded without pickle, behind MLflow's scoring protocol, strictly checked.

Routes: ``POST /invocations`` (see ``mlcycle.serving.request`` for the body), ``GET /ping`` and
``GET /health`` (200 once the model is loaded), ``GET /version`` and ``GET /metadata`` (the model,
version, alias, engine, feature schema and params). Statuses: 200 scored; 400 the request is
wrong (every problem named); 413 the body is over the size limit; 415 not JSON; 500 the model
failed on a request that passed every check (the message says how). A bad request never reaches
the model.

The model is the one batch scoring would use (``mlcycle.flows.score``): onnxruntime when the
version's ONNX twin passed its parity check at training, else scikit-learn from skops. The
schema always comes from the scikit-learn pipeline. The alias is resolved once: restart the
server after a promotion to serve the new champion.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlcycle.ml import scoring
from mlcycle.ml.schema import Schema, schema_of
from mlcycle.serving.request import INPUT_KEYS, PARAMS, RequestRefused, ScoringRequest, parse_request, refused

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from starlette.applications import Starlette
    from starlette.requests import Request

    from mlcycle.core.spec import ModelSpec, Task

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 5_000_000  # about 40,000 rows of the shipped models in dataframe_split


@dataclass
class ServedModel:
    """A loaded version and what the server says about it."""

    name: str
    task: Task
    version: str
    alias: str | None
    engine: str
    engine_reason: str
    model: Any  # predict, and predict_proba / classes_ for a classifier
    schema: Schema

    def describe(self) -> str:
        at = f"@{self.alias}, " if self.alias else ""
        return f"{self.name} v{self.version} ({at}{self.task}, engine {self.engine})"

    def metadata(self) -> dict[str, Any]:
        """What ``/version`` and ``/metadata`` answer."""
        return {
            "model": self.name,
            "version": self.version,
            "alias": self.alias,
            "task": str(self.task),
            "engine": self.engine,
            "engine_reason": self.engine_reason,
            "classes": list(self.schema.classes) if self.schema.classes is not None else None,
            "features": [f.to_dict() for f in self.schema.features],
            "input_formats": list(INPUT_KEYS),
            "params": PARAMS,
        }

    def predict(self, request: ScoringRequest) -> dict[str, Any]:
        """The response body for a checked request: predictions, probabilities when asked, warnings."""
        pred, proba, classes = scoring.predict_frame(self.model, request.frame, self.task)
        out: dict[str, Any] = {"predictions": pred.tolist()}
        if request.params.get("probabilities") and proba is not None:
            out["classes"] = [c.item() if hasattr(c, "item") else c for c in classes]
            out["probabilities"] = proba.tolist()
        if request.warnings:
            out["warnings"] = [w.to_dict() for w in request.warnings]
        return out


def load(
    spec: ModelSpec, mlc: MlflowClient, *, alias: str | None = "champion", version: str | None = None
) -> ServedModel:
    """The version to serve (``version`` wins over ``alias``) and its schema; ``RegistryError``
    when there is none or it cannot be loaded, ``SpecError`` when the spec's features are not
    the version's."""
    from mlcycle.flows import score
    from mlcycle.store import registry

    choice = score.choose_model(spec, mlc, alias=alias, version=version)
    pipeline = registry.load_sklearn(mlc, spec.name, choice["version"])
    schema = schema_of(pipeline, spec)
    engine = choice["engine"]
    model = pipeline if engine == "sklearn" else score.load_model(mlc, spec, choice["version"], engine)
    return ServedModel(
        name=spec.name,
        task=spec.task,
        version=choice["version"],
        alias=choice["alias"],
        engine=engine,
        engine_reason=choice["engine_reason"],
        model=model,
        schema=schema,
    )


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 415 unless JSON and 413 beyond ``limit`` bytes (read no further)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise refused(
            "Content-Type",
            "unsupported_media_type",
            f"is {media or 'not set'!r}; this server reads JSON only: send Content-Type: application/json",
            status=415,
        )
    too_large = refused(
        "body", "too_large", f"is over the limit of {limit} bytes; send fewer rows per request", status=413
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(served: ServedModel, *, max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    """The Starlette app serving ``served`` (see the module docstring for routes and statuses)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def ping(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": served.name, "version": served.version})

    async def metadata(request: Request) -> Response:
        return JSONResponse(served.metadata())

    async def invocations(request: Request) -> Response:
        try:
            body = await _read_body(request, max_body_bytes)
            # Parsing a large body takes a while: off the event loop, so /ping stays answered.
            checked = await run_in_threadpool(parse_request, body, served.schema, served.task)
        except RequestRefused as exc:
            log.info("refused with %d: %s", exc.status, exc)
            return JSONResponse(exc.to_dict(), status_code=exc.status)
        try:
            result = await run_in_threadpool(served.predict, checked)
            content = json.dumps(result, allow_nan=False)
        except Exception as exc:  # the request passed every check: the fault is the model's
            log.exception("%s failed to score %d rows", served.describe(), len(checked.frame))
            return JSONResponse(
                {
                    "error_code": "INTERNAL_ERROR",
                    "message": f"{served.describe()} failed to score {len(checked.frame)} checked rows: "
                    f"{type(exc).__name__}: {str(exc)[:500]}; the server log has the traceback",
                },
                status_code=500,
            )
        return Response(content, media_type="application/json")

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else f"{type(exc).__name__}: {exc}"
        return JSONResponse(
            {
                "error_code": "NOT_FOUND"
                if status == 404
                else "BAD_REQUEST"
                if status < 500
                else "INTERNAL_ERROR",
                "message": f"{request.method} {request.url.path}: {detail}. This server answers "
                "POST /invocations and GET /ping, /health, /version, /metadata",
            },
            status_code=status,
        )

    return Starlette(
        routes=[
            Route("/invocations", invocations, methods=["POST"]),
            Route("/ping", ping, methods=["GET"]),
            Route("/health", ping, methods=["GET"]),
            Route("/version", metadata, methods=["GET"]),
            Route("/metadata", metadata, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: http_error},
    )


def run(served: ServedModel, *, host: str, port: int, max_body_bytes: int = MAX_BODY_BYTES) -> None:
    """Serve until interrupted (uvicorn, one process)."""
    import uvicorn

    uvicorn.run(create_app(served, max_body_bytes=max_body_bytes), host=host, port=port, log_level="info")
