"""Orchestration overhead of one ``train_<model>`` run: plain Python vs ``dag.test()`` vs a real executor.

Every run trains a first version (bootstrap) on fresh MLflow, lake and ledger state, on
``--days`` daily batches of ``--rows`` rows (default 10 x 10,000 = 100,000 rows) ending
today (UTC). Each run is a fresh interpreter, so imports count once per process, as they
do in production. Modes, each one a decision it still informs:

``plain``
    the reference: ``mlcycle.flows.train`` resolve → validate → train → evaluate → gate →
    promote in one process, with one MLflow client made in the first MLflow step (as the
    operators' hook does per task). Its wall is the heavy imports plus the steps; the steps
    alone are reported as "excl. imports".
``dag.test``
    ``dag.test()`` in-process (``DagBag(dag_folder=dags/).dags['train_<model>']``). The
    Airflow import and the DAG parse are not timed; ``dag.test`` is. The first ``dag.test``
    call of a process also builds the in-process Execution API (a FastAPI app whose start-up
    generates cadwyn's versioned routes, ~3 s here); Airflow caches it for the life of the
    process (``supervisor.in_process_api_server``), so every later call skips it.
``dag.test+warmapi``
    the same, with that in-process Execution API built (and its start-up run by one request)
    before timing: what each ``dag.test`` call after the first in a process costs (a test
    session, a notebook), and what a deployment pays, whose API server is long-running. The
    ``dag.test`` target (< 30 % over plain) is judged on both.
``executor``
    ``dag.test(use_executor=True)`` with ``LocalExecutor`` and Airflow's defaults (fork
    start method, 5 s minimum heartbeat): each task runs in its own process (a LocalExecutor
    worker runs a supervisor that forks the task process), and the task talks to the
    Execution API over HTTP. So an API server is needed: ``airflow api-server --apps
    execution`` is started once (not timed) on a free local port, on the same SQLite DB.
    Wall = ``dag.test`` call → DagRun marked finished (what a trigger → done measurement with
    a scheduler gives); executor shutdown is reported apart.
``executor+forkserver+gcfreeze+hb1``
    the same with the Makefile's defaults, i.e. what ``make up`` runs: ``[core]
    mp_start_method = forkserver``, ``[core] mp_forkserver_preload = mlcycle_airflow.warm``
    (imports the ML stack, then ``gc.freeze()``) and ``[workers] min_heartbeat_interval = 1``,
    read from the Makefile's ``export`` lines, applied the way ``airflow scheduler`` does
    (``set_component_mp_start_method("scheduler")``), the forkserver warmed before timing.

Other executor variants were measured and dropped; what they showed is in bench/README.md.

Per-task durations and the gaps between tasks come from the task instances in the
metadata DB; the supervisor's time beyond the task from its "Workload finished" log line.
What each task process pays before doing any work is also measured in fresh interpreters
shaped like a task process: the import of each task's modules, loading the plugins
folder, and the first MLflow call on the SQLite store. These explain the executor's
overhead.

Run from the repository root::

    .venv/bin/python bench/train_overhead.py                      # churn, about 6 minutes
    .venv/bin/python bench/train_overhead.py --model demand --runs 3 --executor-runs 1
    .venv/bin/python bench/train_overhead.py --modes plain,dag.test,dag.test+warmapi

All state (Airflow home and DB, lake, MLflow, ledger) goes to a temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import re
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# bench/ is on sys.path when a script runs
from _common import (
    REPO,
    SPECS_DIR,
    airflow_env,
    check_python,
    default_python,
    emit,
    fmt,
    free_port,
    machine,
    maxrss_mb,
    median,
    mlcycle_state,
    print_header,
    revision,
    run_child,
    scratch_dir,
    stop_group,
    tail_file,
)

DAG_TEST_TARGET_PCT = 30.0
TASKS = ["resolve_data", "validate_data", "train_model", "evaluate_model", "gate", "promote"]
MAKE_MODE = "executor+forkserver+gcfreeze+hb1"
MODES = ("plain", "dag.test", "dag.test+warmapi", "executor", MAKE_MODE)
DEFAULT_MODES = ",".join(MODES)
# What `make up` exports for the executor (MAKE_MODE applies exactly these).
MAKEFILE_SETTINGS = (
    "AIRFLOW__CORE__MP_START_METHOD",
    "AIRFLOW__CORE__MP_FORKSERVER_PRELOAD",
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL",
)
END_HANG_GRACE_S = 45  # after the DagRun finished, how long dag.test may take to shut the executor down

# What each task's ``execute`` pulls in (via mlcycle.flows.train), timed per task in a fresh interpreter.
_FLOW = "mlcycle.flows.train"
_FRAMES = ["pandas", "pyarrow.parquet"]
_SKLEARN = [
    "sklearn.ensemble",
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.impute",
    "sklearn.preprocessing",
]
_MODEL_IO = ["sklearn.metrics", "mlflow", "mlflow.sklearn", "skops.io"]
TASK_IMPORTS = {
    "resolve_data": [_FLOW, "pyarrow.parquet"],
    "validate_data": [_FLOW, "mlcycle.data.contracts", *_FRAMES, "great_expectations"],
    "train_model": [
        _FLOW,
        "mlcycle.ml.training",
        "mlcycle.ml.evaluation",
        "mlcycle.ml.onnx_twin",
        *_FRAMES,
        *_SKLEARN,
        *_MODEL_IO,
        "mlflow.models",
        "skl2onnx",
        "onnxruntime",
    ],
    "evaluate_model": [_FLOW, "mlcycle.ml.evaluation", *_FRAMES, *_MODEL_IO],
    "gate": [_FLOW, "mlcycle.ml.gate", "mlflow"],
    "promote": [_FLOW, "mlflow", "sqlalchemy"],
}
# All of them, in import order: what plain imports (timed) before its steps.
HEAVY_MODULES = list(dict.fromkeys(m for modules in TASK_IMPORTS.values() for m in modules))
# Already imported in a task process: what its LocalExecutor worker (forked from the process that
# parsed the DAG and started the executor) had, and what the supervisor and task runner import.
WORKER_MODULES = [
    "airflow.sdk",
    "airflow.dag_processing.dagbag",
    "airflow.executors.local_executor",
    "airflow.sdk.execution_time.supervisor",
    "airflow.sdk.execution_time.task_runner",
    "mlcycle_airflow.factory",
]
WORKLOAD_RE = re.compile(r"Workload finished.*?duration=([\d.]+).*?workload_id=([0-9a-f-]+)")


def makefile_settings() -> dict[str, str]:
    """The executor settings the Makefile exports (``export NAME ?= value``): what ``make up`` runs."""
    found = dict(re.findall(r"(?m)^export (AIRFLOW__\w+) \?= (\S+)\s*$", (REPO / "Makefile").read_text()))
    missing = [name for name in MAKEFILE_SETTINGS if name not in found]
    if missing:
        sys.exit(f"error: the Makefile no longer exports {missing}; update MAKEFILE_SETTINGS")
    return {name: found[name] for name in MAKEFILE_SETTINGS}


@dataclass(eq=False)
class Mode:
    name: str
    runs: int
    results: list[dict[str, Any]] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)

    @property
    def executor(self) -> bool:
        return self.name.startswith("executor")

    @property
    def warmapi(self) -> bool:
        return self.name == "dag.test+warmapi"

    def env(self) -> dict[str, str]:
        """What the mode sets on top of the run's environment."""
        return makefile_settings() if self.name == MAKE_MODE else {}


