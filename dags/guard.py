"""Guard DAGs, one per model spec in include/models/*.yaml: guard_<model>.

On every @champion move MLflow's webhook reports (and daily): compare @champion with the ledger,
record a move made outside the pipeline, alert or revert it. See mlcycle_airflow.factory.
"""

from mlcycle_airflow.factory import guard_dags

globals().update(guard_dags())
