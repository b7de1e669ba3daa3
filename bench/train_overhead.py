"""Orchestration overhead of one ``train_<model>`` run: plain Python vs ``dag.test()`` vs a real executor.

Every run trains a first version (bootstrap) on fresh MLflow, lake and ledger state, on
``--days`` daily batches of ``--rows`` rows (default 10 x 10,000 = 100,000 rows) ending
today (UTC). Each run is a fresh interpreter, so imports count once per process, as they
do in production. Modes:

``plain``
    the reference: ``mlcycle.flows.train`` resolve → validate → train → evaluate → gate →
    promote in one process. Its wall is the heavy imports plus the steps; the steps alone
    are reported as "excl. imports".
``dag.test``
    ``dag.test()`` in-process (``DagBag(dag_folder=dags/).dags['train_<model>']``). The
    Airflow import and the DAG parse are not timed; ``dag.test`` is. The first ``dag.test``
    call of a process also builds the in-process Execution API (a FastAPI app whose start-up
    generates cadwyn's versioned routes, ~3 s here); Airflow caches it for the life of the
    process (``supervisor.in_process_api_server``), so every later call skips it.
``dag.test+warmapi``
    the same, with that in-process Execution API built (and its start-up run by one request)
    before timing: what each ``dag.test`` call after the first in a process costs (a test
    session, a notebook), and what a deployment pays, whose API server is long-running.
``executor``
    ``dag.test(use_executor=True)`` with ``LocalExecutor``: each task runs in its own
    process (a LocalExecutor worker runs a supervisor that forks the task process), and
    the task talks to the Execution API over HTTP. So an API server is needed: ``airflow
    api-server --apps execution`` is started once (not timed) on a free local port, on the
    same SQLite DB. Wall = ``dag.test`` call → DagRun marked finished (what a trigger →
    done measurement with a scheduler gives); executor shutdown is reported apart.

Executor variants (suffixes, combinable: ``executor+forkserver+hb1``):

``+forkserver``
    ``[core] mp_start_method = forkserver`` and ``[core] mp_forkserver_preload = pandas,
    scikit-learn, MLflow, GX, ...`` (new in Airflow 3.3), applied the way ``airflow
    scheduler`` does (``set_component_mp_start_method("scheduler")``). The forkserver is
    warmed before timing, as in a scheduler that is already up.
``+gcfreeze`` (with ``+forkserver``)
    also preloads a module that calls ``gc.freeze()``, so the preloaded objects are left out
    of garbage collection in every task process (LocalExecutor's fork mode does the same).
``+preimport``
    default fork start method, with the heavy modules imported in the parent (the
    scheduler's role) before the executor forks its workers.
``+hb1``
    ``[workers] min_heartbeat_interval = 1`` (default 5): the task supervisor notices its
    task process has exited only when its ``select`` times out, up to this interval, and
    holds the worker slot until then.
``+p1``
    ``[core] parallelism = 1`` (default here 2): one worker slot, so a slot held after a
    task delays the next one (shows what ``+hb1`` saves).

Per-task durations and the gaps between tasks come from the task instances in the
metadata DB; the supervisor's time beyond the task from its "Workload finished" log line.
What each task process pays before doing any work is also measured in fresh interpreters
shaped like a task process: the import of each task's modules, loading the plugins
folder, and the first MLflow call on the SQLite store. These explain the executor's
overhead.

Run from the repository root::

    .venv/bin/python bench/train_overhead.py                      # churn, about 7 minutes
    .venv/bin/python bench/train_overhead.py --model demand --runs 3 --executor-runs 1
    .venv/bin/python bench/train_overhead.py --modes plain,dag.test
    .venv/bin/python bench/train_overhead.py --modes plain,executor+forkserver+p1,executor+forkserver+p1+hb1

All state (Airflow home and DB, lake, MLflow, ledger) goes to a temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import REPO, default_python, machine, revision  # bench/ is on sys.path when a script runs

MARKER = "@@RESULT@@"
DAG_TEST_TARGET_PCT = 30.0
TASKS = ["resolve_data", "validate_data", "train_model", "evaluate_model", "gate", "promote"]
DEFAULT_MODES = "plain,dag.test,dag.test+warmapi,executor,executor+forkserver,executor+forkserver+gcfreeze,executor+forkserver+gcfreeze+hb1"
EXECUTOR_FLAGS = {"forkserver", "gcfreeze", "preimport", "hb1", "p1"}
END_HANG_GRACE_S = 45  # after the DagRun finished, how long dag.test may take to shut the executor down

# What the operators import lazily in ``execute`` (via mlcycle.flows.train), in import order.
HEAVY_MODULES = [
    "pandas",
    "pyarrow.parquet",
    "sklearn.ensemble",
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.impute",
    "sklearn.preprocessing",
    "sklearn.metrics",
    "great_expectations",
    "mlflow",
    "mlflow.sklearn",
    "mlflow.models",
    "skops.io",
    "sqlalchemy",
    "mlcycle.flows.train",
    "mlcycle.data.contracts",
    "mlcycle.ml.training",
    "mlcycle.ml.evaluation",
    "mlcycle.ml.gate",
]
_SKLEARN = [
    "sklearn.ensemble",
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.impute",
    "sklearn.preprocessing",
]
# Modules each task's ``execute`` pulls in (timed per task in a fresh interpreter).
TASK_IMPORTS = {
    "resolve_data": ["mlcycle.flows.train", "pyarrow.parquet"],
    "validate_data": [
        "mlcycle.flows.train",
        "mlcycle.data.contracts",
        "pandas",
        "pyarrow.parquet",
        "great_expectations",
    ],
    "train_model": [
        "mlcycle.flows.train",
        "mlcycle.ml.training",
        "mlcycle.ml.evaluation",
        "pandas",
        "pyarrow.parquet",
        *_SKLEARN,
        "sklearn.metrics",
        "mlflow",
        "mlflow.sklearn",
        "mlflow.models",
        "skops.io",
    ],
    "evaluate_model": [
        "mlcycle.flows.train",
        "mlcycle.ml.evaluation",
        "pandas",
        "pyarrow.parquet",
        "sklearn.metrics",
        "mlflow",
        "mlflow.sklearn",
        "skops.io",
    ],
    "gate": ["mlcycle.flows.train", "mlcycle.ml.gate", "mlflow"],
    "promote": ["mlcycle.flows.train", "mlflow", "sqlalchemy"],
}
# Preloaded by the forkserver: the heavy modules, plus what a LocalExecutor worker needs.
FORKSERVER_PRELOAD = [
    "airflow.executors.local_executor",
    "airflow.sdk.execution_time.supervisor",
    "airflow.sdk.execution_time.task_runner",
    *HEAVY_MODULES,
]
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


@dataclass(eq=False)
class Mode:
    name: str
    runs: int
    results: list[dict[str, Any]] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)

    @property
    def executor(self) -> bool:
        return self.name.split("+")[0] == "executor"

    @property
    def flags(self) -> set[str]:
        return set(self.name.split("+")[1:])

    def env(self, base: dict[str, str], tmp: Path) -> dict[str, str]:
        extra = {}
        if "forkserver" in self.flags:
            preload = list(FORKSERVER_PRELOAD)
            if "gcfreeze" in self.flags:
                # A module whose import runs gc.freeze(), preloaded last: the preloaded objects leave
                # the collector's generations, as LocalExecutor does for its forked workers.
                folder = tmp / "preload"
                folder.mkdir(exist_ok=True)
                (folder / "bench_gc_freeze.py").write_text("import gc\n\ngc.freeze()\n")
                preload.append("bench_gc_freeze")
                extra["PYTHONPATH"] = os.pathsep.join([str(folder), base["PYTHONPATH"]])
            extra["AIRFLOW__CORE__MP_START_METHOD"] = "forkserver"
            extra["AIRFLOW__CORE__MP_FORKSERVER_PRELOAD"] = ",".join(preload)
        if "hb1" in self.flags:
            extra["AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL"] = "1"
        if "p1" in self.flags:
            extra["AIRFLOW__CORE__PARALLELISM"] = "1"
        return extra


def valid_mode(name: str) -> bool:
    base, *flags = name.split("+")
    if base == "plain":
        return not flags
    if base == "dag.test":
        return flags in ([], ["warmapi"])
    if "gcfreeze" in flags and "forkserver" not in flags:
        return False
    return base == "executor" and set(flags) <= EXECUTOR_FLAGS and len(set(flags)) == len(flags)


# --------------------------------------------------------------------------------------------
# Child side: runs in a fresh interpreter (``--child MODE``) and prints one JSON line.
# --------------------------------------------------------------------------------------------


def _rss_mb() -> dict[str, float]:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"rss_self_mb": own, "rss_child_mb": children}


def _import_all(modules: list[str]) -> float:
    import importlib

    started = time.perf_counter()
    for name in modules:
        importlib.import_module(name)
    return time.perf_counter() - started


def child_plain(model: str) -> dict[str, Any]:
    import_s = _import_all(HEAVY_MODULES)

    from mlcycle.core import settings
    from mlcycle.core.spec import get_spec
    from mlcycle.flows import train as steps

    spec = get_spec(model)
    run = steps.RunInfo(dag_id=spec.train_dag_id, run_id=f"bench__{time.time_ns()}", reason="bench")
    lake, uri = settings.lake_root(), settings.tracking_uri()
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
    trained = timed(
        "train_model", lambda: steps.train(spec, run, manifest_uri=manifest, lake_root=lake, tracking_uri=uri)
    )
    evaluation = timed(
        "evaluate_model",
        lambda: steps.evaluate(
            spec,
            run,
            version=trained["version"],
            holdout_uri=trained["holdout_uri"],
            lake_root=lake,
            tracking_uri=uri,
        ),
    )
    verdict = timed(
        "gate", lambda: steps.gate(spec, run, evaluation=evaluation, lake_root=lake, tracking_uri=uri)
    )
    promoted = timed("promote", lambda: steps.promote(spec, run, verdict=verdict, tracking_uri=uri))
    steps_s = time.perf_counter() - started
    if not promoted["promoted"] or trained["version"] != "1":
        raise SystemExit(f"plain run did not bootstrap v1: {promoted}")
    return {
        "wall_s": import_s + steps_s,
        "import_s": import_s,
        "steps_s": steps_s,
        "steps": timings,
        **_rss_mb(),
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
        print(MARKER + json.dumps({**result, **_rss_mb()}, default=str), flush=True)
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
        if "preimport" in mode.flags:
            prepare["parent_preimport_s"] = _import_all(HEAVY_MODULES)
        prepare["start_method"] = multiprocessing.get_start_method()
    if "warmapi" in mode.flags:
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
    return {**base, **run, "wall_s": wall, "returned_s": returned_s, "end_hang": False, **_rss_mb()}


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


def run_child(args: argparse.Namespace) -> int:
    if args.child == "plain":
        out = child_plain(args.model)
    elif args.child == "imports":
        out = child_imports(args.modules.split(","))
    elif args.child == "setup":
        out = child_setup(args.model)
    elif args.child == "generate":
        out = child_generate(args.model, args.days, args.rows)
    elif valid_mode(args.child):
        out = child_dag(args.model, Mode(args.child, 1))
    else:
        raise SystemExit(f"unknown child mode {args.child}")
    print(MARKER + json.dumps(out, default=str), flush=True)
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
        self.base_env = self._base_env()

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLCYCLE_", "MLFLOW_"))}
        home = self.tmp / "airflow"
        home.mkdir(parents=True, exist_ok=True)
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "2",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
                # Our own API server on a free port: never a developer's Airflow on :8080.
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
                "GX_ANALYTICS_ENABLED": "false",
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "MLCYCLE_HOME": str(REPO),
                "MLCYCLE_SPECS_DIR": str(REPO / "include" / "models"),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "plugins"), env.get("PYTHONPATH")])),
            }
        )
        if self.args.omp_threads > 0:
            env["OMP_NUM_THREADS"] = str(self.args.omp_threads)
        return env

    def state_env(self, state: Path) -> dict[str, str]:
        """Fresh lake (a copy of the generated one), MLflow store, artifacts and ledger."""
        shutil.copytree(self.tmp / "lake-template", state / "lake")
        return {
            **self.base_env,
            "MLCYCLE_LAKE_ROOT": str(state / "lake"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
            "MLCYCLE_ARTIFACT_ROOT": str(state / "mlartifacts"),
            "MLCYCLE_LEDGER_URI": f"sqlite:///{state / 'ledger.db'}",
        }

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
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
            try:
                proc.wait(timeout=self.args.timeout)
            except subprocess.TimeoutExpired:
                stop_group(proc)
                sys.exit(
                    f"error: {mode} did not finish in {self.args.timeout} s; last lines of {log}:\n{tail(log)}"
                )
            finally:
                stop_group(proc)  # leftovers of the run (workers, forkserver) are in its process group
        text = log.read_text(errors="replace")
        line = next((ln for ln in reversed(text.splitlines()) if ln.startswith(MARKER)), None)
        if proc.returncode != 0 or line is None:
            sys.exit(f"error: {mode} failed (exit {proc.returncode}); last lines of {log}:\n{tail(log)}")
        result = json.loads(line.removeprefix(MARKER))
        result["supervisor_s"] = {m.group(2): float(m.group(1)) for m in WORKLOAD_RE.finditer(text)}
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
                sys.exit(f"error: airflow api-server exited ({self.api.returncode}):\n{tail(log_path)}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.5)
        sys.exit(f"error: airflow api-server did not answer {url} within 90 s:\n{tail(log_path)}")

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
        env = {**self.base_env, "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}"}
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process this script started in its own session, with what is left of its group."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(0.2)  # let the group's other members handle the signal


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def ledger_rows(state: Path) -> int:
    with sqlite3.connect(state / "ledger.db") as db:
        return db.execute("select count(*) from mlcycle_promotion_ledger").fetchone()[0]


def check_python(python: Path, model: str) -> None:
    if not python.exists():
        sys.exit(f"error: {python} does not exist; create the venv (.venv) or pass --python")
    probe = subprocess.run(
        [str(python), "-c", "import airflow, mlflow, great_expectations, sklearn, mlcycle"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        sys.exit(
            f"error: {python} lacks airflow/mlflow/GX/sklearn/mlcycle; install requirements.txt and "
            f"`pip install -e .`:\n{probe.stderr.strip()[-1500:]}"
        )
    if not (python.parent / "airflow").exists():
        sys.exit(f"error: no `airflow` command beside {python}")
    if not (REPO / "include" / "models" / f"{model}.yaml").exists():
        sys.exit(f"error: no spec include/models/{model}.yaml")


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


def median_of(values: list[Any]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def medians(mode: Mode, key: str) -> dict[str, float | None]:
    """Median over runs of one per-task metric (plain: the step times)."""
    if mode.name == "plain":
        return {t: median_of([r["steps"].get(t) for r in mode.results]) for t in TASKS}
    rows = [per_task(r) for r in mode.results]
    return {t: median_of([r[t].get(key) for r in rows]) for t in [*TASKS, "(run end)"]}


def wall(mode: Mode) -> float:
    return statistics.median(r["wall_s"] for r in mode.results)


def summary_table(modes: list[Mode]) -> None:
    plain = next((m for m in modes if m.name == "plain"), None)
    ref = wall(plain) if plain else None
    w = max(26, *(len(m.name) for m in modes))
    header = (
        f"{'mode':<{w}} {'runs':>4} {'median wall s':>13} {'min s':>7} {'excl. imports s':>15} "
        f"{'peak RSS MB':>11} {'vs plain':>9}  {'target':<9} result"
    )
    print(header)
    print("-" * len(header))
    for mode in modes:
        walls = [r["wall_s"] for r in mode.results]
        excl = median_of([r.get("steps_s") for r in mode.results])
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
            notes.append(
                f"heavy imports {fmt(median_of([r['import_s'] for r in mode.results]))} s of the wall"
            )
        if mode.executor:
            shut = median_of(
                [r["returned_s"] - r["wall_s"] if r["returned_s"] else None for r in mode.results]
            )
            notes.append(f"dag.test returned {fmt(shut)} s after the run finished (executor shutdown)")
            hangs = sum(r["end_hang"] for r in mode.results)
            if hangs:
                notes.append(f"{hangs} run(s) stuck in LocalExecutor.end() (stacks in the run log)")
        if mode.retried:
            notes.append(f"not counted (task retries): {'; '.join(mode.retried)}")
        for key, label in (
            ("forkserver_warmup_s", "forkserver warm-up"),
            ("parent_preimport_s", "parent imports"),
            ("execution_api_warmup_s", "in-process Execution API built"),
        ):
            value = median_of([r.get(key) for r in mode.results])
            if value is not None:
                notes.append(f"{label} {value:.2f} s before timing")
        if notes:
            print(f"  {mode.name}: {'; '.join(notes)}")


def task_tables(modes: list[Mode], imports: dict[str, float]) -> None:
    dag_modes = [m for m in modes if m.name != "plain"]
    duration_modes = list(modes)
    width = max(14, *(len(m.name) for m in modes))

    def table(
        title: str, key: str, shown: list[Mode], extra: dict[str, float] | None = None, extra_title: str = ""
    ) -> None:
        print(title)
        cols = [m.name for m in shown] + ([extra_title] if extra is not None else [])
        header = f"{'task':<16} " + " ".join(f"{c:>{width}}" for c in cols)
        print(header)
        print("-" * len(header))
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
        duration_modes,
        imports or None,
        "task imports",
    )
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


def conclusion(modes: list[Mode], imports: dict[str, float], setup: dict[str, Any]) -> None:
    by = {m.name: m for m in modes}
    if "plain" not in by or len(by) < 2:
        return
    plain = by["plain"]
    plain_work = statistics.median(r["steps_s"] for r in plain.results)
    plain_imports = statistics.median(r["import_s"] for r in plain.results)
    reimports = sum(imports[t] for t in TASKS) - imports["all"] if imports else 0.0
    plugins = len(TASKS) * setup.get("plugins_s", 0.0)
    stores = (len(MLFLOW_TASKS) - 1) * setup.get("mlflow_store_s", 0.0)
    print(
        f"What the overhead vs plain ({wall(plain):.1f} s) is made of (medians; estimates from the costs above):"
    )
    for mode in [m for m in modes if m is not plain]:
        durations, gaps = task_sum(mode, "duration"), task_sum(mode, "gap")
        extra = durations - plain_work - plain_imports
        print(
            f"  {mode.name}: {wall(mode) - wall(plain):+.1f} s = task durations {extra:+.1f} s "
            f"+ gaps between/around tasks {gaps:.1f} s"
        )
        if not mode.executor:
            first_gap = medians(mode, "gap")["resolve_data"] or 0.0
            first_task = (medians(mode, "duration")["resolve_data"] or 0.0) - (
                medians(plain, "")["resolve_data"] or 0.0
            )
            print(
                f"      fixed, whatever the data size: {first_gap:.1f} s before the first task (DAG serialised and "
                f"synced to the DB, run created) + {first_task:.1f} s more in the first task ("
                + (
                    "plugins folder"
                    if "warmapi" in mode.flags
                    else "in-process Execution API app, plugins folder"
                )
                + "); the per-task remainder is small"
            )
            continue
        if not imports:
            continue
        preload = "forkserver" in mode.flags or "preimport" in mode.flags
        imports_part = -imports["all"] if preload else reimports
        label = "imports preloaded before timing" if preload else "re-imports"
        est = [f"{label} {imports_part:+.1f} s", f"plugins folder x6 {plugins:+.1f} s"]
        est.append(f"MLflow store x3 more {stores:+.1f} s")
        total = imports_part + plugins + stores
        print(
            f"      durations: {' + '.join(est)} = {total:.1f} s estimated (measured - estimated {extra - total:+.1f} s)"
        )
    ex = by.get("executor")
    if ex is None or not imports:
        print()
        return
    extra = task_sum(ex, "duration") - plain_work - plain_imports
    gaps = task_sum(ex, "gap")
    polling = sum(v or 0.0 for t, v in medians(ex, "to_scheduled").items() if t in TASKS)
    inside = {
        "re-importing pandas/scikit-learn/MLflow/GX": reimports,
        "a new MLflow SQL store": stores,
        "loading the plugins folder": plugins,
    }
    ranked = ", ".join(f"{k} ~{v:.1f} s" for k, v in sorted(inside.items(), key=lambda kv: -kv[1]))
    where = "inside the task processes" if extra >= gaps else "between the tasks"
    print(
        f"  => executor: {wall(ex) - wall(plain):+.1f} s, mostly {where}. Inside: {extra:+.1f} s of task "
        f"duration ({ranked}); between: {gaps:.1f} s ({polling:.1f} s of it waiting for the next scheduling "
        "pass, which comes every ~1 s)."
    )
    for mode in modes:
        if mode.executor and mode is not ex:
            change = (wall(mode) - wall(ex)) / wall(ex) * 100
            print(f"  {mode.name}: {wall(mode):.1f} s, {change:+.0f} % vs executor")
    print()


SUGGESTIONS = """\
Ways to cut the executor overhead (Airflow 3.3.2, LocalExecutor, Linux):
 1. [core] mp_start_method = forkserver + [core] mp_forkserver_preload = pandas,pyarrow.parquet,
    sklearn.ensemble,sklearn.pipeline,sklearn.compose,sklearn.impute,sklearn.preprocessing,sklearn.metrics,
    great_expectations,mlflow,mlflow.sklearn,skops.io,mlcycle.flows.train,... (new in 3.3; measured as
    +forkserver). The scheduler's forkserver imports them once; LocalExecutor workers fork from it and
    each task process is a bare os.fork() of its worker, so tasks inherit the modules copy-on-write.
    Costs one forkserver holding the libraries (shared pages) and ~5 s at scheduler start.
    Add, last in the preload list, a module whose import calls gc.freeze() (+gcfreeze): otherwise
    every task process's garbage collector walks all the preloaded objects (LocalExecutor freezes
    them itself only in fork mode); it saved ~0.4 s per task here.
 2. Keep the plugins folder cheap to load: the task runner loads it in every task process, and Airflow
    executes every .py under plugins/ as a top-level module (factory, hooks, operators, webapp, __init__
    ... next to the mlcycle_airflow.* copies). A plugins/.airflowignore that leaves only plugin.py, and a
    plugin that builds its FastAPI app lazily (not at class definition), save the set-up measured above
    in every task process, scheduler, dag-processor and API server.
 3. Per-task MLflow set-up: each task process opens its own SQLAlchemy store on the SQLite tracking DB
    (engine + schema check). With an MLflow tracking server (the mlflow_default connection) a client
    costs a few HTTP calls instead.
 4. [workers] min_heartbeat_interval = 1 (default 5; +hb1): the supervisor notices that its task process
    exited only when select() times out, so each worker slot stays busy up to 5 s after every task. With
    parallelism 2 and one linear DAG it is hidden (see the "supervisor time" table); with one slot (+p1)
    or busy slots the next task waits for it. Costs a heartbeat call per second per running task.
 5. With the default fork start method, importing the heavy modules in the scheduler before its executor
    forks the workers has the same effect as 1 (+preimport; e.g. from airflow_local_settings.py guarded
    to `airflow scheduler`); 1 does it by configuration.
 6. [core] execute_tasks_new_python_interpreter does nothing for tasks in Airflow 3: it survives only as
    a deprecated shim in airflow.settings; the supervisor always bare-forks on Linux (fork+exec on macOS
    only). If it did anything it would add interpreter start-up.
 7. Fewer task boundaries: gate and promote are cheap steps that each pay a process, plugin loading,
    Execution API calls and an MLflow store; one evaluate+gate+promote task (same failure semantics) would
    save two of those. Celery workers need the preload too (import in the worker at start).
