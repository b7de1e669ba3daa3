"""The train step's MLflow bookkeeping vs its fit: ``mlcycle.flows.train.train`` at 1M rows.

The issue this answers: on churn at 1,000,000 rows (one process, one OpenMP thread) the train
step took 60 s, of which the fit 22 s, ``mlflow.log_input`` 20.5 s and
``mlflow.data.from_pandas`` 5.3 s. The project now logs the training and holdout datasets
by reference (``mlcycle.store.registry.log_dataset``: source URI, our file digest, schema from
a 100-row sample, row count) instead of letting MLflow hash and profile whole frames.

Setup (once, not timed, in a child): ``--rows`` churn rows (default 1,000,000) as ``--days``
(default 10) daily batches ending today (UTC; churn's training window is 30 days), made with
``mlcycle.data.generators.generate_batch`` and written with ``mlcycle.data.lake.write_parquet``
into a template lake, and a manifest resolved there with ``mlcycle.flows.train.resolve``.

Every measurement is a fresh interpreter (``--python``, default the project's venv) with
``OMP_NUM_THREADS=1``, MLflow telemetry and GX analytics off, and its own fresh MLflow SQLite
store, artifact root, ledger and lake root (the lake root receives the run's holdout; the
manifest and its batches are read from the template), so every run trains v1 from scratch.
Before timing, each child imports what the step uses (pandas, scikit-learn, skops, MLflow,
skl2onnx/onnxruntime, mlcycle) and opens the store (MLflow creates the SQLite schema on first
use; a deployment's store already exists); both are reported, not timed. Modes:

``project``
    ``mlcycle.flows.train.train(spec, RunInfo(...), registry.client(uri), manifest_uri=...,
    lake_root=...)``: read, split, fit, holdout write, metrics, ONNX twin, datasets, reference
    profile, model logging, registration, alias. Timed: the whole call ("total"); "fit" is
    the result's ``train_seconds`` (``Pipeline.fit`` alone). Overhead = (total - fit) / fit.
    The child also wraps (in its own process, the library is not edited) the functions the
    flow calls: the flow's sub-steps, the lake, training, evaluation, ONNX, reference-profile
    and registry helpers, skops, ``mlflow.sklearn.log_model``, ``infer_signature`` and every
    public ``MlflowClient`` method. Each wrapper adds its time to the call path it ran under,
    which gives a tree of where the time beyond the fit goes, and each entry's own
    ("exclusive") time. After timing it reads the run back (``MlflowClient.get_run(...)
    .inputs.dataset_inputs``) for the lineage check.
``reference``
    what the project no longer pays, on the same frames: the manifest's batches read and split
    with ``mlcycle.ml.training.split`` (what the flow trains on; not timed), then, with an
    active run on a fresh store, ``mlflow.data.from_pandas(frame, source=<manifest or holdout
    URI>, targets=<target>, name=...)`` and ``mlflow.log_input(dataset, context=...)`` for the
    training and the holdout frames, each timed. Its run is read back the same way.

Runs are interleaved (project, reference, project, ...), ``--runs`` of each (default 3);
medians are reported, with the children's peak RSS (``ru_maxrss``). "old way (estimate)" =
project total - the project's dataset logging + the reference: the step as it was.

Target: the train step's time beyond the fit < 25 % of the fit (median), with the same MLflow
lineage: on the project's run two dataset inputs, contexts ``training`` and ``holdout``,
each with a schema and a profile whose ``num_rows`` equals the train / holdout row count.
Exit status 1 when the target or the lineage check fails.

Run from the repository root::

    .venv/bin/python bench/train_step.py                 # 1M rows, 3 runs each: about 5 minutes
    .venv/bin/python bench/train_step.py --rows 200000 --runs 2
    .venv/bin/python bench/train_step.py --profile 30    # plus one cProfile'd project run

State goes to a temporary directory, removed at the end (``--keep`` keeps it, with each
child's log).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (  # bench/ is on sys.path when a script runs
    REPO,
    check_python,
    default_python,
    emit,
    machine,
    maxrss_mb,
    revision,
    tail_file,
)
from _common import run_child as run_command

MODEL = "churn"
TARGET_PCT = 25.0
ROOT = "train()"
FIT = "Pipeline.fit"
DAG_ID = f"train_{MODEL}"
RUN_ID = "bench__train_step"
SHOW_MIN_S = 0.02  # tree entries below this median are folded into one line


# --------------------------------------------------------------------------------------------
# Children (fresh interpreters). Each prints one result line (``_common.emit``).
# --------------------------------------------------------------------------------------------


def child_setup(job: dict[str, Any]) -> dict[str, Any]:
    from mlcycle.core.run import RunInfo
    from mlcycle.core.spec import get_spec
    from mlcycle.data import lake as lk
    from mlcycle.data.generators import generate_batch
    from mlcycle.flows import train as flow

    started = time.perf_counter()
    spec = get_spec(MODEL)
    end = dt.date.fromisoformat(job["end"])
    days, rows = job["days"], job["rows"]
    lake = lk.Lake(job["lake"], MODEL)
    for i in range(days):
        n = rows // days + (1 if i < rows % days else 0)
        day = end - dt.timedelta(days=i)
        lk.write_parquet(generate_batch(spec.data.generator, day, n), lake.batch_path(day))
    m = flow.resolve(spec, RunInfo(DAG_ID, "bench__setup"), lake_root=job["lake"], as_of=end)
    return {**m, "seconds": time.perf_counter() - started, "window_days": spec.data.training_window_days}


STEP_MODULES = (
    "pandas",
    "pyarrow.parquet",
    "sklearn.ensemble",
    "skops.io",
    "skl2onnx",
    "onnxruntime",
    "mlflow",
    "mlflow.data",
    "mlflow.models",
    "mlflow.sklearn",
    "mlcycle.flows.train",
    "mlcycle.ml.evaluation",
    "mlcycle.ml.onnx_twin",
    "mlcycle.ml.training",
    "mlcycle.monitor.estimates",
    "mlcycle.monitor.profile",
    "mlcycle.monitor.reference",
    "mlcycle.store.registry",
)


def _import_step_modules() -> float:
    """What the step imports lazily, imported before timing, the way a task process gets it:
    ``mlcycle_airflow.warm`` is what the executor's fork server preloads (Makefile defaults),
    which also builds MLflow's installed-package map once (~1 s) instead of in every task."""
    import importlib

    started = time.perf_counter()
    sys.path.insert(0, str(REPO / "plugins"))
    importlib.import_module("mlcycle_airflow.warm")
    for name in STEP_MODULES:
        importlib.import_module(name)
    return time.perf_counter() - started


