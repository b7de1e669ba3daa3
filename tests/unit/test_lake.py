"""The data lake: which batches a run uses, their digest, atomic writes and folder-safe run keys."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import uuid
from pathlib import Path

import pandas as pd
import pytest

from mlcycle.core.errors import DataNotFoundError
from mlcycle.core.run import run_key
from mlcycle.data import lake as lk
from mlcycle.data.generators import generate_batch
from tests.conftest import write_batches

END = dt.date(2026, 3, 10)


@pytest.fixture
def churn_lake(env) -> lk.Lake:
    """Ten daily churn batches of 30 rows, 2026-03-01 … 2026-03-10."""
    write_batches(env.lake, "churn", END, days=10, rows=30)
    return lk.Lake(env.lake, "churn")


def day_names(manifest: lk.Manifest) -> list[str]:
    return [Path(b).name for b in manifest.batches]


# --- window selection -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window_days", "as_of", "start", "expected"),
    [
        (3, dt.date(2026, 3, 8), "2026-03-06", ["2026-03-06", "2026-03-07", "2026-03-08"]),
        (1, dt.date(2026, 3, 1), "2026-03-01", ["2026-03-01"]),
        (1, dt.date(2026, 3, 10), "2026-03-10", ["2026-03-10"]),
        (30, dt.date(2026, 3, 2), "2026-02-01", ["2026-03-01", "2026-03-02"]),
    ],
)
def test_window_bounds_are_inclusive(churn_lake, window_days, as_of, start, expected):
    """The window is the ``window_days`` days ending at ``as_of``, both ends included, oldest first."""
    m = lk.resolve_training_data(churn_lake, window_days=window_days, as_of=as_of)
    assert day_names(m) == [f"{d}.parquet" for d in expected]
    assert m.rows == 30 * len(expected)
    assert m.source == "window"
    assert (m.window_start, m.window_end) == (start, as_of.isoformat())
    assert m.model == "churn"


@pytest.mark.parametrize("as_of", [dt.date(2026, 2, 28), dt.date(2026, 3, 13)])
def test_window_outside_the_data_is_empty(churn_lake, as_of):
    """A window that ends before the first batch, or starts after the last, finds nothing."""
    with pytest.raises(DataNotFoundError, match="no batches for model 'churn'"):
        lk.resolve_training_data(churn_lake, window_days=2, as_of=as_of)


def test_batches_ignores_files_not_named_by_date(churn_lake):
    """Only ``YYYY-MM-DD[-suffix].parquet`` files are batches; others are left alone."""
    incoming = Path(str(churn_lake.incoming))
    (incoming / "notes.parquet").write_bytes(b"x")
    (incoming / "2026-03-05.csv").write_text("a,b\n")
    extra = churn_lake.batch_path(dt.date(2026, 3, 5), suffix="-late")
    lk.write_parquet(generate_batch("churn", dt.date(2026, 3, 5), 7, seed=1), extra)
    found = [(d.isoformat(), p.name) for d, p in churn_lake.batches()]
    assert len(found) == 11
    assert ("2026-03-05", "2026-03-05-late.parquet") in found
    assert [d for d, _ in found] == sorted(d for d, _ in found)
    m = lk.resolve_training_data(churn_lake, window_days=1, as_of=dt.date(2026, 3, 5))
    assert day_names(m) == ["2026-03-05-late.parquet", "2026-03-05.parquet"]
    assert m.rows == 37


def test_quarantined_batch_is_skipped_with_warning(churn_lake, caplog):
    """A batch already in quarantine is left out of later windows, and a warning names it; the
    quarantine manifest records the copy's source, the SHA-256 and the size of its bytes."""
    bad = churn_lake.batch_path(dt.date(2026, 3, 7))
    where = lk.quarantine(churn_lake, "manual__x", [lk.uri_of(bad)], {"success": False})
    assert sorted(p.name for p in Path(str(where)).iterdir()) == [
        "2026-03-07.parquet",
        "manifest.json",
        "validation_result.json",
    ]
    data = Path(str(bad)).read_bytes()
    assert lk.read_json(where / "manifest.json") == {
        "model": "churn",
        "run": "manual__x",
        "files": [
            {
                "name": "2026-03-07.parquet",
                "source": lk.uri_of(bad),
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
            }
        ],
    }
    assert churn_lake.quarantine_index().records == [
        lk.QuarantinedFile(
            "2026-03-07.parquet", lk.uri_of(bad), hashlib.sha256(data).hexdigest(), len(data), "manual__x"
        )
    ]
    with caplog.at_level(logging.WARNING, logger="mlcycle.data.lake"):
        m = lk.resolve_training_data(churn_lake, window_days=3, as_of=dt.date(2026, 3, 8))
    assert day_names(m) == ["2026-03-06.parquet", "2026-03-08.parquet"]
    assert m.rows == 60
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "2026-03-07.parquet" in warnings[0].getMessage()
    assert "quarantined by run manual__x" in warnings[0].getMessage()


