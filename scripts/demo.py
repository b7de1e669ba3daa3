"""`make demo`: generate sample data, run train_<model> for every shipped model, then
score_<model> on the newest batch with the champion and monitor_<model> (drift check).

Safe to run again: batches already in the lake are kept, a model whose champion was
trained on identical data is not retrained, and the summary says what changed.
Logs of each DAG run go to .local/logs/; the summary is printed at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOGS = REPO / ".local" / "logs"


def run(cmd: list[str], log: Path | None = None) -> int:
    """Exit code of ``cmd``, never raising on failure; output goes to ``log`` (stdout and stderr) if given."""
    if log is None:
        return subprocess.run(cmd, check=False).returncode
    with log.open("w") as fh:
        return subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False).returncode


def outcome(dag_id: str) -> tuple[str, list[tuple[str, str, str]]]:
    """State of the newest run of ``dag_id`` and (task, state, note) for each task."""
    from airflow.models import DagRun, TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        dr = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).limit(1)
        ).first()
        if dr is None:
            return "missing", []
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == dr.run_id)
        ).all()
        order = [
            "resolve_data", "validate_data", "train_model", "evaluate_model", "gate", "promote",
            "resolve_batch", "validate_batch", "choose_model", "plan_partitions", "score_partition", "finalize",
            "resolve_newest", "validate_newest", "check_drift", "request_retrain",
        ]  # fmt: skip
        tasks = []
        for ti in sorted(tis, key=lambda t: order.index(t.task_id) if t.task_id in order else 99):
            note = session.scalars(
                select(XComModel.value).where(
                    XComModel.dag_id == dag_id,
                    XComModel.run_id == dr.run_id,
                    XComModel.task_id == ti.task_id,
                    XComModel.key == "skip_reason",
                )
            ).first()
            if ti.task_id == "finalize" and str(ti.state) == "success":
                out = ti.xcom_pull(task_ids="finalize", session=session) or {}
                note = f"{out.get('rows')} rows by v{out.get('version')} -> {out.get('output_uri')}"
            elif ti.task_id == "check_drift" and str(ti.state) == "success":
                note = (ti.xcom_pull(task_ids="check_drift", session=session) or {}).get("reason")
            tasks.append((ti.task_id, str(ti.state), str(note or "")))
        return str(dr.state), tasks


def run_dag(dag_id: str) -> int:
    """Run one DAG with `airflow dags test`, print each task's outcome; 1 if it failed unexpectedly."""
    log = LOGS / f"{dag_id}.log"
    print(f"-- {dag_id} (log: {log.relative_to(REPO)})")
    started = time.monotonic()
    run([str(BIN / "airflow"), "dags", "test", dag_id, "-c", json.dumps({"reason": "make demo"})], log)
    state, tasks = outcome(dag_id)
    print(f"   run {state} in {time.monotonic() - started:.0f}s")
    for task, tstate, note in tasks:
        print(f"   {task:15} {tstate:15} {note.splitlines()[0] if note else ''}")
    # A refused candidate is an outcome, not a failure: the gate succeeds and promote is skipped.
    states = {t: s for t, s, _ in tasks}
    refused = states.get("gate") == "success" and states.get("promote") == "skipped"
    if refused:
        print("   the gate refused the candidate: the champion is unchanged (see the verdict below)")
    elif state != "success":
        print(f"   FAILED: see {log}")
        return 1
    return 0


def main() -> int:
    """Migrate the DB, generate data, run each model's DAGs, print the summary; 1 if a DAG run failed.

    Reads ``AIRFLOW_HOME``, ``MLFLOW_TRACKING_URI``, ``MLCYCLE_LAKE_ROOT`` and ``MLCYCLE_LEDGER_URI``, which
    the Makefile sets (``KeyError`` without them)."""
    LOGS.mkdir(parents=True, exist_ok=True)
    print("== mlcycle demo ==")
    print(
        f"Airflow home {os.environ['AIRFLOW_HOME']}\nMLflow {os.environ['MLFLOW_TRACKING_URI']}\n"
        f"lake {os.environ['MLCYCLE_LAKE_ROOT']}\nledger {os.environ['MLCYCLE_LEDGER_URI']}\n"
    )
    if run([str(BIN / "airflow"), "db", "migrate"], LOGS / "db-migrate.log") != 0:
        print(f"airflow db migrate failed; see {LOGS / 'db-migrate.log'}")
        return 1

    from mlcycle.core import settings
    from mlcycle.core.spec import load_specs

    specs = load_specs(settings.specs_dir())
    print("-- sample data")
    for spec in specs:
        if spec.data.generator:
            run([str(BIN / "mlcycle"), "generate", spec.name, "--days", str(spec.data.training_window_days)])

    failures = 0
    for spec in specs:
        for dag_id in (spec.train_dag_id, f"score_{spec.name}", f"monitor_{spec.name}"):
            failures += run_dag(dag_id)
    print("\n-- summary")
    run([str(BIN / "mlcycle"), "summary"])
    print(
        "\nNext: `make up` for the Airflow UI (http://localhost:8080) and MLflow UI (http://localhost:5000);"
        " `mlcycle ledger` for every alias move."
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
