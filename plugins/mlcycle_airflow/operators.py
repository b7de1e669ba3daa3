"""Operators of the lifecycle: thin adapters from Airflow to the use-cases in ``mlcycle.flows``.

Every model operator follows one template (``_ModelOperator.execute``):

1. push its extra links, with URLs known before the work (the MLflow run is opened first),
   so a task that fails still links to its run and its evidence;
2. run the flow inside ``domain_errors()``: a domain failure (bad data, an unfit rollback target, a
   bad spec) fails the task without retries, with its message; anything else (an outage) is
   left to Airflow's retries;
3. log a one-line human summary and return the flow's typed result (``result_type``, a
   TypedDict of ``mlcycle.core.results``) as the XCom.

``__init__`` only assigns; ``template_fields`` are named like the arguments; the MLflow hook
is created on first use and cached; pandas, scikit-learn, MLflow and GX are imported inside
``execute`` (through the flows), never at DAG parse time.
"""

from __future__ import annotations

import datetime as dt
import logging
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, cast

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlcycle.core import results
from mlcycle.data.lake import RunFile
from mlcycle_airflow.approval import ApprovePromotionOperator
from mlcycle_airflow.hooks import MLflowHook
from mlcycle_airflow.links import EvidenceLink, MLflowModelVersionLink, MLflowRunLink, XComLink, evidence_url
from mlcycle_airflow.notifiers import DECIDED_BY_KEY, SKIP_REASON_KEY

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from airflow.sdk import Context, XComArg
    from mlflow import MlflowClient

    from mlcycle.core.errors import GateFailedError
    from mlcycle.core.run import RunInfo
    from mlcycle.core.spec import ModelSpec

log = logging.getLogger(__name__)

# Airflow's run types, as the trigger kinds recorded on runs, versions and the ledger.
TRIGGER_KINDS = {
    "scheduled": "schedule",
    "manual": "manual",
    "asset_triggered": "asset",
    "backfill": "backfill",
    "operator_triggered": "operator",
}

Links = dict[type[XComLink], str]


@contextmanager
def domain_errors() -> Iterator[None]:
    """Turn a domain error (bad data, unfit rollback target, bad spec) into a failure without
    retries, keeping its message; anything else is left to Airflow's retries."""
    from mlcycle.core.errors import MlcycleError

    try:
        yield
    except MlcycleError as exc:
        raise AirflowFailException(str(exc)) from exc


def _flag(value: bool | str | None) -> bool:
    """A boolean param as its template rendered it (a bool, or "True"/"None" as text)."""
    return value if isinstance(value, bool) else str(value).lower() == "true"


def _text(value: str | None) -> str | None:
    """A string param as its template rendered it: None for empty or "None"."""
    return None if value in (None, "", "None") else str(value)


def _asset_event_extra(context: Context, key: str) -> str | None:
    """``key`` from the extra of the newest asset event that triggered this run."""
    events = context.get("triggering_asset_events") or {}
    for asset_events in events.values():
        for event in reversed(list(asset_events)):
            value = (event.extra or {}).get(key)
            if value:
                return str(value)
    return None


def run_info(context: Context) -> RunInfo:
    """The identity of the running task's DAG run: ids, trigger kind, reason, actor."""
    from mlcycle.core.run import RunInfo

    dag_run = context["dag_run"]
    params = context.get("params") or {}
    # The task SDK gives an enum whose str() is "DagRunType.MANUAL": use its value.
    run_type = str(getattr(dag_run.run_type, "value", dag_run.run_type))
    trigger = TRIGGER_KINDS.get(run_type, run_type)
    reason = str(params.get("reason") or "")
    if not reason and trigger == "asset":
        reason = _asset_event_extra(context, "reason") or "asset event"
    elif not reason and trigger == "schedule":
        reason = "nightly schedule"
    return RunInfo(
        dag_id=dag_run.dag_id,
        run_id=dag_run.run_id,
        reason=reason,
        trigger=trigger,
        actor=getattr(dag_run, "triggering_user_name", None) or "airflow",
    )


