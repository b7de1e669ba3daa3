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
    logged_in.dependency_overrides[get_user] = object  # any user: authorisation is Airflow's job
    return TestClient(logged_in), TestClient(create_app())


def test_plugin_registers_links_app_and_menu():
    from mlcycle_plugin import MlcyclePlugin

    assert {link.name for link in MlcyclePlugin.operator_extra_links} == {
        "MLflow run",
        "Model version",
        "Evidence",
    }
    assert MlcyclePlugin.fastapi_apps[0]["url_prefix"] == "/mlcycle"
    assert MlcyclePlugin.external_views[0]["href"] == "/mlcycle/ledger"


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
