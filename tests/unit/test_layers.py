"""The domain library's layers: imports only point down, and nothing in it imports Airflow.

Every import counts, including the lazy ones inside functions (that is where the heavy ones
live), read from the source with ``ast`` so a test cannot be fooled by import order.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "include" / "mlcycle"

# Bottom to top. A module may import its own layer and the layers below it, never above.
LAYERS = ["core", "data", "store", "ml", "monitor", "reports", "flows", "serving", "cli"]


def layer_of(module: str) -> str:
    """``mlcycle.flows.train`` -> ``flows``; ``mlcycle.cli`` -> ``cli``; ``mlcycle`` -> ``core``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "core"
    return parts[1]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from mlcycle import flows` imports the subpackage `mlcycle.flows`
            if node.module == "mlcycle":
                found += [(node.lineno, f"mlcycle.{alias.name}") for alias in node.names]
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_sits_in_a_known_layer():
    unknown = {module_name(p) for p in MODULES if layer_of(module_name(p)) not in LAYERS}
    assert not unknown, f"modules outside the layers {LAYERS}: {sorted(unknown)}; add the layer or move them"


def test_every_layer_is_a_package_with_a_docstring():
    for layer in LAYERS[:-1]:
        init = PACKAGE / layer / "__init__.py"
        assert init.is_file(), f"{layer}/ is not a package"
        assert ast.get_docstring(ast.parse(init.read_text())), (
            f"{layer}/__init__.py says nothing about the layer"
        )


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_imports_only_point_down(path: Path):
    here = layer_of(module_name(path))
    upward = [
        f"line {line}: {module} ({layer_of(module)} is above {here})"
        for line, module in imports_of(path)
        if module.startswith("mlcycle.") and LAYERS.index(layer_of(module)) > LAYERS.index(here)
    ]
    assert not upward, f"{module_name(path)} imports upward:\n" + "\n".join(upward)


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_no_airflow_in_the_domain_library(path: Path):
    airflow = [
        f"line {line}: {m}"
        for line, m in imports_of(path)
        if m.split(".")[0] in ("airflow", "mlcycle_airflow")
    ]
    assert not airflow, f"{module_name(path)} imports Airflow (adapters belong in plugins/):\n" + "\n".join(
        airflow
    )


def test_the_checker_sees_an_upward_import(tmp_path: Path):
    """The rule itself can fail: a data module importing a flow is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from mlcycle.flows import train\n")
    assert imports_of(bad) == [(2, "mlcycle.flows")]
    assert LAYERS.index(layer_of("mlcycle.flows")) > LAYERS.index(layer_of("mlcycle.data.lake"))
