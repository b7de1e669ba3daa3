"""The data lake: one root, laid out per model.

::

    <root>/<model>/incoming/<YYYY-MM-DD>.parquet    daily batches as they land
    <root>/<model>/quarantine/<run>/                 batches that broke the contract + result
    <root>/<model>/runs/<run>/                       per-run manifest, holdout, reports
    <root>/<model>/reference/                        training reference profiles
    <root>/<model>/predictions/                      scored batches

Functions take path objects with the pathlib interface (``pathlib.Path``,
``upath.UPath`` or Airflow's ``ObjectStoragePath``, which is a ``UPath``) or URI
strings, so the same code reads a local folder in tests and S3 in production.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mlcycle.errors import DataNotFoundError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

BATCH_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[-_].*)?\.parquet$")


class LakePath(Protocol):
    """The part of the pathlib interface the lake needs."""

    name: str

    def __truediv__(self, other: str) -> LakePath: ...
    def open(self, mode: str = ...) -> Any: ...
    def exists(self) -> bool: ...
    def iterdir(self) -> Any: ...
    def mkdir(self, parents: bool = ..., exist_ok: bool = ...) -> None: ...


def as_path(uri: str | LakePath) -> LakePath:
    """A path object for a URI: local paths stay ``pathlib.Path``; others become ``UPath``."""
    if not isinstance(uri, str):
        return uri
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    if "://" in uri:
        from upath import UPath

        return UPath(uri)
    return Path(uri)


def uri_of(path: LakePath) -> str:
    return str(path)


def run_key(run_id: str) -> str:
    """A folder-safe form of an Airflow run id (``manual__2026-01-01T00:00:00+00:00``)."""
    key = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_").lstrip(".")
    return key or "run"


class Lake:
    def __init__(self, root: str | LakePath, model: str) -> None:
        self.root = as_path(root)
        self.model = model
        self.base = self.root / model

    def _dir(self, name: str, *parts: str) -> LakePath:
        path = self.base / name
        for part in parts:
            path = path / part
        return path

    @property
    def incoming(self) -> LakePath:
        return self._dir("incoming")

    def quarantine(self, key: str) -> LakePath:
        return self._dir("quarantine", key)

    def run_dir(self, key: str) -> LakePath:
        return self._dir("runs", key)

    @property
    def reference(self) -> LakePath:
        return self._dir("reference")

    @property
    def predictions(self) -> LakePath:
        return self._dir("predictions")

    def batch_path(self, day: dt.date, suffix: str = "") -> LakePath:
        return self.incoming / f"{day.isoformat()}{suffix}.parquet"

    def batches(self) -> list[tuple[dt.date, LakePath]]:
        """Incoming batches, oldest first (files not named by date are ignored)."""
        if not self.incoming.exists():
            return []
        found = []
        for path in self.incoming.iterdir():
            if m := BATCH_RE.match(path.name):
                found.append((dt.date.fromisoformat(m.group(1)), path))
        return sorted(found, key=lambda item: (item[0], item[1].name))

    def quarantined_names(self) -> set[str]:
        root = self._dir("quarantine")
        if not root.exists():
            return set()
        return {p.name for run in root.iterdir() for p in run.iterdir() if p.name.endswith(".parquet")}


@dataclass(frozen=True)
class Manifest:
    """Which files a run uses, and a digest of their bytes."""

    model: str
    batches: list[str]
    rows: int
    digest: str
    source: str  # "window" or "batch_uri"
    window_start: str | None = None
    window_end: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        return cls(**data)


def last_batch_date(uris: list[str]) -> str | None:
    """The newest date among daily batch file names (None when none is named by date)."""
    days = [m.group(1) for u in uris if (m := BATCH_RE.match(as_path(u).name))]
    return max(days) if days else None


def digest_files(paths: list[LakePath]) -> str:
    h = hashlib.sha256()
    for path in paths:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def read_parquet(paths: list[LakePath], columns: list[str] | None = None) -> pd.DataFrame:
    import pandas as pd

    frames = []
    for path in paths:
        with path.open("rb") as fh:
            frames.append(pd.read_parquet(fh, columns=columns))
    if not frames:
        raise DataNotFoundError("no parquet files to read")
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def count_rows(paths: list[LakePath]) -> int:
    import pyarrow.parquet as pq

    total = 0
    for path in paths:
        with path.open("rb") as fh:
            total += pq.ParquetFile(fh).metadata.num_rows
    return total


def write_bytes_atomic(path: LakePath, data: bytes) -> None:
    """Write then rename, so readers never see half a file and reruns overwrite cleanly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    with tmp.open("wb") as fh:
        fh.write(data)
    tmp.rename(path) if isinstance(path, Path) else tmp.rename(str(path))


