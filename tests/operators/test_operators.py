"""Every operator of ``mlcycle_airflow.operators``, called as ``op.execute(context)``.

No Airflow run and no metadata DB: each operator gets a small fake context (``task_context``)
but works against the real thing underneath: the test's MLflow store (SQLite), real Great
Expectations validation and the real lake (the ``env`` fixture). What is asserted is what a
DAG relies on: the XCom result has exactly the keys of the operator's ``result_type``, the
extra links are pushed (and pushed *before* the work, so a failed task still links to its
evidence), domain errors fail without retries (``AirflowFailException``), and the MLflow hook
resolves its connection the way a user configures it (an ``AIRFLOW_CONN_*`` variable).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException, AirflowSkipException

from mlcycle.core.errors import MlcycleError
from mlcycle.core.results import result_keys
from mlcycle.core.run import run_key
from mlcycle_airflow.links import EvidenceLink, MLflowModelVersionLink, MLflowRunLink
from mlcycle_airflow.operators import (
    ChooseModelOperator,
    DriftCheckOperator,
    EvaluateModelOperator,
    FinalizeScoringOperator,
    GateOperator,
    GXValidateOperator,
    PlanPartitionsOperator,
    PromoteModelOperator,
    RequestRetrainOperator,
    ResolveDataOperator,
    ScorePartitionOperator,
    TrainModelOperator,
)
from tests.conftest import today, train_champion, write_batches

MODEL = "churn"
RUN_URL, VERSION_URL, EVIDENCE_URL = MLflowRunLink.key, MLflowModelVersionLink.key, EvidenceLink.key


# --- the fake task context ----------------------------------------------------------------------


@dataclass
class FakeTI:
    """Records ``xcom_push`` calls: ``pushed`` the last value per key, ``history`` every push in order."""

    pushed: dict[str, Any] = field(default_factory=dict)
    history: list[tuple[str, Any]] = field(default_factory=list)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value
        self.history.append((key, value))


def task_context(
    dag_id: str = f"train_{MODEL}",
    run_id: str = "manual__2026-01-01T00:00:00+00:00",
    *,
    run_type: str = "manual",
    run_after: dt.datetime | None = None,
    params: dict[str, Any] | None = None,
    asset_events: dict[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The context of one task of one DAG run, as ``execute`` receives it.

    A plain dict is enough: the operators read only ``dag_run`` (dag_id, run_id, run_type,
    run_after, triggering_user_name), ``ti.xcom_push``, ``params``, ``triggering_asset_events``
    (objects with ``.extra``) and, for ``RequestRetrainOperator``, ``outlet_events[asset].extra``.
    Call it once per task (each task has its own ``ti``) with the same ``run_id`` for one run.
    """
    dag_run = SimpleNamespace(
        dag_id=dag_id,
        run_id=run_id,
        run_type=run_type,
        run_after=run_after or dt.datetime.now(dt.UTC),
        triggering_user_name="tester",
    )
    events = {
        uri: [SimpleNamespace(extra=extra) for extra in extras]
        for uri, extras in (asset_events or {}).items()
    }
    return {
        "dag_run": dag_run,
        "ti": FakeTI(),
        "params": params or {},
        "triggering_asset_events": events,
        "outlet_events": defaultdict(lambda: SimpleNamespace(extra={})),
    }


# --- helpers ------------------------------------------------------------------------------------


def assert_typed(op, out) -> None:
    """The XCom has exactly the keys the operator declares (what the DAG factory's templates pull)."""
    items = out if isinstance(out, list) else [out]
    assert items, f"{type(op).__name__} returned nothing"
    for item in items:
        assert set(item) == result_keys(op.result_type), type(op).__name__


def evidence_file(env, url: str) -> Path:
    """The lake file an Evidence URL serves."""
    assert url.startswith("/mlcycle/evidence/"), url
    return Path(env.lake) / url.removeprefix("/mlcycle/evidence/")


def alias(env, name: str) -> str | None:
    from mlcycle.store import registry

    mv = registry.version_by_alias(env.mlc, MODEL, name)
    return str(mv.version) if mv else None


