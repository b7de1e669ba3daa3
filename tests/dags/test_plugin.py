"""The Airflow plugin: links registered, and its web app (ledger page, evidence files)."""

from __future__ import annotations

import pytest

from mlcycle.store import ledger


@pytest.fixture
def client(env):
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from mlcycle_airflow.webapp import create_app

    logged_in = create_app()
    logged_in.dependency_overrides[get_user] = object  # any user
    # who may read every DAG but demand's (Airflow's auth manager decides that in the api-server)
    logged_in.dependency_overrides[logged_in.state.dag_reader] = lambda: (
        lambda dag_id: not dag_id.endswith("_demand")
    )
    return TestClient(logged_in), TestClient(create_app())


def test_plugin_registers_links_app_and_menu():
    from mlcycle_plugin import MlcyclePlugin

    assert {link.name for link in MlcyclePlugin.operator_extra_links} == {
        "MLflow run",
        "Model version",
        "Evidence",
    }
    assert MlcyclePlugin.fastapi_apps[0]["url_prefix"] == "/mlcycle"
    views = {v["name"]: v for v in MlcyclePlugin.external_views}
    assert views["Promotion ledger"]["href"] == "/mlcycle/ledger"
    assert (views["Models"]["destination"], views["Models"]["category"]) == ("nav", "browse")
    assert (views["Model"]["destination"], views["Model"]["href"]) == ("dag", "/mlcycle/dags/{DAG_ID}/model")


def test_pages_need_a_login(client):
    _, anonymous = client
    assert anonymous.get("/ledger").status_code == 401
    assert anonymous.get("/evidence/churn/runs/x/verdict.html").status_code == 401


def test_ledger_page_lists_moves_newest_first(client, env):
    ui, _ = client
    for version in ("1", "2"):
        ledger.append(
            ledger.Entry(
                model="churn", alias="champion", previous_version=None if version == "1" else "1",
                new_version=version, action="promote", actor="test", reason=f"move to {version}",
                evidence_uri=f"{env.lake}/churn/runs/r{version}/verdict.html", verdict="PASS",
                dag_id="train_churn", run_id=f"r{version}",
            )
        )  # fmt: skip
    page = ui.get("/ledger?model=churn")
    assert page.status_code == 200
    assert page.text.index("move to 2") < page.text.index("move to 1")
    assert "/mlcycle/evidence/churn/runs/r2/verdict.html" in page.text
    rows = ui.get("/ledger.json?model=churn").json()
    assert [r["new_version"] for r in rows] == ["2", "1"]
    assert ui.get("/ledger?model=Robert');DROP").status_code == 422


def test_evidence_serves_reports_and_nothing_else(client, env):
    from pathlib import Path

    ui, _ = client
    run = Path(env.lake) / "churn" / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "verdict.html").write_text("<h1>PASSED</h1>")
    (run / "holdout.parquet").write_bytes(b"PAR1")
    ok = ui.get("/evidence/churn/runs/r1/verdict.html")
    assert (
        ok.status_code == 200 and "PASSED" in ok.text and ok.headers["content-type"].startswith("text/html")
    )
    assert ui.get("/evidence/churn/runs/r1/holdout.parquet").status_code == 404  # data is not evidence
    assert ui.get("/evidence/churn/runs/r1/missing.html").status_code == 404
    assert ui.get("/evidence/churn/incoming/2026-01-01.parquet").status_code == 404
    assert ui.get("/evidence/churn/runs/../../../etc/passwd.json").status_code == 404


def test_the_evidence_tab_is_a_task_instance_view_embedded_in_the_ui():
    from mlcycle_plugin import MlcyclePlugin

    (tab,) = [v for v in MlcyclePlugin.external_views if v["destination"] == "task_instance"]
    assert tab["url_route"] == "mlcycle-evidence"  # with a url_route the UI embeds it (an iframe)
    assert tab["href"] == "/mlcycle/tasks/{DAG_ID}/{RUN_ID}/{TASK_ID}/{MAP_INDEX}"


