"""The data lake: one root, laid out per model.

::

    <root>/<model>/incoming/<YYYY-MM-DD>.parquet    daily batches as they land
    <root>/<model>/quarantine/<run>/                 files that failed (copies), manifest.json
                                                     (per file: source, SHA-256, size), result
    <root>/<model>/runs/<run>/                       per-run manifest, holdout, reports
    <root>/<model>/predictions/                      scored batches
    <root>/<model>/labels/<YYYY-MM-DD>.parquet       labels that arrived later for a batch (key + target)
    <root>/<model>/monitoring/performance.json       per batch: the estimate, and the realized value once labelled
    <root>/<model>/trusted/v<N>.parquet, index.json  the trusted evaluation set (immutable versions)

Functions take path objects with the pathlib interface (``pathlib.Path``,
``upath.UPath`` or Airflow's ``ObjectStoragePath``, which is a ``UPath``) or URI
strings, so the same code reads a local folder in tests and S3 in production.

Quarantine is keyed by content: a later run skips a file only when its bytes have the SHA-256
of a file that failed, never because it shares a name with one. Every location a run reads is
confined (``confine``) to the lake root and the deployment's ``MLCYCLE_ALLOWED_INPUTS``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from mlcycle.core.errors import DataNotFoundError, InputNotAllowedError, UnreadableDataError

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
    def is_dir(self) -> bool: ...
    def stat(self) -> Any: ...
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

        # s3fs (and gcsfs, adlfs) cache listings for the life of the process, which in a worker
        # outlives many tasks: an object another process wrote would stay invisible to listings
        # and ``exists()``. The lake finds its work by listing, so it reads listings fresh.
        return UPath(uri, use_listings_cache=False)
    return Path(uri)


def uri_of(path: LakePath) -> str:
    """The string recorded in manifests and XCom: a plain path for a local file, else the full URI."""
    return str(path)


class RunFile(StrEnum):
    """What a run leaves in ``runs/<run>/``: the one list both the flows that write these files
    and the operators that link to them use."""

    MANIFEST = "manifest.json"
    VALIDATION = "validation.json"
    VALIDATION_PAGE = "validation.html"
    HOLDOUT = "holdout.parquet"
    EVALUATION = "evaluation.json"
    CURVES = "curves.json"  # what the verdict page plots (ROC, PR, calibration or residuals)
    VERDICT_JSON = "verdict.json"
    VERDICT = "verdict.html"
    DRIFT_JSON = "drift.json"
    DRIFT = "drift.html"
    SCORING_JSON = "scoring/report.json"
    SCORING = "scoring/report.html"
    SHADOW_FLIPS = "scoring/shadow_flips.json"
    DATA_SHIFT = "data_shift.json"  # the pre-training check against the champion's reference


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

    def labels_of(self, batch: LakePath) -> LakePath:
        """Where the labels of ``batch`` land when they come later: same file name under labels/."""
        return self._dir("labels", batch.name)

    @property
    def performance_history(self) -> LakePath:
        return self._dir("monitoring", "performance.json")

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

    def quarantine_index(self) -> QuarantineIndex:
        """Every file in quarantine, by content. Stray files, unreadable manifests and
        malformed records are skipped with a warning: they never stop a run."""
        root = self._dir("quarantine")
        if not root.exists():
            return QuarantineIndex([])
        records: list[QuarantinedFile] = []
        for folder in root.iterdir():
            if folder.is_dir():
                records.extend(_quarantine_records(folder))
            else:
                log.warning("ignoring %s: quarantine/ holds one folder per run, not files", folder)
        return QuarantineIndex(records)

    @property
    def trusted(self) -> LakePath:
        """The trusted evaluation set: ``v<N>.parquet`` (immutable versions) and ``index.json``."""
        return self._dir("trusted")


QUARANTINE_MANIFEST = "manifest.json"  # in quarantine/<run>/: what failed, by content


@dataclass(frozen=True)
class QuarantinedFile:
    """One file that failed: the copy's name, where it came from, and the SHA-256 and size of its bytes."""

    name: str
    source: str
    sha256: str
    size: int
    run: str


