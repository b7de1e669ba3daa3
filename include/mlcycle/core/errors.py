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


class RegistryError(MlcycleError):
    """The model registry is not in the state an operation needs."""


class DriftError(MlcycleError):
    """Drift monitoring cannot run as asked: a bad profile, window, column or override."""
