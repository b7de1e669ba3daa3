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

gc.freeze()