# --------------------------------------------------------------------------------------------
# Child side: runs in a fresh interpreter (``--child MODE``) and prints one result line.
# --------------------------------------------------------------------------------------------


def _rss() -> dict[str, float]:
    return {"rss_self_mb": maxrss_mb(), "rss_child_mb": maxrss_mb(children=True)}


def _import_all(modules: list[str]) -> float:
    import importlib

    started = time.perf_counter()
    for name in modules:
        importlib.import_module(name)
    return time.perf_counter() - started


def child_plain(model: str) -> dict[str, Any]:
    import_s = _import_all(HEAVY_MODULES)

    from mlcycle.core import settings
    from mlcycle.core.run import RunInfo
    from mlcycle.core.spec import get_spec
    from mlcycle.flows import train as steps
    from mlcycle.store import registry

    spec = get_spec(model)
    run = RunInfo(dag_id=spec.train_dag_id, run_id=f"bench__{time.time_ns()}", reason="bench")
    lake = settings.lake_root()
    timings: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        started = time.perf_counter()
        out = fn()
        timings[name] = time.perf_counter() - started
        return out

    started = time.perf_counter()
    today = dt.datetime.now(dt.UTC).date()
    res = timed("resolve_data", lambda: steps.resolve(spec, run, lake_root=lake, as_of=today))
    manifest = res["manifest_uri"]
    timed("validate_data", lambda: steps.validate(spec, run, manifest_uri=manifest, lake_root=lake))
    # The client is made in the first MLflow step, as the operators' hook makes one per task.
    mlc = timed("train_model", lambda: registry.client(settings.tracking_uri()))
    client_s = timings["train_model"]
    trained = timed("train_model", lambda: steps.train(spec, run, mlc, manifest_uri=manifest, lake_root=lake))
    timings["train_model"] += client_s
    if trained.get("version") != "1":
        raise SystemExit(f"plain run did not train v1: {trained}")
    evaluation = timed(
        "evaluate_model",
        lambda: steps.evaluate(
            spec, run, mlc, version=trained["version"], holdout_uri=trained["holdout_uri"], lake_root=lake
        ),
    )
    verdict = timed("gate", lambda: steps.gate(spec, run, mlc, evaluation=evaluation, lake_root=lake))
    promoted = timed("promote", lambda: steps.promote(spec, run, mlc, verdict=verdict))
    steps_s = time.perf_counter() - started
    if not promoted["promoted"]:
        raise SystemExit(f"plain run did not bootstrap v1: {promoted}")
    return {
        "wall_s": import_s + steps_s,
        "import_s": import_s,
        "steps_s": steps_s,
        "steps": timings,
        **_rss(),
    }


