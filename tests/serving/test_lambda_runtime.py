"""End to end without AWS: the packaged handler under the real runtime client (`python -m
awslambdaric handler.handler`, what the base image's CMD runs) polling a fake Lambda Runtime API
on 127.0.0.1, written here. Events go through it as Lambda sends them; the responses, the error
reports, the structured log lines and the cold start are checked."""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from mlcycle.serving.lambda_package import CONTAINER_ENV

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow

PREFIX = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:eu-west-1:000000000000:function:churn-v1"
COLD_START_LIMIT_S = 30.0  # generous: a busy 2-core box; it takes 1-3 s here
FUNCTION_ENV = {
    # awslambdaric reads these (Lambda sets them); without them it fails at its first invocation.
    "AWS_LAMBDA_FUNCTION_NAME": "churn-v1",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
    "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/churn-v1",
    "AWS_LAMBDA_LOG_STREAM_NAME": "2026/12/03/[$LATEST]0000",
    "AWS_REGION": "eu-west-1",
}


@dataclass
class Answer:
    """What the runtime client posted for one invocation: ``response`` or ``error``, its JSON
    body and when it arrived (``time.perf_counter``)."""

    kind: str
    body: Any
    headers: dict[str, str]
    at: float
    queued_at: float = 0.0

    @property
    def latency_s(self) -> float:
        return self.at - self.queued_at


@dataclass
class FakeRuntimeAPI:
    """The Lambda Runtime API (2018-06-01) on loopback: ``invocation/next`` long-polls for the
    next queued event and hands it out with the request id, deadline, function ARN and trace
    headers; ``invocation/{id}/response``, ``invocation/{id}/error`` and ``init/error`` are
    recorded and answered 202."""

    events: queue.Queue[tuple[str, bytes] | None] = field(default_factory=queue.Queue)
    answers: dict[str, Answer] = field(default_factory=dict)
    init_errors: list[Any] = field(default_factory=list)
    polled_at: float | None = None  # the first GET of invocation/next: the client's init is done
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes: with Nagle's algorithm and the
                # client's delayed ACK each reply would wait ~40 ms.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:
                pass

            def reply(
                self, status: int, body: bytes = b'{"status":"OK"}', headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                for key, value in {
                    "Content-Type": "application/json",
                    "Content-Length": str(len(body)),
                    **(headers or {}),
                }.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    return self.reply(404, b'{"errorMessage":"not found"}')
                if api.polled_at is None:
                    api.polled_at = time.perf_counter()
                item = api.events.get()  # blocks, as the real API does, until there is an event
                if item is None:
                    return self.reply(500, b'{"errorMessage":"shutting down"}')
                request_id, payload = item
                self.reply(200, payload, {
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 30_000),
                    "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                    "Lambda-Runtime-Trace-Id": "Root=1-67000000-000000000000000000000000;Sampled=0",
                })  # fmt: skip
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = self.path.removeprefix(PREFIX).strip("/").split("/")
                with api.arrived:
                    if parts == ["init", "error"]:
                        api.init_errors.append(json.loads(body or b"null"))
                    elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                        api.answers[parts[1]] = Answer(
                            parts[2], json.loads(body or b"null"), dict(self.headers), time.perf_counter()
                        )
                    else:
                        return self.reply(404, b'{"errorMessage":"not found"}')
                    api.arrived.notify_all()
                self.reply(202)
                return None

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                # The client is stopped while it long-polls /next: a reset connection is expected.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def invoke(self, event: Any, timeout: float = 60.0) -> tuple[str, Answer]:
        """Queue ``event`` and wait for its answer: (request id, answer)."""
        request_id = str(uuid.uuid4())
        queued = time.perf_counter()
        self.events.put((request_id, json.dumps(event).encode()))
        with self.arrived:
            if not self.arrived.wait_for(lambda: request_id in self.answers, timeout):
                raise TimeoutError(f"no answer to {request_id} within {timeout} s")
        answer = self.answers[request_id]
        answer.queued_at = queued
        return request_id, answer

    def wait_init_error(self, timeout: float = 60.0) -> Any:
        with self.arrived:
            if not self.arrived.wait_for(lambda: bool(self.init_errors), timeout):
                raise TimeoutError(f"no init error within {timeout} s")
        return self.init_errors[0]

    def close(self) -> None:
        self.events.put(None)
        self.server.shutdown()
        self.server.server_close()


