"""Fixtures of the operator tests: no MLflow connection leaks in from the developer's shell,
and ``op.execute(context)`` may be called directly (outside the task runner)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_mlflow_connection(monkeypatch):
    """Without ``mlflow_default`` the hook falls back to ``MLFLOW_TRACKING_URI``, which the
    ``env`` fixture points at the test's own store; a connection set in the shell would not."""
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT", raising=False)


@pytest.fixture(autouse=True)
def execute_outside_the_task_runner(monkeypatch):
    """``BaseOperator.execute`` warns when called outside the task runner; these tests do
    that on purpose (Airflow's own tests set the same switch)."""
    from airflow.sdk.bases.operator import ExecutorSafeguard

    monkeypatch.setattr(ExecutorSafeguard, "test_mode", True)
