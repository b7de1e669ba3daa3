"""Registry and lifecycle steps against a real MLflow (SQLite in tmp_path): registration with
identifying tags, reruns that reuse what an earlier try made, skip-on-identical-data, and
compare-and-set promotion."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from threadpoolctl import threadpool_limits

from mlcycle.core import settings
from mlcycle.core.errors import GateFailedError, PromotionConflictError
from mlcycle.core.run import RunInfo
from mlcycle.core.spec import ModelSpec, parse_spec, spec_digest
from mlcycle.data import lake as lk
from mlcycle.flows import train as steps
from mlcycle.store import ledger, registry
from tests.conftest import Env, write_batches

if TYPE_CHECKING:
    from mlflow import MlflowClient

# MLflow's own deprecation and hint warnings (pandas 4, SQLAlchemy, schema inference) are not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:::mlflow.*")

END = dt.date(2026, 3, 10)
RUN = RunInfo(dag_id="train_churn", run_id="manual__2026-03-10T00:00:00+00:00", trigger="test")
NEXT_RUN = RunInfo(dag_id="train_churn", run_id="scheduled__2026-03-11T02:00:00+00:00", trigger="schedule")


@pytest.fixture(autouse=True)
def _one_thread():
    """Fit on one thread: the data is tiny, and OpenMP thread start-up and spin-waiting would
    dominate the runtime (by 10x or more on a busy machine)."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture
def mlc(store):
    """A client on this test's own MLflow store (``env.tracking_uri``)."""
    client = store.mlc
    assert client.tracking_uri == store.tracking_uri
    return client


@pytest.fixture
def spec() -> ModelSpec:
    """The shipped churn spec, made quick to fit: 3-day window, 20 boosting rounds."""
    raw = yaml.safe_load((settings.specs_dir() / "churn.yaml").read_text())
    raw["data"]["training_window_days"] = 3
    raw["estimator"]["params"]["max_iter"] = 20
    return parse_spec(raw, Path("churn.yaml"))


@pytest.fixture
def manifest_uri(env, spec) -> str:
    """Three 200-row daily batches in the lake, resolved into a manifest for RUN."""
    write_batches(env.lake, "churn", END, days=3, rows=200)
    return steps.resolve(spec, RUN, lake_root=env.lake, as_of=END)["manifest_uri"]


@dataclass
class Trained:
    """A lake with a resolved manifest, and what ``steps.train`` returned for RUN on it."""

    env: Env
    mlc: MlflowClient
    spec: ModelSpec
    manifest_uri: str
    out: dict[str, Any]

    def train(self, run: RunInfo, **options: Any) -> dict[str, Any]:
        return steps.train(
            self.spec, run, self.mlc, manifest_uri=self.manifest_uri, lake_root=self.env.lake, **options
        )


@pytest.fixture
def trained(env, mlc, spec, manifest_uri) -> Trained:
    """RUN trained and registered its candidate."""
    out = steps.train(spec, RUN, mlc, manifest_uri=manifest_uri, lake_root=env.lake)
    return Trained(env, mlc, spec, manifest_uri, out)


def dummy_versions(mlc, model: str, count: int) -> list[str]:
    """Register ``count`` versions without training (aliases and ledger do not need a real model)."""
    experiment = registry.ensure_experiment(mlc, model)
    run = mlc.create_run(experiment)
    return [
        registry.register_version(
            mlc,
            model=model,
            description="test",
            source=f"{settings.artifact_root()}/v{i}",
            mlflow_run_id=run.info.run_id,
            tags={},
        )
        for i in range(count)
    ]


def alias_of(mlc, model: str, alias: str) -> str | None:
    mv = registry.version_by_alias(mlc, model, alias)
    return str(mv.version) if mv else None


# --- aliases --------------------------------------------------------------------------------------


def test_version_by_alias_of_nothing(mlc):
    """An alias that is not set (or a model that does not exist) is None, not an error."""
    assert registry.version_by_alias(mlc, "ghost", registry.CHAMPION) is None
    dummy_versions(mlc, "churn", 1)
    assert registry.version_by_alias(mlc, "churn", registry.CHAMPION) is None


def test_set_alias_compare_and_set(mlc):
    """With ``expected``, the alias moves only if it still points where the caller saw it."""
    v1, v2, v3 = dummy_versions(mlc, "churn", 3)
    assert registry.set_alias(mlc, "churn", registry.CHAMPION, v1, expected=None) is None
    assert alias_of(mlc, "churn", registry.CHAMPION) == v1
    # the gate for v2 saw no champion, but v1 became champion in between
    with pytest.raises(
        PromotionConflictError, match=r"churn@champion is v1, but this promotion was decided against vNone"
    ):
        registry.set_alias(mlc, "churn", registry.CHAMPION, v2, expected=None)
    with pytest.raises(PromotionConflictError, match="Re-run the gate against the current champion"):
        registry.set_alias(mlc, "churn", registry.CHAMPION, v3, expected=v2)
    assert alias_of(mlc, "churn", registry.CHAMPION) == v1
    # decided against the current champion: it moves and reports where it was
    assert registry.set_alias(mlc, "churn", registry.CHAMPION, v2, expected=v1) == v1
    assert alias_of(mlc, "churn", registry.CHAMPION) == v2