def start_client(
    app: Path, api: FakeRuntimeAPI, log: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``python -m awslambdaric handler.handler`` in the package's app folder against ``api``, its
    stdout and stderr into ``log``. The environment has none of the project's variables; with
    ``extra_env`` on top (e.g. the Dockerfile's ``ENV``)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLCYCLE_", "MLFLOW_", "AIRFLOW", "PYTHONPATH"))
    }
    env |= {
        **FUNCTION_ENV,
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "LAMBDA_TASK_ROOT": str(app),
        **(extra_env or {}),
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", "handler.handler"],
            cwd=app, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def stop_client(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def json_lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in log.read_text().splitlines() if ln.startswith("{")]


# --- events ------------------------------------------------------------------------------------------

COLUMNS = [
    "tenure_months", "monthly_charges", "total_charges", "support_calls", "age",
    "contract", "internet_service", "payment_method", "region",
]  # fmt: skip
ROWS = [
    [12, 70.5, 846.0, 1, 34, "month-to-month", "fiber", "electronic-check", "east"],
    [48, 25.0, None, 0, None, "two-year", "dsl", "credit-card", "west"],
    [3, 99.9, 299.7, 6, 61, "month-to-month", "fiber", "electronic-check", "south"],
]  # fmt: skip
GOOD = {"dataframe_split": {"columns": COLUMNS, "data": ROWS}}
BAD = {"dataframe_records": [dict(zip(COLUMNS[:-1], ROWS[0][:-1], strict=True))]}  # no region
HTTP_V2 = {
    "version": "2.0", "routeKey": "POST /score", "rawPath": "/score", "rawQueryString": "",
    "headers": {"content-type": "application/json"},
    "requestContext": {"http": {"method": "POST", "path": "/score"}, "requestId": "JKJaXmPLvHcESHA=", "stage": "$default"},
    "body": json.dumps(GOOD), "isBase64Encoded": False,
}  # fmt: skip
REST_V1_BAD = {"resource": "/score", "path": "/score", "httpMethod": "POST", "headers": {"Content-Type": "application/json"},
               "requestContext": {"requestId": "c6af9ac6", "stage": "prod"}, "body": json.dumps(BAD), "isBase64Encoded": False}  # fmt: skip


@dataclass
class Container:
    """One runtime client serving a package, and what its first (cold) invocation gave."""

    engine: str
    api: FakeRuntimeAPI
    proc: subprocess.Popen[bytes]
    log: Path
    cold_start_s: float
    first_id: str
    first: Answer


@pytest.fixture(scope="module", params=["onnx", "sklearn"])
def container(request, lambda_packages, tmp_path_factory):
    """The package of one engine under awslambdaric; its first invocation (a good direct
    request) is the cold start, timed from the process start to the response's arrival."""
    engine = request.param
    api = FakeRuntimeAPI()
    log = tmp_path_factory.mktemp(f"runtime-{engine}") / "function.log"
    started = time.perf_counter()
    proc = start_client(lambda_packages[engine] / "app", api, log, CONTAINER_ENV)
    try:
        first_id, first = api.invoke(GOOD, timeout=COLD_START_LIMIT_S * 2)
        yield Container(engine, api, proc, log, first.at - started, first_id, first)
    finally:
        stop_client(proc)
        api.close()


@pytest.fixture(scope="module")
def project_model(lambda_store, container):
    from mlcycle.core.spec import get_spec
    from mlcycle.flows.score import load_model

    return load_model(lambda_store.mlc, get_spec("churn"), "1", container.engine)


def test_the_cold_start_answers_the_first_request_in_time(container, project_model):
    import pandas as pd

    assert container.cold_start_s < COLD_START_LIMIT_S
    assert container.api.polled_at is not None  # init (imports, model load) ended before the first poll
    assert container.first.kind == "response", container.first.body
    body = container.first.body
    assert (body["status"], body["model"], body["version"]) == (200, "churn", "1")
    frame = pd.DataFrame(ROWS, columns=COLUMNS).astype(dict.fromkeys(COLUMNS[:5], "float64"))
    assert body["predictions"] == project_model.predict(frame).tolist()
    assert len(body["probabilities"]) == len(ROWS)


def test_a_bad_direct_request_is_a_400_response_not_a_function_error(container):
    _, answer = container.api.invoke(BAD)
    assert answer.kind == "response"
    assert answer.body["status"] == 400
    assert [(e["field"], e["problem"]) for e in answer.body["errors"]] == [("region", "missing_column")]


def test_api_gateway_events_are_answered_as_api_gateway_expects(container):
    _, good = container.api.invoke(HTTP_V2)
    assert good.kind == "response"
    assert (good.body["statusCode"], good.body["headers"]["Content-Type"]) == (200, "application/json")
    assert json.loads(good.body["body"])["predictions"] == container.first.body["predictions"]
    _, bad = container.api.invoke(REST_V1_BAD)
    assert bad.body["statusCode"] == 400
    assert "region" in json.loads(bad.body["body"])["message"]


def test_warm_requests_are_fast(container):
    latencies = sorted(container.api.invoke(GOOD)[1].latency_s for _ in range(20))
    assert (
        latencies[len(latencies) // 2] < 0.5
    )  # a few ms here; the bound only catches a regression like a reload


def test_one_json_log_line_per_request_with_the_lambda_request_id(container):
    first_id, api = container.first_id, container.api
    ids = [api.invoke(GOOD)[0], api.invoke(BAD)[0]]
    time.sleep(0.2)  # the line is written before the response is posted; let the file catch up
    lines = json_lines(container.log)
    loaded = [ln for ln in lines if ln.get("message") == "model loaded"]
    assert len(loaded) == 1, "the model is loaded once per container"
    assert loaded[0]["engine"] == container.engine
    by_id = {ln["request_id"]: ln for ln in lines if "request_id" in ln}
    assert {first_id, *ids} <= set(by_id)
    assert {k: by_id[first_id][k] for k in ("event", "status", "rows", "model", "version", "engine")} == {
        "event": "direct", "status": 200, "rows": 3, "model": "churn", "version": "1", "engine": container.engine,
    }  # fmt: skip
    assert (by_id[ids[1]]["status"], by_id[ids[1]]["rows"]) == (400, 0)
    assert container.proc.poll() is None, "the runtime client keeps serving"


def test_a_package_whose_model_cannot_load_reports_an_init_error(lambda_packages, tmp_path):
    app = tmp_path / "app"
    shutil.copytree(lambda_packages["onnx"] / "app", app)
    (app / "model" / "model.onnx").write_bytes(b"not an onnx model")
    api = FakeRuntimeAPI()
    proc = start_client(app, api, tmp_path / "function.log")
    try:
        error = api.wait_init_error()
    finally:
        stop_client(proc)
        api.close()
    # onnxruntime's own error, raised from the package's LambdaApp.load at import of handler.py.
    assert "INVALID_PROTOBUF" in error["errorMessage"], error
    assert any("in load" in frame for frame in error["stackTrace"]), error["stackTrace"]