def assert_run_url(env, url: str, experiment_name: str) -> str:
    """A run URL of ``experiment_name`` whose run exists in the store; returns the run id."""
    experiment_id = env.mlc.get_experiment_by_name(experiment_name).experiment_id
    assert f"/#/experiments/{experiment_id}/runs/" in url, url
    run_id = url.rsplit("/", 1)[-1]
    assert env.mlc.get_run(run_id).info.experiment_id == experiment_id
    return run_id


def resolve(ctx: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    op = ResolveDataOperator(task_id="resolve_data", model=MODEL, **kwargs)
    out = op.execute(ctx)
    assert_typed(op, out)
    return out


# --- train_<model> ------------------------------------------------------------------------------


def test_train_chain_registers_and_promotes_v1(env):
    """Resolve → GXValidate → Train → Evaluate → Gate → Promote, one fake DAG run."""
    from mlcycle.store import ledger

    write_batches(env.lake, MODEL, today(), days=3, rows=1500)
    run_id = "manual__chain"
    ctx = lambda: task_context(run_id=run_id, params={"reason": "operator test"})  # noqa: E731

    resolved = resolve(ctx())
    assert (resolved["batches"], resolved["rows"], resolved["source"]) == (3, 4500, "window")
    assert Path(resolved["manifest_uri"]).is_file()

    c = ctx()
    op = GXValidateOperator(task_id="validate_data", model=MODEL, manifest_uri=resolved["manifest_uri"])
    validated = op.execute(c)
    assert_typed(op, validated)
    assert validated["success"] is True and validated["rows"] == 4500 and validated["expectations"] > 0
    page = evidence_file(env, c["ti"].pushed[EVIDENCE_URL])
    assert (
        "PASSED" in page.read_text() and json.loads(page.with_name("validation.json").read_text())["success"]
    )

    c = ctx()
    op = TrainModelOperator(task_id="train_model", model=MODEL, manifest_uri=resolved["manifest_uri"])
    trained = op.execute(c)
    assert_typed(op, trained)
    assert (trained["skipped"], trained["created"], trained["version"]) == (False, True, "1")
    assert [key for key, _ in c["ti"].history] == [RUN_URL, VERSION_URL, VERSION_URL]
    assert c["ti"].history[1][1].endswith(f"/#/models/{MODEL}")  # before the version exists
    assert assert_run_url(env, c["ti"].pushed[RUN_URL], MODEL) == trained["mlflow_run_id"]
    assert c["ti"].pushed[RUN_URL].split("/experiments/")[1].startswith(f"{trained['experiment_id']}/")
    assert c["ti"].pushed[VERSION_URL].endswith(f"/#/models/{MODEL}/versions/1")
    mv = env.mlc.get_model_version(MODEL, "1")
    assert mv.tags["airflow.run_id"] == run_id
    assert (mv.tags["trigger.kind"], mv.tags["trigger.reason"]) == ("manual", "operator test")
    assert alias(env, "challenger") == "1" and alias(env, "champion") is None

    c = ctx()
    op = EvaluateModelOperator(
        task_id="evaluate_model", model=MODEL, version=trained["version"], holdout_uri=trained["holdout_uri"]
    )
    evaluation = op.execute(c)
    assert_typed(op, evaluation)
    assert evaluation["candidate"]["version"] == "1" and evaluation["champion"] is None  # bootstrap
    assert evaluation["holdout_rows"] > 0 and c["ti"].pushed == {}  # no links

    c = ctx()
    op = GateOperator(task_id="gate", model=MODEL, evaluation=evaluation)
    verdict = op.execute(c)
    assert_typed(op, verdict)
    assert (verdict["passed"], verdict["bootstrap"], verdict["version"]) == (True, True, "1")
    assert "PASSED" in evidence_file(env, c["ti"].pushed[EVIDENCE_URL]).read_text()
    assert c["ti"].pushed[VERSION_URL].endswith("/versions/1")

    c = ctx()
    op = PromoteModelOperator(task_id="promote", model=MODEL, verdict=verdict)
    promoted = op.execute(c)
    assert_typed(op, promoted)
    assert promoted == {"promoted": True, "version": "1", "previous_version": None, "ledger_recorded": True}
    assert c["ti"].pushed[VERSION_URL].endswith("/versions/1")
    assert alias(env, "champion") == "1"
    (entry,) = ledger.history(MODEL, uri=env.ledger_uri)
    assert (entry.new_version, entry.run_id, entry.reason) == ("1", run_id, "operator test")

    # A retry of Promote (same run) moves nothing and records nothing twice.
    again = PromoteModelOperator(task_id="promote", model=MODEL, verdict=verdict).execute(ctx())
    assert (again["promoted"], again["ledger_recorded"]) == (False, False)
    assert len(ledger.history(MODEL, uri=env.ledger_uri)) == 1


def test_a_refused_verdict_skips_promote_with_the_verdict_as_its_reason(env):
    """A refusal is an outcome: promote is skipped (not failed), says why, and moves nothing."""
    from mlcycle.store import ledger

    verdict = {
        "passed": False, "version": "1", "champion_version": None, "bootstrap": False,
        "summary": "FAIL: v1 roc_auc 0.51 below 0.7", "verdict_uri": "/x/verdict.json",
        "report_uri": "/x/verdict.html",
    }  # fmt: skip
    c = task_context(run_id="manual__refused")
    op = PromoteModelOperator(task_id="promote", model=MODEL, verdict=verdict)
    with pytest.raises(AirflowSkipException, match=r"FAIL: v1 roc_auc 0.51 below 0.7") as skipped:
        op.execute(c)
    assert "v1 stays registered but is not promoted" in str(skipped.value)
    assert c["ti"].pushed["skip_reason"] == str(skipped.value)
    assert ledger.history(MODEL, uri=env.ledger_uri) == []


def test_invalid_batch_fails_validation_but_its_evidence_link_was_pushed(env, tmp_path):
    """The batch comes from an asset event (its ``batch_uri`` extra); GX refuses it."""
    from mlcycle.data.generators import generate_batch
    from mlcycle.data.lake import write_parquet

    bad = tmp_path / "incoming-bad.parquet"
    write_parquet(generate_batch(MODEL, today(), 1500, corrupt=True), bad)
    run_id = "asset_triggered__bad"
    event = {f"mlcycle://{MODEL}/incoming": [{"batch_uri": str(bad), "reason": "new batch landed"}]}
    ctx = lambda: task_context(run_id=run_id, run_type="asset_triggered", asset_events=event)  # noqa: E731

    resolved = resolve(ctx())
    assert (resolved["source"], resolved["batch_uri"]) == ("batch_uri", str(bad))

    c = ctx()
    op = GXValidateOperator(task_id="validate_data", model=MODEL, manifest_uri=resolved["manifest_uri"])
    with pytest.raises(AirflowFailException) as failed:
        op.execute(c)
    message = str(failed.value)
    for expectation in (
        "expect_column_values_to_be_between(monthly_charges",
        "expect_column_values_to_not_be_null(customer_id",
        "expect_column_values_to_be_in_set(contract",
    ):
        assert expectation in message, message
    assert "quarantined" in message

    page = evidence_file(env, c["ti"].pushed[EVIDENCE_URL])
    text = page.read_text()
    assert page.name == "validation.html" and "FAILED" in text and "<h2>Failures</h2>" in text
    assert (
        'class="rule fail"><td><code>expect_column_values_to_not_be_null</code></td><td>customer_id' in text
    )
    result = json.loads(page.with_name("validation.json").read_text())
    assert result["success"] is False
    quarantine = Path(env.lake) / MODEL / "quarantine" / run_key(run_id)
    assert (quarantine / bad.name).read_bytes() == bad.read_bytes()


def test_training_on_identical_data_skips_but_links_its_mlflow_run(env):
    end = today()
    train_champion(env, MODEL, end=end, days=3)
    ctx = lambda: task_context(run_id="manual__again")  # noqa: E731
    resolved = resolve(ctx(), as_of=end.isoformat())

    c = ctx()
    op = TrainModelOperator(task_id="train_model", model=MODEL, manifest_uri=resolved["manifest_uri"])
    with pytest.raises(AirflowSkipException, match="identical data"):
        op.execute(c)
    assert "champion v1 was trained on identical data" in c["ti"].pushed["skip_reason"]
    run_id = assert_run_url(env, c["ti"].pushed[RUN_URL], MODEL)
    assert "mlcycle.skipped" in env.mlc.get_run(run_id).data.tags
    assert c["ti"].pushed[VERSION_URL].endswith(f"/#/models/{MODEL}")  # no version was made
    assert [str(v.version) for v in env.mlc.search_model_versions(f"name = '{MODEL}'")] == ["1"]


# --- domain errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_operator", "message"),
    [
        (lambda: ChooseModelOperator(task_id="choose", model=MODEL), "churn@champion is not set"),
        (lambda: ChooseModelOperator(task_id="choose", model=MODEL, version=7), "has no version 7"),
        (lambda: DriftCheckOperator(task_id="check", model=MODEL), "churn@champion is not set"),
        (lambda: ResolveDataOperator(task_id="resolve", model=MODEL, latest_only=True), "no batch for model"),
        pytest.param(
            lambda: ResolveDataOperator(task_id="resolve", model="no_such_model"),
            "no model spec",
        ),
    ],
    ids=["no-champion", "no-such-version", "drift-without-champion", "empty-lake", "unknown-spec"],
)
def test_domain_errors_fail_without_retries(env, make_operator, message):
    """An empty registry or lake is not an outage: the task fails at once, with the message."""
    with pytest.raises(AirflowFailException, match=message) as failed:
        make_operator().execute(task_context())
    assert isinstance(failed.value.__cause__, MlcycleError)