def test_window_of_only_quarantined_batches_is_empty(churn_lake):
    """If every batch of the window is quarantined there is nothing to train on."""
    bad = churn_lake.batch_path(dt.date(2026, 3, 7))
    lk.quarantine(churn_lake, "r1", [lk.uri_of(bad)], {})
    with pytest.raises(
        DataNotFoundError, match="no batches for model 'churn' between 2026-03-07 and 2026-03-07"
    ):
        lk.resolve_training_data(churn_lake, window_days=1, as_of=dt.date(2026, 3, 7))


@pytest.mark.parametrize("model", ["churn", "demand"])
def test_empty_lake_says_how_to_get_data(env, model):
    """No batches at all: the error names the model, the window and `mlcycle generate <model>`."""
    lake = lk.Lake(env.lake, model)
    assert lake.batches() == []
    with pytest.raises(DataNotFoundError, match=rf"`mlcycle generate {model}`") as err:
        lk.resolve_training_data(lake, window_days=5, as_of=END)
    assert "between 2026-03-06 and 2026-03-10" in str(err.value)
    assert str(lake.incoming) in str(err.value)


# --- explicit batch_uri ---------------------------------------------------------------------------


def test_batch_uri_is_used_instead_of_the_window(churn_lake):
    """A batch_uri overrides the window: one file, no window bounds."""
    uri = lk.uri_of(churn_lake.batch_path(dt.date(2026, 3, 2)))
    m = lk.resolve_training_data(churn_lake, window_days=3, as_of=END, batch_uri=uri)
    assert m.batches == [uri]
    assert m.source == "batch_uri"
    assert m.window_start is None
    assert m.window_end is None
    assert m.rows == 30


def test_batch_uri_accepts_file_scheme(churn_lake):
    """``file://`` URIs resolve to local paths."""
    path = Path(str(churn_lake.batch_path(dt.date(2026, 3, 2))))
    m = lk.resolve_training_data(churn_lake, window_days=3, as_of=END, batch_uri=f"file://{path}")
    assert m.batches == [str(path)]


def test_batch_uri_missing_file(churn_lake):
    """A batch_uri that does not exist is refused with its URI."""
    uri = str(Path(str(churn_lake.base)) / "uploads" / "missing.parquet")
    with pytest.raises(DataNotFoundError, match=rf"batch_uri {uri} does not exist"):
        lk.resolve_training_data(churn_lake, window_days=3, as_of=END, batch_uri=uri)


def test_batch_uri_not_parquet(churn_lake):
    """An existing file that is not Parquet is refused."""
    path = Path(str(churn_lake.incoming)) / "batch.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataNotFoundError, match=r"is not a \.parquet file"):
        lk.resolve_training_data(churn_lake, window_days=3, as_of=END, batch_uri=str(path))


# --- digest ---------------------------------------------------------------------------------------


