"""Faults injected for real, one test each: the MLflow tracking server going away, the task
process killed, two promotions racing, and storage that refuses writes. Each test's docstring
says what is injected, how, and what must hold; docs/reliability.md lists them with who
recovers what.

How the faults are made (nothing here mocks a result):

- a real ``mlflow server`` (SQLite store and artifacts in a tmp folder, one worker) is killed
  with SIGKILL, with its workers, at the moment the test chooses, and started again on the same
  port and store;
- a step runs in a child Python process that stops at a named point (it writes a marker file
  and waits there); the test SIGKILLs it at that point and runs the step again;
- two promotions run in two threads with their own MLflow clients, the registry made slow to
  answer so that both read the old champion unless something serialises them;
- storage refusals come from the kernel: a full or read-only tmpfs where mounting is allowed
  (root or CAP_SYS_ADMIN; skipped otherwise), and a file size limit (``RLIMIT_FSIZE``, EFBIG),
  which any user can set on a child process.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from airflow.sdk.exceptions import AirflowFailException
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlcycle.core.errors import MlcycleError, PromotionConflictError, StorageWriteError, ValidationFailedError
from mlcycle.core.run import RunInfo
from mlcycle.core.spec import get_spec
from mlcycle.data import lake as lk
from mlcycle.data.lake import RunFile
from mlcycle.flows import score
from mlcycle.flows import train as steps
from mlcycle.store import ledger, registry
from mlcycle_airflow.operators import PromoteModelOperator, TrainModelOperator
from tests.conftest import Env, golden_end, pointed_at, relocate, today, write_batches
from tests.operators.conftest import execute_outside_the_task_runner, no_mlflow_connection  # noqa: F401
from tests.operators.test_operators import task_context
from tests.services.topology import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from mlcycle.core.results import GateResult

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.filterwarnings("ignore:::mlflow.*")]

MODEL = "churn"
DAG_ID = f"train_{MODEL}"
END = dt.date(2026, 3, 10)


# --- what the tests look at ---------------------------------------------------------------------


def versions_of(mlc: MlflowClient, run_id: str) -> list[str]:
    """The versions registered by one Airflow run (by the run tags every version carries)."""
    found = mlc.search_model_versions(f"name = '{MODEL}' and tags.`{registry.TAG_RUN_ID}` = '{run_id}'")
    return sorted(str(v.version) for v in found)


def mlflow_runs_of(mlc: MlflowClient, run_id: str) -> list[str]:
    """The MLflow training runs recording one Airflow run."""
    experiment = mlc.get_experiment_by_name(MODEL)
    assert experiment is not None
    runs = mlc.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{registry.TAG_RUN_ID}` = '{run_id}'"
    )
    return [r.info.run_id for r in runs]


def alias(mlc: MlflowClient, name: str) -> str | None:
    mv = registry.version_by_alias(mlc, MODEL, name)
    return str(mv.version) if mv else None


def moves(env: Env) -> list[tuple[str | None, str, str]]:
    """The ledger of the model, newest first, as (previous, new, action)."""
    return [(e.previous_version, e.new_version, e.action) for e in ledger.history(MODEL, uri=env.ledger_uri)]


def is_temporary(path: Path) -> bool:
    """An atomic write's temporary file (``.<name>.tmp``, see ``mlcycle.data.lake.atomic_write``)."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def temporaries_beside_whole_files(root: str | Path) -> list[Path]:
    """Check that every file published under ``root`` is whole (Parquet reads to the end, JSON
    parses); return the atomic-write temporaries found beside them."""
    import pyarrow.parquet as pq

    temporaries = []
    for path in sorted(Path(root).rglob("*")):
        if not path.is_file():
            continue
        if is_temporary(path):
            temporaries.append(path)
        elif path.suffix == ".parquet":
            pq.read_table(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
    return temporaries


def gated_candidate(env: Env, run: RunInfo) -> GateResult:
    """A candidate of ``run`` that passed its gate against the golden champion v1: a forced
    retrain on v1's own window (identical data and spec, so an identical model: it cannot do
    worse, and the gate's comparison rules pass deterministically)."""
    spec = get_spec(MODEL)
    m = steps.resolve(spec, run, lake_root=env.lake, as_of=golden_end())
    t = steps.train(spec, run, env.mlc, manifest_uri=m["manifest_uri"], lake_root=env.lake, force=True)
    assert not t["skipped"]
    e = steps.evaluate(
        spec, run, env.mlc, version=t["version"], holdout_uri=t["holdout_uri"], lake_root=env.lake
    )
    verdict = steps.gate(spec, run, env.mlc, evaluation=e, lake_root=env.lake)
    assert verdict["passed"] and verdict["champion_version"] == "1", verdict["summary"]
    return verdict


# Two training runs whose candidates passed their gate against the golden champion v1.
RACERS = (RunInfo(DAG_ID, "manual__racer_a"), RunInfo(DAG_ID, "scheduled__racer_b"))


@pytest.fixture(scope="module")
def gated_store(golden_store: Path, tmp_path_factory) -> tuple[Path, dict[str, GateResult]]:
    """The golden store plus the gated candidates of ``RACERS`` (v2, then v3), made once per
    module: (its root, each racer's verdict)."""
    root = tmp_path_factory.mktemp("gated")
    relocate(golden_store, root)
    with pointed_at(root) as store:
        verdicts = {run.run_id: gated_candidate(store, run) for run in RACERS}
    assert [verdicts[run.run_id]["version"] for run in RACERS] == ["2", "3"]
    return root, verdicts


@pytest.fixture
def gated_env(env: Env, gated_store: tuple[Path, dict[str, GateResult]]) -> tuple[Env, dict[str, GateResult]]:
    """This test's copy of the gated store, and the racers' verdicts pointing into the copy."""
    root, verdicts = gated_store
    relocate(root, env.root)
    return env, json.loads(json.dumps(verdicts).replace(str(root), str(env.root)))


# --- (a) the tracking server goes away -------------------------------------------------------------


class MlflowServer:
    """A real ``mlflow server`` subprocess (SQLite store and proxied artifacts under ``root``, one
    worker) that a test can kill and start again on the same port and store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self) -> str:
        return (self.root / f"server-{self.starts}.log").read_text(errors="replace")[-3000:]

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:  # refused, reset or timed out: not answering
            return False

    def start(self, timeout: float = 180) -> None:
        self.starts += 1
        # The job runner (and its huey consumers) is not needed to track and register; without it
        # the server starts in a third of the time and is one process tree to kill.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        with (self.root / f"server-{self.starts}.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "mlflow"), "server",
                    "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                    "--artifacts-destination", str(self.root / "artifacts"),
                    "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                ],
                cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.3)

    def kill(self) -> None:
        """SIGKILL the server and its workers at once: a crash or a lost host, not a shutdown."""
        assert self.proc is not None, "the server is not running"
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None
        assert not self.answers()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> Iterator[MlflowServer]:
    """One server for the module (starting one takes 7-25 s); each test restarts it if needed."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    if server.proc is not None:
        server.kill()


@pytest.fixture
def server(mlflow_server: MlflowServer, env: Env, monkeypatch) -> MlflowServer:
    """The server, up, and this test's tasks pointed at it through the hook's Airflow connection
    (as a distributed deployment configures it). MLflow's client retries each request with
    exponential backoff (7 retries over about 4 minutes by default); here 2 (after 0 s, then 2 s)."""
    if mlflow_server.proc is None:
        mlflow_server.start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        json.dumps({"conn_type": "mlflow", "host": "127.0.0.1", "port": mlflow_server.port}),
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    return mlflow_server


def train_task(env: Env, manifest_uri: str) -> TrainModelOperator:
    return TrainModelOperator(task_id="train", model=MODEL, manifest_uri=manifest_uri, lake_root=env.lake)


def resolved(env: Env, run_id: str) -> str:
    """Land a week of batches ending at END and resolve them for ``run_id``: the manifest URI."""
    write_batches(env.lake, MODEL, END, days=7)
    return steps.resolve(get_spec(MODEL), RunInfo(DAG_ID, run_id), lake_root=env.lake, as_of=END)[
        "manifest_uri"
    ]


def test_tracking_server_down_when_training_starts(server: MlflowServer, env: Env):
    """Injected: the MLflow server (a real ``mlflow server`` process) is SIGKILLed, with its
    workers, before the train task starts; the task runs as Airflow runs it
    (``TrainModelOperator.execute``) with the hook's connection pointing at the server.
    Must hold: the task fails with MLflow's connection error after the client's own retries
    with backoff, not with a domain error, so Airflow retries it (a domain error would be an
    ``AirflowFailException``: no retries); once the server is back on the same port and store,
    the retry trains: one MLflow run and one version for the Airflow run, aliased challenger."""
    run_id = "manual__server_down_at_start"
    manifest_uri = resolved(env, run_id)
    server.kill()

    started = time.monotonic()
    with pytest.raises(MlflowException, match=r"Max retries exceeded|Connection refused") as failed:
        train_task(env, manifest_uri).execute(task_context(run_id=run_id))
    assert not isinstance(failed.value, MlcycleError | AirflowFailException)
    assert time.monotonic() - started >= 2.0, "MLflow's client gave up without backing off"

    server.start()
    mlc = registry.client(server.uri)
    assert versions_of(mlc, run_id) == []
    out = train_task(env, manifest_uri).execute(task_context(run_id=run_id))
    assert out["created"] is True
    assert versions_of(mlc, run_id) == [out["version"]]
    assert len(mlflow_runs_of(mlc, run_id)) == 1
    assert alias(mlc, registry.CHALLENGER) == out["version"]


def test_tracking_server_down_between_registering_and_aliasing(server: MlflowServer, env: Env, monkeypatch):
    """Injected: the MLflow server is SIGKILLed after the train task registered its version and
    before it moved alias challenger: the test wraps ``MlflowClient.set_registered_model_alias``
    so that its first call kills the server and then goes on, against the dead server.
    Must hold: the task fails with a retriable (non-domain) error, leaving the version registered
    and the alias where it was; after the restart the retry finds that version by its run tags
    (``registry.version_for_run``, a tag search on the server), registers no second one, and
    points challenger at it."""
    run_id = "manual__server_down_before_alias"
    manifest_uri = resolved(env, run_id)
    mlc = registry.client(server.uri)
    challenger_before = alias(mlc, registry.CHALLENGER)
    real = MlflowClient.set_registered_model_alias
    outages = []

    def set_alias_after_an_outage(self: MlflowClient, name: str, alias: str, version: str) -> None:
        if not outages:
            outages.append(alias)
            server.kill()
        real(self, name, alias, version)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", set_alias_after_an_outage)
    with pytest.raises(MlflowException, match=r"Max retries exceeded|Connection refused") as failed:
        train_task(env, manifest_uri).execute(task_context(run_id=run_id))
    assert not isinstance(failed.value, MlcycleError | AirflowFailException)
    assert outages == [registry.CHALLENGER]

    server.start()
    (registered,) = versions_of(mlc, run_id)
    assert alias(mlc, registry.CHALLENGER) == challenger_before
    out = train_task(env, manifest_uri).execute(task_context(run_id=run_id))
    assert (out["created"], out["version"]) == (False, registered)
    assert versions_of(mlc, run_id) == [registered]
    assert len(mlflow_runs_of(mlc, run_id)) == 1
    assert alias(mlc, registry.CHALLENGER) == registered


# --- (b) the task process is killed ----------------------------------------------------------------

# A step in a child process that stops at a named point: it writes the marker file and waits there
# for the test's SIGKILL. The points are wrapped around the real functions of the step.
CHILD = r"""
import json, pathlib, sys, time

args = json.loads(sys.argv[1])


def pause():
    pathlib.Path(args["marker"]).write_text(args["point"])
    time.sleep(600)


import mlflow

from mlcycle.core.run import RunInfo
from mlcycle.core.spec import get_spec
from mlcycle.flows import train as steps
from mlcycle.store import ledger, registry


def wrap(owner, name, *, after=False, when=lambda *a, **k: True):
    real = getattr(owner, name)

    def wrapper(*a, **k):
        if not after and when(*a, **k):
            pause()
        out = real(*a, **k)
        if after:
            pause()
        return out

    setattr(owner, name, wrapper)


point = args["point"]
if point == "holdout":  # the holdout's bytes are written to its temporary file, not renamed yet
    wrap(pathlib.Path, "rename", when=lambda self, target: self.name == ".holdout.parquet.tmp")
elif point == "registered":  # the version is registered, alias challenger not moved yet
    wrap(registry, "register_version", after=True)
elif point == "alias":  # inside the champion lock, just before the alias moves
    wrap(mlflow.MlflowClient, "set_registered_model_alias")
elif point == "ledger":  # the alias moved, the ledger entry not written yet
    wrap(ledger, "append")
else:
    raise SystemExit(f"unknown point {point}")

spec = get_spec(args["model"])
run = RunInfo(args["dag_id"], args["run_id"])
mlc = registry.client(args["tracking_uri"])
if args["step"] == "train":
    steps.train(spec, run, mlc, manifest_uri=args["manifest_uri"], lake_root=args["lake_root"])
else:
    steps.promote(
        spec, run, mlc, verdict=args["verdict"], ledger_uri=args["ledger_uri"], lake_root=args["lake_root"]
    )
raise SystemExit(3)  # the step ended without reaching its point
"""


def kill_at(point: str, tmp_path: Path, **args: Any) -> None:
    """Run a step in a child process until it reaches ``point``, then SIGKILL it there."""
    marker = tmp_path / f"reached-{point}"
    log_path = tmp_path / f"child-{point}.log"
    payload = json.dumps({"point": point, "marker": str(marker), "model": MODEL, "dag_id": DAG_ID, **args})
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, payload], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(
                f"the step exited ({proc.returncode}) before {point}:\n{log_path.read_text()[-3000:]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the step did not reach {point} within 300 s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


@pytest.mark.parametrize("point", ["holdout", "registered"])
def test_train_task_killed_then_rerun(champion_env: Env, tmp_path: Path, point: str):
    """Injected: SIGKILL of the process running the train step (``flows.train.train`` in a child
    process over the golden store, churn v1 champion, with a new day of data) at ``point``:
    ``holdout``, while the holdout file is being published (its bytes are in ``.holdout.parquet.tmp``,
    the rename not done; the MLflow run exists, nothing is registered); ``registered``, right after
    the version was registered and before alias challenger moved.
    Must hold: the kill left no half file under a real name (the holdout is absent, not partial);
    the rerun finishes with one MLflow run and one version for the Airflow run (v2), challenger
    on it, the champion untouched, every published file whole and no temporary left."""
    env = champion_env
    spec = get_spec(MODEL)
    write_batches(env.lake, MODEL, today(), days=1)
    run = RunInfo(DAG_ID, f"manual__killed_at_{point}")
    manifest_uri = steps.resolve(spec, run, lake_root=env.lake, as_of=today())["manifest_uri"]
    args = {"run_id": run.run_id, "manifest_uri": manifest_uri, "lake_root": env.lake}
    kill_at(point, tmp_path, step="train", tracking_uri=env.tracking_uri, **args)

    mlc = env.mlc
    holdout = Path(str(lk.Lake(env.lake, MODEL).run_file(run.key, RunFile.HOLDOUT)))
    if point == "holdout":
        assert not holdout.exists()
        assert temporaries_beside_whole_files(env.lake) == [holdout.with_name(f".{holdout.name}.tmp")]
        assert versions_of(mlc, run.run_id) == []
    else:
        assert versions_of(mlc, run.run_id) == ["2"]
        assert alias(mlc, registry.CHALLENGER) == "1"
    assert len(mlflow_runs_of(mlc, run.run_id)) == 1

    out = steps.train(spec, run, mlc, manifest_uri=manifest_uri, lake_root=env.lake)
    assert not out["skipped"]
    assert (out["version"], out["created"]) == ("2", point == "holdout")
    assert versions_of(mlc, run.run_id) == ["2"]
    assert sorted(str(v.version) for v in mlc.search_model_versions(f"name = '{MODEL}'")) == ["1", "2"]
    assert len(mlflow_runs_of(mlc, run.run_id)) == 1
    assert (alias(mlc, registry.CHALLENGER), alias(mlc, registry.CHAMPION)) == ("2", "1")
    assert holdout.exists()
    assert temporaries_beside_whole_files(env.lake) == []


@pytest.mark.parametrize("point", ["alias", "ledger"])
def test_promote_task_killed_then_rerun(
    gated_env: tuple[Env, dict[str, GateResult]], tmp_path: Path, point: str
):
    """Injected: SIGKILL of the process running the promote step (``flows.train.promote`` in a
    child process) for a candidate v2 that passed its gate against champion v1, at ``point``:
    ``alias``, inside the champion lock just before the alias moves (the dead process held the
    ledger database's lock); ``ledger``, after the alias moved and before the ledger entry.
    Must hold: the rerun is not blocked by the dead holder's lock (the database released it with
    the process) and finishes: champion v2, the move v1 -> v2 in the ledger exactly once, v2's
    holdout rows in the trusted set once; a second rerun changes nothing."""
    env, verdicts = gated_env
    run = RACERS[0]
    verdict = verdicts[run.run_id]
    assert verdict["version"] == "2"
    kill_at(
        point,
        tmp_path,
        step="promote",
        run_id=run.run_id,
        verdict=verdict,
        tracking_uri=env.tracking_uri,
        ledger_uri=env.ledger_uri,
        lake_root=env.lake,
    )
    assert alias(env.mlc, registry.CHAMPION) == ("1" if point == "alias" else "2")
    assert moves(env) == [(None, "1", "bootstrap")]

    def promote() -> dict[str, Any]:
        return dict(
            steps.promote(
                get_spec(MODEL), run, env.mlc, verdict=verdict, ledger_uri=env.ledger_uri, lake_root=env.lake
            )
        )

    out = promote()
    assert (out["promoted"], out["previous_version"], out["ledger_recorded"]) == (point == "alias", "1", True)
    assert alias(env.mlc, registry.CHAMPION) == "2"
    assert moves(env) == [("1", "2", "promote"), (None, "1", "bootstrap")]
    assert [v.added_from for v in lk.trusted_versions(lk.Lake(env.lake, MODEL))] == ["1", "2"]

    assert promote()["ledger_recorded"] is False
    assert moves(env) == [("1", "2", "promote"), (None, "1", "bootstrap")]
    assert [v.added_from for v in lk.trusted_versions(lk.Lake(env.lake, MODEL))] == ["1", "2"]
    assert temporaries_beside_whole_files(env.lake) == []


# --- (c) two promotions race -------------------------------------------------------------------------


def test_two_promotions_race_and_the_loser_is_recorded_as_superseded(
    gated_env: tuple[Env, dict[str, GateResult]], monkeypatch
):
    """Injected: two training runs whose candidates (v2, v3) both passed their gate against the
    same champion (v1) promote at the same moment, from two threads with their own MLflow
    clients, while the registry is slow to answer (every read of an alias returns 0.5 s late,
    the test wraps ``MlflowClient.get_model_version_by_alias``): both would read v1 and both
    move the alias unless the moves are serialised.
    Must hold: exactly one wins (champion = the winner, one ``promote`` ledger entry); the
    loser's promotion fails with ``PromotionConflictError`` saying it is superseded, its version
    is tagged ``promotion.superseded_by=<winner>``, the ledger has one ``superseded`` entry for
    it; run again as Airflow runs it, the loser's task fails without retries
    (``AirflowFailException``) with that message and records nothing twice."""
    env, verdicts = gated_env
    spec = get_spec(MODEL)
    runs = RACERS

    real = MlflowClient.get_model_version_by_alias

    def slow_read(self: MlflowClient, name: str, alias: str) -> Any:
        found = real(self, name, alias)
        time.sleep(0.5)
        return found

    monkeypatch.setattr(MlflowClient, "get_model_version_by_alias", slow_read)
    start = threading.Barrier(len(runs))
    outcomes: dict[str, Any] = {}

    def promote(run: RunInfo) -> None:
        mlc = registry.client(env.tracking_uri)
        start.wait(timeout=60)
        try:
            outcomes[run.run_id] = steps.promote(
                spec, run, mlc, verdict=verdicts[run.run_id], ledger_uri=env.ledger_uri, lake_root=env.lake
            )
        except Exception as exc:  # kept and asserted below: the loser's error is the point
            outcomes[run.run_id] = exc

    threads = [threading.Thread(target=promote, args=(run,)) for run in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    won = [r for r, o in outcomes.items() if isinstance(o, dict)]
    lost = [r for r, o in outcomes.items() if isinstance(o, PromotionConflictError)]
    assert (len(won), len(lost)) == (1, 1), outcomes
    winner, loser = verdicts[won[0]]["version"], verdicts[lost[0]]["version"]
    assert re.search(rf"is v{winner}, but this promotion was decided against v1", str(outcomes[lost[0]]))
    assert f"recorded as superseded by v{winner}" in str(outcomes[lost[0]])

    mlc = env.mlc
    assert alias(mlc, registry.CHAMPION) == winner
    assert mlc.get_model_version(MODEL, loser).tags[registry.TAG_SUPERSEDED_BY] == winner
    assert mlc.get_model_version(MODEL, loser).tags[registry.TAG_VERDICT] == "pass"
    expected = {(None, "1", "bootstrap"), ("1", winner, "promote"), ("1", loser, "superseded")}
    assert set(moves(env)) == expected and len(moves(env)) == 3
    (entry,) = [e for e in ledger.history(MODEL, uri=env.ledger_uri) if e.action == "superseded"]
    assert (entry.run_id, entry.reason) == (
        lost[0],
        f"passed its gate against v1, but v{winner} became champion first",
    )

    task = PromoteModelOperator(
        task_id="promote", model=MODEL, verdict=verdicts[lost[0]], ledger_uri=env.ledger_uri
    )
    with pytest.raises(AirflowFailException, match=rf"recorded as superseded by v{winner}"):
        task.execute(task_context(run_id=lost[0]))
    assert len(moves(env)) == 3
    assert alias(mlc, registry.CHAMPION) == winner


# --- (d) storage that refuses writes -----------------------------------------------------------------


@pytest.fixture
def tmpfs() -> Iterator[Callable[[Path, str], Path]]:
    """``mount(folder, options)``: a tmpfs mounted on ``folder`` (e.g. ``size=16k``), unmounted at
    the end. Needs root or CAP_SYS_ADMIN: skipped otherwise (the EFBIG test needs neither)."""
    mounted: list[Path] = []

    def mount(folder: Path, options: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        if shutil.which("mount") is None:
            pytest.skip("no mount command here: install util-linux (mount) to run this test")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(
                f"cannot mount a tmpfs here ({done.stderr.strip()}): run the tests as root or with "
                "CAP_SYS_ADMIN; test_file_size_limit_while_scoring covers the unprivileged case"
            )
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", str(folder)], check=True)


def remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)


def test_disk_full_while_quarantining(env: Env, tmpfs):
    """Injected: the quarantine folder is a 16 KiB tmpfs, too small for the copy of the bad batch
    that validation quarantines: the kernel refuses the write with ENOSPC.
    Must hold: the step fails with ``StorageWriteError`` naming the file, "No space left on
    device (ENOSPC)" and the fix; it is an ``OSError``, not a domain error, so Airflow retries it;
    nothing is left in quarantine (no partial copy, no temporary). Once the disk has room, the
    retry quarantines the batch completely and fails as a validation failure should."""
    spec = get_spec(MODEL)
    (bad,) = write_batches(env.lake, MODEL, END, days=1, corrupt=True)
    run = RunInfo(DAG_ID, "manual__disk_full")
    quarantine = tmpfs(Path(env.lake) / MODEL / "quarantine", "size=16k")
    manifest_uri = steps.resolve(spec, run, lake_root=env.lake, as_of=END)["manifest_uri"]

    copy = quarantine / run.key / bad.name
    with pytest.raises(
        StorageWriteError, match=rf"cannot write {re.escape(str(copy))}: No space left on device \(ENOSPC\)"
    ) as failed:
        steps.validate(spec, run, manifest_uri=manifest_uri, lake_root=env.lake)
    assert not isinstance(failed.value, MlcycleError)
    assert (failed.value.errno, failed.value.filename) == (errno.ENOSPC, str(copy))
    assert "free space or grow the volume" in str(failed.value)
    assert [p for p in quarantine.rglob("*") if p.is_file()] == []
    assert lk.Lake(env.lake, MODEL).quarantine_index().find(bad) is None

    remount(quarantine, "size=8m")
    with pytest.raises(ValidationFailedError, match="quarantined 1 batch"):
        steps.validate(spec, run, manifest_uri=manifest_uri, lake_root=env.lake)
    assert lk.Lake(env.lake, MODEL).quarantine_index().find(bad) is not None
    assert temporaries_beside_whole_files(env.lake) == []


def score_run(env: Env, run_id: str) -> tuple[RunInfo, str, dict[str, Any], list[Any]]:
    """Score the golden store's newest batch with the champion up to the merge: (run, batch URI,
    model choice, partition results)."""
    spec = get_spec(MODEL)
    run = RunInfo(f"score_{MODEL}", run_id)
    batch = lk.uri_of(lk.Lake(env.lake, MODEL).batches()[-1][1])
    choice = score.choose_model(spec, env.mlc)
    parts = [
        score.score_partition(
            spec, run, env.mlc, batch_uri=batch, partition=p, model=choice, lake_root=env.lake
        )
        for p in score.plan(batch, 1_000_000)
    ]
    return run, batch, dict(choice), parts


def test_read_only_lake_while_writing_predictions(champion_env: Env, tmpfs):
    """Injected: the predictions folder is a tmpfs holding an earlier run's prediction file,
    remounted read-only before the next scoring run merges its partitions into that file: the
    kernel refuses with EROFS.
    Must hold: ``finalize`` fails with ``StorageWriteError`` naming the prediction file and
    "Read-only file system (EROFS)"; the earlier file is byte for byte unchanged, no temporary is
    left, the run's partitions are kept; remounted read-write, the retry publishes the new file."""
    env = champion_env
    spec = get_spec(MODEL)
    predictions = tmpfs(Path(str(lk.Lake(env.lake, MODEL).predictions)), "size=8m")
    earlier_run, batch, choice, parts = score_run(env, "manual__earlier")
    score.finalize(spec, earlier_run, env.mlc, batch_uri=batch, parts=parts, model=choice, lake_root=env.lake)
    target = predictions / Path(batch).name
    earlier = target.read_bytes()

    run, batch, choice, parts = score_run(env, "manual__read_only")
    remount(predictions, "ro")
    with pytest.raises(
        StorageWriteError, match=rf"cannot write {re.escape(str(target))}: Read-only file system \(EROFS\)"
    ) as failed:
        score.finalize(spec, run, env.mlc, batch_uri=batch, parts=parts, model=choice, lake_root=env.lake)
    assert not isinstance(failed.value, MlcycleError)
    assert target.read_bytes() == earlier
    assert [p.name for p in predictions.iterdir()] == [target.name]
    assert all(Path(p["part_uri"]).exists() for p in parts)

    remount(predictions, "rw")
    report = score.finalize(
        spec, run, env.mlc, batch_uri=batch, parts=parts, model=choice, lake_root=env.lake
    )
    assert report["rows"] == sum(p["rows"] for p in parts)
    assert lk.read_parquet([target])["run_id"].unique().tolist() == [run.run_id]
    assert temporaries_beside_whole_files(env.lake) == []


# The churn champion scores a batch in a child process whose file size limit (RLIMIT_FSIZE) is set
# once the model is loaded, so only the prediction file can exceed it.
SCORE_UNDER_A_LIMIT = r"""
import json, resource, sys

from mlcycle.core.spec import get_spec
from mlcycle.ml import scoring
from mlcycle.store import registry

args = json.loads(sys.argv[1])
spec = get_spec("churn")
model = registry.load_sklearn(registry.client(args["tracking_uri"]), "churn", "1")
resource.setrlimit(resource.RLIMIT_FSIZE, (args["limit"], resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
scoring.score_file(
    model, spec, args["batch"], args["output"], meta=scoring.output_meta(spec, "1", "champion", "manual__efbig"),
    chunk_rows=300,
)
"""


def test_file_size_limit_while_scoring(champion_env: Env):
    """Injected: a file size limit (``RLIMIT_FSIZE`` = 4 KiB, set on the scoring process, a child
    here; any user can lower it) that the prediction file outgrows while chunks stream into it:
    the kernel refuses the write with EFBIG (Python ignores SIGXFSZ, so the write fails instead
    of the process being killed).
    Must hold: the process fails with ``StorageWriteError`` naming the prediction file and "File
    too large (EFBIG)"; neither the file nor its temporary is left behind."""
    env = champion_env
    batch = lk.uri_of(lk.Lake(env.lake, MODEL).batches()[-1][1])
    output = Path(str(lk.Lake(env.lake, MODEL).predictions)) / Path(batch).name
    payload = {"tracking_uri": env.tracking_uri, "batch": batch, "output": str(output), "limit": 4096}
    done = subprocess.run(
        [sys.executable, "-c", SCORE_UNDER_A_LIMIT, json.dumps(payload)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"mlcycle.core.errors.StorageWriteError: cannot write {output}: File too large (EFBIG)"
    ), done.stderr[-3000:]
    assert not output.exists()
    assert list(output.parent.iterdir()) == []
