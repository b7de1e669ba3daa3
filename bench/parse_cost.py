"""DAG parse cost: how long ``DagBag`` takes to parse the training DAGs, and what it drags in.

Every measurement runs in a fresh interpreter, because imports are cached within a
process: the child imports ``airflow.sdk`` and ``DagBag`` first (not timed, the DAG
processor has them already), then times ``DagBag(dag_folder=...)`` and reports its peak
RSS and which heavy libraries (pandas, scikit-learn, MLflow, Great Expectations, SciPy)
ended up in ``sys.modules``.

Cases, interleaved round by round so that drift of the machine hits all of them alike:

- ``lazy``: the project's ``dags/`` folder (operators import the heavy libraries in
  ``execute``), with the 2 shipped specs and with 50 generated specs;
- ``naive``: the reference to beat, a DAG file that imports pandas, scikit-learn, MLflow
  and Great Expectations at top level and then builds the same DAGs.

Run from the repository root::

    .venv/bin/python bench/parse_cost.py            # 5 runs per case
    .venv/bin/python bench/parse_cost.py --runs 9

All state (specs, DAG folders, AIRFLOW_HOME) goes to a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "sklearn", "mlflow", "great_expectations", "scipy")
TARGET_S = 0.5  # the lazy folder with 50 specs must parse in less than this
TARGET_SPECS = 50
CHILD_TIMEOUT_S = 180

# Runs in the fresh interpreter. argv[1] is the DAG folder; prints one JSON line.
CHILD = r"""
import json, resource, sys, time

import airflow.sdk  # noqa: F401  (not timed: loaded before any DAG file by the DAG processor)
from airflow.dag_processing.dagbag import DagBag