@pytest.mark.parametrize(
    ("run_id", "map_index", "expected"),
    [
        ("manual__2026-12-02T10:00:00+00:00", -1,
         "/dags/train_churn/runs/manual__2026-12-02T10%3A00%3A00%2B00%3A00/tasks/gate/plugin/mlcycle-evidence"),
        ("r1", 3, "/dags/train_churn/runs/r1/tasks/gate/mapped/3/plugin/mlcycle-evidence"),
    ],
)  # fmt: skip
def test_links_fall_back_to_the_evidence_tab_never_to_an_empty_url(run_id, map_index, expected):
    from mlcycle_airflow.links import evidence_tab

    assert evidence_tab("train_churn", run_id, "gate", map_index) == expected


def test_a_task_without_evidence_of_its_own_shows_its_state_and_the_runs_reports(client, env, airflow_db):
    from pathlib import Path

    ui, anonymous = client
    run = Path(env.lake) / "churn" / "runs" / "manual__r1"
    (run / "scoring").mkdir(parents=True)
    (run / "verdict.html").write_text("<h1>FAILED</h1>")
    (run / "scoring" / "report.html").write_text("<h1>scored</h1>")
    (run / "verdict.json").write_text("{}")
    page = ui.get("/tasks/train_churn/manual__r1/promote/-1", follow_redirects=False)
    assert page.status_code == 200, page.text
    assert "<code>promote</code> of <code>train_churn</code>" in page.text and "not started" in page.text
    assert '<a href="/mlcycle/evidence/churn/runs/manual__r1/verdict.html">Gate verdict</a>' in page.text
    assert (
        '<a href="/mlcycle/evidence/churn/runs/manual__r1/scoring/report.html">Scoring report</a>'
        in page.text
    )
    assert "verdict.json" not in page.text  # pages, not data
    assert '<a href="/mlcycle/ledger?model=churn">' in page.text
    assert anonymous.get("/tasks/train_churn/manual__r1/promote/-1").status_code == 401


def test_the_api_answers_extra_links_without_nulls():
    """A task that never ran has no links: they are left out, not null (the official client
    cannot parse null), big answers stay whole, and every other route is untouched."""
    import json

    from fastapi.testclient import TestClient

    from mlcycle_airflow.links import DropNullLinks

    seen: list[dict[bytes, bytes]] = []

    async def inner(scope, receive, send):  # what Airflow's API answers
        seen.append(dict(scope["headers"]))
        links = {"Evidence": None, "MLflow run": "http://m/#/r/1", "x" * 2000: None}
        body = json.dumps({"extra_links": links, "total_entries": 3}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body[:100], "more_body": True})
        await send({"type": "http.response.body", "body": body[100:]})

    client = TestClient(DropNullLinks(inner))
    answer = client.get("/api/v2/dags/train_churn/dagRuns/manual__1/taskInstances/gate/links")
    assert answer.status_code == 200
    assert answer.json() == {"extra_links": {"MLflow run": "http://m/#/r/1"}, "total_entries": 1}
    assert int(answer.headers["content-length"]) == len(answer.content)
    assert b"accept-encoding" not in seen[0]  # asked for uncompressed, so it can be read
    other = client.get("/api/v2/dags/train_churn/dagRuns/manual__1/taskInstances/gate/logs/1")
    assert other.json()["total_entries"] == 3 and b"accept-encoding" in seen[1]  # untouched


def signed(secret: str, body: bytes, *, age: float = 0, delivery: str = "d-1") -> dict[str, str]:
    """The headers MLflow sends with a delivery (mlflow.webhooks.delivery), signed with ``secret``."""
    import base64
    import hashlib
    import hmac
    import time

    stamp = str(int(time.time() - age))
    mac = hmac.new(secret.encode(), f"{delivery}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": stamp,
        "X-MLflow-Signature": "v1," + base64.b64encode(mac).decode(),
    }


