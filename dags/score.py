"""Scoring DAGs, one per model spec in include/models/*.yaml: score_<model>.

Each scores a new batch with the champion by chunks and partitions (mapped tasks),
runs the challenger in shadow on the same rows, and writes predictions and a report
to the lake. Scheduled on the model's `<model>_incoming` asset. See mlcycle_airflow.factory.
"""

from mlcycle_airflow.factory import score_dags

globals().update(score_dags())
