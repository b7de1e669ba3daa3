"""mlcycle_airflow: Airflow adapters of the mlcycle library (hooks, operators, links, DAG factory, plugin).

The domain logic lives in ``mlcycle`` (``include/``); this package only wires it to Airflow.
"""
