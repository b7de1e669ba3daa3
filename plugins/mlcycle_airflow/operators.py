"""Operators of the lifecycle: thin adapters from Airflow to ``mlcycle.steps``.

Each operator: a keyword-only ``__init__`` that only assigns; ``template_fields`` named
like the arguments; the hook created lazily in ``execute``; the heavy imports there too;
a small JSON-serialisable return value; extra links pushed before the slow work; a
domain failure turned into ``AirflowFailException`` (retrying cannot fix bad data or a
refused candidate), anything else left to Airflow's retries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlcycle_airflow.hooks import MLflowHook
from mlcycle_airflow.links import EvidenceLink, MLflowModelVersionLink, MLflowRunLink, evidence_url

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlcycle.spec import ModelSpec
    from mlcycle.steps import RunInfo

log = logging.getLogger(__name__)

TRIGGER_KINDS = {
    "scheduled": "schedule",
    "manual": "manual",
    "asset_triggered": "asset",
    "backfill": "backfill",
    "operator_triggered": "operator",
}


@contextmanager
def domain_errors() -> Iterator[None]:
    """Turn a domain error (bad data, refused candidate, bad spec) into a failure without
    retries, keeping its message; anything else is left to Airflow's retries."""
    from mlcycle.errors import MlcycleError

    try:
        yield
    except MlcycleError as exc:
        raise AirflowFailException(str(exc)) from exc


def _asset_event_extra(context: Context, key: str) -> str | None:
    """``key`` from the extra of the newest asset event that triggered this run."""
    events = context.get("triggering_asset_events") or {}
    for asset_events in events.values():
        for event in reversed(list(asset_events)):
            value = (event.extra or {}).get(key)
            if value:
                return str(value)
    return None


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
    """Shared plumbing: the spec, the run identity, the lake root and MLflow."""

    ui_color = "#e8f1fb"

    def _spec(self) -> ModelSpec:
        from mlcycle.spec import get_spec

        return get_spec(self.model, self.specs_dir)

    def _lake(self) -> str:
        from mlcycle import settings

        return self.lake_root or settings.lake_root()

    def _hook(self) -> MLflowHook:
        return MLflowHook(mlflow_conn_id=self.mlflow_conn_id)

    @staticmethod
    def _run(context: Context) -> RunInfo:
        from mlcycle.steps import RunInfo

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


class ResolveDataOperator(_ModelOperator):
    """Decide which data a run uses and write its manifest: ``batch_uri`` if given, else the
    ``batch_uri`` in the extra of the asset event that triggered the run, else the spec's
    training window (or, with ``latest_only``, the newest batch)."""

    template_fields: Sequence[str] = ("model", "batch_uri", "as_of", "lake_root")

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

    def execute(self, context: Context) -> dict[str, Any]:
        import datetime as dt

        from mlcycle import steps

        as_of = dt.date.fromisoformat(self.as_of) if self.as_of else context["dag_run"].run_after.date()
        batch_uri = self.batch_uri or _asset_event_extra(context, "batch_uri")
        with domain_errors():
            out = steps.resolve(
                self._spec(),
                self._run(context),
                lake_root=self._lake(),
                as_of=as_of,
                batch_uri=batch_uri or None,
                latest_only=self.latest_only,
            )
        log.info(
            "Summary: %s uses %d batch(es), %d rows (%s), digest %s. Manifest: %s",
            self.model,
            out["batches"],
            out["rows"],
            out["source"],
            out["digest"][:12],
            out["manifest_uri"],
        )
        return out