def test_set_alias_retry_is_not_a_conflict(mlc):
    """A retry after the alias already moved to the target version succeeds and changes nothing."""
    v1, v2 = dummy_versions(mlc, "churn", 2)
    registry.set_alias(mlc, "churn", registry.CHAMPION, v1)
    registry.set_alias(mlc, "churn", registry.CHAMPION, v2, expected=v1)
    assert registry.set_alias(mlc, "churn", registry.CHAMPION, v2, expected=v1) == v2
    assert alias_of(mlc, "churn", registry.CHAMPION) == v2


def test_set_alias_without_expected_always_moves(mlc):
    """Without ``expected`` (the challenger alias) the alias simply moves."""
    v1, v2 = dummy_versions(mlc, "churn", 2)
    assert registry.set_alias(mlc, "churn", registry.CHALLENGER, v2) is None
    assert registry.set_alias(mlc, "churn", registry.CHALLENGER, v1) == v2
    assert alias_of(mlc, "churn", registry.CHALLENGER) == v1


# --- clients and MLflow's process-global URIs -----------------------------------------------------


def global_uris() -> tuple[str, str]:
    import mlflow

    return mlflow.get_tracking_uri(), mlflow.get_registry_uri()


def test_client_sets_nothing_global(env, tmp_path):
    """``registry.client(uri)`` talks to ``uri`` without moving MLflow's process-wide URIs."""
    before = global_uris()
    other = f"sqlite:///{tmp_path / 'other' / 'mlflow.db'}"
    assert other not in before
    client = registry.client(other)
    assert client.tracking_uri == other
    assert client._registry_uri == other
    client.search_experiments()  # really opened (and created) that store
    assert (tmp_path / "other" / "mlflow.db").exists()
    assert global_uris() == before
    assert os.environ["MLFLOW_TRACKING_URI"] == env.tracking_uri


def test_fluent_binds_the_block_then_restores(tmp_path):
    """``registry.fluent(mlc)`` points the fluent API at ``mlc``'s store inside the block only."""
    before = global_uris()
    other = registry.client(f"sqlite:///{tmp_path / 'other.db'}")
    assert other.tracking_uri not in before
    with registry.fluent(other):
        assert global_uris() == (other.tracking_uri, other.tracking_uri)
    assert global_uris() == before


def test_fluent_restores_after_an_exception(tmp_path):
    """An error inside the block still restores the URIs, and the error propagates unchanged."""
    before = global_uris()
    other = registry.client(f"sqlite:///{tmp_path / 'other.db'}")
    with pytest.raises(RuntimeError, match="boom inside the block"), registry.fluent(other):
        assert global_uris() == (other.tracking_uri, other.tracking_uri)
        raise RuntimeError("boom inside the block")
    assert global_uris() == before


def test_fluent_leaves_no_trace_in_the_process(monkeypatch, tmp_path):
    """After the block MLflow resolves its URIs exactly as before it: from ``MLFLOW_TRACKING_URI``
    when nothing set them, so a later change of that variable still counts, and no ``MLFLOW_*``
    variable was added to or changed in the environment (subprocesses such as ``mlflow models
    serve`` inherit it)."""
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    # start from "nothing set in the process", whatever earlier tests left behind
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setattr(registry_utils, "_registry_uri", None)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mlflow_env = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    other = registry.client(f"sqlite:///{tmp_path / 'other.db'}")
    with registry.fluent(other):
        pass
    assert {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")} == mlflow_env
    later = f"sqlite:///{tmp_path / 'later.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", later)
    assert global_uris() == (later, later)


# --- train ----------------------------------------------------------------------------------------


