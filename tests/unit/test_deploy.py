"""The deployment files, checked without Docker: docker-compose.yaml, .env.example and `make env`,
the Dockerfile, deploy/ and the Helm values (tests/services/ runs the topology itself)."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
import yaml

from tests.conftest import REPO

if TYPE_CHECKING:
    from pathlib import Path

COMPOSE_TEXT = (REPO / "docker-compose.yaml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
AIRFLOW_ENV: dict[str, str] = {k: str(v) for k, v in COMPOSE["x-airflow-env"].items()}
HELM = yaml.safe_load((REPO / "deploy" / "helm" / "values.yaml").read_text())
MAKE_ENV = REPO / "scripts" / "make_env.py"

AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
EXPECTED_SERVICES = {"postgres", "redis", "mlflow", "airflow-init", *AIRFLOW_SERVICES}

# Compose's variable syntax: `$$` is a literal `$`; `${NAME}`, `${NAME:-default}`, `${NAME?err}`…
VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>\w+)")
HEADING = re.compile(r"^#\s*=+\s*(?P<title>.*?)\s*=+\s*$")


def references(text: str) -> list[tuple[str, str | None, str | None]]:
    """Every ``${NAME...}`` in ``text`` as (name, operator, argument); a bare ``$NAME`` fails."""
    refs = []
    for m in VAR.finditer(text):
        assert not m["bare"], f"${m['bare']}: write ${{{m['bare']}}} (or $$ for a literal $)"
        if m["name"]:
            refs.append((m["name"], m["op"], m["arg"]))
    return refs


def interpolate(text: str, values: dict[str, str]) -> str:
    """``text`` with compose's variables replaced from ``values`` (defaults where unset)."""

    def one(m: re.Match[str]) -> str:
        if m[0] == "$$":
            return "$"
        value = values.get(m["name"], "")
        if not value and m["op"] in (":?", "?"):
            raise AssertionError(f"compose would stop: {m['arg']}")
        return value or (m["arg"] if m["op"] in (":-", "-") else "")

    return VAR.sub(one, text)


def read_env(path: Path) -> dict[str, dict[str, str]]:
    """The variables of a .env file by heading: {heading title: {name: value}}."""
    sections: dict[str, dict[str, str]] = {"": {}}
    title = ""
    for line in path.read_text().splitlines():
        if heading := HEADING.match(line):
            title = heading["title"]
            sections[title] = {}
        elif line.strip() and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
            sections[title][name] = value
    return sections


EXAMPLE = read_env(REPO / ".env.example")
EXAMPLE_VARS = {k: v for section in EXAMPLE.values() for k, v in section.items()}
SECRETS = {k for title, section in EXAMPLE.items() if title.startswith("Secrets") for k in section}
GENERATED = {
    k for title, section in EXAMPLE.items() if title.startswith("Secrets: generated") for k in section
}


def compose_default(name: str) -> str:
    """The one default compose gives ``name`` (every occurrence must agree)."""
    defaults = {arg for n, op, arg in references(COMPOSE_TEXT) if n == name and op in (":-", "-")}
    assert len(defaults) == 1, f"{name} has defaults {defaults} in docker-compose.yaml: give it one"
    return defaults.pop()


# --- compose ----------------------------------------------------------------------------------


def test_compose_has_exactly_the_services_of_the_topology():
    assert set(SERVICES) == EXPECTED_SERVICES


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES - {"airflow-init"}))
def test_every_long_running_service_has_a_healthcheck_and_restarts(name):
    service = SERVICES[name]
    assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert service.get("restart") in {"always", "unless-stopped", "on-failure"}, name


def test_airflow_init_runs_once_after_postgres():
    init = SERVICES["airflow-init"]
    assert init["restart"] == "no"
    assert init["depends_on"] == {"postgres": {"condition": "service_healthy"}}


@pytest.mark.parametrize("name", sorted(AIRFLOW_SERVICES))
def test_every_airflow_service_waits_for_its_dependencies(name):
    assert SERVICES[name]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
        "mlflow": {"condition": "service_healthy"},
        "airflow-init": {"condition": "service_completed_successfully"},
    }


def test_every_compose_variable_is_in_env_example_and_back():
    used = {name for name, _, _ in references(COMPOSE_TEXT)}
    assert used - EXAMPLE_VARS.keys() == set(), "add these to .env.example"
    assert EXAMPLE_VARS.keys() - used == set(), "docker-compose.yaml does not use these: remove them"