def test_digest_is_stable_and_follows_content(churn_lake):
    """Same bytes give the same digest (also after a rewrite); changed content changes it."""
    paths = [churn_lake.batch_path(dt.date(2026, 3, d)) for d in (8, 9)]
    first = lk.digest_files(paths)
    assert first == lk.digest_files(paths)
    assert len(first) == 64
    original = generate_batch("churn", dt.date(2026, 3, 9), 30)
    # rewriting identical data leaves the digest alone
    lk.write_parquet(original, paths[1])
    assert lk.digest_files(paths) == first
    # one changed value changes it
    changed = original.copy()
    changed.loc[0, "monthly_charges"] += 1.0
    lk.write_parquet(changed, paths[1])
    assert lk.digest_files(paths) != first
    # and restoring the content restores the digest
    lk.write_parquet(original, paths[1])
    assert lk.digest_files(paths) == first
    lk.write_parquet(changed, paths[1])
    # and the manifest carries it, with each file's SHA-256 (one file's digest is its sha256sum)
    m = lk.resolve_training_data(churn_lake, window_days=2, as_of=dt.date(2026, 3, 9))
    assert m.digest == lk.digest_files(paths)
    assert m.digests == [hashlib.sha256(Path(str(p)).read_bytes()).hexdigest() for p in paths]
    assert [lk.digest_files([p]) for p in paths] == m.digests
    assert m.digest == lk.combine_digests(m.digests) != lk.combine_digests(m.digests[::-1])


def test_digest_changes_when_a_batch_lands_in_the_window(churn_lake):
    """A new batch in the window means new training data: a new digest."""
    before = lk.resolve_training_data(churn_lake, window_days=3, as_of=dt.date(2026, 3, 12))
    write_batches(str(churn_lake.root), "churn", dt.date(2026, 3, 12), days=1, rows=30)
    after = lk.resolve_training_data(churn_lake, window_days=3, as_of=dt.date(2026, 3, 12))
    assert len(after.batches) == len(before.batches) + 1
    assert after.digest != before.digest


# --- writes ---------------------------------------------------------------------------------------


def test_write_parquet_and_json_are_atomic(tmp_path):
    """Writes create parent folders, overwrite cleanly and leave no ``.tmp`` file behind."""
    target = tmp_path / "a" / "b" / "frame.parquet"
    df = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    lk.write_parquet(df, target)
    lk.write_parquet(df.iloc[:2], target)
    pd.testing.assert_frame_equal(lk.read_parquet([target]), df.iloc[:2])
    assert lk.count_rows([target]) == 2

    doc = tmp_path / "a" / "doc.json"
    lk.write_json({"when": dt.date(2026, 1, 2), "n": 1}, doc)
    lk.write_json({"when": dt.date(2026, 1, 3), "n": 2}, doc)
    assert lk.read_json(doc) == {"when": "2026-01-03", "n": 2}

    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b", "doc.json"]


def test_read_parquet_of_nothing():
    """Reading an empty list of files is an error, not an empty frame."""
    with pytest.raises(DataNotFoundError, match="no parquet files to read"):
        lk.read_parquet([])


def test_lake_works_on_an_fsspec_uri():
    """The same code reads and writes a non-local filesystem (fsspec memory://)."""
    root = f"memory://lake-{uuid.uuid4().hex}"
    write_batches(root, "demand", dt.date(2026, 1, 3), days=3, rows=20)
    lake = lk.Lake(root, "demand")
    m = lk.resolve_training_data(lake, window_days=2, as_of=dt.date(2026, 1, 3))
    assert [b.rsplit("/", 1)[1] for b in m.batches] == ["2026-01-02.parquet", "2026-01-03.parquet"]
    assert all(b.startswith("memory://") for b in m.batches)
    assert m.rows == 40
    assert len(lk.read_parquet([lk.as_path(b) for b in m.batches])) == 40
    names = [p.name for p in lake.incoming.iterdir()]
    assert not [n for n in names if n.endswith(".tmp")]


def test_manifest_round_trip():
    """A manifest survives to_dict/from_dict unchanged."""
    m = lk.Manifest("churn", ["/a.parquet"], 3, "abc", "window", "2026-01-01", "2026-01-02", ["abc"])
    assert lk.Manifest.from_dict(m.to_dict()) == m
    # a manifest written before per-file digests existed still loads
    old = {k: v for k, v in m.to_dict().items() if k != "digests"}
    assert lk.Manifest.from_dict(old).digests == []


