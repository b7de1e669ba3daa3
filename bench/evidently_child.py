"""Evidently 0.7 ``DataDriftPreset`` on two Parquet files: the child of ``bench/drift.py``.

Runs in its own virtual environment, not the project's: Evidently 0.7 does not import with
pandas 3.1 (the project's), pandas 2.3.x works. ``bench/drift.py --setup-evidently`` creates
that venv (``/tmp/evidently-venv`` by default); by hand::

    python3 -m venv /tmp/evidently-venv
    /tmp/evidently-venv/bin/pip install 'evidently==0.7.*' 'pandas==2.3.*' pyarrow

Loads both files fully with pandas (Evidently works on in-memory frames), declares the column
kinds explicitly (the same numeric and categorical lists as the other tools), and times
``Report([DataDriftPreset(...)], include_tests=True).run(current, reference)``. With
``--method`` and ``--threshold`` every column uses that method (``psi`` with 0.2 is the
decision rule shared with the other tools); without them Evidently chooses per column (for
more than 1,000 reference rows: normed Wasserstein distance ≥ 0.1 for numeric columns with
more than 5 values, Jensen-Shannon distance, natural log, ≥ 0.1 otherwise).

Memory: VmRSS after the imports ("before"), then the peak counter is reset and VmHWM is read
after ``report.run``: the peak covers reading the files, building the Datasets and the run.

Per column it reports the method, the threshold, the score and the drift flag (the status of
the preset's per-column "Value Drift" test: FAIL means drift). Prints one line: the marker
``@@RESULT@@`` followed by JSON (``_common.emit``).

Usage (``bench/drift.py`` does this)::

    /tmp/evidently-venv/bin/python bench/evidently_child.py REF.parquet CUR.parquet \\
        --numeric a,b --categorical c [--method psi --threshold 0.2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

# bench/ is on sys.path when a script runs (_common imports only the standard library)
from _common import emit, mark_before, peak_mb


def _columns(snapshot_dict: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per column: method, threshold and score from the ValueDrift metrics, drift from their tests."""
    out: dict[str, dict[str, Any]] = {}
    by_id: dict[str, str] = {}
    for metric in snapshot_dict.get("metrics", []):
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            column = config["column"]
            by_id[metric["id"]] = column
            out[column] = {
                "method": config.get("method"),
                "threshold": config.get("threshold"),
                "score": float(metric["value"]),
                "drifted": None,
            }
    for test in snapshot_dict.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        column = params.get("column") or by_id.get(test.get("metric_config", {}).get("metric_id", ""))
        if params.get("type", "").endswith("ValueDrift") and column in out:
            out[column]["drifted"] = test.get("status") == "FAIL"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("reference")
    parser.add_argument("current")
    parser.add_argument("--numeric", required=True, help="comma-separated numeric columns")
    parser.add_argument("--categorical", required=True, help="comma-separated categorical columns")
    parser.add_argument("--method", default=None, help="one method for every column (e.g. psi)")
    parser.add_argument("--threshold", type=float, default=None, help="one threshold for every column")
    args = parser.parse_args()
    load1 = os.getloadavg()[0]
    numeric = [c for c in args.numeric.split(",") if c]
    categorical = [c for c in args.categorical.split(",") if c]
    columns = numeric + categorical

    started = time.perf_counter()
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently import __version__ as evidently_version
    from evidently.presets import DataDriftPreset

    import_s = time.perf_counter() - started
    before = mark_before()

    started = time.perf_counter()
    reference = pd.read_parquet(args.reference, columns=columns)
    current = pd.read_parquet(args.current, columns=columns)
    read_s = time.perf_counter() - started

    started = time.perf_counter()
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    ref_ds = Dataset.from_pandas(reference, data_definition=definition)
    cur_ds = Dataset.from_pandas(current, data_definition=definition)
    options: dict[str, Any] = {}
    if args.method:
        options["method"] = args.method
    if args.threshold is not None:
        options["threshold"] = args.threshold
    report = Report([DataDriftPreset(**options)], include_tests=True)
    prepare_s = time.perf_counter() - started

    started = time.perf_counter()
    snapshot = report.run(current_data=cur_ds, reference_data=ref_ds)
    run_s = time.perf_counter() - started
    peak = peak_mb()

    per_column = _columns(snapshot.dict())
    count = next(
        (
            m["value"]
            for m in snapshot.dict().get("metrics", [])
            if m.get("config", {}).get("type", "").endswith("DriftedColumnsCount")
        ),
        None,
    )
    result = {
        "tool": "evidently",
        "evidently": evidently_version,
        "pandas": pd.__version__,
        "python": sys.version.split()[0],
        "options": options,
        "reference_rows": len(reference),
        "current_rows": len(current),
        "import_s": import_s,
        "read_s": read_s,
        "prepare_s": prepare_s,
        "run_s": run_s,
        "seconds": run_s,
        **before,
        "peak_rss_mb": peak,
        "load1": load1,
        "drifted_columns_count": count,
        "features": per_column,
        "missing_flags": sorted(c for c, v in per_column.items() if v["drifted"] is None),
    }
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
