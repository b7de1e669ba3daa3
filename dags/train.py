"""Training DAGs, one per model spec in include/models/*.yaml: train_<model>.

Each validates new data with Great Expectations, trains the spec's scikit-learn
pipeline, evaluates it beside the current champion on the same holdout, applies the
spec's gate and promotes on a pass. See mlcycle_airflow.factory.
"""

from mlcycle_airflow.factory import train_dags

globals().update(train_dags())
