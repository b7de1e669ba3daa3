"""Incremental and online updates through train_<model> with dag.test(): the champion goes on
learning (``partial_fit``) from only the batches that arrived since its data, each update faces
the gate against its parent, and a damaged update is refused with the champion unchanged.

The model is support_intent as an online learner: hashed text (stateless, so new words are
learnable), SGD with log loss, ``training.mode: incremental`` and an hourly schedule."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, today, write_batches

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "support_intent"
ROWS = 800


def deploy(env, monkeypatch, tmp_path, **training):
    """Point MLCYCLE_SPECS_DIR at support_intent as an hourly incremental learner (``training``
    overriding its policy) and parse its train DAG into ``env.dag``."""
    from airflow.dag_processing.dagbag import DagBag

    raw = yaml.safe_load((REPO / "include" / "models" / f"{MODEL}.yaml").read_text())
    raw["schedule"] = "@hourly"
    raw["features"]["text_vectorizer"] = {"kind": "hashing", "word_ngrams": [1, 2], "char_ngrams": [3, 4],
                                          "max_features": 2**16}  # fmt: skip
    raw["features"]["numeric_scaling"] = "standard"
    raw["estimator"] = {
        "class": "sklearn.linear_model.SGDClassifier",
        "params": {"loss": "log_loss", "alpha": 1e-4, "max_iter": 15, "tol": None, "random_state": 0},
    }
    raw["training"] = {"mode": "incremental", "full_retrain_every": 3, "epochs": 3, **training}
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MLCYCLE_SPECS_DIR", str(specs))
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert bag.dags[f"train_{MODEL}"].timetable.timetable.expression == "0 * * * *"  # the online loop
    env.dag = bag.dags[f"train_{MODEL}"]
    return env


@pytest.fixture
def online(env, monkeypatch, tmp_path, airflow_db):
    return deploy(env, monkeypatch, tmp_path)


def run(env, **conf):
    return env.dag.test(run_conf={"reason": "incremental test", **conf})


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def version(env, v: str):
    return env.mlc.get_model_version(MODEL, v)


def lineage(env, v: str) -> dict:
    from mlcycle.flows.train import LINEAGE_ARTIFACT
    from mlcycle.store import registry

    return registry.load_run_json(env.mlc, registry.run_of(version(env, v)), LINEAGE_ARTIFACT)


def champion(env) -> str:
    from mlcycle.store import registry

    return str(registry.version_by_alias(env.mlc, MODEL, "champion").version)


def seen_rows(env, v: str) -> int:
    """How many rows the version's SGD has taken in (scikit-learn's ``t_`` counts them, plus one)."""
    from mlcycle.store import registry

    return int(registry.load_sklearn(env.mlc, MODEL, v).named_steps["model"].t_) - 1


def test_updates_learn_only_new_batches_and_a_damaged_one_is_refused(online):
    env = online
    start = today() - dt.timedelta(days=3)
    write_batches(env.lake, MODEL, start, days=5, rows=ROWS)
    first = run(env)
    assert states(first)["promote"] == "success", states(first)
    assert version(env, "1").tags["training.mode"] == "full"
    assert lineage(env, "1")["updates_since_full"] == 0

    # One new batch: v2 starts from v1 and learns exactly its training rows (80 %, 3 epochs).
    (new,) = write_batches(env.lake, MODEL, start + dt.timedelta(days=1), days=1, rows=ROWS, seed=7)
    second = run(env)
    assert states(second)["promote"] == "success", states(second)
    tags = version(env, "2").tags
    assert tags["training.mode"] == "incremental" and tags["training.parent"] == "1"
    record = lineage(env, "2")
    assert [Path(b["uri"]).name for b in record["added"]] == [new.name]
    assert record["parent"] == "1" and record["updates_since_full"] == 1
    assert record["rows_learned"] == round(ROWS * 0.8)
    assert seen_rows(env, "2") - seen_rows(env, "1") == 3 * round(ROWS * 0.8)
    assert champion(env) == "2"
    from mlcycle.core.run import run_key

    verdict = json.loads(
        (Path(env.lake) / MODEL / "runs" / run_key(second.run_id) / "verdict.json").read_text()
    )
    assert verdict["champion_version"] == "1"  # judged against its own parent

    # Nothing new: nothing to learn, no version.
    again = run(env)
    assert states(again)["train_model"] == "skipped"
    assert len(env.mlc.search_model_versions(f"name = '{MODEL}'")) == 2

    # A corrupted batch never reaches the model: validation quarantines it and the run fails.
    from mlcycle.data.generators import generate_batch
    from mlcycle.data.lake import Lake, write_parquet

    write_parquet(generate_batch(MODEL, start + dt.timedelta(days=2), ROWS, corrupt=True),
                  Lake(env.lake, MODEL).batch_path(start + dt.timedelta(days=2)))  # fmt: skip
    broken = run(env)
    assert states(broken)["validate_data"] == "failed" and states(broken)["train_model"] == "upstream_failed"
    assert champion(env) == "2"

    # Shuffled intents in the next batch: the update is registered, refused, champion unchanged.
    (shuffled,) = write_batches(env.lake, MODEL, start + dt.timedelta(days=3), days=1, rows=ROWS, seed=8,
                                shuffle_labels=True)  # fmt: skip
    bad = run(env, batch_uri=str(shuffled), accept_data_shift=True)
    s = states(bad)
    assert s["gate"] == "success" and s["promote"] == "skipped", s
    assert version(env, "3").tags["training.parent"] == "2"
    assert champion(env) == "2"


def test_a_periodic_full_retrain_resets_the_chain(env, monkeypatch, tmp_path, airflow_db):
    deploy(env, monkeypatch, tmp_path, full_retrain_every=1)
    start = today() - dt.timedelta(days=3)
    write_batches(env.lake, MODEL, start, days=5, rows=ROWS)
    assert states(run(env))["promote"] == "success"
    for day in (1, 2):  # 2,000 new rows a day: the update is judged on 400 of them
        write_batches(env.lake, MODEL, start + dt.timedelta(days=day), days=1, rows=2000, seed=7 + day)
        assert states(run(env))["promote"] == "success"
    # v2 was the one update allowed; v3 learned the whole window again, from scratch.
    assert [version(env, v).tags["training.mode"] for v in ("1", "2", "3")] == ["full", "incremental", "full"]
    record = lineage(env, "3")
    assert record["updates_since_full"] == 0 and "training.full_retrain_every" in record["why"]
    assert record["rows_learned"] == round((5 * ROWS + 2 * 2000) * 0.8)