def _lineage(mlc: Any, run_id: str) -> list[dict[str, Any]]:
    """The dataset inputs of a run, as the MLflow UI shows them."""
    out = []
    for di in mlc.get_run(run_id).inputs.dataset_inputs:
        d = di.dataset
        tags = {t.key: t.value for t in di.tags}
        profile = json.loads(d.profile) if d.profile else {}
        schema = json.loads(d.schema) if d.schema else {}
        out.append(
            {
                "name": d.name,
                "context": tags.get("mlflow.data.context"),
                "digest": d.digest,
                "source_type": d.source_type,
                "source": d.source,
                "num_rows": profile.get("num_rows"),
                "profile_keys": sorted(profile),
                "schema_columns": [c.get("name") for c in schema.get("mlflow_colspec", [])],
            }
        )
    return out


class Timer:
    """Wraps functions so each call adds its time to the call path it ran under."""

    def __init__(self) -> None:
        self.on = False
        self.stack: list[str] = []
        self.seconds: dict[str, float] = {}  # path ("a/b/c") -> seconds, in order of first call
        self.calls: dict[str, int] = {}
        self.captured: dict[str, Any] = {}
        self.profiler: Any = None  # cProfile.Profile, paused during the fit

    def wrap(self, owner: Any, attr: str, label: str | None = None) -> None:
        fn = getattr(owner, attr)
        label = label or f"{getattr(owner, '__name__', owner)}.{attr}"
        timer = self

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not timer.on:
                return fn(*args, **kwargs)
            timer.stack.append(label)
            key = "/".join(timer.stack)
            timer.seconds.setdefault(key, 0.0)
            pause = label == FIT and timer.profiler is not None
            if pause:
                timer.profiler.disable()
            started = time.perf_counter()
            try:
                result = fn(*args, **kwargs)
            finally:
                timer.seconds[key] += time.perf_counter() - started
                timer.calls[key] = timer.calls.get(key, 0) + 1
                timer.stack.pop()
                if pause:
                    timer.profiler.enable()
            timer.capture(label, result)
            return result

        setattr(owner, attr, timed)

    def capture(self, label: str, result: Any) -> None:
        if label == "training.train":
            self.captured["train_rows"] = len(result.train)
            self.captured["holdout_rows"] = len(result.holdout)
        elif label == "onnx_twin.parity":  # its own split of the scoring it does
            self.captured["parity_sklearn_s"] = result.get("sklearn_seconds")
            self.captured["parity_onnx_s"] = result.get("onnx_seconds")


