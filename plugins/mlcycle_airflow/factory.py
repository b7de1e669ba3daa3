"""DAG factory: one set of DAGs per model spec in ``include/models/*.yaml``.

Imported by the thin files in ``dags/``. Parse-time cost is YAML + pydantic only: the
operators import pandas, scikit-learn, MLflow and GX inside ``execute``.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, BaseOperator, CronTriggerTimetable, Param

from mlcycle.core import settings
from mlcycle.core.results import result_keys
from mlcycle.core.spec import ModelSpec, load_specs
from mlcycle_airflow.approval import ApprovePromotionOperator
from mlcycle_airflow.notifiers import failure_notifications, refusal_notifications
from mlcycle_airflow.operators import (
    ChooseModelOperator,
    DriftCheckOperator,
    EvaluateModelOperator,
    FinalizeScoringOperator,
    GateOperator,
    GuardChampionOperator,
    GXValidateOperator,
    PlanPartitionsOperator,
    PromoteModelOperator,
    RequestRetrainOperator,
    ResolveDataOperator,
    RollbackOperator,
    ScorePartitionOperator,
    TrainModelOperator,
)

if TYPE_CHECKING:
    from collections.abc import Callable

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
# batch_uri at trigger time: an absolute local path or an s3:// / gs:// object, ending .parquet,
# without '..' segments. Which folders and buckets are allowed is checked again when the file is
# read (mlcycle.data.lake.confine, MLCYCLE_ALLOWED_INPUTS): the form only refuses what can never be.
URI_PATTERN = r"^(?!.*/\.\./)(/\S+|(s3|gs)://[a-z0-9][a-z0-9._-]*/\S+)\.parquet$"


def _dag_kwargs(spec: ModelSpec, kind: str) -> dict:
    """What every DAG of a model shares: owner, retries, start, no catch-up, one run at a time."""
    return {
        "start_date": START,
        "catchup": False,
        "max_active_runs": 1,
        "tags": ["mlcycle", kind, *spec.tags],
        "default_args": {
            "owner": spec.owner,
            # Outages (tracking server, object store, a lost worker) are retried after at least 1, 2, 4
            # minutes (MLCYCLE_RETRY_DELAY_SECONDS sets the first); domain errors (bad data, refused
            # gate, bad spec) fail at once (operators.domain_errors).
            "retries": 3,
            "retry_delay": dt.timedelta(seconds=settings.retry_delay_s()),
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": dt.timedelta(minutes=15),
            # A mail (and/or Slack message) per task that fails for good, when the deployment asks.
            **failure_notifications(),
        },
        # Templates that pull XCom dicts render as dicts, not as their string form.
        "render_template_as_native_obj": True,
    }


# Every param schema names draft-07 (all their keywords are draft-07): Airflow checks each schema
# against its metaschema at every parse, and draft-07's is one document where the default
# 2020-12 one is eight, which halves that cost (bench/parse_cost.py).
JSON_SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"


def _param(default: object, **schema: Any) -> Param:
    keywords: dict[str, Any] = {"$schema": JSON_SCHEMA_DRAFT, **schema}
    return Param(default, **keywords)


def _optional(kind: str, **schema: Any) -> Param:
    """A param a user may leave empty: its type admits null and its default is null. The
    trigger form marks every field whose type refuses null and whose value is empty (null or
    ``""``) as required and disables Trigger until it is filled."""
    return _param(None, type=["null", kind], **schema)


def _batch_uri_param(description: str) -> Param:
    """The ``batch_uri`` param: empty, or a local absolute path or s3:// / gs:// URI of a Parquet
    file (http://, ftp://, file:// and other schemes are refused at trigger time)."""
    return _optional(
        "string", pattern=URI_PATTERN, title="Batch URI", description=description, section="Data"
    )


def _out(task: BaseOperator, key: str | None = None) -> str:
    """A template pulling ``task``'s XCom (or one ``key`` of it). The key is checked against the
    TypedDict the operator declares it returns, so a renamed result key fails at DAG build."""
    if key is not None:
        declared = result_keys(task.result_type)  # type: ignore[attr-defined]
        if key not in declared:
            raise KeyError(
                f"{type(task).__name__} ({task.task_id}) returns {task.result_type.__name__} "  # type: ignore[attr-defined]
                f"with keys {sorted(declared)}; it has no {key!r}"
            )
    item = f"['{key}']" if key else ""
    return "{{ ti.xcom_pull(task_ids='" + task.task_id + "')" + item + " }}"


def _amounts(by_metric: dict[str, float]) -> str:
    """``{"roc_auc": 0.01}`` as people read it: ``roc_auc 0.01``."""
    return ", ".join(f"{metric} {amount:g}" for metric, amount in by_metric.items()) or "none"


def _train_doc(spec: ModelSpec) -> str:
    g = spec.gate
    thresholds = ", ".join(
        f"{m} {'≥ ' + str(b.min) if b.min is not None else ''}{' ' if b.min is not None and b.max is not None else ''}"
        f"{'≤ ' + str(b.max) if b.max is not None else ''}"
        for m, b in g.thresholds.items()
    )
    return f"""# Train `{spec.name}`

{spec.description}

**Steps**: resolve the data (the last {spec.data.training_window_days} days of batches, or `batch_uri`) →
validate it against the Great Expectations contract `{spec.contract}` (failing batches go to quarantine) →
check the data against the champion's reference profile (null rates, marginals, relationships) →
train `{spec.estimator.class_}` and register a version with alias `challenger` →
evaluate it and the current `champion` on the same holdout and on the trusted evaluation set (validated
holdout rows of earlier champions) → gate → promote (alias `champion` + ledger; its holdout joins the
trusted set).

**Gate** (primary metric `{g.primary_metric}`): thresholds {thresholds or "none"};
max regression vs champion {_amounts(g.max_regression)}; min improvement {_amounts(g.min_improvement)};
min bootstrap confidence {g.min_confidence if g.min_confidence is not None else "none"};
per slice of {", ".join(g.slices.columns) or "no column"} (at least {g.slices.min_rows} rows) at most {g.slices.tolerance} worse.
The first version bootstraps under the absolute rules only.
**Approval**: {f"required from {', '.join(g.approval.approvers) or 'anyone allowed'} within {g.approval.timeout_hours:g} h (no answer: rejected)" if g.approval.required else "not required (a run may ask with `require_approval`)"}:
the `approve` task waits in Required Actions; `promote` is skipped with the rejection as its reason.

**Params** (Trigger DAG w/ config): `batch_uri` a Parquet file to train on instead of the window;
`reason` free text recorded on the MLflow run, the version and the ledger; `force` train even when the
champion already saw identical data; `estimator_params` overrides of the estimator's hyper-parameters;
`accept_data_shift` train even when the data check against the champion's reference refuses the data
(needs a `reason`; the breach and the reason are recorded); `gate_overrides` one-off changes to the gate
below for this run (recorded in the verdict and the ledger); `require_approval` ask a person before
promoting (or not), overriding the spec.

Spec: `include/models/{spec.name}.yaml`. Owner: {spec.owner}. Schedule: `{spec.schedule}` (UTC).
"""


def build_train_dag(spec: ModelSpec, specs_path: str) -> DAG:
    """``train_<model>``: resolve, validate, train, evaluate, gate, promote; on cron or a retrain request."""
    common: dict[str, Any] = {"model": spec.name, "specs_dir": specs_path}
    with DAG(
        dag_id=spec.train_dag_id,
        description=f"Validate, train, gate and promote {spec.name}",
        doc_md=_train_doc(spec),
        # Nightly cron OR a retrain request from monitor_<model>.
        schedule=_cron_or_asset(spec.schedule, retrain_asset(spec)),
        **_dag_kwargs(spec, "train"),
        params={
            "batch_uri": _batch_uri_param(
                "A Parquet file to train on instead of the spec's window "
                "(an absolute path or a URI such as s3://bucket/key.parquet). Leave empty for the window."
            ),
            "reason": _optional(
                "string",
                maxLength=500,
                title="Reason",
                description="Why this run: recorded on the MLflow run, the model version and the ledger.",
                section="Run",
            ),
            "force": _optional(
                "boolean",
                title="Force",
                description="Train even if the champion was trained on identical data with the same spec.",
                section="Run",
            ),
            "estimator_params": _optional(
                "object",
                title="Estimator params",
                description='Hyper-parameter overrides, e.g. {"max_iter": 300}. Empty: the spec\'s.',
                section="Training",
            ),
            "gate_overrides": _optional(
                "object",
                title="Gate overrides",
                description=(
                    "One-off changes to the spec's gate for this run, e.g. "
                    '{"min_confidence": 0.6} or {"thresholds": {"roc_auc": {"min": 0.75}}}'
                    " (keys: thresholds, max_regression, min_improvement, min_confidence, approval). "
                    "Recorded in the verdict, its summary and the ledger."
                ),
                section="Gate",
            ),
            "require_approval": _optional(
                "boolean",
                title="Require approval",
                description=(
                    "A person must approve the promotion in Required Actions (on: ask even if the spec "
                    f"does not; off: do not ask). Empty: the spec's choice "
                    f"({'ask' if spec.gate.approval.required else 'do not ask'}). No answer within "
                    f"{spec.gate.approval.timeout_hours:g} h is a rejection. Recorded as a gate override."
                ),
                section="Gate",
            ),
            "accept_data_shift": _optional(
                "boolean",
                title="Accept data shift",
                description=(
                    "Train even if the data departs from the champion's reference profile (null rates, "
                    "relationships). Requires a Reason: a run with this set and no reason is refused. "
                    "The breach and the reason are recorded on the MLflow run and the version."
                ),
                section="Data",
            ),
        },
    ) as dag:
        resolve = ResolveDataOperator(task_id="resolve_data", batch_uri="{{ params.batch_uri }}", **common)
        validate = GXValidateOperator(
            task_id="validate_data", manifest_uri=_out(resolve, "manifest_uri"), **common
        )
        train = TrainModelOperator(
            task_id="train_model",
            manifest_uri=_out(resolve, "manifest_uri"),
            overrides="{{ params.estimator_params }}",
            force="{{ params.force }}",
            accept_data_shift="{{ params.accept_data_shift }}",
            **common,
        )
        evaluate = EvaluateModelOperator(
            task_id="evaluate_model",
            version=_out(train, "version"),
            holdout_uri=_out(train, "holdout_uri"),
            **common,
        )
        gate = GateOperator(
            task_id="gate",
            evaluation=_out(evaluate),
            overrides="{{ params.gate_overrides }}",
            require_approval="{{ params.require_approval }}",
            retries=0,
            **common,
        )
        approve = ApprovePromotionOperator(task_id="approve", model=spec.name, verdict=_out(gate), retries=0)
        promote = PromoteModelOperator(
            task_id="promote",
            verdict=_out(gate),
            approval=_out(approve),
            **refusal_notifications(),
            **common,
        )
        resolve >> validate >> train >> evaluate >> gate >> approve >> promote
    return dag


def retrain_asset(spec: ModelSpec) -> Asset:
    """The asset whose events ask for a retrain (emitted by monitor_<model>; extra: ``reason``)."""
    return Asset(uri=f"mlcycle://{spec.name}/retrain", name=f"{spec.name}_retrain")


PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
}


