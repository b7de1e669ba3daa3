"""Drift check cost: ``mlcycle.monitor`` beside Evidently 0.7 and a plain scipy loop, same files.

Data: 20 features, seeded numpy draws (12 float: normal, lognormal, uniform, exponential,
gamma, beta; 4 integer: Poisson, binomial; 4 categorical strings with 5 to 10 categories).
The reference has 1,000,000 rows; the current windows 100,000, 1,000,000 and 10,000,000
rows, drawn with other seeds from the same generators except for 5 shifted features:

- ``num_00`` and ``num_01``: mean + 0.6 standard deviations;
- ``num_04``: standard deviation x 1.75;
- ``int_00``: Poisson rate 3 -> 4.5;
- ``cat_00``: category mix (0.40, 0.25, 0.15, 0.12, 0.08) -> (0.20, 0.25, 0.20, 0.15, 0.20).

The shifts are large enough to be drifted under every rule compared here (PSI on deciles or
on Evidently's equal-width bins, the KS statistic, the normed Wasserstein distance, the JS
distance), so a disagreement between tools means a bug, not a threshold coin-flip; the
agreement table prints the values to show the margins. Every file is Parquet with row groups
of 200,000 rows, written piece by piece (the parent never holds more than one row group).
``mlcycle.ml.scoring.iter_chunks`` never crosses a row group, so chunks of up to 200,000 rows are
what they say.

Tools, each in a fresh interpreter per run. Imports are not timed. Memory: "before" is the
resident set (VmRSS) after the imports (and, for mlcycle, loading the profile); the peak
counter (VmHWM) is then reset and read after the measured part, so "peak" is the highest
resident set while the tool worked, baseline included. ``ru_maxrss`` is not used: Linux
carries the RSS of the spawning parent over into a fresh child's ``ru_maxrss``.

``mlcycle``
    the monitoring check: ``accumulate_parquet(current, profile, chunk_rows)`` +
    ``assess(profile, stats)``, the reference profile loaded from JSON first (it is built
    once, at training time, by ``build_profile``: timed apart). Default rule: numeric
    drifted if PSI > 0.2 or KS statistic > 0.1, categorical if PSI > 0.2 or JS > 0.1. Also
    assessed (not timed) with every feature overridden to PSI > 0.2, the rule shared with
    Evidently. Chunks of 100,000 rows; at 1,000,000 rows also 50,000 and 200,000, to show
    that peak memory follows the chunk size and not the row count. At 1,000,000 and
    10,000,000 rows also with ``OPENBLAS_NUM_THREADS=1`` (see ``BLAS1``: a BLAS call in the
    accumulation is slow when OpenBLAS spreads it over busy cores).
``scipy loop``
    the plain way: both files read fully with pandas, then per column
    ``scipy.stats.ks_2samp(method="asymp")`` and PSI on the reference's decile bins
    (numeric), or PSI on category frequencies and ``scipy.spatial.distance.jensenshannon``
    (base 2, categorical); same thresholds as mlcycle. Timed: read + loop.
``evidently``
    ``Report([DataDriftPreset()])`` in a separate venv (``bench/evidently_child.py``), once
    with Evidently's own per-column choice (normed Wasserstein ≥ 0.1 numeric, JS distance
    with natural log ≥ 0.1 categorical) and once with ``method="psi", threshold=0.2``.
    Timed: ``report.run`` only (reading the files and building Datasets are reported apart),
    which favours Evidently: the mlcycle time includes reading the current file. Run at
    100,000 and 1,000,000 current rows only (about 95 s at 1,000,000 on a 2-core box; at
    10,000,000 it would need the frames and their copies in memory, several GB, for tens of
    minutes).

Targets: the 1,000,000-row check under 1 s; at least 20x faster than Evidently at 1,000,000
rows; the same verdicts as the scipy loop (default rule) and as Evidently (PSI rule); peak RSS
at 10,000,000 current rows less than 1.2x that at 1,000,000, while it grows with the chunk size.

Run from the repository root::

    .venv/bin/python bench/drift.py --setup-evidently   # once: creates /tmp/evidently-venv
    .venv/bin/python bench/drift.py                     # all sizes, 7-10 minutes
    .venv/bin/python bench/drift.py --quick             # 100,000 current rows only
    .venv/bin/python bench/drift.py --no-evidently --data-dir /tmp/drift-data   # keep the files

Data go to a temporary directory (about 1.6 GB with the 10,000,000-row file), removed at the
end unless ``--data-dir`` is given (then the files are reused when their spec matches).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# bench/ is on sys.path when a script runs
from _common import (
    emit,
    fmt,
    fmt_rows,
    load_average,
    machine,
    mark_before,
    peak_mb,
    print_header,
    require_disk,
    revision,
    run_child,
    scratch_dir,
)

EVIDENTLY_CHILD = Path(__file__).resolve().with_name("evidently_child.py")
EVIDENTLY_VENV = Path("/tmp/evidently-venv")
EVIDENTLY_REQUIREMENTS = ["evidently==0.7.*", "pandas==2.3.*", "pyarrow"]

REFERENCE_ROWS = 1_000_000
SIZES = (100_000, 1_000_000, 10_000_000)
EVIDENTLY_SIZES = (100_000, 1_000_000)
ROW_GROUP = 200_000
CHUNK_ROWS = 100_000
CHUNK_VARIANTS = (50_000, 200_000)  # at 1,000,000 rows, beside CHUNK_ROWS
PSI_T, KS_T, JS_T = 0.2, 0.1, 0.1  # mlcycle.monitor.verdict's defaults: the scipy loop uses the same
TARGET_CHECK_S = 1.0
TARGET_SPEEDUP = 20.0
TARGET_RSS_GROWTH = 1.2
EVIDENTLY_REPEAT_BELOW_S = 30.0  # at 100,000 rows, Evidently is run --runs times only if this fast
SEED_REFERENCE = 1
# mlcycle.monitor.profile.cumulate took the sum of squares as ``d @ d``, a BLAS call that OpenBLAS
# split over its threads, which cost far more than the product itself when the cores were busy (on
# the 2-core box under load: ~6 ms per 100,000-row column against ~0.02 ms single-threaded). It now
# uses ``np.einsum``; the 1,000,000-row check still also runs with OpenBLAS on one thread, which
# shows whether any BLAS call is left in the check.
BLAS1 = {"OPENBLAS_NUM_THREADS": "1"}
BYTES_PER_ROW_GUESS = 170  # Parquet, snappy; checked against the reference file once written


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # "float", "int" or "cat"
    dist: str  # a numpy Generator method, or "choice" for categories
    params: tuple[float, ...]
    shifted: tuple[float, ...] | None = None
    shift: str = ""

    @property
    def numeric(self) -> bool:
        return self.kind != "cat"


FEATURES = [
    Feature("num_00", "float", "normal", (0.0, 1.0), (0.6, 1.0), "mean +0.6 sd"),
    Feature("num_01", "float", "normal", (50.0, 10.0), (56.0, 10.0), "mean +0.6 sd"),
    Feature("num_02", "float", "lognormal", (0.0, 0.5)),
    Feature("num_03", "float", "uniform", (0.0, 10.0)),
    Feature("num_04", "float", "normal", (0.0, 1.0), (0.0, 1.75), "sd x1.75"),
    Feature("num_05", "float", "normal", (-3.0, 0.5)),
    Feature("num_06", "float", "lognormal", (1.0, 0.8)),
    Feature("num_07", "float", "uniform", (-1.0, 1.0)),
    Feature("num_08", "float", "exponential", (2.0,)),
    Feature("num_09", "float", "normal", (100.0, 15.0)),
    Feature("num_10", "float", "gamma", (2.0, 2.0)),
    Feature("num_11", "float", "beta", (2.0, 5.0)),
    Feature("int_00", "int", "poisson", (3.0,), (4.5,), "rate 3 -> 4.5"),
    Feature("int_01", "int", "binomial", (20, 0.3)),
    Feature("int_02", "int", "poisson", (10.0,)),
    Feature("int_03", "int", "binomial", (50, 0.1)),
    Feature("cat_00", "cat", "choice", (0.40, 0.25, 0.15, 0.12, 0.08), (0.20, 0.25, 0.20, 0.15, 0.20), "mix"),
    Feature("cat_01", "cat", "choice", (0.30, 0.20, 0.15, 0.10, 0.10, 0.07, 0.05, 0.03)),
    Feature("cat_02", "cat", "choice", (0.1,) * 10),
    Feature("cat_03", "cat", "choice", (0.35, 0.30, 0.15, 0.10, 0.06, 0.04)),
]
NUMERIC = [f.name for f in FEATURES if f.numeric]
CATEGORICAL = [f.name for f in FEATURES if not f.numeric]
SHIFTED = [f.name for f in FEATURES if f.shifted]
SPEC_HASH = hashlib.sha256(json.dumps([asdict(f) for f in FEATURES] + [ROW_GROUP]).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Data: Parquet files written row group by row group.
# --------------------------------------------------------------------------------------------


def _draw(f: Feature, rng: Any, n: int, shifted: bool) -> Any:
    import numpy as np
    import pyarrow as pa

    params = f.shifted if shifted and f.shifted else f.params
    if f.kind == "cat":
        idx = rng.choice(len(params), size=n, p=np.asarray(params) / np.sum(params)).astype("int32")
        names = pa.array([f"{f.name[-2:]}_{chr(ord('a') + i)}" for i in range(len(params))])
        return pa.DictionaryArray.from_arrays(pa.array(idx), names).cast(pa.string())
    values = getattr(rng, f.dist)(*params, size=n)
    return pa.array(values.astype("int64" if f.kind == "int" else "float64"))


def write_dataset(path: Path, rows: int, seed: int, shifted: bool) -> float:
    """Write ``rows`` rows to ``path`` (reused if present with the same spec); returns seconds."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta_key = b"bench_drift_spec"
    tag = f"{SPEC_HASH}:{rows}:{seed}:{int(shifted)}".encode()
    if path.exists():
        with pq.ParquetFile(path) as pf:
            if (pf.schema_arrow.metadata or {}).get(meta_key) == tag:
                return 0.0
    started = time.perf_counter()
    tmp = path.with_suffix(".partial")
    writer = None
    try:
        for piece, start in enumerate(range(0, rows, ROW_GROUP)):
            n = min(ROW_GROUP, rows - start)
            rng = np.random.default_rng([seed, piece])
            table = pa.table({f.name: _draw(f, rng, n, shifted) for f in FEATURES})
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema.with_metadata({meta_key: tag}))
            writer.write_table(table.replace_schema_metadata({meta_key: tag}), row_group_size=ROW_GROUP)
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(path)
    return time.perf_counter() - started