# --- score_<model> ------------------------------------------------------------------------------


def test_score_path_writes_the_predictions(env, monkeypatch):
    """Choose → Plan → ScorePartition (each partition) → Finalize on champion v1.

    Choose reads MLflow through an env-var connection with a ``ui_url``, as a user would set it."""
    import pandas as pd

    from mlcycle.flows.score import expected_columns
    from mlcycle.store import registry

    spec = train_champion(env, MODEL, end=today(), days=3)
    conn = {"conn_type": "mlflow", "extra": {"tracking_uri": env.tracking_uri, "ui_url": "http://ui:5000/"}}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_UI", json.dumps(conn))
    ctx = lambda: task_context(dag_id=f"score_{MODEL}", run_id="manual__score")  # noqa: E731
    batch_uri = resolve(ctx(), latest_only=True)["batch_uri"]

    c = ctx()
    op = ChooseModelOperator(task_id="choose_model", model=MODEL, mlflow_conn_id="mlflow_ui")
    choice = op.execute(c)
    assert_typed(op, choice)
    assert (choice["version"], choice["alias"], choice["shadow_version"]) == ("1", "champion", None)
    assert c["ti"].history == [
        (VERSION_URL, f"http://ui:5000/#/models/{MODEL}"),
        (VERSION_URL, f"http://ui:5000/#/models/{MODEL}/versions/1"),
    ]

    op = PlanPartitionsOperator(task_id="plan", model=MODEL, batch_uri=batch_uri, rows_per_partition=600)
    partitions = op.execute(ctx())
    assert_typed(op, partitions)
    assert [(p["start"], p["stop"]) for p in partitions] == [(0, 600), (600, 1200), (1200, 1500)]

    parts = []
    for partition in partitions:
        op = ScorePartitionOperator(
            task_id="score_partition",
            model=MODEL,
            batch_uri=batch_uri,
            partition=partition,
            model_choice=choice,
            chunk_rows=250,
        )
        part = op.execute(ctx())
        assert_typed(op, part)
        assert part["rows"] == partition["stop"] - partition["start"] and Path(part["part_uri"]).is_file()
        parts.append(part)

    c = ctx()
    op = FinalizeScoringOperator(
        task_id="finalize", model=MODEL, batch_uri=batch_uri, parts=parts, model_choice=choice
    )
    summary = op.execute(c)
    assert_typed(op, summary)
    assert (summary["rows"], summary["version"], summary["shadow"]) == (1500, "1", None)
    output = Path(summary["output_uri"])
    assert output == Path(env.lake) / MODEL / "predictions" / Path(batch_uri).name
    predictions = pd.read_parquet(output)
    batch = pd.read_parquet(batch_uri)
    classes = list(registry.load_sklearn(env.mlc, MODEL, "1").classes_)
    assert len(predictions) == 1500 and list(predictions.columns) == expected_columns(spec, classes)
    assert sorted(predictions["customer_id"]) == sorted(batch["customer_id"])
    assert set(predictions["model_version"]) == {"1"} and set(predictions["run_id"]) == {"manual__score"}
    assert not any(Path(p["part_uri"]).exists() for p in parts)  # merged, then cleaned up
    report = evidence_file(env, c["ti"].pushed[EVIDENCE_URL])
    assert report.is_file() and Path(summary["report_uri"]) == report
    run_id = assert_run_url(env, c["ti"].pushed[RUN_URL], f"{MODEL}-scoring")
    assert env.mlc.get_run(run_id).data.metrics["rows"] == 1500