def test_env_example_holds_no_secret_and_the_compose_defaults():
    assert {k: v for k, v in EXAMPLE_VARS.items() if k in SECRETS and v} == {}
    settings = {k: v for k, v in EXAMPLE_VARS.items() if k not in SECRETS}
    assert settings == {k: compose_default(k) for k in settings}
    # The secrets come first, where whoever fills them in sees them.
    order = list(EXAMPLE_VARS)
    assert order[: len(SECRETS)] == [k for k in order if k in SECRETS]


def test_no_secret_has_a_literal_default():
    for name, op, arg in references(COMPOSE_TEXT):
        if name in SECRETS:
            required = op in (":?", "?")
            assert required or (op in (":-", "-") and arg == ""), f"${{{name}{op or ''}{arg or ''}}}"
    # make env generates these, so compose refuses to start without them.
    assert {n for n, op, _ in references(COMPOSE_TEXT) if n in GENERATED and op != ":?"} == set()


def test_airflow_uses_fab_and_celery_and_no_simple_auth_manager():
    assert AIRFLOW_ENV["AIRFLOW__CORE__AUTH_MANAGER"] == (
        "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
    )
    assert AIRFLOW_ENV["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    deployment = ["docker-compose.yaml", "Dockerfile", ".env.example", *sorted(
        str(p.relative_to(REPO)) for p in (REPO / "deploy").rglob("*") if p.is_file()
    )]  # fmt: skip
    for name in deployment:
        text = (REPO / name).read_text()
        assert "simpleauthmanager" not in text.lower().replace("_", ""), name


def test_the_mlflow_connection_carries_the_mlflow_login(generated_env):
    values = {k: v for section in read_env(generated_env).values() for k, v in section.items()}
    conn = json.loads(interpolate(COMPOSE["x-airflow-env"]["AIRFLOW_CONN_MLFLOW_DEFAULT"], values))
    mlflow = {k: interpolate(str(v), values) for k, v in SERVICES["mlflow"]["environment"].items()}
    assert conn["conn_type"] == "mlflow"
    assert (conn["login"], conn["password"]) == (
        mlflow["MLFLOW_AUTH_ADMIN_USERNAME"],
        mlflow["MLFLOW_AUTH_ADMIN_PASSWORD"],
    )
    assert conn["password"] == values["MLFLOW_ADMIN_PASSWORD"] != ""


# --- image and scripts --------------------------------------------------------------------------


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "deploy").glob("*.sh")))
def test_deploy_scripts_are_executable_and_used_by_compose(script):
    mode = (REPO / "deploy" / script).stat().st_mode
    assert mode & stat.S_IXUSR and mode & stat.S_IXOTH, f"chmod +x deploy/{script}"
    assert f"{compose_default('MLCYCLE_HOME')}/deploy/{script}" in COMPOSE_TEXT


def test_postgres_init_is_mounted():
    assert "./deploy/postgres-init.sql:/docker-entrypoint-initdb.d/" in COMPOSE_TEXT


def test_the_image_holds_the_code_where_compose_expects_it():
    copies = {}
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            *sources, dest = [w for w in line.split()[1:] if not w.startswith("--")]
            copies.update(dict.fromkeys(sources, dest))
    home = compose_default("MLCYCLE_HOME")
    for folder in ("deploy", "dags", "plugins", "include"):
        assert copies.get(folder) == f"{home}/{folder}", f"Dockerfile: COPY {folder} {home}/{folder}"


# --- Helm values --------------------------------------------------------------------------------

# The chart's own keys naming the Secret a setting comes from. The Celery result backend has none
# set: Airflow derives it from the metadata connection (db+ scheme).
CHART_SECRETS = {
    "AIRFLOW__CORE__FERNET_KEY": ("fernetKeySecretName",),
    "AIRFLOW__API__SECRET_KEY": ("apiSecretKeySecretName",),
    "AIRFLOW__API_AUTH__JWT_SECRET": ("jwtSecretName",),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": ("data", "metadataSecretName"),
    "AIRFLOW__CELERY__RESULT_BACKEND": ("data", "metadataSecretName"),
    "AIRFLOW__CELERY__BROKER_URL": ("data", "brokerUrlSecretName"),
}
# Chart keys that would put a secret's value into the values file.
CHART_LITERAL_SECRETS = [
    ("fernetKey",),
    ("apiSecretKey",),
    ("jwtSecret",),
    ("webserverSecretKey",),
    ("extraSecrets",),
    ("data", "metadataConnection"),
    ("data", "resultBackendConnection"),
    ("data", "brokerUrl"),
]