def _collect_run(dag_id: str, t_call: float) -> dict[str, Any] | None:
    """The DagRun started by this process's dag.test call and its task instances, if it finished."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    def ts(value: Any) -> float | None:
        return value.timestamp() if value else None

    since = dt.datetime.fromtimestamp(t_call - 1, dt.UTC)
    with create_session() as session:
        dr = session.scalars(
            select(DagRun)
            .where(DagRun.dag_id == dag_id, DagRun.start_date >= since)
            .order_by(DagRun.start_date.desc())
            .limit(1)
        ).first()
        if dr is None or dr.end_date is None:
            return None
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == dr.run_id)
        ).all()
        return {
            "run_id": dr.run_id,
            "state": str(dr.state),
            "run_end": ts(dr.end_date),
            "tis": [
                {
                    "task_id": ti.task_id,
                    "ti_id": str(ti.id),
                    "state": str(ti.state),
                    "try_number": ti.try_number,
                    "start": ts(ti.start_date),
                    "end": ts(ti.end_date),
                    "scheduled": ts(ti.scheduled_dttm),
                    "duration": ti.duration,
                }
                for ti in tis
            ],
        }


def _descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        kids = parents.get(todo.pop(), [])
        out.extend(kids)
        todo.extend(kids)
    return out


def _run_finished(dag_id: str, t_call: float) -> bool:
    """Whether the DagRun started by our dag.test call has an end date; plain sqlite3, so as not to
    share Airflow's connection pool with the thread running dag.test."""
    url = os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    since = dt.datetime.fromtimestamp(t_call - 1, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    query = (
        "select end_date from dag_run where dag_id = ? and start_date >= ? order by start_date desc limit 1"
    )
    try:
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"), timeout=5)) as db:
            row = db.execute(query, (dag_id, since)).fetchone()
    except sqlite3.Error:
        return False
    return bool(row and row[0])


def _watch_shutdown(dag_id: str, t_call: float, returned: threading.Event, base: dict[str, Any]) -> None:
    """If dag.test has not returned ``END_HANG_GRACE_S`` after the DagRun finished (seen once in
    ``LocalExecutor.end()``, joining its workers), dump the workers' stacks and report anyway.

    Sleeps through the first seconds: the executor forks its workers from this process early in
    dag.test, and nothing of this thread should be mid-query when it does."""
    if returned.wait(15):
        return
    while not returned.wait(1.0):
        if not _run_finished(dag_id, t_call):
            continue
        if returned.wait(END_HANG_GRACE_S):
            return
        run = _collect_run(dag_id, t_call)
        if run is None:
            continue
        stuck = _descendants(os.getpid())
        print(
            f"WATCHDOG: dag.test still in executor shutdown {END_HANG_GRACE_S} s after the run finished; "
            f"dumping stacks of {stuck} (faulthandler, SIGUSR1)",
            file=sys.stderr,
            flush=True,
        )
        for pid in stuck:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)
        time.sleep(2)
        result = {**base, **run, "wall_s": run["run_end"] - t_call, "returned_s": None, "end_hang": True}
        emit({**result, **_rss()})
        os._exit(0)


def _warm_execution_api() -> float:
    """Build the in-process Execution API that ``dag.test()`` uses (cached by Airflow for the life of
    the process) and serve one request, which runs its start-up."""
    import httpx
    from airflow.sdk.execution_time.supervisor import in_process_api_server

    started = time.perf_counter()
    client = httpx.Client(transport=in_process_api_server().transport, base_url="http://in-process.invalid")
    client.get("/execution/health")  # any path: the first request runs the app's start-up
    return time.perf_counter() - started


