"""The Airflow metadata DB on SQLite (the embedded default of ``make up``) under concurrent use.

Measured (tests/services/test_concurrency.py): 200 REST requests from 16 threads against a
real ``airflow api-server`` on SQLite got 17 HTTP 500 "Database error", each after a 5 s
stall, and the burst took 86 s. Airflow already opens every SQLite connection in WAL mode
(``airflow.utils.orm_event_handlers``), so readers never block; the stalls are a deadlock.
The api-server writes its audit log (``action_logging``) with a synchronous session from an
*async* dependency, that is on the event-loop thread. When another request's endpoint,
running in the thread pool, already holds SQLite's write lock, its commit happens in its
session dependency's teardown, which only the (now blocked) event loop can schedule. Nothing
moves until the busy timeout expires (pysqlite's 5 s) and the audit-log write fails with
"database is locked". A longer busy timeout alone makes each freeze longer: with 30 s, 93 of
the 200 requests failed, most of them by a 60 s client timeout.

The fix has two parts, both inert on any other database (PostgreSQL in docker-compose):

- ``SerializeSQLiteWrites``: a root ASGI middleware (registered by the plugin) that lets one
  request that may write (any method but GET/HEAD/OPTIONS) run at a time per api-server
  process, waiting on an asyncio lock, which does not block the event loop. SQLite admits one
  writer at a time anyway, so no throughput is lost; reads run in parallel (WAL). After it,
  the same burst: 200 × HTTP 200 in about 6 s.
- ``CONNECT_ARGS``: a 30 s busy timeout, for waits on the other processes (scheduler,
  dag-processor, triggerer), whose transactions do not depend on this event loop and end by
  themselves. Set with ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS`` (and ``..._ASYNC``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

BUSY_TIMEOUT_S = 30.0


def metadata_db_is_sqlite() -> bool:
    """Whether Airflow's metadata DB (``[database] sql_alchemy_conn``) is SQLite."""
    # Only the configuration: this module is imported while Airflow sets up its ORM.
    from airflow.configuration import conf

    return conf.get("database", "sql_alchemy_conn").startswith("sqlite")


# Read by Airflow through ``conf.getimport`` when it creates its engines (the sync one adds
# ``check_same_thread`` to the dict it gets: each engine gets its own dict).
CONNECT_ARGS: dict[str, Any] = {"timeout": BUSY_TIMEOUT_S} if metadata_db_is_sqlite() else {}
ASYNC_CONNECT_ARGS: dict[str, Any] = dict(CONNECT_ARGS)


class SerializeSQLiteWrites:
    """ASGI middleware: one request that may write at a time per process, on SQLite only."""

    READ_ONLY = frozenset({"GET", "HEAD", "OPTIONS"})

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.enabled = metadata_db_is_sqlite()
        self._lock = asyncio.Lock()  # binds to the server's loop on first use

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] != "http" or scope["method"] in self.READ_ONLY:
            await self.app(scope, receive, send)
            return
        async with self._lock:
            await self.app(scope, receive, send)


# For ``AirflowPlugin.fastapi_root_middlewares`` (with links.DropNullLinks, see mlcycle_plugin).
ROOT_MIDDLEWARES: list[dict[str, Any]] = [
    {"middleware": SerializeSQLiteWrites, "name": "mlcycle: one SQLite writer at a time"}
]