def test_train_registers_v1_with_tags_and_challenger(mlc, trained):
    """The first training registers v1 tagged with its data digest and Airflow run, aliased challenger."""
    out = trained.out
    manifest = steps.read_manifest(trained.manifest_uri)
    assert out["skipped"] is False
    assert out["created"] is True
    assert out["version"] == "1"
    assert out["model_uri"] == "models:/churn/1"
    mv = mlc.get_model_version("churn", "1")
    assert mv.tags[registry.TAG_DIGEST] == manifest.digest
    assert mv.tags[registry.TAG_DAG_ID] == "train_churn"
    assert mv.tags[registry.TAG_RUN_ID] == RUN.run_id
    assert mv.tags[registry.TAG_ROWS] == "600"
    assert mv.tags[registry.TAG_SPEC] == spec_digest(trained.spec)
    assert mv.run_id == out["mlflow_run_id"]
    assert alias_of(mlc, "churn", registry.CHALLENGER) == "1"
    assert alias_of(mlc, "churn", registry.CHAMPION) is None
    # the holdout is in this run's folder of the lake: 20 % of 600 rows
    holdout = Path(out["holdout_uri"])
    assert holdout == Path(str(lk.Lake(trained.env.lake, "churn").run_dir(RUN.key))) / "holdout.parquet"
    assert lk.count_rows([holdout]) == 120
    assert set(out["holdout_metrics"]) == {
        "roc_auc",
        "average_precision",
        "accuracy",
        "f1",
        "log_loss",
        "brier",
    }
    assert out["holdout_metrics"]["roc_auc"] > 0.6
    # the MLflow run carries the same identity
    run = mlc.get_run(out["mlflow_run_id"])
    assert run.data.tags[registry.TAG_RUN_ID] == RUN.run_id
    assert run.data.params["data.rows"] == "600"
    assert run.info.status == "FINISHED"
    assert steps.TAG_SKIPPED not in run.data.tags
    # ... and the data it learned from, by reference: the manifest (80 % of 600 rows) and the holdout
    inputs = {
        (d.dataset.name, {t.key: t.value for t in d.tags}["mlflow.data.context"]): d.dataset
        for d in run.inputs.dataset_inputs
    }
    assert set(inputs) == {("churn-train", "training"), ("churn-holdout", "holdout")}
    train_ds, holdout_ds = inputs["churn-train", "training"], inputs["churn-holdout", "holdout"]
    assert json.loads(train_ds.profile)["num_rows"] == 480
    assert json.loads(holdout_ds.profile)["num_rows"] == 120
    assert trained.manifest_uri in train_ds.source
    assert out["holdout_uri"] in holdout_ds.source
    assert train_ds.digest == manifest.digest[:32]
    assert holdout_ds.digest == lk.digest_files([holdout])[:32]
    columns = {c["name"] for c in json.loads(train_ds.schema)["mlflow_colspec"]}
    assert set(trained.spec.features.all) <= columns


def test_train_rerun_of_same_run_reuses_the_version(mlc, trained):
    """A retried task of the same Airflow run returns the version it made, created=False, no duplicate."""
    again = trained.train(RUN)
    assert again["created"] is False
    assert again["version"] == trained.out["version"]
    assert again["mlflow_run_id"] == trained.out["mlflow_run_id"]
    assert again["holdout_uri"] == trained.out["holdout_uri"]
    assert len(mlc.search_model_versions("name = 'churn'")) == 1


def test_train_rerun_completes_the_challenger_alias(mlc, trained):
    """A retry after a try that registered the version but died before aliasing it still ends with
    the version as challenger (the step promises to alias its candidate, also on a rerun)."""
    mlc.delete_registered_model_alias("churn", registry.CHALLENGER)
    again = trained.train(RUN)
    assert again["created"] is False
    assert alias_of(mlc, "churn", registry.CHALLENGER) == trained.out["version"]


def test_train_skips_when_champion_saw_the_same_data(mlc, trained):
    """A new run on the champion's exact data and spec does not train: skipped=True, no new version."""
    registry.set_alias(mlc, "churn", registry.CHAMPION, trained.out["version"])
    out = trained.train(NEXT_RUN)
    assert out["skipped"] is True
    assert out["champion_version"] == "1"
    assert "champion v1 was trained on identical data" in out["reason"]
    assert "force=true" in out["reason"]
    assert len(mlc.search_model_versions("name = 'churn'")) == 1
    assert alias_of(mlc, "churn", registry.CHALLENGER) == "1"
    # the skip is on record: NEXT_RUN's MLflow run says why and is closed
    experiment = mlc.get_experiment_by_name("churn").experiment_id
    (run,) = mlc.search_runs(
        [experiment], filter_string=f"tags.`{registry.TAG_RUN_ID}` = '{NEXT_RUN.run_id}'"
    )
    assert run.data.tags[steps.TAG_SKIPPED] == out["reason"]
    assert run.info.status == "FINISHED"
    assert run.info.end_time is not None