# --------------------------------------------------------------------------------------------
# Child side: each runs in a fresh interpreter (``--child JSON``) and prints one JSON line.
# --------------------------------------------------------------------------------------------


def child_profile(spec: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    import pyarrow.parquet as pq

    from mlcycle.monitor.profile import build_profile

    import_s = time.perf_counter() - started
    before = mark_before()
    started = time.perf_counter()
    df = pq.read_table(spec["reference"], columns=NUMERIC + CATEGORICAL).to_pandas()
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    profile = build_profile(df, NUMERIC, CATEGORICAL)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    text = json.dumps(profile.to_dict())
    Path(spec["out"]).write_text(text)
    write_s = time.perf_counter() - started
    return {
        "import_s": import_s,
        "read_s": read_s,
        "build_s": build_s,
        "write_s": write_s,
        "seconds": build_s,
        "profile_kb": len(text) / 1024,
        **before,
        "peak_rss_mb": peak_mb(),
    }


def child_mlcycle(spec: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    # What the check touches, imported up front so that the timed part is the check itself
    # (accumulate_parquet imports pyarrow.parquet, mlcycle.data.lake and mlcycle.ml.scoring lazily).
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import scipy.special  # noqa: F401

    import mlcycle.data.lake
    import mlcycle.ml.scoring  # noqa: F401
    from mlcycle.monitor.profile import Profile
    from mlcycle.monitor.verdict import assess
    from mlcycle.monitor.window import accumulate_parquet

    import_s = time.perf_counter() - started
    started = time.perf_counter()
    profile = Profile.from_dict(json.loads(Path(spec["profile"]).read_text()))
    load_s = time.perf_counter() - started
    before = mark_before()

    started = time.perf_counter()
    stats = accumulate_parquet(spec["current"], profile, chunk_rows=spec["chunk_rows"])
    accumulate_s = time.perf_counter() - started
    started = time.perf_counter()
    report = assess(profile, stats)
    assess_s = time.perf_counter() - started
    peak = peak_mb()

    # The rule shared with Evidently: PSI alone, threshold 0.2 (not timed).
    psi_only = assess(
        profile, stats, overrides={f: {"statistic": "psi", "threshold": PSI_T} for f in profile.features}
    )
    features = {}
    for f in report.features:
        values = {str(r.statistic): r.value for r in f.results}
        features[f.feature] = {
            "psi": values.get("psi"),
            "ks": values.get("ks"),
            "js": values.get("js"),
            "wasserstein": values.get("wasserstein"),
            "drifted": f.drifted,
            "drifted_psi": psi_only.feature(f.feature).drifted,
        }
    return {
        "import_s": import_s,
        "load_s": load_s,
        "accumulate_s": accumulate_s,
        "assess_s": assess_s,
        "seconds": accumulate_s + assess_s,
        "rows": stats.rows,
        **before,
        "peak_rss_mb": peak,
        "dataset_drift": report.dataset_drift,
        "features": features,
    }


def child_scipy(spec: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    import numpy as np
    import pandas as pd
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import ks_2samp

    import_s = time.perf_counter() - started
    before = mark_before()

    def psi(ref_p: Any, cur_p: Any, eps: float = 1e-4) -> float:
        a, b = np.clip(ref_p, eps, None), np.clip(cur_p, eps, None)
        return float(np.sum((b - a) * np.log(b / a)))

    started = time.perf_counter()
    columns = NUMERIC + CATEGORICAL
    ref = pd.read_parquet(spec["reference"], columns=columns)
    cur = pd.read_parquet(spec["current"], columns=columns)
    read_s = time.perf_counter() - started

    started = time.perf_counter()
    features = {}
    for name in NUMERIC:
        r = ref[name].to_numpy(dtype="float64")
        c = cur[name].to_numpy(dtype="float64")
        edges = np.unique(np.quantile(r, np.arange(1, 10) / 10))  # right-closed decile bins
        ref_p = np.bincount(np.searchsorted(edges, r), minlength=len(edges) + 1) / len(r)
        cur_p = np.bincount(np.searchsorted(edges, c), minlength=len(edges) + 1) / len(c)
        p = psi(ref_p, cur_p)
        ks = float(ks_2samp(r, c, method="asymp").statistic)
        features[name] = {"psi": p, "ks": ks, "drifted": p > PSI_T or ks > KS_T, "drifted_psi": p > PSI_T}
    for name in CATEGORICAL:
        vr, vc = ref[name].value_counts(), cur[name].value_counts()
        keys = vr.index.union(vc.index)
        ref_p = vr.reindex(keys, fill_value=0).to_numpy(dtype="float64") / len(ref)
        cur_p = vc.reindex(keys, fill_value=0).to_numpy(dtype="float64") / len(cur)
        p = psi(ref_p, cur_p)
        js = float(jensenshannon(ref_p, cur_p, base=2))
        features[name] = {"psi": p, "js": js, "drifted": p > PSI_T or js > JS_T, "drifted_psi": p > PSI_T}
    loop_s = time.perf_counter() - started
    return {
        "import_s": import_s,
        "read_s": read_s,
        "loop_s": loop_s,
        "seconds": read_s + loop_s,
        **before,
        "peak_rss_mb": peak_mb(),
        "features": features,
    }


CHILDREN = {"profile": child_profile, "mlcycle": child_mlcycle, "scipy": child_scipy}


def run_as_child(raw: str) -> int:
    spec = json.loads(raw)
    load1 = os.getloadavg()[0]
    result = CHILDREN[spec["kind"]](spec)
    emit({**result, "load1": load1})
    return 0


# --------------------------------------------------------------------------------------------
# Parent side.
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Case:
    """One tool at one current size; ``results`` holds one dict per run (or the error)."""

    tool: str
    rows: int
    label: str
    results: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.results if "error" not in r]

    def median(self, key: str = "seconds") -> float | None:
        values = [r[key] for r in self.ok() if r.get(key) is not None]
        return statistics.median(values) if values else None

    def first(self) -> dict[str, Any] | None:
        ok = self.ok()
        return ok[0] if ok else None


def _outcome(done: Any) -> dict[str, Any]:
    """A child's result, or {"error": ...} on one line."""
    return done.result if done.ok else {"error": " | ".join(done.error(8).splitlines())[-1500:]}


def run_tool(spec: dict[str, Any], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    return _outcome(run_child(cmd, env={**os.environ, **env} if env else None, timeout=timeout))


def run_evidently(
    python: str, reference: Path, current: Path, method: str | None, timeout: float
) -> dict[str, Any]:
    cmd = [
        python,
        str(EVIDENTLY_CHILD),
        str(reference),
        str(current),
        "--numeric",
        ",".join(NUMERIC),
        "--categorical",
        ",".join(CATEGORICAL),
    ]
    if method:
        cmd += ["--method", method, "--threshold", str(PSI_T)]
    return _outcome(run_child(cmd, timeout=timeout))


def evidently_probe(python: str) -> tuple[str | None, str]:
    """(None, versions) if the Evidently venv imports, else (why not, "")."""
    if not Path(python).exists():
        return (
            f"no interpreter at {python}; run `bench/drift.py --setup-evidently` "
            f"(python3 -m venv {EVIDENTLY_VENV}; pip install {' '.join(EVIDENTLY_REQUIREMENTS)})",
            "",
        )
    code = (
        "import json, sys, pandas, evidently; from evidently.presets import DataDriftPreset; "
        "print(json.dumps({'evidently': evidently.__version__, 'pandas': pandas.__version__, "
        "'python': sys.version.split()[0]}))"
    )
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=180, check=False)
    except subprocess.TimeoutExpired:
        return "importing evidently took more than 180 s", ""
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        return f"evidently does not import in {python}: {' | '.join(tail)}", ""
    info = json.loads(done.stdout.strip().splitlines()[-1])
    return None, f"evidently {info['evidently']}, pandas {info['pandas']}, python {info['python']}"


def setup_evidently(venv: Path) -> int:
    print(f"creating {venv} and installing {' '.join(EVIDENTLY_REQUIREMENTS)} (a few minutes)")
    if not (venv / "bin" / "python").exists():
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *EVIDENTLY_REQUIREMENTS], check=False)
    return done.returncode


