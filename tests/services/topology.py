"""The distributed topology of docker-compose.yaml, started natively (no Docker engine runs here).

PostgreSQL and Redis from Debian's packages, moto's S3 server, the MLflow tracking server with
basic-auth (deploy/mlflow-server.sh), and Airflow's api-server, scheduler, dag-processor,
triggerer and Celery workers, each a process on loopback in one temporary folder. Their
environment is compose's own: the ``x-airflow-env`` block and the mlflow service's
``environment``, interpolated the way compose does (``${VAR}``, ``${VAR:-default}``,
``${VAR:?error}``) from a generated ``.env`` whose ``*_HOST``/``*_PORT`` point at loopback. The
only settings added here are listen addresses and ports that compose leaves at their defaults
because each container has its own network (``LOOPBACK_ONLY``), and the homes of the processes.

Used by tests/services/test_topology.py and bench/distributed.py. Every process is started in
its own session and stopped by pid (SIGTERM, then SIGKILL) by :meth:`Topology.stop`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# The liveness probe of an orchestrator: a scheduler unhealthy this long is started again.
UNHEALTHY_RESTART_S = 90

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
BIN = Path(sys.executable).parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
BUCKET = "mlcycle"

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(text: str, values: dict[str, str]) -> str:
    """``text`` with compose's variable syntax replaced from ``values`` (``$$`` is a literal ``$``)."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = values.get(name)
        unset = value is None or (value == "" and op is not None and op.startswith(":"))
        if op is None:
            return value or ""
        if op.endswith("-"):
            return arg if unset else value  # type: ignore[return-value]
        if unset:
            raise KeyError(f"{name}: {arg}")
        return value  # type: ignore[return-value]

    return _VAR.sub(one, text)


def compose_environment(values: dict[str, str], service: str | None = None) -> dict[str, str]:
    """The environment compose gives ``service`` (default: the shared ``x-airflow-env`` block)."""
    doc = yaml.safe_load(COMPOSE.read_text())
    block = doc["x-airflow-env"] if service is None else doc["services"][service]["environment"]
    return {key: interpolate(str(value), values) for key, value in block.items()}


def generated_env() -> dict[str, str]:
    """The variables `make env` writes to ``.env``: ``.env.example`` with fresh secrets."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_env", REPO / "scripts" / "make_env.py")
    assert spec is not None and spec.loader is not None
    make_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_env)
    text, _ = make_env.render((REPO / ".env.example").read_text())
    return {m["key"]: m["value"] for line in text.splitlines() if (m := make_env.ASSIGNMENT.match(line))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing_services() -> list[str]:
    """What this machine lacks to start the topology, as install hints (empty: all there)."""
    missing = []
    if os.geteuid() != 0 or not shutil.which("unshare"):
        missing.append("root and unshare (each Celery worker gets its own host name, as a container does)")
    if not (PG_BIN / "postgres").exists():
        missing.append("PostgreSQL 15 (apt-get install postgresql)")
    if not shutil.which("redis-server"):
        missing.append("Redis (apt-get install redis-server)")
    if not (BIN / "moto_server").exists():
        missing.append("moto's S3 server (pip install 'moto[server]', in requirements-dev.txt)")
    for module in ("airflow.providers.celery", "airflow.providers.fab", "psycopg2", "s3fs"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"{module} (pip install -r requirements.txt)")
    return missing


def _wait(what: str, ready: Any, timeout: float, proc: subprocess.Popen[bytes] | None, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if ready():
                return
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} not ready within {timeout:.0f} s:\n{log.read_text()[-4000:]}")


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status == 200


@dataclass
class Api:
    """Airflow's REST API as a client uses it: a token from ``/auth/token``, then bearer calls."""

    base: str
    token: str | None = None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base}{path}", data=data, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"{}")

    def login(self, username: str, password: str) -> None:
        self.token = None
        self.token = self.call("POST", "/auth/token", {"username": username, "password": password})[
            "access_token"
        ]


