"""The data lake: which batches a run uses, their digest, atomic writes and folder-safe run keys."""

from __future__ import annotations

import datetime as dt
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
    """A batch already in quarantine is left out of later windows, and a warning names it."""
    bad = churn_lake.batch_path(dt.date(2026, 3, 7))
    manifest = lk.Manifest("churn", [lk.uri_of(bad)], 30, "d", "window")
    where = lk.quarantine(churn_lake, manifest, "manual__x", {"success": False})
    assert sorted(p.name for p in Path(str(where)).iterdir()) == [
        "2026-03-07.parquet",
        "manifest.json",
        "validation_result.json",
    ]
    assert churn_lake.quarantined_names() == {"2026-03-07.parquet"}
    with caplog.at_level(logging.WARNING, logger="mlcycle.data.lake"):
        m = lk.resolve_training_data(churn_lake, window_days=3, as_of=dt.date(2026, 3, 8))
    assert day_names(m) == ["2026-03-06.parquet", "2026-03-08.parquet"]
    assert m.rows == 60
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "2026-03-07.parquet" in warnings[0].getMessage()
    assert "quarantine" in warnings[0].getMessage()


def test_window_of_only_quarantined_batches_is_empty(churn_lake):
    """If every batch of the window is quarantined there is nothing to train on."""
    bad = churn_lake.batch_path(dt.date(2026, 3, 7))
    lk.quarantine(churn_lake, lk.Manifest("churn", [lk.uri_of(bad)], 30, "d", "window"), "r1", {})
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


def test_batch_uri_missing_file(churn_lake, tmp_path):
    """A batch_uri that does not exist is refused with its URI."""
    uri = str(tmp_path / "missing.parquet")
    with pytest.raises(DataNotFoundError, match=rf"batch_uri {uri} does not exist"):
        lk.resolve_training_data(churn_lake, window_days=3, as_of=END, batch_uri=uri)


def test_batch_uri_not_parquet(churn_lake, tmp_path):
    """An existing file that is not Parquet is refused."""
    path = tmp_path / "batch.csv"
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
    # and the manifest carries it
    m = lk.resolve_training_data(churn_lake, window_days=2, as_of=dt.date(2026, 3, 9))
    assert m.digest == lk.digest_files(paths)


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
    m = lk.Manifest("churn", ["/a.parquet"], 3, "abc", "window", "2026-01-01", "2026-01-02")
    assert lk.Manifest.from_dict(m.to_dict()) == m


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