def _ensure_disk(folder: Path, need_bytes: float) -> None:
    require_disk(folder, 2 * need_bytes, "use --data-dir on a larger disk or --quick")


# --------------------------------------------------------------------------------------------
# Tables.
# --------------------------------------------------------------------------------------------


def _num(x: float | None, spec: str = ".2f") -> str:
    return fmt(x, spec, "n/a")


def _detail(case: Case) -> str:
    if not case.ok():
        return case.errors[0][:80] if case.errors else "not run"
    m = case.median
    if case.tool == "mlcycle":
        return f"accumulate {_num(m('accumulate_s'))} + assess {_num(m('assess_s'), '.3f')}"
    if case.tool == "scipy":
        return f"read {_num(m('read_s'))} + loop {_num(m('loop_s'))}"
    if case.tool.startswith("evidently"):
        return f"not timed: read {_num(m('read_s'))}, Dataset+Report {_num(m('prepare_s'))}"
    if case.tool == "profile":
        return f"reference read {_num(m('read_s'))}; profile {_num(m('profile_kb'), '.0f')} KB JSON"
    return ""


def print_timings(cases: list[Case]) -> None:
    print_header(
        f"{'current':>8} {'tool':<35} {'runs':>4} {'median s':>9} {'min-max s':>13} "
        f"{'peak RSS MB':>11} {'before MB':>9} {'delta MB':>8} {'load1':>5}  detail"
    )
    for c in cases:
        ok = c.ok()
        secs = [r["seconds"] for r in ok]
        spread = f"{min(secs):.2f}-{max(secs):.2f}" if secs else "n/a"
        peak, before = c.median("peak_rss_mb"), c.median("rss_before_mb")
        delta = peak - before if peak is not None and before is not None else None
        runs = f"{len(ok)}/{len(c.results)}"
        print(
            f"{fmt_rows(c.rows):>8} {c.label:<35} {runs:>4} {_num(c.median()):>9} {spread:>13} "
            f"{_num(peak, '.0f'):>11} {_num(before, '.0f'):>9} {_num(delta, '.0f'):>8} "
            f"{_num(c.median('load1')):>5}  {_detail(c)}"
        )


