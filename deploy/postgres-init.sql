-- Databases of the distributed topology besides Airflow's own (POSTGRES_DB), owned by the
-- user the entrypoint runs this as (POSTGRES_USER): MLflow's tracking store and registry,
-- MLflow's basic-auth users, and the promotion ledger.
CREATE DATABASE mlflow;
CREATE DATABASE mlflow_auth;
CREATE DATABASE mlcycle;