def helm(*path: str) -> object:
    node: object = HELM
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def secret_bearing(name: str) -> bool:
    return any(ref in SECRETS for ref, _, _ in references(AIRFLOW_ENV[name]))


def topology_specific(name: str) -> bool:
    """The executor, and what names a host or port of the compose network."""
    hosts = [ref for ref, _, _ in references(AIRFLOW_ENV[name]) if ref.endswith(("_HOST", "_PORT"))]
    return name == "AIRFLOW__CORE__EXECUTOR" or (bool(hosts) and not secret_bearing(name))


def test_helm_runs_the_compose_image():
    repository, tag = compose_default("MLCYCLE_IMAGE").rsplit(":", 1)
    assert (helm("images", "airflow", "repository"), helm("images", "airflow", "tag")) == (repository, tag)


def test_helm_env_has_every_setting_of_compose():
    env = {e["name"]: e["value"] for e in HELM["env"]}
    wanted = {n for n in AIRFLOW_ENV if not secret_bearing(n) and not topology_specific(n)}
    assert wanted - env.keys() == set()
    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == AIRFLOW_ENV["AIRFLOW__CORE__AUTH_MANAGER"]


def test_helm_takes_every_secret_from_a_kubernetes_secret():
    from_secret = {e["envName"] for e in HELM["secret"]}
    assert all(e["secretName"] and e["secretKey"] for e in HELM["secret"])
    literal = {e["name"] for e in HELM["env"]}
    for name in filter(secret_bearing, AIRFLOW_ENV):
        assert name not in literal and name not in str(helm("extraEnv") or ""), f"{name} is a literal"
        chart_key = CHART_SECRETS.get(name)
        assert name in from_secret or (chart_key and helm(*chart_key)), f"{name}: add a `secret:` entry"
    assert "AIRFLOW_CONN_MLFLOW_DEFAULT" in from_secret
    assert [key for key in CHART_LITERAL_SECRETS if helm(*key)] == []


# --- make env -------------------------------------------------------------------------------------


def make_env(*args: str) -> subprocess.CompletedProcess[str]:
    # -I -S: isolated and without site-packages, as `make env` runs it before any venv exists.
    return subprocess.run(
        [sys.executable, "-I", "-S", str(MAKE_ENV), "--example", str(REPO / ".env.example"), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.fixture
def generated_env(tmp_path):
    out = tmp_path / ".env"
    done = make_env("--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def test_make_env_generates_every_secret_and_keeps_the_settings(generated_env):
    from cryptography.fernet import Fernet

    written = {k: v for section in read_env(generated_env).values() for k, v in section.items()}
    assert written.keys() == EXAMPLE_VARS.keys()
    generated = [written[k] for k in sorted(GENERATED)]
    assert all(len(v) >= 32 for v in generated) and len(set(generated)) == len(generated)
    assert len(base64.urlsafe_b64decode(written["AIRFLOW_FERNET_KEY"])) == 32
    Fernet(written["AIRFLOW_FERNET_KEY"])  # Airflow's own check of the key
    # The rest is copied: settings keep the compose defaults, S3 credentials stay yours (empty).
    assert {k: v for k, v in written.items() if k not in GENERATED} == {
        k: v for k, v in EXAMPLE_VARS.items() if k not in GENERATED
    }
    assert stat.S_IMODE(generated_env.stat().st_mode) == 0o600


def test_make_env_never_overwrites_without_force(generated_env):
    before = generated_env.read_bytes()
    done = make_env("--out", str(generated_env))
    assert done.returncode == 1
    assert "exists and was left unchanged" in done.stderr and "--force" in done.stderr
    assert generated_env.read_bytes() == before

    os.chmod(generated_env, 0o644)
    done = make_env("--out", str(generated_env), "--force")
    assert done.returncode == 0, done.stderr
    assert generated_env.read_bytes() != before
    assert stat.S_IMODE(generated_env.stat().st_mode) == 0o600


def test_make_env_names_a_bad_example_line(tmp_path):
    bad = tmp_path / "example"
    bad.write_text("# ===== Secrets: generated =====\nPOSTGRES_PASSWORD=\nnot a setting\n")
    done = subprocess.run(
        [sys.executable, str(MAKE_ENV), "--example", str(bad), "--out", str(tmp_path / ".env")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert f"{bad}:3: expected KEY=VALUE" in done.stderr
    assert not (tmp_path / ".env").exists()