def _instrument(timer: Timer) -> None:
    import inspect
    import types

    import mlflow
    import mlflow.data.dataset_source_registry
    import mlflow.models
    import mlflow.sklearn
    import skops.io
    from sklearn.pipeline import Pipeline

    from mlcycle.data import lake
    from mlcycle.flows import train as flow
    from mlcycle.ml import evaluation, onnx_twin, training
    from mlcycle.monitor import profile, reference
    from mlcycle.store import registry

    timer.wrap(flow, "train", ROOT)
    for name in (
        "read_manifest",
        "open_run",
        "_skip_reason",
        "_log_run",
        "_register",
        "_onnx_twin",
        "_result",
    ):
        timer.wrap(flow, name, f"flows.train.{name}")
    for name in (
        "version_for_run",
        "version_by_alias",
        "set_alias",
        "run_for_airflow_run",
        "ensure_experiment",
        "experiment_of",
        "log_params",
        "log_metrics",
        "log_dataset",
        "register_version",
        "ensure_registered_model",
        "model_requirements",
    ):
        timer.wrap(registry, name, f"registry.{name}")
    for name in ("read_parquet", "write_parquet", "digest_files"):
        timer.wrap(lake, name, f"lake.{name}")
    for name in ("train", "split", "build_pipeline", "trusted_types_for"):
        timer.wrap(training, name, f"training.{name}")
    timer.wrap(Pipeline, "fit", FIT)
    for name in ("scores", "all_metrics"):
        timer.wrap(evaluation, name, f"evaluation.{name}")
    for name in ("export", "convert", "parity"):
        timer.wrap(onnx_twin, name, f"onnx_twin.{name}")
    timer.wrap(reference, "reference_profile", "reference.reference_profile")
    timer.wrap(reference, "feature_importance", "reference.feature_importance")
    timer.wrap(profile, "build_profile", "profile.build_profile")
    timer.wrap(skops.io, "dumps", "skops.io.dumps")
    timer.wrap(skops.io, "dump", "skops.io.dump")
    timer.wrap(mlflow.sklearn, "log_model", "mlflow.sklearn.log_model")
    timer.wrap(mlflow.models, "infer_signature", "mlflow.models.infer_signature")
    timer.wrap(
        mlflow.data.dataset_source_registry, "resolve_dataset_source", "mlflow.data.resolve_dataset_source"
    )
    for name, _ in inspect.getmembers(mlflow.MlflowClient):
        if not name.startswith("_") and isinstance(
            inspect.getattr_static(mlflow.MlflowClient, name), types.FunctionType
        ):
            timer.wrap(mlflow.MlflowClient, name, f"MlflowClient.{name}")


