"""DAG integrity: every DAG imports, follows the conventions, and parses cheaply."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

HEAVY = ("pandas", "sklearn", "mlflow", "great_expectations", "scipy")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def _specs():
    from mlcycle.core.spec import load_specs

    return load_specs(REPO / "include" / "models")


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_one_train_dag_per_spec(dagbag):
    expected = {f"train_{s.name}" for s in _specs()}
    assert expected <= set(dagbag.dags), f"missing {expected - set(dagbag.dags)}"
    assert len(expected) >= 2


KINDS = ("train", "score", "monitor", "rollback", "guard")
MODELS = ("churn", "demand", "support_intent")
ALL_DAGS = [f"{kind}_{n}" for kind in KINDS for n in MODELS]
EXPECTED_PARAMS = {
    "train": {"batch_uri", "reason", "force", "estimator_params", "accept_data_shift", "require_approval"},
    "score": {"batch_uri", "alias", "version", "engine", "rows_per_partition", "chunk_rows"},
    "monitor": {"as_of"},
    "rollback": {"version", "reason", "force"},
    "guard": set(),
}
# Fields a person must fill on purpose: the form opens with them marked required.
REQUIRED_BY_DESIGN = {("rollback", "reason")}


def test_every_dag_is_known(dagbag):
    assert sorted(dagbag.dags) == sorted(ALL_DAGS)


@pytest.mark.parametrize("dag_id", ALL_DAGS)
def test_conventions(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.doc_md and len(dag.doc_md) > 200
    assert "mlcycle" in dag.tags and dag_id.split("_")[0] in dag.tags
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.schedule is not None or dag_id.startswith("rollback_")  # a person's decision
    for task in dag.tasks:
        assert task.owner and task.owner != "airflow", f"{task.task_id} has no owner"
        # Decisions are not retried: the gate's verdict, and a person's answer (a retry would ask again).
        expected_retries = 0 if task.task_id in ("gate", "approve") else 3
        assert task.retries == expected_retries, f"{task.task_id} retries {task.retries}"
        if expected_retries:  # outages wait at least 1, 2, 4 minutes
            assert task.retry_exponential_backoff == 2.0, task.task_id


@pytest.mark.parametrize("spec_name", MODELS)
def test_score_dag_runs_on_new_batches(dagbag, spec_name):
    """score_<model> is scheduled on the model's incoming-batch asset."""
    dag = dagbag.dags[f"score_{spec_name}"]
    assert dag.timetable.asset_condition.uri == f"mlcycle://{spec_name}/incoming"
    assert type(dag.get_task("score_partition")).__name__ == "MappedOperator"


@pytest.mark.parametrize("spec_name", MODELS)
def test_monitor_dag_runs_hourly_and_on_new_batches(dagbag, spec_name):
    dag = dagbag.dags[f"monitor_{spec_name}"]
    assert dag.timetable.timetable.expression == "0 * * * *"
    assert dag.timetable.asset_condition.uri == f"mlcycle://{spec_name}/incoming"
    request = dag.get_task("request_retrain")
    assert [a.uri for a in request.outlets] == [f"mlcycle://{spec_name}/retrain"]
    assert dag.get_task("check_drift").trigger_rule == "all_done"


@pytest.mark.parametrize("spec_name", MODELS)
def test_schedule_is_the_specs(dagbag, spec_name):
    from mlcycle.core.spec import get_spec

    spec = get_spec(spec_name, REPO / "include" / "models")
    dag = dagbag.dags[f"train_{spec_name}"]
    # The nightly cron OR a retrain request from the drift monitor.
    assert dag.timetable.timetable.expression == spec.schedule
    assert dag.timetable.asset_condition.uri == f"mlcycle://{spec_name}/retrain"


def test_task_order(dagbag):
    dag = dagbag.dags["train_churn"]
    order = ["resolve_data", "validate_data", "train_model", "evaluate_model", "gate", "approve", "promote"]
    for upstream, downstream in itertools.pairwise(order):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}


@pytest.mark.parametrize("dag_id", ALL_DAGS)
def test_params_schemas_are_valid_json_schema(dagbag, dag_id):
    import jsonschema

    params = dagbag.dags[dag_id].params
    expected = EXPECTED_PARAMS[dag_id.split("_")[0]]
    assert expected <= set(params.keys())
    for name in params:
        schema = params.get_param(name).schema
        jsonschema.Draft7Validator.check_schema(schema)
        # Declared, so Airflow's check of every default at parse time uses the one-document
        # metaschema (bench/README.md, parse cost).
        assert jsonschema.validators.validator_for(schema) is jsonschema.Draft7Validator, name