def _cron_or_asset(cron: str, asset: Asset) -> AssetOrTimeSchedule:
    expression = PRESETS.get(cron, cron)
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(expression, timezone="UTC"), assets=asset)


def incoming_asset(spec: ModelSpec) -> Asset:
    """The asset whose events mean "a new batch of <model> landed" (extra: ``batch_uri``)."""
    return Asset(uri=f"mlcycle://{spec.name}/incoming", name=f"{spec.name}_incoming")


def _estimate_doc(spec: ModelSpec) -> str:
    if spec.task == "classification":
        return f"calibrated CBPE: ROC AUC, accuracy, precision, recall, F1 at threshold {spec.scoring.decision_threshold:g}"
    if spec.task == "multiclass":
        return "the calibrated confidence of the chosen class: accuracy"
    return "DLE loss models: MAE, RMSE"


def _text_doc(spec: ModelSpec) -> str:
    parts = []
    if spec.features.text:
        parts.append(
            f"text drift of {', '.join(f'`{c}`' for c in spec.features.text)} (vocabulary: Jensen–Shannon over "
            "the reference's top terms; words the reference never saw; lengths; empty texts)"
        )
    if spec.task == "multiclass":
        parts.append("the predicted class distribution")
    return "".join(f", {p}" for p in parts)


