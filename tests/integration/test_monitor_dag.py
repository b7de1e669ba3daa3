"""monitor_<model> with dag.test(): stable data, drift, cooldown, a batch that fails validation.

The champion is trained with the plain steps (fast, no Airflow needed); the monitoring
runs are real DAG runs. ``as_of`` moves the guardrails' clock forward past the cooldown
without waiting 12 hours.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tests.conftest import today, write_batches

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "churn"
DAG_ID = f"monitor_{MODEL}"


def later(hours: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)).isoformat()


@pytest.fixture
def champion(champion_env):
    """A champion trained on last week's batches, with its reference profile (a copy of the
    session's golden store)."""
    return champion_env


def land(env, **options) -> Path:
    (path,) = write_batches(env.lake, MODEL, today(), days=1, rows=3000, seed=5, **options)
    return path


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def check_result(dag_run) -> dict:
    (ti,) = [t for t in dag_run.get_task_instances() if t.task_id == "check_drift"]
    return ti.xcom_pull(task_ids="check_drift")


def retrain_events(dag_run=None) -> list:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = (
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == f"mlcycle://{MODEL}/retrain")
        )
        if dag_run is not None:
            query = query.where(AssetEvent.source_run_id == dag_run.run_id)
        events = session.scalars(query).all()
        return [(e.extra, e.source_run_id) for e in events]


def test_stable_batch_requests_no_retrain(dags, champion):
    land(champion)
    dr = dags[DAG_ID].test(run_conf={"as_of": later(13)})
    assert dr.state == "success", states(dr)
    out = check_result(dr)
    assert out["retrain"] is False
    assert out["blocked_by"] == ["drift"]
    assert out["reason"].startswith("no retrain:")
    assert states(dr)["request_retrain"] == "skipped"
    assert retrain_events(dr) == []
    # A healthy batch: every estimate and every realized value inside its band, no alert.
    from mlcycle.core.run import run_key

    perf = json.loads((Path(champion.lake) / MODEL / "runs" / run_key(dr.run_id) / "drift.json").read_text())[
        "performance"
    ]
    assert perf["alerts"] == [] and perf["window"]["labelled_rows"] == 3000
    judged = [*perf["window"]["estimated"].values(), *perf["window"]["realized"].values()]
    assert {v["status"] for v in judged} == {"within"}, judged

    from mlcycle.store import ledger

    (decision,) = ledger.decisions(MODEL, uri=champion.ledger_uri)
    assert decision.requested is False and decision.run_id == dr.run_id


def test_drifted_batch_requests_a_retrain_with_its_reason(dags, champion):
    land(champion, drift=1.0)
    dr = dags[DAG_ID].test(run_conf={"as_of": later(13)})
    assert dr.state == "success", states(dr)
    out = check_result(dr)
    assert out["retrain"] is True, out
    assert states(dr)["request_retrain"] == "success"
    ((extra, source),) = retrain_events(dr)
    assert source == dr.run_id
    assert extra["reason"].startswith("retrain requested: ") and "drift" in extra["reason"]
    assert extra["monitor_run_id"] == dr.run_id

    from mlcycle.core.run import run_key

    report = json.loads(
        (Path(champion.lake) / MODEL / "runs" / run_key(dr.run_id) / "drift.json").read_text()
    )
    drifted = {f["feature"] for f in report["drift"]["features"] if f.get("drifted")}
    assert {"contract", "monthly_charges"} & drifted, drifted
    assert "DRIFT" in (Path(champion.lake) / MODEL / "runs" / run_key(dr.run_id) / "drift.html").read_text()

    from mlcycle.store import registry

    mlc = registry.client(champion.tracking_uri)
    exp = mlc.get_experiment_by_name(f"{MODEL}-monitoring")
    (run,) = mlc.search_runs([exp.experiment_id], filter_string=f"tags.`airflow.run_id` = '{dr.run_id}'")
    assert run.data.metrics["retrain_requested"] == 1.0


