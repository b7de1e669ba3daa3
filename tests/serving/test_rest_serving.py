"""The strict REST server (`mlcycle serve`) in a real subprocess on a loopback port, serving the
champion of a real store, hit over HTTP: good requests in each input format score like the model
itself, probabilities come when asked, and each bad request is refused with its status and a
message naming the field, while the server keeps serving."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import Env, env_at, relocate

pytestmark = pytest.mark.slow

MODEL = "churn"
MAX_BODY_MB = 0.2  # a small limit, so the 413 case needs only a small body
FEATURES = [
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "support_calls",
    "age",
    "contract",
    "internet_service",
    "payment_method",
    "region",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(
    url: str, body: dict | bytes | None = None, content_type: str = "application/json"
) -> tuple[int, dict]:
    """(status, JSON body) of a GET (no body) or a POST of ``body`` (a dict is sent as JSON)."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    headers = {"Content-Type": content_type} if data is not None else {}
    req = urllib.request.Request(url, data=data, headers=headers, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def store(golden_store, tmp_path_factory) -> Env:
    """One copy of the session's golden store (churn v1 champion) for the whole module."""
    root = tmp_path_factory.mktemp("serving")
    relocate(golden_store, root)
    return env_at(root)


@pytest.fixture(scope="module")
def server(store):
    """One `mlcycle serve churn` (the real entry point) for every HTTP test of the module."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlcycle.cli", "serve", MODEL, "--port", str(port),
         "--max-body-mb", str(MAX_BODY_MB)],
        # The server resolves the alias in this test's store, named explicitly: nothing is read
        # from whatever MLflow URIs the test process happens to hold.
        env={**os.environ, "MLFLOW_TRACKING_URI": store.tracking_uri, "MLFLOW_REGISTRY_URI": store.tracking_uri},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlcycle serve exited early:\n{proc.stdout.read().decode()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2):
                break
        except OSError:
            time.sleep(0.3)
    else:
        os.killpg(proc.pid, signal.SIGTERM)
        pytest.fail("mlcycle serve did not answer /ping within 90 s")
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def served_model(server, store):
    """The model object the server scores with (same version and engine), loaded in this process."""
    from mlcycle.core.spec import get_spec
    from mlcycle.flows.score import load_model

    _, meta = call(f"{server}/metadata")
    return load_model(store.mlc, get_spec(MODEL), meta["version"], meta["engine"])


def frame(n: int = 40):
    from mlcycle.data.generators import generate_batch

    return generate_batch(MODEL, dt.date(2026, 1, 15), n, seed=9)[FEATURES]


def records(n: int = 6) -> list[dict[str, Any]]:
    """``n`` good rows as JSON records (NaN as null, in features that had nulls in training)."""
    return json.loads(frame(n).to_json(orient="records"))


# --- what is served and how it answers ------------------------------------------------------------


def test_health_and_metadata_name_the_model_and_its_schema(server):
    for path in ("/ping", "/health"):
        assert call(f"{server}{path}") == (200, {"status": "ok", "model": MODEL, "version": "1"})
    for path in ("/version", "/metadata"):
        status, meta = call(f"{server}{path}")
        assert status == 200
        assert (meta["model"], meta["version"], meta["alias"], meta["classes"]) == (
            MODEL,
            "1",
            "champion",
            [0, 1],
        )
        features = {f["name"]: f for f in meta["features"]}
        assert list(features) == FEATURES
        # Required = no nulls in training: the churn generator leaves total_charges and age
        # missing for some rows, never the others.
        assert [n for n, f in features.items() if not f["required"]] == ["total_charges", "age"]
        assert features["region"]["categories"] == ["east", "north", "south", "west"]
        assert features["monthly_charges"]["type"] == "number"
        assert sorted(meta["params"]) == ["allow_unseen_categories", "ignore_extra_columns", "probabilities"]


def as_split(df) -> dict:
    return {"dataframe_split": json.loads(df.to_json(orient="split", index=False))}


def as_records(df) -> dict:
    return {"dataframe_records": json.loads(df.to_json(orient="records"))}


def as_inputs(df) -> dict:
    return {"inputs": {c: json.loads(df[c].to_json(orient="values")) for c in df.columns}}


@pytest.mark.parametrize("encode", [as_split, as_records, as_inputs], ids=["split", "records", "inputs"])
def test_predictions_equal_the_models_own(server, served_model, encode):
    df = frame()
    status, body = call(f"{server}/invocations", encode(df))
    assert status == 200, body
    assert body["predictions"] == served_model.predict(df).tolist()
    assert set(body) == {"predictions"}  # no probabilities unless asked


def test_probabilities_per_row_with_the_class_labels(server, served_model):
    df = frame()
    status, body = call(f"{server}/invocations", {**as_split(df), "params": {"probabilities": True}})
    assert status == 200, body
    assert body["classes"] == served_model.classes_.tolist() == [0, 1]
    proba = np.asarray(body["probabilities"])
    assert proba.shape == (len(df), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(proba, served_model.predict_proba(df), rtol=0, atol=1e-12)
    assert body["predictions"] == [body["classes"][i] for i in proba.argmax(axis=1)]


def test_a_null_where_training_had_nulls_is_scored(server):
    rows = records(3)
    rows[0]["age"] = rows[1]["total_charges"] = None
    status, body = call(f"{server}/invocations", {"dataframe_records": rows})
    assert status == 200, body
    assert len(body["predictions"]) == 3


def test_unseen_category_is_scored_with_a_warning_when_allowed(server):
    rows = records(3)
    rows[1]["contract"] = "lifetime"
    status, body = call(
        f"{server}/invocations", {"dataframe_records": rows, "params": {"allow_unseen_categories": True}}
    )
    assert status == 200, body
    assert len(body["predictions"]) == 3
    (warning,) = body["warnings"]
    assert (warning["field"], warning["problem"], warning["values"], warning["rows"]) == (
        "contract",
        "unseen_category",
        ["lifetime"],
        [1],
    )


def test_extra_columns_are_dropped_with_a_warning_when_asked(server):
    df = frame(5)
    _, plain = call(f"{server}/invocations", as_split(df))
    status, body = call(
        f"{server}/invocations",
        {**as_split(df.assign(customer_id="C1", note="x")), "params": {"ignore_extra_columns": True}},
    )
    assert status == 200, body
    assert body["predictions"] == plain["predictions"]
    assert [(w["field"], w["problem"]) for w in body["warnings"]] == [
        ("customer_id", "extra_column"),
        ("note", "extra_column"),
    ]


# --- refusals ----------------------------------------------------------------------------------------


def with_row(change: dict[str, Any], row: int = 0) -> dict:
    rows = records()
    rows[row].update(change)
    return {"dataframe_records": rows}


def without(column: str, row: int | None = None) -> dict:
    rows = records()
    for i, r in enumerate(rows):
        if row is None or i == row:
            del r[column]
    return {"dataframe_records": rows}


def raw_records(value: str) -> bytes:
    """A records body whose first row's monthly_charges is the literal JSON text ``value``
    (what ``json.dumps`` of a Python value cannot write, such as a bare ``Infinity``)."""
    body = with_row({"monthly_charges": "__raw__"})
    return json.dumps(body).replace('"__raw__"', value).encode()


def split_with_short_row() -> dict:
    body = as_split(frame(4))
    body["dataframe_split"]["data"][2] = body["dataframe_split"]["data"][2][:-1]
    return body


def too_large() -> dict:
    rows = records()
    return {"dataframe_records": rows * (int(MAX_BODY_MB * 1e6) // len(json.dumps(rows)) + 2)}


REFUSALS = [
    # (id, body (made when the test runs), content type, status, field named, (problem kind, rows))
    ("missing-column", lambda: without("region"), None, 400, "region", ("missing_column", None)),
    ("absent-in-one-record", lambda: without("age", row=3), None, 400, "age", ("missing_value", [3])),
    ("extra-column", lambda: with_row({"favourite_colour": "blue"}), None, 400, "favourite_colour", ("extra_column", None)),
    ("string-in-numeric", lambda: with_row({"monthly_charges": "lots"}, 1), None, 400, "monthly_charges", ("wrong_type", [1])),
    ("numeric-string-in-numeric", lambda: with_row({"tenure_months": "12"}), None, 400, "tenure_months", ("wrong_type", [0])),
    ("number-for-categorical", lambda: with_row({"region": 3}, 4), None, 400, "region", ("wrong_type", [4])),
    ("boolean-in-numeric", lambda: with_row({"support_calls": True}), None, 400, "support_calls", ("wrong_type", [0])),
    ("null-in-required-numeric", lambda: with_row({"tenure_months": None}, 2), None, 400, "tenure_months", ("null_in_required", [2])),
    ("null-in-required-categorical", lambda: with_row({"contract": None}, 5), None, 400, "contract", ("null_in_required", [5])),
    ("unseen-category", lambda: with_row({"contract": "lifetime"}), None, 400, "contract", ("unseen_category", [0])),
    ("infinity", lambda: raw_records("Infinity"), None, 400, "monthly_charges", ("not_finite", [0])),
    ("huge-integer", lambda: raw_records("1" + "0" * 400), None, 400, "monthly_charges", ("not_finite", [0])),
    ("empty-input", lambda: {"dataframe_records": []}, None, 400, "dataframe_records", ("empty_input", None)),
    ("malformed-json", lambda: b'{"dataframe_records": [', None, 400, "body", ("malformed_json", None)),
    ("not-an-object", lambda: b"[1, 2]", None, 400, "body", ("bad_body", None)),
    ("two-input-formats", lambda: {**as_split(frame(2)), **as_records(frame(2))}, None, 400, "body", ("bad_body", None)),
    ("unknown-body-key", lambda: {**as_split(frame(2)), "colums": []}, None, 400, "colums", ("bad_body", None)),
    ("split-row-too-short", split_with_short_row, None, 400, "dataframe_split.data", ("bad_body", [2])),
    ("unknown-param", lambda: {**as_split(frame(2)), "params": {"proba": True}}, None, 400, "proba", ("unknown_param", None)),
    ("param-wrong-type", lambda: {**as_split(frame(2)), "params": {"probabilities": "yes"}}, None, 400, "probabilities", ("bad_param", None)),
    ("params-not-an-object", lambda: {**as_split(frame(2)), "params": ["probabilities"]}, None, 400, "params", ("bad_param", None)),
    ("not-json-content-type", lambda: as_split(frame(2)), "text/csv", 415, "Content-Type", ("unsupported_media_type", None)),
    ("body-over-the-limit", too_large, None, 413, "body", ("too_large", None)),
]  # fmt: skip


@pytest.mark.parametrize("case", [pytest.param(c[1:], id=c[0]) for c in REFUSALS])
def test_a_bad_request_is_refused_naming_the_field(server, case):
    body, content_type, status, field, (kind, rows) = case
    got, answer = call(f"{server}/invocations", body(), content_type or "application/json")
    assert got == status, answer
    assert answer["error_code"] == "BAD_REQUEST"
    assert field in answer["message"]
    named = [e for e in answer["errors"] if e["field"] == field]
    assert [e["problem"] for e in named] == [kind], answer["errors"]
    if rows is not None:
        assert named[0]["rows"] == rows
    assert call(f"{server}/ping")[0] == 200  # and the server serves on


def test_every_problem_of_a_request_is_reported_at_once(server):
    body = with_row({"monthly_charges": "lots", "region": "mars", "payment_method": None}, 1)
    status, answer = call(f"{server}/invocations", {**body, "params": {"probabilities": 1}})
    assert status == 400
    assert {e["field"]: e["problem"] for e in answer["errors"]} == {
        "probabilities": "bad_param",
        "monthly_charges": "wrong_type",
        "payment_method": "null_in_required",
        "region": "unseen_category",
    }
    unseen = next(e for e in answer["errors"] if e["field"] == "region")
    assert (unseen["values"], unseen["known"]) == (["mars"], ["east", "north", "south", "west"])
    assert "known: ['east', 'north', 'south', 'west']" in answer["message"]


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/nowhere", 404), ("GET", "/invocations", 405)]
)
def test_unknown_routes_answer_json_naming_the_routes(server, method, path, status):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(f"{server}{path}", method=method), timeout=10)
    assert err.value.code == status
    assert "POST /invocations" in json.loads(err.value.read())["message"]


# --- in process: the model's own failure, and a spec that is not the version's ---------------------


@pytest.fixture(scope="module")
def strict_pipeline():
    """The project's churn pipeline with an encoder that raises on an unseen category: a model
    that fails on rows the checks let through (with ``allow_unseen_categories``)."""
    import pandas as pd

    from mlcycle.core.spec import get_spec
    from mlcycle.data.generators import generate_batch
    from mlcycle.ml.training import build_pipeline

    spec = get_spec(MODEL)
    df = pd.concat([generate_batch(MODEL, dt.date(2026, 1, d), 300) for d in (1, 2)], ignore_index=True)
    pipeline = build_pipeline(spec, {"max_iter": 10})
    pipeline.set_params(preprocess__cat__onehot__handle_unknown="error")
    return spec, pipeline.fit(df[spec.features.all], df[spec.data.target])


@contextlib.contextmanager
def serving_in_thread(app):
    """``app`` under uvicorn in a thread of this process, on a free loopback port: its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start within 30 s"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_model_error_is_a_500_with_its_message(strict_pipeline):
    from mlcycle.ml.schema import schema_of
    from mlcycle.serving.server import ServedModel, create_app

    spec, pipeline = strict_pipeline
    served = ServedModel(MODEL, spec.task, "7", None, "sklearn", "test", pipeline, schema_of(pipeline, spec))
    with serving_in_thread(create_app(served)) as url:
        body = {**with_row({"contract": "lifetime"}), "params": {"allow_unseen_categories": True}}
        status, answer = call(f"{url}/invocations", body)
        assert status == 500
        assert answer["error_code"] == "INTERNAL_ERROR"
        assert "churn v7" in answer["message"]
        assert "ValueError" in answer["message"]
        assert "lifetime" in answer["message"]
        assert call(f"{url}/invocations", with_row({}))[0] == 200


def test_a_spec_whose_features_are_not_the_versions_is_refused(strict_pipeline):
    from mlcycle.core.errors import SpecError
    from mlcycle.core.spec import parse_spec
    from mlcycle.ml.schema import schema_of

    spec, pipeline = strict_pipeline
    raw = spec.model_dump(by_alias=True)
    raw["features"]["numeric"].remove("age")
    changed = parse_spec(raw, Path(f"{MODEL}.yaml"))
    with pytest.raises(SpecError, match=r"trained on features .*'age'.* but the spec lists"):
        schema_of(pipeline, changed)


def test_probabilities_of_a_regressor_are_refused(strict_pipeline):
    from mlcycle.core.spec import Task
    from mlcycle.ml.schema import schema_of
    from mlcycle.serving.request import RequestRefused, parse_request

    spec, pipeline = strict_pipeline
    body = json.dumps({**with_row({}), "params": {"probabilities": True}}).encode()
    with pytest.raises(RequestRefused, match=r"probabilities: applies to classifiers.*regression") as err:
        parse_request(body, schema_of(pipeline, spec), Task.REGRESSION)
    assert err.value.status == 400


def test_serve_without_the_alias_says_what_to_do(store, monkeypatch, capsys):
    from mlcycle.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
    assert main(["serve", MODEL, "--alias", "staging"]) == 2
    assert "churn@staging is not set" in capsys.readouterr().err