# --- run keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run_id", "key"),
    [
        ("manual__2026-01-01T00:00:00+00:00", "manual__2026-01-01T00_00_00_00_00"),
        ("scheduled__2026-03-10T02:00:00+00:00", "scheduled__2026-03-10T02_00_00_00_00"),
        ("asset_triggered__2026-01-01T00:00:00.123+00:00", "asset_triggered__2026-01-01T00_00_00.123_00_00"),
        ("my run/with slashes", "my_run_with_slashes"),
        ("../../etc", "_.._etc"),
        ("", "run"),
        (":::", "run"),
    ],
)
def test_run_key_sanitises_run_ids(run_id, key):
    """Run ids become one folder name made of letters, digits, '.', '_' and '-'."""
    assert run_key(run_id) == key


@pytest.mark.parametrize(
    "run_id",
    [
        "manual__2026-01-01T00:00:00+00:00",
        "a/b",
        "../x",
        "~user",
        # Airflow's default allowed_run_id_pattern (^[A-Za-z0-9_.~:+-]+$) accepts these two:
        ".",
        "..",
    ],
)
def test_run_key_is_a_single_safe_folder(tmp_path, run_id):
    """Whatever the run id, the run folder is a direct child of runs/ (no traversal, no '.' or '..')."""
    key = run_key(run_id)
    assert "/" not in key
    assert key not in (".", "..")
    lake = lk.Lake(str(tmp_path), "churn")
    run_dir = Path(str(lake.run_dir(key))).resolve()
    assert run_dir.parent == (tmp_path / "churn" / "runs").resolve()


# --- quarantine by content ------------------------------------------------------------------------


def _prior_model(batch: pd.DataFrame):
    """The smallest real scikit-learn classifier of churn (the shadow check needs models that score)."""
    from sklearn.dummy import DummyClassifier

    return DummyClassifier(strategy="prior").fit(batch, batch["churned"])


def test_a_bad_file_named_like_a_good_batch_never_removes_it(env):
    """The issue's scenario: another model's ``2026-12-01.parquet`` is sent by batch_uri, fails
    the churn contract and is quarantined under its name; churn's own ``incoming/2026-12-01.parquet``
    stays in the next window (its rows too), in ``latest_only`` and in the shadow batch choice,
    while the bad bytes are skipped wherever they land."""
    from mlcycle.core.errors import ValidationFailedError
    from mlcycle.core.run import RunInfo
    from mlcycle.core.spec import get_spec
    from mlcycle.flows import train

    day = dt.date(2026, 12, 1)
    spec = get_spec("churn")
    write_batches(env.lake, "churn", day, days=3, rows=30)
    (other,) = write_batches(env.lake, "demand", day, days=1, rows=40)
    assert other.name == "2026-12-01.parquet"
    bad_run = RunInfo("train_churn", "manual__bad")
    res = train.resolve(spec, bad_run, lake_root=env.lake, as_of=day, batch_uri=str(other))
    with pytest.raises(ValidationFailedError, match="quarantined 1 batch"):
        train.validate(spec, bad_run, manifest_uri=res["manifest_uri"], lake_root=env.lake)
    copy = Path(env.lake) / "churn" / "quarantine" / bad_run.key / "2026-12-01.parquet"
    assert copy.read_bytes() == other.read_bytes()

    lake = lk.Lake(env.lake, "churn")
    good = Path(str(lake.batch_path(day)))
    nxt = train.resolve(spec, RunInfo("train_churn", "scheduled__next"), lake_root=env.lake, as_of=day)
    manifest = train.read_manifest(nxt["manifest_uri"])
    assert manifest.batches[-1] == str(good)
    assert (len(manifest.batches), manifest.rows) == (3, 90)
    newest = lk.resolve_training_data(lake, window_days=3, as_of=day, latest_only=True)
    assert newest.batches == [str(good)]
    model = _prior_model(lk.read_parquet([good]))
    shadow = train._shadow_on_newest_batch(spec, env.lake, model, model)
    assert shadow is not None
    assert (shadow["batch"], shadow["rows"]) == ("2026-12-01.parquet", 30)

    # The same bad bytes landed as churn's next day are skipped, by content, under any name.
    later_day = day + dt.timedelta(days=1)
    Path(str(lake.batch_path(later_day))).write_bytes(other.read_bytes())
    again = lk.resolve_training_data(lake, window_days=3, as_of=later_day)
    assert [Path(b).name for b in again.batches] == ["2026-11-30.parquet", "2026-12-01.parquet"]
    assert lk.resolve_training_data(lake, window_days=3, as_of=later_day, latest_only=True).batches == [
        str(good)
    ]


