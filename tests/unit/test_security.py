"""Security proofs: no secret in the repository, and no model loaded with pickle.

(Secrets masked in task logs and auth on in the embedded default are proven against a real
api-server and scheduler in tests/services/test_concurrency.py.)
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

# --- 1. no secret in tracked files ------------------------------------------------------------

# What a secret looks like. Each pattern's last group is the secret itself (what the allow-list
# names), so a placeholder allowed in one place does not hide a real value beside it.
SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "AWS access key id": re.compile(r"\b((?:AKIA|ASIA)[0-9A-Z]{16})\b"),
    "private key": re.compile(r"(-----BEGIN (?:[A-Z]+ )?PRIVATE KEY(?: BLOCK)?-----)"),
    "GitHub token": re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{36,})\b"),
    "Slack token": re.compile(r"\b(xox[abprs]-[A-Za-z0-9-]{10,})"),
    "API key (sk-)": re.compile(r"\b(sk-[A-Za-z0-9_-]{20,})\b"),
    "JSON web token": re.compile(r"\b(eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})"),
    # A URI with a user and a password before the host; $VAR or ${VAR} is a reference, not a value.
    "password in a URI": re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@'\"]+:([^\s@/'\"${}]+)@"),
    # A name with password, secret, token or key in it, given a quoted literal (in any file).
    "secret assigned in quotes": re.compile(
        r"(?i)\b[\w-]*(?:password|passwd|secret|token|api_?key|private_?key)[\w-]*[\"']?\s*[:=]\s*"
        r"[\"']([^\"'\s${}<>]{4,})[\"']"
    ),
    # The same with an unquoted value, where config is written that way (YAML, .env, shell, Dockerfile).
    "secret assigned in config": re.compile(
        r"(?im)(?:^|[\s,]|(?<!\$)\{)(?:export\s+|ENV\s+)?[\w-]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY)[\w-]*\s*[:=]\s*"
        r"(?![\"'$])([^\s#\"',}]{4,})"
    ),
    # A ${VAR:-default} whose variable names a secret: the default is a literal secret.
    "secret default in ${VAR:-...}": re.compile(r"\$\{\w*(?:PASSWORD|SECRET|TOKEN|KEY)\w*:-([^}]+)\}"),
}

CONFIG_SUFFIXES = {".yaml", ".yml", ".env", ".sh", ".cfg", ".ini", ".toml", ".conf", ""}

# Literals that look like secrets and are not, allowed on purpose (README "Security"):
# (file, value) -> why it is not a secret.
ALLOWED: dict[tuple[str, str], str] = {
    # Names of Kubernetes Secrets and of their keys (secretName/secretKey, *SecretName): where
    # the chart reads each secret from, not values. The values live in the cluster only.
    **{
        ("deploy/helm/values.yaml", name): "the name of a Kubernetes Secret or of one of its keys"
        for name in (
            "mlcycle-airflow",
            "mlcycle-airflow-broker",
            "AIRFLOW_CONN_MLFLOW_DEFAULT",
            "MLCYCLE_LEDGER_URI",
            "MLCYCLE_MLFLOW_WEBHOOK_SECRET",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        )
    },
    # The auth test tries the documented user name as a password and expects a refusal.
    ("tests/services/test_concurrency.py", "admin"): "a wrong password the test expects refused",
}

MAX_BYTES = 2_000_000


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind} ({self.value[:4]}…)"


def scan_text(text: str, path: str) -> list[Finding]:
    """Every secret-looking value in ``text`` that the allow-list does not name for ``path``."""
    findings = []
    suffix = Path(path).suffix
    for kind, pattern in SECRET_PATTERNS.items():
        if kind == "secret assigned in config" and suffix not in CONFIG_SUFFIXES and "Dockerfile" not in path:
            continue  # unquoted `password=x` in code is a variable, not a value
        for match in pattern.finditer(text):
            value = match.group(match.lastindex or 0)
            if (path, value) in ALLOWED:
                continue
            findings.append(Finding(path, text.count("\n", 0, match.start()) + 1, kind, value))
    return findings


def repository_files() -> list[str]:
    """Tracked files, and new ones not ignored (so a secret is caught before it is committed)."""
    done = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"not a git work tree ({done.stderr.decode().strip()}): nothing to scan")
    return sorted({p for p in done.stdout.decode().split("\0") if p})


def scan_repository() -> list[Finding]:
    findings = []
    for name in repository_files():
        path = REPO / name
        if not path.is_file() or path.stat().st_size > MAX_BYTES:
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        findings += scan_text(data.decode(errors="replace"), name)
    return findings


def test_no_secret_in_the_repository():
    names = repository_files()
    # The deployment files are among what is scanned.
    assert {"docker-compose.yaml", "Dockerfile", "Makefile", "scripts/up.sh"} <= set(names)
    findings = scan_repository()
    assert not findings, (
        "secrets in the repository (move them to the environment or a secrets backend):\n"
        + ("\n".join(map(str, findings)))
    )


def test_every_allowed_placeholder_is_still_there():
    """An allow-list entry whose value is gone would silently allow it again later: remove it."""
    for (path, value), why in ALLOWED.items():
        assert value in (REPO / path).read_text(), f"{path} no longer holds the placeholder for {why!r}"


# Planted at run time, so that this file itself holds no secret-shaped literal.
PLANTED = {
    "AWS access key id": "aws_id = " + "AKIA" + "Q7XPLM2ZR4TB6WND",
    "private key": "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
    "GitHub token": "token " + "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "password in a URI": "SQL_ALCHEMY_CONN=postgresql://airflow:" + "Sup3rS3cret" + "@db/airflow",
    "secret assigned in quotes": 'config = {"api_key": "' + "9f8e7d6c5b4a" + '"}',
    "secret assigned in config": "environment: {POSTGRES_USER: a, POSTGRES_" + "PASSWORD: hunter2-prod}",
    "secret default in ${VAR:-...}": "JWT: ${AIRFLOW_JWT_" + "SECRET:-s3cr3t-default}",
}


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_the_scanner_finds_a_planted_secret(tmp_path, kind):
    planted = tmp_path / "compose.yaml"
    planted.write_text(f"# a config file\n{PLANTED[kind]}\n")
    found = scan_text(planted.read_text(), "compose.yaml")
    assert kind in {f.kind for f in found}, found
    assert all(f.line >= 2 for f in found)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('password = os.environ["DB_PASSWORD"]', "settings.py"),  # a reference in code
        ('status, token = call(base, "POST", "/auth/token")', "test_api.py"),
        (
            "AIRFLOW__API_AUTH__JWT_SECRET: ${AIRFLOW_JWT_SECRET}",
            "docker-compose.yaml",
        ),  # from the environment
        ("url: postgresql://${PGUSER}:${PGPASSWORD}@db/airflow", "docker-compose.yaml"),
        ("MLFLOW_TRACKING_URI: sqlite:////tmp/mlflow.db", "docker-compose.yaml"),
    ],
)
def test_the_scanner_leaves_references_alone(text, path):
    assert scan_text(text, path) == []


def test_an_allowed_placeholder_does_not_hide_a_real_secret_beside_it():
    path, allowed = next(iter(ALLOWED))
    text = f"x: postgresql://u:{allowed}@db/a\ny: postgresql://u:" + "R3al-0ne" + "@db/b\n"
    found = scan_text(text, path)
    assert [(f.line, f.value) for f in found] == [(2, "R3al-0ne")]


# --- 2. models are loaded without pickle -----------------------------------------------------


def plant_marker(path: str) -> None:
    """What the pickled payload runs when it is unpickled: it leaves a file behind."""
    Path(path).write_text("the payload ran")


class Payload:
    """A "model" whose unpickling calls ``plant_marker`` (any code could run there)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def predict(self, X):  # looks like an estimator to MLflow
        return [0] * len(X)

    def __reduce__(self):
        return (plant_marker, (self.marker,))