class GXValidateOperator(_ModelOperator):
    """Validate a run's batches with Great Expectations against the model's contract.

    On failure the failing batches and the validation result are copied to the
    quarantine area and the task fails (without retries) listing each failed
    expectation with what was observed; nothing downstream runs.
    """

    template_fields: Sequence[str] = ("model", "manifest_uri", "contracts_dir", "lake_root")
    operator_extra_links = (EvidenceLink(),)
    ui_color = "#fff4d6"

    def __init__(self, *, manifest_uri: str, contracts_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.manifest_uri = manifest_uri
        self.contracts_dir = contracts_dir

    def execute(self, context: Context) -> dict[str, Any]:
        from mlcycle import lake as lk
        from mlcycle import steps

        spec, run, lake_root = self._spec(), self._run(context), self._lake()
        result_uri = lk.uri_of(lk.Lake(lake_root, spec.name).run_dir(run.key) / "validation.json")
        EvidenceLink.push(context, evidence_url(lake_root, result_uri))
        with domain_errors():
            out = steps.validate(
                spec,
                run,
                manifest_uri=str(self.manifest_uri),
                lake_root=lake_root,
                contracts_dir=self.contracts_dir,
            )
        log.info(
            "Summary: %d batch(es), %d rows passed all %d expectations of contract %r. Result: %s",
            out["batches"],
            out["rows"],
            out["expectations"],
            out["contract"],
            out["result_uri"],
        )
        return out


class TrainModelOperator(_ModelOperator):
    """Train the spec's pipeline, log it to MLflow, register a version, alias it challenger.

    Skips (no new version) when the champion was trained on identical data and spec,
    unless ``force``; reuses the version an earlier try of the same run registered.
    """

    template_fields: Sequence[str] = ("model", "manifest_uri", "overrides", "force", "lake_root")
    operator_extra_links = (MLflowRunLink(), MLflowModelVersionLink())
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        manifest_uri: str,
        overrides: dict[str, Any] | None = None,
        force: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.manifest_uri = manifest_uri
        self.overrides = overrides
        self.force = force

    def execute(self, context: Context) -> dict[str, Any]:
        from mlcycle import steps

        hook = self._hook()
        force = self.force if isinstance(self.force, bool) else str(self.force).lower() == "true"
        with domain_errors():
            out = steps.train(
                self._spec(),
                self._run(context),
                manifest_uri=str(self.manifest_uri),
                lake_root=self._lake(),
                tracking_uri=hook.tracking_uri,
                overrides=self.overrides or None,
                force=force,
            )
        if out["skipped"]:
            context["ti"].xcom_push(key="skip_reason", value=out["reason"])
            raise AirflowSkipException(out["reason"])
        ui = hook.ui_url
        MLflowRunLink.push(context, f"{ui}/#/experiments/{out['experiment_id']}/runs/{out['mlflow_run_id']}")
        MLflowModelVersionLink.push(context, f"{ui}/#/models/{self.model}/versions/{out['version']}")
        log.info(
            "Summary: %s v%s %s (alias challenger). Holdout metrics: %s. MLflow run: %s",
            self.model,
            out["version"],
            "registered" if out["created"] else "already registered by this run",
            out.get("holdout_metrics", "see MLflow"),
            out["mlflow_run_id"],
        )
        return out


class EvaluateModelOperator(_ModelOperator):
    """Score the candidate and the current champion on the same holdout rows."""

    template_fields: Sequence[str] = ("model", "version", "holdout_uri", "lake_root")

    def __init__(self, *, version: str, holdout_uri: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version = version
        self.holdout_uri = holdout_uri

    def execute(self, context: Context) -> dict[str, Any]:
        from mlcycle import steps

        with domain_errors():
            out = steps.evaluate(
                self._spec(),
                self._run(context),
                version=str(self.version),
                holdout_uri=str(self.holdout_uri),
                lake_root=self._lake(),
                tracking_uri=self._hook().tracking_uri,
            )
        champ = out["champion"]
        log.info(
            "Summary: candidate v%s evaluated on %d holdout rows%s.",
            out["candidate"]["version"],
            out["holdout_rows"],
            f" beside champion v{champ['version']}" if champ else " (no champion yet: bootstrap)",
        )
        return out


class GateOperator(_ModelOperator):
    """Apply the spec's gate policy to an evaluation; a failed gate fails the task, loudly."""

    template_fields: Sequence[str] = ("model", "evaluation", "lake_root")
    operator_extra_links = (EvidenceLink(), MLflowModelVersionLink())
    ui_color = "#fde2e1"

    def __init__(self, *, evaluation: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.evaluation = evaluation

    def execute(self, context: Context) -> dict[str, Any]:
        from mlcycle import lake as lk
        from mlcycle import steps

        spec, run, lake_root, hook = self._spec(), self._run(context), self._lake(), self._hook()
        version = self.evaluation["candidate"]["version"]
        report = lk.uri_of(lk.Lake(lake_root, spec.name).run_dir(run.key) / "verdict.html")
        EvidenceLink.push(context, evidence_url(lake_root, report))
        MLflowModelVersionLink.push(context, f"{hook.ui_url}/#/models/{self.model}/versions/{version}")
        with domain_errors():
            out = steps.gate(
                spec, run, evaluation=self.evaluation, lake_root=lake_root, tracking_uri=hook.tracking_uri
            )
        log.info("Summary: %s. Verdict: %s", out["summary"], out["report_uri"])
        return out


class PromoteModelOperator(_ModelOperator):
    """Move alias ``champion`` to a version that passed the gate and record it in the ledger."""

    template_fields: Sequence[str] = ("model", "verdict", "ledger_uri")
    operator_extra_links = (MLflowModelVersionLink(),)
    ui_color = "#d8f5d0"

    def __init__(self, *, verdict: dict[str, Any], ledger_uri: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.verdict = verdict
        self.ledger_uri = ledger_uri

    def execute(self, context: Context) -> dict[str, Any]:
        from mlcycle import steps

        hook = self._hook()
        MLflowModelVersionLink.push(
            context, f"{hook.ui_url}/#/models/{self.model}/versions/{self.verdict['version']}"
        )
        with domain_errors():
            out = steps.promote(
                self._spec(),
                self._run(context),
                verdict=self.verdict,
                tracking_uri=hook.tracking_uri,
                ledger_uri=self.ledger_uri,
            )
        log.info(
            "Summary: %s@champion %s v%s (was v%s); ledger %s.",
            self.model,
            "moved to" if out["promoted"] else "already at",
            out["version"],
            out["previous_version"] or "-",
            "appended" if out["ledger_recorded"] else "already had this move",
        )
        return out


class ChooseModelOperator(_ModelOperator):
    """Pick the version to score with (``version`` wins over ``alias``) and the challenger
    to run in shadow when the champion is served."""

    template_fields: Sequence[str] = ("model", "alias", "version")
    operator_extra_links = (MLflowModelVersionLink(),)

    def __init__(
        self, *, alias: str | None = "champion", version: str | int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.alias = alias
        self.version = version

    def execute(self, context: Context) -> dict[str, Any]:
        from mlcycle import scoring_steps

        hook = self._hook()
        with domain_errors():
            out = scoring_steps.choose_model(
                self._spec(),
                alias=self.alias or None,
                version=str(self.version) if self.version not in (None, "") else None,
                tracking_uri=hook.tracking_uri,
            )
        MLflowModelVersionLink.push(context, f"{hook.ui_url}/#/models/{self.model}/versions/{out['version']}")
        log.info(
            "Summary: scoring %s with v%s (%s)%s.",
            self.model,
            out["version"],
            out["alias"] or "pinned version",
            f", challenger v{out['shadow_version']} in shadow" if out["shadow_version"] else ", no shadow",
        )
        return out


class PlanPartitionsOperator(_ModelOperator):
    """Cut a batch into row ranges; each becomes one mapped scoring task."""

    template_fields: Sequence[str] = ("model", "batch_uri", "rows_per_partition")

    def __init__(self, *, batch_uri: str, rows_per_partition: int | str = 250_000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch_uri = batch_uri
        self.rows_per_partition = rows_per_partition

    def execute(self, context: Context) -> list[dict[str, int]]:
        from mlcycle import scoring_steps

        parts = scoring_steps.plan(str(self.batch_uri), int(self.rows_per_partition))
        log.info(
            "Summary: %s cut into %d partition(s) of at most %s rows.",
            self.batch_uri,
            len(parts),
            self.rows_per_partition,
        )
        return parts


class ScorePartitionOperator(_ModelOperator):
    """Score one partition of a batch by chunks (and the shadow model on the same rows)."""

    template_fields: Sequence[str] = (
        "model",
        "batch_uri",
        "partition",
        "model_choice",
        "chunk_rows",
        "lake_root",
    )
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        batch_uri: str,
        partition: dict[str, int],
        model_choice: dict[str, Any],
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
        self.partition = partition
        self.model_choice = model_choice
        self.chunk_rows = chunk_rows

    def execute(self, context: Context) -> dict[str, Any]:
        from mlcycle import scoring_steps

        out = scoring_steps.score_partition(
            self._spec(),
            self._run(context),
            batch_uri=str(self.batch_uri),
            partition=self.partition,
            model=self.model_choice,
            lake_root=self._lake(),
            chunk_rows=int(self.chunk_rows),
            tracking_uri=self._hook().tracking_uri,
        )
        log.info(
            "Summary: partition %d: %d rows in %.2fs -> %s",
            out["index"],
            out["rows"],
            out["seconds"],
            out["part_uri"],
        )
        return out


class FinalizeScoringOperator(_ModelOperator):
    """Merge the partitions into the batch's prediction file, summarise the shadow
    comparison, log it to MLflow and write the scoring report."""

    template_fields: Sequence[str] = ("model", "batch_uri", "parts", "model_choice", "lake_root")
    operator_extra_links = (EvidenceLink(), MLflowRunLink())

    def __init__(
        self, *, batch_uri: str, parts: list[dict[str, Any]], model_choice: dict[str, Any], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.batch_uri = batch_uri
        self.parts = parts
        self.model_choice = model_choice

    def execute(self, context: Context) -> dict[str, Any]:
        from mlcycle import lake as lk
        from mlcycle import scoring_steps

        spec, run, lake_root, hook = self._spec(), self._run(context), self._lake(), self._hook()
        report = lk.uri_of(lk.Lake(lake_root, spec.name).run_dir(run.key) / "scoring" / "report.html")
        EvidenceLink.push(context, evidence_url(lake_root, report))
        out = scoring_steps.finalize(
            spec,
            run,
            batch_uri=str(self.batch_uri),
            parts=list(self.parts),
            model=self.model_choice,
            lake_root=lake_root,
            tracking_uri=hook.tracking_uri,
        )
        mlc = hook.get_conn()
        experiment_id = mlc.get_run(out["mlflow_run_id"]).info.experiment_id
        MLflowRunLink.push(
            context, f"{hook.ui_url}/#/experiments/{experiment_id}/runs/{out['mlflow_run_id']}"
        )
        shadow = out.get("shadow") or {}
        log.info(
            "Summary: %d rows scored by %s v%s (%s engine, %s rows/s) -> %s.%s Report: %s",
            out["rows"],
            self.model,
            out["version"],
            out["engine"],
            out["rows_per_second"],
            out["output_uri"],
            f" Shadow v{out['shadow_version']}: agreement {shadow.get('agreement', 'n/a')}, "
            f"mean |diff| {shadow.get('mean_abs_diff', 'n/a')}."
            if out.get("shadow_version")
            else "",
            out["report_uri"],
        )
        return {
            k: out[k]
            for k in ("output_uri", "rows", "version", "shadow_version", "engine", "report_uri", "shadow")
        }


class DriftCheckOperator(_ModelOperator):
    """Compare recent batches with the champion's reference profile, decide (with the spec's
    guardrails) whether to ask for a retrain, and record the decision and its reasons."""

    template_fields: Sequence[str] = ("model", "lake_root", "ledger_uri", "as_of")
    operator_extra_links = (EvidenceLink(), MLflowRunLink())
    ui_color = "#fff4d6"

    def __init__(self, *, ledger_uri: str | None = None, as_of: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ledger_uri = ledger_uri
        self.as_of = as_of

    def execute(self, context: Context) -> dict[str, Any]:
        from mlcycle import lake as lk
        from mlcycle import monitoring

        spec, run, lake_root, hook = self._spec(), self._run(context), self._lake(), self._hook()
        report = lk.uri_of(lk.Lake(lake_root, spec.name).run_dir(run.key) / "drift.html")
        EvidenceLink.push(context, evidence_url(lake_root, report))
        import datetime as dt

        now = dt.datetime.fromisoformat(self.as_of) if self.as_of else context["dag_run"].run_after
        if now.tzinfo is None:
            now = now.replace(tzinfo=dt.UTC)
        with domain_errors():
            out = monitoring.check(
                spec, run, lake_root=lake_root, now=now,
                tracking_uri=hook.tracking_uri, ledger_uri=self.ledger_uri,
            )  # fmt: skip
        experiment_id = hook.get_conn().get_run(out["mlflow_run_id"]).info.experiment_id
        MLflowRunLink.push(
            context, f"{hook.ui_url}/#/experiments/{experiment_id}/runs/{out['mlflow_run_id']}"
        )
        decision = out["decision"]
        log.info(
            "Summary: %s. Report: %s",
            decision["reason"],
            out["report_uri"],
        )
        return {
            "retrain": decision["retrain"],
            "reason": decision["reason"],
            "blocked_by": [c["name"] for c in decision["checks"] if not c["passed"]],
            "champion_version": out["champion_version"],
            "rows": out["rows"],
            "report_uri": out["report_uri"],
        }


class RequestRetrainOperator(BaseOperator):
    """Emit the retrain asset event (with the reason in its extra) when the check asked for
    it; otherwise skip, so no event is emitted. Give the asset as ``outlets``."""

    template_fields: Sequence[str] = ("decision",)
    ui_color = "#fde2e1"

    def __init__(self, *, decision: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decision = decision

    def execute(self, context: Context) -> dict[str, Any]:
        if not self.decision.get("retrain"):
            raise AirflowSkipException(str(self.decision.get("reason")))
        extra = {
            "reason": self.decision["reason"],
            "monitor_dag_id": context["dag_run"].dag_id,
            "monitor_run_id": context["dag_run"].run_id,
            "report": self.decision.get("report_uri"),
        }
        for asset in self.outlets:
            context["outlet_events"][asset].extra = extra
        log.info(
            "Summary: retrain requested via %s: %s", [a.uri for a in self.outlets], self.decision["reason"]
        )
        return extra