def alias_event(model: str = "churn", alias: str = "champion", action: str = "created") -> bytes:
    import json

    return json.dumps(
        {"entity": "model_version_alias", "action": action, "timestamp": "2026-12-02T00:00:00+00:00",
         "data": {"name": model, "alias": alias, "version": "7"}}
    ).encode()  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "status", "says"),
    [
        (lambda body: signed("wrong secret", body), 401, "signature does not match"),
        (lambda body: signed("s3cret", body, age=3600), 401, "refused as a replay"),
        (lambda body: {"Content-Type": "application/json"}, 401, "headers are required"),
        (lambda body: signed("s3cret", body + b" "), 401, "signature does not match"),
    ],
    ids=["wrong-secret", "replayed", "unsigned", "tampered"],
)
def test_the_mlflow_webhook_refuses_what_mlflow_did_not_sign(client, monkeypatch, headers, status, says):
    monkeypatch.setenv("MLCYCLE_MLFLOW_WEBHOOK_SECRET", "s3cret")
    _, anonymous = client  # MLflow has no Airflow login: the signature is the authentication
    body = alias_event()
    answer = anonymous.post("/webhooks/mlflow", content=body, headers=headers(body))
    assert answer.status_code == status and says in answer.json()["detail"]


def test_the_mlflow_webhook_needs_a_secret_and_passes_on_only_champion_moves(
    client, monkeypatch, airflow_db, tmp_path
):
    _, anonymous = client
    body = alias_event()
    monkeypatch.delenv("MLCYCLE_MLFLOW_WEBHOOK_SECRET", raising=False)
    refused = anonymous.post("/webhooks/mlflow", content=body, headers=signed("", body))
    assert (
        refused.status_code == 503 and "MLCYCLE_MLFLOW_WEBHOOK_SECRET is not set" in refused.json()["detail"]
    )

    monkeypatch.setenv("MLCYCLE_MLFLOW_WEBHOOK_SECRET", "s3cret")
    for event, ignored in (
        (alias_event(alias="challenger"), "only @champion moves are guarded"),
        (alias_event(action="deleted"), "only @champion moves are guarded"),
        (alias_event(model="someone_elses"), "not a model of this deployment"),
    ):
        answer = anonymous.post("/webhooks/mlflow", content=event, headers=signed("s3cret", event))
        assert answer.status_code == 202 and ignored in answer.json()["ignored"]
    # A champion move of one of ours whose guard DAG no DAG file declares (a spec added, its
    # DAGs not parsed yet): whatever other tests have parsed into this metadata DB.
    from mlcycle.core import settings

    specs = tmp_path / "specs"
    specs.mkdir()
    for spec in settings.specs_dir().glob("*.yaml"):
        (specs / spec.name).write_text(spec.read_text())
    added = (specs / "churn.yaml").read_text().replace("name: churn\n", "name: churn_added\n", 1)
    (specs / "churn_added.yaml").write_text(added)
    monkeypatch.setenv("MLCYCLE_SPECS_DIR", str(specs))
    body = alias_event(model="churn_added")
    answer = anonymous.post("/webhooks/mlflow", content=body, headers=signed("s3cret", body))
    assert answer.status_code == 409 and "is guard_churn_added deployed?" in answer.json()["detail"]
    garbage = b'{"not": "mlflow"}'
    assert (
        anonymous.post("/webhooks/mlflow", content=garbage, headers=signed("s3cret", garbage)).status_code
        == 400
    )


def test_pages_follow_airflows_per_dag_read_permission(client, env):
    ui, _ = client
    for model in ("churn", "demand"):
        ledger.append(
            ledger.Entry(
                model=model, alias="champion", previous_version=None, new_version="1", action="bootstrap",
                actor="test", reason=f"first {model}", evidence_uri=None, verdict="PASS",
                dag_id=f"train_{model}", run_id="r1",
            )
        )  # fmt: skip
    assert [r["model"] for r in ui.get("/ledger.json").json()] == ["churn"]
    assert "first demand" not in ui.get("/ledger").text
    assert 'href="/mlcycle/models/demand"' not in ui.get("/models").text
    for path in ("/models/demand", "/dags/train_demand/model", "/evidence/demand/runs/r1/verdict.html",
                 "/tasks/train_demand/r1/gate/-1"):  # fmt: skip
        denied = ui.get(path)
        assert denied.status_code == 403, path
        assert "ask an Airflow admin for access" in denied.json()["detail"]