class QuarantineIndex:
    """The quarantined files by content: ``find`` matches a file only by the SHA-256 of its
    bytes, so a good file that shares a name with a bad one is never skipped."""

    def __init__(self, records: list[QuarantinedFile]) -> None:
        self.records = records
        self._by_digest = {r.sha256: r for r in records}
        self._sizes = {r.size for r in records}

    def find(self, path: LakePath, sha256: str | None = None) -> QuarantinedFile | None:
        """The record of the quarantined file with ``path``'s content, or None. Give ``sha256``
        when it is known; else the file is hashed only if its size is that of a quarantined file."""
        if not self.records:
            return None
        if sha256 is None:
            if path.stat().st_size not in self._sizes:
                return None
            sha256 = file_sha256(path)
        return self._by_digest.get(sha256)


def _quarantine_records(folder: LakePath) -> list[QuarantinedFile]:
    """The records of one quarantine run folder, from its manifest; a folder without records (made
    before they existed, or by hand) is described by hashing its copies, which are the failed bytes."""
    doc: Any = None
    manifest = folder / QUARANTINE_MANIFEST
    if manifest.exists():
        try:
            doc = read_json(manifest)
        except ValueError:
            log.warning("ignoring %s: not a JSON document", manifest)
    if isinstance(doc, dict) and isinstance(doc.get("files"), list):
        records = []
        for item in doc["files"]:
            try:
                records.append(
                    QuarantinedFile(
                        name=str(item["name"]),
                        source=str(item["source"]),
                        sha256=str(item["sha256"]),
                        size=int(item["size"]),
                        run=folder.name,
                    )
                )
            except (KeyError, TypeError, ValueError):
                log.warning("ignoring a malformed record in %s: %r", manifest, item)
        return records
    return [
        QuarantinedFile(p.name, uri_of(p), file_sha256(p), int(p.stat().st_size), folder.name)
        for p in folder.iterdir()
        if p.name.endswith(".parquet") and p.is_file()
    ]


@dataclass(frozen=True)
class Manifest:
    """Which files a run uses, the SHA-256 of each (``digests``, in the order of ``batches``) and
    one digest of them all (``combine_digests``)."""

    model: str
    batches: list[str]
    rows: int
    digest: str
    source: str  # "window" or "batch_uri"
    window_start: str | None = None
    window_end: str | None = None
    digests: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        return cls(**data)


def last_batch_date(uris: list[str]) -> str | None:
    """The newest date among daily batch file names (None when none is named by date)."""
    days = [m.group(1) for u in uris if (m := BATCH_RE.match(as_path(u).name))]
    return max(days) if days else None


def file_sha256(path: LakePath) -> str:
    """SHA-256 (hex) of one file's bytes, read in 1 MiB blocks (what ``sha256sum`` prints)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def combine_digests(digests: list[str]) -> str:
    """One digest for files whose SHA-256s are ``digests``, in order: the file's own for one file,
    else the SHA-256 of the list (so files are read once, and skipping one needs no re-read)."""
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def digest_files(paths: list[LakePath]) -> str:
    """The digest of the files' bytes in the order given (``combine_digests`` of their SHA-256s)."""
    return combine_digests([file_sha256(p) for p in paths])


def unreadable(uri: str, problem: str) -> UnreadableDataError:
    """The error for a file that cannot be read as a batch, naming it and what is wrong."""
    return UnreadableDataError(f"cannot read {uri} as a batch: {problem}", uri=uri, problem=problem)


