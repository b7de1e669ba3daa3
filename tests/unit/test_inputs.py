"""Inputs are confined: a run reads only under the lake root and ``MLCYCLE_ALLOWED_INPUTS``.

``batch_uri`` is a run parameter anyone who can trigger a run sets; without confinement it
reaches any host (server-side request forgery through http://) and any file of the worker.
"""

from __future__ import annotations

import datetime as dt
import http.server
import threading
from pathlib import Path

import pytest

from mlcycle.core import settings
from mlcycle.core.errors import DataNotFoundError, InputNotAllowedError, MlcycleError
from mlcycle.data import lake as lk
from tests.conftest import write_batches

DAY = dt.date(2026, 3, 10)


@pytest.fixture
def lake(env) -> lk.Lake:
    write_batches(env.lake, "churn", DAY, days=2, rows=20)
    return lk.Lake(env.lake, "churn")


def _batch(lake: lk.Lake) -> Path:
    return Path(str(lake.batch_path(DAY)))


# --- the setting ------------------------------------------------------------------------------------


def test_allowed_inputs_are_absolute_folders_and_bucket_prefixes(monkeypatch, tmp_path):
    """Entries are trimmed; folders resolved (``..``, ``~``); URIs lose a final slash; empty entries dropped."""
    monkeypatch.setenv("MLCYCLE_ALLOWED_INPUTS", f" {tmp_path}/a/../b , s3://bucket/landing/,, gs://other ")
    assert settings.allowed_inputs() == [str(tmp_path.resolve() / "b"), "s3://bucket/landing", "gs://other"]
    monkeypatch.delenv("MLCYCLE_ALLOWED_INPUTS")
    assert settings.allowed_inputs() == []


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("http://127.0.0.1:8000/data", "is not allowed; list absolute folders and s3://bucket/prefix"),
        ("ftp://host/x", "is not allowed"),
        ("file:///data", "is not allowed"),
        ("s3://", "is not allowed"),
        ("data/landing", "is a relative folder"),
    ],
)
def test_a_bad_allowed_input_is_refused_naming_the_variable(monkeypatch, value, words):
    """A deployment cannot open a scheme that fetches URLs, a bucket-less URI or a relative folder."""
    monkeypatch.setenv("MLCYCLE_ALLOWED_INPUTS", value)
    with pytest.raises(MlcycleError, match=rf"MLCYCLE_ALLOWED_INPUTS: '{value}' {words}"):
        settings.allowed_inputs()


# --- what is allowed --------------------------------------------------------------------------------


def test_the_lake_root_is_always_allowed(lake, monkeypatch):
    """Any file under the lake root (any model's area), also as file://, with no setting at all."""
    monkeypatch.delenv("MLCYCLE_ALLOWED_INPUTS", raising=False)
    batch = _batch(lake)
    assert lk.confine(str(batch), lake.root) == batch
    assert lk.confine(f"file://{batch}", lake.root) == batch
    other_model = Path(str(lake.root)) / "demand" / "incoming" / "2026-03-10.parquet"
    assert lk.confine(str(other_model), lake.root) == other_model


def test_configured_folders_and_prefixes_are_allowed(lake, monkeypatch, tmp_path):
    """A listed folder (through a symlink that stays inside it too) and a listed bucket prefix."""
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "x.parquet").write_bytes(_batch(lake).read_bytes())
    (landing / "link.parquet").symlink_to(landing / "x.parquet")
    monkeypatch.setenv("MLCYCLE_ALLOWED_INPUTS", f"{landing},s3://bucket/landing")
    assert lk.confine(str(landing / "link.parquet"), lake.root) == landing / "link.parquet"
    assert (
        str(lk.confine("s3://bucket/landing/2026/x.parquet", lake.root))
        == "s3://bucket/landing/2026/x.parquet"
    )
    m = lk.resolve_training_data(lake, window_days=1, as_of=DAY, batch_uri=str(landing / "link.parquet"))
    assert (m.batches, m.rows) == ([str(landing / "link.parquet")], 20)


# --- what is refused --------------------------------------------------------------------------------