class _ModelArguments:
    """The arguments every model operator takes. A plain class on purpose: Airflow wraps the
    ``__init__`` of every BaseOperator subclass, and each wrapper deep-copies the DAG's params
    (at every parse, for every task); one level less costs a third less of that."""

    def __init__(
        self,
        *,
        model: str,
        specs_dir: str | None = None,
        lake_root: str | None = None,
        mlflow_conn_id: str = MLflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.specs_dir = specs_dir
        self.lake_root = lake_root
        self.mlflow_conn_id = mlflow_conn_id


class _ModelOperator(_ModelArguments, BaseOperator):
    """The template of every model operator (see the module docstring).

    :param model: the model's name (its spec is ``<specs_dir>/<model>.yaml``).
    :param specs_dir: folder of the model specs (default ``MLCYCLE_SPECS_DIR``).
    :param lake_root: the data lake root, a folder or fsspec URI (default ``MLCYCLE_LAKE_ROOT``).
    :param mlflow_conn_id: the Airflow connection of the MLflow tracking server.
    """

    ui_color = "#e8f1fb"
    result_type: ClassVar[type] = dict

    @cached_property
    def hook(self) -> MLflowHook:
        return MLflowHook(mlflow_conn_id=self.mlflow_conn_id)

    @property
    def mlc(self) -> MlflowClient:
        return self.hook.get_conn()

    def _spec(self) -> ModelSpec:
        from mlcycle.core.spec import get_spec

        return get_spec(self.model, self.specs_dir)

    def _lake(self) -> str:
        from mlcycle.core import settings

        return self.lake_root or settings.lake_root()

    def _evidence(self, spec: ModelSpec, run: RunInfo, what: RunFile) -> str:
        from mlcycle.data import lake as lk

        lake_root = self._lake()
        return evidence_url(lake_root, lk.uri_of(lk.Lake(lake_root, spec.name).run_file(run.key, what)))

    def _run_url(self, experiment_id: str, run_id: str) -> str:
        from mlcycle.store import registry

        return registry.run_url(self.hook.ui_url, experiment_id, run_id)

    def _version_url(self, version: str | None) -> str:
        from mlcycle.store import registry

        ui = self.hook.ui_url
        return (
            registry.version_url(ui, self.model, version) if version else registry.model_url(ui, self.model)
        )

    def execute(self, context: Context) -> Any:
        with domain_errors():
            spec, run = self._spec(), run_info(context)
            for link, url in self.links_before(context, spec, run).items():
                link.push(context, url)
            out = self.run_flow(context, spec, run)
        log.info("Summary: %s", self.summarize(out))
        return out

    def links_before(self, context: Context, spec: ModelSpec, run: RunInfo) -> Links:
        """The extra links whose URLs are known before the work."""
        return {}

    def run_flow(self, context: Context, spec: ModelSpec, run: RunInfo) -> Any:
        raise NotImplementedError

    def summarize(self, out: Any) -> str:
        raise NotImplementedError


class ResolveDataOperator(_ModelOperator):
    """Decide which data a run uses and write its manifest: ``batch_uri`` if given, else the
    ``batch_uri`` in the extra of the asset event that triggered the run, else the spec's
    training window (or, with ``latest_only``, the newest batch).

    :param batch_uri: a Parquet file to use instead of the window (templated).
    :param as_of: the window's last day (ISO date); default the day of the run's logical date
        (``window_end``), so a rerun or backfill of a past night reads what that night saw.
    :param latest_only: use only the newest batch not in quarantine (scoring, monitoring).
    """

    template_fields: Sequence[str] = ("model", "batch_uri", "as_of", "lake_root")
    result_type = results.ResolveResult

    def __init__(
        self,
        *,
        batch_uri: str | None = None,
        as_of: str | None = None,
        latest_only: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch_uri = batch_uri
        self.as_of = as_of
        self.latest_only = latest_only

    def run_flow(self, context: Context, spec: ModelSpec, run: RunInfo) -> results.ResolveResult:
        from mlcycle.flows import train

        as_of = dt.date.fromisoformat(self.as_of) if self.as_of else self.logical_day(context)
        batch_uri = self.batch_uri or _asset_event_extra(context, "batch_uri")
        return train.resolve(
            spec,
            run,
            lake_root=self._lake(),
            as_of=as_of,
            batch_uri=batch_uri or None,
            latest_only=self.latest_only,
        )

    @staticmethod
    def logical_day(context: Context) -> dt.date:
        """The day a run stands for: its data interval's end (scheduled runs), else its logical
        date (a manual run given one, ``airflow dags test <dag> <date>``), else ``run_after``
        (Airflow 3 manual and asset-triggered runs may have neither)."""
        dag_run = context["dag_run"]
        when = (
            getattr(dag_run, "data_interval_end", None)
            or getattr(dag_run, "logical_date", None)
            or dag_run.run_after
        )
        return cast("dt.datetime", when).date()

    def summarize(self, out: results.ResolveResult) -> str:
        return (
            f"{self.model} uses {out['batches']} batch(es), {out['rows']} rows ({out['source']}), "
            f"digest {out['digest'][:12]}. Manifest: {out['manifest_uri']}"
        )


class GXValidateOperator(_ModelOperator):
    """Validate a run's batches with Great Expectations against the model's contract.

    On failure the failing batches and the validation result are copied to the quarantine
    area and the task fails (without retries) listing each failed expectation with what was
    observed; nothing downstream runs.

    :param manifest_uri: the manifest written by ``ResolveDataOperator``.
    :param contracts_dir: folder of the GX suites (default ``MLCYCLE_CONTRACTS_DIR``).
    """

    template_fields: Sequence[str] = ("model", "manifest_uri", "contracts_dir", "lake_root")
    operator_extra_links = (EvidenceLink(),)
    ui_color = "#fff4d6"
    result_type = results.ValidateResult

    def __init__(self, *, manifest_uri: str, contracts_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.manifest_uri = manifest_uri
        self.contracts_dir = contracts_dir

    def links_before(self, context: Context, spec: ModelSpec, run: RunInfo) -> Links:
        return {EvidenceLink: self._evidence(spec, run, RunFile.VALIDATION_PAGE)}

    def run_flow(self, context: Context, spec: ModelSpec, run: RunInfo) -> results.ValidateResult:
        from mlcycle.flows import train

        return train.validate(
            spec,
            run,
            manifest_uri=str(self.manifest_uri),
            lake_root=self._lake(),
            contracts_dir=self.contracts_dir,
        )

    def summarize(self, out: results.ValidateResult) -> str:
        return (
            f"{out['batches']} batch(es), {out['rows']} rows passed all {out['expectations']} expectations "
            f"of contract {out['contract']!r}. Result: {out['result_uri']}"
        )


class TrainModelOperator(_ModelOperator):
    """Train the spec's pipeline, log it to MLflow, register a version, alias it challenger.

    Skips (no new version) when the champion was trained on identical data and spec, unless
    ``force``; reuses the version an earlier try of the same run registered. Fails without
    retries when the data departs from the champion's reference profile, unless
    ``accept_data_shift`` (which needs the run's ``reason``).

    :param manifest_uri: the manifest written by ``ResolveDataOperator``.
    :param overrides: hyper-parameter overrides of the spec's estimator.
    :param force: train even when the champion saw identical data with the same spec.
    :param accept_data_shift: train even when the data check against the champion's reference
        breaches a bound; the breach and the run's reason are recorded.
    """

    template_fields: Sequence[str] = (
        "model",
        "manifest_uri",
        "overrides",
        "force",
        "accept_data_shift",
        "lake_root",
    )
    operator_extra_links = (MLflowRunLink(), MLflowModelVersionLink())
    ui_color = "#e6f4ea"
    result_type = results.TrainResult

    def __init__(
        self,
        *,
        manifest_uri: str,
        overrides: dict[str, Any] | str | None = None,
        force: bool | str = False,
        accept_data_shift: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.manifest_uri = manifest_uri
        self.overrides = overrides
        self.force = force
        self.accept_data_shift = accept_data_shift

    def links_before(self, context: Context, spec: ModelSpec, run: RunInfo) -> Links:
        from mlcycle.flows import train

        experiment_id, run_id = train.open_run(self.mlc, spec, run, str(self.manifest_uri))
        return {
            MLflowRunLink: self._run_url(experiment_id, run_id),
            MLflowModelVersionLink: self._version_url(None),
        }

    def run_flow(self, context: Context, spec: ModelSpec, run: RunInfo) -> results.TrainResult:
        from mlcycle.flows import train

        force = _flag(self.force)
        out = train.train(
            spec,
            run,
            self.mlc,
            manifest_uri=str(self.manifest_uri),
            lake_root=self._lake(),
            overrides=cast("dict[str, Any] | None", self.overrides) or None,
            force=force,
            accept_data_shift=_flag(self.accept_data_shift),
        )
        if out["skipped"]:
            reason = str(out.get("reason"))
            context["ti"].xcom_push(key=SKIP_REASON_KEY, value=reason)
            raise AirflowSkipException(reason)
        trained = cast("results.TrainResult", out)
        MLflowModelVersionLink.push(context, self._version_url(trained["version"]))
        return trained

    def summarize(self, out: results.TrainResult) -> str:
        return (
            f"{self.model} v{out['version']} "
            f"{'registered' if out['created'] else 'already registered by this run'} (alias challenger). "
            f"Holdout metrics: {out['holdout_metrics'] or 'see MLflow'}. MLflow run: {out['mlflow_run_id']}"
        )


class EvaluateModelOperator(_ModelOperator):
    """Score the candidate and the current champion on the same holdout rows.

    :param version: the candidate's registered version.
    :param holdout_uri: the holdout written by training.
    """

    template_fields: Sequence[str] = ("model", "version", "holdout_uri", "lake_root")
    result_type = results.EvaluationResult

    def __init__(self, *, version: str, holdout_uri: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version = version
        self.holdout_uri = holdout_uri

    def run_flow(self, context: Context, spec: ModelSpec, run: RunInfo) -> results.EvaluationResult:
        from mlcycle.flows import train

        return train.evaluate(
            spec,
            run,
            self.mlc,
            version=str(self.version),
            holdout_uri=str(self.holdout_uri),
            lake_root=self._lake(),
        )

    def summarize(self, out: results.EvaluationResult) -> str:
        champ = out["champion"]
        beside = f" beside champion v{champ['version']}" if champ else " (no champion yet: bootstrap)"
        return f"candidate v{out['candidate']['version']} evaluated on {out['holdout_rows']} holdout rows{beside}."


class GateOperator(_ModelOperator):
    """Apply the spec's gate policy to an evaluation and publish the verdict.

    A refused candidate is an outcome, not a crash: the task succeeds with ``passed`` False in
    its XCom, logs every rule, and ``promote`` is skipped with the verdict as the reason (a
    distinct state in the grid; a crash fails the task).

    :param evaluation: the ``EvaluationResult`` of ``EvaluateModelOperator``.
    :param overrides: one-off changes to the spec's gate for this run (the ``gate_overrides``
        param), recorded in the verdict and the ledger.
    :param require_approval: the run's ``require_approval`` switch: True or False overrides
        ``gate.approval.required`` (recorded as an override); None leaves the spec's choice.
    """

    template_fields: Sequence[str] = ("model", "evaluation", "overrides", "require_approval", "lake_root")
    operator_extra_links = (EvidenceLink(), MLflowModelVersionLink())
    ui_color = "#fde2e1"
    result_type = results.GateResult

    def __init__(
        self,
        *,
        evaluation: results.EvaluationResult | str,
        overrides: dict[str, Any] | str | None = None,
        require_approval: bool | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.evaluation = cast("results.EvaluationResult", evaluation)  # rendered before execute
        self.overrides = overrides
        self.require_approval = require_approval

    def links_before(self, context: Context, spec: ModelSpec, run: RunInfo) -> Links:
        return {
            EvidenceLink: self._evidence(spec, run, RunFile.VERDICT),
            MLflowModelVersionLink: self._version_url(self.evaluation["candidate"]["version"]),
        }

    def run_flow(self, context: Context, spec: ModelSpec, run: RunInfo) -> results.GateResult:
        from mlcycle.flows import train

        overrides = dict(self.overrides) if isinstance(self.overrides, dict) else {}
        if self.require_approval not in (None, "", "None"):  # the switch wins over gate_overrides
            approval = {**overrides.get("approval", {}), "required": _flag(self.require_approval)}
            overrides["approval"] = approval
        return train.gate(
            spec,
            run,
            self.mlc,
            evaluation=self.evaluation,
            lake_root=self._lake(),
            overrides=overrides or None,
        )

    def summarize(self, out: results.GateResult) -> str:
        then = "promote runs next" if out["passed"] else "promote will be skipped, champion unchanged"
        return f"{out['summary']}; {then}. Verdict: {out['report_uri']}"


class PromoteModelOperator(_ModelOperator):
    """Move alias ``champion`` to a version that passed the gate and record it in the ledger;
    skipped, with the reason, when the gate refused the candidate or an approval it asked for
    was not given (rejected, or no answer in time).

    :param verdict: the ``GateResult`` of ``GateOperator``.
    :param approval: the ``ApprovalResult`` of the approval task, if the DAG has one.
    :param ledger_uri: SQLAlchemy URI of the ledger (default ``MLCYCLE_LEDGER_URI``).
    """

    template_fields: Sequence[str] = ("model", "verdict", "approval", "ledger_uri", "lake_root")
    operator_extra_links = (MLflowModelVersionLink(),)
    ui_color = "#d8f5d0"
    result_type = results.PromoteResult

    def __init__(
        self,
        *,
        verdict: results.GateResult | str,
        approval: results.ApprovalResult | str | None = None,
        ledger_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.verdict = cast("results.GateResult", verdict)  # rendered before execute
        self.approval = approval
        self.ledger_uri = ledger_uri

    def links_before(self, context: Context, spec: ModelSpec, run: RunInfo) -> Links:
        return {MLflowModelVersionLink: self._version_url(self.verdict["version"])}

    def run_flow(self, context: Context, spec: ModelSpec, run: RunInfo) -> results.PromoteResult:
        from mlcycle.flows import train

        approval = self.approval if isinstance(self.approval, dict) else None
        refused: GateFailedError | None
        if not self.verdict["passed"]:
            refused, decided_by = train.refusal(spec, self.verdict), self._upstream_of(GateOperator)
        else:
            refused = train.rejection(spec, self.verdict, approval)
            decided_by = self._upstream_of(ApprovePromotionOperator)
        if refused is not None:
            context["ti"].xcom_push(key=SKIP_REASON_KEY, value=str(refused))
            context["ti"].xcom_push(key=DECIDED_BY_KEY, value=decided_by)
            raise AirflowSkipException(str(refused))
        return train.promote(
            spec,
            run,
            self.mlc,
            verdict=self.verdict,
            approval=approval,
            ledger_uri=self.ledger_uri,
            lake_root=self._lake(),
        )

    def _upstream_of(self, kind: type) -> str | None:
        """The id of an upstream task of type ``kind`` (None outside a DAG or without one)."""
        if not self.has_dag():
            return None
        found = [t for t in self.get_flat_relatives(upstream=True) if isinstance(t, kind)]
        return found[0].task_id if found else None

    def summarize(self, out: results.PromoteResult) -> str:
        return (
            f"{self.model}@champion {'moved to' if out['promoted'] else 'already at'} v{out['version']} "
            f"(was v{out['previous_version'] or '-'}); ledger "
            f"{'appended' if out['ledger_recorded'] else 'already had this move'}."
        )


class RollbackOperator(_ModelOperator):
    """Move alias ``champion`` back to ``version`` (default: the previous champion) after checking
    it passed its gate (unless ``force``), still loads and still matches its ONNX twin; compare-
    and-set, recorded in the ledger as ``rollback`` with the run's reason (required).

    :param version: the version to roll back to (templated; empty: the previous champion).
    :param force: allow a version that never passed a gate (the reason is recorded as forced).
    :param ledger_uri: SQLAlchemy URI of the ledger (default ``MLCYCLE_LEDGER_URI``).
    """

    template_fields: Sequence[str] = ("model", "version", "force", "ledger_uri")
    operator_extra_links = (MLflowModelVersionLink(),)
    ui_color = "#fff4d6"
    result_type = results.RollbackResult

    def __init__(
        self,
        *,
        version: int | str | None = None,
        force: bool | str | None = False,
        ledger_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.version = version
        self.force = force
        self.ledger_uri = ledger_uri

    def _target(self) -> str | None:
        return str(self.version) if self.version not in (None, "", "None") else None

    def links_before(self, context: Context, spec: ModelSpec, run: RunInfo) -> Links:
        return {MLflowModelVersionLink: self._version_url(self._target())}

    def run_flow(self, context: Context, spec: ModelSpec, run: RunInfo) -> results.RollbackResult:
        from mlcycle.flows import rollback

        force = _flag(self.force)
        out = rollback.rollback(
            spec, run, self.mlc, version=self._target(), force=force, ledger_uri=self.ledger_uri
        )
        MLflowModelVersionLink.push(context, self._version_url(out["version"]))
        return out

    def summarize(self, out: results.RollbackResult) -> str:
        moved = "rolled back" if out["moved"] else "already rolled back by this run"
        return (
            f"{self.model}@champion {moved} to v{out['version']} (was v{out['previous_version']}). "
            f"Checks: {'; '.join(out['checks'])}"
        )


class GuardChampionOperator(_ModelOperator):
    """Check ``@champion`` against the ledger (``mlcycle.flows.guard``): a move outside the pipeline
    is recorded as ``external`` and either reverted (``gate.external_moves: revert``) or, by
    default, fails this task so the move is red in the grid and the failure notification goes out.

    :param ledger_uri: SQLAlchemy URI of the ledger (default ``MLCYCLE_LEDGER_URI``).
    """

    template_fields: Sequence[str] = ("model", "ledger_uri")
    operator_extra_links = (MLflowModelVersionLink(),)
    ui_color = "#ffebe9"
    result_type = results.AliasCheck

    def __init__(self, *, ledger_uri: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ledger_uri = ledger_uri

    def run_flow(self, context: Context, spec: ModelSpec, run: RunInfo) -> results.AliasCheck:
        from mlcycle.flows import guard

        out = guard.guard_champion(spec, run, self.mlc, ledger_uri=self.ledger_uri)
        MLflowModelVersionLink.push(context, self._version_url(out["registry"]))
        if out["action"] == "alert":
            raise AirflowFailException(
                f"{spec.name}: {out['detail']}. Recorded in the ledger as external. Roll back with "
                f"rollback_{spec.name}, or set gate.external_moves: revert in the spec to undo such moves."
            )
        return out

    def summarize(self, out: results.AliasCheck) -> str:
        return out["detail"]


class ChooseModelOperator(_ModelOperator):
    """Pick the version to score with (``version`` wins over ``alias``) and the challenger
    to run in shadow when the champion is served.

    :param alias: the alias to score with (``champion`` or ``challenger``).
    :param version: a registered version to pin instead of the alias.
    :param engine: ``auto``, ``sklearn`` or ``beam`` for this run (empty: the spec's ``scoring.engine``).
    """

    template_fields: Sequence[str] = ("model", "alias", "version", "engine")
    operator_extra_links = (MLflowModelVersionLink(),)
    result_type = results.ModelChoice

    def __init__(
        self,
        *,
        alias: str | None = "champion",
        version: str | int | None = None,
        engine: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.alias = alias
        self.version = version
        self.engine = engine

    def _pinned(self) -> str | None:
        return str(self.version) if self.version not in (None, "") else None

    def links_before(self, context: Context, spec: ModelSpec, run: RunInfo) -> Links:
        return {MLflowModelVersionLink: self._version_url(self._pinned())}

    def run_flow(self, context: Context, spec: ModelSpec, run: RunInfo) -> results.ModelChoice:
        from mlcycle.flows import guard, score

        guard.guard_champion(spec, run, self.mlc)  # a move outside the pipeline: recorded (or reverted)
        out = score.choose_model(
            spec, self.mlc, alias=self.alias or None, version=self._pinned(), engine=_text(self.engine)
        )
        MLflowModelVersionLink.push(context, self._version_url(out["version"]))
        return out

    def summarize(self, out: results.ModelChoice) -> str:
        shadow = (
            f", challenger v{out['shadow_version']} in shadow" if out["shadow_version"] else ", no shadow"
        )
        return (
            f"scoring {self.model} with v{out['version']} ({out['alias'] or 'pinned version'}, "
            f"{out['engine']} model, {out['batch_engine']} engine){shadow}."
        )


class PlanPartitionsOperator(_ModelOperator):
    """Cut a batch into row ranges; each becomes one mapped scoring task.

    :param batch_uri: the Parquet batch to score.
    :param rows_per_partition: the most rows one scoring task takes.
    :param engine: the run's engine (empty: the spec's); ``beam`` plans one partition, the
        pipeline parallelises inside.
    """

    template_fields: Sequence[str] = ("model", "batch_uri", "rows_per_partition", "engine")
    result_type = results.PartitionSpec  # a list of them

    def __init__(
        self,
        *,
        batch_uri: str,
        rows_per_partition: int | str = 250_000,
        engine: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch_uri = batch_uri
        self.rows_per_partition = rows_per_partition
        self.engine = engine

    def run_flow(self, context: Context, spec: ModelSpec, run: RunInfo) -> list[results.PartitionSpec]:
        from mlcycle.flows import score

        self._batch_engine = score.batch_engine(spec, _text(self.engine))
        return score.plan(str(self.batch_uri), int(self.rows_per_partition), self._batch_engine)

    def summarize(self, out: list[results.PartitionSpec]) -> str:
        if getattr(self, "_batch_engine", None) == "beam":
            return f"{self.batch_uri}: one partition for the Beam engine (the pipeline parallelises inside)."
        return f"{self.batch_uri} cut into {len(out)} partition(s) of at most {self.rows_per_partition} rows."


class ScorePartitionOperator(_ModelOperator):
    """Score one partition of a batch by chunks (and the shadow model on the same rows), or,
    when the model choice says ``batch_engine: beam``, the whole batch with the Apache Beam
    pipeline ``mlcycle.ml.beam_scoring``, launched through the apache-beam provider's
    ``BeamHook`` (a subprocess of the same interpreter whose log streams into this task's log).
    Its runner and options come from the spec's ``scoring.beam`` and, over them, the extra JSON
    of the connection ``scoring.beam.connection_id``.

    :param batch_uri: the Parquet batch to score.
    :param partition: one ``PartitionSpec`` of ``PlanPartitionsOperator`` (mapped).
    :param model_choice: the ``ModelChoice`` of ``ChooseModelOperator``.
    :param chunk_rows: rows read, scored and written at a time.
    """

    template_fields: Sequence[str] = (
        "model",
        "batch_uri",
        "partition",
        "model_choice",
        "chunk_rows",
        "lake_root",
    )
    ui_color = "#e6f4ea"
    result_type = results.PartitionResult

    def __init__(
        self,
        *,
        batch_uri: str,
        partition: results.PartitionSpec | XComArg,
        model_choice: results.ModelChoice | XComArg,
        chunk_rows: int | str = 50_000,
        # Named here, not only in _ModelArguments: partial() accepts only the arguments that
        # the __init__ of an operator class in the MRO declares.
        model: str,
        specs_dir: str | None = None,
        lake_root: str | None = None,
        mlflow_conn_id: str = MLflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            model=model, specs_dir=specs_dir, lake_root=lake_root, mlflow_conn_id=mlflow_conn_id, **kwargs
        )
        self.batch_uri = batch_uri
        self.partition = cast("results.PartitionSpec", partition)  # resolved before execute
        self.model_choice = cast("results.ModelChoice", model_choice)
        self.chunk_rows = chunk_rows

    def run_flow(self, context: Context, spec: ModelSpec, run: RunInfo) -> results.PartitionResult:
        from mlcycle.flows import score

        if self.model_choice.get("batch_engine") == score.BEAM:
            return self._run_beam(spec, run)
        return score.score_partition(
            spec,
            run,
            self.mlc,
            batch_uri=str(self.batch_uri),
            partition=self.partition,
            model=self.model_choice,
            lake_root=self._lake(),
            chunk_rows=int(self.chunk_rows),
        )

    def _run_beam(self, spec: ModelSpec, run: RunInfo) -> results.PartitionResult:
        import sys
        import time

        from airflow.providers.apache.beam.hooks.beam import BeamHook

        from mlcycle.flows import score
        from mlcycle.ml import beam_job

        beam = spec.scoring.beam
        extra = None
        if beam.connection_id:
            from airflow.sdk import BaseHook

            extra = BaseHook.get_connection(beam.connection_id).extra_dejson
        runner, options = beam_job.runner_options(beam, extra)
        job_uri, job = score.prepare_beam(
            spec,
            run,
            self.mlc,
            batch_uri=str(self.batch_uri),
            model=self.model_choice,
            lake_root=self._lake(),
            batch_rows=int(self.chunk_rows),
            model_threads=beam_job.model_threads(runner, options),
        )
        log.info("Beam scoring job %s on %s with options %s", job_uri, runner, sorted(options))
        started = time.perf_counter()
        # The same interpreter: Beam's pins fit this environment (py_requirements would build a
        # virtualenv on every run, about a minute).
        BeamHook(runner=runner).start_python_pipeline(
            variables={"job": job_uri, **options},
            py_file=beam_job.launcher_path(),
            py_options=[],
            py_interpreter=sys.executable,
        )
        out = score.beam_result(job, runner, time.perf_counter() - started)
        beam_out: dict[str, Any] = dict(out["beam"] or {})
        log.info(
            "Beam: %s rows read, %s scored, %s dead letters -> %s; batch latency (ms) %s; metrics %s",
            beam_out.get("rows_read"),
            beam_out.get("rows_scored"),
            beam_out.get("rows_failed"),
            beam_out.get("dead_letter_uri"),
            beam_out.get("batch_latency_ms"),
            beam_out.get("metrics_uri"),
        )
        return out

    def summarize(self, out: results.PartitionResult) -> str:
        beam = out.get("beam")
        if beam:
            return (
                f"Beam ({beam['runner']}): {out['rows']} rows scored, {beam['rows_failed']} dead letters "
                f"in {out['seconds']:.2f}s -> {out['part_uri']} (dead letters: {beam['dead_letter_uri']})"
            )
        return f"partition {out['index']}: {out['rows']} rows in {out['seconds']:.2f}s -> {out['part_uri']}"


class FinalizeScoringOperator(_ModelOperator):
    """Merge the partitions into the batch's prediction file, summarise the shadow comparison,
    log it to MLflow and write the scoring report.

    :param batch_uri: the Parquet batch that was scored.
    :param parts: the ``PartitionResult`` of every mapped scoring task.
    :param model_choice: the ``ModelChoice`` of ``ChooseModelOperator``.
    """

    template_fields: Sequence[str] = ("model", "batch_uri", "parts", "model_choice", "lake_root")
    operator_extra_links = (EvidenceLink(), MLflowRunLink())
    result_type = results.ScoringSummary

    def __init__(
        self,
        *,
        batch_uri: str,
        parts: list[results.PartitionResult] | XComArg,
        model_choice: results.ModelChoice | XComArg,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch_uri = batch_uri
        self.parts = cast("list[results.PartitionResult]", parts)  # resolved before execute
        self.model_choice = cast("results.ModelChoice", model_choice)

    def links_before(self, context: Context, spec: ModelSpec, run: RunInfo) -> Links:
        from mlcycle.flows import score

        experiment_id, run_id = score.open_run(self.mlc, spec, run)
        return {
            EvidenceLink: self._evidence(spec, run, RunFile.SCORING),
            MLflowRunLink: self._run_url(experiment_id, run_id),
        }

    def run_flow(self, context: Context, spec: ModelSpec, run: RunInfo) -> results.ScoringSummary:
        from mlcycle.flows import score

        out = score.finalize(
            spec,
            run,
            self.mlc,
            batch_uri=str(self.batch_uri),
            parts=list(self.parts),
            model=self.model_choice,
            lake_root=self._lake(),
        )
        return {
            "output_uri": out["output_uri"],
            "rows": out["rows"],
            "rows_per_second": out["rows_per_second"],
            "version": out["version"],
            "shadow_version": out["shadow_version"],
            "engine": out["engine"],
            "batch_engine": out["batch_engine"],
            "report_uri": out["report_uri"],
            "shadow": out["shadow"],
            "beam": {k: v for k, v in out["beam"].items() if k != "metrics"} if out["beam"] else None,  # type: ignore[typeddict-item]
        }

    def summarize(self, out: results.ScoringSummary) -> str:
        shadow = out.get("shadow") or {}
        shadow_text = (
            f" Shadow v{out['shadow_version']}: agreement {shadow.get('agreement', 'n/a')}, "
            f"mean |diff| {shadow.get('mean_abs_diff', 'n/a')}."
            if out.get("shadow_version")
            else ""
        )
        beam = out.get("beam")
        beam_text = (
            f" Beam ({beam['runner']}): {beam['rows_failed']} dead letters -> {beam['dead_letter_uri']}."
            if beam
            else ""
        )
        return (
            f"{out['rows']} rows scored by {self.model} v{out['version']} ({out['engine']} model, "
            f"{out['batch_engine']} engine, {out['rows_per_second']} rows/s) -> {out['output_uri']}."
            f"{shadow_text}{beam_text} Report: {out['report_uri']}"
        )


class DriftCheckOperator(_ModelOperator):
    """Compare recent batches with the champion's reference profile, decide (with the spec's
    guardrails) whether to ask for a retrain, and record the decision and its reasons.

    :param ledger_uri: SQLAlchemy URI of the decision record (default ``MLCYCLE_LEDGER_URI``).
    :param as_of: evaluate the guardrails as of this UTC time (ISO 8601); default the run's time.
    """

    template_fields: Sequence[str] = ("model", "lake_root", "ledger_uri", "as_of")
    operator_extra_links = (EvidenceLink(), MLflowRunLink())
    ui_color = "#fff4d6"
    result_type = results.RetrainDecision

    def __init__(self, *, ledger_uri: str | None = None, as_of: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ledger_uri = ledger_uri
        self.as_of = as_of

    def links_before(self, context: Context, spec: ModelSpec, run: RunInfo) -> Links:
        from mlcycle.flows import monitor

        experiment_id, run_id = monitor.open_run(self.mlc, spec, run)
        return {
            EvidenceLink: self._evidence(spec, run, RunFile.DRIFT),
            MLflowRunLink: self._run_url(experiment_id, run_id),
        }

    def run_flow(self, context: Context, spec: ModelSpec, run: RunInfo) -> results.RetrainDecision:
        from mlcycle.flows import guard, monitor

        now = dt.datetime.fromisoformat(self.as_of) if self.as_of else context["dag_run"].run_after
        if now.tzinfo is None:
            now = now.replace(tzinfo=dt.UTC)
        guard.guard_champion(spec, run, self.mlc, ledger_uri=self.ledger_uri)
        out = monitor.check(spec, run, self.mlc, lake_root=self._lake(), now=now, ledger_uri=self.ledger_uri)
        decision = out["decision"]
        return {
            "retrain": decision["retrain"],
            "reason": decision["reason"],
            "blocked_by": [c["name"] for c in decision["checks"] if not c["passed"]],
            "champion_version": out["champion_version"],
            "rows": out["rows"],
            "report_uri": out["report_uri"],
        }

    def summarize(self, out: results.RetrainDecision) -> str:
        return f"{out['reason']}. Report: {out['report_uri']}"


class RequestRetrainOperator(BaseOperator):
    """Emit the retrain asset event (with the reason in its extra) when the check asked for
    it; otherwise skip, so no event is emitted. Give the asset as ``outlets``.

    :param decision: the ``RetrainDecision`` of ``DriftCheckOperator``.
    """

    template_fields: Sequence[str] = ("decision",)
    ui_color = "#fde2e1"
    result_type: ClassVar[type] = results.RetrainRequest

    def __init__(self, *, decision: results.RetrainDecision | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decision = cast("results.RetrainDecision", decision)  # rendered before execute

    def execute(self, context: Context) -> results.RetrainRequest:
        if not self.decision.get("retrain"):
            raise AirflowSkipException(str(self.decision.get("reason")))
        extra: results.RetrainRequest = {
            "reason": self.decision["reason"],
            "monitor_dag_id": context["dag_run"].dag_id,
            "monitor_run_id": context["dag_run"].run_id,
            "report": self.decision.get("report_uri"),
        }
        for asset in self.outlets:
            context["outlet_events"][asset].extra = cast("dict[str, Any]", extra)
        log.info(
            "Summary: retrain requested via %s: %s", [a.uri for a in self.outlets], self.decision["reason"]
        )
        return extra