def register(env, name: str, model: object, **log_kwargs) -> str:
    """Log ``model`` with the sklearn flavor and register it as a version of ``name``."""
    import mlflow
    import mlflow.sklearn

    from mlcycle.store import registry

    mlc = env.mlc
    experiment = registry.ensure_experiment(mlc, name)
    with registry.fluent(mlc), mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=[], **log_kwargs)
        mv = mlflow.register_model(info.model_uri, name)
    return str(mv.version)


@pytest.mark.parametrize("fmt", ["cloudpickle", "pickle"])
def test_a_pickled_model_with_a_payload_is_refused_and_the_payload_never_runs(env, tmp_path, fmt):
    import mlflow.sklearn

    from mlcycle.core.errors import RegistryError
    from mlcycle.core.spec import get_spec
    from mlcycle.flows import score
    from mlcycle.store import registry

    marker = tmp_path / "payload-ran"
    version = register(env, "churn", Payload(marker), serialization_format=fmt)
    assert not marker.exists()

    with pytest.raises(RegistryError, match=rf"models:/churn/{version} is saved as {fmt}.*skops only"):
        registry.load_sklearn(env.mlc, "churn", version)
    # Scoring, monitoring and the REST server load through load_sklearn: the same refusal.
    with pytest.raises(RegistryError, match="is saved as"):
        score.load_model(env.mlc, get_spec("churn"), version, "sklearn")
    assert not marker.exists(), "the pickled payload ran"

    # The artifact really is hostile: MLflow's own loader runs the payload.
    source = env.mlc.get_model_version_download_uri("churn", version)
    mlflow.sklearn.load_model(source)
    assert marker.read_text() == "the payload ran"


def test_a_skops_model_that_trusts_a_dangerous_type_is_refused(env):
    """The trusted-types list is read from the artifact's own MLmodel: a crafted model can put
    anything there. Only types from numpy, scipy and scikit-learn are ever rebuilt."""
    import os

    from sklearn.preprocessing import FunctionTransformer

    from mlcycle.core.errors import RegistryError
    from mlcycle.store import registry

    dangerous = f"{os.system.__module__}.system"
    version = register(
        env,
        "churn",
        FunctionTransformer(os.system),
        serialization_format="skops",
        skops_trusted_types=[dangerous],
    )
    with pytest.raises(RegistryError, match=rf"needs the skops types \['{dangerous}'\]"):
        registry.load_sklearn(env.mlc, "churn", version)


def test_the_champion_saved_by_training_still_loads(champion_env):
    from mlcycle.store import registry

    model = registry.load_sklearn(champion_env.mlc, "churn", "1")
    assert type(model).__name__ == "Pipeline" and hasattr(model, "predict_proba")
