"""Rollback DAGs, one per model spec in include/models/*.yaml: rollback_<model>.

Triggered by a person with a form (version or the previous champion, reason, force): checks the
target, moves the alias `champion` back with compare-and-set and records the move in the ledger.
See mlcycle_airflow.factory.
"""

from mlcycle_airflow.factory import rollback_dags

globals().update(rollback_dags())
