"""The promotion ledger: an append-only record of every alias move.

Each row says which alias of which model moved from which version to which, who or
what moved it, why, where the gate evidence is, and when. It lives in a SQL database
(``MLCYCLE_LEDGER_URI``: SQLite by default, PostgreSQL in the distributed setup), so it
survives restarts and can be queried; the Airflow plugin shows it in the web UI.

Appends are idempotent per (model, alias, version, action, run id): a retried
promotion task records its move once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from mlcycle.core import settings

if TYPE_CHECKING:
    from sqlalchemy import Engine, Table


class _Row:
    """JSON form of a ledger row (datetimes as ISO strings)."""

    created_at: dt.datetime | None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)  # type: ignore[call-overload]
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        return data


@dataclass(frozen=True)
class Entry(_Row):
    """One alias move, as appended and as read back (``id`` and ``created_at`` filled in on append)."""

    model: str
    alias: str
    previous_version: str | None
    new_version: str
    action: str  # promote | bootstrap | rollback
    actor: str
    reason: str
    evidence_uri: str | None
    verdict: str | None
    dag_id: str | None
    run_id: str | None
    created_at: dt.datetime | None = None
    id: int | None = None


@cache
def _table() -> Table:
    from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, UniqueConstraint

    return Table(
        "mlcycle_promotion_ledger",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("model", String(128), nullable=False, index=True),
        Column("alias", String(64), nullable=False),
        Column("previous_version", String(32)),
        Column("new_version", String(32), nullable=False),
        Column("action", String(32), nullable=False),
        Column("actor", String(256), nullable=False),
        Column("reason", Text, nullable=False),
        Column("evidence_uri", Text),
        Column("verdict", Text),
        Column("dag_id", String(250)),
        Column("run_id", String(250)),
        Column("created_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("model", "alias", "new_version", "action", "run_id", name="uq_ledger_move"),
    )


@cache
def _engine(uri: str) -> Engine:
    from sqlalchemy import create_engine

    if uri.startswith("sqlite:///"):
        from pathlib import Path

        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(uri, pool_pre_ping=True)
    _decisions_table()  # both tables share the metadata: create them together
    _table().metadata.create_all(engine, checkfirst=True)
    return engine


def append(entry: Entry, uri: str | None = None) -> bool:
    """Record a move; returns False when the same move of the same run was already recorded."""
    from sqlalchemy import and_, insert, select

    table = _table()
    values = {k: v for k, v in asdict(entry).items() if k not in ("id", "created_at")}
    values["created_at"] = entry.created_at or dt.datetime.now(dt.UTC)
    with _engine(uri or settings.ledger_uri()).begin() as conn:
        same = and_(
            table.c.model == entry.model,
            table.c.alias == entry.alias,
            table.c.new_version == entry.new_version,
            table.c.action == entry.action,
            table.c.run_id == entry.run_id if entry.run_id is not None else table.c.run_id.is_(None),
        )
        if conn.execute(select(table.c.id).where(same)).first():
            return False
        conn.execute(insert(table).values(**values))
    return True


def history(model: str | None = None, uri: str | None = None, limit: int = 200) -> list[Entry]:
    """Newest first."""
    from sqlalchemy import select

    table = _table()
    query = select(table).order_by(table.c.id.desc()).limit(limit)
    if model:
        query = query.where(table.c.model == model)
    with _engine(uri or settings.ledger_uri()).connect() as conn:
        return [Entry(**row._mapping) for row in conn.execute(query)]


# --- retrain decisions of the drift monitor -------------------------------------------------------


@dataclass(frozen=True)
class RetrainDecision(_Row):
    """A monitoring run's retrain decision (``checks`` as JSON), recorded once per model, DAG and run."""

    model: str
    requested: bool
    reason: str
    checks: str  # JSON list of the guardrail checks
    dag_id: str | None
    run_id: str | None
    created_at: dt.datetime | None = None
    id: int | None = None


@cache
def _decisions_table() -> Table:
    from sqlalchemy import Boolean, Column, DateTime, Integer, String, Table, Text, UniqueConstraint

    return Table(
        "mlcycle_retrain_decisions",
        _table().metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("model", String(128), nullable=False, index=True),
        Column("requested", Boolean, nullable=False),
        Column("reason", Text, nullable=False),
        Column("checks", Text, nullable=False),
        Column("dag_id", String(250)),
        Column("run_id", String(250)),
        Column("created_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("model", "dag_id", "run_id", name="uq_retrain_decision_run"),
    )


def record_decision(decision: RetrainDecision, uri: str | None = None) -> RetrainDecision:
    """Record a monitor's decision once per monitoring run; a rerun gets the first record back
    (so a retried check cannot request a second retrain for the same evidence)."""
    from sqlalchemy import insert, select

    table = _decisions_table()
    with _engine(uri or settings.ledger_uri()).begin() as conn:
        if decision.run_id is not None:
            row = conn.execute(
                select(table).where(
                    table.c.model == decision.model,
                    table.c.dag_id == decision.dag_id,
                    table.c.run_id == decision.run_id,
                )
            ).first()
            if row is not None:
                return RetrainDecision(**row._mapping)
        values = {k: v for k, v in asdict(decision).items() if k not in ("id", "created_at")}
        values["created_at"] = decision.created_at or dt.datetime.now(dt.UTC)
        conn.execute(insert(table).values(**values))
    return decision


def decisions(
    model: str, *, since: dt.datetime | None = None, requested_only: bool = False, uri: str | None = None
) -> list[RetrainDecision]:
    """Newest first."""
    from sqlalchemy import select

    table = _decisions_table()
    query = select(table).where(table.c.model == model).order_by(table.c.id.desc())
    if since is not None:
        # SQLite keeps naive datetimes: compare in UTC without tzinfo there.
        query = query.where(table.c.created_at >= since.astimezone(dt.UTC).replace(tzinfo=None))
    if requested_only:
        query = query.where(table.c.requested.is_(True))
    with _engine(uri or settings.ledger_uri()).connect() as conn:
        return [RetrainDecision(**row._mapping) for row in conn.execute(query)]