def _problem(exc: Exception) -> str:
    """What a Parquet reader's error means for the person who landed the file, with the fix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "size is 0 bytes" in text:
        return "the file is empty (0 bytes), e.g. an interrupted upload; land the complete file again"
    if "magic bytes not found" in text:
        return (
            "it is not a Parquet file (no Parquet footer): a CSV or another format named .parquet, "
            "or a truncated upload; export it as Parquet and land it again"
        )
    return (
        f"its Parquet data is corrupt or cannot be decoded ({text}); export it as Parquet again and land it"
    )


@contextmanager
def reading(uri: str) -> Iterator[None]:
    """Turn what reading a bad file raises into domain errors that name it: ``DataNotFoundError``
    for a missing file, object or bucket (or a folder), ``UnreadableDataError`` for bytes that are
    not readable Parquet, ``InputNotAllowedError`` for a scheme whose filesystem is not installed. Outages (connection refused, timeouts, disk errors) pass through
    unchanged, so Airflow retries them."""
    import pyarrow as pa

    try:
        yield
    except FileNotFoundError as exc:
        raise DataNotFoundError(
            f"{uri} does not exist (no such file, object or bucket); check the URI or land the batch first"
        ) from exc
    except ImportError as exc:
        # fsspec has no implementation of the scheme here (e.g. s3fs for s3://): no retry installs it.
        raise InputNotAllowedError(
            f"{uri} cannot be read by this deployment: {exc}. Install that package in the workers' "
            "environment (requirements.txt, the image), or land the file under the lake root"
        ) from exc
    except IsADirectoryError as exc:
        raise DataNotFoundError(
            f"{uri} is a folder, not a Parquet file; land each batch as one file"
        ) from exc
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise unreadable(uri, _problem(exc)) from exc
    except OSError as exc:
        # The Parquet decoder reports a corrupt page as a bare OSError without an errno; a real
        # I/O failure has an errno or a subclass (ConnectionError, TimeoutError) and is retried.
        if type(exc) is OSError and exc.errno is None:
            raise unreadable(uri, _problem(exc)) from exc
        raise


def _rows(path: LakePath, uri: str) -> int:
    """Rows of one Parquet file, from its footer; ``UnreadableDataError`` if it is not readable
    Parquet or has a nested column (list, struct, map), which no tabular step can use."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with reading(uri), path.open("rb") as fh:
        parquet = pq.ParquetFile(fh)
        nested = [f"{f.name} ({f.type})" for f in parquet.schema_arrow if pa.types.is_nested(f.type)]
        rows = int(parquet.metadata.num_rows)
    if nested:
        raise unreadable(
            uri,
            f"column(s) {', '.join(nested)} have a nested type (list, struct or map), which tabular "
            "training and scoring cannot use; flatten them into scalar columns and land it again",
        )
    return rows


def confine(uri: str, lake_root: str | LakePath) -> LakePath:
    """``uri`` as a path, if it lies under the lake root or a location of ``MLCYCLE_ALLOWED_INPUTS``;
    else ``InputNotAllowedError`` naming what is allowed.

    A local path must be absolute and is resolved first (``..`` and symlinks), so neither can leave
    an allowed folder; a URI must start with an allowed prefix and hold no ``.``/``..`` segment."""
    from mlcycle.core import settings

    root = uri_of(as_path(lake_root))
    extra = settings.allowed_inputs()
    path = as_path(uri)
    if isinstance(path, Path):
        if not path.is_absolute():
            why = "it is a relative path; give an absolute one"
        else:
            real = path.resolve()
            folders = [Path(a).resolve() for a in (root, *extra) if "://" not in a]
            if any(real.is_relative_to(folder) for folder in folders):
                return path
            why = f"it resolves to {real}, outside every allowed folder"
    else:
        text = uri_of(path)
        scheme, _, rest = text.partition("://")
        prefixes = [a.rstrip("/") + "/" for a in (root, *extra) if "://" in a]
        if {".", ".."} & set(rest.split("/")):
            why = "'.' and '..' segments are not allowed in a URI"
        elif any(text.startswith(prefix) for prefix in prefixes):
            return path
        elif scheme not in {p.partition("://")[0] for p in prefixes}:
            why = f"the scheme {scheme}:// is not allowed"
        else:
            why = "it is outside every allowed prefix"
    raise InputNotAllowedError(
        f"input {uri} is refused: {why}. Runs read only under the lake root ({root}) and the locations "
        f"in MLCYCLE_ALLOWED_INPUTS ({', '.join(extra) if extra else 'not set'}), which takes "
        "comma-separated absolute folders and s3://bucket/prefix or gs://bucket/prefix URIs. Move the "
        "file under an allowed location, or ask the deployment to add its location to MLCYCLE_ALLOWED_INPUTS."
    )


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


