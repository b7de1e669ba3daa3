"""Airflow plugin: registers the extra links, and a small web app in the Airflow UI.

This is the only file Airflow loads from ``plugins/`` (see ``.airflowignore``): the
``mlcycle_airflow`` package is imported from here as a package, not file by file.

The app (mounted at ``/mlcycle`` on the api-server, behind Airflow's login) shows
the model pages, the promotion ledger and serves run evidence (validation results, gate verdicts)
from the data lake, so the links on task instances open something a person can read.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from mlcycle_airflow.links import ALL_LINKS, EVIDENCE_TAB, TASK_EVIDENCE_HREF, DropNullLinks
from mlcycle_airflow.metadb import ROOT_MIDDLEWARES
from mlcycle_airflow.webapp import LazyApp


class MlcyclePlugin(AirflowPlugin):
    """Registers the extra links, the ``/mlcycle`` app and its Browse menu entry with Airflow."""

    name = "mlcycle"
    operator_extra_links = ALL_LINKS
    # Plain (not ClassVar) annotations: AirflowPlugin declares these as instance attributes.
    fastapi_apps: list[dict[str, Any]] = [  # noqa: RUF012
        {"app": LazyApp(), "url_prefix": "/mlcycle", "name": "mlcycle"}
    ]
    # One SQLite writer at a time in the api-server (mlcycle_airflow.metadb says why), and no
    # null extra links in the REST API (mlcycle_airflow.links.DropNullLinks says why).
    fastapi_root_middlewares: list[dict[str, Any]] = [  # noqa: RUF012
        *ROOT_MIDDLEWARES,
        {"middleware": DropNullLinks, "name": "mlcycle: no null extra links"},
    ]
    external_views: list[dict[str, Any]] = [  # noqa: RUF012
        {
            "name": "Promotion ledger",
            "href": "/mlcycle/ledger",
            "destination": "nav",
            "category": "browse",
            "url_route": "mlcycle-ledger",
        },
        {
            "name": "Models",
            "href": "/mlcycle/models",
            "destination": "nav",
            "category": "browse",
            "url_route": "mlcycle-models",
        },
        {
            # A tab on every DAG page: the page of the DAG's model (webapp.dag_model).
            "name": "Model",
            "href": "/mlcycle/dags/{DAG_ID}/model",
            "destination": "dag",
            "url_route": "mlcycle-model",
        },
        {
            # A tab on every task instance, embedding what the task left (links.EVIDENCE_TAB).
            "name": "Evidence",
            "href": TASK_EVIDENCE_HREF,
            "destination": "task_instance",
            "url_route": EVIDENCE_TAB,
        },
    ]


__all__ = ["MlcyclePlugin"]