# --- monitor_<model> ----------------------------------------------------------------------------


def test_drift_check_then_request_retrain(env):
    """A stable batch inside the cooldown asks for nothing (skip); a drifted one, checked past
    the cooldown, asks for a retrain and the request sets the retrain asset event's extra."""
    from airflow.sdk import Asset

    from mlcycle.store import ledger

    train_champion(env, MODEL, end=today() - dt.timedelta(days=1), days=3)
    retrain = Asset(uri=f"mlcycle://{MODEL}/retrain", name=f"{MODEL}_retrain")

    def check(run_id: str, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        c = task_context(dag_id=f"monitor_{MODEL}", run_id=run_id)
        op = DriftCheckOperator(task_id="check_drift", model=MODEL, **kwargs)
        out = op.execute(c)
        assert_typed(op, out)
        assert Path(out["report_uri"]) == evidence_file(env, c["ti"].pushed[EVIDENCE_URL])
        assert_run_url(env, c["ti"].pushed[RUN_URL], f"{MODEL}-monitoring")
        return out, c

    write_batches(env.lake, MODEL, today(), days=1, rows=3000, seed=5)
    stable, _ = check("manual__stable")
    assert stable["retrain"] is False and "cooldown" in stable["blocked_by"], stable
    c = task_context(dag_id=f"monitor_{MODEL}", run_id="manual__stable")
    with pytest.raises(AirflowSkipException, match="no retrain"):
        RequestRetrainOperator(task_id="request_retrain", decision=stable, outlets=[retrain]).execute(c)
    assert retrain not in c["outlet_events"]

    write_batches(env.lake, MODEL, today(), days=1, rows=3000, seed=5, drift=1.0)
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=13)).isoformat()
    drifted, _ = check("manual__drifted", as_of=later)
    assert drifted["retrain"] is True and drifted["blocked_by"] == [], drifted

    c = task_context(dag_id=f"monitor_{MODEL}", run_id="manual__drifted")
    op = RequestRetrainOperator(task_id="request_retrain", decision=drifted, outlets=[retrain])
    request = op.execute(c)
    assert_typed(op, request)
    assert (
        c["outlet_events"][retrain].extra
        == request
        == {
            "reason": drifted["reason"],
            "monitor_dag_id": f"monitor_{MODEL}",
            "monitor_run_id": "manual__drifted",
            "report": drifted["report_uri"],
        }
    )
    decisions = ledger.decisions(MODEL, uri=env.ledger_uri)
    assert sorted((d.run_id, d.requested) for d in decisions) == [
        ("manual__drifted", True),
        ("manual__stable", False),
    ]


