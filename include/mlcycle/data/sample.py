"""A training window larger than memory, read as a bounded, stratified, seeded sample.

Training holds its window as one frame (about 1 GB per million rows). With
``data.max_training_rows`` set, ``read_sample`` reads the window batch by batch and keeps from
each batch its share of the bound (``max_rows · batch rows / window rows``, largest remainders
first), drawn within the batch per target class for a classifier (the class mix of every batch
is kept) and uniformly for a regressor, with a seed derived from the spec's ``split_seed`` and
the batch's content digest, so the same window always gives the same rows. Peak memory is one
batch plus the sample. The exact composition goes in the lineage (``Sample.lineage``): per
batch its digest, rows and rows kept (per class), the seed, and a digest of the kept keys.

Nothing here imports Airflow.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from mlcycle.core.spec import ModelSpec
    from mlcycle.data.lake import LakePath


def quotas(rows: list[int], bound: int) -> list[int]:
    """Rows to keep from each of batches with ``rows`` rows, ``bound`` in all (or every row when
    the window is within it): proportional, the remainders to the largest fractions."""
    total = sum(rows)
    if total <= bound:
        return list(rows)
    exact = [r * bound / total for r in rows]
    kept = [int(x) for x in exact]
    order = sorted(range(len(rows)), key=lambda i: (-(exact[i] - kept[i]), i))
    for i in order[: bound - sum(kept)]:
        kept[i] += 1
    return kept


def _draw(frame: pd.DataFrame, keep: int, seed: int, strata: Any) -> tuple[pd.DataFrame, dict[str, int]]:
    """``keep`` rows of ``frame``, spread over ``strata`` (one value per row, or None) in proportion."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if strata is None:
        idx = np.sort(rng.choice(len(frame), keep, replace=False))
        return frame.iloc[idx], {}
    values = np.asarray(strata).astype(str)
    classes, counts = np.unique(values, return_counts=True)
    per_class = quotas(counts.tolist(), keep)
    picked = []
    for cls, n in zip(classes, per_class, strict=True):
        members = np.flatnonzero(values == cls)
        picked.append(rng.choice(members, n, replace=False))
    idx = np.sort(np.concatenate(picked)) if picked else np.asarray([], dtype="int64")
    return frame.iloc[idx], {str(c): int(n) for c, n in zip(classes, per_class, strict=True)}


@dataclass
class Sample:
    """The rows read and how they were chosen."""

    frame: pd.DataFrame
    lineage: dict[str, Any] = field(default_factory=dict)


def read_sample(spec: ModelSpec, paths: list[LakePath], digests: list[str], rows: list[int]) -> Sample:
    """At most ``spec.data.max_training_rows`` rows of the batches ``paths`` (with their content
    ``digests`` and row counts ``rows``, from the run's manifest), read one batch at a time."""
    import pandas as pd

    from mlcycle.data import lake as lk

    bound = spec.data.max_training_rows
    if bound is None:
        raise ValueError(f"model {spec.name} sets no data.max_training_rows: read the window whole")
    keep = quotas(rows, bound)
    parts, batches = [], []
    keys = hashlib.sha256()
    for path, digest, n, k in zip(paths, digests, rows, keep, strict=True):
        frame = lk.read_parquet([path])
        seed = int.from_bytes(hashlib.sha256(f"{spec.data.split_seed}:{digest}".encode()).digest()[:8], "big")
        strata = frame[spec.data.target] if spec.task.classifies else None
        chosen, per_class = _draw(frame, k, seed, strata) if k < n else (frame, {})
        for key in sorted(chosen[spec.data.key_column].astype(str)):
            keys.update(key.encode() + b"\n")
        parts.append(chosen)
        batches.append({"uri": lk.uri_of(path), "sha256": digest, "rows": n, "kept": len(chosen),
                        **({"kept_per_class": per_class} if per_class else {})})  # fmt: skip
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
    lineage = {
        "max_training_rows": bound,
        "window_rows": sum(rows),
        "rows": len(frame),
        "method": "stratified by target within each batch" if spec.task.classifies else "uniform within each batch",
        "seed": f"sha256(split_seed {spec.data.split_seed} : batch sha256)",
        "keys_sha256": keys.hexdigest(),
        "batches": batches,
    }  # fmt: skip
    return Sample(frame, lineage)
