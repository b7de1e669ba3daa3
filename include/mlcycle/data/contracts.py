"""Data contracts: Great Expectations suites (JSON in ``include/contracts/``) run on batches.

A contract is reviewed like code. Validation runs each batch on its own so that a
failure names the batch that broke it, and only that batch is quarantined.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.core.errors import SpecError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# Keys of an expectation's kwargs that describe the rule (the rest is GX plumbing).
_PLUMBING = {"batch_id", "result_format", "catch_exceptions", "include_config"}


@dataclass
class Failure:
    """One failed expectation for a person: the rule, what was seen, sample bad values or the error."""

    expectation: str
    kwargs: dict[str, Any]
    observed: Any = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    examples: list[Any] = field(default_factory=list)
    error: str | None = None

    def describe(self) -> str:
        column = self.kwargs.get("column")
        rule = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items() if k != "column")
        head = f"{self.expectation}({column + (', ' if rule else '') if column else ''}{rule})"
        if self.error:
            return f"{head}: could not be evaluated: {self.error}"
        if self.unexpected_count is not None:
            pct = f" ({self.unexpected_percent:.2f}%)" if self.unexpected_percent is not None else ""
            sample = f", e.g. {self.examples[:5]}" if self.examples else ""
            return f"{head}: {self.unexpected_count} unexpected values{pct}{sample}"
        return f"{head}: observed {self.observed!r}"


@dataclass
class BatchResult:
    """The contract's outcome on one batch (``uri``), so a failure names the batch to quarantine."""

    uri: str
    success: bool
    evaluated: int
    failed: int
    rows: int
    failures: list[Failure] = field(default_factory=list)


@dataclass
class ValidationReport:
    """The contract's outcome on every batch of a run; ``success`` only if each batch passed."""

    contract: str
    success: bool
    batches: list[BatchResult]
    seconds: float

    @property
    def failed_batches(self) -> list[BatchResult]:
        return [b for b in self.batches if not b.success]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        total = sum(b.rows for b in self.batches)
        if self.success:
            n = self.batches[0].evaluated if self.batches else 0
            return (
                f"contract {self.contract!r}: {len(self.batches)} batch(es), {total} rows, "
                f"{n} expectations each: all passed in {self.seconds:.2f}s"
            )
        lines = [
            f"contract {self.contract!r} failed on {len(self.failed_batches)} of {len(self.batches)} batch(es):"
        ]
        for b in self.failed_batches:
            lines.append(f"  {b.uri}: {b.failed} of {b.evaluated} expectations failed")
            lines.extend(f"    - {f.describe()}" for f in b.failures)
        return "\n".join(lines)


def load_suite_dict(path: str | Path) -> dict[str, Any]:
    """A GX suite from its JSON file, shape checked; ``SpecError`` if it is missing, not JSON or malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(
            f"contract {path} does not exist; add the GX suite or fix the spec's `contract` key"
        ) from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"contract {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("expectations"), list) or not data.get("name"):
        raise SpecError(
            f"contract {path} must be a GX suite: an object with `name` and a list `expectations`"
        )
    for i, exp in enumerate(data["expectations"]):
        if not isinstance(exp, dict) or "type" not in exp:
            raise SpecError(
                f"contract {path}: expectations[{i}] needs a `type` (e.g. expect_column_values_to_not_be_null)"
            )
    return data


def _failure(exp: dict[str, Any]) -> Failure:
    result = exp.get("result") or {}
    info = exp.get("exception_info") or {}
    error = info.get("exception_message") if info.get("raised_exception") else None
    return Failure(
        expectation=exp.get("expectation_type", "?"),
        kwargs={k: v for k, v in (exp.get("kwargs") or {}).items() if k not in _PLUMBING},
        observed=result.get("observed_value"),
        unexpected_count=result.get("unexpected_count"),
        unexpected_percent=result.get("unexpected_percent"),
        examples=list(result.get("partial_unexpected_list") or [])[:10],
        error=error,
    )


class ContractValidator:
    """One ephemeral GX context and suite, reused for every batch of a run."""

    def __init__(self, suite: dict[str, Any]) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.name = suite["name"]
        self._context = gx.get_context(mode="ephemeral")
        # tqdm bars would otherwise fill the task logs.
        self._context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = self._context.data_sources.add_pandas("mlcycle").add_dataframe_asset(name="batch")
        self._batch_definition = asset.add_batch_definition_whole_dataframe("whole")
        try:
            self._suite = self._context.suites.add(
                gx.ExpectationSuite(
                    name=suite["name"], expectations=suite["expectations"], meta=suite.get("meta")
                )
            )
        except Exception as exc:
            raise SpecError(f"contract {suite['name']!r} has an invalid expectation: {exc}") from exc
        # GX logs and drops an expectation whose type it does not know; a typo would
        # silently remove a rule, so count what it kept.
        kept = {e.expectation_type for e in self._suite.expectations}
        dropped = sorted({e["type"] for e in suite["expectations"]} - kept)
        if dropped:
            raise SpecError(
                f"contract {suite['name']!r} has an invalid expectation: unknown type(s) {dropped}; "
                "check the spelling against the Great Expectations gallery"
            )
        self.expectation_count = len(self._suite.expectations)

    def validate(self, df: pd.DataFrame, uri: str) -> BatchResult:
        batch = self._batch_definition.get_batch(batch_parameters={"dataframe": df})
        outcome = batch.validate(self._suite, result_format="SUMMARY").describe_dict()
        stats = outcome["statistics"]
        failures = [_failure(e) for e in outcome["expectations"] if not e.get("success")]
        return BatchResult(
            uri=uri,
            success=bool(outcome["success"]),
            evaluated=int(stats["evaluated_expectations"]),
            failed=int(stats["unsuccessful_expectations"]),
            rows=len(df),
            failures=failures,
        )


def validate_batches(suite: dict[str, Any], batches: list[tuple[str, pd.DataFrame]]) -> ValidationReport:
    """Validate each ``(uri, frame)`` against ``suite``; never raises on a data failure."""
    started = time.perf_counter()
    validator = ContractValidator(suite)
    results = []
    for uri, df in batches:
        result = validator.validate(df, uri)
        log.info(
            "validated %s: %d rows, %d expectations, %d failed",
            uri,
            result.rows,
            result.evaluated,
            result.failed,
        )
        results.append(result)
    return ValidationReport(
        contract=validator.name,
        success=all(r.success for r in results),
        batches=results,
        seconds=time.perf_counter() - started,
    )