def test_only_the_same_bytes_match_not_the_same_name_or_size(churn_lake, tmp_path):
    """``find`` matches content: a copy under another name matches; a file of the same name, or of
    the same size with other bytes, does not."""
    bad = Path(str(churn_lake.batch_path(dt.date(2026, 3, 7))))
    index_before = churn_lake.quarantine_index()
    assert index_before.find(bad) is None
    lk.quarantine(churn_lake, "r1", [str(bad)], {})
    index = churn_lake.quarantine_index()
    renamed = Path(str(churn_lake.base)) / "uploads" / "renamed.parquet"
    renamed.parent.mkdir()
    renamed.write_bytes(bad.read_bytes())
    same_size = renamed.with_name("2026-03-07.parquet")
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    same_size.write_bytes(bytes(data))
    assert index.find(renamed) == index.records[0]
    assert index.find(same_size) is None
    assert index.find(bad, sha256=lk.file_sha256(same_size)) is None


def test_stray_and_broken_entries_in_quarantine_never_stop_a_run(churn_lake, caplog):
    """A stray file, an empty folder, a manifest that is not JSON and a malformed record are
    skipped with a warning; the valid records still apply."""
    root = Path(str(churn_lake.base)) / "quarantine"
    lk.quarantine(churn_lake, "good_run", [lk.uri_of(churn_lake.batch_path(dt.date(2026, 3, 9)))], {})
    root.joinpath("README.txt").write_text("notes")
    root.joinpath("empty").mkdir()
    root.joinpath("broken").mkdir()
    root.joinpath("broken", "manifest.json").write_text("{not json")
    root.joinpath("odd").mkdir()
    root.joinpath("odd", "manifest.json").write_text(json.dumps({"files": [{"name": 1}, "x"]}))
    with caplog.at_level(logging.WARNING, logger="mlcycle.data.lake"):
        index = churn_lake.quarantine_index()
        m = lk.resolve_training_data(churn_lake, window_days=3, as_of=END)
    assert [r.run for r in index.records] == ["good_run"]
    assert day_names(m) == ["2026-03-08.parquet", "2026-03-10.parquet"]
    text = caplog.text
    assert "README.txt" in text and "not a JSON document" in text and "malformed record" in text


def test_a_quarantine_folder_without_records_is_matched_by_its_copies(churn_lake):
    """A folder written before per-file records existed (its manifest held the whole run's digest)
    is described by hashing its copies: the copied bytes are skipped, a new file of that name is not."""
    folder = Path(str(churn_lake.base)) / "quarantine" / "old_run"
    folder.mkdir(parents=True)
    bad = Path(str(churn_lake.batch_path(dt.date(2026, 3, 7))))
    folder.joinpath(bad.name).write_bytes(bad.read_bytes())
    folder.joinpath("2026-03-08.parquet").write_bytes(b"other bytes that failed once")
    folder.joinpath("manifest.json").write_text(json.dumps({"batches": [str(bad)], "digest": "whole-run"}))
    m = lk.resolve_training_data(churn_lake, window_days=3, as_of=dt.date(2026, 3, 8))
    assert day_names(m) == ["2026-03-06.parquet", "2026-03-08.parquet"]


# --- data errors are data errors ----------------------------------------------------------------


def _good_bytes() -> bytes:
    buf = io.BytesIO()
    generate_batch("churn", dt.date(2026, 3, 11), 30).to_parquet(buf, index=False)
    return buf.getvalue()


def _corrupt_page() -> bytes:
    data = bytearray(_good_bytes())
    data[4:60] = b"\xff" * 56  # the first page header; the footer stays readable
    return bytes(data)