def write_parquet(df: pd.DataFrame, path: LakePath) -> None:
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    write_bytes_atomic(path, buf.getvalue())


def write_json(obj: Any, path: LakePath) -> None:
    write_bytes_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def read_json(path: LakePath) -> Any:
    with path.open("rb") as fh:
        return json.load(fh)


def resolve_training_data(
    lake: Lake,
    *,
    window_days: int,
    as_of: dt.date,
    batch_uri: str | None = None,
    latest_only: bool = False,
) -> Manifest:
    """The files a training run uses: ``batch_uri`` if given, else the window's batches.

    With ``latest_only`` (scoring), the newest batch that is not in quarantine.
    The window is the ``window_days`` days ending at ``as_of`` (inclusive). Batches
    already in quarantine are left out, with a warning, so one bad day does not block
    every nightly run after it.
    """
    if not batch_uri and latest_only:
        found = [p for _, p in lake.batches() if p.name not in lake.quarantined_names()]
        if not found:
            raise DataNotFoundError(
                f"no batch for model {lake.model!r} in {lake.incoming}; land one there or trigger with a batch_uri"
            )
        batch_uri = uri_of(found[-1])
    if batch_uri:
        path = as_path(batch_uri)
        if not path.exists():
            raise DataNotFoundError(f"batch_uri {batch_uri} does not exist; pass the URI of a Parquet file")
        if not path.name.endswith(".parquet"):
            raise DataNotFoundError(f"batch_uri {batch_uri} is not a .parquet file; pass a Parquet file")
        paths, source, start, end = [path], "batch_uri", None, None
    else:
        start = as_of - dt.timedelta(days=window_days - 1)
        quarantined = lake.quarantined_names()
        paths = []
        for day, path in lake.batches():
            if not start <= day <= as_of:
                continue
            if path.name in quarantined:
                log.warning("skipping %s: it is in quarantine (it failed validation before)", path)
                continue
            paths.append(path)
        if not paths:
            raise DataNotFoundError(
                f"no batches for model {lake.model!r} between {start} and {as_of} in {lake.incoming}; "
                f"generate some with `mlcycle generate {lake.model}` or trigger with a batch_uri"
            )
        source, start, end = "window", start.isoformat(), as_of.isoformat()
    return Manifest(
        model=lake.model,
        batches=[uri_of(p) for p in paths],
        rows=count_rows(paths),
        digest=digest_files(paths),
        source=source,
        window_start=start,
        window_end=end,
    )


def quarantine(lake: Lake, manifest: Manifest, key: str, result: dict[str, Any]) -> LakePath:
    """Copy the manifest's batches and the validation result to ``quarantine/<key>/``."""
    target = lake.quarantine(key)
    target.mkdir(parents=True, exist_ok=True)
    for uri in manifest.batches:
        src = as_path(uri)
        with src.open("rb") as fh:
            write_bytes_atomic(target / src.name, fh.read())
    write_json(result, target / "validation_result.json")
    write_json(manifest.to_dict(), target / "manifest.json")
    return target
