"""Whole score_<model> runs with dag.test(): champion scoring, shadow, reruns, quarantine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import today, write_batches

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "churn"


def states(dag_run) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ti in dag_run.get_task_instances():
        out.setdefault(ti.task_id, []).append(str(ti.state))
    return out


@pytest.fixture
def champion(champion_env):
    """A lake with a week of batches and a trained champion v1 (a copy of the session's golden
    store: scoring needs a champion, not another training run)."""
    return champion_env


def new_batch(env, rows: int = 3000, **options) -> Path:
    (path,) = write_batches(env.lake, MODEL, today(), days=1, rows=rows, **options)
    return path


def test_scores_the_newest_batch_with_the_champion(dags, champion):
    batch = new_batch(champion, rows=3000)
    dr = dags[f"score_{MODEL}"].test(run_conf={"rows_per_partition": 1000, "chunk_rows": 400})
    assert dr.state == "success", states(dr)
    s = states(dr)
    assert s["score_partition"] == ["success"] * 3  # 3,000 rows in partitions of 1,000: three mapped tasks

    import pandas as pd

    out = Path(champion.lake) / MODEL / "predictions" / batch.name
    pred = pd.read_parquet(out)
    src = pd.read_parquet(batch)
    assert len(pred) == len(src) == 3000
    assert list(pred.columns) == [
        "customer_id", "prediction", "proba_0", "proba_1",
        "model_name", "model_version", "model_alias", "run_id", "scored_at",
    ]  # fmt: skip
    assert pred["customer_id"].tolist() == src["customer_id"].tolist()
    assert set(pred["model_version"]) == {"1"} and set(pred["model_alias"]) == {"champion"}
    assert set(pred["run_id"]) == {dr.run_id}
    assert ((pred["proba_0"] + pred["proba_1"]).round(9) == 1).all()

    # Predictions equal the registered model's own predictions on the same rows.
    from mlcycle.core.spec import get_spec
    from mlcycle.store import registry

    spec = get_spec(MODEL)
    mlc = champion.mlc
    model = registry.load_sklearn(mlc, MODEL, registry.version_by_alias(mlc, MODEL, "champion").version)
    X = src[spec.features.all]
    assert (model.predict(X) == pred["prediction"].to_numpy()).all()
    # Scored by the champion's ONNX twin: its probabilities within the spec's parity tolerance.
    assert abs(pred["proba_1"].to_numpy() - model.predict_proba(X)[:, 1]).max() <= spec.scoring.onnx_tolerance

    from mlcycle.core.run import run_key

    report = json.loads(
        (Path(champion.lake) / MODEL / "runs" / run_key(dr.run_id) / "scoring" / "report.json").read_text()
    )
    assert report["rows"] == 3000 and report["shadow"] is None
    assert report["engine"] == "onnx"
    assert report["engine_reason"].startswith("its ONNX twin passed parity at training")


def test_a_rerun_leaves_exactly_one_output(dags, champion):
    batch = new_batch(champion, rows=1500)
    conf = {"batch_uri": str(batch)}
    first = dags[f"score_{MODEL}"].test(run_conf=conf)
    second = dags[f"score_{MODEL}"].test(run_conf=conf)
    assert first.state == second.state == "success"

    import pandas as pd

    outputs = list((Path(champion.lake) / MODEL / "predictions").iterdir())
    assert [p.name for p in outputs] == [batch.name]
    pred = pd.read_parquet(outputs[0])
    assert len(pred) == 1500
    assert set(pred["run_id"]) == {second.run_id}  # replaced, not appended


def test_a_corrupted_batch_is_quarantined_and_not_scored(dags, champion, tmp_path):
    from mlcycle.core.run import run_key
    from mlcycle.data.generators import generate_batch
    from mlcycle.data.lake import write_parquet

    bad = tmp_path / "bad.parquet"
    write_parquet(generate_batch(MODEL, today(), 1500, corrupt=True), bad)
    dr = dags[f"score_{MODEL}"].test(run_conf={"batch_uri": str(bad)})
    assert dr.state == "failed"
    s = states(dr)
    assert s["validate_batch"] == ["failed"]
    assert s["finalize"] == ["upstream_failed"]
    assert not (Path(champion.lake) / MODEL / "predictions").exists()
    assert (Path(champion.lake) / MODEL / "quarantine" / run_key(dr.run_id) / "bad.parquet").exists()


def test_the_challenger_scores_in_shadow(dags, champion, tmp_path):
    """A refused challenger (worse) is scored on the same rows; the report shows the gap."""
    train = dags[f"train_{MODEL}"].test(
        run_conf={"estimator_params": {"max_iter": 1, "max_leaf_nodes": 2}, "reason": "worse challenger"}
    )
    # Refused by the gate (promote skipped): v2 stays challenger, v1 champion.
    assert train.state == "success" and str(train.get_task_instance("promote").state) == "skipped"
    batch = new_batch(champion, rows=2000)
    dr = dags[f"score_{MODEL}"].test(run_conf={"batch_uri": str(batch), "rows_per_partition": 1000})
    assert dr.state == "success", states(dr)

    from mlcycle.core.run import run_key
    from mlcycle.store import registry

    base = Path(champion.lake) / MODEL / "runs" / run_key(dr.run_id) / "scoring"
    report = json.loads((base / "report.json").read_text())
    assert report["version"] == "1" and report["shadow_version"] == "2"
    shadow = report["shadow"]
    assert shadow["rows"] == 2000
    assert 0.0 <= shadow["agreement"] < 1.0
    assert shadow["flipped_rows"] == round((1 - shadow["agreement"]) * 2000)
    assert shadow["mean_abs_diff"] > 0
    assert "Rows that flip class" in (base / "report.html").read_text()

    mlc = registry.client(champion.tracking_uri)
    exp = mlc.get_experiment_by_name(f"{MODEL}-scoring")
    (run,) = mlc.search_runs([exp.experiment_id], filter_string=f"tags.`airflow.run_id` = '{dr.run_id}'")
    assert run.data.metrics["shadow_agreement"] == pytest.approx(shadow["agreement"])
    assert run.data.metrics["rows"] == 2000


def test_scoring_without_a_champion_fails_with_a_clear_message(dags, env):
    write_batches(env.lake, MODEL, today(), days=1, rows=500)
    dr = dags[f"score_{MODEL}"].test(run_conf={})
    assert dr.state == "failed"
    assert states(dr)["choose_model"] == ["failed"]
