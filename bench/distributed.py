"""Throughput of the distributed setup: N concurrent ``train_<model>`` runs on Celery vs LocalExecutor.

For N model specs generated from ``include/models/churn.yaml`` (``churn_b01``…, each with its
own copy of the churn contract), each configuration gets a fresh topology
(tests/services/topology.py: PostgreSQL, Redis, moto S3, MLflow server, Airflow api-server,
scheduler, dag-processor, triggerer, and for Celery its workers with ``worker_concurrency`` 4)
in its own temporary folder, 3 days x 1000 rows per model in the S3 lake, then all N train
DAGs unpaused at once. No run is triggered: unpausing creates one scheduled (catch-up) run per
DAG, and those are the runs measured (a manual run beside it would wait behind it,
``max_active_runs`` 1, and then find nothing new to train).

Per configuration: runs that succeeded, of those how many promoted and how many the gate
refused (``promote`` skipped), wall time (first unpause -> last run finished), queued->running delay per
task (TI ``queued_when`` -> ``start_date``), the gap between consecutive tasks of a run
(previous ``end_date`` -> next ``start_date``), and peak RSS per worker process tree (psutil,
every 0.5 s, the worker and all its children; for LocalExecutor the scheduler's tree).

Run from the repository root (needs what the topology needs: root, PostgreSQL 15, Redis)::

    .venv/bin/python bench/distributed.py --models 4
    .venv/bin/python bench/distributed.py --configs local,celery2 --keep
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import threading
import time
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# bench/ is on sys.path when a script runs
from _common import REPO, fmt, load_average, machine, median, print_header, revision, scratch_dir

sys.path.insert(0, str(REPO))
from tests.services.topology import BUCKET, Topology, missing_services

CONFIGS = {
    "local": {"executor": "LocalExecutor", "workers": 0},
    "celery1": {"executor": "CeleryExecutor", "workers": 1},
    "celery2": {"executor": "CeleryExecutor", "workers": 2},
}
BASE = "churn"
DAYS, ROWS = 3, 1000


def make_specs(root: Path, n: int) -> tuple[Path, Path, list[str]]:
    """N copies of the churn spec (and of its contract) under ``root``, checked with ``load_specs``."""
    from mlcycle.core.spec import load_specs

    specs, contracts = root / "specs", root / "contracts"
    specs.mkdir()
    contracts.mkdir()
    source = yaml.safe_load((REPO / "include" / "models" / f"{BASE}.yaml").read_text())
    suite = json.loads((REPO / "include" / "contracts" / source["contract"]).read_text())
    names = [f"{BASE}_b{i:02d}" for i in range(1, n + 1)]
    for name in names:
        spec = {**source, "name": name, "contract": f"{name}.json"}  # data.generator stays churn
        (specs / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        (contracts / f"{name}.json").write_text(json.dumps({**suite, "name": name}, indent=2))
    loaded = [s.name for s in load_specs(specs)]
    if loaded != names:
        sys.exit(f"error: generated specs load as {loaded}, expected {names}")
    return specs, contracts, names


def write_lake(names: list[str], today: dt.date) -> None:
    """``DAYS`` daily batches of ``ROWS`` rows per model in the S3 lake. tests.conftest.write_batches
    names the generator after the model, which has no generator of its own here (``churn_b01``)."""
    from mlcycle.data import lake as lk
    from mlcycle.data.generators import generate_batch

    for name in names:
        lake = lk.Lake(f"s3://{BUCKET}/lake", name)
        for i in range(DAYS):
            day = today - dt.timedelta(days=i)
            lk.write_parquet(generate_batch(BASE, day, ROWS), lake.batch_path(day))


class RssSampler:
    """Peak RSS (MB) of each named process tree of a topology, sampled every 0.5 s in a thread."""

    def __init__(self, topo: Topology, names: list[str]) -> None:
        self.topo, self.names = topo, names
        self.peak = dict.fromkeys(names, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _tree_mb(self, pid: int) -> float:
        import psutil

        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue  # a task process that ended between the listing and the read
        return total / 2**20

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            for name in self.names:
                proc = self.topo.procs.get(name)  # the restart policy may have replaced it
                if proc is not None:
                    self.peak[name] = max(self.peak[name], self._tree_mb(proc.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def ts(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def seconds(a: dt.datetime | None, b: dt.datetime | None) -> float | None:
    return None if a is None or b is None else (b - a).total_seconds()


def wait_for_runs(topo: Topology, dags: list[str], timeout: float) -> dict[str, dict]:
    """The one run per DAG that unpausing created, once every one of them has finished."""
    deadline = time.monotonic() + timeout
    runs: dict[str, dict] = {}
    while time.monotonic() < deadline:
        try:
            for dag in dags:
                found = topo.api.call("GET", f"/api/v2/dags/{dag}/dagRuns?limit=10")["dag_runs"]
                if len(found) > 1:
                    raise RuntimeError(
                        f"{dag} has {len(found)} runs, expected the one scheduled run: {found}"
                    )
                if found:
                    runs[dag] = found[0]
        except urllib.error.URLError as exc:
            print(f"  (api-server did not answer: {exc}; retrying)", flush=True)
        if len(runs) == len(dags) and all(r["state"] in ("success", "failed") for r in runs.values()):
            return runs
        time.sleep(2)
    states = {dag: runs.get(dag, {}).get("state", "no run yet") for dag in dags}
    raise RuntimeError(f"runs not finished within {timeout:.0f} s: {states}; logs in {topo.root / 'logs'}")


@dataclass
class Result:
    name: str
    wall: float
    states: list[str]
    promote: list[str] = field(default_factory=list)  # the promote task's state per run
    queue: list[float] = field(default_factory=list)  # queued_when -> start_date, every task
    gaps: list[float] = field(default_factory=list)  # previous end_date -> next start_date
    busy: float = 0.0  # sum of task durations
    peak_mb: dict[str, float] = field(default_factory=dict)


def run_config(
    name: str, root: Path, specs: Path, contracts: Path, names: list[str], *, timeout: float
) -> Result:
    conf = CONFIGS[name]
    dirs = {"MLCYCLE_SPECS_DIR": str(specs), "MLCYCLE_CONTRACTS_DIR": str(contracts)}
    topo = Topology(
        root / name,
        workers=conf["workers"],
        worker_concurrency=4,
        executor=conf["executor"],
        extra_env=dirs,
    )
    dags = [f"train_{n}" for n in names]
    saved = dict(os.environ)
    os.environ.update({**topo.client_env(), **dirs})
    try:
        print(f"[{name}] starting the topology in {topo.root}", flush=True)
        topo.start()
        topo.wait_for_dags(set(dags))
        topo.wait_for_workers()
        write_lake(names, dt.datetime.now(dt.UTC).date())
        tracked = [f"worker-{i}" for i in range(1, conf["workers"] + 1)] or ["scheduler"]
        with RssSampler(topo, tracked) as sampler:
            t0 = dt.datetime.now(dt.UTC)
            for dag in dags:
                topo.api.call("PATCH", f"/api/v2/dags/{dag}", {"is_paused": False})
            print(f"[{name}] {len(dags)} DAGs unpaused; waiting for their runs", flush=True)
            runs = wait_for_runs(topo, dags, timeout)
        result = Result(
            name, seconds(t0, max(ts(r["end_date"]) for r in runs.values())) or 0.0, [], peak_mb=sampler.peak
        )
        for dag, run in runs.items():
            result.states.append(run["state"])
            tis = topo.api.call(
                "GET", f"/api/v2/dags/{dag}/dagRuns/{run['dag_run_id']}/taskInstances?limit=100"
            )
            result.promote += [str(ti["state"]) for ti in tis["task_instances"] if ti["task_id"] == "promote"]
            ran = sorted(
                (ti for ti in tis["task_instances"] if ti["start_date"] and ti["end_date"]),
                key=lambda ti: ti["start_date"],
            )
            for prev, ti in zip([None, *ran], ran, strict=False):
                start, end = ts(ti["start_date"]), ts(ti["end_date"])
                if (q := seconds(ts(ti["queued_when"]), start)) is not None:
                    result.queue.append(q)
                result.busy += seconds(start, end) or 0.0
                if prev is not None:
                    result.gaps.append(seconds(ts(prev["end_date"]), start) or 0.0)
        return result
    finally:
        topo.stop()
        # fsspec caches filesystems by their arguments, not the environment: without this the next
        # topology's lake writes would go to this one's (stopped) S3 endpoint.
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        os.environ.clear()
        os.environ.update(saved)


def print_table(results: list[Result], n: int) -> None:
    print()
    header = (
        f"{'config':<8} {'runs ok':>7} {'promoted':>8} {'refused':>7} {'wall s':>7} {'queue med s':>11} {'queue max s':>11} "
        f"{'gap med s':>9} {'gap max s':>9} {'tasks busy %':>12}  peak RSS per worker (MB)"
    )
    print_header(header)
    for r in results:
        # Share of the runs' summed wall spent inside tasks (the rest: gaps, first-task wait).
        spans = r.busy + sum(r.gaps)
        peaks = ", ".join(f"{k} {v:.0f}" for k, v in r.peak_mb.items())
        ok = f"{r.states.count('success')}/{n}"
        print(
            f"{r.name:<8} {ok:>7} {r.promote.count('success'):>8} {r.promote.count('skipped'):>7} {r.wall:>7.1f} "
            f"{fmt(median(r.queue), '.2f'):>11} {fmt(max(r.queue, default=None), '.2f'):>11} "
            f"{fmt(median(r.gaps), '.2f'):>9} {fmt(max(r.gaps, default=None), '.2f'):>9} "
            f"{fmt(100 * r.busy / spans if spans else None, '.0f'):>12}  {peaks}"
        )
    print()
    for r in results:
        queued = sum(r.queue)
        # A gap is the scheduler noticing the end and queuing the next task, then its queue delay.
        parts = {
            "task execution": r.busy,
            "queued->running": queued,
            "scheduling (gap not queued)": max(0.0, sum(r.gaps) - queued),
        }
        top = max(parts, key=parts.get)  # type: ignore[arg-type]
        total = sum(parts.values()) or 1.0
        shares = ", ".join(f"{k} {100 * v / total:.0f} %" for k, v in parts.items())
        print(f"dominates {r.name}: {top} ({shares} of the summed task time and waits)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=10, help="how many generated model specs (N)")
    parser.add_argument(
        "--configs", default="local,celery1,celery2", help=f"comma-separated of {list(CONFIGS)}"
    )
    parser.add_argument(
        "--timeout", type=float, default=1200, help="seconds to wait for the runs, per config"
    )
    parser.add_argument(
        "--tmp-dir", type=Path, default=Path("/tmp"), help="where the temporary directory goes"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (and the logs)")
    args = parser.parse_args()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if unknown := [c for c in configs if c not in CONFIGS]:
        parser.error(f"--configs: unknown {unknown}; choose from {list(CONFIGS)}")
    if args.models < 1:
        parser.error("--models must be at least 1")
    if missing := missing_services():
        sys.exit("error: the distributed topology needs " + "; ".join(missing))

    print(f"revision {revision()}; {machine()}")
    print(f"{args.models} x train_{BASE}_bNN, {DAYS} days x {ROWS} rows each; configs {configs}")
    results: list[Result] = []
    failed: list[str] = []
    with scratch_dir("mlcycle-distributed-", keep=args.keep, parent=args.tmp_dir) as tmp:
        specs, contracts, names = make_specs(tmp, args.models)
        for config in configs:
            try:
                results.append(run_config(config, tmp, specs, contracts, names, timeout=args.timeout))
                print_table(results[-1:], args.models)  # kept if a later configuration breaks
            except RuntimeError as exc:  # a topology that did not start, runs that did not finish
                failed.append(f"{config}: {exc}")
                print(f"[{config}] FAILED: {exc}", flush=True)
            print(f"[{config}] done; load average now {load_average()}", flush=True)
        print("\nall configurations:")
        print_table(results, args.models)
        for line in failed:
            print(f"failed {line[:3000]}")
    # The topology folders (and their logs) are under tmp, which --keep keeps.


if __name__ == "__main__":
    main()
