"""AWS Lambda serving, without AWS: the ONNX and the scikit-learn packages of the same model version
(``mlcycle package lambda``) under the real runtime client, side by side.

Setup (not timed): churn trained on ``--days`` x ``--rows`` generated rows in a private store
(``mlcycle.flows.train``: resolve, train: v1 registered, its ONNX twin checked on the
holdout), then both packages built with ``mlcycle.serving.lambda_package.build``
(the ONNX one as the command chooses it, the scikit-learn one with ``engine="sklearn"``).

Each run is one cold container: ``python -m awslambdaric handler.handler`` started in the
package's ``app/`` folder against the fake Lambda Runtime API of
``tests/serving/test_lambda_runtime.py`` (a threaded ``http.server`` on 127.0.0.1, TCP_NODELAY).
Per run:

``init s``
    process start to its first poll of ``invocation/next``: interpreter, runtime client, the
    handler's imports, model load and warm-up row (what Lambda bills as the init phase).
``cold start s``
    process start to the arrival of the first response (one ``--rows-per-request`` direct request).
``load ms``
    what the handler logs at init (``load_ms``): the engine's import, the model's load and one
    warm-up row through the checks and the model.
``p50 / p99 ms``
    ``--requests`` warm direct requests, one at a time, timed from queueing the event to the
    response's arrival (the runtime client's two HTTP calls included); ``handler p50`` is what
    the handler itself logs (``latency_ms``: checks + predict).
``peak RSS MB``
    the runtime client's VmHWM after the requests (Lambda's "Max Memory Used").

``deps MB`` is the installed size of what the package's requirements.txt pins (files on disk in
this venv): the part of the image the engine decides. Runs alternate between the engines; the
table gives medians over ``--runs`` cold starts (min-max for the cold start).

    .venv/bin/python bench/lambda_serving.py                 # ~1-2 min
    .venv/bin/python bench/lambda_serving.py --runs 2 --requests 100 --days 3   # smoke, ~40 s
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

# bench/ is on sys.path when a script runs
from _common import REPO, fmt, machine, median, mlcycle_state, print_header, revision, scratch_dir

# The fake Runtime API is the one the end-to-end test runs against (the module imports only the
# standard library and pytest).
sys.path.insert(0, str(REPO))

MODEL = "churn"
ENGINES = ("onnx", "sklearn")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="cold starts per engine (default 5)")
    parser.add_argument("--requests", type=int, default=500, help="warm requests per run (default 500)")
    parser.add_argument("--rows-per-request", type=int, default=1, help="rows in each request (default 1)")
    parser.add_argument("--days", type=int, default=7, help="daily batches to train on (default 7)")
    parser.add_argument("--rows", type=int, default=1500, help="rows per daily batch (default 1500)")
    parser.add_argument("--keep", action="store_true", help="keep the state directory")
    args = parser.parse_args(argv)
    if min(args.runs, args.requests, args.rows_per_request, args.days, args.rows) < 1:
        parser.error("counts must be positive")
    return args


def train(root: Path, days: int, rows: int) -> None:
    """churn v1 registered in the private store under ``root`` (the environment points at it),
    with its ONNX twin checked: the gate and the promotion are not needed to package a version."""
    from mlcycle.core.run import RunInfo
    from mlcycle.core.spec import get_spec
    from mlcycle.data import lake as lk
    from mlcycle.data.generators import generate_batch
    from mlcycle.flows import train as steps
    from mlcycle.store import registry

    spec, lake_root = get_spec(MODEL), str(root / "lake")
    end = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    lake = lk.Lake(lake_root, MODEL)
    for i in range(days):
        day = end - dt.timedelta(days=i)
        lk.write_parquet(generate_batch(MODEL, day, rows), lake.batch_path(day))
    run, mlc = RunInfo(f"train_{MODEL}", "bench", reason="bench setup"), registry.client()
    m = steps.resolve(spec, run, lake_root=lake_root, as_of=end)
    t = steps.train(spec, run, mlc, manifest_uri=m["manifest_uri"], lake_root=lake_root)
    if t["version"] != "1":
        sys.exit(f"error: training registered v{t['version']}, expected v1 in a fresh store")


def deps_mb(requirements: Path) -> float:
    """Installed size (MB) of every distribution the requirements file pins."""
    total = 0
    for line in requirements.read_text().splitlines():
        if "==" not in line or line.startswith("#"):
            continue
        dist = importlib_metadata.distribution(line.split("==")[0])
        for f in dist.files or []:
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                total += path.stat().st_size
    return total / 1e6


def vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def one_run(app: Path, request: dict[str, Any], requests: int, log: Path) -> dict[str, Any]:
    """One cold container (with the Dockerfile's environment): its init, cold start, load, warm
    latencies and peak RSS."""
    from mlcycle.serving.lambda_package import CONTAINER_ENV
    from tests.serving.test_lambda_runtime import FakeRuntimeAPI, json_lines, start_client, stop_client

    api = FakeRuntimeAPI()
    started = time.perf_counter()
    proc = start_client(app, api, log, CONTAINER_ENV)
    try:
        _, first = api.invoke(request, timeout=120)
        if first.kind != "response" or first.body.get("status") != 200:
            raise SystemExit(
                f"error: the first request was not scored: {first.body}\n{log.read_text()[-2000:]}"
            )
        latencies = sorted(api.invoke(request)[1].latency_s * 1000 for _ in range(requests))
        peak = vm_hwm_mb(proc.pid)
    finally:
        stop_client(proc)
        api.close()
    lines = json_lines(log)
    loaded = next(ln for ln in lines if ln.get("message") == "model loaded")
    handler_ms = [ln["latency_ms"] for ln in lines if "latency_ms" in ln][1:]  # the warm ones
    return {
        "init_s": (api.polled_at or first.at) - started,
        "cold_s": first.at - started,
        "load_ms": loaded["load_ms"],
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "handler_p50_ms": statistics.median(handler_ms),
        "peak_mb": peak,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    with scratch_dir("mlcycle-bench-lambda-", keep=args.keep) as tmp:
        print(f"{machine()}; project at {revision()}; state in {tmp}")
        os.environ.update(
            {
                **mlcycle_state(tmp),
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "GX_ANALYTICS_ENABLED": "false",
                "OMP_NUM_THREADS": "1",  # the setup's training (the containers get the Dockerfile's)
            }
        )
        from mlcycle.core.spec import get_spec
        from mlcycle.data.generators import generate_batch
        from mlcycle.serving import lambda_package
        from mlcycle.store import registry

        train(tmp, args.days, args.rows)
        spec, mlc = get_spec(MODEL), registry.client()
        packages = {
            engine: lambda_package.build(
                spec, mlc, tmp / f"pkg-{engine}", version="1", engine=None if engine == "onnx" else engine
            )
            for engine in ENGINES
        }
        if packages["onnx"].engine != "onnx":
            sys.exit(f"error: the command chose {packages['onnx'].describe()}; the ONNX twin did not pass")
        rows = generate_batch(MODEL, dt.date(2026, 1, 15), args.rows_per_request, seed=3)[spec.features.all]
        request = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
        print(
            f"  setup (not timed) {time.perf_counter() - t0:.0f} s; {packages['onnx'].describe()}", flush=True
        )

        results: dict[str, list[dict[str, Any]]] = {e: [] for e in ENGINES}
        for i in range(args.runs):
            for engine in ENGINES if i % 2 == 0 else ENGINES[::-1]:
                log = tmp / f"{engine}-{i}.log"
                results[engine].append(one_run(packages[engine].out / "app", request, args.requests, log))
            print(f"  round {i + 1}/{args.runs} done", flush=True)
        deps = {e: deps_mb(packages[e].out / "requirements.txt") for e in ENGINES}

    print()
    print(
        f"AWS Lambda serving of {MODEL} v1 through awslambdaric and a fake Runtime API on loopback; "
        f"{args.runs} cold starts per engine (alternating), {args.requests} warm requests of "
        f"{args.rows_per_request} row(s) each per run; medians over runs; {machine()}; project at {revision()}"
    )
    header = (
        f"{'engine':8} {'init s':>7} {'cold start s (min-max)':>23} {'load ms':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'handler p50 ms':>15} {'peak RSS MB':>12} {'deps MB':>8}"
    )
    print_header(header)
    for engine in ENGINES:
        r = results[engine]
        colds = [x["cold_s"] for x in r]
        cold = f"{fmt(median(colds))} ({min(colds):.2f}-{max(colds):.2f})"
        print(
            f"{engine:8} {fmt(median(x['init_s'] for x in r)):>7} {cold:>23} "
            f"{fmt(median(x['load_ms'] for x in r), '.0f'):>8} {fmt(median(x['p50_ms'] for x in r)):>7} "
            f"{fmt(median(x['p99_ms'] for x in r)):>7} {fmt(median(x['handler_p50_ms'] for x in r)):>15} "
            f"{fmt(median(x['peak_mb'] for x in r), '.0f'):>12} {deps[engine]:>8.0f}"
        )
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
