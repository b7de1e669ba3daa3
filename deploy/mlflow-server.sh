#!/bin/sh
# The MLflow tracking server of the distributed topology, with MLflow's own authentication
# (`--app-name basic-auth`) and proxied artifacts. docker-compose.yaml and tests/services/ both
# start it with this script, from the variables compose sets:
#   MLFLOW_BACKEND_STORE_URI      runs and registry (PostgreSQL)
#   MLFLOW_ARTIFACTS_DESTINATION  where the server stores artifacts: a folder or s3://bucket/prefix
#   MLFLOW_AUTH_DATABASE_URI      the basic-auth users and permissions (PostgreSQL)
#   MLFLOW_AUTH_ADMIN_USERNAME, MLFLOW_AUTH_ADMIN_PASSWORD   the admin made on first start
#   MLFLOW_FLASK_SERVER_SECRET_KEY  signs the auth app's sessions
#   MLFLOW_HOST, MLFLOW_PORT, MLFLOW_ALLOWED_HOSTS         where it listens, Host headers it accepts
# The auth app reads its database from an ini file, not the environment: the file is written
# here, readable by this user only, so no credential sits in a tracked file.
set -eu
: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI (the tracking store)}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?set MLFLOW_ARTIFACTS_DESTINATION (a folder or s3:// URI)}"
: "${MLFLOW_AUTH_DATABASE_URI:?set MLFLOW_AUTH_DATABASE_URI (the basic-auth user store)}"
: "${MLFLOW_AUTH_ADMIN_PASSWORD:?set MLFLOW_AUTH_ADMIN_PASSWORD (make env generates one)}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set MLFLOW_FLASK_SERVER_SECRET_KEY (make env generates one)}"
umask 077
config_dir=$(mktemp -d)
cat > "$config_dir/basic_auth.ini" <<INI
[mlflow]
default_permission = READ
database_uri = ${MLFLOW_AUTH_DATABASE_URI}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
export MLFLOW_AUTH_CONFIG_PATH="$config_dir/basic_auth.ini"
exec mlflow server --app-name basic-auth --serve-artifacts \
  --host "${MLFLOW_HOST:-0.0.0.0}" --port "${MLFLOW_PORT:-5000}" \
  --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-mlflow,mlflow:5000,localhost,localhost:5000}" \
  --workers "${MLFLOW_WORKERS:-2}"
