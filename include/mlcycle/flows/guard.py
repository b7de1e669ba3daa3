"""Alias moves made outside the pipeline: detect them, record them, and (if the spec says so)
revert them.

The pipeline moves ``@champion`` only under the alias's ledger lock, and records every move in
the ledger under that lock; so ``@champion`` differing from the ledger's last champion move
means someone moved it by hand (MLflow UI, ``MlflowClient``). ``guard_champion`` runs at the
start of every scoring and monitoring run: it records such a move once as ``external`` and,
when ``gate.external_moves`` is ``revert``, moves the alias back to the last version the
pipeline put there (compare-and-set), recorded as ``revert``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mlcycle.core.errors import PromotionConflictError
from mlcycle.store import ledger, registry

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlcycle.core.results import AliasCheck
    from mlcycle.core.run import RunInfo
    from mlcycle.core.spec import ModelSpec

log = logging.getLogger(__name__)

EXTERNAL, REVERT = "external", "revert"


def champion_moves(entries: list[ledger.Entry]) -> list[ledger.Entry]:
    """The ledger's moves of ``@champion`` (``entries`` newest first), without ``superseded``
    rows (a candidate that lost the race moved nothing)."""
    return [e for e in entries if e.alias == registry.CHAMPION and e.action != "superseded"]


def recorded_as_external(entries: list[ledger.Entry], champion: str | None) -> bool:
    """Whether the newest move of ``@champion`` is an ``external`` one to ``champion``."""
    moves = champion_moves(entries)
    return bool(moves) and moves[0].action == EXTERNAL and moves[0].new_version == champion


def alias_check(champion: str | None, entries: list[ledger.Entry]) -> AliasCheck:
    """Whether ``@champion`` points where the pipeline last put it (``entries`` newest first);
    ``ledger`` is the last version the pipeline put there, ``action`` None (nothing done). A move
    already recorded as ``external`` stays not ok until the pipeline moves the alias."""
    moves = champion_moves(entries)
    pipeline = [e for e in moves if e.action != EXTERNAL]
    recorded = pipeline[0].new_version if pipeline else None
    outside = moves[0] if moves and moves[0].action == EXTERNAL else None
    ok = champion == recorded and outside is None
    if ok:
        detail = f"@champion is v{champion}, as the ledger recorded" if champion else "no champion yet"
    elif recorded is None:
        detail = f"@champion is v{champion} but the pipeline never moved it: it was set outside the pipeline"
    else:
        detail = (
            f"@champion is {'v' + champion if champion else 'unset'} but the pipeline last moved it to "
            f"v{recorded}: it was moved outside the pipeline"
        )
    return {"ok": ok, "registry": champion, "ledger": recorded, "detail": detail, "action": None}


def guard_champion(
    spec: ModelSpec, run: RunInfo, mlc: MlflowClient, *, ledger_uri: str | None = None
) -> AliasCheck:
    """Check ``@champion`` against the ledger (module docstring); the ``alias_check`` plus
    ``action``: None (as recorded), ``"alert"`` (recorded as external, left) or ``"revert"``."""
    holder = f"{run.dag_id}/{run.run_id}"
    with ledger.alias_lock(spec.name, registry.CHAMPION, holder=holder, uri=ledger_uri) as lock:
        entries = ledger.history(spec.name, ledger_uri)
        mv = registry.version_by_alias(mlc, spec.name, registry.CHAMPION)
        champion = str(mv.version) if mv else None
        check = alias_check(champion, entries)
        if check["ok"] or champion is None:
            return check
        if not recorded_as_external(entries, champion):
            entry = _entry(
                spec, run, EXTERNAL, previous=check["ledger"], new=champion, reason=check["detail"]
            )
            ledger.append(entry, lock=lock)
        log.warning("%s: %s (detected by %s)", spec.name, check["detail"], holder)
        target = check["ledger"]
        if spec.gate.external_moves != REVERT or target is None:
            return {**check, "action": "alert"}
        try:
            registry.set_alias(mlc, spec.name, registry.CHAMPION, target, expected=champion)
        except PromotionConflictError as exc:  # moved again meanwhile: the next run looks again
            log.warning("%s: not reverted, @champion moved again: %s", spec.name, exc)
            return {**check, "action": "alert"}
        reason = f"reverted a move outside the pipeline (v{target} -> v{champion}); the spec says revert"
        ledger.append(_entry(spec, run, REVERT, previous=champion, new=target, reason=reason), lock=lock)
        log.warning("%s@champion reverted from v%s to v%s", spec.name, champion, target)
        return {**check, "action": REVERT, "detail": f"{check['detail']}; reverted to v{target}"}


def _entry(
    spec: ModelSpec, run: RunInfo, action: str, *, previous: str | None, new: str, reason: str
) -> ledger.Entry:
    return ledger.Entry(
        model=spec.name, alias=registry.CHAMPION, previous_version=previous, new_version=new,
        action=action, actor=f"{'outside the pipeline' if action == EXTERNAL else run.actor}:{run.dag_id}",
        reason=reason, evidence_uri=None, verdict=None, dag_id=run.dag_id, run_id=run.run_id,
    )  # fmt: skip
