"""The data lake on S3: the whole lifecycle against moto's real S3 server on loopback.

The lake root is ``s3://<bucket>/lake`` and s3fs finds the server through the standard botocore
variable ``AWS_ENDPOINT_URL_S3``, as a deployment does; MLflow and the ledger stay local (SQLite):
only the lake moves. The flows run step by step without Airflow (as ``tests/integration/
test_bad_inputs.py`` does), and what they wrote is checked with boto3, never through mlcycle.
Batches that "arrive" are put with boto3 too: another writer, whose objects the lake must see
at once (s3fs caches listings).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import secrets
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import env_at, golden_end, today, write_batches

pytest.importorskip("moto.server", reason="moto[server] is not installed (requirements-dev.txt)")
pytest.importorskip("s3fs", reason="s3fs is not installed (requirements.txt): no s3:// lake")

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd

    from mlcycle.core.run import RunInfo
    from tests.conftest import Env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "churn"
DAYS = 4
ROWS = 1000
BUCKET = "mlcycle-lake"


@dataclass
class Bucket:
    """The test's bucket, seen through boto3 (not through mlcycle)."""

    client: Any
    name: str

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=data)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def bucket() -> Iterator[Bucket]:
    """moto's S3 server on loopback with one empty bucket, and the AWS variables a deployment
    sets pointing at it (restored afterwards). Credentials are random: moto takes any."""
    import boto3
    import s3fs
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    variables = {
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": secrets.token_hex(10),
        "AWS_SECRET_ACCESS_KEY": secrets.token_hex(20),
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in variables.items():
                mp.setenv(name, value)
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
                mp.delenv(name, raising=False)
            s3fs.S3FileSystem.clear_instance_cache()  # none made before these variables is reused
            client = boto3.client("s3", endpoint_url=variables["AWS_ENDPOINT_URL_S3"])
            client.create_bucket(Bucket=BUCKET)
            yield Bucket(client, BUCKET)
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


@pytest.fixture(scope="module")
def s3_env(bucket: Bucket, tmp_path_factory) -> Iterator[Env]:
    """An Env whose lake is ``s3://<bucket>/lake``; MLflow and the ledger local (restored afterwards)."""
    root = tmp_path_factory.mktemp("s3-lake")
    env = dataclasses.replace(env_at(root), lake=f"s3://{bucket.name}/lake")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLCYCLE_LAKE_ROOT", env.lake)
        mp.setenv("MLFLOW_TRACKING_URI", env.tracking_uri)
        mp.setenv("MLCYCLE_ARTIFACT_ROOT", str(root / "mlartifacts"))
        mp.setenv("MLCYCLE_LEDGER_URI", env.ledger_uri)
        mp.delenv("MLCYCLE_ALLOWED_INPUTS", raising=False)  # only the lake root
        yield env


def run_info(dag: str, key: str) -> RunInfo:
    from mlcycle.core.run import RunInfo

    return RunInfo(f"{dag}_{MODEL}", f"manual__{key}", reason="s3 lake test", trigger="test")


def key_of(uri: str) -> str:
    """The object key of an ``s3://<bucket>/...`` URI that mlcycle recorded."""
    prefix = f"s3://{BUCKET}/"
    assert uri.startswith(prefix), f"{uri} is not in the test bucket"
    return uri.removeprefix(prefix)


def parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


@dataclass
class Trained:
    env: Env
    run: RunInfo
    steps: dict[str, Any]


@pytest.fixture(scope="module")
def trained(s3_env: Env) -> Trained:
    """Daily batches written into the S3 lake, then the training flow (resolve → validate → train →
    evaluate → gate → promote): v1 becomes the first champion."""
    from mlcycle.core.spec import get_spec
    from mlcycle.flows import train as steps

    spec, env = get_spec(MODEL), s3_env
    write_batches(env.lake, MODEL, golden_end(), days=DAYS, rows=ROWS)
    run, mlc = run_info("train", "first"), env.mlc
    m = steps.resolve(spec, run, lake_root=env.lake, as_of=golden_end())
    v = steps.validate(spec, run, manifest_uri=m["manifest_uri"], lake_root=env.lake)
    t = steps.train(spec, run, mlc, manifest_uri=m["manifest_uri"], lake_root=env.lake)
    e = steps.evaluate(spec, run, mlc, version=t["version"], holdout_uri=t["holdout_uri"], lake_root=env.lake)
    g = steps.gate(spec, run, mlc, evaluation=e, lake_root=env.lake)
    p = steps.promote(spec, run, mlc, verdict=g, ledger_uri=env.ledger_uri, lake_root=env.lake)
    return Trained(env, run, {"resolve": m, "validate": v, "train": t, "gate": g, "promote": p})


def test_training_on_the_s3_lake_promotes_a_champion_with_its_evidence_in_the_bucket(
    trained: Trained, bucket: Bucket
):
    from mlcycle.store import ledger, registry

    run, env = trained.run, trained.env
    days = [golden_end() - dt.timedelta(days=i) for i in reversed(range(DAYS))]
    incoming = [f"lake/{MODEL}/incoming/{day.isoformat()}.parquet" for day in days]
    assert bucket.keys(f"lake/{MODEL}/incoming/") == incoming

    runs = f"lake/{MODEL}/runs/{run.key}/"
    names = {"manifest.json", "validation.json", "holdout.parquet", "evaluation.json", "verdict.json"}
    assert names | {"verdict.html"} <= {k.removeprefix(runs) for k in bucket.keys(runs)}
    manifest = json.loads(bucket.get(runs + "manifest.json"))
    assert [key_of(u) for u in manifest["batches"]] == incoming  # recorded as s3:// URIs
    assert manifest["digests"] == [hashlib.sha256(bucket.get(k)).hexdigest() for k in incoming]
    assert manifest["rows"] == DAYS * ROWS
    validation = json.loads(bucket.get(runs + "validation.json"))
    assert validation["success"] is True and len(validation["batches"]) == DAYS
    verdict = json.loads(bucket.get(runs + "verdict.json"))
    assert verdict["passed"] is True and verdict["bootstrap"] is True
    assert key_of(trained.steps["gate"]["verdict_uri"]) == runs + "verdict.json"

    assert trained.steps["promote"]["promoted"]
    assert str(registry.version_by_alias(env.mlc, MODEL, "champion").version) == "1"
    assert [e.action for e in ledger.history(MODEL, uri=env.ledger_uri)] == ["bootstrap"]

    trusted = f"lake/{MODEL}/trusted/"
    assert bucket.keys(trusted) == [trusted + "index.json", trusted + "v1.parquet"]
    (entry,) = json.loads(bucket.get(trusted + "index.json"))["versions"]
    assert key_of(entry["uri"]) == trusted + "v1.parquet"
    assert entry["digest"] == hashlib.sha256(bucket.get(trusted + "v1.parquet")).hexdigest()
    assert entry["added_from"] == "1" and entry["rows"] > 0


def test_a_bad_batch_landed_in_the_bucket_is_quarantined_and_later_runs_skip_it(
    trained: Trained, bucket: Bucket
):
    from mlcycle.core.errors import ValidationFailedError
    from mlcycle.core.spec import get_spec
    from mlcycle.data.generators import generate_batch
    from mlcycle.flows import train as steps

    spec, env = get_spec(MODEL), trained.env
    # Older than the champion's window but inside the next one: another writer lands it (boto3)
    # after this process has listed incoming/, so a cached listing would hide it.
    day = golden_end() - dt.timedelta(days=DAYS)
    bad = f"lake/{MODEL}/incoming/{day.isoformat()}.parquet"
    data = parquet_bytes(generate_batch(MODEL, day, ROWS, corrupt=True))
    bucket.put(bad, data)
    good = [k for k in bucket.keys(f"lake/{MODEL}/incoming/") if k != bad]

    run = run_info("train", "bad-batch")
    m = steps.resolve(spec, run, lake_root=env.lake, as_of=golden_end())
    assert m["batches"] == DAYS + 1
    with pytest.raises(
        ValidationFailedError, match=rf"(?s){bad}: \d+ of \d+ expectations failed.*quarantined 1"
    ):
        steps.validate(spec, run, manifest_uri=m["manifest_uri"], lake_root=env.lake)

    quarantine = f"lake/{MODEL}/quarantine/{run.key}/"
    assert bucket.keys(quarantine) == [
        quarantine + name
        for name in sorted([bad.rpartition("/")[2], "manifest.json", "validation_result.json"])
    ]
    assert bucket.get(quarantine + bad.rpartition("/")[2]) == data  # a copy of the failed bytes
    (record,) = json.loads(bucket.get(quarantine + "manifest.json"))["files"]
    assert key_of(record["source"]) == bad and record["sha256"] == hashlib.sha256(data).hexdigest()
    assert bucket.get(bad) == data and set(good) <= set(bucket.keys(f"lake/{MODEL}/incoming/"))

    rerun = run_info("train", "after-bad-batch")
    m = steps.resolve(spec, rerun, lake_root=env.lake, as_of=golden_end())
    batches = steps.read_manifest(m["manifest_uri"]).batches
    assert [key_of(u) for u in batches] == good  # the bad bytes are skipped, the good batches stay in
    assert steps.validate(spec, rerun, manifest_uri=m["manifest_uri"], lake_root=env.lake)["success"]


def test_scoring_a_batch_writes_predictions_to_the_bucket(trained: Trained, bucket: Bucket):
    import pandas as pd

    from mlcycle.core.spec import get_spec
    from mlcycle.data.generators import generate_batch
    from mlcycle.flows import score
    from mlcycle.flows import train as steps

    spec, env, mlc = get_spec(MODEL), trained.env, trained.env.mlc
    batch = generate_batch(MODEL, today(), 2 * ROWS, seed=3)
    name = f"{today().isoformat()}.parquet"
    bucket.put(f"lake/{MODEL}/incoming/{name}", parquet_bytes(batch))

    run = run_info("score", "today")
    m = steps.resolve(spec, run, lake_root=env.lake, as_of=today(), latest_only=True)
    assert key_of(m["batch_uri"]) == f"lake/{MODEL}/incoming/{name}"  # the newest, landed by boto3
    steps.validate(spec, run, manifest_uri=m["manifest_uri"], lake_root=env.lake)
    model = score.choose_model(spec, mlc)
    assert model["version"] == "1"
    parts = [
        score.score_partition(
            spec, run, mlc, batch_uri=m["batch_uri"], partition=p, model=model, lake_root=env.lake
        )
        for p in score.plan(m["batch_uri"], ROWS)
    ]
    assert len(parts) == 2
    report = score.finalize(
        spec, run, mlc, batch_uri=m["batch_uri"], parts=parts, model=model, lake_root=env.lake
    )

    output = f"lake/{MODEL}/predictions/{name}"
    assert key_of(report["output_uri"]) == output and report["rows"] == 2 * ROWS
    assert bucket.keys(f"lake/{MODEL}/predictions/") == [output]
    pred = pd.read_parquet(f"s3://{bucket.name}/{output}")  # pandas + s3fs, endpoint from the variable
    assert pred["customer_id"].tolist() == batch["customer_id"].tolist()
    assert set(pred["model_version"]) == {"1"} and set(pred["run_id"]) == {run.run_id}
    assert ((pred["proba_0"] + pred["proba_1"]).round(9) == 1).all()
    scoring = f"lake/{MODEL}/runs/{run.key}/scoring/"
    assert bucket.keys(scoring) == [scoring + "report.html", scoring + "report.json"]  # parts removed
    assert json.loads(bucket.get(scoring + "report.json"))["rows"] == 2 * ROWS


def test_monitoring_reads_the_window_from_the_bucket(trained: Trained, bucket: Bucket):
    import pyarrow.parquet as pq

    from mlcycle.core.spec import get_spec
    from mlcycle.flows import monitor

    spec, env = get_spec(MODEL), trained.env
    newest = max(k for k in bucket.keys(f"lake/{MODEL}/incoming/") if k.endswith(".parquet"))
    run = run_info("monitor", "check")
    out = monitor.check(spec, run, env.mlc, lake_root=env.lake, ledger_uri=env.ledger_uri)
    assert out["window"] == [newest.rpartition("/")[2]]  # the spec's window is the newest day
    assert out["rows"] == pq.ParquetFile(io.BytesIO(bucket.get(newest))).metadata.num_rows
    runs = f"lake/{MODEL}/runs/{run.key}/"
    assert bucket.keys(runs) == [runs + "drift.html", runs + "drift.json"]
    assert json.loads(bucket.get(runs + "drift.json"))["decision"] == out["decision"]


def test_a_lake_in_a_bucket_that_does_not_exist_fails_clearly_and_creates_no_bucket(s3_env, bucket):
    from mlcycle.core.errors import StorageWriteError
    from mlcycle.data import lake as lk

    missing = "mlcycle-lake-misspelt"
    path = lk.as_path(f"s3://{missing}/lake/{MODEL}/runs/x/manifest.json")
    with pytest.raises(StorageWriteError, match=rf"the bucket '{missing}' does not exist; create it .*"):
        lk.write_json({"rows": 1}, path)
    assert missing not in {b["Name"] for b in bucket.client.list_buckets()["Buckets"]}


def test_a_batch_uri_is_confined_to_the_s3_lake_root(trained: Trained, bucket: Bucket):
    from mlcycle.core.errors import InputNotAllowedError
    from mlcycle.core.spec import get_spec
    from mlcycle.flows import train as steps

    spec, env = get_spec(MODEL), trained.env
    inside = f"lake/{MODEL}/incoming/{golden_end().isoformat()}.parquet"
    beside = f"lake-copy/{MODEL}/{golden_end().isoformat()}.parquet"  # same bucket, a sibling prefix
    bucket.put(beside, bucket.get(inside))
    run = run_info("train", "batch-uri")
    with pytest.raises(
        InputNotAllowedError,
        match=rf"input s3://{BUCKET}/{beside} is refused: it is outside every allowed prefix\. "
        rf"Runs read only under the lake root \(s3://{BUCKET}/lake\)",
    ):
        steps.resolve(spec, run, lake_root=env.lake, as_of=today(), batch_uri=f"s3://{BUCKET}/{beside}")
    m = steps.resolve(spec, run, lake_root=env.lake, as_of=today(), batch_uri=f"s3://{BUCKET}/{inside}")
    assert (m["source"], key_of(m["batch_uri"]), m["rows"]) == ("batch_uri", inside, ROWS)


def test_the_lake_leaves_no_temporary_object_behind(trained: Trained, bucket: Bucket):
    """Every object is published by copying a ``.<name>.tmp`` into place (S3 has no rename); the
    temporary objects are deleted, so none is left."""
    keys = bucket.keys()
    assert keys and [k for k in keys if k.rpartition("/")[2].startswith(".")] == []