def _flag(v: bool | None) -> str:
    return {True: "DRIFT", False: "-", None: "?"}[v]


def agreement(
    ours: Case | None, scipy_c: Case | None, ev_default: Case | None, ev_psi: Case | None
) -> dict[str, Any]:
    """Per-feature verdicts of every tool, and whether they agree."""
    o = ours.first() if ours else None
    s = scipy_c.first() if scipy_c else None
    ed = ev_default.first() if ev_default else None
    ep = ev_psi.first() if ev_psi else None
    rows = []
    for f in FEATURES:
        rows.append(
            {
                "feature": f.name,
                "kind": f.kind,
                "shift": f.shift,
                "ours": o["features"][f.name] if o else None,
                "scipy": s["features"][f.name] if s else None,
                "ev_default": ed["features"].get(f.name) if ed else None,
                "ev_psi": ep["features"].get(f.name) if ep else None,
            }
        )

    def same(a: str, key_a: str, b: str, key_b: str) -> bool | None:
        pairs = [(r[a], r[b]) for r in rows]
        if any(x is None or y is None for x, y in pairs):
            return None
        return all(x[key_a] == y[key_b] for x, y in pairs)

    def exactly_shifted(a: str, key: str) -> bool | None:
        if any(r[a] is None for r in rows):
            return None
        return sorted(r["feature"] for r in rows if r[a][key]) == sorted(SHIFTED)

    return {
        "rows": rows,
        "ours_vs_scipy": same("ours", "drifted", "scipy", "drifted"),
        "ours_vs_scipy_psi": same("ours", "drifted_psi", "scipy", "drifted_psi"),
        "ours_psi_vs_evidently_psi": same("ours", "drifted_psi", "ev_psi", "drifted"),
        "ours_vs_evidently_default": same("ours", "drifted", "ev_default", "drifted"),
        "exactly_shifted": {
            "ours": exactly_shifted("ours", "drifted"),
            "ours_psi": exactly_shifted("ours", "drifted_psi"),
            "scipy": exactly_shifted("scipy", "drifted"),
            "ev_default": exactly_shifted("ev_default", "drifted"),
            "ev_psi": exactly_shifted("ev_psi", "drifted"),
        },
    }


