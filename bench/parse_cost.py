"""DAG parse cost: how long ``DagBag`` takes to parse the project's DAGs, and what it drags in.

Every measurement runs in a fresh interpreter, because imports are cached within a
process: the child imports ``airflow.sdk`` and ``DagBag`` first (not timed, the DAG
processor has them already), then times ``DagBag(dag_folder=...)`` and reports its peak
RSS and which heavy libraries (pandas, scikit-learn, MLflow, Great Expectations, SciPy)
ended up in ``sys.modules``.

Cases, interleaved round by round so that drift of the machine hits all of them alike:

- ``lazy``: the project's ``dags/`` folder (every DAG file in it; the operators import
  the heavy libraries in ``execute``), with the shipped specs and with 50 generated specs;
- ``naive``: the reference to beat, the same DAG files with pandas, scikit-learn, MLflow
  and Great Expectations imported at their top (so they build the same DAGs, e.g.
  ``globals().update(train_dags())``);
- ``one file``: each DAG file of ``dags/`` alone with the 50 specs (``--no-per-file`` skips).

The target (< 0.5 s) applies to the whole lazy ``dags/`` folder with 50 specs.
After the rounds, one more fresh interpreter splits the lazy 50-spec parse into YAML
parsing, spec validation (pydantic) and DAG building per factory function.

Run from the repository root::

    .venv/bin/python bench/parse_cost.py            # 5 runs per case
    .venv/bin/python bench/parse_cost.py --runs 9

All state (specs, DAG folders, AIRFLOW_HOME) goes to a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# bench/ is on sys.path when a script runs
from _common import (
    BENCH,
    REPO,
    SPECS_DIR,
    airflow_env,
    check_python,
    default_python,
    machine,
    mlcycle_state,
    print_header,
    revision,
    run_child,
    scratch_dir,
)

HEAVY = ("pandas", "sklearn", "mlflow", "great_expectations", "scipy")
TARGET_S = 0.5  # the lazy folder with 50 specs must parse in less than this
TARGET_SPECS = 50
CHILD_TIMEOUT_S = 180

# Runs in the fresh interpreter. argv[1] is the DAG folder, argv[2] bench/; prints one result line
# (bench/_common is imported after the measurement, so that it adds nothing to it).
CHILD = r"""
import resource, sys, time

import airflow.sdk  # noqa: F401  (not timed: loaded before any DAG file by the DAG processor)
from airflow.dag_processing.dagbag import DagBag

HEAVY = {heavy!r}
before = sorted(m for m in HEAVY if m in sys.modules)
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
seconds = time.perf_counter() - started
sys.path.insert(0, sys.argv[2])
from _common import emit
emit({{
    "seconds": seconds,
    "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "rss_before_kb": rss_before,
    "heavy_before": before,
    "heavy_after": sorted(m for m in HEAVY if m in sys.modules),
    "dags": len(bag.dag_ids),
    "import_errors": {{k: v[-2000:] for k, v in bag.import_errors.items()}},
}})
"""

NAIVE_HEADER = """# Naive reference: heavy libraries imported at the top of the DAG file.
import great_expectations  # noqa: F401
import mlflow  # noqa: F401
import pandas  # noqa: F401
import sklearn.ensemble  # noqa: F401

"""

# Runs in a fresh interpreter with the generated specs: where the lazy parse time goes. argv[1] is bench/.
BREAKDOWN = r"""
import os, sys, time
from pathlib import Path

import airflow.sdk  # noqa: F401
import yaml

from mlcycle.core import spec as sp
from mlcycle_airflow import factory

specs = sorted(Path(os.environ["MLCYCLE_SPECS_DIR"]).glob("*.yaml"))
texts = [p.read_text() for p in specs]
t = time.perf_counter(); raws = [yaml.safe_load(x) for x in texts]; yaml_s = time.perf_counter() - t
t = time.perf_counter(); [yaml.load(x, Loader=yaml.CSafeLoader) for x in texts]; cyaml_s = time.perf_counter() - t
t = time.perf_counter(); [sp.parse_spec(r, p) for r, p in zip(raws, specs)]; pydantic_s = time.perf_counter() - t
t = time.perf_counter(); sp.load_specs(os.environ["MLCYCLE_SPECS_DIR"]); load_s = time.perf_counter() - t
builders = {}
for name in sorted(n for n in dir(factory) if n.endswith("_dags") and not n.startswith("_") and callable(getattr(factory, n))):
    t = time.perf_counter(); dags = getattr(factory, name)(); builders[name] = [time.perf_counter() - t, len(dags)]