def _nested() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"customer_id": [1, 2], "tags": [["a"], ["b", "c"]]}), buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("make", "step", "problem"),
    [
        (lambda: b"customer_id,tenure_months\n1,2\n", "resolve", "not a Parquet file .no Parquet footer."),
        (lambda: _good_bytes()[:700], "resolve", "not a Parquet file .no Parquet footer.*truncated"),
        (lambda: b"", "resolve", r"the file is empty \(0 bytes\)"),
        (_nested, "resolve", r"column\(s\) tags \(list<element: string>\) have a nested type"),
        (
            _corrupt_page,
            "validate",
            "Parquet data is corrupt or cannot be decoded .Couldn't deserialize thrift",
        ),
    ],
    ids=["csv", "truncated", "empty", "nested-column", "corrupt-page"],
)
def test_an_unreadable_batch_is_one_clear_error_and_quarantined(churn_lake, make, step, problem):
    """Unreadable bytes end in ``UnreadableDataError`` naming the file and what is wrong (no
    pyarrow traceback as the message); the file is quarantined by digest and the next window
    skips it."""
    from mlcycle.core.errors import MlcycleError, UnreadableDataError
    from mlcycle.core.run import RunInfo
    from mlcycle.core.spec import get_spec
    from mlcycle.flows import train

    day = dt.date(2026, 3, 11)
    bad = Path(str(churn_lake.batch_path(day)))
    bad.write_bytes(make())
    spec, run, lake_root = get_spec("churn"), RunInfo("train_churn", "manual__bad"), str(churn_lake.root)
    with pytest.raises(UnreadableDataError, match=rf"cannot read {bad} as a batch: .*{problem}") as err:
        res = train.resolve(spec, run, lake_root=lake_root, as_of=day)
        assert step == "validate", "resolve should have refused the file"
        train.validate(spec, run, manifest_uri=res["manifest_uri"], lake_root=lake_root)
    assert isinstance(err.value, MlcycleError)
    assert err.value.uri == str(bad)
    assert "quarantined it in" in str(err.value) and "nothing downstream ran" in str(err.value)
    assert "Traceback" not in str(err.value)
    records = churn_lake.quarantine_index().records
    assert [(r.name, r.sha256, r.run) for r in records] == [(bad.name, lk.file_sha256(bad), run.key)]
    result = lk.read_json(churn_lake.quarantine(run.key) / "validation_result.json")
    assert result == {"success": False, "uri": str(bad), "problem": err.value.problem}
    nxt = lk.resolve_training_data(churn_lake, window_days=3, as_of=day)
    assert day_names(nxt) == ["2026-03-09.parquet", "2026-03-10.parquet"]


def test_a_missing_object_or_a_folder_is_not_found_not_quarantined(churn_lake):
    """A missing file or object (any filesystem) and a folder named like a batch are
    ``DataNotFoundError`` naming them; nothing is quarantined (no data arrived)."""
    from upath import UPath

    missing = f"memory://nowhere-{uuid.uuid4().hex}/churn/incoming/2026-03-11.parquet"
    gone = rf"{missing} does not exist \(no such file, object or bucket\)"
    with pytest.raises(DataNotFoundError, match=gone), lk.reading(missing):
        lk.file_sha256(UPath(missing))
    folder = Path(str(churn_lake.batch_path(dt.date(2026, 3, 11))))
    folder.mkdir()
    with pytest.raises(DataNotFoundError, match=rf"{folder} is a folder, not a Parquet file"):
        lk.resolve_training_data(churn_lake, window_days=1, as_of=dt.date(2026, 3, 11))
    assert churn_lake.quarantine_index().records == []


def test_an_outage_while_reading_stays_retriable():
    """A connection refused (a real socket to a closed loopback port) passes through ``reading``
    unchanged: it is an outage for Airflow's retries, not a data error."""
    import socket

    from mlcycle.core.errors import MlcycleError

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionRefusedError) as err, lk.reading("s3://bucket/churn/incoming/x.parquet"):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    assert not isinstance(err.value, MlcycleError)
