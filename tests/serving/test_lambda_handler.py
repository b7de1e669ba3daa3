"""`mlcycle package lambda`: the package made from a real trained version (churn v1 of the golden
store), its packaged handler imported in a clean interpreter (only the package on the path) and
called with recorded event shapes: API Gateway REST (v1), HTTP API (v2), a base64 body and direct
invokes. Predictions equal the project's own scorer; bad requests are answered 4xx naming the
field; both engines. Then the command's refusals."""

from __future__ import annotations

import base64
import datetime as dt
import json
import sqlite3
from importlib.metadata import version as installed
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO, env_at, relocate
from tests.serving.conftest import ENGINES, LAMBDA_MODEL, package, run_handler

pytestmark = pytest.mark.slow

FEATURES = [
    "tenure_months", "monthly_charges", "total_charges", "support_calls", "age",
    "contract", "internet_service", "payment_method", "region",
]  # fmt: skip


def frame(n: int = 25):
    from mlcycle.data.generators import generate_batch

    return generate_batch(LAMBDA_MODEL, dt.date(2026, 1, 15), n, seed=11)[FEATURES]


def split(df) -> dict[str, Any]:
    return {"dataframe_split": json.loads(df.to_json(orient="split", index=False))}


def records(df) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records"))


# Recorded shapes (trimmed to what the handler reads and a little more): API Gateway REST API
# proxy integration (payload 1.0) and HTTP API (payload 2.0).
def rest_v1(
    body: str | None, *, method: str = "POST", b64: bool = False, content_type: str = "application/json"
):
    return {
        "resource": "/score", "path": "/score", "httpMethod": method,
        "headers": {"Content-Type": content_type, "Host": "abc123.execute-api.eu-west-1.amazonaws.com"},
        "multiValueHeaders": {"Content-Type": [content_type]}, "queryStringParameters": None,
        "requestContext": {"resourcePath": "/score", "httpMethod": method, "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                           "stage": "prod", "identity": {"sourceIp": "203.0.113.9"}},
        "body": body, "isBase64Encoded": b64,
    }  # fmt: skip


def http_v2(body: str | None, *, method: str = "POST", b64: bool = False):
    return {
        "version": "2.0", "routeKey": f"{method} /score", "rawPath": "/score", "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "abc123.execute-api.eu-west-1.amazonaws.com"},
        "requestContext": {"apiId": "abc123", "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
                           "http": {"method": method, "path": "/score", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9"},
                           "requestId": "JKJaXmPLvHcESHA=", "routeKey": f"{method} /score", "stage": "$default"},
        "body": body, "isBase64Encoded": b64,
    }  # fmt: skip


def with_row(change: dict[str, Any], row: int = 0) -> dict[str, Any]:
    rows = records(frame(4))
    rows[row].update(change)
    return {"dataframe_records": rows}


def without(column: str) -> dict[str, Any]:
    rows = records(frame(4))
    for r in rows:
        del r[column]
    return {"dataframe_records": rows}


GOOD = split(frame())
GOOD_TEXT = json.dumps(GOOD)
# case -> event; the scored ones all carry frame()'s rows.
SCORED = {
    "direct-split": GOOD,
    "direct-records": {"dataframe_records": records(frame())},
    "direct-inputs": {"inputs": {c: json.loads(frame()[c].to_json(orient="values")) for c in FEATURES}},
    "rest-v1": rest_v1(GOOD_TEXT),
    "http-v2": http_v2(GOOD_TEXT),
    "rest-v1-base64": rest_v1(base64.b64encode(GOOD_TEXT.encode()).decode(), b64=True),
    "http-v2-base64": http_v2(base64.b64encode(GOOD_TEXT.encode()).decode(), b64=True),
}
# (case, event, how it is answered, status, field named, problem kind)
REFUSED = [
    ("direct-missing-field", without("region"), "direct", 400, "region", "missing_column"),
    ("direct-mistyped-field", with_row({"monthly_charges": "lots"}, 2), "direct", 400, "monthly_charges", "wrong_type"),
    ("direct-not-an-object", [1, 2], "direct", 400, "body", "bad_body"),
    ("direct-unseen-category", with_row({"contract": "lifetime"}), "direct", 400, "contract", "unseen_category"),
    ("rest-v1-missing-field", rest_v1(json.dumps(without("tenure_months"))), "http", 400, "tenure_months", "missing_column"),
    ("http-v2-mistyped-field", http_v2(json.dumps(with_row({"region": 3}, 1))), "http", 400, "region", "wrong_type"),
    ("rest-v1-bad-json", rest_v1('{"dataframe_split": {'), "http", 400, "body", "malformed_json"),
    ("http-v2-bad-json", http_v2("not json"), "http", 400, "body", "malformed_json"),
    ("rest-v1-bad-base64", rest_v1("%%% not base64", b64=True), "http", 400, "body", "bad_base64"),
    ("rest-v1-no-body", rest_v1(None), "http", 400, "body", "empty_body"),
    ("rest-v1-get", rest_v1(None, method="GET"), "http", 405, "httpMethod", "method_not_allowed"),
    ("http-v2-put", http_v2(GOOD_TEXT, method="PUT"), "http", 405, "requestContext.http.method", "method_not_allowed"),
    ("rest-v1-csv", rest_v1("a,b\n1,2", content_type="text/csv"), "http", 415, "Content-Type", "unsupported_media_type"),
]  # fmt: skip
EXTRA = {
    "no-probabilities": {**GOOD, "params": {"probabilities": False}},
    "extra-column-ignored": {
        **split(frame().assign(customer_id="C1")),
        "params": {"ignore_extra_columns": True},
    },
}


@pytest.fixture(scope="module")
def answered(lambda_packages, tmp_path_factory) -> dict[str, tuple[dict[str, Any], list[str], str]]:
    """engine -> (answer per case, mlcycle files imported, stdout) of one clean interpreter that
    imported the packaged handler and called it with every case."""
    events = {**SCORED, **{c[0]: c[1] for c in REFUSED}, **EXTRA}
    root = tmp_path_factory.mktemp("lambda-answers")
    return {e: run_handler(lambda_packages[e] / "app", events, root / e) for e in ENGINES}


@pytest.fixture(scope="module")
def project_models(lambda_store):
    """engine -> the model the project's own scorer uses for churn v1 with that engine."""
    from mlcycle.core.spec import get_spec
    from mlcycle.flows.score import load_model

    spec = get_spec(LAMBDA_MODEL)
    return {e: load_model(lambda_store.mlc, spec, "1", e) for e in ENGINES}


def document(answer: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(status, JSON document) of a direct-invoke result or an API Gateway response."""
    if "statusCode" in answer:
        assert answer["headers"]["Content-Type"] == "application/json"
        return answer["statusCode"], json.loads(answer["body"])
    return answer["status"], answer


# --- what the package holds ------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_the_package_holds_the_model_its_signature_and_pinned_requirements(lambda_packages, engine):
    out = lambda_packages[engine]
    meta = json.loads((out / "app/model/metadata.json").read_text())
    assert {k: meta[k] for k in ("model", "version", "alias", "task", "classes", "engine")} == {
        "model": "churn", "version": "1", "alias": "champion", "task": "classification", "classes": [0, 1],
        "engine": engine,
    }  # fmt: skip
    model_file = {"onnx": "model.onnx", "sklearn": "model.skops"}[engine]
    assert sorted(p.name for p in (out / "app/model").iterdir()) == sorted(
        [model_file, "metadata.json", "signature.json"]
    )
    signature = json.loads((out / "app/model/signature.json").read_text())
    assert [f["name"] for f in signature["features"]] == FEATURES
    assert signature["classes"] == [0, 1]
    assert {f["name"]: f["categories"] for f in signature["features"] if f["kind"] == "categorical"}[
        "region"
    ] == ["east", "north", "south", "west"]

    dockerfile = (out / "Dockerfile").read_text()
    assert "FROM public.ecr.aws/lambda/python:3.11\n" in dockerfile
    assert 'CMD ["handler.handler"]' in dockerfile
    assert "ENV OMP_NUM_THREADS=1\n" in dockerfile  # one vCPU below 1,769 MB: no spinning OpenMP threads
    pins = dict(
        line.split("==") for line in (out / "requirements.txt").read_text().splitlines() if "==" in line
    )
    needed = {
        "onnx": ["onnxruntime", "numpy", "pandas"],
        "sklearn": ["scikit-learn", "skops", "scipy", "numpy", "pandas"],
    }
    for name in needed[engine]:
        assert pins[name] == installed(name)
    assert ("onnxruntime" in pins) == (engine == "onnx")
    assert ("scikit-learn" in pins) == (engine == "sklearn")
    assert not {"mlflow", "awslambdaric", "mlcycle"} & set(pins)

    readme = (out / "README.md").read_text()
    for step in ("docker build", "docker push", "aws lambda create-function", "--package-type Image",
                 "aws lambda invoke", "apigatewayv2 create-api"):  # fmt: skip
        assert step in readme
    example = json.loads((out / "example.json").read_text())
    assert example["dataframe_split"]["columns"] == FEATURES


@pytest.mark.parametrize("engine", ENGINES)
def test_the_packaged_modules_are_the_projects_own_and_nothing_else_is_imported(
    lambda_packages, answered, engine
):
    app = lambda_packages[engine] / "app"
    copied = sorted(
        str(p.relative_to(app)) for p in (app / "mlcycle").rglob("*.py") if p.name != "__init__.py"
    )
    expected = ["mlcycle/core/errors.py", "mlcycle/serving/lambda_handler.py", "mlcycle/serving/request.py",
                "mlcycle/ml/schema.py"] + (["mlcycle/ml/onnx_twin.py"] if engine == "onnx" else [])  # fmt: skip
    assert copied == sorted(expected)
    for rel in copied:
        assert (app / rel).read_text() == (REPO / "include" / rel).read_text()
    _, files, _ = answered[engine]
    assert files and all(Path(f).is_relative_to(app) for f in files), files


# --- answers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", list(SCORED))
def test_predictions_equal_the_projects_scorer(answered, project_models, engine, case):
    status, doc = document(answered[engine][0][case])
    assert status == 200, doc
    model = project_models[engine]
    df = frame()
    assert (doc["model"], doc["version"]) == ("churn", "1")
    assert doc["predictions"] == model.predict(df).tolist()
    assert doc["classes"] == [0, 1]
    # The same engine, the same code: equal to float precision.
    np.testing.assert_allclose(doc["probabilities"], model.predict_proba(df), rtol=0, atol=1e-12)


def test_both_engines_agree_within_the_onnx_tolerance(answered):
    from mlcycle.core.spec import get_spec

    onnx = np.asarray(document(answered["onnx"][0]["direct-split"])[1]["probabilities"])
    sk = np.asarray(document(answered["sklearn"][0]["direct-split"])[1]["probabilities"])
    assert np.abs(onnx - sk).max() <= get_spec(LAMBDA_MODEL).scoring.onnx_tolerance


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", [pytest.param(c[0:1] + c[2:], id=c[0]) for c in REFUSED])
def test_a_bad_request_is_answered_with_its_status_naming_the_field(answered, engine, case):
    name, shape, status, field, kind = case
    answer = answered[engine][0][name]
    assert ("statusCode" in answer) == (shape == "http"), answer
    got, doc = document(answer)
    assert got == status, doc
    assert doc["error_code"] == "BAD_REQUEST"
    assert (doc["model"], doc["version"]) == ("churn", "1")
    assert field in doc["message"]
    assert [e["problem"] for e in doc["errors"] if e["field"] == field] == [kind], doc["errors"]
    if status == 405:
        assert answer["headers"]["Allow"] == "POST"


def test_a_mistyped_field_names_the_rows(answered):
    _, doc = document(answered["onnx"][0]["direct-mistyped-field"])
    (problem,) = doc["errors"]
    assert (problem["field"], problem["rows"], problem["values"]) == (
        "monthly_charges",
        [2],
        ["string 'lots'"],
    )


def test_params_are_read_as_the_rest_server_reads_them(answered):
    _, plain = document(answered["onnx"][0]["direct-split"])
    _, bare = document(answered["onnx"][0]["no-probabilities"])
    assert bare["predictions"] == plain["predictions"]
    assert "probabilities" not in bare and "classes" not in bare
    _, extra = document(answered["onnx"][0]["extra-column-ignored"])
    assert extra["predictions"] == plain["predictions"]
    assert [(w["field"], w["problem"]) for w in extra["warnings"]] == [("customer_id", "extra_column")]


@pytest.mark.parametrize("engine", ENGINES)
def test_one_structured_log_line_per_request(answered, engine):
    answers, _, stdout = answered[engine]
    lines = [json.loads(ln) for ln in stdout.splitlines() if ln.startswith("{")]
    loaded, *requests = lines
    assert (loaded["message"], loaded["engine"]) == ("model loaded", engine)
    assert loaded["load_ms"] > 0
    assert [r["request_id"] for r in requests] == [f"req-{case}" for case in answers]
    by_id = {r["request_id"]: r for r in requests}
    ok, bad = by_id["req-rest-v1"], by_id["req-direct-missing-field"]
    assert {k: ok[k] for k in ("event", "status", "rows", "model", "version", "engine")} == {
        "event": "apigateway-rest", "status": 200, "rows": 25, "model": "churn", "version": "1", "engine": engine,
    }  # fmt: skip
    assert (bad["event"], bad["status"], bad["rows"]) == ("direct", 400, 0)
    assert by_id["req-http-v2"]["event"] == "apigateway-http"
    assert all(isinstance(r["latency_ms"], float) and r["latency_ms"] >= 0 for r in requests)


# --- the command's refusals -------------------------------------------------------------------------


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".staging-" in p.name or ".previous-" in p.name)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--alias", "staging"], "churn@staging is not set"),
        (["--version", "7"], "churn has no version 7"),
    ],
    ids=["unknown-alias", "unknown-version"],
)
def test_a_version_that_does_not_exist_is_refused(lambda_store, tmp_path, capsys, args, message):
    assert package(lambda_store, tmp_path / "pkg", *args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "pkg").exists()
    assert leftovers(tmp_path) == []


def test_an_unknown_model_is_refused(lambda_store, tmp_path, capsys):
    from mlcycle.cli import main

    assert main(["package", "lambda", "nosuchmodel", "--out", str(tmp_path / "pkg")]) == 2
    assert "no model spec" in capsys.readouterr().err
    assert not (tmp_path / "pkg").exists()


def test_a_non_empty_directory_that_is_no_package_is_refused(lambda_store, tmp_path, capsys):
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert package(lambda_store, out, "--engine", "sklearn") == 2
    assert "is not empty and is not a package made by `mlcycle package lambda`" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert leftovers(tmp_path) == []


def test_an_earlier_package_is_replaced_whole(lambda_store, tmp_path):
    out = tmp_path / "pkg"
    assert package(lambda_store, out) == 0
    assert (out / "app/model/model.onnx").exists()
    (out / "stale.txt").write_text("from before")
    assert package(lambda_store, out, "--engine", "sklearn") == 0
    assert (out / "app/model/model.skops").exists()
    assert not (out / "app/model/model.onnx").exists() and not (out / "stale.txt").exists()
    assert leftovers(tmp_path) == []


@pytest.fixture
def store_without_twin(golden_store, tmp_path):
    """A copy of the golden store where churn v1's ONNX twin failed its parity check."""
    root = tmp_path / "store"
    root.mkdir()
    relocate(golden_store, root)
    with sqlite3.connect(root / "mlflow.db") as conn:
        updated = conn.execute(
            "update model_version_tags set value = 'failed' where key = 'onnx.status' and name = 'churn'"
        ).rowcount
    assert updated == 1
    return env_at(root)


def test_onnx_forced_without_a_passing_twin_is_refused(store_without_twin, tmp_path, capsys):
    out = tmp_path / "pkg"
    assert package(store_without_twin, out, "--engine", "onnx") == 2
    err = capsys.readouterr().err
    assert "--engine onnx: churn v1 has no ONNX twin that passed its parity check (ONNX twin failed" in err
    assert "--engine sklearn" in err
    assert not out.exists()
    assert leftovers(tmp_path) == []
    # Left to itself, the command falls back to scikit-learn.
    assert package(store_without_twin, out) == 0
    assert json.loads((out / "app/model/metadata.json").read_text())["engine"] == "sklearn"


def test_a_package_that_fails_midway_leaves_the_earlier_one_untouched(golden_store, tmp_path, capsys):
    root = tmp_path / "store"
    root.mkdir()
    relocate(golden_store, root)
    store = env_at(root)
    out = tmp_path / "pkg"
    assert package(store, out, "--engine", "sklearn") == 0
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    # The twin passed at training, but its artifact is gone: the build fails after staging began
    # (the skops file is already downloaded into it).
    (twin,) = root.joinpath("mlartifacts").rglob("onnx/model.onnx")
    twin.unlink()
    assert package(store, out, "--engine", "onnx") == 2
    assert "cannot load the ONNX twin of churn v1" in capsys.readouterr().err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert json.loads((out / "app/model/metadata.json").read_text())["engine"] == "sklearn"
    assert leftovers(tmp_path) == []


def test_a_pickled_version_is_refused_and_its_payload_never_runs(store, tmp_path, capsys):
    from tests.unit.test_security import Payload, register

    marker = tmp_path / "payload-ran"
    version = register(store, LAMBDA_MODEL, Payload(marker), serialization_format="pickle")
    out = tmp_path / "pkg"
    assert package(store, out, "--version", version) == 2
    assert f"models:/churn/{version} is saved as pickle, which is not loaded" in capsys.readouterr().err
    assert not marker.exists(), "the pickled payload ran"
    assert not out.exists()
    assert leftovers(tmp_path) == []