sys.path.insert(0, sys.argv[1])
from _common import emit
emit({"specs": len(specs), "yaml_s": yaml_s, "cyaml_s": cyaml_s,
      "pydantic_s": pydantic_s, "load_specs_s": load_s, "builders": builders})
"""


@dataclass
class Case:
    name: str
    dag_folder: Path
    specs_dir: Path
    specs: int
    samples: list[dict] = field(default_factory=list)


def make_specs(target: Path, count: int) -> Path:
    """``count`` specs m000.. copied alternately from churn.yaml and demand.yaml (file name = name)."""
    target.mkdir(parents=True)
    sources = [SPECS_DIR / "churn.yaml", SPECS_DIR / "demand.yaml"]
    texts = [p.read_text() for p in sources]
    for i in range(count):
        name = f"m{i:03d}"
        text, n = re.subn(r"(?m)^name:\s*\S+", f"name: {name}", texts[i % len(texts)], count=1)
        if n != 1:
            sys.exit(f"error: no `name:` key in {sources[i % len(sources)]}")
        (target / f"{name}.yaml").write_text(text)
    return target


def make_naive_folder(target: Path, dags: Path) -> Path:
    """Each DAG file of ``dags`` with the heavy imports at its top."""
    target.mkdir(parents=True)
    files = sorted(dags.glob("*.py"))
    if not files:
        sys.exit(f"error: no DAG files in {dags}")
    for path in files:
        (target / path.name).write_text(NAIVE_HEADER + path.read_text())
    return target


def child_env(tmp: Path, case: Case) -> dict[str, str]:
    return airflow_env(
        tmp / "airflow",
        dags_folder=case.dag_folder,
        specs_dir=case.specs_dir,
        **mlcycle_state(tmp),
        PYTHONDONTWRITEBYTECODE="1",
    )


def run_code(python: Path, tmp: Path, case: Case, code: str, *args: str) -> tuple[dict | None, str]:
    """A fresh interpreter running ``code`` in the case's environment: its result, parsed (None if
    it failed), and why it failed."""
    done = run_child([str(python), "-c", code, *args], env=child_env(tmp, case), timeout=CHILD_TIMEOUT_S)
    return (done.result, "") if done.ok else (None, done.error(60))


def measure(python: Path, tmp: Path, case: Case) -> dict:
    result, error = run_code(python, tmp, case, CHILD.format(heavy=HEAVY), str(case.dag_folder), str(BENCH))
    if result is None:
        sys.exit(f"error: parsing {case.dag_folder} failed ({error[-3000:]})")
    if result["import_errors"]:
        sys.exit(
            f"error: import errors in case {case.name}:\n{json.dumps(result['import_errors'], indent=2)}"
        )
    if result["dags"] < case.specs or result["dags"] % case.specs:
        sys.exit(f"error: case {case.name} parsed {result['dags']} DAGs for {case.specs} specs")
    if result["heavy_before"]:
        print(f"note: {result['heavy_before']} were imported before DagBag (by Airflow itself)")
    return result


def breakdown(python: Path, tmp: Path, case: Case) -> None:
    b, error = run_code(python, tmp, case, BREAKDOWN, str(BENCH))
    if b is None:
        print(f"(breakdown failed: {error[-800:]})")
        return
    built = ", ".join(f"{name}() {secs:.3f} s for {n} DAGs" for name, (secs, n) in b["builders"].items())
    print(
        f"Where the lazy parse of {b['specs']} specs goes (one fresh interpreter): YAML {b['yaml_s']:.3f} s "
        f"with the pure-Python loader, {b['cyaml_s']:.3f} s with yaml.CSafeLoader (what load_specs uses); "
        f"spec validation {b['pydantic_s']:.3f} s; load_specs() {b['load_specs_s']:.3f} s, once per process "
        f"(cached); then DAG building: {built}"
    )


def build_cases(tmp: Path, many: int, per_file: bool) -> list[Case]:
    shipped = SPECS_DIR
    generated = make_specs(tmp / f"specs{many}", many)
    dags = REPO / "dags"
    naive = make_naive_folder(tmp / "naive_dags", dags)
    shipped_count = len(list(shipped.glob("*.yaml")))
    cases = [
        Case("lazy (dags/)", dags, shipped, shipped_count),
        Case("lazy (dags/)", dags, generated, many),
        Case("naive (top-level imports)", naive, shipped, shipped_count),
        Case("naive (top-level imports)", naive, generated, many),
    ]
    if per_file:  # DagBag also takes a single file: which DAG file costs what
        cases += [Case(f"  one file: dags/{p.name}", p, generated, many) for p in sorted(dags.glob("*.py"))]
    return cases


def verdict(case: Case, median: float, many: int) -> tuple[str, str]:
    """The target applies to the lazy folder at the largest spec count; naive rows are the reference."""
    if case.name.startswith("naive"):
        return "reference", "-"
    if case.name.startswith("lazy") and case.specs == many:
        return f"< {TARGET_S} s", "PASS" if median < TARGET_S else "FAIL"
    return "-", "-"


def print_table(cases: list[Case], many: int) -> bool:
    """Print the table; returns whether a target failed."""
    print_header(
        f"{'case':<27} {'specs':>5} {'DAGs':>5} {'median s':>9} {'min s':>8} {'peak RSS MB':>11} "
        f"{'Δ RSS MB':>8}  {'heavy modules imported':<52} {'target':<9} {'result'}"
    )
    failed = False
    for case in cases:
        secs = [s["seconds"] for s in case.samples]
        peak = max(s["peak_rss_kb"] for s in case.samples) / 1024
        delta = statistics.median((s["peak_rss_kb"] - s["rss_before_kb"]) / 1024 for s in case.samples)
        heavy = sorted({m for s in case.samples for m in s["heavy_after"]})
        target, result = verdict(case, statistics.median(secs), many)
        failed |= result == "FAIL"
        print(
            f"{case.name:<27} {case.specs:>5} {case.samples[0]['dags']:>5} {statistics.median(secs):>9.3f} {min(secs):>8.3f} "
            f"{peak:>11.0f} {delta:>8.0f}  {', '.join(heavy) or 'none':<52} {target:<9} {result}"
        )
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per case (default 5)")
    parser.add_argument("--specs", type=int, default=TARGET_SPECS, help="generated specs (default 50)")
    parser.add_argument("--python", type=Path, default=default_python(), help="interpreter of the venv")
    parser.add_argument(
        "--no-per-file", action="store_true", help="skip the per-DAG-file cases (50 specs, one file each)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if args.runs < 1 or args.specs < 1:
        parser.error("--runs and --specs must be positive")

    check_python(args.python, "airflow, mlcycle")
    started = time.perf_counter()
    with scratch_dir("mlcycle-bench-parse-", keep=args.keep) as tmp:
        cases = build_cases(tmp, args.specs, not args.no_per_file)
        print(f"python {args.python}; {args.runs} fresh interpreter(s) per case; state in {tmp}")
        for round_ in range(1, args.runs + 1):
            for case in cases:
                case.samples.append(measure(args.python, tmp, case))
            print(f"  round {round_}/{args.runs} done ({time.perf_counter() - started:.0f} s)", flush=True)
        print()
        print(
            f"DagBag(dag_folder=...) in a fresh interpreter; median of {args.runs}; {machine()}; "
            f"project at {revision()}"
        )
        failed = print_table(cases, args.specs)
        lazy_many = next(c for c in cases if c.name.startswith("lazy") and c.specs == args.specs)
        naive_many = next(c for c in cases if c.name.startswith("naive") and c.specs == args.specs)
        ratio = statistics.median(s["seconds"] for s in naive_many.samples) / statistics.median(
            s["seconds"] for s in lazy_many.samples
        )
        print(f"\nnaive / lazy at {args.specs} specs: {ratio:.0f}x slower to parse")
        breakdown(args.python, tmp, lazy_many)
        print(f"total {time.perf_counter() - started:.0f} s")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