def print_agreement(rows_n: int, agr: dict[str, Any]) -> None:
    print(f"\nverdicts at {fmt_rows(rows_n)} current rows (DRIFT = drifted; values: first run)")
    print_header(
        f"{'feature':<7} {'shift':<13} | {'ours PSI':>8} {'KS/JS':>6} {'rule':>5} {'PSI':>5} | "
        f"{'scipy PSI':>9} {'KS/JS':>6} {'rule':>5} | {'evidently default':<26} | {'evid. PSI':>9} {'':>5}"
    )
    for r in agr["rows"]:
        o, s, ed, ep = r["ours"], r["scipy"], r["ev_default"], r["ev_psi"]
        second = "ks" if r["kind"] != "cat" else "js"
        ours_part = (
            f"{_num(o['psi'], '.4f'):>8} {_num(o[second], '.3f'):>6} "
            f"{_flag(o['drifted']):>5} {_flag(o['drifted_psi']):>5}"
            if o
            else f"{'n/a':>8} {'':>6} {'':>5} {'':>5}"
        )
        scipy_part = (
            f"{_num(s['psi'], '.4f'):>9} {_num(s[second], '.3f'):>6} {_flag(s['drifted']):>5}"
            if s
            else f"{'n/a':>9} {'':>6} {'':>5}"
        )
        if ed:
            short = {"Wasserstein distance (normed)": "wass", "Jensen-Shannon distance": "JS(e)"}
            method = short.get(ed["method"], ed["method"])
            ev_d = f"{method} {ed['score']:.4f} {_flag(ed['drifted'])}"
        else:
            ev_d = "n/a"
        ev_p = f"{ep['score']:>9.4f} {_flag(ep['drifted']):>5}" if ep else f"{'n/a':>9} {'':>5}"
        print(f"{r['feature']:<7} {r['shift']:<13} | {ours_part} | {scipy_part} | {ev_d:<26} | {ev_p}")
    yes = {True: "yes", False: "NO", None: "n/a"}
    ex = agr["exactly_shifted"]
    print(
        "  same verdicts: ours vs scipy loop (PSI>0.2 or KS/JS>0.1) "
        f"{yes[agr['ours_vs_scipy']]}; ours vs scipy loop (PSI>0.2) {yes[agr['ours_vs_scipy_psi']]}; "
        f"ours vs Evidently (PSI, threshold 0.2) {yes[agr['ours_psi_vs_evidently_psi']]}; "
        f"ours vs Evidently default (different rule) {yes[agr['ours_vs_evidently_default']]}"
    )
    print(
        f"  drifted set is exactly the {len(SHIFTED)} shifted features: ours {yes[ex['ours']]}, "
        f"ours PSI-only {yes[ex['ours_psi']]}, scipy loop {yes[ex['scipy']]}, "
        f"Evidently default {yes[ex['ev_default']]}, Evidently PSI {yes[ex['ev_psi']]}"
    )


