"""``mlcycle check``: what can be wrong with a model before any data arrives or any training runs.

The spec's schema is checked when it loads; this adds what needs the libraries and the
contract file: the estimator can be built with its params, and the contract is a valid GX
suite that covers the key, time, target and every feature, with the target values the spec
maps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlcycle.core.errors import SpecError
from mlcycle.core.spec import ModelSpec, Task, estimator_problems

if TYPE_CHECKING:
    from pathlib import Path


@dataclass
class CheckReport:
    """The outcome of ``check_model``: every problem found, and what was checked when none was."""

    model: str
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        """A short report: ``<model>: OK`` and what was checked, or every problem, one a line."""
        if self.ok:
            return "\n".join([f"{self.model}: OK", *(f"  {line}" for line in self.checked)])
        return "\n".join(
            [f"{self.model}: {len(self.problems)} problem(s)", *(f"  - {p}" for p in self.problems)]
        )


def _columns(suite: dict[str, Any], expectation: str) -> dict[str, dict[str, Any]]:
    """``column -> kwargs`` of the suite's expectations of one type."""
    return {
        e["kwargs"]["column"]: e["kwargs"]
        for e in suite["expectations"]
        if e["type"] == expectation and isinstance(e.get("kwargs"), dict) and "column" in e["kwargs"]
    }


def contract_problems(spec: ModelSpec, suite: dict[str, Any], where: str) -> list[str]:
    """What the contract ``suite`` (read from ``where``) misses for ``spec``: an existence
    expectation for the key, time, target and every feature, and a target value set that
    matches ``data.labels`` (or 0/1 for a classifier without labels)."""
    data = spec.data
    needed = [data.key_column, data.time_column, data.target, *spec.features.all]
    existing = _columns(suite, "expect_column_to_exist")
    problems = []
    missing = [c for c in needed if c not in existing]
    if missing:
        problems.append(
            f"contract {where}: no expect_column_to_exist for {missing} (the key, time, target and every "
            f"feature need one); run `mlcycle contract suggest {spec.name} --write` or add them"
        )
    if spec.task.classifies:
        in_set = _columns(suite, "expect_column_values_to_be_in_set").get(data.target)
        allowed = in_set.get("value_set") if in_set else None
        if not isinstance(allowed, list):
            problems.append(
                f"contract {where}: no expect_column_values_to_be_in_set for the target {data.target!r}; "
                "an unknown label would only be found at training: add one with the labels the data holds"
            )
        elif data.classes is not None and sorted(map(str, allowed)) != sorted(data.classes):
            problems.append(
                f"contract {where} allows the target values {allowed} but data.classes lists "
                f"{data.classes}; make them the same (a new class needs both)"
            )
        elif data.labels is not None and sorted(map(repr, allowed)) != sorted(map(repr, data.labels)):
            problems.append(
                f"contract {where} allows the target values {allowed} but data.labels maps "
                f"{list(data.labels)}; make them the same"
            )
        elif (
            data.labels is None
            and data.classes is None
            and any(isinstance(v, str) or v not in (0, 1) for v in allowed)
        ):
            example = ", ".join(f"{v!r}: {i}" for i, v in enumerate(allowed[:2]))
            problems.append(
                f"contract {where} allows the target values {allowed}, which are not 0/1; map them in "
                f"the spec with data.labels (1 is the positive class), e.g. labels: {{{example}}}"
            )
    return problems


def check_model(spec: ModelSpec, contracts_dir: Path) -> CheckReport:
    """Everything ``mlcycle check`` verifies, without data or training (see the module docstring)."""
    from mlcycle.data.contracts import ChunkedValidator, load_suite_dict

    report = CheckReport(spec.name, problems=estimator_problems(spec))
    where = contracts_dir / spec.contract
    try:
        suite = load_suite_dict(where)
        # Builds the suite in GX: a misspelled expectation type or argument is found here.
        ChunkedValidator(suite)
    except SpecError as exc:
        report.problems.append(str(exc))
        return report
    report.problems += contract_problems(spec, suite, str(where))
    params = spec.estimator.params
    target = (
        f"labels {', '.join(f'{k!r} -> {v}' for k, v in spec.data.labels.items())}"
        if spec.data.labels
        else (
            f"classes {spec.data.classes}"
            if spec.data.classes
            else ("classes 0/1" if spec.task is Task.CLASSIFICATION else "numeric")
        )
    )
    report.checked = [
        f"estimator {spec.estimator.class_} builds with {len(params)} param(s): {sorted(params)}",
        f"contract {where}: {len(suite['expectations'])} expectations, covering key {spec.data.key_column!r}, "
        f"time {spec.data.time_column!r}, target {spec.data.target!r} and {len(spec.features.all)} features",
        f"target {spec.data.target!r}: {target}",
    ]
    return report
