"""What a Beam scoring run needs, without Apache Beam: the job document the launcher hands the
pipeline (``mlcycle.ml.beam_scoring``), the runner options from the spec and a connection, and
the metrics the pipeline leaves behind.

Importing ``apache_beam`` costs about 2 s, so only the pipeline process imports it; the flows and
the Airflow task use this module to prepare the job and read its results.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from mlcycle.core.errors import SpecError
from mlcycle.core.spec import BEAM_RESERVED_OPTIONS, BEAM_RUNNERS

if TYPE_CHECKING:
    from mlcycle.core.spec import BeamSpec

METRICS_NAMESPACE = "mlcycle"
# Rows a dead-letter file records per bad row.
DEAD_LETTER_COLUMNS = ("row", "key", "column", "reason", "value")


@dataclass(frozen=True)
class ModelFile:
    """A model the workers load from a file, without MLflow: an ONNX twin or a skops pipeline
    (``trusted``: the skops types it needs, checked again when it is loaded)."""

    engine: str  # "onnx" | "sklearn"
    uri: str
    version: str
    trusted: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BeamJob:
    """Everything a scoring pipeline reads: input, outputs, the spec (as validated JSON), the
    served model (and shadow) as files, the input schema rows are checked against, the
    provenance columns, and how many rows a batch fed to the model holds."""

    input_uri: str
    output_uri: str
    dead_letter_uri: str
    metrics_uri: str
    spec: dict[str, Any]
    features: list[dict[str, Any]]  # mlcycle.ml.schema.Feature.to_dict() of each input
    classes: list[Any]
    model: ModelFile
    meta: dict[str, str]
    batch_rows: int
    shadow: ModelFile | None = None
    shadow_uri: str | None = None
    model_threads: int | None = 1  # onnxruntime / OpenMP threads per worker process

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BeamJob:
        model = ModelFile(**raw.pop("model"))
        shadow = raw.pop("shadow", None)
        return cls(model=model, shadow=ModelFile(**shadow) if shadow else None, **raw)


def launcher_path() -> str:
    """The script the Beam hook runs (``python <script> --job=... --runner=...``)."""
    return str(resources.files("mlcycle.ml") / "beam_launch.py")


def runner_options(
    beam: BeamSpec, connection_extra: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """The runner and its pipeline options: the spec's ``scoring.beam`` section, then the Airflow
    connection's extra JSON (``connection_extra``; it may also name the ``runner``) over it.
    DirectRunner options are only passed to the DirectRunner. ``SpecError`` for an unknown runner
    or an option the job sets itself."""
    extra = dict(connection_extra or {})
    runner = str(extra.pop("runner", beam.runner))
    if runner not in BEAM_RUNNERS:
        raise SpecError(
            f"unknown Beam runner {runner!r} in connection {beam.connection_id!r}; use one of {list(BEAM_RUNNERS)}"
        )
    reserved = sorted(
        k for k in extra if k in BEAM_RESERVED_OPTIONS - {"direct_num_workers", "direct_running_mode"}
    )
    if reserved:
        raise SpecError(
            f"connection {beam.connection_id!r} sets {reserved}, which the scoring job sets itself"
        )
    options: dict[str, Any] = {}
    if runner == "DirectRunner":
        options |= {
            "direct_running_mode": beam.direct_running_mode,
            "direct_num_workers": beam.direct_num_workers,
        }
    options |= dict(beam.options) | extra
    return runner, options


def model_threads(runner: str, options: dict[str, Any]) -> int | None:
    """Native threads per worker process: the cores shared out among the DirectRunner's processes
    (oversubscribed threads slow every one of them down); a cluster runner's workers keep the
    libraries' defaults."""
    if runner != "DirectRunner":
        return None
    workers = int(options.get("direct_num_workers") or 1)
    return max(1, (os.cpu_count() or 1) // max(workers, 1))


def summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a pipeline's metrics document (see ``beam_scoring.collect_metrics``)."""
    counters = metrics.get("counters", {})
    latency = metrics.get("distributions", {}).get("batch_latency_ms")
    return {
        "rows_read": int(counters.get("rows_read", 0)),
        "rows_scored": int(counters.get("rows_scored", 0)),
        "rows_failed": int(counters.get("rows_failed", 0)),
        "batch_latency_ms": latency,
    }