def _refused(path: LakePath, tmp: LakePath, exc: BaseException) -> OSError | None:
    """``exc`` as a ``StorageWriteError`` naming ``path``, the cause and the fix, if it is the
    storage refusing this write; None for anything else (an error of the block's own work, or
    one about another file, which carries that file's name)."""
    import errno
    import os

    from mlcycle.core.errors import StorageWriteError

    fixes = {
        errno.ENOSPC: "the file system holding it is full; free space or grow the volume",
        errno.EDQUOT: "the worker's disk quota is used up; raise the quota or free space",
        errno.EROFS: "the file system holding it is mounted read-only; remount it read-write",
        errno.EACCES: "the worker's user may not write there; give it write access to the folder",
        errno.EPERM: "the worker's user may not write there; give it write access to the folder",
        errno.EFBIG: "the file would exceed the file size limit of the process or file system (ulimit -f)",
    }
    if isinstance(exc, StorageWriteError) or not isinstance(exc, OSError) or exc.errno not in fixes:
        return None
    named = None if exc.filename is None else str(exc.filename).rstrip("/")
    if named is not None and named != str(tmp) and not f"{path}/".startswith(f"{named}/"):
        return None  # about another file (the path itself, the temporary or a folder above are ours)
    return StorageWriteError(
        exc.errno,
        f"cannot write {uri_of(path)}: {os.strerror(exc.errno)} ({errno.errorcode[exc.errno]}): "
        f"{fixes[exc.errno]}, then retry the task. Nothing was published: an earlier file there is unchanged.",
        uri_of(path),
    )


# Object stores have no folders: fsspec's mkdir there creates the *bucket* when it is missing, so
# a misspelt bucket in MLCYCLE_LAKE_ROOT would silently start a new, empty lake.
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})


def _on_object_store(path: LakePath) -> bool:
    return getattr(path, "protocol", None) in OBJECT_STORES


def _make_folder(folder: LakePath) -> None:
    """Create ``folder`` and its parents, where folders exist (on an object store there is nothing to make)."""
    if not _on_object_store(folder):
        folder.mkdir(parents=True, exist_ok=True)


def _missing_bucket(path: LakePath, exc: BaseException) -> OSError | None:
    """A ``StorageWriteError`` naming the bucket, if ``exc`` is an object store refusing the write
    of ``path`` because its bucket does not exist; None for anything else."""
    import errno

    from mlcycle.core.errors import StorageWriteError

    if not (isinstance(exc, FileNotFoundError) and _on_object_store(path)):
        return None
    bucket = str(path).partition("://")[2].partition("/")[0]
    try:
        if path.fs.exists(bucket):  # type: ignore[attr-defined]
            return None
    except OSError:  # cannot tell (e.g. no right to look at the bucket): keep the original error
        return None
    return StorageWriteError(
        errno.ENOENT,
        f"cannot write {uri_of(path)}: the bucket {bucket!r} does not exist; create it (mlcycle never "
        "creates buckets) or fix MLCYCLE_LAKE_ROOT, then retry the task. Nothing was published.",
        uri_of(path),
    )


