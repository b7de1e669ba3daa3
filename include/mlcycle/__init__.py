"""mlcycle: the domain library of the tabular model lifecycle.

Pure Python over pandas, scikit-learn, MLflow and Great Expectations; nothing here
imports Airflow. Importing this package (and ``mlcycle.core.spec``) is cheap: the heavy
libraries are imported inside the functions that need them.
"""

__version__ = "0.1.0"