"""


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
        bad = [m for m in args.modes.split(",") if not valid_mode(m)]
        if bad:
            parser.error(f"unknown modes {bad}; use plain, dag.test, executor[+forkserver][+preimport][+hb1]")
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
            env = bench.state_env(state)
            env.update(mode.env(env, bench.tmp))
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
        return run_child(args)

    check_python(args.python, args.model)
    modes = [
        Mode(n, args.executor_runs if n.startswith("executor") else args.runs) for n in args.modes.split(",")
    ]
    tmp = Path(tempfile.mkdtemp(prefix="mlcycle-bench-train-"))
    bench = Bench(args, tmp)
    started = time.perf_counter()
    omp = args.omp_threads or "default"
    print(
        f"train_{args.model} on {args.days} x {args.rows:,} rows; OMP_NUM_THREADS {omp}; {machine()}; state in {tmp}"
    )
    try:
        bench.migrate()
        bench.generate()
        print(f"  airflow db migrate + data generation ({time.perf_counter() - started:.0f} s, not timed)")
        if any(m.executor for m in modes):
            up = bench.start_api_server()
            print(f"  airflow api-server --apps execution on :{bench.port} up in {up:.1f} s (not timed)")
        run_modes(bench, modes, started)
        imports, setup = {}, {}
        if any(m.executor for m in modes):
            imports = bench.import_costs()
            setup = bench.setup_costs(tmp / f"run-{modes[0].name}-0")
    finally:
        bench.stop_api_server()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

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
    conclusion(modes, imports, setup)
    print(SUGGESTIONS)
    print(f"total {time.perf_counter() - started:.0f} s")
    by = {m.name: m for m in modes}
    tested = [m for m in modes if m.name.startswith("dag.test")]
    if "plain" in by and tested:
        ref = wall(by["plain"])
        return 0 if all((wall(m) - ref) / ref * 100 < DAG_TEST_TARGET_PCT for m in tested) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