@pytest.mark.parametrize(
    "options", [{"force": True}, {"overrides": {"max_iter": 10}}], ids=["force", "overrides"]
)
def test_train_on_champions_data_when_forced_or_overridden(mlc, trained, options):
    """force=True (or changed params) trains on the champion's data anyway: v2 becomes challenger."""
    registry.set_alias(mlc, "churn", registry.CHAMPION, trained.out["version"])
    out = trained.train(NEXT_RUN, **options)
    assert out["skipped"] is False
    assert out["created"] is True
    assert out["version"] == "2"
    assert len(mlc.search_model_versions("name = 'churn'")) == 2
    assert mlc.get_model_version("churn", "2").tags[registry.TAG_RUN_ID] == NEXT_RUN.run_id
    assert alias_of(mlc, "churn", registry.CHALLENGER) == "2"
    assert alias_of(mlc, "churn", registry.CHAMPION) == "1"


def test_train_without_champion_trains_again_for_a_new_run(trained):
    """The skip needs a champion: a challenger on the same data does not stop a new run."""
    out = trained.train(NEXT_RUN)
    assert out["created"] is True
    assert out["version"] == "2"


def test_load_sklearn_reads_through_the_client_it_is_given(mlc, trained, tmp_path):
    """``registry.load_sklearn(mlc, model, version)`` loads the version from ``mlc``'s store, even
    when MLflow's process-wide URIs point at another store (here an empty one)."""
    elsewhere = registry.client(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    with registry.fluent(elsewhere):
        model = registry.load_sklearn(mlc, "churn", trained.out["version"])
    holdout = lk.read_parquet([Path(trained.out["holdout_uri"])])
    assert len(model.predict(holdout[trained.spec.features.all])) == 120


# --- promote --------------------------------------------------------------------------------------


def passed_verdict(version: str, champion: str | None) -> dict:
    return {
        "passed": True,
        "version": version,
        "champion_version": champion,
        "bootstrap": champion is None,
        "summary": f"PASS: v{version}",
        "report_uri": f"/lake/churn/runs/x/verdict-{version}.html",
    }


@pytest.mark.parametrize("verdict", [{"passed": False, "summary": "FAIL: v2 failed 1 rule(s): roc_auc"}, {}])
def test_promote_refuses_a_verdict_that_did_not_pass(env, mlc, spec, verdict):
    """A failed (or empty) verdict is refused: no alias moves and the ledger records nothing."""
    dummy_versions(mlc, "churn", 2)
    with pytest.raises(GateFailedError, match=r"v2 stays registered but is not promoted") as err:
        steps.promote(spec, RUN, mlc, verdict={**verdict, "version": "2", "champion_version": None})
    assert ("FAIL: v2 failed 1 rule(s)" if verdict else "gate verdict did not pass") in str(err.value)
    assert alias_of(mlc, "churn", registry.CHAMPION) is None
    assert ledger.history("churn") == []


def test_promote_bootstrap_then_rerun(env, mlc, spec):
    """The first pass becomes champion and is recorded once; a rerun of the task changes nothing."""
    (v1,) = dummy_versions(mlc, "churn", 1)
    out = steps.promote(spec, RUN, mlc, verdict=passed_verdict(v1, None))
    assert out == {"promoted": True, "version": v1, "previous_version": None, "ledger_recorded": True}
    assert alias_of(mlc, "churn", registry.CHAMPION) == v1
    again = steps.promote(spec, RUN, mlc, verdict=passed_verdict(v1, None))
    assert again == {"promoted": False, "version": v1, "previous_version": None, "ledger_recorded": False}
    (row,) = ledger.history("churn")
    assert (row.action, row.previous_version, row.new_version) == ("bootstrap", None, v1)
    assert row.actor == "airflow:train_churn"
    assert row.run_id == RUN.run_id
    assert row.evidence_uri == f"/lake/churn/runs/x/verdict-{v1}.html"


def test_promote_refuses_when_the_champion_moved(env, mlc, spec):
    """A verdict decided against an old champion cannot overwrite a newer one."""
    v1, v2, v3 = dummy_versions(mlc, "churn", 3)
    steps.promote(spec, RUN, mlc, verdict=passed_verdict(v1, None))
    steps.promote(spec, NEXT_RUN, mlc, verdict=passed_verdict(v2, v1))
    late = RunInfo(dag_id="train_churn", run_id="manual__late")
    with pytest.raises(
        PromotionConflictError, match="churn@champion is v2, but this promotion was decided against v1"
    ):
        steps.promote(spec, late, mlc, verdict=passed_verdict(v3, v1))
    assert alias_of(mlc, "churn", registry.CHAMPION) == v2
    assert [(r.previous_version, r.new_version, r.action) for r in ledger.history("churn")] == [
        (v1, v3, "superseded"),
        (v1, v2, "promote"),
        (None, v1, "bootstrap"),
    ]
    assert mlc.get_model_version("churn", v3).tags[registry.TAG_SUPERSEDED_BY] == v2
