"""Preloaded by the LocalExecutor's fork server (``[core] mp_forkserver_preload``).

Every task process is forked from a process that already imported the ML stack, so no task
pays ~3.5 s of imports; ``gc.freeze()`` then keeps those objects out of each task's garbage
collections (otherwise ~0.5 s per task). Measured in bench/train_overhead.py.
"""

import gc
import importlib

PRELOAD = (
    "pandas",
    "pyarrow.parquet",
    "sklearn.ensemble",
    "sklearn.pipeline",
    "mlflow.sklearn",
    "great_expectations",
    "skl2onnx",
    "onnxruntime",
    "mlcycle.data.contracts",
    "mlcycle.flows.train",
    "mlcycle.ml.training",
)
for _name in PRELOAD:
    importlib.import_module(_name)

# MLflow checks a logged model's pip requirements against the installed packages through a
# package -> module map it builds once per process by scanning every installed distribution
# (~1 s here, bench/train_step.py): build it here, once, for every task forked from this server.
from mlflow.utils.requirements_utils import _init_packages_to_modules_map  # noqa: E402

_init_packages_to_modules_map()

gc.freeze()
