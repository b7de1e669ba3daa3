"""Hook for the MLflow tracking server and registry.

The connection (default ``mlflow_default``) says where MLflow is:

- ``host`` (+ ``port``, ``schema`` http/https) for an MLflow server, e.g.
  ``AIRFLOW_CONN_MLFLOW_DEFAULT='{"conn_type": "mlflow", "host": "mlflow", "port": 5000}'``;
- or ``extra.tracking_uri`` for anything else (``sqlite:///…``, ``databricks``);
- ``extra.ui_url``: where people open the MLflow UI, for extra links;
- ``login`` / ``password``: the account on an MLflow server with authentication
  (``mlflow server --app-name basic-auth``, as in docker-compose.yaml). MLflow's client reads
  them from ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, so the hook sets those
  in the task's process: the credentials live in the connection (or a secrets backend), never
  in a DAG or a spec.

Without the connection the hook falls back to ``MLFLOW_TRACKING_URI`` (the embedded
default), so a one-machine setup needs no Airflow connection at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from mlflow import MlflowClient


class MLflowHook(BaseHook):
    """An ``MlflowClient`` for an Airflow connection (module docstring), else ``MLFLOW_TRACKING_URI``."""

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "mlflow"
    hook_name = "MLflow"

    def __init__(self, mlflow_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.mlflow_conn_id = mlflow_conn_id
        self._resolved: tuple[str, str | None] | None = None
        self._client: MlflowClient | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": [],
            "relabeling": {
                "host": "MLflow server host",
                "schema": "Scheme (http or https)",
                "login": "MLflow user (basic-auth)",
                "password": "MLflow password",
            },
            "placeholders": {
                "extra": '{"tracking_uri": "sqlite:////path/mlflow.db", "ui_url": "http://localhost:5000"}'
            },
        }

    def _resolve(self) -> tuple[str, str | None]:
        if self._resolved is not None:
            return self._resolved
        from airflow.exceptions import AirflowNotFoundException

        from mlcycle.core import settings

        try:
            conn = self.get_connection(self.mlflow_conn_id)
        except AirflowNotFoundException:
            if self.mlflow_conn_id != self.default_conn_name:
                raise
            self._resolved = (settings.tracking_uri(), None)
            return self._resolved
        extra = conn.extra_dejson
        if extra.get("tracking_uri"):
            uri = extra["tracking_uri"]
        elif conn.host:
            scheme = conn.schema or "http"
            uri = f"{scheme}://{conn.host}{f':{conn.port}' if conn.port else ''}"
        else:
            raise ValueError(
                f"connection {self.mlflow_conn_id!r} gives neither a host nor extra.tracking_uri; "
                "set one of them (see mlcycle_airflow.hooks)"
            )
        if conn.login:
            import os

            os.environ["MLFLOW_TRACKING_USERNAME"] = conn.login
            os.environ["MLFLOW_TRACKING_PASSWORD"] = conn.password or ""
        self._resolved = (uri, extra.get("ui_url"))
        return self._resolved

    @property
    def tracking_uri(self) -> str:
        return self._resolve()[0]

    @property
    def ui_url(self) -> str:
        """Where people open the MLflow UI (for extra links)."""
        from mlcycle.store import registry

        return registry.ui_base(self.tracking_uri, self._resolve()[1])

    def get_conn(self) -> MlflowClient:
        """A ready ``MlflowClient`` for the connection, made once per hook. It sets no
        process-wide tracking URI: callers pass it down."""
        if self._client is None:
            from mlcycle.store import registry

            self._client = registry.client(self.tracking_uri)
        return self._client

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.get_conn().search_experiments(max_results=1)
        except Exception as exc:
            return False, f"MLflow at {self.tracking_uri} did not answer: {exc}"
        return True, f"MLflow at {self.tracking_uri} answered"