def _score_doc(spec: ModelSpec) -> str:
    return f"""# Score `{spec.name}`

Scores a batch with `models:/{spec.name}@champion` (or the alias or version given) and writes the
predictions to `<lake>/{spec.name}/predictions/<batch file name>` (key, prediction,
{"one probability per class, " if spec.task.classifies else ""}model name, version, alias, run id).
A rerun replaces its own output atomically.

**Steps**: resolve the batch (`batch_uri`, else the `batch_uri` in the extra of the triggering
`{spec.name}_incoming` asset event, else the newest batch in the lake) → validate it against the contract
(a failing batch is quarantined, not scored) → choose the model → cut the batch into partitions →
score each partition by chunks (mapped tasks, so workers share the load; the challenger scores the same rows in
shadow) → merge, summarise the shadow comparison (agreement, score shift, rows that flip), log to MLflow,
write the report (**Evidence** link).

**Engine** (param `engine`, default the spec's `scoring.engine`: `{spec.scoring.engine}`): `beam` scores the
whole batch in one Apache Beam pipeline on `{spec.scoring.beam.runner}` (one partition; Beam parallelises
inside), rows it cannot score go to `runs/<run>/scoring/dead-letters.parquet` with their reason, and its
metrics (rows scored and failed, batch latency) are in the task log and the report.

Runs when an event of the asset `mlcycle://{spec.name}/incoming` arrives, e.g.
`POST /api/v2/assets/events {{"asset_id": <id>, "extra": {{"batch_uri": "..."}}}}`, or on demand.
"""