def print_targets(cases: dict[tuple[str, int], Case], agreements: dict[int, dict[str, Any]]) -> bool:
    """PASS/FAIL lines; returns whether every evaluated target passed."""
    mid = 1_000_000
    lines: list[tuple[str, bool | None, str]] = []

    ours = cases.get(("mlcycle", mid))
    t = ours.median() if ours else None
    blas1 = cases.get(("mlcycle-blas1", mid))
    t1 = blas1.median() if blas1 else None
    lines.append(
        (
            f"1,000,000-row check < {TARGET_CHECK_S:.0f} s",
            None if t is None else t < TARGET_CHECK_S,
            f"{_num(t)} s" + (f" (OpenBLAS on 1 thread: {t1:.2f} s)" if t1 is not None else ""),
        )
    )

    ev = cases.get(("evidently", mid))
    ev_psi = cases.get(("evidently-psi", mid))
    ev_t = ev.median() if ev else None
    ev_psi_t = ev_psi.median() if ev_psi else None
    if t and ev_t:
        speed = ev_t / t
        extra = f"; PSI config {ev_psi_t / t:.0f}x" if ev_psi_t else ""
        lines.append(
            (
                f">= {TARGET_SPEEDUP:.0f}x faster than Evidently at 1,000,000 rows",
                speed >= TARGET_SPEEDUP,
                f"Evidently {ev_t:.1f} s / ours {t:.2f} s = {speed:.0f}x{extra}",
            )
        )
    else:
        why = ev.errors[0][:90] if ev and ev.errors else "Evidently not run"
        lines.append((f">= {TARGET_SPEEDUP:.0f}x faster than Evidently at 1,000,000 rows", None, why))

    verdict_ok: list[bool] = []
    parts = []
    for n, agr in sorted(agreements.items()):
        checks = {
            "scipy": agr["ours_vs_scipy"],
            "scipy PSI": agr["ours_vs_scipy_psi"],
            "Evidently PSI": agr["ours_psi_vs_evidently_psi"],
        }
        for name, v in checks.items():
            if v is not None:
                verdict_ok.append(v)
                parts.append(f"{fmt_rows(n)} vs {name} {'same' if v else 'DIFFERENT'}")
    lines.append(
        (
            "same verdicts as the scipy loop and Evidently (PSI rule)",
            all(verdict_ok) if verdict_ok else None,
            "; ".join(parts) or "n/a",
        )
    )

    big = cases.get(("mlcycle", 10_000_000))
    p1, p10 = (ours.median("peak_rss_mb") if ours else None), (big.median("peak_rss_mb") if big else None)
    b1, b10 = (ours.median("rss_before_mb") if ours else None), (big.median("rss_before_mb") if big else None)
    if p1 and p10 and b1 is not None and b10 is not None:
        growth = p10 / p1
        lines.append(
            (
                f"peak RSS at 10M < {TARGET_RSS_GROWTH}x that at 1M (chunks of {CHUNK_ROWS:,})",
                growth < TARGET_RSS_GROWTH,
                f"{p1:.0f} -> {p10:.0f} MB = {growth:.2f}x (above before-check RSS: "
                f"{p1 - b1:.0f} -> {p10 - b10:.0f} MB)",
            )
        )
    else:
        lines.append((f"peak RSS at 10M < {TARGET_RSS_GROWTH}x that at 1M", None, "10M not run"))

    by_chunk = {CHUNK_ROWS: ours}
    by_chunk.update({k: cases.get((f"mlcycle-chunk{k}", mid)) for k in CHUNK_VARIANTS})
    deltas = {}
    for k, c in sorted(by_chunk.items()):
        if c and c.median("peak_rss_mb") is not None:
            deltas[k] = c.median("peak_rss_mb") - c.median("rss_before_mb")
    if len(deltas) >= 2:
        ordered = [deltas[k] for k in sorted(deltas)]
        grows = all(a < b for a, b in itertools.pairwise(ordered))
        shown = ", ".join(f"{fmt_rows(k)}: +{v:.0f} MB" for k, v in sorted(deltas.items()))
        lines.append(("peak RSS above baseline grows with chunk size (1M rows)", grows, shown))
    else:
        lines.append(("peak RSS above baseline grows with chunk size (1M rows)", None, "not run"))

    print("\ntargets")
    for name, ok, detail in lines:
        status = {True: "PASS", False: "FAIL", None: "n/a "}[ok]
        print(f"  {status}  {name}: {detail}")
    return all(ok is not False for _, ok, _ in lines)