@pytest.mark.parametrize(
    ("decision", "emitted"),
    [
        ({"retrain": True, "reason": "retrain requested: drift", "report_uri": "/lake/drift.html"}, True),
        ({"retrain": False, "reason": "no retrain: cooldown", "report_uri": "/lake/drift.html"}, False),
    ],
    ids=["retrain", "no-retrain"],
)
def test_request_retrain_emits_only_when_asked(decision, emitted):
    from airflow.sdk import Asset

    retrain, other = Asset(uri="mlcycle://churn/retrain"), Asset(uri="mlcycle://churn/other")
    c = task_context(dag_id=f"monitor_{MODEL}", run_id="manual__m")
    op = RequestRetrainOperator(task_id="request_retrain", decision=decision, outlets=[retrain, other])
    if not emitted:
        with pytest.raises(AirflowSkipException, match=re.escape(decision["reason"])):
            op.execute(c)
        assert dict(c["outlet_events"]) == {}
        return
    out = op.execute(c)
    expected = {
        "reason": decision["reason"],
        "monitor_dag_id": f"monitor_{MODEL}",
        "monitor_run_id": "manual__m",
        "report": "/lake/drift.html",
    }
    assert out == expected
    assert c["outlet_events"][retrain].extra == c["outlet_events"][other].extra == expected