def child_dag(model: str, mode: Mode) -> dict[str, Any]:
    import faulthandler
    import multiprocessing

    import airflow.sdk  # noqa: F401  (not timed)
    from airflow.utils.process_utils import set_component_mp_start_method

    prepare: dict[str, Any] = {}
    if mode.executor:
        # Inherited by the forked workers: `kill -USR1 <pid>` prints their Python stacks.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        # What `airflow scheduler` does before it creates its executor.
        set_component_mp_start_method("scheduler")
        if multiprocessing.get_start_method() == "forkserver":
            started = time.perf_counter()
            warm = multiprocessing.Process(target=os.getpid)  # starts the forkserver and its preload
            warm.start()
            warm.join()
            prepare["forkserver_warmup_s"] = time.perf_counter() - started
        prepare["start_method"] = multiprocessing.get_start_method()
    if mode.warmapi:
        prepare["execution_api_warmup_s"] = _warm_execution_api()

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    dag_id = f"train_{model}"
    if dag_id not in bag.dags:
        raise SystemExit(f"{dag_id} not in the DagBag; import errors: {bag.import_errors}")
    dag = bag.dags[dag_id]

    t_call = time.time()
    base = {"t_call": t_call, **prepare}
    returned = threading.Event()
    if mode.executor:
        watch = threading.Thread(target=_watch_shutdown, args=(dag_id, t_call, returned, base), daemon=True)
        watch.start()
    started = time.perf_counter()
    dr = dag.test(run_conf={"reason": "bench"}, use_executor=mode.executor)
    returned_s = time.perf_counter() - started
    returned.set()
    run = _collect_run(dag_id, t_call)
    if run is None or run["run_id"] != dr.run_id:
        raise SystemExit(f"cannot find the finished DagRun {dr.run_id} in the metadata DB")
    if not run["state"].endswith("success"):
        raise SystemExit(f"dag run {dr.run_id} ended {run['state']}; task instances: {run['tis']}")
    # In-process, dag.test returning is the end; with an executor, the DagRun's end (dag.test then
    # still waits for the executor's workers to exit, which a long-running scheduler never does).
    wall = run["run_end"] - t_call if mode.executor else returned_s
    return {**base, **run, "wall_s": wall, "returned_s": returned_s, "end_hang": False, **_rss()}


def child_imports(modules: list[str]) -> dict[str, Any]:
    _import_all(WORKER_MODULES)  # not timed: a task process has them already
    return {"import_s": _import_all(modules)}


def child_setup(model: str) -> dict[str, Any]:
    """Per-process set-up that preloading modules does not remove: loading the plugins folder (the
    task runner does it in every task process) and the first MLflow call on a SQL store."""
    _import_all(WORKER_MODULES + HEAVY_MODULES)
    from airflow.sdk.listener import get_listener_manager
    from airflow.sdk.plugins_manager import integrate_macros_plugins

    started = time.perf_counter()
    get_listener_manager()
    integrate_macros_plugins()
    plugins_s = time.perf_counter() - started
    loaded = sorted(
        n for n, m in list(sys.modules.items()) if str(REPO / "plugins") in str(getattr(m, "__file__", ""))
    )

    from mlcycle.core import settings
    from mlcycle.store import registry

    started = time.perf_counter()
    mlc = registry.client(settings.tracking_uri())
    found = registry.version_by_alias(mlc, model, registry.CHAMPION)
    mlflow_s = time.perf_counter() - started
    if found is None:
        raise SystemExit(f"no {model}@champion in {settings.tracking_uri()}")
    return {"plugins_s": plugins_s, "plugin_modules": loaded, "mlflow_store_s": mlflow_s}


def child_generate(model: str, days: int, rows: int) -> dict[str, Any]:
    from mlcycle.core import settings
    from mlcycle.core.spec import get_spec
    from mlcycle.data import lake as lk
    from mlcycle.data.generators import generate_batch

    spec = get_spec(model)
    if not spec.data.generator:
        raise SystemExit(f"spec {model} names no data.generator; cannot generate batches for it")
    if days > spec.data.training_window_days:
        raise SystemExit(
            f"--days {days} exceeds {model}'s training window ({spec.data.training_window_days})"
        )
    lake = lk.Lake(settings.lake_root(), model)
    today = dt.datetime.now(dt.UTC).date()
    for i in range(days):
        day = today - dt.timedelta(days=i)
        lk.write_parquet(generate_batch(spec.data.generator, day, rows), lake.batch_path(day))
    return {"batches": days, "rows": days * rows}


def child_main(args: argparse.Namespace) -> int:
    if args.child == "plain":
        out = child_plain(args.model)
    elif args.child == "imports":
        out = child_imports(args.modules.split(","))
    elif args.child == "setup":
        out = child_setup(args.model)
    elif args.child == "generate":
        out = child_generate(args.model, args.days, args.rows)
    elif args.child in MODES:
        out = child_dag(args.model, Mode(args.child, 1))
    else:
        raise SystemExit(f"unknown child mode {args.child}")
    emit(out)
    return 0


