"""The embedded default as a user starts it: ``airflow standalone`` (api-server, scheduler,
dag-processor, triggerer, LocalExecutor, SQLite, SimpleAuthManager) in a throw-away home on a
free loopback port, optionally beside a real ``mlflow server`` on SQLite with proxied artifacts.

Used by the retrain-loop test (tests/services/) and the browser tests (tests/ui/). Every process
is started in its own session and killed as a group at :meth:`Standalone.stop`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from tests.services.topology import Api, _http_ok, _wait, free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ADMIN = "admin"


@dataclass
class Standalone:
    """``airflow standalone`` (and optionally an MLflow server) under ``root``.

    :param env: the lake / ledger / MLflow settings of the test (``MLCYCLE_*``, ``MLFLOW_*``).
    :param mlflow_server: start ``mlflow server`` and point Airflow's MLflow connection at it.
    """

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    mlflow_server: bool = False
    dag_ids: set[str] = field(default_factory=set)
    port: int = field(default_factory=free_port)
    mlflow_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mlflow_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def home(self) -> Path:
        return self.root / "airflow-home"

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def password(self) -> str:
        """The admin password ``airflow standalone`` generated (SimpleAuthManager)."""
        return str(
            json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())[ADMIN]
        )

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with self.log(name).open("wb") as out:
            proc = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs[name] = proc
        return proc

    def child_env(self) -> dict[str, str]:
        env = {
            **os.environ,
            **self.env,
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO / "plugins"), os.environ.get("PYTHONPATH")])
            ),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        }
        if self.mlflow_server:
            env["MLFLOW_TRACKING_URI"] = self.mlflow_uri
            env["AIRFLOW_CONN_MLFLOW_DEFAULT"] = json.dumps(
                {"conn_type": "mlflow", "host": "127.0.0.1", "port": self.mlflow_port}
            )
        return env

    def start_mlflow(self) -> None:
        store = self.root / "mlflow"
        store.mkdir(exist_ok=True)
        argv = [
            str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.mlflow_port),
            "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
            "--artifacts-destination", str(store / "artifacts"), "--workers", "1",
        ]  # fmt: skip
        env = {
            **os.environ,
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            # Registry webhooks to the api-server on loopback (refused by default: SSRF guard).
            "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
            "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
            # The server caches the webhook list (60 s by default): a test's new one is used at once.
            "MLFLOW_WEBHOOK_CACHE_TTL": "1",
        }
        proc = self._spawn("mlflow", argv, env)
        _wait("MLflow server", lambda: _http_ok(f"{self.mlflow_uri}/health"), 120, proc, self.log("mlflow"))

    def start(self, timeout: float = 300) -> Api:
        """Start everything; return an API client logged in as the admin once the DAGs are parsed."""
        self.home.mkdir(parents=True, exist_ok=True)
        if self.mlflow_server:
            self.start_mlflow()
        proc = self._spawn("standalone", [str(BIN / "airflow"), "standalone"], self.child_env())
        api = Api(self.base)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"airflow standalone exited:\n{self.log('standalone').read_text()[-4000:]}"
                )
            try:
                api.login(ADMIN, self.password())
                dags = {d["dag_id"] for d in api.call("GET", "/api/v2/dags?limit=200")["dags"]}
                if self.dag_ids <= dags:
                    return api
            except (OSError, urllib.error.URLError, KeyError, json.JSONDecodeError):
                pass
            time.sleep(2)
        raise RuntimeError(
            f"Airflow did not list {sorted(self.dag_ids)} within {timeout:.0f} s:\n"
            f"{self.log('standalone').read_text()[-4000:]}"
        )

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_for_run(
    api: Api, dag_id: str, *, run_id: str | None = None, run_type: str | None = None, timeout: float = 300
) -> dict:
    """The newest run of ``dag_id`` (or ``run_id``, or of ``run_type``) once it has finished."""
    deadline = time.monotonic() + timeout
    seen: list[dict] = []
    while time.monotonic() < deadline:
        if run_id is not None:
            seen = [api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")]
        else:
            seen = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=-run_after&limit=5")["dag_runs"]
        runs = [r for r in seen if run_type is None or r["run_type"] == run_type]
        if runs and runs[0]["state"] in ("success", "failed"):
            return runs[0]
        time.sleep(3)
    tasks = {
        r["dag_run_id"]: {
            ti["task_id"]: ti["state"]
            for ti in api.call(
                "GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(r['dag_run_id'])}/taskInstances"
            )["task_instances"]
        }
        for r in seen
    }
    raise AssertionError(
        f"no finished {run_type or run_id or ''} run of {dag_id} within {timeout:.0f} s; its newest runs: "
        + "; ".join(
            f"{r['dag_run_id']} ({r['run_type']}, {r['state']}, tasks {tasks[r['dag_run_id']]})" for r in seen
        )
    )
