"""The identity of one run of a step: which Airflow DAG and run, why, and who asked."""

from __future__ import annotations

import re
from dataclasses import dataclass

TRIGGER_KINDS = ("schedule", "manual", "asset", "backfill", "operator", "test")


def run_key(run_id: str) -> str:
    """A folder-safe form of an Airflow run id (``manual__2026-01-01T00:00:00+00:00``)."""
    key = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_").lstrip(".")
    return key or "run"


@dataclass(frozen=True)
class RunInfo:
    """Who is running a step: the Airflow DAG and run, and why."""

    dag_id: str
    run_id: str
    reason: str = ""
    trigger: str = "manual"  # one of TRIGGER_KINDS
    actor: str = "airflow"

    @property
    def key(self) -> str:
        """The run's folder name in the lake."""
        return run_key(self.run_id)