def child_project(job: dict[str, Any]) -> dict[str, Any]:
    imports_s = _import_step_modules()
    from mlcycle.core.run import RunInfo
    from mlcycle.core.spec import get_spec
    from mlcycle.flows import train as flow
    from mlcycle.store import registry

    spec = get_spec(MODEL)
    started = time.perf_counter()
    mlc = registry.client(job["tracking_uri"])
    mlc.search_experiments(max_results=1)
    mlc.search_registered_models(max_results=1)
    store_s = time.perf_counter() - started
    timer = Timer()
    _instrument(timer)
    run = RunInfo(DAG_ID, RUN_ID, reason="bench", trigger="test")
    rss_before = maxrss_mb()
    profiler = None
    if job.get("profile"):
        import cProfile

        profiler = timer.profiler = cProfile.Profile()
    timer.on = True
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    out = flow.train(spec, run, mlc, manifest_uri=job["manifest_uri"], lake_root=job["lake_root"])
    if profiler is not None:
        profiler.disable()
    total = time.perf_counter() - started
    timer.on = False
    rss_peak = maxrss_mb()
    if out.get("skipped"):
        raise SystemExit(f"training was skipped on a fresh store: {out}")
    result = {
        "total": total,
        "fit": out["train_seconds"],
        "version": out["version"],
        "imports_s": imports_s,
        "store_s": store_s,
        "rss_before_mb": rss_before,
        "rss_peak_mb": rss_peak,
        "tree": timer.seconds,
        "calls": timer.calls,
        **timer.captured,
        "lineage": _lineage(mlc, out["mlflow_run_id"]),
    }
    if profiler is not None:
        import io
        import pstats

        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(int(job["profile"]))
        result["profile"] = text.getvalue()
    return result


def child_reference(job: dict[str, Any]) -> dict[str, Any]:
    imports_s = _import_step_modules()
    import mlflow

    from mlcycle.core.spec import get_spec
    from mlcycle.data import lake as lk
    from mlcycle.flows import train as flow
    from mlcycle.ml import training

    spec = get_spec(MODEL)
    manifest = flow.read_manifest(job["manifest_uri"])
    df = lk.read_parquet([lk.as_path(u) for u in manifest.batches])
    train_df, holdout = training.split(df, spec)
    del df
    holdout_path = Path(job["state"]) / "holdout.parquet"
    lk.write_parquet(holdout, holdout_path)
    started = time.perf_counter()
    mlflow.set_tracking_uri(job["tracking_uri"])
    experiment = mlflow.create_experiment(MODEL, artifact_location=job["artifact_root"])
    store_s = time.perf_counter() - started
    timings: dict[str, float] = {}
    rss_before = maxrss_mb()
    with mlflow.start_run(experiment_id=experiment) as active:
        for context, frame, source in (
            ("training", train_df, job["manifest_uri"]),
            ("holdout", holdout, str(holdout_path)),
        ):
            name = f"{MODEL}-{'train' if context == 'training' else context}"
            t = time.perf_counter()
            dataset = mlflow.data.from_pandas(frame, source=source, targets=spec.data.target, name=name)
            timings[f"from_pandas {context}"] = time.perf_counter() - t
            t = time.perf_counter()
            mlflow.log_input(dataset, context=context)
            timings[f"log_input {context}"] = time.perf_counter() - t
        run_id = active.info.run_id
    rss_peak = maxrss_mb()
    return {
        "total": sum(timings.values()),
        "timings": timings,
        "imports_s": imports_s,
        "store_s": store_s,
        "rss_before_mb": rss_before,
        "rss_peak_mb": rss_peak,
        "train_rows": len(train_df),
        "holdout_rows": len(holdout),
        "lineage": _lineage(mlflow.MlflowClient(job["tracking_uri"]), run_id),
    }