# --------------------------------------------------------------------------------------------
# Main.
# --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="100,000 current rows only")
    parser.add_argument("--runs", type=int, default=3, help="runs per case at 100k and 1M (median)")
    parser.add_argument("--big-runs", type=int, default=2, help="mlcycle runs at 10M (scipy loop: 1)")
    parser.add_argument("--no-evidently", action="store_true", help="skip Evidently")
    parser.add_argument("--evidently-python", default=str(EVIDENTLY_VENV / "bin" / "python"))
    parser.add_argument("--evidently-timeout", type=float, default=900.0, help="seconds per Evidently run")
    parser.add_argument("--setup-evidently", action="store_true", help="create the Evidently venv and exit")
    parser.add_argument("--data-dir", type=Path, help="keep (and reuse) the Parquet files here")
    parser.add_argument("--json", type=Path, help="also write every raw result here")
    args = parser.parse_args()
    if args.child:
        return run_as_child(args.child)
    if args.setup_evidently:
        return setup_evidently(Path(args.evidently_python).parents[1])

    wall = time.perf_counter()
    sizes = SIZES[:1] if args.quick else SIZES
    print(
        f"drift benchmark: reference {REFERENCE_ROWS:,} rows, current {', '.join(f'{n:,}' for n in sizes)} rows; "
        f"{len(NUMERIC) - 4} float + 4 integer + {len(CATEGORICAL)} categorical features, shifted: {', '.join(SHIFTED)}"
    )
    print(f"{machine()}; project at {revision('include/mlcycle/monitor')}; python {sys.version.split()[0]}")

    ev_reason = "--no-evidently" if args.no_evidently else None
    ev_info = ""
    if ev_reason is None:
        ev_reason, ev_info = evidently_probe(args.evidently_python)
    print(f"evidently: {ev_info or 'not run: ' + str(ev_reason)}")

    if args.data_dir:
        args.data_dir.mkdir(parents=True, exist_ok=True)
    folder = contextlib.nullcontext(args.data_dir) if args.data_dir else scratch_dir("bench-drift-")
    all_results: dict[str, Any] = {"sizes": list(sizes), "cases": {}, "agreement": {}}
    with folder as data:
        _ensure_disk(data, BYTES_PER_ROW_GUESS * (REFERENCE_ROWS + sum(sizes)))
        reference = data / f"reference_{fmt_rows(REFERENCE_ROWS)}.parquet"
        s = write_dataset(reference, REFERENCE_ROWS, SEED_REFERENCE, shifted=False)
        per_row = reference.stat().st_size / REFERENCE_ROWS
        print(f"data in {data}: reference {reference.stat().st_size / 1e6:.0f} MB ({s:.1f} s)", end="")
        currents = {}
        for i, n in enumerate(sizes):
            _ensure_disk(data, per_row * n)
            path = data / f"current_{fmt_rows(n)}.parquet"
            s = write_dataset(path, n, SEED_REFERENCE + 1 + i, shifted=True)
            currents[n] = path
            print(
                f", current {fmt_rows(n)} {path.stat().st_size / 1e6:.0f} MB ({s:.1f} s)", end="", flush=True
            )
        print()

        cases: dict[tuple[str, int], Case] = {}

        def case(tool: str, rows: int, label: str) -> Case:
            return cases.setdefault((tool, rows), Case(tool, rows, label))

        def record(c: Case, result: dict[str, Any]) -> None:
            c.results.append(result)
            if "error" in result:
                c.errors.append(result["error"])
                print(f"    {c.label} at {fmt_rows(c.rows)}: {result['error'][:300]}")

        profile_path = data / "profile.json"
        prof = case("profile", REFERENCE_ROWS, "mlcycle build_profile (reference)")
        print(f"[{time.perf_counter() - wall:5.0f} s] build_profile x{args.runs}; load {load_average()}")
        for _ in range(args.runs):
            record(
                prof,
                run_tool({"kind": "profile", "reference": str(reference), "out": str(profile_path)}, 600),
            )
        if not prof.ok():
            raise SystemExit(f"build_profile failed: {prof.errors[0]}")

        for n in sizes:
            big = n >= 10_000_000
            runs = args.big_runs if big else args.runs
            print(f"[{time.perf_counter() - wall:5.0f} s] {fmt_rows(n)} current rows; load {load_average()}")
            ours = case("mlcycle", n, f"mlcycle check (chunks {CHUNK_ROWS // 1000}k)")
            sc = case("scipy", n, "scipy loop (read both + loop)")
            variants = CHUNK_VARIANTS if n == 1_000_000 else ()
            for r in range(runs):  # interleaved, so machine drift hits every tool alike
                spec = {"profile": str(profile_path), "current": str(currents[n])}
                record(ours, run_tool({**spec, "kind": "mlcycle", "chunk_rows": CHUNK_ROWS}, 600))
                for k in variants:
                    v = case(f"mlcycle-chunk{k}", n, f"mlcycle check (chunks {k // 1000}k)")
                    record(v, run_tool({**spec, "kind": "mlcycle", "chunk_rows": k}, 600))
                if n >= 1_000_000:  # what OpenBLAS threads cost the check (see BLAS1)
                    v = case("mlcycle-blas1", n, "mlcycle check (OpenBLAS 1 thread)")
                    record(v, run_tool({**spec, "kind": "mlcycle", "chunk_rows": CHUNK_ROWS}, 600, BLAS1))
                if not big or r == 0:
                    record(
                        sc,
                        run_tool(
                            {"kind": "scipy", "reference": str(reference), "current": str(currents[n])}, 1800
                        ),
                    )
            if ev_reason is None and n in EVIDENTLY_SIZES:
                for tool, method in (("evidently", None), ("evidently-psi", "psi")):
                    label = "Evidently DataDriftPreset" + (" (psi 0.2)" if method else " (default)")
                    c = case(tool, n, label)
                    for r in range(args.runs if n < 1_000_000 else 1):
                        print(
                            f"[{time.perf_counter() - wall:5.0f} s]   {label} run {r + 1}; load {load_average()}"
                        )
                        record(
                            c,
                            run_evidently(
                                args.evidently_python, reference, currents[n], method, args.evidently_timeout
                            ),
                        )
                        last = c.results[-1]
                        if "error" in last or last["seconds"] > EVIDENTLY_REPEAT_BELOW_S:
                            break
            elif n in EVIDENTLY_SIZES:
                for tool in ("evidently", "evidently-psi"):
                    c = case(
                        tool,
                        n,
                        "Evidently DataDriftPreset" + (" (psi 0.2)" if "psi" in tool else " (default)"),
                    )
                    c.errors.append(f"not run: {ev_reason}")

        print(f"\n[{time.perf_counter() - wall:.0f} s in all] load average {load_average()}")
        print(
            "\nseconds: mlcycle = accumulate_parquet + assess on the current file (profile loaded from JSON); "
            "scipy loop = read both files + per-column loop;\nEvidently = report.run on frames already in memory. "
            "RSS: 'before' = VmRSS after imports (and, for mlcycle, the profile); "
            "peak = VmHWM during the measured part (reset before it), baseline included.\n"
        )
        order = [
            "profile",
            "mlcycle",
            "mlcycle-chunk50000",
            "mlcycle-chunk200000",
            "mlcycle-blas1",
            "scipy",
            "evidently",
            "evidently-psi",
        ]
        shown = sorted(cases.values(), key=lambda c: (c.tool != "profile", c.rows, order.index(c.tool)))
        print_timings(shown)

        agreements = {}
        for n in sizes:
            agreements[n] = agreement(
                cases.get(("mlcycle", n)),
                cases.get(("scipy", n)),
                cases.get(("evidently", n)),
                cases.get(("evidently-psi", n)),
            )
            print_agreement(n, agreements[n])
        # chunk sizes never change a count-based verdict: check it
        for k in CHUNK_VARIANTS:
            v, base = cases.get((f"mlcycle-chunk{k}", 1_000_000)), cases.get(("mlcycle", 1_000_000))
            if v and v.first() and base and base.first():
                same = all(
                    v.first()["features"][f]["psi"] == base.first()["features"][f]["psi"]
                    and v.first()["features"][f]["drifted"] == base.first()["features"][f]["drifted"]
                    for f in NUMERIC + CATEGORICAL
                )
                print(
                    f"  chunks of {k:,} vs {CHUNK_ROWS:,}: identical PSI and verdicts: {'yes' if same else 'NO'}"
                )
        passed = print_targets(cases, agreements)

        all_results["cases"] = {f"{t}@{n}": asdict(c) for (t, n), c in cases.items()}
        all_results["agreement"] = {str(n): a for n, a in agreements.items()}
        all_results["evidently"] = ev_info or ev_reason
        if args.json:
            args.json.write_text(json.dumps(all_results, indent=1, default=str))
            print(f"raw results in {args.json}")
        return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
