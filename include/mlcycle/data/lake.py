"""The data lake: one root, laid out per model.

::

    <root>/<model>/incoming/<YYYY-MM-DD>.parquet    daily batches as they land
    <root>/<model>/quarantine/<run>/                 batches that broke the contract + result
    <root>/<model>/runs/<run>/                       per-run manifest, holdout, reports
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
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from mlcycle.core.errors import DataNotFoundError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import pandas as pd

log = logging.getLogger(__name__)

BATCH_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[-_].*)?\.parquet$")


class LakePath(Protocol):
    """The part of the pathlib interface the lake uses; ``pathlib.Path``, ``upath.UPath`` and
    Airflow's ``ObjectStoragePath`` all have it. Arguments are loose because their signatures
    differ in details (modes, extra keywords) the lake never relies on."""

    @property
    def name(self) -> str: ...
    @property
    def parent(self) -> Any: ...
    def __truediv__(self, other: str, /) -> Any: ...
    def exists(self) -> bool: ...
    def is_file(self) -> bool: ...
    def iterdir(self) -> Iterator[Any]: ...
    @property
    def open(self) -> Callable[..., Any]: ...
    @property
    def mkdir(self) -> Callable[..., None]: ...
    @property
    def unlink(self) -> Callable[..., None]: ...
    @property
    def rename(self) -> Callable[..., Any]: ...


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
    """The string recorded in manifests and XCom: a plain path for a local file, else the full URI."""
    return str(path)


class RunFile(StrEnum):
    """What a run leaves in ``runs/<run>/``: the one list both the flows that write these files
    and the operators that link to them use."""

    MANIFEST = "manifest.json"
    VALIDATION = "validation.json"
    HOLDOUT = "holdout.parquet"
    EVALUATION = "evaluation.json"
    VERDICT_JSON = "verdict.json"
    VERDICT = "verdict.html"
    DRIFT_JSON = "drift.json"
    DRIFT = "drift.html"
    SCORING_JSON = "scoring/report.json"
    SCORING = "scoring/report.html"
    SHADOW_FLIPS = "scoring/shadow_flips.json"


class Lake:
    """Where one model's files live under a lake root (layout in the module docstring); touches no storage."""

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

    def run_file(self, key: str, what: RunFile) -> LakePath:
        return self._dir("runs", key, *what.value.split("/"))

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
    """SHA-256 (hex) of the files' bytes, concatenated in the order given, read in 1 MiB blocks."""
    h = hashlib.sha256()
    for path in paths:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def read_parquet(paths: list[LakePath], columns: list[str] | None = None) -> pd.DataFrame:
    """The files as one frame, in order (``DataNotFoundError`` for an empty list).

    Local files of one schema are read as one Arrow dataset; others are concatenated as Arrow
    tables; either is converted to pandas once (faster than one frame per file,
    bench/train_step.py). Batches whose column types differ beyond what Arrow widens (e.g. a
    column all null in one file) are concatenated by pandas instead."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not paths:
        raise DataNotFoundError("no parquet files to read")
    if len(paths) > 1 and all(isinstance(p, Path) for p in paths):
        # Local files of one schema are read as one dataset, in parallel and without a concat.
        names = [str(p) for p in paths]
        first, *rest = (pq.read_schema(n) for n in names)
        if all(first.equals(schema) for schema in rest):
            return pq.read_table(names, columns=columns).to_pandas()
    tables = []
    for path in paths:
        with path.open("rb") as fh:
            tables.append(pq.read_table(fh, columns=columns))
    if len(tables) == 1:
        return tables[0].to_pandas()
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    return table.to_pandas()


def count_rows(paths: list[LakePath]) -> int:
    """Total rows of the Parquet files, read from their footers without reading any data."""
    import pyarrow.parquet as pq

    total = 0
    for path in paths:
        with path.open("rb") as fh:
            total += pq.ParquetFile(fh).metadata.num_rows
    return total


class AtomicFile:
    """An open temporary file that becomes ``path`` when its block ends without error."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.abandoned = False

    def abandon(self) -> None:
        """Drop the file at the end of the block instead of publishing it."""
        self.abandoned = True


@contextmanager
def atomic_write(path: LakePath) -> Iterator[AtomicFile]:
    """Write to ``.<name>.tmp`` beside ``path`` and rename it into place at the end, so readers
    never see half a file and reruns replace their own output; on any error (or ``abandon()``)
    the temporary file is removed and ``path`` is left as it was. The one home of this
    mechanic: every file the lake publishes goes through it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    fh = tmp.open("wb")
    target = AtomicFile(fh)
    try:
        yield target
    except BaseException:
        fh.close()
        if tmp.exists():
            tmp.unlink()
        raise
    fh.close()
    if target.abandoned:
        tmp.unlink()
    else:
        tmp.rename(path) if isinstance(path, Path) else tmp.rename(str(path))


def write_bytes_atomic(path: LakePath, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never part."""
    with atomic_write(path) as out:
        out.fh.write(data)


def write_parquet(df: pd.DataFrame, path: LakePath) -> None:
    """Write ``df`` to ``path`` as Parquet without the index, atomically (built in memory first)."""
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    write_bytes_atomic(path, buf.getvalue())


def write_json(obj: Any, path: LakePath) -> None:
    """Write ``obj`` to ``path`` as indented, key-sorted JSON, atomically; other values become ``str``."""
    write_bytes_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def read_json(path: LakePath) -> Any:
    """The JSON document at ``path``, a local file or any fsspec URI."""
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
        paths, source = [path], "batch_uri"
        window: tuple[str | None, str | None] = (None, None)
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
        source, window = "window", (start.isoformat(), as_of.isoformat())
    return Manifest(
        model=lake.model,
        batches=[uri_of(p) for p in paths],
        rows=count_rows(paths),
        digest=digest_files(paths),
        source=source,
        window_start=window[0],
        window_end=window[1],
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