CHILDREN = {"setup": child_setup, "project": child_project, "reference": child_reference}


def run_child(kind: str, job_json: str) -> int:
    emit(CHILDREN[kind](json.loads(job_json)))
    return 0


# --------------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLCYCLE_", "MLFLOW_"))}
        base.update(
            {
                "OMP_NUM_THREADS": "1",
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "GX_ANALYTICS_ENABLED": "false",
                "MLCYCLE_HOME": str(REPO),
                "MLCYCLE_SPECS_DIR": str(REPO / "include" / "models"),
            }
        )
        self.base_env = base
        self.count = 0

    def state(self, name: str) -> tuple[Path, dict[str, str]]:
        """A fresh MLflow store, artifact root, ledger and lake root for one child."""
        state = self.tmp / name
        state.mkdir(parents=True)
        env = {
            **self.base_env,
            "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
            "MLCYCLE_ARTIFACT_ROOT": str(state / "mlartifacts"),
            "MLCYCLE_LEDGER_URI": f"sqlite:///{state / 'ledger.db'}",
            "MLCYCLE_LAKE_ROOT": str(state / "lake"),
        }
        return state, env

    def child(self, kind: str, name: str, job: dict[str, Any]) -> dict[str, Any]:
        state, env = self.state(name)
        job = {
            **job,
            "state": str(state),
            "tracking_uri": env["MLFLOW_TRACKING_URI"],
            "artifact_root": env["MLCYCLE_ARTIFACT_ROOT"],
            "lake_root": env["MLCYCLE_LAKE_ROOT"],
        }
        if kind == "setup":
            env["MLCYCLE_LAKE_ROOT"] = job["lake"]
        log = state / "child.log"
        cmd = [
            str(self.args.python),
            str(Path(__file__).resolve()),
            "--child",
            kind,
            "--job",
            json.dumps(job),
        ]
        done = run_command(cmd, env=env, timeout=self.args.timeout, log=log)
        if done.returncode is None:
            sys.exit(
                f"error: {kind} did not finish in {self.args.timeout:.0f} s; see {log}:\n{tail_file(log)}"
            )
        if done.returncode != 0 or done.result is None:
            why = "killed by SIGKILL (out of memory?)" if done.returncode == -9 else f"exit {done.returncode}"
            sys.exit(f"error: {kind} failed ({why}); last lines of {log}:\n{tail_file(log)}")
        return done.result


def dataset_seconds(tree: dict[str, float]) -> float:
    """What the project pays for the dataset lineage: both log_dataset calls and the holdout digest."""
    return sum(
        s
        for path, s in tree.items()
        if path.endswith(("/registry.log_dataset", "/lake.digest_files"))
        and "/registry.log_dataset/" not in path
    )


def exclusive(tree: dict[str, float]) -> dict[str, float]:
    """Each path's own time: its time minus that of the calls timed under it."""
    own = dict(tree)
    for path, s in tree.items():
        parent = path.rpartition("/")[0]
        if parent in own:
            own[parent] -= s
    return own


def tree_medians(samples: list[dict[str, Any]]) -> dict[str, float]:
    paths: list[str] = []
    for s in samples:
        paths += [p for p in s["tree"] if p not in paths]
    return {p: statistics.median([s["tree"].get(p, 0.0) for s in samples]) for p in paths}