@pytest.mark.parametrize("dag_id", ALL_DAGS)
def test_the_trigger_form_opens_without_errors(dagbag, dag_id):
    """The UI's trigger form marks a field required (and disables Trigger) when its type refuses
    null and its value is empty (null or ""): every default must be a value or the type nullable,
    but for the fields a person must fill on purpose (a rollback's reason). Every field is in a
    section, with a title and a description."""
    params = dagbag.dags[dag_id].params
    for name in params:
        param = params.get_param(name)
        schema, value = param.schema, param.value
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if (dag_id.split("_")[0], name) in REQUIRED_BY_DESIGN:
            assert value == "" and "null" not in types and schema["minLength"] >= 1, name
            continue
        if value is None or value == "":
            assert "null" in types, (
                f"{dag_id}.{name}: default {value!r} but type {types}: the form says required"
            )
        param.resolve(value)  # the default itself is valid
        if len(params) > 1:
            assert schema.get("section"), f"{dag_id}.{name} has no section"
        assert schema.get("title") and param.description, f"{dag_id}.{name} needs a title and description"


@pytest.mark.parametrize(
    ("conf", "error"),
    [
        ({"batch_uri": "not a uri"}, "does not match"),
        ({"batch_uri": "/data/batch.csv"}, "does not match"),
        ({"reason": "x" * 501}, "too long"),
        ({"force": "yes"}, "is not of type 'null', 'boolean'"),
        ({"estimator_params": [1, 2]}, "is not of type 'null', 'object'"),
    ],
)
def test_bad_params_are_refused(dagbag, conf, error):
    from airflow.sdk.exceptions import ParamValidationError

    ((key, value),) = conf.items()
    param = dagbag.dags["train_churn"].params.get_param(key)
    with pytest.raises(ParamValidationError, match=error):
        param.resolve(value)


@pytest.mark.parametrize("uri", [None, "/lake/churn/incoming/2026-01-01.parquet", "s3://bucket/x/y.parquet"])
def test_good_batch_uris_are_accepted(dagbag, uri):
    param = dagbag.dags["train_churn"].params.get_param("batch_uri")
    assert param.resolve(uri) == uri


def test_no_heavy_imports_when_parsing():
    """After loading the DagBag in a fresh interpreter, no ML library is imported."""
    code = textwrap.dedent(
        f"""
        import json, sys
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder={str(REPO / "dags")!r})
        print(json.dumps({{"errors": list(bag.import_errors), "dags": len(bag.dags),
                          "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(), check=False
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == []
    assert result["dags"] >= 2
    assert result["heavy"] == []


def test_a_bad_spec_is_an_import_error_naming_file_and_key(tmp_path):
    """A broken spec shows up as a DAG import error that names the file and the key."""
    specs = tmp_path / "models"
    specs.mkdir()
    shutil.copy(REPO / "include" / "models" / "churn.yaml", specs / "churn.yaml")
    text = (specs / "churn.yaml").read_text().replace("primary_metric: roc_auc", "primary_metric: auc_typo")
    (specs / "churn.yaml").write_text(text)
    code = textwrap.dedent(
        f"""
        import json
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder={str(REPO / "dags")!r})
        print(json.dumps(list(bag.import_errors.values())))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "MLCYCLE_SPECS_DIR": str(specs)},
        check=False,
    )
    errors = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(errors) == len(list((REPO / "dags").glob("*.py")))  # every DAG file reports it
    for error in errors:
        assert str(specs / "churn.yaml") in error
        assert "gate.primary_metric" in error and "auc_typo" in error


def test_dag_files_import_only_the_sdk_stdlib_and_plugins():
    allowed = ("airflow.sdk", "mlcycle_airflow", "__future__", "datetime", "pathlib", "os")
    for path in (REPO / "dags").glob("*.py"):
        for line in path.read_text().splitlines():
            if line.startswith(("import ", "from ")):
                module = line.split()[1]
                assert module.startswith(allowed), f"{path.name}: {line}"


def test_start_date_is_fixed_and_in_the_past(dagbag):
    for dag in dagbag.dags.values():
        assert dag.start_date is not None
        assert dag.start_date < dt.datetime.now(dt.UTC)
