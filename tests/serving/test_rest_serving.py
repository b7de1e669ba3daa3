"""REST serving of the champion with the real `mlflow models serve` on a loopback port."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import Env, env_at, relocate

pytestmark = pytest.mark.slow

MODEL = "churn"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, payload: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def store(golden_store, tmp_path_factory) -> Env:
    """One copy of the session's golden store (churn v1 champion) for the whole module."""
    root = tmp_path_factory.mktemp("serving")
    relocate(golden_store, root)
    return env_at(root)


@pytest.fixture(scope="module")
def champion():
    from mlcycle.core.spec import get_spec

    return get_spec(MODEL)


@pytest.fixture(scope="module")
def server(store):
    """One ``mlflow models serve`` of churn@champion for every request test of the module."""
    env = store
    port = free_port()
    bindir = Path(sys.executable).parent
    proc = subprocess.Popen(
        [str(bindir / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@champion",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        # The server resolves the alias in this test's store, named explicitly: nothing is read
        # from whatever MLflow URIs the test process happens to hold.
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": env.tracking_uri,
            "MLFLOW_REGISTRY_URI": env.tracking_uri,
            "PATH": f"{bindir}:{os.environ.get('PATH', '')}",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow models serve exited early:\n{proc.stdout.read().decode()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2):
                break
        except OSError:
            time.sleep(0.5)
    else:
        os.killpg(proc.pid, signal.SIGTERM)
        pytest.fail("mlflow models serve did not answer /ping within 90 s")
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def rows(spec, n: int = 40):
    from mlcycle.data.generators import generate_batch

    df = generate_batch(MODEL, dt.date(2026, 1, 15), n, seed=9)[spec.features.all]
    return df.astype(dict.fromkeys(spec.features.numeric, "float64"))


def champion_pyfunc(env):
    """The champion as a pyfunc, located through this test's store (``env.mlc``), not through
    MLflow's process-global registry URI."""
    import mlflow.pyfunc

    mlc = env.mlc
    mv = mlc.get_model_version_by_alias(MODEL, "champion")
    return mlflow.pyfunc.load_model(mlc.get_model_version_download_uri(MODEL, mv.version))


def test_valid_request_matches_pyfunc_predict(server, champion, store):
    df = rows(champion)
    split = json.loads(df.to_json(orient="split", index=False))
    status, body = post(f"{server}/invocations", {"dataframe_split": split})
    assert status == 200, body
    expected = champion_pyfunc(store).predict(df)
    assert [int(p) for p in body["predictions"]] == [int(p) for p in expected]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.drop(columns=["region"]), "region"),
        (lambda d: d.assign(monthly_charges="lots"), "monthly_charges"),
    ],
    ids=["missing-column", "wrong-type"],
)
def test_malformed_request_is_a_4xx_naming_the_field(server, champion, mutate, field):
    df = mutate(rows(champion, 3))
    split = json.loads(df.to_json(orient="split", index=False))
    status, body = post(f"{server}/invocations", {"dataframe_split": split})
    assert 400 <= status < 500
    assert field in body["message"]