def print_tree(samples: list[dict[str, Any]]) -> None:
    tree = tree_medians(samples)
    calls = samples[0]["calls"]
    children: dict[str, list[str]] = {}
    for path in tree:
        children.setdefault(path.rpartition("/")[0], []).append(path)

    def show(path: str, depth: int) -> None:
        kids = children.get(path, [])
        label = path.rpartition("/")[2]
        n = calls.get(path, 0)
        print(f"  {'  ' * depth}{label + (f' x{n}' if n > 1 else ''):<{60 - 2 * depth}} {tree[path]:8.2f}")
        shown = [k for k in kids if tree[k] >= SHOW_MIN_S]
        hidden = [k for k in kids if tree[k] < SHOW_MIN_S]
        for kid in shown:
            show(kid, depth + 1)
        pad = "  " * (depth + 1)
        if hidden:
            text = f"({len(hidden)} more entries, each < {SHOW_MIN_S} s)"
            print(f"  {pad}{text:<{60 - 2 * (depth + 1)}} {sum(tree[k] for k in hidden):8.2f}")
        if kids:
            rest = tree[path] - sum(tree[k] for k in kids)
            if rest >= SHOW_MIN_S:
                print(f"  {pad}{'(not wrapped: own code)':<{60 - 2 * (depth + 1)}} {rest:8.2f}")

    print(f"  {'call path (wrapped functions; median seconds)':<60} {'s':>8}")
    show(ROOT, 0)


def top_contributors(samples: list[dict[str, Any]], n: int = 12) -> list[tuple[str, float]]:
    own = exclusive(tree_medians(samples))
    own.pop(next((p for p in own if p.endswith("/" + FIT)), ""), None)
    ranked = sorted(own.items(), key=lambda kv: kv[1], reverse=True)
    return [(p, s) for p, s in ranked[:n] if s >= 0.01]


def short(path: str) -> str:
    parts = path.split("/")
    return " > ".join(parts[1:]) if len(parts) > 1 else f"{parts[0]} (own code)"


def check_lineage(project: dict[str, Any], reference: dict[str, Any]) -> tuple[bool, list[str]]:
    """The lineage check on one project run; differences from the reference's run are notes."""
    ok, notes = True, []
    got = {d["context"]: d for d in project["lineage"]}
    ref = {d["context"]: d for d in reference["lineage"]}
    for context, rows_key in (("training", "train_rows"), ("holdout", "holdout_rows")):
        d = got.get(context)
        if d is None:
            ok = False
            notes.append(f"FAIL: no dataset input with context {context!r}")
            continue
        if d["num_rows"] != project[rows_key]:
            ok = False
            notes.append(f"FAIL: {context} num_rows {d['num_rows']} != {project[rows_key]:,} rows")
        if not d["schema_columns"]:
            ok = False
            notes.append(f"FAIL: {context} dataset has no schema")
        r = ref.get(context)
        if r is None:
            continue
        for key in ("name", "source_type", "num_rows", "profile_keys"):
            if d[key] != r[key]:
                notes.append(f"note: {context} {key} {d[key]!r} vs reference {r[key]!r}")
        if set(d["schema_columns"]) != set(r["schema_columns"]):
            notes.append(
                f"note: {context} schema columns differ from the reference: "
                f"only project {sorted(set(d['schema_columns']) - set(r['schema_columns']))}, "
                f"only reference {sorted(set(r['schema_columns']) - set(d['schema_columns']))}"
            )
    if len(project["lineage"]) != 2:
        ok = False
        notes.append(f"FAIL: {len(project['lineage'])} dataset inputs on the run, expected 2")
    return ok, notes


def _source_text(source: str) -> str:
    try:
        parsed = json.loads(source)
    except ValueError:
        return source
    return str(parsed.get("uri") or parsed.get("path") or source) if isinstance(parsed, dict) else source


def print_lineage(project: dict[str, Any], reference: dict[str, Any]) -> None:
    print(f"  {'':10} {'':9} {'name':14} {'digest':34} {'num_rows':>9} {'schema':>7}  source")
    for who, result in (("project", project), ("reference", reference)):
        for d in result["lineage"]:
            source = _source_text(d["source"])
            cols = f"{len(d['schema_columns'])} col"
            print(
                f"  {who:10} {d['context']!s:9} {d['name']:14} {d['digest']:34} {d['num_rows']!s:>9} {cols:>7}  "
                f"{d['source_type']}: {source}"
            )