def build_score_dag(spec: ModelSpec, specs_path: str) -> DAG:
    """``score_<model>``, run per ``<model>_incoming`` event: validate, score by mapped partitions, merge."""
    common: dict[str, Any] = {"model": spec.name, "specs_dir": specs_path}
    with DAG(
        dag_id=f"score_{spec.name}",
        description=f"Score new {spec.name} batches with the champion (challenger in shadow)",
        doc_md=_score_doc(spec),
        schedule=incoming_asset(spec),
        **_dag_kwargs(spec, "score"),
        params={
            "batch_uri": _batch_uri_param(
                "The Parquet batch to score. Empty: the asset event's batch_uri, else the newest batch."
            ),
            "alias": _param(
                "champion",
                type="string",
                enum=["champion", "challenger"],
                title="Model alias",
                description="Which alias to score with (ignored when a version is given).",
                section="Model",
            ),
            "version": _optional(
                "integer",
                minimum=1,
                title="Model version",
                description="Pin a registered version instead of an alias.",
                section="Model",
            ),
            "engine": _param(
                spec.scoring.engine,
                type="string",
                enum=["auto", "sklearn", "beam"],
                title="Engine",
                description=(
                    "auto: the ONNX twin when it passed parity, else scikit-learn; sklearn: scikit-learn; "
                    "beam: an Apache Beam pipeline (runner from scoring.beam) scores the whole batch with the "
                    f"model auto would choose, bad rows to a dead-letter file. Default: the spec's "
                    f"({spec.scoring.engine})."
                ),
                section="Model",
            ),
            "rows_per_partition": _param(
                250_000,
                type="integer",
                minimum=1000,
                title="Rows per partition",
                description="Rows each mapped score_partition task scores (one task per partition).",
                section="Throughput",
            ),
            "chunk_rows": _param(
                50_000,
                type="integer",
                minimum=100,
                maximum=1_000_000,
                title="Rows per chunk",
                description=(
                    "Rows a partition reads and scores at a time (bounds a worker's memory); "
                    "with the beam engine, the rows of a batch the pipeline feeds the model."
                ),
                section="Throughput",
            ),
        },
    ) as dag:
        resolve = ResolveDataOperator(
            task_id="resolve_batch", batch_uri="{{ params.batch_uri }}", latest_only=True, **common
        )
        validate = GXValidateOperator(
            task_id="validate_batch", manifest_uri=_out(resolve, "manifest_uri"), **common
        )
        choose = ChooseModelOperator(
            task_id="choose_model",
            alias="{{ params.alias }}",
            version="{{ params.version }}",
            engine="{{ params.engine }}",
            **common,
        )
        plan = PlanPartitionsOperator(
            task_id="plan_partitions",
            batch_uri=_out(resolve, "batch_uri"),
            rows_per_partition="{{ params.rows_per_partition }}",
            engine="{{ params.engine }}",
            **common,
        )
        score = ScorePartitionOperator.partial(
            task_id="score_partition",
            batch_uri=_out(resolve, "batch_uri"),
            model_choice=choose.output,
            chunk_rows="{{ params.chunk_rows }}",
            **common,
        ).expand(partition=plan.output)
        FinalizeScoringOperator(
            task_id="finalize",
            batch_uri=_out(resolve, "batch_uri"),
            parts=score.output,
            model_choice=choose.output,
            **common,
        )
        # choose/plan -> score -> finalize follow from the XCom arguments above.
        resolve >> validate >> [choose, plan]
    return dag