# --- the MLflow hook ----------------------------------------------------------------------------


def test_hook_without_the_default_connection_uses_mlflow_tracking_uri(env, monkeypatch):
    from mlcycle_airflow.hooks import MLflowHook

    monkeypatch.setenv("MLCYCLE_MLFLOW_UI_URL", "http://mlflow-ui.local/")
    hook = MLflowHook()
    assert hook.tracking_uri == env.tracking_uri == os.environ["MLFLOW_TRACKING_URI"]
    assert hook.ui_url == "http://mlflow-ui.local"


@pytest.mark.parametrize(
    ("conn", "tracking_uri", "ui_url"),
    [
        (
            {"conn_type": "mlflow", "host": "mlflow.example", "port": 5000},
            "http://mlflow.example:5000",
            "http://mlflow.example:5000",
        ),
        (
            {"conn_type": "mlflow", "host": "mlflow.example", "schema": "https"},
            "https://mlflow.example",
            "https://mlflow.example",
        ),
        (
            {
                "conn_type": "mlflow",
                "extra": {"tracking_uri": "sqlite:///{root}/m.db", "ui_url": "http://ui:5000/"},
            },
            "sqlite:///{root}/m.db",
            "http://ui:5000",
        ),
    ],
    ids=["host-port", "https-host", "extra-tracking-uri"],
)
def test_hook_reads_an_env_var_connection(env, monkeypatch, conn, tracking_uri, ui_url):
    from mlcycle_airflow.hooks import MLflowHook

    root = str(env.root)
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn).replace("{root}", root))
    hook = MLflowHook()
    assert hook.tracking_uri == tracking_uri.replace("{root}", root)
    assert hook.ui_url == ui_url


def test_hook_refuses_a_connection_without_host_or_tracking_uri(env, monkeypatch):
    from mlcycle_airflow.hooks import MLflowHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "extra": {"ui_url": "x"}})
    )
    with pytest.raises(
        ValueError, match=r"connection 'mlflow_default' gives neither a host nor extra\.tracking_uri"
    ):
        _ = MLflowHook().tracking_uri


def test_hook_with_a_missing_non_default_connection_raises(env):
    from mlcycle_airflow.hooks import MLflowHook

    with pytest.raises(AirflowNotFoundException, match="mlflow_elsewhere"):
        _ = MLflowHook(mlflow_conn_id="mlflow_elsewhere").tracking_uri


def test_hook_client_is_cached_and_sets_nothing_process_wide(env, monkeypatch):
    import mlflow

    from mlcycle_airflow.hooks import MLflowHook

    other = f"sqlite:///{env.root / 'other.db'}"
    conn = {"conn_type": "mlflow", "extra": {"tracking_uri": other}}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    before = (mlflow.get_tracking_uri(), os.environ["MLFLOW_TRACKING_URI"])

    hook = MLflowHook()
    client = hook.get_conn()
    assert hook.get_conn() is client
    assert client.tracking_uri == other
    client.search_experiments(max_results=1)  # it talks to its own store
    assert (mlflow.get_tracking_uri(), os.environ["MLFLOW_TRACKING_URI"]) == before == (env.tracking_uri,) * 2


# --- inputs, data errors and the logical date (issue 9) -------------------------------------------


