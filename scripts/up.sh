#!/usr/bin/env bash
# `make up`: Airflow standalone (UI on :8080) and the MLflow UI (:5000) on this machine.
# Uses the same state as `make demo` (.local/, lake/). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export PATH="$PWD/$BIN:$PATH"  # standalone starts `airflow` sub-commands by name
AIRFLOW_PORT=${AIRFLOW_PORT:-8080}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
mkdir -p .local/logs "$MLCYCLE_ARTIFACT_ROOT"

# Auth stays on: the simple auth manager with its users and generated passwords, never
# "everyone is admin".
case "$(printf '%s' "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS:-False}" | tr '[:upper:]' '[:lower:]')" in
  true|t|1) echo "refusing to start: AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True turns login off;" \
               "unset it and sign in with a user of AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS" >&2; exit 1 ;;
esac

"$BIN/airflow" db migrate > .local/logs/db-migrate.log 2>&1
# The task processes write the MLflow store and the ledger while the MLflow UI and the ledger
# page read them: WAL lets readers and the one writer proceed together. It is a property of
# the file, set once here (Airflow opens its own SQLite DB in WAL mode by itself).
"$BIN/python" - "$MLFLOW_TRACKING_URI" "$MLCYCLE_LEDGER_URI" <<'PY'
import sqlite3
import sys
from pathlib import Path

for uri in sys.argv[1:]:
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.close()
PY

# Standalone starts a scheduler, an api-server, a triggerer and workers: stop the
# whole process group, not just the two processes started here.
trap 'trap - EXIT INT TERM; kill 0 2>/dev/null || true' EXIT INT TERM

"$BIN/mlflow" server --backend-store-uri "$MLFLOW_TRACKING_URI" \
  --default-artifact-root "$MLCYCLE_ARTIFACT_ROOT" --host 127.0.0.1 --port "$MLFLOW_PORT" \
  > .local/logs/mlflow-server.log 2>&1 &

AIRFLOW__API__PORT=$AIRFLOW_PORT "$BIN/airflow" standalone > .local/logs/airflow-standalone.log 2>&1 &

echo "starting Airflow (log: .local/logs/airflow-standalone.log) and MLflow (log: .local/logs/mlflow-server.log)..."
for _ in $(seq 1 120); do
  if curl -fsS "http://localhost:$AIRFLOW_PORT/api/v2/monitor/health" > /dev/null 2>&1 &&
     curl -fsS "http://localhost:$MLFLOW_PORT/health" > /dev/null 2>&1; then
    break
  fi
  sleep 2
done
# DAGs are created unpaused (AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False); unpause
# any that an earlier setting left paused.
for dag in $("$BIN/python" -c "from mlcycle.core.spec import load_specs; from mlcycle.core.settings import specs_dir; print(' '.join(s.train_dag_id for s in load_specs(specs_dir())))"); do
  "$BIN/airflow" dags unpause "$dag" > /dev/null 2>&1 || true
done
password_file="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
echo
echo "Airflow UI: http://localhost:$AIRFLOW_PORT   (user admin, password: $(
  "$BIN/python" -c "import json,sys; print(json.load(open(sys.argv[1])).get('admin', '?'))" "$password_file" 2>/dev/null || echo "see $password_file"))"
echo "MLflow UI:  http://localhost:$MLFLOW_PORT"
echo "Promotion ledger: http://localhost:$AIRFLOW_PORT/mlcycle/ledger"
echo "Ctrl-C stops both."
wait