# --------------------------------------------------------------------------------------------
# Parent side: environment, processes.
# --------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.python: Path = args.python
        self.port = free_port()
        self.api: subprocess.Popen[bytes] | None = None
        self.base_env = airflow_env(
            tmp / "airflow",
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM="2",
            # Our own API server on a free port: never a developer's Airflow on :8080.
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{self.port}/execution/",
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(64),
        )

    def state_env(self, state: Path) -> dict[str, str]:
        """Fresh lake (a copy of the generated one), MLflow store, artifacts and ledger."""
        shutil.copytree(self.tmp / "lake-template", state / "lake")
        return {**self.base_env, **mlcycle_state(state)}

    def child(self, mode: str, env: dict[str, str], log: Path, *extra: str) -> dict[str, Any]:
        cmd = [
            str(self.python),
            str(Path(__file__).resolve()),
            "--child",
            mode,
            "--model",
            self.args.model,
            "--days",
            str(self.args.days),
            "--rows",
            str(self.args.rows),
            *extra,
        ]
        # Leftovers of the run (workers, forkserver) are in its process group: run_child stops them.
        done = run_child(cmd, env=env, timeout=self.args.timeout, log=log)
        if not done.ok:
            sys.exit(f"error: {mode} failed ({done.error(40)})\n(log: {log})")
        result = done.result or {}
        result["supervisor_s"] = {m.group(2): float(m.group(1)) for m in WORKLOAD_RE.finditer(done.stdout)}
        return result

    def migrate(self) -> None:
        done = subprocess.run(
            [str(self.python.parent / "airflow"), "db", "migrate"],
            capture_output=True,
            text=True,
            env=self.base_env,
            check=False,
        )
        if done.returncode != 0:
            sys.exit(f"error: airflow db migrate failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")

    def generate(self) -> None:
        env = {**self.base_env, "MLCYCLE_LAKE_ROOT": str(self.tmp / "lake-template")}
        self.child("generate", env, self.tmp / "generate.log")

    def start_api_server(self) -> float:
        log_path = self.tmp / "api-server.log"
        started = time.perf_counter()
        with log_path.open("ab") as log:
            self.api = subprocess.Popen(
                [
                    str(self.python.parent / "airflow"),
                    "api-server",
                    "--apps",
                    "execution",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-w",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.base_env,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{self.port}/execution/health"
        while time.perf_counter() - started < 90:
            if self.api.poll() is not None:
                sys.exit(f"error: airflow api-server exited ({self.api.returncode}):\n{tail_file(log_path)}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.5)
        sys.exit(f"error: airflow api-server did not answer {url} within 90 s:\n{tail_file(log_path)}")

    def ensure_api_server(self) -> None:
        if self.api is not None and self.api.poll() is None:
            return
        if self.api is not None:
            print(f"  note: the API server had exited ({self.api.returncode}); restarting it")
        self.start_api_server()

    def stop_api_server(self) -> None:
        if self.api is not None:
            stop_group(self.api)

    def setup_costs(self, state: Path) -> dict[str, Any]:
        """Per-process set-up in a fresh interpreter shaped like a task process (min of --import-runs)."""
        env = {**self.base_env, "MLFLOW_TRACKING_URI": mlcycle_state(state)["MLFLOW_TRACKING_URI"]}
        runs = [self.child("setup", env, self.tmp / "setup.log") for _ in range(self.args.import_runs)]
        return {
            "plugins_s": min(r["plugins_s"] for r in runs),
            "mlflow_store_s": min(r["mlflow_store_s"] for r in runs),
            "plugin_modules": runs[0]["plugin_modules"],
        }

    def import_costs(self) -> dict[str, float]:
        """Import time of each task's modules in a fresh interpreter shaped like a task process (min of
        --import-runs), and of all of them."""
        costs = {}
        for name, modules in {**TASK_IMPORTS, "all": HEAVY_MODULES}.items():
            samples = [
                self.child(
                    "imports", self.base_env, self.tmp / "imports.log", "--modules", ",".join(modules)
                )["import_s"]
                for _ in range(self.args.import_runs)
            ]
            costs[name] = min(samples)
        return costs


def ledger_rows(state: Path) -> int:
    with contextlib.closing(sqlite3.connect(state / "ledger.db")) as db:
        return db.execute("select count(*) from mlcycle_promotion_ledger").fetchone()[0]


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def per_task(result: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per task of a DAG run: duration, gap since the previous task ended (split at scheduled_dttm),
    and the supervisor's time beyond the task (fork, start-up calls, noticing the exit)."""
    tis = {ti["task_id"]: ti for ti in result["tis"]}
    rows: dict[str, dict[str, float | None]] = {}
    prev_end: float | None = result["t_call"]
    for task in TASKS:
        ti = tis[task]
        start, end, sched, dur = ti["start"], ti["end"], ti["scheduled"], ti["duration"]
        workload = result.get("supervisor_s", {}).get(ti["ti_id"])
        rows[task] = {
            "duration": dur,
            "gap": start - prev_end if start and prev_end else None,
            "to_scheduled": sched - prev_end if sched and prev_end else None,
            "to_start": start - sched if sched and start else None,
            "supervisor_extra": workload - dur if workload is not None and dur is not None else None,
        }
        prev_end = end
    rows["(run end)"] = {"gap": result["run_end"] - prev_end if prev_end else None}
    return rows


def medians(mode: Mode, key: str) -> dict[str, float | None]:
    """Median over runs of one per-task metric (plain: the step times)."""
    if mode.name == "plain":
        return {t: median(r["steps"].get(t) for r in mode.results) for t in TASKS}
    rows = [per_task(r) for r in mode.results]
    return {t: median(r[t].get(key) for r in rows) for t in [*TASKS, "(run end)"]}


def wall(mode: Mode) -> float:
    return statistics.median(r["wall_s"] for r in mode.results)


def summary_table(modes: list[Mode]) -> None:
    plain = next((m for m in modes if m.name == "plain"), None)
    ref = wall(plain) if plain else None
    w = max(26, *(len(m.name) for m in modes))
    print_header(
        f"{'mode':<{w}} {'runs':>4} {'median wall s':>13} {'min s':>7} {'excl. imports s':>15} "
        f"{'peak RSS MB':>11} {'vs plain':>9}  {'target':<9} result"
    )
    for mode in modes:
        walls = [r["wall_s"] for r in mode.results]
        excl = median(r.get("steps_s") for r in mode.results)
        rss = max(max(r["rss_self_mb"], r["rss_child_mb"]) for r in mode.results)
        overhead = (wall(mode) - ref) / ref * 100 if ref and mode is not plain else None
        target, result = ("reference", "-") if mode is plain else ("-", "-")
        if not mode.executor and mode is not plain and overhead is not None:
            target = f"< {DAG_TEST_TARGET_PCT:.0f} %"
            result = "PASS" if overhead < DAG_TEST_TARGET_PCT else "FAIL"
        print(
            f"{mode.name:<{w}} {len(walls):>4} {wall(mode):>13.2f} {min(walls):>7.2f} {fmt(excl):>15} "
            f"{rss:>11.0f} {'-' if overhead is None else f'{overhead:+.0f} %':>9}  {target:<9} {result}"
        )
    print(
        "wall: plain = heavy imports + steps; dag.test = the dag.test() call; executor modes = dag.test() "
        "call → DagRun finished."
    )
    for mode in modes:
        notes = []
        if mode.name == "plain":
            notes.append(f"heavy imports {fmt(median(r['import_s'] for r in mode.results))} s of the wall")
        if mode.executor:
            shut = median(r["returned_s"] - r["wall_s"] if r["returned_s"] else None for r in mode.results)
            notes.append(f"dag.test returned {fmt(shut)} s after the run finished (executor shutdown)")
            hangs = sum(r["end_hang"] for r in mode.results)
            if hangs:
                notes.append(f"{hangs} run(s) stuck in LocalExecutor.end() (stacks in the run log)")
        if mode.retried:
            notes.append(f"not counted (task retries): {'; '.join(mode.retried)}")
        for key, label in (
            ("forkserver_warmup_s", "forkserver warm-up"),
            ("execution_api_warmup_s", "in-process Execution API built"),
        ):
            value = median(r.get(key) for r in mode.results)
            if value is not None:
                notes.append(f"{label} {value:.2f} s before timing")
        if notes:
            print(f"  {mode.name}: {'; '.join(notes)}")


def task_tables(modes: list[Mode], imports: dict[str, float]) -> None:
    dag_modes = [m for m in modes if m.name != "plain"]
    width = max(14, *(len(m.name) for m in modes))

    def table(
        title: str, key: str, shown: list[Mode], extra: dict[str, float] | None = None, extra_title: str = ""
    ) -> None:
        print(title)
        cols = [m.name for m in shown] + ([extra_title] if extra is not None else [])
        print_header(f"{'task':<16} " + " ".join(f"{c:>{width}}" for c in cols))
        per_mode = [medians(m, key) for m in shown]
        rows = TASKS + (["(run end)"] if key == "gap" else [])
        for task in rows:
            cells = [fmt(values.get(task)) for values in per_mode]
            if extra is not None:
                cells.append(fmt(extra.get(task)))
            print(f"{task:<16} " + " ".join(f"{c:>{width}}" for c in cells))
        sums = [fmt(sum(v for v in values.values() if v is not None)) for values in per_mode]
        if extra is not None:
            sums.append(fmt(sum(extra.get(t, 0.0) for t in TASKS)))
        print(f"{'sum':<16} " + " ".join(f"{c:>{width}}" for c in sums))
        print()

    table(
        "Task duration s (task instance start → end; plain: the step)",
        "duration",
        list(modes),
        imports or None,
        "task imports",
    )
    if dag_modes:
        table(
            "Gap s (previous task's end, or the dag.test call → this task's start; last row: → DagRun end)",
            "gap",
            dag_modes,
        )
    executors = [m for m in modes if m.executor]
    if executors:
        table(
            "Supervisor time beyond the task s (fork + start-up calls before, noticing the exit after; "
            "holds the worker slot)",
            "supervisor_extra",
            executors,
        )
        for mode in executors:
            sched = sum(v or 0.0 for t, v in medians(mode, "to_scheduled").items() if t in TASKS)
            start = sum(v or 0.0 for t, v in medians(mode, "to_start").items() if t in TASKS)
            print(
                f"  {mode.name}: gaps = {sched:.2f} s end → scheduled (the dag.test loop polls every 1 s "
                f"while a task runs) + {start:.2f} s scheduled → started (worker pickup, fork, Execution API)"
            )
        print()


MLFLOW_TASKS = ("train_model", "evaluate_model", "gate", "promote")


def setup_section(imports: dict[str, float], setup: dict[str, Any]) -> None:
    print(
        "Per-process costs, in a fresh interpreter shaped like a task process (Airflow worker modules loaded):"
    )
    print(f"  import of each task's modules: {', '.join(f'{t} {imports[t]:.2f} s' for t in TASKS)}")
    print(f"  all heavy modules at once (what plain and dag.test pay once): {imports['all']:.2f} s")
    print(
        f"  loading the plugins folder (the task runner does it in every task process): {setup['plugins_s']:.2f} s"
        f"; it executes {len(setup['plugin_modules'])} modules: {', '.join(setup['plugin_modules'])}"
    )
    print(f"  first MLflow call on the SQLite store (engine + schema check): {setup['mlflow_store_s']:.2f} s")
    print()


def task_sum(mode: Mode, key: str) -> float:
    return sum(v or 0.0 for t, v in medians(mode, key).items() if t in TASKS or key == "gap")


def breakdown(modes: list[Mode], imports: dict[str, float], setup: dict[str, Any]) -> None:
    """What each mode's overhead vs plain is made of (medians), with the executor modes' task
    durations estimated from the per-process costs above. What it has shown is in bench/README.md."""
    by = {m.name: m for m in modes}
    plain = by.get("plain")
    if plain is None or len(by) < 2:
        return
    plain_work = statistics.median(r["steps_s"] for r in plain.results)
    plain_imports = statistics.median(r["import_s"] for r in plain.results)
    reimports = sum(imports[t] for t in TASKS) - imports["all"] if imports else 0.0
    plugins = len(TASKS) * setup.get("plugins_s", 0.0)
    stores = (len(MLFLOW_TASKS) - 1) * setup.get("mlflow_store_s", 0.0)
    ex = by.get("executor")
    print(f"Overhead vs plain ({wall(plain):.1f} s), medians:")
    for mode in [m for m in modes if m is not plain]:
        extra = task_sum(mode, "duration") - plain_work - plain_imports
        line = (
            f"  {mode.name}: {wall(mode) - wall(plain):+.1f} s = task durations {extra:+.1f} s "
            f"+ gaps between/around tasks {task_sum(mode, 'gap'):.1f} s"
        )
        if not mode.executor:
            first_gap = medians(mode, "gap")["resolve_data"] or 0.0
            first_task = (medians(mode, "duration")["resolve_data"] or 0.0) - (
                medians(plain, "")["resolve_data"] or 0.0
            )
            line += f"; before the first task {first_gap:.1f} s, first task {first_task:+.1f} s"
        elif imports:
            # The Makefile's forkserver preloads the heavy modules: no task imports them.
            imports_part = -imports["all"] if mode.name == MAKE_MODE else reimports
            total = imports_part + plugins + stores
            line += (
                f"; estimated: imports {imports_part:+.1f} s + plugins folder x6 {plugins:+.1f} s + MLflow "
                f"store x3 more {stores:+.1f} s = {total:+.1f} s (measured - estimated {extra - total:+.1f} s)"
            )
        if mode.executor and ex is not None and mode is not ex:
            line += f"; {(wall(mode) - wall(ex)) / wall(ex) * 100:+.0f} % vs executor"
        print(line)
    print()


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="churn", help="model spec name (default churn)")
    parser.add_argument("--days", type=int, default=10, help="daily batches (default 10)")
    parser.add_argument("--rows", type=int, default=10_000, help="rows per batch (default 10,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of plain and dag.test (default 3)")
    parser.add_argument("--executor-runs", type=int, default=2, help="runs of each executor mode (default 2)")
    parser.add_argument("--import-runs", type=int, default=2, help="fresh interpreters per import set (min)")
    parser.add_argument("--modes", default=DEFAULT_MODES, help=f"comma-separated (default {DEFAULT_MODES})")
    parser.add_argument(
        "--omp-threads",
        type=int,
        default=1,
        help="OMP_NUM_THREADS for every run (default 1: stable timings on a small shared machine; "
        "0 leaves OpenMP's default)",
    )
    parser.add_argument("--timeout", type=int, default=300, help="seconds allowed per run (default 300)")
    parser.add_argument("--python", type=Path, default=default_python(), help="interpreter of the venv")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory and its logs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--modules", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.child:
        bad = [m for m in args.modes.split(",") if m not in MODES]
        if bad:
            parser.error(f"unknown modes {bad}; use any of {', '.join(MODES)}")
        if min(args.runs, args.executor_runs, args.import_runs, args.days, args.rows) < 1:
            parser.error("counts must be positive")
    return args


def run_modes(bench: Bench, modes: list[Mode], started: float) -> None:
    w = max(len(m.name) for m in modes)
    for round_ in range(max(m.runs for m in modes)):
        for mode in modes:
            if round_ >= mode.runs:
                continue
            if mode.executor:
                bench.ensure_api_server()
            state = bench.tmp / f"run-{mode.name}-{round_}"
            state.mkdir()
            env = {**bench.state_env(state), **mode.env()}
            result = bench.child(mode.name, env, state / "run.log")
            if ledger_rows(state) != 1:
                sys.exit(f"error: {mode.name} run {round_ + 1} did not record one promotion in the ledger")
            retried = sorted(ti["task_id"] for ti in result.get("tis", []) if ti["try_number"] > 1)
            note = ""
            if retried:
                # A failed try (then a 1-minute retry delay) says nothing about orchestration cost.
                mode.retried.append(f"round {round_ + 1}: {', '.join(retried)} (log: {state / 'run.log'})")
                note = f"  NOT COUNTED: {', '.join(retried)} failed and retried"
            else:
                mode.results.append(result)
            print(
                f"  round {round_ + 1}: {mode.name:<{w}} {result['wall_s']:7.2f} s "
                f"({time.perf_counter() - started:.0f} s elapsed){note}",
                flush=True,
            )
    for mode in modes:
        if not mode.results:
            sys.exit(f"error: every {mode.name} run had task retries: {mode.retried}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)

    check_python(args.python, "airflow, mlflow, great_expectations, sklearn, mlcycle", commands=["airflow"])
    if not (SPECS_DIR / f"{args.model}.yaml").exists():
        sys.exit(f"error: no spec include/models/{args.model}.yaml")
    modes = [
        Mode(n, args.executor_runs if n.startswith("executor") else args.runs) for n in args.modes.split(",")
    ]
    if any(m.name == MAKE_MODE for m in modes):
        print(f"  {MAKE_MODE}: the Makefile's {makefile_settings()}")
    if args.omp_threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(args.omp_threads)  # for the children and machine()
    started = time.perf_counter()
    omp = args.omp_threads or "default"
    imports: dict[str, float] = {}
    setup: dict[str, Any] = {}
    with scratch_dir("mlcycle-bench-train-", keep=args.keep) as tmp:
        bench = Bench(args, tmp)
        print(
            f"train_{args.model} on {args.days} x {args.rows:,} rows; OMP_NUM_THREADS {omp}; {machine()}; "
            f"state in {tmp}"
        )
        try:
            bench.migrate()
            bench.generate()
            print(
                f"  airflow db migrate + data generation ({time.perf_counter() - started:.0f} s, not timed)"
            )
            if any(m.executor for m in modes):
                up = bench.start_api_server()
                print(f"  airflow api-server --apps execution on :{bench.port} up in {up:.1f} s (not timed)")
            run_modes(bench, modes, started)
            if any(m.executor for m in modes):
                imports = bench.import_costs()
                setup = bench.setup_costs(tmp / f"run-{modes[0].name}-0")
        finally:
            bench.stop_api_server()

    print()
    print(
        f"train_{args.model}, {args.days * args.rows:,} rows, v1 bootstrap on fresh state, OMP_NUM_THREADS {omp}"
    )
    print(f"{machine()}; project at {revision()}")
    summary_table(modes)
    print()
    task_tables(modes, imports)
    if imports:
        setup_section(imports, setup)
    breakdown(modes, imports, setup)
    print(f"total {time.perf_counter() - started:.0f} s")
    by = {m.name: m for m in modes}
    tested = [m for m in modes if m.name.startswith("dag.test")]
    if "plain" in by and tested:
        ref = wall(by["plain"])
        return 0 if all((wall(m) - ref) / ref * 100 < DAG_TEST_TARGET_PCT for m in tested) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
