"""What the AWS Lambda tests share: one copy of the golden store (churn v1 champion, with an ONNX
twin that passed parity) and its two Lambda packages (ONNX and the scikit-learn fallback), made
once per session with the real command, and a way to run a packaged handler in a clean process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import REPO, Env, env_at, relocate

if TYPE_CHECKING:
    from pathlib import Path

LAMBDA_MODEL = "churn"
ENGINES = ("onnx", "sklearn")


@pytest.fixture(scope="session")
def lambda_store(golden_store, tmp_path_factory) -> Env:
    """A copy of the session's golden store for the Lambda tests (which only read it)."""
    root = tmp_path_factory.mktemp("lambda-store")
    relocate(golden_store, root)
    return env_at(root)


def package(store: Env, out: Path, *args: str) -> int:
    """``mlcycle package lambda churn --out out *args`` against ``store``: the exit code."""
    from mlcycle.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
        mp.setenv("MLFLOW_REGISTRY_URI", store.tracking_uri)
        return main(["package", "lambda", LAMBDA_MODEL, "--out", str(out), *args])


@pytest.fixture(scope="session")
def lambda_packages(lambda_store, tmp_path_factory) -> dict[str, Path]:
    """engine -> the package made by the real command: the default choice (ONNX, the twin passed)
    and the scikit-learn fallback forced with --engine sklearn."""
    root = tmp_path_factory.mktemp("lambda-packages")
    out = {}
    for engine, args in (("onnx", ()), ("sklearn", ("--engine", "sklearn"))):
        assert package(lambda_store, root / engine, *args) == 0
        out[engine] = root / engine
    return out


# Run in a fresh interpreter with the package's app/ first on sys.path and the project's include/
# removed from it: only what the package holds (and installed libraries) can be imported.
DRIVER = """
import json, sys
app, events, results, include = sys.argv[1:5]
sys.path = [app] + [p for p in sys.path if not p.startswith(include)]

class Context:
    def __init__(self, request_id):
        self.aws_request_id = request_id
        self.function_name = "score"

import handler
answers = {case: handler.handler(event, Context(f"req-{case}")) for case, event in json.load(open(events)).items()}
mlcycle = [m.__file__ for name, m in sys.modules.items() if name.split(".")[0] == "mlcycle"]
json.dump({"answers": answers, "mlcycle_files": mlcycle}, open(results, "w"))
"""


def run_handler(app: Path, events: dict[str, Any], tmp: Path) -> tuple[dict[str, Any], list[str], str]:
    """(answer per case, files of the mlcycle modules imported, stdout) of the packaged handler
    called once per event in a clean interpreter."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "events.json").write_text(json.dumps(events))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(app), str(tmp / "events.json"), str(tmp / "results.json"),
         str(REPO / "include")],
        cwd=app, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"the packaged handler failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    result = json.loads((tmp / "results.json").read_text())
    return result["answers"], result["mlcycle_files"], done.stdout