@pytest.fixture
def loopback_server():
    """A real HTTP server on loopback that counts the requests it gets (there must be none)."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"PAR1")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("make_uri", "why"),
    [
        (
            lambda root, tmp, url: f"{url}/churn/incoming/2026-03-10.parquet",
            r"the scheme http:// is not allowed",
        ),
        (lambda root, tmp, url: "https://example.com/x.parquet", r"the scheme https:// is not allowed"),
        (lambda root, tmp, url: "ftp://127.0.0.1/x.parquet", r"the scheme ftp:// is not allowed"),
        (lambda root, tmp, url: "memory://lake/churn/x.parquet", r"the scheme memory:// is not allowed"),
        (lambda root, tmp, url: "s3://bucket/other/x.parquet", "it is outside every allowed prefix"),
        (lambda root, tmp, url: "s3://bucket/landing-2/x.parquet", "it is outside every allowed prefix"),
        (
            lambda root, tmp, url: "s3://bucket/landing/../secret/x.parquet",
            r"'\.' and '\.\.' segments are not allowed in a URI",
        ),
        (lambda root, tmp, url: "file:///etc/passwd.parquet", "it resolves to /etc/passwd.parquet, outside"),
        (
            lambda root, tmp, url: str(tmp / "elsewhere.parquet"),
            "it resolves to .*, outside every allowed folder",
        ),
        (
            lambda root, tmp, url: f"{root}/churn/../../elsewhere.parquet",
            "it resolves to .*, outside every allowed folder",
        ),
        (
            lambda root, tmp, url: f"{root}-sibling/x.parquet",
            "it resolves to .*, outside every allowed folder",
        ),
        (lambda root, tmp, url: "churn/incoming/2026-03-10.parquet", "it is a relative path"),
    ],
    ids=[
        "http-loopback",
        "https",
        "ftp",
        "memory",
        "other-prefix",
        "prefix-sibling",
        "uri-traversal",
        "file-outside",
        "local-outside",
        "dotdot",
        "root-sibling",
        "relative",
    ],
)
def test_every_other_location_is_refused_before_anything_is_read(
    lake, monkeypatch, loopback_server, make_uri, why
):
    """Refused with a message naming why, the lake root, the allowed list and the variable to
    set; the check comes before any read, so nothing is fetched (the loopback server gets no
    request) and a refused path's existence is not revealed."""
    url, hits = loopback_server
    monkeypatch.setenv("MLCYCLE_ALLOWED_INPUTS", "s3://bucket/landing")
    uri = make_uri(str(lake.root), Path(str(lake.root)).parent, url)
    with pytest.raises(InputNotAllowedError, match=rf"input .* is refused: {why}") as err:
        lk.resolve_training_data(lake, window_days=1, as_of=DAY, batch_uri=uri)
    message = str(err.value)
    assert f"under the lake root ({lake.root})" in message
    assert "MLCYCLE_ALLOWED_INPUTS (s3://bucket/landing)" in message
    assert hits == []


def test_a_symlink_leaving_the_lake_is_refused_as_batch_uri_and_in_the_window(lake, tmp_path, monkeypatch):
    """A symlink is judged by where it leads: one inside the lake pointing outside is refused,
    whether passed as batch_uri or found among the incoming batches."""
    monkeypatch.delenv("MLCYCLE_ALLOWED_INPUTS", raising=False)
    outside = tmp_path / "outside.parquet"
    outside.write_bytes(_batch(lake).read_bytes())
    link = Path(str(lake.batch_path(DAY + dt.timedelta(days=1))))
    link.symlink_to(outside)
    with pytest.raises(InputNotAllowedError, match=rf"resolves to {outside}, outside every allowed folder"):
        lk.resolve_training_data(lake, window_days=1, as_of=DAY, batch_uri=str(link))
    with pytest.raises(InputNotAllowedError, match=rf"input {link} is refused"):
        lk.resolve_training_data(lake, window_days=3, as_of=DAY + dt.timedelta(days=1))


def test_a_missing_file_inside_an_allowed_root_is_still_not_found(lake):
    """Confinement comes first; inside the allowed roots a missing file is the usual not-found error."""
    missing = Path(str(lake.base)) / "uploads" / "missing.parquet"
    with pytest.raises(DataNotFoundError, match=rf"batch_uri {missing} does not exist"):
        lk.resolve_training_data(lake, window_days=1, as_of=DAY, batch_uri=str(missing))


def test_a_remote_lake_root_allows_its_own_prefix_only():
    """With an fsspec lake (memory:// here), files under it are allowed, its siblings are not."""
    root = "memory://lake-confine"
    assert str(lk.confine(f"{root}/churn/incoming/2026-03-10.parquet", root)).startswith(root + "/")
    with pytest.raises(InputNotAllowedError, match="it is outside every allowed prefix"):
        lk.confine("memory://lake-confine-2/churn/x.parquet", root)


def test_an_allowed_bucket_without_its_filesystem_package_fails_without_retries(lake, monkeypatch):
    """gs:// is allowed by the deployment, but gcsfs is not installed: one clear domain error
    saying what to install, not an ImportError that Airflow would retry."""
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("gcsfs is installed here: the missing-filesystem case cannot be shown with gs://")
    monkeypatch.setenv("MLCYCLE_ALLOWED_INPUTS", "gs://bucket/landing")
    with pytest.raises(
        InputNotAllowedError,
        match=r"gs://bucket/landing/2026-12-01\.parquet cannot be read by this deployment: .*gcsfs.*"
        r"Install that package in the workers' environment",
    ):
        lk.resolve_training_data(
            lake, window_days=1, as_of=DAY, batch_uri="gs://bucket/landing/2026-12-01.parquet"
        )


@pytest.mark.parametrize("raw", ["0", "-5", "1.5", "ten", "901"])
def test_a_bad_retry_delay_is_one_clear_error(monkeypatch, raw):
    from mlcycle.core import settings

    monkeypatch.setenv("MLCYCLE_RETRY_DELAY_SECONDS", raw)
    with pytest.raises(
        MlcycleError, match=r"MLCYCLE_RETRY_DELAY_SECONDS=.*whole number of seconds from 1 to 900"
    ):
        settings.retry_delay_s()


def test_the_retry_delay_defaults_to_a_minute_and_can_be_set(monkeypatch):
    from mlcycle.core import settings

    monkeypatch.delenv("MLCYCLE_RETRY_DELAY_SECONDS", raising=False)
    assert settings.retry_delay_s() == 60
    monkeypatch.setenv("MLCYCLE_RETRY_DELAY_SECONDS", "5")
    assert settings.retry_delay_s() == 5