def test_the_same_drift_inside_the_cooldown_requests_nothing(dags, champion):
    land(champion, drift=1.0)
    first = dags[DAG_ID].test(run_conf={"as_of": later(13)})
    assert check_result(first)["retrain"] is True
    # The champion was trained minutes ago in real time: at "now" the 12 h cooldown holds.
    second = dags[DAG_ID].test(run_conf={"as_of": None})  # explicit: dag.test() keeps the last conf
    out = check_result(second)
    assert out["retrain"] is False
    assert out["blocked_by"] == ["cooldown"]
    assert retrain_events(second) == []

    # The model page's monitoring history: both checks, oldest first, with what they measured.
    from mlcycle.core.spec import get_spec
    from mlcycle.flows.overview import model_overview
    from mlcycle.store import registry

    checks = model_overview(
        get_spec(MODEL), registry.client(champion.tracking_uri), ledger_uri=champion.ledger_uri
    )["checks"]
    assert [c["run_id"] for c in checks] == [first.run_id, second.run_id]
    assert [c["retrain"] for c in checks] == [True, False]
    assert checks[0]["drift_share"] > 0 and checks[0]["champion_version"] == "1"


def test_weekly_cap_blocks_after_the_allowed_retrains(dags, champion):
    from mlcycle.core.spec import get_spec

    cap = get_spec(MODEL).monitor.max_retrains_per_week
    land(champion, drift=1.0)
    outcomes = [
        check_result(dags[DAG_ID].test(run_conf={"as_of": later(13)}))["retrain"] for _ in range(cap + 1)
    ]
    assert outcomes == [True] * cap + [False]


def test_a_batch_that_fails_validation_never_triggers_a_retrain(dags, champion, tmp_path):
    land(champion, drift=1.0, corrupt=True)
    dr = dags[DAG_ID].test(run_conf={"as_of": later(13)})
    s = states(dr)
    assert s["validate_newest"] == "failed"
    assert s["check_drift"] == "success"  # runs anyway, to record why nothing happens
    out = check_result(dr)
    assert out["retrain"] is False
    assert "newest_batch_valid" in out["blocked_by"]
    assert retrain_events(dr) == []


def test_a_concept_shift_in_a_segment_is_caught_by_its_labels_and_the_report_says_which_rule(dags, champion):
    """A quarter of the customers stop churning the usual way while the features barely move:
    no feature drifts, the label-free estimate (which reads only the scores) stays in its
    band, and the realized roc_auc on the batch's labels leaves it; the report names the rule."""
    land(champion, degrade=1.0)
    dr = dags[DAG_ID].test(run_conf={"as_of": later(13)})
    assert dr.state == "success", states(dr)
    out = check_result(dr)
    from mlcycle.core.run import run_key

    run_dir = Path(champion.lake) / MODEL / "runs" / run_key(dr.run_id)
    report = json.loads((run_dir / "drift.json").read_text())
    perf = report["performance"]
    assert not [f["feature"] for f in report["drift"]["features"] if f.get("drifted")]
    assert perf["calibration"] in ("isotonic", "sigmoid")
    assert perf["window"]["estimated"]["roc_auc"]["status"] == "within"
    fired = {(a["rule"], a["source"], a["metric"]) for a in perf["alerts"]}
    assert ("band", "realized", "roc_auc") in fired, perf["alerts"]
    assert out["retrain"] is True and "performance alert: realized roc_auc" in out["reason"], out
    page = (run_dir / "drift.html").read_text()
    assert "outside its band" in page and 'aria-label="roc_auc per chunk"' not in page  # one chunk
    # The history keeps the batch's estimate beside its realized value.
    (entry,) = json.loads(
        (Path(champion.lake) / MODEL / "monitoring" / "performance.json").read_text()
    ).values()
    assert entry["estimated"]["roc_auc"] > entry["realized"]["roc_auc"] + 0.03
    assert entry["labelled_rows"] == 3000 and entry["champion_version"] == "1"


