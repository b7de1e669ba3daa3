"""Rollback: move ``champion`` back to an earlier version, after checking the target.

The target is a named version or, by default, the previous champion (the version the current
champion replaced, from the ledger; for a champion set outside the pipeline and recorded as
``external``, the last one the pipeline put there). It must have passed its gate unless ``force`` (which needs a
reason), must still load (skops, never pickle), and its ONNX twin, when it has one, must still
match it on the rows it was judged on. The move is a compare-and-set under the alias's ledger lock,
recorded in the ledger as ``rollback`` with who and why, under the lock; a retry of the same run
changes nothing, and a retry after a try stopped between the move and its record records it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mlcycle.core.errors import RollbackError
from mlcycle.flows.guard import alias_check, recorded_as_external
from mlcycle.store import ledger, registry

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from mlcycle.core.results import RollbackResult
    from mlcycle.core.run import RunInfo
    from mlcycle.core.spec import ModelSpec

log = logging.getLogger(__name__)

CHAMPION_MOVES = ("promote", "bootstrap", "rollback")


def previous_champion(model: str, current: str, ledger_uri: str | None = None) -> str:
    """The version ``current`` replaced as champion, from the newest ledger move to it."""
    for entry in ledger.history(model, uri=ledger_uri, limit=1000):
        if (
            entry.alias == registry.CHAMPION
            and entry.new_version == current
            and entry.action in CHAMPION_MOVES
        ):
            if entry.previous_version is None:
                raise RollbackError(
                    f"{model} v{current} is the first champion: there is no previous one; "
                    "name the version to roll back to"
                )
            return entry.previous_version
    raise RollbackError(
        f"the ledger has no move of {model}@champion to v{current} (was it set outside the pipeline?); "
        "name the version to roll back to"
    )


def _target(mlc: MlflowClient, model: str, version: str) -> ModelVersion:
    try:
        return mlc.get_model_version(model, version)
    except Exception as exc:
        known = sorted(int(v.version) for v in mlc.search_model_versions(f"name = '{model}'"))
        raise RollbackError(
            f"{model} v{version} does not exist (versions: {', '.join(map(str, known)) or 'none'}); "
            "pick one of them"
        ) from exc


def _checks(spec: ModelSpec, mlc: MlflowClient, mv: ModelVersion, *, force: bool) -> list[str]:
    """What a rollback target must pass: its gate (unless forced), loading, its ONNX parity."""
    import pandas as pd

    from mlcycle.data import lake as lk
    from mlcycle.ml import onnx_twin

    version, done = str(mv.version), []
    verdict = mv.tags.get(registry.TAG_VERDICT)
    if verdict == "pass":
        done.append(f"gate: passed ({mv.tags.get(registry.TAG_VERDICT_SUMMARY, 'no summary')})")
    elif force:
        done.append(f"gate: {verdict or 'never judged'}, rolled back anyway (force)")
    else:
        raise RollbackError(
            f"{spec.name} v{version} never passed a gate (gate.verdict={verdict or 'unset'}); roll back to a "
            "version that passed, or set force with a reason"
        )
    pipeline = registry.load_sklearn(mlc, spec.name, version)  # RegistryError if it no longer loads
    done.append("loads: the skops model loads")
    status = mv.tags.get(registry.TAG_ONNX)
    if status != "passed":
        done.append(f"onnx: no twin to check ({status or 'none'}); scoring uses scikit-learn")
        return done
    holdout_uri = mv.tags.get(registry.TAG_HOLDOUT)
    path = lk.as_path(holdout_uri) if holdout_uri else None
    holdout = lk.read_parquet([path]) if path is not None and path.exists() else pd.DataFrame()
    if holdout.empty:
        if not force:
            raise RollbackError(
                f"{spec.name} v{version}: its ONNX twin cannot be re-checked, its holdout "
                f"{holdout_uri or '(untagged)'} is gone; set force with a reason to roll back without the check"
            )
        done.append("onnx: its holdout is gone, parity not re-checked (force)")
        return done
    model = onnx_twin.OnnxModel(registry.load_onnx(mlc, spec.name, version), spec)
    report = onnx_twin.parity(pipeline, model, holdout[spec.features.all], spec)
    if not report["passed"]:
        raise RollbackError(
            f"{spec.name} v{version}: its ONNX twin no longer matches it (max difference "
            f"{report['max_scaled_diff']:.3g} > {report['tolerance']:g} on {report['rows']} holdout rows)"
        )
    done.append(
        f"onnx: parity passed on {report['rows']} holdout rows (max difference {report['max_scaled_diff']:.2g})"
    )
    return done


def rollback(
    spec: ModelSpec,
    run: RunInfo,
    mlc: MlflowClient,
    *,
    version: str | None = None,
    force: bool = False,
    ledger_uri: str | None = None,
) -> RollbackResult:
    """Move ``champion`` to ``version`` (default: the previous champion), checked (module docstring)."""
    if not run.reason.strip():
        raise RollbackError(f"a rollback of {spec.name} needs a reason: say why in the run's `reason`")
    done = [
        e
        for e in ledger.history(spec.name, uri=ledger_uri)
        if e.run_id == run.run_id and e.action == "rollback"
    ]
    if done:  # a retry of this run, after the move was made and recorded
        e = done[0]
        return {"version": e.new_version, "previous_version": e.previous_version, "moved": False,
                "ledger_recorded": False, "forced": force, "checks": ["already rolled back by this run"]}  # fmt: skip
    mv_current = registry.version_by_alias(mlc, spec.name, registry.CHAMPION)
    if mv_current is None:
        raise RollbackError(f"{spec.name} has no champion to roll back from")
    current = str(mv_current.version)
    # The champion as the ledger last recorded it: the same as @champion, unless a try of a
    # rollback stopped between moving the alias and recording it (or someone moved it by hand).
    entries = ledger.history(spec.name, uri=ledger_uri)
    champion = alias_check(current, entries)["ledger"] or current
    if version:
        target = str(version)
    elif recorded_as_external(entries, current):
        target = champion  # "previous" of a champion set outside the pipeline: undo that move
    else:
        target = previous_champion(spec.name, champion, ledger_uri)
    unrecorded = target == current != champion  # already moved there, never recorded: record it now
    if target == current and not unrecorded:
        raise RollbackError(f"{spec.name} v{target} is already the champion; nothing to roll back")
    mv = _target(mlc, spec.name, target)
    checks = _checks(spec, mlc, mv, force=force)
    if unrecorded:
        checks.append(f"@champion was already at v{target} but not recorded (from v{champion}): recorded now")
    holder = f"{run.dag_id}/{run.run_id}"
    with ledger.alias_lock(spec.name, registry.CHAMPION, holder=holder, uri=ledger_uri) as lock:
        previous: str | None = champion
        if not unrecorded:
            previous = registry.set_alias(mlc, spec.name, registry.CHAMPION, target, expected=current)
        recorded = ledger.append(
            ledger.Entry(
                model=spec.name,
                alias=registry.CHAMPION,
                previous_version=previous,
                new_version=target,
                action="rollback",
                actor=f"{run.actor}:{run.dag_id}",
                reason=run.reason + (" (forced)" if force else ""),
                evidence_uri=mv.tags.get(registry.TAG_EVIDENCE),
                verdict=mv.tags.get(registry.TAG_VERDICT_SUMMARY),
                dag_id=run.dag_id,
                run_id=run.run_id,
            ),
            lock=lock,
        )
    log.info("%s@champion rolled back from v%s to v%s: %s", spec.name, previous, target, "; ".join(checks))
    return {"version": target, "previous_version": previous, "moved": not unrecorded and previous != target,
            "ledger_recorded": recorded, "forced": force, "checks": checks}  # fmt: skip