@pytest.mark.parametrize(
    ("uri", "accepted"),
    [
        (None, True),
        ("/lake/churn/incoming/2026-01-01.parquet", True),
        ("s3://bucket/landing/2026-01-01.parquet", True),
        ("gs://bucket/x.parquet", True),
        ("http://127.0.0.1:8080/x.parquet", False),
        ("https://example.com/x.parquet", False),
        ("ftp://host/x.parquet", False),
        ("file:///etc/x.parquet", False),
        ("memory://lake/x.parquet", False),
        ("/lake/churn/../../etc/x.parquet", False),
        ("relative/x.parquet", False),
        ("s3://bucket/x.csv", False),
    ],
)
def test_the_batch_uri_form_refuses_other_schemes_at_trigger_time(uri, accepted):
    """The train and score forms take an absolute path or an s3:// / gs:// object ending .parquet;
    anything else (http:// first of all) is refused before a run is created."""
    from airflow.sdk.definitions.param import ParamValidationError

    from mlcycle_airflow.factory import _batch_uri_param

    param = _batch_uri_param("test")
    if accepted:
        assert param.resolve(uri) == uri
    else:
        with pytest.raises(ParamValidationError, match="does not match"):
            param.resolve(uri)


def test_a_batch_uri_outside_the_allowed_inputs_fails_without_retries(env, tmp_path, monkeypatch):
    """Checked again when the file is read: a path the form accepts but outside the lake root and
    MLCYCLE_ALLOWED_INPUTS fails the task (no retry), naming what is allowed; nothing is written."""
    monkeypatch.delenv("MLCYCLE_ALLOWED_INPUTS", raising=False)
    outside = tmp_path / "outside" / "2026-01-01.parquet"
    outside.parent.mkdir()
    outside.write_bytes(b"PAR1")
    ctx = task_context(run_id="manual__outside", params={"batch_uri": str(outside)})
    with pytest.raises(AirflowFailException, match=rf"input {outside} is refused.*MLCYCLE_ALLOWED_INPUTS"):
        resolve(ctx, batch_uri=str(outside))
    assert not (Path(env.lake) / MODEL).exists()


def test_an_unreadable_batch_fails_without_retries_and_is_quarantined(env):
    """A CSV named .parquet in the lake: one clear failure naming the file (no pyarrow traceback
    as the message, no retry), and the file is in quarantine by its digest."""
    from mlcycle.data import lake as lk

    bad = Path(env.lake) / MODEL / "uploads" / "2026-01-01.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_text("customer_id,tenure_months\n1,2\n")
    ctx = task_context(run_id="manual__csv")
    with pytest.raises(
        AirflowFailException, match=rf"cannot read {bad} as a batch: it is not a Parquet file"
    ):
        resolve(ctx, batch_uri=str(bad))
    (record,) = lk.Lake(env.lake, MODEL).quarantine_index().records
    assert (record.source, record.sha256, record.run) == (
        str(bad),
        lk.file_sha256(bad),
        run_key("manual__csv"),
    )


@pytest.mark.parametrize(
    ("dates", "window_end"),
    [
        # scheduled: the data interval's end, whatever the clock says
        ({"data_interval_end": "2026-11-25T03:00", "logical_date": "2026-11-25T03:00"}, "2026-11-25"),
        # a manual run given a logical date (airflow dags test <dag> <date>): no interval needed
        ({"data_interval_end": None, "logical_date": "2026-11-24T03:00"}, "2026-11-24"),
        # Airflow 3 manual run without a logical date: run_after
        ({"data_interval_end": None, "logical_date": None}, "2026-11-28"),
    ],
    ids=["scheduled", "manual-with-logical-date", "manual-without"],
)
def test_the_window_ends_at_the_runs_logical_date_not_the_clock(env, dates, window_end):
    """The default window ends on the day the run stands for (data interval end, else logical
    date, else run_after), so a rerun of a past night reads what that night saw."""
    from mlcycle.flows import train

    write_batches(env.lake, MODEL, dt.date(2026, 11, 28), days=10, rows=30)
    ctx = task_context(run_id="manual__dated", run_after=dt.datetime(2026, 11, 28, 9, tzinfo=dt.UTC))
    for name, value in dates.items():
        setattr(ctx["dag_run"], name, value and dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC))
    out = resolve(ctx)
    manifest = train.read_manifest(out["manifest_uri"])
    assert manifest.window_end == window_end
    assert Path(manifest.batches[-1]).name == f"{window_end}.parquet"
