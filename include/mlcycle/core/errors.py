"""Domain exceptions. Each message says what failed, by how much, and what to do."""

from __future__ import annotations


class MlcycleError(Exception):
    """Base class of every error this library raises on purpose."""


class SpecError(MlcycleError):
    """A model spec is invalid: the message names the file, the key and the fix."""


class DataNotFoundError(MlcycleError):
    """No data where the run expected some."""


class ValidationFailedError(MlcycleError):
    """A batch broke its contract; the batch was quarantined."""


class GateFailedError(MlcycleError):
    """A candidate did not pass the promotion gate."""


class PromotionConflictError(MlcycleError):
    """The champion moved since the gate compared against it (compare-and-set refused)."""


class RollbackError(MlcycleError):
    """A rollback that cannot or may not happen: no champion, an unknown or unfit target."""


class RegistryError(MlcycleError):
    """The model registry is not in the state an operation needs."""


class DriftError(MlcycleError):
    """Drift monitoring cannot run as asked: a bad profile, window, column or override."""


class InputNotAllowedError(MlcycleError):
    """A location to read from lies outside the lake root and ``MLCYCLE_ALLOWED_INPUTS``."""


class UnreadableDataError(MlcycleError):
    """A file cannot be read as a batch (not Parquet, truncated, empty, corrupt, a nested column).

    ``uri`` names the file and ``problem`` says what is wrong with it, so a flow can quarantine
    the file (by the digest of its bytes) before failing."""

    def __init__(self, message: str, *, uri: str = "", problem: str = "") -> None:
        super().__init__(message)
        self.uri = uri
        self.problem = problem


class DataShiftError(MlcycleError):
    """The training data breaks the champion's reference profile (null rates, relationships)
    beyond the spec's bounds; nothing was trained. The message names every breached check."""


class TrustedSetError(MlcycleError):
    """The trusted evaluation set cannot be used as recorded: unreadable, or its bytes do not
    match the digest in its index."""


class StorageWriteError(OSError):
    """The storage refused a write to the lake: disk full (ENOSPC) or quota (EDQUOT), read-only
    (EROFS), no permission (EACCES, EPERM), file size limit (EFBIG). ``filename`` is the file
    and the message says the cause and the fix; nothing partial was published.

    Deliberately an ``OSError`` and not an ``MlcycleError``: it is an outage of the storage, not
    a fault of the data, so Airflow retries the task, and the retry succeeds once the storage
    is fixed."""

    def __str__(self) -> str:
        return str(self.strerror)