def summary(
    args: argparse.Namespace, setup: dict[str, Any], proj: list[dict[str, Any]], ref: list[dict[str, Any]]
) -> bool:
    totals = [p["total"] for p in proj]
    fits = [p["fit"] for p in proj]
    beyond = [p["total"] - p["fit"] for p in proj]
    pct = [(p["total"] - p["fit"]) / p["fit"] * 100 for p in proj]
    ds = [dataset_seconds(p["tree"]) for p in proj]
    refs = [r["total"] for r in ref]
    old = [p["total"] - d + r for p, d, r in zip(proj, ds, refs, strict=False)]
    old_pct = [(o - p["fit"]) / p["fit"] * 100 for o, p in zip(old, proj, strict=False)]
    passed = statistics.median(pct) < TARGET_PCT
    p0 = proj[0]
    print(
        f"\nchurn train step, {setup['rows']:,} rows in {setup['batches']} daily batches "
        f"({p0['train_rows']:,} train / {p0['holdout_rows']:,} holdout), v1 on a fresh store, OMP_NUM_THREADS 1, "
        f"median of {len(proj)} project / {len(ref)} reference runs"
    )
    print(f"{machine()}; project at {revision()}")
    rows = [
        ("project: train() total", totals, "s"),
        ("  fit (train_seconds)", fits, "s"),
        ("  beyond the fit", beyond, "s"),
        ("  of which dataset lineage (log_dataset x2 + holdout digest)", ds, "s"),
        ("  overhead beyond the fit / fit", pct, "%"),
        ("  peak RSS", [p["rss_peak_mb"] for p in proj], "MB"),
        ("reference: from_pandas + log_input, train + holdout", refs, "s"),
    ]
    rows += [(f"  {k}", [r["timings"][k] for r in ref], "s") for k in ref[0]["timings"]]
    rows += [
        ("  peak RSS", [r["rss_peak_mb"] for r in ref], "MB"),
        ("old way (estimate): total - project lineage + reference", old, "s"),
        ("  overhead beyond the fit / fit", old_pct, "%"),
    ]
    print(f"\n  {'':62} {'median':>9} {'min-max':>13}")
    for label, values, unit in rows:
        fmt = ".0f" if unit == "MB" else ".1f" if unit == "%" else ".2f"
        value = f"{statistics.median(values):{fmt}} {unit}"
        spread_ = f"{min(values):{fmt}}-{max(values):{fmt}}" if len(values) > 1 else ""
        print(f"  {label:62} {value:>9} {spread_:>13}")
    verdict = "PASS" if passed else "FAIL"
    print(
        f"\n  target: time beyond the fit < {TARGET_PCT:.0f} % of the fit: {statistics.median(pct):.1f} %  {verdict}"
    )
    print(
        f"  not timed, per child: imports {statistics.median([p['imports_s'] for p in proj]):.2f} s, opening the fresh store "
        f"{statistics.median([p['store_s'] for p in proj]):.2f} s; RSS before the call {statistics.median([p['rss_before_mb'] for p in proj]):.0f} MB"
    )

    print("\nWhere the time goes in train() (median of the project runs):")
    print_tree(proj)
    print("\nTop contributors to the time beyond the fit (exclusive seconds, median):")
    beyond_med = statistics.median(beyond)
    for path, s in top_contributors(proj):
        print(f"  {s:7.2f} s  {s / beyond_med * 100:5.1f} %  {short(path)}")
    if all("parity_sklearn_s" in p for p in proj):
        paths = [k for k in p0["tree"] if k.endswith("/evaluation.scores")]
        calls = sum(p0["calls"][k] for k in paths) + 1
        scored = [sum(p["tree"].get(k, 0.0) for k in paths) + p["parity_sklearn_s"] for p in proj]
        print(
            f"  (the {p0['holdout_rows']:,}-row holdout is scored with scikit-learn {calls} times, "
            f"{statistics.median(scored):.2f} s in all: evaluation.scores x{calls - 1} + "
            f"{statistics.median([p['parity_sklearn_s'] for p in proj]):.2f} s inside the ONNX parity check, whose ONNX "
            f"inference takes {statistics.median([p['parity_onnx_s'] for p in proj]):.2f} s)"
        )
    return passed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="generated rows (default 1,000,000)")
    parser.add_argument("--days", type=int, default=10, help="daily batches ending today (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each mode (default 3)")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="one more project run under cProfile; print its top N cumulative entries (default off)",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds per child (default 900)")
    parser.add_argument("--python", type=Path, default=default_python(), help="interpreter of the venv")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory and child logs")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.child:
        if args.runs < 1 or args.days < 1 or args.rows < 100 * args.days:
            parser.error("--runs and --days must be positive, --rows at least 100 per day")
        if args.days > 30:
            parser.error("--days must fit churn's 30-day training window")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return run_child(args.child, args.job)

    check_python(args.python, "mlcycle.flows.train, mlflow, sklearn, skops.io, skl2onnx")
    started = time.perf_counter()
    os.environ["OMP_NUM_THREADS"] = "1"  # what the children get, so machine() says so
    tmp = Path(tempfile.mkdtemp(prefix="mlcycle-bench-train-step-"))
    bench = Bench(args, tmp)
    print(f"{machine()}; project at {revision()}; state in {tmp}")
    ok = False
    try:
        end = dt.datetime.now(dt.UTC).date()
        setup = bench.child(
            "setup",
            "setup",
            {
                "lake": str(tmp / "lake-template"),
                "end": end.isoformat(),
                "days": args.days,
                "rows": args.rows,
            },
        )
        print(
            f"  setup: {setup['rows']:,} rows in {setup['batches']} batches ending {end}, manifest "
            f"{setup['digest'][:12]} ({setup['seconds']:.0f} s, not timed)"
        )
        job = {"manifest_uri": setup["manifest_uri"]}
        proj: list[dict[str, Any]] = []
        ref: list[dict[str, Any]] = []
        for i in range(args.runs):
            load = os.getloadavg()[0]
            p = bench.child("project", f"project-{i}", job)
            proj.append(p)
            print(
                f"  run {i + 1}/{args.runs} project:   total {p['total']:6.2f} s, fit {p['fit']:6.2f} s, "
                f"beyond {(p['total'] - p['fit']) / p['fit'] * 100:5.1f} %, peak {p['rss_peak_mb']:.0f} MB "
                f"(load {load:.2f})"
            )
            load = os.getloadavg()[0]
            r = bench.child("reference", f"reference-{i}", job)
            ref.append(r)
            parts = ", ".join(f"{k} {v:.2f}" for k, v in r["timings"].items())
            print(
                f"  run {i + 1}/{args.runs} reference: {r['total']:6.2f} s ({parts}), peak {r['rss_peak_mb']:.0f} MB "
                f"(load {load:.2f})"
            )
        profiled = (
            bench.child("project", "project-profile", {**job, "profile": args.profile})
            if args.profile
            else None
        )

        passed = summary(args, setup, proj, ref)
        print("\nLineage (MlflowClient.get_run(run).inputs.dataset_inputs), last run of each mode:")
        print_lineage(proj[-1], ref[-1])
        checks = [check_lineage(p, ref[-1]) for p in proj]
        lineage_ok = all(good for good, _ in checks)
        for note in dict.fromkeys(n for _, notes in checks for n in notes):
            print(f"  {note}")
        print(f"  lineage check (every project run): {'PASS' if lineage_ok else 'FAIL'}")
        if profiled is not None:
            print(
                f"\ncProfile of one more project run, paused during Pipeline.fit (so train() and training.train "
                f"show only their part outside the fit; total {profiled['total']:.2f} s with the profiler, "
                f"fit {profiled['fit']:.2f} s), top {args.profile} by cumulative time:"
            )
            print(profiled["profile"].strip())
        ok = passed and lineage_ok
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nbench wall clock {time.perf_counter() - started:.0f} s; {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
