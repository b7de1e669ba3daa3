"""mlcycle_airflow: Airflow adapters of the mlcycle library (hooks, operators, links, DAG factory, plugin).

The domain logic lives in ``mlcycle`` (``include/``); this package only wires it to Airflow.
"""

import logging
import warnings

# skops (skops.io._utils.whichmodule) finds the module of a function without ``__module__``
# (scipy ufuncs in a fitted pipeline) by a getattr on every loaded module. In an Airflow
# process that includes Airflow's deprecated-import shims (airflow.utils.timezone, ...), each
# of which answers with a DeprecatedImportWarning (a FutureWarning): about 1,160 warnings,
# nine lines in ten of a train_<model> log, per saved or loaded model, none of them about a
# deprecated import of ours. Silenced for that caller and those messages only.
warnings.filterwarnings(
    "ignore", message=r"The `airflow\.", category=FutureWarning, module=r"skops\.io\._utils"
)
# great_expectations logs one INFO line per decorated function at import ("Skipping registering
# function ... closure"): about 200 lines at the top of every task log that validates.
logging.getLogger("great_expectations._docs_decorators").setLevel(logging.WARNING)