def test_labels_that_arrive_later_are_measured_beside_the_earlier_estimate(champion):
    """A batch scored without labels is estimated; when its labelled copy lands under labels/,
    the next check measures it (though the batch has left the window) and the history holds both."""
    import pandas as pd

    from mlcycle.core.run import RunInfo
    from mlcycle.core.spec import get_spec
    from mlcycle.data import lake as lk
    from mlcycle.flows import monitor
    from mlcycle.store import registry

    spec = get_spec(MODEL)
    mlc = registry.client(champion.tracking_uri)
    path = land(champion)
    labelled = pd.read_parquet(path)
    labelled.drop(columns=[spec.data.target]).to_parquet(path)  # the labels come later

    def check(run_id: str) -> dict:
        return monitor.check(spec, RunInfo(DAG_ID, run_id), mlc, lake_root=champion.lake,
                             now=dt.datetime.now(dt.UTC), ledger_uri=champion.ledger_uri)  # fmt: skip

    first = check("manual__first")
    assert first["performance"]["window"]["labelled_rows"] == 0
    assert first["performance"]["window"]["realized"] == {}
    history = Path(champion.lake) / MODEL / "monitoring" / "performance.json"
    (entry,) = json.loads(history.read_text()).values()
    assert set(entry["estimated"]) == {"roc_auc", "accuracy", "precision", "recall", "f1"}
    assert "realized" not in entry

    # A newer batch moves the window on; the labels of the first one land.
    later_path = write_batches(
        champion.lake, MODEL, today() + dt.timedelta(days=1), days=1, rows=3000, seed=6
    )[0]
    lake = lk.Lake(champion.lake, MODEL)
    labels_path = lake.labels_of(lk.as_path(str(path)))
    lk.write_parquet(
        labelled[[spec.data.key_column, spec.data.target]].sample(frac=1.0, random_state=0), labels_path
    )
    second = check("manual__second")
    assert second["window"] == [Path(later_path).name]
    entries = json.loads(history.read_text())
    early = entries[path.name]
    assert early["estimated"] == entry["estimated"] and early["estimated_at"] == entry["estimated_at"]
    assert early["labelled_rows"] == 3000
    from sklearn.metrics import roc_auc_score

    model = registry.load_sklearn(mlc, MODEL, "1")
    truth = roc_auc_score(labelled[spec.data.target], model.predict_proba(labelled[spec.features.all])[:, 1])
    assert early["realized"]["roc_auc"] == pytest.approx(truth)
    assert abs(early["estimated"]["roc_auc"] - truth) < 0.05  # how good the estimate was, on record
    assert {h["batch"] for h in second["performance"]["history"]} == {path.name, Path(later_path).name}
    from mlcycle.reports import pages

    page = pages.drift_page(second)
    table = page[page.index("Estimate and realized value by batch") :]
    assert path.name in table and pages.fmt_number(early["realized"]["roc_auc"]) in table


def land_unsure(env, *, labelled: bool) -> Path:
    """A batch of which 70 % are customers the champion cannot tell apart (scores between 0.3
    and 0.7), drawn from the same generator: the label relationship is unchanged."""
    import pandas as pd

    from mlcycle.core.spec import get_spec
    from mlcycle.data.generators import generate_batch
    from mlcycle.store import registry

    spec = get_spec(MODEL)
    model = registry.load_sklearn(registry.client(env.tracking_uri), MODEL, "1")
    pool = generate_batch("churn", today(), 20_000, seed=9)
    p = model.predict_proba(pool[spec.features.all])[:, 1]
    unsure, rest = pool[(p > 0.3) & (p < 0.7)], pool[(p <= 0.3) | (p >= 0.7)]
    batch = pd.concat([unsure.head(2100), rest.head(900)], ignore_index=True)
    path = Path(env.lake) / MODEL / "incoming" / f"{today().isoformat()}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    (batch if labelled else batch.drop(columns=[spec.data.target])).to_parquet(path)
    return path


