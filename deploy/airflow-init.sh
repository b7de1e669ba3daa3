#!/bin/sh
# One-shot set-up of the distributed topology (the airflow-init service of docker-compose.yaml,
# and tests/services/): migrate the metadata database (Airflow's and the FAB auth manager's
# tables) and create the admin user from AIRFLOW_ADMIN_USER / AIRFLOW_ADMIN_PASSWORD if it is
# not there yet. Safe to run again: an existing user keeps its password.
set -eu
: "${AIRFLOW_ADMIN_PASSWORD:?set AIRFLOW_ADMIN_PASSWORD (make env generates one)}"
user="${AIRFLOW_ADMIN_USER:-admin}"
airflow db migrate
if airflow users list --output plain 2>/dev/null | awk '{print $2}' | grep -qx "$user"; then
  echo "admin user $user exists"
else
  airflow users create --role Admin --username "$user" --password "$AIRFLOW_ADMIN_PASSWORD" \
    --email "${AIRFLOW_ADMIN_EMAIL:-$user@localhost}" --firstname "$user" --lastname admin
fi