HEAVY = {heavy!r}
before = sorted(m for m in HEAVY if m in sys.modules)
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
seconds = time.perf_counter() - started
print("@@RESULT@@" + json.dumps({{
    "seconds": seconds,
    "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "rss_before_kb": rss_before,
    "heavy_before": before,
    "heavy_after": sorted(m for m in HEAVY if m in sys.modules),
    "dags": len(bag.dag_ids),
    "import_errors": {{k: v[-2000:] for k, v in bag.import_errors.items()}},
}}))
"""

NAIVE_DAG = '''"""Naive reference: heavy libraries imported at the top of the DAG file."""

import great_expectations  # noqa: F401
import mlflow  # noqa: F401
import pandas  # noqa: F401
import sklearn.ensemble  # noqa: F401
from mlcycle_airflow.factory import train_dags

globals().update(train_dags())
'''


@dataclass
class Case:
    name: str
    dag_folder: Path
    specs_dir: Path
    specs: int
    samples: list[dict] = field(default_factory=list)


def default_python() -> Path:
    venv = REPO / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def check_python(python: Path) -> None:
    if not python.exists():
        sys.exit(f"error: {python} does not exist; create the venv (.venv) or pass --python")
    probe = subprocess.run(
        [str(python), "-c", "import airflow, mlcycle; print(airflow.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        sys.exit(
            f"error: {python} cannot import airflow and mlcycle; install requirements.txt and "
            f"`pip install -e .` into the venv.\n{probe.stderr.strip()[-1500:]}"
        )


def make_specs(target: Path, count: int) -> Path:
    """``count`` specs m000.. copied alternately from churn.yaml and demand.yaml (file name = name)."""
    target.mkdir(parents=True)
    sources = [REPO / "include" / "models" / "churn.yaml", REPO / "include" / "models" / "demand.yaml"]
    texts = [p.read_text() for p in sources]
    for i in range(count):
        name = f"m{i:03d}"
        text, n = re.subn(r"(?m)^name:\s*\S+", f"name: {name}", texts[i % len(texts)], count=1)
        if n != 1:
            sys.exit(f"error: no `name:` key in {sources[i % len(sources)]}")
        (target / f"{name}.yaml").write_text(text)
    return target


def make_naive_folder(target: Path) -> Path:
    target.mkdir(parents=True)
    (target / "naive_train.py").write_text(NAIVE_DAG)
    return target


def child_env(tmp: Path, case: Case) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLCYCLE_", "MLFLOW_"))}
    home = tmp / "airflow"
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(case.dag_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "GX_ANALYTICS_ENABLED": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLCYCLE_HOME": str(REPO),
            "MLCYCLE_SPECS_DIR": str(case.specs_dir),
            "MLCYCLE_LAKE_ROOT": str(tmp / "lake"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
            "MLCYCLE_ARTIFACT_ROOT": str(tmp / "mlartifacts"),
            "MLCYCLE_LEDGER_URI": f"sqlite:///{tmp / 'ledger.db'}",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "plugins"), env.get("PYTHONPATH")])),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    return env


def measure(python: Path, tmp: Path, case: Case) -> dict:
    code = CHILD.format(heavy=HEAVY)
    done = subprocess.run(
        [str(python), "-c", code, str(case.dag_folder)],
        capture_output=True,
        text=True,
        env=child_env(tmp, case),
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("@@RESULT@@")), None)
    if done.returncode != 0 or line is None:
        sys.exit(f"error: parsing {case.dag_folder} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(line.removeprefix("@@RESULT@@"))
    if result["import_errors"]:
        sys.exit(f"error: import errors in case {case.name}:\n{json.dumps(result['import_errors'], indent=2)}")
    if result["dags"] != case.specs:
        sys.exit(f"error: case {case.name} parsed {result['dags']} DAGs, expected {case.specs}")
    if result["heavy_before"]:
        print(f"note: {result['heavy_before']} were imported before DagBag (by Airflow itself)")
    return result


def build_cases(tmp: Path, many: int) -> list[Case]:
    shipped = REPO / "include" / "models"
    generated = make_specs(tmp / f"specs{many}", many)
    naive = make_naive_folder(tmp / "naive_dags")
    dags = REPO / "dags"
    shipped_count = len(list(shipped.glob("*.yaml")))
    return [
        Case("lazy (dags/)", dags, shipped, shipped_count),
        Case("lazy (dags/)", dags, generated, many),
        Case("naive (top-level imports)", naive, shipped, shipped_count),
        Case("naive (top-level imports)", naive, generated, many),
    ]


def verdict(case: Case, median: float, many: int) -> tuple[str, str]:
    """The target applies to the lazy folder at the largest spec count; naive rows are the reference."""
    if case.name.startswith("naive"):
        return "reference", "-"
    if case.specs == many:
        return f"< {TARGET_S} s", "PASS" if median < TARGET_S else "FAIL"
    return "-", "-"


def print_table(cases: list[Case], many: int) -> list[str]:
    header = (
        f"{'case':<27} {'specs':>5} {'median s':>9} {'min s':>8} {'peak RSS MB':>11} "
        f"{'Δ RSS MB':>8}  {'heavy modules imported':<52} {'target':<9} {'result'}"
    )
    lines = [header, "-" * len(header)]
    for case in cases:
        secs = [s["seconds"] for s in case.samples]
        peak = max(s["peak_rss_kb"] for s in case.samples) / 1024
        delta = statistics.median((s["peak_rss_kb"] - s["rss_before_kb"]) / 1024 for s in case.samples)
        heavy = sorted({m for s in case.samples for m in s["heavy_after"]})
        target, result = verdict(case, statistics.median(secs), many)
        lines.append(
            f"{case.name:<27} {case.specs:>5} {statistics.median(secs):>9.3f} {min(secs):>8.3f} "
            f"{peak:>11.0f} {delta:>8.0f}  {', '.join(heavy) or 'none':<52} {target:<9} {result}"
        )
    for line in lines:
        print(line)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per case (default 5)")
    parser.add_argument("--specs", type=int, default=TARGET_SPECS, help="generated specs (default 50)")
    parser.add_argument("--python", type=Path, default=default_python(), help="interpreter of the venv")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if args.runs < 1 or args.specs < 1:
        parser.error("--runs and --specs must be positive")

    check_python(args.python)
    tmp = Path(tempfile.mkdtemp(prefix="mlcycle-bench-parse-"))
    started = time.perf_counter()
    try:
        cases = build_cases(tmp, args.specs)
        print(f"python {args.python}; {args.runs} fresh interpreter(s) per case; state in {tmp}")
        for round_ in range(1, args.runs + 1):
            for case in cases:
                case.samples.append(measure(args.python, tmp, case))
            print(f"  round {round_}/{args.runs} done ({time.perf_counter() - started:.0f} s)", flush=True)
        print()
        print(f"DagBag(dag_folder=...) in a fresh interpreter; median of {args.runs}; nproc {os.cpu_count()}")
        lines = print_table(cases, args.specs)
        lazy_many = next(c for c in cases if c.name.startswith("lazy") and c.specs == args.specs)
        naive_many = next(c for c in cases if c.name.startswith("naive") and c.specs == args.specs)
        ratio = statistics.median(s["seconds"] for s in naive_many.samples) / statistics.median(
            s["seconds"] for s in lazy_many.samples
        )
        print(f"\nnaive / lazy at {args.specs} specs: {ratio:.0f}x slower to parse")
        failed = any(line.rstrip().endswith("FAIL") for line in lines)
        print(f"total {time.perf_counter() - started:.0f} s")
        return 1 if failed else 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