def _dags(build: Callable[[ModelSpec, str], DAG]) -> dict[str, DAG]:
    """One DAG per spec, keyed by DAG id, for ``globals().update(...)`` in a DAG file."""
    from mlcycle.core.settings import specs_dir

    path = specs_dir()
    dags = (build(spec, str(path)) for spec in load_specs(path))
    return {dag.dag_id: dag for dag in dags}


def train_dags() -> dict[str, DAG]:
    """Every spec's ``train_<model>`` DAG by DAG id, for ``globals().update`` in a ``dags/`` file."""
    return _dags(build_train_dag)


def score_dags() -> dict[str, DAG]:
    """Every spec's ``score_<model>`` DAG by DAG id, for ``globals().update`` in a ``dags/`` file."""
    return _dags(build_score_dag)


def _monitor_doc(spec: ModelSpec) -> str:
    m = spec.monitor
    return f"""# Monitor `{spec.name}`

Compares the last {m.window_days} day(s) of validated batches with the reference profile of the current
`champion` (written when it was trained): per-feature drift (PSI, KS, chi-square, Jensen–Shannon,
Wasserstein), prediction drift{_text_doc(spec)}, and performance: estimated without labels
({_estimate_doc(spec)})
and measured where labels exist, per chunk of {f"{m.chunk_period} of `{spec.data.time_column}`" if m.chunk_period else f"{m.chunk_rows:,} rows"} and over the window, each
against its band from the reference (mean ± {m.band_k:g} std over holdout chunks){f"; and the primary metric at most {m.max_performance_drop:g} worse than on the holdout" if m.max_performance_drop is not None else ""}.

A retrain is requested (an event of the asset `mlcycle://{spec.name}/retrain`, which `train_{spec.name}` is
scheduled on) only when drift or a performance alert is found AND every guardrail passes: cooldown {m.cooldown_hours:g} h since the
last training, at least {m.min_new_rows} new rows, at most {m.max_retrains_per_week} retrains per rolling week,
newest batch not in quarantine. The decision and its reasons are recorded either way (task log, drift report
behind the **Evidence** link, MLflow experiment `{spec.name}-monitoring`, the retrain-decision table).

Runs on `{m.schedule}` and whenever a new batch lands (`{spec.name}_incoming`).
"""


def build_monitor_dag(spec: ModelSpec, specs_path: str) -> DAG:
    """``monitor_<model>``: drift check even if the newest batch failed validation, then maybe a retrain."""
    common: dict[str, Any] = {"model": spec.name, "specs_dir": specs_path}
    with DAG(
        dag_id=f"monitor_{spec.name}",
        description=f"Drift and performance of {spec.name}; asks for a retrain behind guardrails",
        doc_md=_monitor_doc(spec),
        schedule=_cron_or_asset(spec.monitor.schedule, incoming_asset(spec)),
        **_dag_kwargs(spec, "monitor"),
        params={
            "as_of": _optional(
                "string",
                format="date-time",
                title="As of",
                description="Evaluate the guardrails (cooldown, weekly cap) as of this UTC time (ISO 8601). "
                "Empty: the run's time.",
            ),
        },
    ) as dag:
        resolve = ResolveDataOperator(task_id="resolve_newest", latest_only=True, **common)
        validate = GXValidateOperator(
            task_id="validate_newest", manifest_uri=_out(resolve, "manifest_uri"), **common
        )
        # Runs even when the newest batch failed validation: the decision must say so.
        check = DriftCheckOperator(
            task_id="check_drift", trigger_rule="all_done", as_of="{{ params.as_of }}", **common
        )
        request = RequestRetrainOperator(
            task_id="request_retrain", decision=_out(check), outlets=[retrain_asset(spec)]
        )
        resolve >> validate >> check >> request
    return dag


def monitor_dags() -> dict[str, DAG]:
    """Every spec's ``monitor_<model>`` DAG by DAG id, for ``globals().update`` in a ``dags/`` file."""
    return _dags(build_monitor_dag)


