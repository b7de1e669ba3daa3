-- Databases of the distributed topology besides Airflow's own.
CREATE DATABASE mlflow OWNER airflow;
CREATE DATABASE mlcycle OWNER airflow;