def _discard(fh: BinaryIO, tmp: LakePath) -> None:
    """Close and remove a temporary file that will not be published. A failure here must not
    hide the error that stopped the write, so it is only logged: a leftover ``.<name>.tmp`` is
    never read as data (no reader matches that name) and the next write of the file replaces it."""
    try:
        fh.close()  # flushing may fail again (a full disk): the file descriptor is closed anyway
    except OSError as exc:
        log.debug("closing the unpublished %s failed too: %s", tmp, exc)
    try:
        if tmp.exists():
            tmp.unlink()
    except OSError as exc:
        log.warning("could not remove the unpublished temporary file %s: %s", tmp, exc)


@contextmanager
def atomic_write(path: LakePath) -> Iterator[AtomicFile]:
    """Write to ``.<name>.tmp`` beside ``path`` and rename it into place at the end, so readers
    never see half a file and reruns replace their own output; on any error (or ``abandon()``)
    the temporary file is removed and ``path`` is left as it was. The one home of this
    mechanic: every file the lake publishes goes through it.

    A write the storage refuses (disk full, read-only, no permission, file size limit) raises
    ``StorageWriteError`` naming ``path``, the cause and the fix; it is an ``OSError``, not a
    domain error, so the task is retried once the storage is fixed."""
    tmp = path.parent / f".{path.name}.tmp"
    try:
        _make_folder(path.parent)
        fh = tmp.open("wb")
    except OSError as exc:
        if refused := _refused(path, tmp, exc):
            raise refused from exc
        raise
    target = AtomicFile(fh)
    try:
        yield target
        fh.close()  # flushes the buffer: a full disk may only show here, before anything is published
        if not target.abandoned:
            # On an object store this is a server-side copy, then a delete: the copy is atomic, so
            # ``path`` is the whole new object or the old one (an interrupted delete leaves the
            # temporary behind, which no reader matches and the next write replaces).
            tmp.rename(path) if isinstance(path, Path) else tmp.rename(str(path))
    except BaseException as exc:
        _discard(fh, tmp)
        if refused := _refused(path, tmp, exc) or _missing_bucket(path, exc):
            raise refused from exc
        raise
    if target.abandoned:
        tmp.unlink()