def _rollback_doc(spec: ModelSpec) -> str:
    return f"""# Roll back `{spec.name}`

Moves the alias `champion` of the registered model `{spec.name}` back to an earlier version, on demand
(no schedule). **Params**: `version` the version to roll back to (empty: the previous champion, the one
the current champion replaced, from the promotion ledger); `reason` why (required: recorded in the ledger
with who triggered the run); `force` allow a version that never passed a gate.

The target is checked first: it passed its gate (unless `force`), it still loads (skops, never pickle),
and its ONNX twin, if it has one, still matches it on its holdout rows. The move is a compare-and-set
under the alias's ledger lock (a concurrent promotion makes it fail, not race) and is appended to the
ledger as `rollback` (**Browse → Promotion ledger**). Retrying the run changes nothing.
"""


def build_rollback_dag(spec: ModelSpec, specs_path: str) -> DAG:
    """``rollback_<model>``, triggered by a person: check the target, move ``champion`` back, record it."""
    with DAG(
        dag_id=f"rollback_{spec.name}",
        description=f"Move {spec.name}@champion back to an earlier version, checked and recorded",
        doc_md=_rollback_doc(spec),
        schedule=None,
        **_dag_kwargs(spec, "rollback"),
        params={
            "version": _optional(
                "integer",
                minimum=1,
                title="Version",
                description="The version to roll back to. Empty: the previous champion (from the ledger).",
                section="Target",
            ),
            "reason": _param(
                "",
                type="string",
                minLength=3,
                maxLength=500,
                title="Reason",
                description="Why roll back (required): recorded in the ledger with who triggered the run.",
                section="Why",
            ),
            "force": _optional(
                "boolean",
                title="Force",
                description="Allow a version that never passed a gate (needs the reason; recorded as forced).",
                section="Target",
            ),
        },
    ) as dag:
        RollbackOperator(
            task_id="rollback",
            model=spec.name,
            specs_dir=specs_path,
            version="{{ params.version }}",
            force="{{ params.force }}",
        )
    return dag


def champion_moved_asset(spec: ModelSpec) -> Asset:
    """The asset whose events say "``@champion`` of <model> was just set" (posted by the plugin's
    MLflow webhook endpoint, ``webapp.mlflow_webhook``; extra: ``version``)."""
    return Asset(uri=f"mlcycle://{spec.name}/champion_moved", name=f"{spec.name}_champion_moved")


def build_guard_dag(spec: ModelSpec, specs_path: str) -> DAG:
    """``guard_<model>``: on every ``@champion`` move MLflow reports, check it against the ledger."""
    with DAG(
        dag_id=f"guard_{spec.name}",
        description=f"Catch {spec.name}@champion moves made outside the pipeline",
        doc_md=f"""# Guard `{spec.name}@champion`

Runs on every event of the asset `mlcycle://{spec.name}/champion_moved`, which the plugin posts when
MLflow's registry webhook reports that `@champion` was set (`POST /mlcycle/webhooks/mlflow`, signed with
`MLCYCLE_MLFLOW_WEBHOOK_SECRET`; `mlcycle webhook` registers it), and daily as a backstop. It compares
`@champion` with the ledger's last move of it: the pipeline records every move under the alias's lock, so a
difference means someone set it outside the pipeline (MLflow UI, a client). Such a move is recorded in the
ledger as `external` (red on the model page) and, as `gate.external_moves` says
(`{spec.gate.external_moves}` for this model), the task fails to alert (`alert`) or moves `@champion`
back to the last version the pipeline put there (`revert`, recorded as `revert`). Every scoring and
monitoring run makes the same check first.
""",
        schedule=_cron_or_asset("@daily", champion_moved_asset(spec)),
        **_dag_kwargs(spec, "guard"),
    ) as dag:
        GuardChampionOperator(task_id="check_champion", model=spec.name, specs_dir=specs_path)
    return dag


def guard_dags() -> dict[str, DAG]:
    """Every spec's ``guard_<model>`` DAG by DAG id, for ``globals().update`` in a ``dags/`` file."""
    return _dags(build_guard_dag)


def rollback_dags() -> dict[str, DAG]:
    """Every spec's ``rollback_<model>`` DAG by DAG id, for ``globals().update`` in a ``dags/`` file."""
    return _dags(build_rollback_dag)
