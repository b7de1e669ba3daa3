"""Monitoring DAGs, one per model spec in include/models/*.yaml: monitor_<model>.

Each compares recent batches with the champion's training reference profile and, when
drift is found and the spec's guardrails allow it, emits the <model>_retrain asset event
that train_<model> is scheduled on. See mlcycle_airflow.factory.
"""

from mlcycle_airflow.factory import monitor_dags

globals().update(monitor_dags())
