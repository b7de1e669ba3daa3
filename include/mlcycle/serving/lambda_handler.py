"""The AWS Lambda handler of a model version packaged by ``mlcycle package lambda``
(``mlcycle.serving.lambda_package``).

This module is copied into the package, with the few modules it imports (the request checks of
``mlcycle.serving.request``, the schema, the domain errors and, for the ONNX engine, the ONNX
twin's runtime): the container holds no other part of mlcycle. The package's ``handler.py``
loads the model once per container, at init (``LambdaApp.load``), and hands each invocation to
``LambdaApp.handle``.

Events:

* API Gateway REST API (payload v1: ``httpMethod``, ``body``, ``isBase64Encoded``) and HTTP API
  (payload v2: ``version: "2.0"``, ``requestContext.http.method``, ``body``,
  ``isBase64Encoded``): answered with ``{"statusCode", "headers", "body"}``, the body a JSON
  document. Only ``POST`` is scored (other methods get 405); a ``Content-Type`` other than
  JSON gets 415.
* A direct invoke (``aws lambda invoke``, an SDK, a Step Functions task): the event is the
  request body itself, MLflow's scoring protocol as ``mlcycle.serving.request`` reads it
  (``{"dataframe_split": ...}``, ``{"dataframe_records": ...}``, ``{"inputs": ...}``). The
  result is the same JSON document as an API Gateway body, with ``status`` added.

The document: ``model``, ``version`` and ``predictions``; for a classifier also ``classes`` and
``probabilities`` (one row per prediction, columns in the order of ``classes``) unless the
request sets ``params.probabilities`` to false; ``warnings`` when a param let a problem through.
A refused request (400 and the other 4xx) is answered, never raised: ``error_code``, ``message``
and ``errors``, one entry per problem naming its field, as the REST server answers. A failure
of the model on a request that passed every check is a 500 document and an ERROR log with the
traceback.

Each request logs one JSON line on stdout (CloudWatch Logs reads it as structured fields):
``request_id`` (the invocation's ``aws_request_id``), ``event`` (its shape), ``status``, ``rows``,
``latency_ms``, ``model``, ``version``, ``engine``; the model's load logs one line at init.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import sys
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Final, cast

from mlcycle.ml.schema import Schema
from mlcycle.serving.request import (
    Problem,
    RequestRefused,
    ScoringRequest,
    check_request,
    parse_request,
    refused,
)

if TYPE_CHECKING:
    from pathlib import Path

    from mlcycle.core.spec import ModelSpec, Task

log = logging.getLogger(__name__)
requests_log = logging.getLogger(f"{__name__}.requests")  # the one JSON line per request

METADATA_FILE: Final = "metadata.json"
SIGNATURE_FILE: Final = "signature.json"
ONNX_FILE: Final = "model.onnx"
SKOPS_FILE: Final = "model.skops"
PACKAGE_FORMAT: Final = "mlcycle-lambda/1"  # what metadata.json's ``format`` says
V1, V2, DIRECT = "apigateway-rest", "apigateway-http", "direct"
JSON_HEADERS: Final = {"Content-Type": "application/json"}


class _JsonLines(logging.Handler):
    """Writes each record's message, a JSON document, as one line of the current ``sys.stdout``
    (looked up per record: the runtime and test harnesses replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(record.getMessage() + "\n")
            sys.stdout.flush()
        except Exception:
            self.handleError(record)


def configure_logging(level: int = logging.INFO) -> None:
    """The request lines to stdout as bare JSON (not through the runtime's text format, which
    prefixes each line); everything else of this module to the root logger the runtime set up."""
    if not any(isinstance(h, _JsonLines) for h in requests_log.handlers):
        requests_log.addHandler(_JsonLines())
    requests_log.setLevel(level)
    requests_log.propagate = False
    log.setLevel(level)


@dataclass(frozen=True)
class _Task:
    """What the request checks ask of ``mlcycle.core.spec.Task`` (which the package does not carry)."""

    value: str

    @property
    def classifies(self) -> bool:
        return self.value != "regression"

    def __str__(self) -> str:
        return self.value


def example_request(schema: Schema) -> dict[str, Any]:
    """A body of one synthetic row that passes the checks: 1.0 for a number, the first known
    category, a short text (the package's ``example.json``, and the model's warm-up at init)."""
    row: list[Any] = []
    for f in schema.features:
        if f.kind == "categorical":
            row.append(f.categories[0] if f.categories else None)
        else:
            row.append(1.0 if f.type == "number" else "an example text")
    return {"dataframe_split": {"columns": schema.names, "data": [row]}}


@dataclass
class LambdaApp:
    """One loaded model version and how it answers an invocation."""

    metadata: dict[str, Any]
    schema: Schema
    model: Any  # predict, and predict_proba / classes_ for a classifier
    load_ms: float

    @classmethod
    def load(cls, model_dir: Path) -> LambdaApp:
        """The model of a package's ``model/`` folder, with its signature and metadata."""
        started = time.perf_counter()
        metadata = json.loads((model_dir / METADATA_FILE).read_text())
        if metadata.get("format") != PACKAGE_FORMAT:
            raise ValueError(f"{model_dir / METADATA_FILE} is not a {PACKAGE_FORMAT} package's metadata")
        schema = Schema.from_dict(json.loads((model_dir / SIGNATURE_FILE).read_text()))
        model: Any
        if metadata["engine"] == "onnx":
            from mlcycle.ml.onnx_twin import OnnxModel

            # The twin's runtime reads only which inputs are numeric and which categorical.
            features = SimpleNamespace(
                numeric=[f.name for f in schema.features if f.kind == "numeric"],
                categorical=[f.name for f in schema.features if f.kind == "categorical"],
            )
            spec = cast("ModelSpec", SimpleNamespace(features=features))
            model = OnnxModel((model_dir / ONNX_FILE).read_bytes(), spec)
        else:
            import skops.io

            # The trusted types were checked against mlcycle's allow-list when the package was made.
            model = skops.io.load(model_dir / SKOPS_FILE, trusted=metadata["skops_trusted_types"])
        app = cls(metadata, schema, model, 0.0)
        # One synthetic row through the checks and the model: pandas is imported and the model's
        # first-call costs are paid at init rather than by the first request, and a package whose
        # model cannot score fails at init, where Lambda reports it.
        app.predict(check_request(example_request(schema), schema, app.task))
        app.load_ms = round((time.perf_counter() - started) * 1000, 1)
        requests_log.info(
            "%s",
            json.dumps(
                {
                    "message": "model loaded",
                    "model": metadata["model"],
                    "version": metadata["version"],
                    "engine": metadata["engine"],
                    "load_ms": app.load_ms,
                }
            ),
        )
        return app

    @property
    def task(self) -> Task:
        return cast("Task", _Task(self.metadata["task"]))

    def handle(self, event: Any, context: Any) -> dict[str, Any]:
        """Answer one invocation (see the module docstring); never raises for a bad request."""
        started = time.perf_counter()
        shape = _shape(event)
        rows, error = 0, None
        head = {"model": self.name, "version": self.version}
        try:
            checked = self._checked(event, shape)
        except RequestRefused as exc:
            status, doc = exc.status, {**head, **exc.to_dict()}
            text = json.dumps(doc)
        else:
            rows = len(checked.frame)
            try:
                status, doc = 200, {**head, **self.predict(checked)}
                text = json.dumps(doc, allow_nan=False)
            except Exception as exc:  # the request passed every check: the fault is the model's
                log.exception("%s v%s failed to score %d rows", self.name, self.version, rows)
                error = f"{type(exc).__name__}: {str(exc)[:500]}"
                message = (
                    f"{self.name} v{self.version} failed to score {rows} checked rows: {error}; "
                    "the function's log has the traceback"
                )
                status, doc = 500, {**head, "error_code": "INTERNAL_ERROR", "message": message}
                text = json.dumps(doc)
        line: dict[str, Any] = {
            "request_id": getattr(context, "aws_request_id", None),
            "event": shape,
            "status": status,
            "rows": rows,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "model": self.name,
            "version": self.version,
            "engine": self.metadata["engine"],
        }
        if error:
            line["error"] = error
        requests_log.info("%s", json.dumps(line))
        if shape == DIRECT:
            return {"status": status, **doc}
        headers = dict(JSON_HEADERS)
        if status == 405:
            headers["Allow"] = "POST"
        return {"statusCode": status, "headers": headers, "body": text, "isBase64Encoded": False}

    @property
    def name(self) -> str:
        return str(self.metadata["model"])

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    def _checked(self, event: Any, shape: str) -> ScoringRequest:
        if shape == DIRECT:
            return check_request(event, self.schema, self.task)
        return parse_request(_http_body(event, shape), self.schema, self.task)

    def predict(self, request: ScoringRequest) -> dict[str, Any]:
        """The answer to a checked request: predictions, and a classifier's probabilities."""
        import numpy as np

        out: dict[str, Any] = {}
        if self.task.classifies:
            proba = np.asarray(self.model.predict_proba(request.frame))
            classes = np.asarray(self.model.classes_)
            out["predictions"] = classes[proba.argmax(axis=1)].tolist()
            if request.params.get("probabilities", True):
                out["classes"] = classes.tolist()
                out["probabilities"] = proba.tolist()
        else:
            out["predictions"] = np.asarray(self.model.predict(request.frame), dtype="float64").tolist()
        if request.warnings:
            out["warnings"] = [w.to_dict() for w in request.warnings]
        return out


def _shape(event: Any) -> str:
    """Which kind of event this is: API Gateway REST (v1), HTTP API (v2) or a direct invoke."""
    if isinstance(event, dict):
        context = event.get("requestContext")
        if event.get("version") == "2.0" and isinstance(context, dict) and "http" in context:
            return V2
        if "httpMethod" in event:
            return V1
    return DIRECT


def _http_body(event: dict[str, Any], shape: str) -> bytes:
    """The request body of an API Gateway event, as bytes; ``RequestRefused`` for a method other
    than POST, a body that is not JSON, a missing body or one whose base64 is broken."""
    if shape == V2:
        http = event["requestContext"]["http"]
        method = str(http.get("method", "")) if isinstance(http, dict) else ""
        where = "requestContext.http.method"
    else:
        method, where = str(event.get("httpMethod", "")), "httpMethod"
    if method.upper() != "POST":
        raise refused(
            where, "method_not_allowed", f"is {method!r}; POST the request body as JSON", status=405
        )
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    media = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media != "application/json":
        raise refused(
            "Content-Type",
            "unsupported_media_type",
            f"is {media!r}; this function reads JSON only: send Content-Type: application/json",
            status=415,
        )
    body = event.get("body")
    if body is None or body == "":
        raise RequestRefused(
            400,
            [
                Problem(
                    "body",
                    "empty_body",
                    "is empty; POST a JSON object like the one in the package's example.json",
                )
            ],
        )
    if not event.get("isBase64Encoded"):
        return str(body).encode()
    try:
        return base64.b64decode(str(body), validate=True)
    except (binascii.Error, ValueError):
        raise refused(
            "body", "bad_base64", "isBase64Encoded is true but the body is not valid base64"
        ) from None
