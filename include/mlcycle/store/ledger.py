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
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import asdict, dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from mlcycle.core import settings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy import Connection, Engine, Table


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
    # promote | bootstrap | rollback | superseded (passed its gate, lost the race) | external (moved
    # outside the pipeline, found by flows.guard) | revert (flows.guard moved it back)
    action: str
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


SQLITE_BUSY_TIMEOUT_S = 30.0


@cache
def _engine(uri: str) -> Engine:
    from sqlalchemy import create_engine

    connect_args: dict[str, Any] = {}
    if uri.startswith("sqlite:///"):
        from pathlib import Path

        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # Task processes append while the api-server's ledger page reads: wait for the lock
        # instead of failing after pysqlite's 5 s. (WAL, which lets readers and the writer
        # overlap, is a property of the file: scripts/up.sh sets it once on the embedded one.)
        connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_S
    engine = create_engine(uri, pool_pre_ping=True, connect_args=connect_args)
    _decisions_table()  # both tables share the metadata: create them together
    _table().metadata.create_all(engine, checkfirst=True)
    return engine


def append(entry: Entry, uri: str | None = None, *, lock: Connection | None = None) -> bool:
    """Record a move; returns False when the same move of the same run was already recorded.
    Inside ``alias_lock``, pass what it yields as ``lock``: the record is then written in the
    lock's transaction (the move and its record are seen together, and SQLite, which has one
    writer, does not wait for itself)."""
    from sqlalchemy import and_, insert, select

    table = _table()
    values = {k: v for k, v in asdict(entry).items() if k not in ("id", "created_at")}
    values["created_at"] = entry.created_at or dt.datetime.now(dt.UTC)
    with nullcontext(lock) if lock is not None else _engine(uri or settings.ledger_uri()).begin() as conn:
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


# --- one alias move at a time ----------------------------------------------------------------------


@cache
def _locks_table() -> Table:
    from sqlalchemy import Column, DateTime, String, Table

    return Table(
        "mlcycle_alias_locks",
        _table().metadata,
        Column("model", String(128), primary_key=True),
        Column("alias", String(64), primary_key=True),
        Column("holder", String(512)),
        Column("locked_at", DateTime(timezone=True)),
    )


@cache
def _lock_engine(uri: str) -> Engine:
    """The ledger's engine, with the locks table made (``IF NOT EXISTS``: concurrent first
    users of a new ledger both succeed)."""
    from sqlalchemy.schema import CreateTable

    engine = _engine(uri)
    with engine.begin() as conn:
        conn.execute(CreateTable(_locks_table(), if_not_exists=True))
    return engine


@contextmanager
def alias_lock(model: str, alias: str, *, holder: str, uri: str | None = None) -> Iterator[Connection]:
    """Hold the lock of ``model@alias`` for the block, so that moves of that alias happen one at
    a time across the tasks, processes and machines that share the ledger: a compare-and-set of
    the alias inside the block (``registry.set_alias(..., expected=...)``) sees every earlier move,
    and no other move can come between its read and its write. MLflow has no compare-and-set of
    its own, so without this two promotions could both read the old champion and both move it.
    It yields the lock's connection: ``append(entry, lock=...)`` records the move under the lock, so
    nobody holding the lock sees the alias moved but not yet recorded (``flows.guard`` relies on it).

    The lock is the alias's row in the ledger database, written by the block's transaction: a
    row lock in PostgreSQL, the database's write lock in SQLite (keep the block short). The
    database releases it when the block ends, also on an error, and when the holder dies (its
    connection goes away). ``holder`` (who is moving it) is kept in the row for diagnosis."""
    from sqlalchemy import insert, select, update
    from sqlalchemy.exc import IntegrityError

    engine = _lock_engine(uri or settings.ledger_uri())
    table = _locks_table()
    row = (table.c.model == model) & (table.c.alias == alias)
    with engine.connect() as conn:
        exists = conn.execute(select(table.c.model).where(row)).first() is not None
    if not exists:
        # Another mover may make the row first: either way it exists afterwards.
        with suppress(IntegrityError), engine.begin() as conn:
            conn.execute(insert(table).values(model=model, alias=alias))
    with engine.begin() as conn:
        # Writing the row takes the lock; a concurrent mover waits here until this transaction ends.
        conn.execute(update(table).where(row).values(holder=holder[:512], locked_at=dt.datetime.now(dt.UTC)))
        yield conn