def write_bytes_atomic(path: LakePath, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never part
    (``StorageWriteError`` if the storage refuses it, see ``atomic_write``)."""
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
    The window is the ``window_days`` days ending at ``as_of`` (inclusive). Batches whose
    content is in quarantine are left out, with a warning, so one bad day does not block
    every nightly run after it; a file that shares only its name with a bad one stays in.

    Every path is confined (``confine``) before it is read. Each file is read once (its SHA-256)
    and its footer once (rows, column types): ``DataNotFoundError`` for a missing file,
    ``UnreadableDataError`` for one that is not readable Parquet.
    """
    # An explicit batch_uri is read even if its bytes failed before: the user asked for it.
    quarantined = QuarantineIndex([]) if batch_uri else lake.quarantine_index()
    window: tuple[str | None, str | None] = (None, None)
    if batch_uri:
        path = confine(batch_uri, lake.root)
        with reading(batch_uri):
            found = path.exists()
        if not found:
            raise DataNotFoundError(f"batch_uri {batch_uri} does not exist; pass the URI of a Parquet file")
        if not path.name.endswith(".parquet"):
            raise DataNotFoundError(f"batch_uri {batch_uri} is not a .parquet file; pass a Parquet file")
        paths, source = [path], "batch_uri"
    elif latest_only:
        newest = next((p for _, p in reversed(lake.batches()) if not quarantined.find(p)), None)
        if newest is None:
            raise DataNotFoundError(
                f"no batch for model {lake.model!r} in {lake.incoming}; land one there or trigger with a batch_uri"
            )
        paths, source = [confine(uri_of(newest), lake.root)], "batch_uri"
    else:
        start = as_of - dt.timedelta(days=window_days - 1)
        paths = [confine(uri_of(p), lake.root) for day, p in lake.batches() if start <= day <= as_of]
        source, window = "window", (start.isoformat(), as_of.isoformat())
    kept, digests, rows = [], [], 0
    for path in paths:
        uri = uri_of(path)
        with reading(uri):
            sha = file_sha256(path)
        if record := quarantined.find(path, sha):
            log.warning(
                "skipping %s: its content failed before (quarantined by run %s, from %s)",
                path,
                record.run,
                record.source,
            )
            continue
        rows += _rows(path, uri)
        kept.append(uri)
        digests.append(sha)
    if not kept:
        raise DataNotFoundError(
            f"no batches for model {lake.model!r} between {window[0]} and {window[1]} in {lake.incoming}; "
            f"generate some with `mlcycle generate {lake.model}` or trigger with a batch_uri"
        )
    return Manifest(
        model=lake.model,
        batches=kept,
        rows=rows,
        digest=combine_digests(digests),
        source=source,
        window_start=window[0],
        window_end=window[1],
        digests=digests,
    )


def quarantine(lake: Lake, key: str, uris: list[str], result: dict[str, Any]) -> LakePath:
    """Copy the files that failed and the result to ``quarantine/<key>/``, with a manifest that
    records per file its source URI and the SHA-256 and size of its bytes: what later runs skip.

    The digest is taken of the bytes copied, so the record always describes the copy."""
    target = lake.quarantine(key)
    _make_folder(target)
    files = []
    for uri in uris:
        src = as_path(uri)
        with src.open("rb") as fh:
            data = fh.read()
        write_bytes_atomic(target / src.name, data)
        files.append(
            {"name": src.name, "source": uri, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        )
    write_json(result, target / "validation_result.json")
    write_json({"model": lake.model, "run": key, "files": files}, target / QUARANTINE_MANIFEST)
    return target


def quarantine_unreadable(lake: Lake, key: str, exc: UnreadableDataError) -> UnreadableDataError:
    """Quarantine the file ``exc`` names (it is data that arrived: later runs must skip it) and
    return the error to raise, which says where it went."""
    where = quarantine(lake, key, [exc.uri], {"success": False, "uri": exc.uri, "problem": exc.problem})
    return UnreadableDataError(
        f"{exc}\nquarantined it in {uri_of(where)}, so later windows skip these bytes; nothing downstream ran.",
        uri=exc.uri,
        problem=exc.problem,
    )


# --- the trusted evaluation set ---------------------------------------------------------------
#
#     <root>/<model>/trusted/v<N>.parquet    validated holdout rows of earlier champions
#     <root>/<model>/trusted/index.json      every version: rows, SHA-256, where its rows came from
#
# A promotion adds the new champion's holdout rows (the newest ``max_rows_per_version``) and
# writes the next version; the newest ``max_rows`` rows are kept. A version, once in the index,
# is never rewritten: a gate verdict names the version and digest it was decided on.

TRUSTED_INDEX = "index.json"
TRUSTED_FROM = "__trusted_from__"  # column: the model version whose holdout a row came from


@dataclass(frozen=True)
class TrustedVersion:
    """One immutable version of a model's trusted evaluation set, as its index records it."""

    version: int
    uri: str
    rows: int
    digest: str  # SHA-256 of the file's bytes
    columns: list[str]  # the model's columns it holds (besides TRUSTED_FROM)
    added_from: str  # the model version whose holdout rows this version added
    added_rows: int
    rows_per_version: dict[str, int]
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrustedVersion:
        return cls(**data)


def trusted_versions(lake: Lake) -> list[TrustedVersion]:
    """Every published version of the model's trusted set, oldest first ([] before the first)."""
    from mlcycle.core.errors import TrustedSetError

    index = lake.trusted / TRUSTED_INDEX
    if not index.exists():
        return []
    try:
        return [TrustedVersion.from_dict(v) for v in read_json(index)["versions"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise TrustedSetError(
            f"the trusted set index {uri_of(index)} is malformed ({exc}); restore it from the "
            "lake's backup or move the trusted/ folder away to start a new set"
        ) from None


def read_trusted(entry: TrustedVersion) -> pd.DataFrame:
    """The rows of one trusted-set version, after checking its bytes against the index's
    digest (``TrustedSetError`` when they differ: the set was changed outside mlcycle)."""
    from mlcycle.core.errors import TrustedSetError

    path = as_path(entry.uri)
    if not path.exists():
        raise TrustedSetError(
            f"trusted set v{entry.version} ({entry.uri}) is in the index but missing; restore the "
            "file, or move the trusted/ folder away to start a new set"
        )
    found = file_sha256(path)
    if found != entry.digest:
        raise TrustedSetError(
            f"trusted set v{entry.version} ({entry.uri}) has SHA-256 {found[:12]}, its index records "
            f"{entry.digest[:12]}: it was changed outside mlcycle. Restore the file, or move the "
            "trusted/ folder away to start a new set"
        )
    return read_parquet([path])


def add_trusted_rows(
    lake: Lake,
    rows: pd.DataFrame,
    *,
    model_version: str,
    columns: list[str],
    key_column: str | None,
    time_column: str | None,
    max_rows: int,
    max_rows_per_version: int,
) -> TrustedVersion | None:
    """Publish the next version of the trusted set: the latest one plus the newest
    ``max_rows_per_version`` of ``rows`` (by ``time_column``), a row's newest copy kept per
    ``key_column``, then the newest ``max_rows`` rows. None when ``model_version`` already
    added its rows (a rerun of a promotion). A change of ``columns`` (the spec's features
    changed) starts a new set from ``rows`` alone."""
    import pandas as pd

    from mlcycle.core.errors import TrustedSetError

    versions = trusted_versions(lake)
    if done := [v for v in versions if v.added_from == str(model_version)]:
        log.info("v%s already added its rows to the trusted set (v%d)", model_version, done[0].version)
        return None
    if missing := [c for c in columns if c not in rows.columns]:
        raise TrustedSetError(
            f"cannot add v{model_version}'s holdout to the trusted set: it lacks columns {missing}"
        )
    new = rows[columns]
    if time_column and time_column in new.columns:
        new = new.sort_values(time_column, kind="stable")
    new = new.tail(max_rows_per_version).assign(**{TRUSTED_FROM: str(model_version)})
    latest = versions[-1] if versions else None
    if latest is not None and latest.columns == columns:
        combined = pd.concat([read_trusted(latest), new], ignore_index=True)
    else:
        if latest is not None:
            log.warning(
                "the trusted set v%d holds columns %s, the model now has %s: starting a new set",
                latest.version,
                latest.columns,
                columns,
            )
        combined = new
    if key_column and key_column in combined.columns:
        # Consecutive champions' holdouts overlap (a time split's newest days): keep one copy.
        combined = combined.drop_duplicates(subset=[key_column], keep="last")
    combined = combined.tail(max_rows).reset_index(drop=True)
    number = latest.version + 1 if latest else 1
    # Not yet in the index, so not published: a crash before the index is written leaves a
    # file the rerun replaces.
    path = lake.trusted / f"v{number}.parquet"
    write_parquet(combined, path)
    counts = combined[TRUSTED_FROM].value_counts(sort=False)
    entry = TrustedVersion(
        version=number,
        uri=uri_of(path),
        rows=len(combined),
        digest=file_sha256(path),
        columns=list(columns),
        added_from=str(model_version),
        added_rows=len(new),
        rows_per_version={str(k): int(v) for k, v in counts.items()},
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    write_json(
        {"model": lake.model, "versions": [*(v.to_dict() for v in versions), entry.to_dict()]},
        lake.trusted / TRUSTED_INDEX,
    )
    log.info(
        "trusted set v%d: %d rows (%d from v%s), SHA-256 %s",
        number,
        entry.rows,
        len(new),
        model_version,
        entry.digest[:12],
    )
    return entry
