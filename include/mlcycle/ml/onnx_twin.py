"""The ONNX twin of a fitted pipeline: conversion with skl2onnx, a parity check against
scikit-learn on the holdout, and an onnxruntime model with the two prediction methods
scoring uses (``predict`` / ``predict_proba`` + ``classes_``).

Inputs: one ONNX input per feature, named like the column: numeric columns as float32
(missing = NaN), categorical columns as strings with a missing value given as
``MISSING_CATEGORY``. skl2onnx converts the estimators and the one-hot encoder; the
``SimpleImputer`` steps are converted here, because skl2onnx's own converter refuses a
string imputer whose missing value is NaN and drops the ``add_indicator`` columns (the
estimator then gets fewer columns than it was trained on).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from typing import TYPE_CHECKING, Any, NamedTuple

from mlcycle.core.errors import MlcycleError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from mlcycle.core.spec import ModelSpec, Task

log = logging.getLogger(__name__)

# A missing categorical value, as the ONNX graph receives it (strings cannot be NaN). A real
# empty string in the data is therefore imputed like a missing one; the parity check on the
# holdout would show it if that changed any score.
MISSING_CATEGORY = ""
TARGET_OPSET = {"": 21, "ai.onnx.ml": 3}
CLASSES_KEY = "mlcycle.classes"


class NotConvertible(MlcycleError):
    """The pipeline has a step or an option that cannot be expressed in ONNX here."""


# --- conversion ------------------------------------------------------------------------------


def _imputer_shape(operator: Any) -> None:
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    imputer = operator.raw_operator
    rows = operator.inputs[0].get_first_dimension()
    width = sum(i.get_second_dimension() or 1 for i in operator.inputs)
    if isinstance(operator.inputs[0].type, StringTensorType):
        operator.outputs[0].type = StringTensorType([rows, width])
    else:
        indicators = len(imputer.indicator_.features_) if imputer.add_indicator else 0
        operator.outputs[0].type = FloatTensorType([rows, width + indicators])


def _imputer_converter(scope: Any, operator: Any, container: Any) -> None:
    """``Where(missing, statistics, X)`` per column, plus the missing-indicator columns
    (those that had missing values at fit time, as scikit-learn keeps them) when asked."""
    from skl2onnx.common.data_types import StringTensorType
    from skl2onnx.operator_converters.common import concatenate_variables
    from skl2onnx.proto import onnx_proto

    imputer = operator.raw_operator
    x = concatenate_variables(scope, operator.inputs, container)
    out = operator.outputs[0].full_name
    stats, mask = scope.get_unique_variable_name("statistics"), scope.get_unique_variable_name("missing")
    n = len(imputer.statistics_)
    if isinstance(operator.inputs[0].type, StringTensorType):
        if imputer.add_indicator:
            raise NotConvertible("a SimpleImputer with add_indicator on categorical columns")
        values = [str(s).encode() for s in imputer.statistics_]
        container.add_initializer(stats, onnx_proto.TensorProto.STRING, [1, n], values)
        sentinel = scope.get_unique_variable_name("missing_category")
        container.add_initializer(sentinel, onnx_proto.TensorProto.STRING, [], [MISSING_CATEGORY.encode()])
        container.add_node("Equal", [x, sentinel], [mask])
        container.add_node("Where", [mask, stats, x], [out])
        return
    container.add_initializer(
        stats, onnx_proto.TensorProto.FLOAT, [1, n], [float(s) for s in imputer.statistics_]
    )
    container.add_node("IsNaN", [x], [mask])
    if not imputer.add_indicator:
        container.add_node("Where", [mask, stats, x], [out])
        return
    imputed, columns = scope.get_unique_variable_name("imputed"), scope.get_unique_variable_name("columns")
    picked, indicator = scope.get_unique_variable_name("picked"), scope.get_unique_variable_name("indicator")
    features = [int(i) for i in imputer.indicator_.features_]
    container.add_node("Where", [mask, stats, x], [imputed])
    container.add_initializer(columns, onnx_proto.TensorProto.INT64, [len(features)], features)
    container.add_node("Gather", [mask, columns], [picked], axis=1)
    container.add_node("Cast", [picked], [indicator], to=onnx_proto.TensorProto.FLOAT)
    container.add_node("Concat", [imputed, indicator], [out], axis=1)


def convert(pipeline: Pipeline, spec: ModelSpec) -> bytes:
    """The serialised ONNX model of a fitted pipeline; ``NotConvertible`` says why not."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.impute import SimpleImputer

    if spec.features.text:
        # Measured, not assumed: skl2onnx has no converter for character n-grams (char_wb), nor for
        # hashed text, and its word tokeniser differs from scikit-learn's enough to move
        # probabilities by 0.01 (far beyond scoring.onnx_tolerance).
        raise NotConvertible(
            f"text features {spec.features.text}: skl2onnx converts neither character n-grams nor hashed "
            "text, and its word tokeniser does not match scikit-learn's; the version is scored with scikit-learn"
        )
    inputs = [(c, FloatTensorType([None, 1])) for c in spec.features.numeric]
    inputs += [(c, StringTensorType([None, 1])) for c in spec.features.categorical]
    classification = spec.task.classifies
    try:
        with warnings.catch_warnings():
            # skl2onnx 1.20 writes Python bools into tree attributes; protobuf 6 still takes them.
            warnings.filterwarnings("ignore", ".*Expected an int, got a boolean", DeprecationWarning)
            onx = convert_sklearn(
                pipeline,
                initial_types=inputs,
                target_opset=TARGET_OPSET,
                options={id(pipeline): {"zipmap": False}} if classification else None,
                custom_conversion_functions={SimpleImputer: _imputer_converter},
                custom_shape_calculators={SimpleImputer: _imputer_shape},
            )
    except NotConvertible:
        raise
    except Exception as exc:  # skl2onnx raises many types (RuntimeError, NotImplementedError, ...)
        raise NotConvertible(f"skl2onnx: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from exc
    if classification:
        meta = onx.metadata_props.add()
        meta.key, meta.value = CLASSES_KEY, json.dumps(pipeline.classes_.tolist())
    return onx.SerializeToString()


# --- runtime ---------------------------------------------------------------------------------


class OnnxModel:
    """An onnxruntime session behind ``predict`` / ``predict_proba`` / ``classes_``."""

    def __init__(self, onnx_bytes: bytes, spec: ModelSpec, *, threads: int | None = None) -> None:
        """``threads``: onnxruntime's intra-op threads (None: one per core, its default; a
        single thread scores 100k rows ~1.5-1.8x slower than two on the shipped models)."""
        import numpy as np
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        if threads:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        self._numeric, self._categorical = spec.features.numeric, spec.features.categorical
        meta = self._session.get_modelmeta().custom_metadata_map
        self.classes_ = np.asarray(json.loads(meta[CLASSES_KEY])) if CLASSES_KEY in meta else None

    def _feed(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        import numpy as np
        import pandas as pd

        feed = {c: X[c].to_numpy(dtype=np.float32, na_value=np.nan).reshape(-1, 1) for c in self._numeric}
        for c in self._categorical:
            col = X[c]
            if not pd.api.types.is_string_dtype(col):  # e.g. integer codes: onnxruntime takes only str
                col = col.astype(object).where(col.isna(), col.astype(str))
            feed[c] = col.fillna(MISSING_CATEGORY).to_numpy(dtype=object).reshape(-1, 1)
        return feed

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        import numpy as np

        if self.classes_ is None:
            raise TypeError("predict_proba needs a classifier")
        _, proba = self._session.run(None, self._feed(X))
        return np.asarray(proba, dtype="float64")

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        import numpy as np

        if self.classes_ is not None:
            return self.classes_[self.predict_proba(X).argmax(axis=1)]
        (out,) = self._session.run(None, self._feed(X))
        return np.asarray(out, dtype="float64").ravel()


# --- parity ----------------------------------------------------------------------------------


class Output(NamedTuple):
    """What a model outputs on some rows (every class probability, or the prediction), and how
    long that took."""

    values: np.ndarray
    seconds: float


def output(model: Any, X: pd.DataFrame, task: Task) -> Output:
    """``model``'s class probabilities (classifiers) or predictions (regressors) on ``X``, timed."""
    import numpy as np

    started = time.perf_counter()
    if task.classifies:
        values = np.asarray(model.predict_proba(X), dtype="float64")
    else:
        values = np.asarray(model.predict(X), dtype="float64")
    return Output(values, time.perf_counter() - started)


def parity(
    pipeline: Pipeline, model: OnnxModel, X: pd.DataFrame, spec: ModelSpec, reference: Output | None = None
) -> dict[str, Any]:
    """Both engines on the same rows: the largest difference of a score (class probability or
    prediction), absolute for |score| <= 1 and relative beyond, against the spec's tolerance.
    ``reference`` is scikit-learn's ``output`` on ``X`` when the caller already has it."""
    import numpy as np

    tolerance = spec.scoring.onnx_tolerance
    ref, sklearn_s = reference if reference is not None else output(pipeline, X, spec.task)
    started = time.perf_counter()
    got = output(model, X, spec.task).values
    onnx_s = time.perf_counter() - started
    diff = np.abs(got - ref)
    worst = float((diff / np.maximum(np.abs(ref), 1.0)).max())
    report = {
        "rows": len(X),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "max_scaled_diff": worst,
        "tolerance": tolerance,
        "passed": worst <= tolerance,
        "sklearn_seconds": round(sklearn_s, 4),
        "onnx_seconds": round(onnx_s, 4),
    }
    if spec.task.classifies:
        report["label_agreement"] = float((ref.argmax(axis=1) == got.argmax(axis=1)).mean())
    return report


def export(
    pipeline: Pipeline, spec: ModelSpec, holdout: pd.DataFrame, reference: Output | None = None
) -> tuple[bytes | None, dict[str, Any]]:
    """Convert and check a fitted pipeline. ``status``: ``passed`` (the bytes are returned),
    ``failed`` (converted, but outside the tolerance on the holdout), ``not_convertible``.
    ``reference``: the pipeline's ``output`` on the holdout, if already computed."""
    started = time.perf_counter()
    try:
        onnx_bytes = convert(pipeline, spec)
    except NotConvertible as exc:
        log.info("no ONNX twin for %s: %s", spec.name, exc)
        return None, {"status": "not_convertible", "reason": str(exc)}
    if holdout.empty:
        return None, {"status": "failed", "reason": "no holdout rows to check it on"}
    report = parity(pipeline, OnnxModel(onnx_bytes, spec), holdout[spec.features.all], spec, reference)
    report["convert_seconds"] = round(time.perf_counter() - started, 3)
    report["size_mb"] = round(len(onnx_bytes) / 1e6, 4)
    if not report["passed"]:
        reason = f"max difference {report['max_scaled_diff']:.3g} > tolerance {report['tolerance']:g}"
        log.warning("ONNX twin of %s refused: %s", spec.name, reason)
        return None, {"status": "failed", "reason": reason, **report}
    log.info(
        "ONNX twin of %s passed parity on %d holdout rows (max difference %.3g, tolerance %g; %.1fx faster)",
        spec.name,
        report["rows"],
        report["max_scaled_diff"],
        report["tolerance"],
        report["sklearn_seconds"] / max(report["onnx_seconds"], 1e-9),
    )
    return onnx_bytes, {"status": "passed", **report}