@dataclass
class Topology:
    """The processes of the topology under ``root``; :meth:`start` brings them up in order."""

    root: Path
    workers: int = 2
    worker_concurrency: int = 1
    executor: str = "CeleryExecutor"
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)
    as_root: bool = field(default_factory=lambda: os.geteuid() == 0)
    pg_dir: Path | None = None
    restarts: list[str] = field(default_factory=list)
    _restartable: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)

    # --- set-up --------------------------------------------------------------------------
    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        ports = {name: free_port() for name in ("POSTGRES", "REDIS", "MLFLOW", "AIRFLOW_API", "S3")}
        self.ports = ports
        self.values = {
            # What `make env` writes: .env.example with fresh secrets (scripts/make_env.py).
            **generated_env(),
            "AWS_ACCESS_KEY_ID": "mlcycle-test",  # empty in the example: the user's own
            "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(24),
            # Where compose's hosts are here: loopback.
            "POSTGRES_HOST": "127.0.0.1",
            "POSTGRES_PORT": str(ports["POSTGRES"]),
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(ports["REDIS"]),
            "MLFLOW_HOST": "127.0.0.1",
            "MLFLOW_PORT": str(ports["MLFLOW"]),
            "MLFLOW_UI_URL": f"http://127.0.0.1:{ports['MLFLOW']}",
            "AIRFLOW_API_HOST": "127.0.0.1",
            "AIRFLOW_API_PORT": str(ports["AIRFLOW_API"]),
            "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{ports['S3']}",
            "MLCYCLE_HOME": str(REPO),
            "MLCYCLE_LAKE_ROOT": f"s3://{BUCKET}/lake",
            "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{BUCKET}/mlartifacts",
            "AIRFLOW_WORKER_CONCURRENCY": str(self.worker_concurrency),
            # A killed worker's task is noticed within 20 s instead of 5 minutes.
            "AIRFLOW_TASK_HEARTBEAT_TIMEOUT": "20",
            # A task a worker took but could not start (the database away) is queued again
            # within 2 minutes instead of 10.
            "AIRFLOW_TASK_QUEUED_TIMEOUT": "120",
        }
        self.api = Api(f"http://127.0.0.1:{ports['AIRFLOW_API']}")

    @property
    def admin(self) -> tuple[str, str]:
        return "admin", self.values["AIRFLOW_ADMIN_PASSWORD"]

    @property
    def mlflow_uri(self) -> str:
        return f"http://127.0.0.1:{self.ports['MLFLOW']}"

    def client_env(self) -> dict[str, str]:
        """What a client (this test process) sets to reach the lake and the MLflow server."""
        return {
            "AWS_ACCESS_KEY_ID": self.values["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": self.values["AWS_SECRET_ACCESS_KEY"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": self.values["AWS_ENDPOINT_URL_S3"],
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
            "MLFLOW_REGISTRY_URI": self.mlflow_uri,
            "MLFLOW_TRACKING_USERNAME": "admin",
            "MLFLOW_TRACKING_PASSWORD": self.values["MLFLOW_ADMIN_PASSWORD"],
        }

    def airflow_env(self) -> dict[str, str]:
        """Compose's Airflow environment, plus a home and loopback ports of its own per process."""
        env = {
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            **compose_environment(self.values),
            "AIRFLOW_HOME": str(self.root / "airflow"),
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            # LOOPBACK_ONLY: listen addresses and per-process ports (one network namespace here).
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            # Quicker loops than production, for a test that waits on them.
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "15",
            "PYTHONFAULTHANDLER": "1",  # a SIGABRT of the liveness probe leaves the stacks in the log
            **self.extra_env,
        }
        return env

    # --- processes -----------------------------------------------------------------------
    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str], *, restart: bool = False
    ) -> subprocess.Popen[bytes]:
        """Start ``name``; with ``restart``, :meth:`supervise` starts it again whenever it exits,
        as compose's ``restart: unless-stopped`` does."""
        with self.log(name).open("ab") as log:
            proc = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.root
            )
        with self._lock:
            self.procs[name] = proc
            if restart:
                self._restartable[name] = (argv, env)
        return proc

    def supervise(self) -> None:
        """compose's restart policy: a thread that starts again every restartable process that
        exited (recorded in ``restarts``), until :meth:`stop`."""

        healthy_at = time.monotonic()

        def loop() -> None:
            nonlocal healthy_at
            while not self._stopping.wait(2):
                with self._lock:
                    exited = [
                        n for n, p in self.procs.items() if n in self._restartable and p.poll() is not None
                    ]
                for name in exited:
                    self.restarts.append(name)
                    self.spawn(name, *self._restartable[name], restart=True)
                    if name == "scheduler":
                        healthy_at = time.monotonic()
                if self._scheduler_healthy():
                    healthy_at = time.monotonic()
                elif time.monotonic() - healthy_at > UNHEALTHY_RESTART_S:
                    # An orchestrator's liveness probe: a scheduler whose health endpoint failed
                    # for this long is killed (SIGABRT: faulthandler writes every thread's stack
                    # to its log first) and started again.
                    self.restarts.append("scheduler (unhealthy)")
                    started = self._restartable["scheduler"]
                    self.kill("scheduler", signal.SIGABRT)
                    self.spawn("scheduler", *started, restart=True)
                    healthy_at = time.monotonic()

        threading.Thread(target=loop, name="restart-policy", daemon=True).start()

    def _scheduler_healthy(self) -> bool:
        """The scheduler's own health endpoint (its heartbeat is recent), where it runs."""
        started = self._restartable.get("scheduler")
        if not started or self._stopping.is_set():
            return True
        port = started[1]["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT"]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to ``name`` and every process under it, and reap it. The task processes of
        a worker sit in process groups of their own, so a group signal would miss them; SIGKILL to
        all of them is a machine (a container) that dies."""
        import psutil

        with self._lock:
            proc = self.procs.pop(name)
            self._restartable.pop(name, None)
        try:
            tree = [proc.pid, *(child.pid for child in psutil.Process(proc.pid).children(recursive=True))]
        except psutil.NoSuchProcess:
            tree = [proc.pid]
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def stop(self) -> None:
        """Stop every process started, newest first, by pid: SIGTERM, then SIGKILL after 20 s."""
        self._stopping.set()
        with self._lock:
            self._restartable.clear()
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 20
        for name in reversed(list(self.procs)):
            proc = self.procs.pop(name)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):  # the group: children that outlived the parent
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        if self.pg_dir is not None:
            shutil.rmtree(self.pg_dir, ignore_errors=True)

    # --- services ------------------------------------------------------------------------
    def _as_postgres(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if self.as_root else argv

    def start_postgres(self) -> None:
        # Its own temporary folder, which the postgres user can reach (pytest's are root-only);
        # stop() removes it.
        self.pg_dir = Path(tempfile.mkdtemp(prefix="mlcycle-pg-"))
        pwfile = self.pg_dir / "pw"
        pwfile.write_text(self.values["POSTGRES_PASSWORD"])
        if self.as_root:
            shutil.chown(self.pg_dir, "postgres")
            shutil.chown(pwfile, "postgres")
        data = self.pg_dir / "data"
        done = subprocess.run(
            self._as_postgres([
                str(PG_BIN / "initdb"), "-D", str(data), "-U", "mlcycle", "--auth=scram-sha-256",
                f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync",
            ]),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        pwfile.unlink()
        self._run_postgres()
        import psycopg2

        conn = psycopg2.connect(self.pg_url("postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE airflow")  # compose: POSTGRES_DB
            for statement in (REPO / "deploy" / "postgres-init.sql").read_text().split(";"):
                lines = [line for line in statement.splitlines() if not line.startswith("--")]
                if "".join(lines).strip():
                    cur.execute("\n".join(lines))
        conn.close()

    def pg_url(self, db: str) -> str:
        return (
            f"postgresql://mlcycle:{self.values['POSTGRES_PASSWORD']}@127.0.0.1:{self.ports['POSTGRES']}/{db}"
        )

    def _run_postgres(self) -> None:
        argv = self._as_postgres([
            str(PG_BIN / "postgres"), "-D", str(self.pg_dir / "data"), "-p", str(self.ports["POSTGRES"]),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.pg_dir}",
            "-c", "fsync=off", "-c", "max_connections=300",
        ])  # fmt: skip
        proc = self.spawn("postgres", argv, {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"})
        import psycopg2

        def ready() -> bool:
            try:
                psycopg2.connect(self.pg_url("postgres"), connect_timeout=2).close()
            except psycopg2.OperationalError:
                return False
            return True

        _wait("PostgreSQL", ready, 60, proc, self.log("postgres"))

    def restart_postgres(self, down_s: float = 5.0) -> None:
        """A fast shutdown (SIGINT: clients are disconnected), ``down_s`` of absence, start again."""
        self.kill("postgres", signal.SIGINT)
        time.sleep(down_s)
        self._run_postgres()

    def start_redis(self) -> None:
        proc = self.spawn(
            "redis",
            [
                "redis-server", "--bind", "127.0.0.1", "--port", str(self.ports["REDIS"]),
                "--requirepass", self.values["REDIS_PASSWORD"], "--save", "", "--appendonly", "no",
                "--dir", str(self.root),
            ],
            {"PATH": os.environ.get("PATH", "")},
        )  # fmt: skip

        import redis

        client = redis.Redis(
            port=self.ports["REDIS"], password=self.values["REDIS_PASSWORD"], socket_timeout=2
        )

        def ready() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        _wait("Redis", ready, 30, proc, self.log("redis"))

    def start_s3(self) -> None:
        proc = self.spawn(
            "s3", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.ports["S3"])], dict(os.environ)
        )
        _wait(
            "moto S3 server",
            lambda: _http_ok(f"{self.values['AWS_ENDPOINT_URL_S3']}/"),
            60,
            proc,
            self.log("s3"),
        )
        import boto3

        boto3.client(
            "s3",
            endpoint_url=self.values["AWS_ENDPOINT_URL_S3"],
            aws_access_key_id=self.values["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.values["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)

    def start_mlflow(self) -> None:
        env = {
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "HOME": str(self.root),
            "TMPDIR": str(self.root),
            **compose_environment(self.values, "mlflow"),
            "MLFLOW_HOST": "127.0.0.1",  # LOOPBACK_ONLY
            "MLFLOW_WORKERS": "1",
        }
        proc = self.spawn("mlflow", ["sh", str(REPO / "deploy" / "mlflow-server.sh")], env, restart=True)
        _wait("MLflow server", lambda: _http_ok(f"{self.mlflow_uri}/health"), 120, proc, self.log("mlflow"))

    # --- Airflow -------------------------------------------------------------------------
    def init_airflow(self) -> None:
        env = {
            **self.airflow_env(),
            "AIRFLOW_ADMIN_USER": "admin",
            "AIRFLOW_ADMIN_PASSWORD": self.values["AIRFLOW_ADMIN_PASSWORD"],
        }
        with self.log("airflow-init").open("ab") as log:
            done = subprocess.run(
                ["sh", str(REPO / "deploy" / "airflow-init.sh")], env=env, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.root, check=False, timeout=300,
            )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"airflow-init failed:\n{self.log('airflow-init').read_text()[-4000:]}")

    def start_airflow_component(self, name: str, *command: str) -> subprocess.Popen[bytes]:
        return self.spawn(name, [str(BIN / "airflow"), *command], self.airflow_env(), restart=True)

    def start_worker(self, index: int) -> None:
        """Celery worker ``worker-<index>``: its own host name (a UTS namespace, as each container
        has), so task instances record which worker ran them."""
        name = f"worker-{index}"
        argv = [str(BIN / "airflow"), "celery", "worker", "--celery-hostname", f"{name}@%h"]
        if self.as_root and shutil.which("unshare"):
            argv = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', name, *argv]
        self.spawn(name, argv, self.airflow_env(), restart=True)

    def start_airflow(self) -> None:
        self.init_airflow()
        api = self.start_airflow_component("api-server", "api-server")
        self.start_airflow_component("scheduler", "scheduler")
        self.start_airflow_component("dag-processor", "dag-processor")
        self.start_airflow_component("triggerer", "triggerer")
        if self.executor == "CeleryExecutor":
            for i in range(1, self.workers + 1):
                self.start_worker(i)
        _wait(
            "Airflow api-server",
            lambda: _http_ok(f"{self.api.base}/api/v2/monitor/health"),
            180,
            api,
            self.log("api-server"),
        )
        self.api.login(*self.admin)

    def wait_for_dags(self, dag_ids: set[str], timeout: float = 180) -> None:
        def ready() -> bool:
            found = {d["dag_id"] for d in self.api.call("GET", "/api/v2/dags?limit=200")["dags"]}
            return dag_ids <= found

        _wait(
            f"DAGs {sorted(dag_ids)}", ready, timeout, self.procs["dag-processor"], self.log("dag-processor")
        )

    def wait_for_workers(self, timeout: float = 120) -> None:
        """Every Celery worker answers a ping through the broker."""
        if self.executor != "CeleryExecutor":
            return
        env = self.airflow_env()
        names = [f"worker-{i}" for i in range(1, self.workers + 1)]

        def ready() -> bool:
            done = subprocess.run(
                [str(BIN / "celery"), "--app", "airflow.providers.celery.executors.celery_executor.app",
                 "inspect", "ping", "--timeout", "5"],
                env=env, capture_output=True, text=True, check=False, timeout=60,
            )  # fmt: skip
            return all(f"{name}@" in done.stdout for name in names)

        _wait("Celery workers", ready, timeout, None, self.log("worker-1"))

    def start(self) -> None:
        self.start_postgres()
        self.start_redis()
        self.start_s3()
        self.start_mlflow()
        self.start_airflow()
        self.supervise()