def test_rows_moving_to_where_the_model_is_unsure_alert_from_the_estimate_alone(champion):
    """No labels at all: the estimate alone sees the batch is harder; the report says so."""
    from mlcycle.core.run import RunInfo
    from mlcycle.core.spec import get_spec
    from mlcycle.flows import monitor
    from mlcycle.store import registry

    land_unsure(champion, labelled=False)
    out = monitor.check(get_spec(MODEL), RunInfo(DAG_ID, "manual__unsure"), registry.client(champion.tracking_uri),
                        lake_root=champion.lake, now=dt.datetime.now(dt.UTC), ledger_uri=champion.ledger_uri)  # fmt: skip
    perf = out["performance"]
    assert perf["window"]["labelled_rows"] == 0 and perf["window"]["realized"] == {}
    fired = {(a["rule"], a["source"], a["metric"]) for a in perf["alerts"]}
    assert ("band", "estimated", "roc_auc") in fired, perf["alerts"]
    assert {a["source"] for a in perf["alerts"]} == {"estimated"}
    checks = {c["name"]: c for c in out["decision"]["checks"]}
    assert "performance alert: estimated roc_auc" in checks["drift"]["detail"], checks["drift"]


def test_the_monitor_dag_asks_for_a_retrain_when_the_estimate_leaves_its_band(dags, champion):
    """The same batch through monitor_<model> (with its labels, as the contract requires of an
    incoming batch): the estimate's alert is raised, and the labels confirm it."""
    land_unsure(champion, labelled=True)
    dr = dags[DAG_ID].test(run_conf={"as_of": later(13)})
    assert dr.state == "success", states(dr)
    out = check_result(dr)
    assert out["retrain"] is True and "performance alert: estimated roc_auc" in out["reason"], out
    from mlcycle.core.run import run_key

    report = json.loads(
        (Path(champion.lake) / MODEL / "runs" / run_key(dr.run_id) / "drift.json").read_text()
    )
    fired = {(a["rule"], a["source"], a["metric"]) for a in report["performance"]["alerts"]}
    assert {("band", "estimated", "roc_auc"), ("band", "realized", "roc_auc")} <= fired, fired


def test_a_regressor_is_monitored_with_its_loss_models(store):
    """demand (a regressor): the reference carries the loss models as data; a check estimates
    MAE and RMSE without labels, measures them with, and a noisier period alerts."""
    from mlcycle.core.run import RunInfo
    from mlcycle.flows import monitor
    from tests.conftest import train_champion

    # Trained on batches older than the 7-day window: the check sees only rows the model has not.
    spec = train_champion(store, "demand", end=today() - dt.timedelta(days=8), days=5)
    (path,) = write_batches(store.lake, "demand", today(), days=1, rows=3000, seed=5)

    def check(run_id: str) -> dict:
        return monitor.check(spec, RunInfo("monitor_demand", run_id), store.mlc, lake_root=store.lake,
                             now=dt.datetime.now(dt.UTC), ledger_uri=store.ledger_uri)  # fmt: skip

    healthy = check("manual__healthy")["performance"]
    assert healthy["calibration"] is None and healthy["alerts"] == [], healthy["alerts"]
    window = healthy["window"]
    assert set(window["estimated"]) == {"mae", "rmse"} and window["labelled_rows"] == window["rows"] == 3000
    for metric in ("mae", "rmse"):
        est, real = window["estimated"][metric], window["realized"][metric]
        assert est["status"] == real["status"] == "within", (est, real)
        assert abs(est["value"] - real["value"]) < 3 * real["sampling_error"] + 0.1 * real["value"], (
            est,
            real,
        )

    # The same rows with the price signal scrambled: the champion errs more, and the labels say so.
    import pandas as pd

    frame = pd.read_parquet(path)
    frame["units_sold"] = frame["units_sold"].sample(frac=1.0, random_state=0).to_numpy()
    frame.to_parquet(path)
    worse = check("manual__worse")["performance"]
    assert ("band", "realized", "rmse") in {(a["rule"], a["source"], a["metric"]) for a in worse["alerts"]}
